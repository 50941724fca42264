"""The clock for elapsed time and validity: monotonic, counting through suspend where possible.

Linux has ``CLOCK_BOOTTIME`` (keeps counting while the machine sleeps, so a lock never looks
valid after a suspend); elsewhere ``time.monotonic()``. Never the wall clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "monotonic_ms"]

Clock = Callable[[], int]
"""A function returning the current monotonic time in integer milliseconds."""


def _boottime_ms() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) // 1_000_000


def _monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def _pick() -> Clock:
    if hasattr(time, "CLOCK_BOOTTIME"):
        try:
            _boottime_ms()
        except OSError:  # a kernel without CLOCK_BOOTTIME
            return _monotonic_ms
        return _boottime_ms
    return _monotonic_ms


monotonic_ms: Clock = _pick()
