"""Helpers for the `redsync` command tests: run the CLI as a real subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from redsync_core.testing import child_process

CLI = [sys.executable, "-m", "redsync_core.cli"]
TIMEOUT = 90  # seconds any single CLI call may take (the machine is shared and slow at times)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without REDSYNC_* variables (REDSYNC_TEST_SERVER kept), plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("REDSYNC_") or key == "REDSYNC_TEST_SERVER"
    }
    env.update(extra)
    return env


def url_args(urls: Sequence[str]) -> list[str]:
    return [arg for url in urls for arg in ("--url", url)]


def redsync(
    *args: str, env: dict[str, str] | None = None, timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run `redsync ARGS...` to completion and capture its output."""
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        env=env if env is not None else clean_env(),
        timeout=timeout,
        check=False,
    )


def start(*args: str, stderr: Path | None = None) -> subprocess.Popen[str]:
    """Start `redsync ARGS...` in the background (stdout piped, stderr to a file if given).

    If this test process dies, the kernel sends it SIGTERM (Linux), which `redsync run` passes on
    to its command: neither outlives the test run.
    """
    return child_process(
        [*CLI, *args],
        death_signal=signal.SIGTERM,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if stderr is None else stderr.open("w"),
        text=True,
        env=clean_env(),
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "it") -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def assert_gone(pid: int, timeout: float = 15.0) -> None:
    """Wait until process ``pid`` has ended; fail after ``timeout`` seconds."""

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, timeout, f"process {pid} to end")


def one_line(text: str) -> str:
    """Assert ``text`` is exactly one line and return it."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]
