"""Quorum, validity, drift, deadlines and retry delays: the arithmetic of Redlock (milliseconds)."""

from __future__ import annotations

from collections.abc import Callable

from .._exceptions import ConfigurationError

__all__ = [
    "CLOCK_PRECISION_MS",
    "drift_ms",
    "fanout_deadline_ms",
    "quorum",
    "retry_delay_ms",
    "validity_ms",
]

#: Redis expires keys with 1 ms precision; the spec adds 1 ms more for small TTLs.
CLOCK_PRECISION_MS = 2

#: Default retry delay when none is configured: a uniform random integer in [50, 250) ms.
RANDOM_DELAY_RANGE_MS = (50, 250)


def quorum(n: int) -> int:
    """Return how many of ``n`` independent nodes make a strict majority."""
    return n // 2 + 1


def drift_ms(ttl_ms: int, drift_factor: float) -> int:
    """Return the clock drift allowance: ``ttl * drift_factor`` plus the 2 ms clock precision."""
    return int(ttl_ms * drift_factor) + CLOCK_PRECISION_MS


def validity_ms(ttl_ms: int, elapsed_ms: int, drift_factor: float) -> int:
    """Return how long a lock set with ``ttl_ms`` stays valid after a fan-out of ``elapsed_ms``."""
    return ttl_ms - elapsed_ms - drift_ms(ttl_ms, drift_factor)


def fanout_deadline_ms(ttl_ms: int, timeout_factor: float) -> int | None:
    """Return the deadline of one fan-out (``ttl * timeout_factor``), or None when disabled (0)."""
    if timeout_factor <= 0:
        return None
    return max(1, int(ttl_ms * timeout_factor))


def retry_delay_ms(
    attempt: int,
    *,
    fixed_s: float | None,
    func: Callable[[int], float] | None,
    randrange: Callable[[int, int], int],
) -> int:
    """Return the delay before retry number ``attempt`` (1, 2, ...), like redsync's delay func."""
    if func is not None:
        delay = func(attempt)
        if not isinstance(delay, (int, float)) or not 0 <= delay < 86_400:
            raise ConfigurationError(
                f"Invalid retry_delay_func result {delay!r} for attempt {attempt}: expected a "
                "number of seconds in [0, 86400)."
            )
        return round(delay * 1000)
    if fixed_s is not None:
        return round(fixed_s * 1000)
    return randrange(*RANDOM_DELAY_RANGE_MS)
