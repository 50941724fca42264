"""Child processes that do not outlive their parent, even when the parent is SIGKILLed.

``redsync demo`` and the test helpers start redis-server processes and workers. Their owners stop
them on every orderly path (``stop()``, ``with`` blocks, signal handlers, interpreter exit), but
a parent killed with SIGKILL runs none of that. On Linux the child therefore asks the kernel, with
``prctl(PR_SET_PDEATHSIG)``, to send it a signal when its parent dies. Elsewhere nothing is
armed and the owners' cleanup is the only protection.

The kernel ties that signal to the *thread* that forked the child, not to the process: a child
forked from a short-lived thread would be killed when that thread ends. ``popen()`` therefore
forks from the main thread, or else from one long-lived thread of this module.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["die_with_parent", "popen", "wait_child"]

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _load_prctl() -> Callable[..., int] | None:
    """Return libc's ``prctl`` on Linux, None elsewhere (resolved once, before any fork)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _load_prctl()


def die_with_parent(parent_pid: int, signum: int = signal.SIGKILL) -> bool:
    """Have the kernel send ``signum`` to this process when its parent ``parent_pid`` dies.

    Call it in the child, first thing (a ``preexec_fn``, or the target of a multiprocessing
    process). If the parent is already gone, the signal is sent at once. Returns False where
    the platform has no parent-death signal (nothing is armed then).
    """
    if _PRCTL is None or _PRCTL(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
        return False
    # The parent may have died between the fork and the prctl: then nobody will send the signal.
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signum)
    return True


_spawner_lock = threading.Lock()
_spawner: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None


def _spawner_thread() -> concurrent.futures.ThreadPoolExecutor:
    """Return this process's long-lived spawning thread (a fresh one after a fork)."""
    global _spawner
    with _spawner_lock:
        if _spawner is None or _spawner[0] != os.getpid():
            executor = concurrent.futures.ThreadPoolExecutor(1, "redsync-spawner")
            _spawner = (os.getpid(), executor)
        return _spawner[1]


def popen(
    args: Sequence[str], *, death_signal: int = signal.SIGKILL, **kwargs: Any
) -> subprocess.Popen[Any]:
    """Start ``subprocess.Popen(args, **kwargs)`` in a child that gets ``death_signal`` when
    this process dies (Linux; a plain Popen elsewhere).

    Raises what ``subprocess.Popen`` raises (OSError when the program cannot be run).
    """
    if _PRCTL is None:
        return subprocess.Popen(args, **kwargs)
    parent_pid = os.getpid()

    def arm() -> None:
        die_with_parent(parent_pid, death_signal)

    def start() -> subprocess.Popen[Any]:
        return subprocess.Popen(args, preexec_fn=arm, **kwargs)

    if threading.current_thread() is threading.main_thread():
        return start()
    return _spawner_thread().submit(start).result()


def wait_child(pid: int, timeout: float) -> int:
    """Wait up to ``timeout`` seconds for the child ``pid`` (from ``os.fork()``) to exit.

    Returns its exit code (``-N`` when killed by signal N). Raises TimeoutError when it is still
    running after ``timeout``; it is then killed with SIGKILL and reaped first.
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)  # SIGKILL cannot be ignored: this returns at once
            raise TimeoutError(f"child {pid} still ran after {timeout:g} s: killed it")
        time.sleep(delay)
        delay = min(0.05, delay * 2)
