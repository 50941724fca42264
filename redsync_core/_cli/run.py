"""``redsync run``: hold a lock while a command runs, like ``flock -n`` across machines.

The lock is held through ``Redsync.hold`` (the same ``wait`` semantics as every adapter) and
kept alive by the core's auto-extension; with ``--limit N`` it is a permit of a semaphore, so up
to N commands run at once (a distributed ``sem``). This module only starts the command, forwards
signals to it and maps the outcome to an exit status. Unix only (process groups and ``killpg``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from types import FrameType

from redsync_core import (
    LockLost,
    LockNotAcquired,
    LockTaken,
    LockTimeout,
    Mutex,
    QuorumUnreachable,
    Redsync,
)

from ..adapters import free_in
from .common import (
    EXIT_BUSY,
    EXIT_CANNOT_EXECUTE,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_SIGNAL_BASE,
    EXIT_UNAVAILABLE,
    say,
)

__all__ = ["FORWARDED_SIGNALS", "KILL_GRACE", "run_command"]

KILL_GRACE = 10.0  # seconds between SIGTERM and SIGKILL for --kill-on-lost
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Interrupted(Exception):
    """A forwarded signal arrived before the command started: give up taking the lock."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Child:
    """The wrapped command: started once, signalled as a process group."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.starting = False
        self.pending: int | None = None  # a signal that arrived while the child was starting

    def start(self, command: list[str]) -> subprocess.Popen[bytes]:
        """Start ``command`` in its own process group, so that a terminal's Ctrl-C reaches it
        once (through us) rather than twice. Raises OSError when it cannot be executed."""
        self.starting = True
        try:
            if sys.version_info >= (3, 11):
                self.proc = subprocess.Popen(command, process_group=0)
            else:  # pragma: no cover - 3.10 has no process_group
                self.proc = subprocess.Popen(command, start_new_session=True)
        finally:
            self.starting = False
        if self.pending is not None:
            self.signal(self.pending)
        return self.proc

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the command's process group, if it is still there."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signum)

    def forward(self, signum: int, frame: FrameType | None) -> None:
        """Signal handler: forward to the command; before it starts, stop taking the lock."""
        if self.proc is not None:
            self.signal(signum)
        elif self.starting:
            self.pending = signum
        else:
            raise _Interrupted(signum)

    def terminate(self) -> None:
        """SIGTERM the command's group, and SIGKILL it if it still runs after a grace period."""
        self.signal(signal.SIGTERM)
        timer = threading.Timer(KILL_GRACE, self._kill_if_running)
        timer.daemon = True
        timer.start()

    def _kill_if_running(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGKILL)


def run_command(
    rs: Redsync,
    name: str,
    command: list[str],
    *,
    expiry: float,
    wait: float,
    busy_exit_code: int,
    kill_on_lost: bool,
    limit: int | None = None,
) -> int:
    """Run ``command`` while holding lock ``name``; return the exit status for ``redsync run``.

    ``expiry`` and ``wait`` are in seconds; ``limit``: None holds a mutex, a number holds a
    permit of a semaphore admitting that many holders. The status is the command's own (128+N
    when signal N killed it), ``busy_exit_code`` when another holder has the lock (or every
    permit), 69 when no quorum of nodes answered, 127/126 when the command cannot be
    found/executed.
    """
    child = _Child()
    status: list[int] = []
    if limit is None:
        lost, at_risk, taken = (
            f"lock {name!r}",
            "another holder may run concurrently now",
            "another holder has it",
        )
    else:
        lost, at_risk, taken = (
            f"a permit of {name!r} (--limit {limit})",
            f"more than {limit} commands may run concurrently now",
            f"all {limit} permits are held",
        )

    def on_lost(mutex: Mutex) -> None:  # called from the core's auto-extension thread
        consequence = (
            "terminating the command (--kill-on-lost)"
            if kill_on_lost
            else "the command keeps running unprotected (--kill-on-lost would stop it)"
        )
        say(f"ERROR: lost {lost} while the command ran: {at_risk}; {consequence}")
        if kill_on_lost:
            child.terminate()

    def run_child() -> None:
        try:
            proc = child.start(command)
        except FileNotFoundError:
            say(f"error: command not found: {command[0]}")
            status.append(EXIT_NOT_FOUND)
            return
        except OSError as exc:
            say(f"error: cannot execute {command[0]}: {exc.strerror or exc}")
            status.append(EXIT_CANNOT_EXECUTE)
            return
        code = proc.wait()
        status.append(EXIT_SIGNAL_BASE - code if code < 0 else code)

    held = rs.hold(name, wait=wait, limit=limit, expiry=expiry, auto_extend=True, on_lost=on_lost)
    previous = {signum: signal.signal(signum, child.forward) for signum in FORWARDED_SIGNALS}
    try:
        with held:
            if isinstance(held.busy, (LockTaken, LockTimeout)):
                say(f"lock {name!r} is busy: {taken}; {_free_when(held.busy, wait)}")
                return busy_exit_code
            if held.busy is not None:
                say(f"error: {held.busy}")
                return EXIT_BUSY
            run_child()
    except LockLost:
        pass  # on_lost reported it when it happened; the command's status still counts
    except QuorumUnreachable as exc:
        say(f"error: {exc}")
        return EXIT_UNAVAILABLE
    except _Interrupted as exc:
        return EXIT_SIGNAL_BASE + exc.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return status[0] if status else EXIT_OK


def _free_when(exc: LockNotAcquired, waited: float) -> str:
    after = f"still busy after waiting {waited:g} s; " if waited > 0 else ""
    return after + free_in(exc.retry_after)
