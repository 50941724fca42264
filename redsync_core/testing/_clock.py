"""A fake monotonic clock for unit tests of code that takes a clock (integer milliseconds)."""

from __future__ import annotations

__all__ = ["FakeClock"]


class FakeClock:
    """A clock that only moves when told to; call it to read the time in milliseconds.

    Pass it where redsync_core takes a ``Clock`` (a callable returning integer ms); use
    ``advance`` (or ``sleep``, which is the same) to move time forward.
    """

    def __init__(self, start_ms: int = 1_000_000) -> None:
        self.now_ms = start_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``.

        Raises:
            ValueError: ``seconds`` is negative (a monotonic clock never goes back).
        """
        if seconds < 0:
            raise ValueError(f"a monotonic clock never goes back (advance({seconds}))")
        self.now_ms += round(seconds * 1000)

    sleep = advance
