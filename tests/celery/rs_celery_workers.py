"""Real Celery worker processes for the tests: started with ``python -m celery ... worker``,
told apart by their own queue, and stopped by their PID. A worker dies with the test process
even when that is SIGKILLed (the kernel's parent-death signal, on Linux)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from redsync_core.testing import child_process

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
# The repository root first, so that workers import this checkout's packages whatever is
# installed (a stale editable install can map a package as an empty namespace package).
PYTHONPATH = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)

READY_TIMEOUT = 90.0  # seconds a worker gets to log "ready." on a loaded 2-core machine
STOP_GRACE = 20.0  # seconds between SIGTERM (warm shutdown) and SIGQUIT (cold shutdown)
REAP_TIMEOUT = 10.0  # seconds a SIGKILLed worker gets to be reaped
# What the worker gets when the test process dies: SIGKILL, so a stuck task cannot hold it up.
DEATH_SIGNAL = signal.SIGKILL


def eventually(probe: Callable[[], T], timeout: float, interval: float = 0.05) -> T:
    """Return the first truthy result of ``probe()`` within ``timeout`` seconds, else fail."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {probe}")
        time.sleep(interval)


class Worker:
    """One ``celery worker`` process consuming ``queue`` only."""

    def __init__(
        self,
        app_module: str,
        pool: str,
        concurrency: int,
        queue: str,
        *,
        env: Mapping[str, str],
        pythonpath: Sequence[str] = (),
        cwd: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.queue = queue
        self.pool = pool
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept open for the worker's life
            prefix=f"celery-{queue}-", suffix=".log", delete=False
        )
        paths = [*pythonpath, PYTHONPATH]
        self.argv = [
            sys.executable, "-m", "celery", "-A", app_module, "worker",
            "--pool", pool, "--concurrency", str(concurrency), "-Q", queue,
            "-n", f"{queue}@%h", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            *extra_args,
        ]  # fmt: skip
        self.proc = child_process(
            self.argv,
            death_signal=DEATH_SIGNAL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **env, "PYTHONPATH": os.pathsep.join(p for p in paths if p)},
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> Worker:
        deadline = time.monotonic() + timeout
        while " ready." not in self.log():
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"worker not ready after {timeout} s:\n{self.log()}")
            time.sleep(0.1)
        return self

    def send(self, task: Any, *args: Any, **kwargs: Any) -> Any:
        """Enqueue ``task(*args, **kwargs)`` on this worker's queue; return the AsyncResult."""
        return task.apply_async(args, kwargs, queue=self.queue)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then cold (SIGQUIT), then SIGKILL, all by this PID."""
        for sig, grace in ((signal.SIGTERM, STOP_GRACE), (signal.SIGQUIT, 5.0)):
            if self.proc.poll() is not None:
                break
            self.proc.send_signal(sig)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                continue
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(REAP_TIMEOUT)
        self._log.close()
        os.unlink(self._log.name)
