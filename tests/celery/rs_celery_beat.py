"""Real ``celery beat`` processes for the tests: started with ``python -m celery ... beat``,
each with its own schedule file and log, and stopped or killed by their PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from rs_celery_workers import PYTHONPATH, eventually

STOP_GRACE = 20.0  # seconds between SIGTERM and SIGKILL


class Beat:
    """One ``celery beat`` process with scheduler ``scheduler``."""

    def __init__(
        self,
        app_module: str,
        scheduler: str,
        *,
        env: Mapping[str, str],
        pythonpath: Sequence[str] = (),
        cwd: str | None = None,
    ) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="celery-beat-")
        self.log_path = Path(self._dir.name) / "beat.log"
        self._log = self.log_path.open("wb")
        paths = [*pythonpath, PYTHONPATH]
        self.argv = [
            sys.executable, "-m", "celery", "-A", app_module, "beat",
            "--scheduler", scheduler, "--loglevel", "INFO",
            "--schedule", str(Path(self._dir.name) / "schedule"),
            "--pidfile", str(Path(self._dir.name) / "beat.pid"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **env, "PYTHONPATH": os.pathsep.join(p for p in paths if p)},
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 90.0) -> None:
        """Wait until ``text`` appears in the log; fail with the log if the process exits."""

        def probe() -> bool:
            if self.proc.poll() is not None and text not in self.log():
                raise RuntimeError(f"beat exited with {self.proc.returncode}:\n{self.log()}")
            return text in self.log()

        eventually(probe, timeout, interval=0.05)

    def kill(self) -> None:
        """SIGKILL, as a lost host: no clean-up runs."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (beat syncs its schedule and closes its scheduler), then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def cleanup(self) -> None:
        """Stop the process and delete its schedule file and log."""
        self.stop()
        self._log.close()
        self._dir.cleanup()
