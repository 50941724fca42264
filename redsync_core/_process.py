"""This process's id, without a system call each time: ``os.getpid()`` is one (the C library
no longer caches it), and the lock paths ask on every call (a forked child must never release,
extend or reuse what its parent holds)."""

from __future__ import annotations

import os

_pid = os.getpid()


def pid() -> int:
    """Return this process's id (renewed in a forked child)."""
    return _pid


def _forked() -> None:
    global _pid  # one per process
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)
