"""When to extend an auto-extended lock, and when a failed extension means the lock is lost."""

from __future__ import annotations

from collections.abc import Callable

__all__ = [
    "EXTEND_FRACTION",
    "RETRY_FRACTION",
    "early_ms",
    "next_extension_ms",
    "retry_or_lost_ms",
    "within_max_hold",
]

#: A held lock is extended every third of its expiry, so two extensions may fail before it ends.
EXTEND_FRACTION = 3
#: After a failed extension, retry every tenth of the expiry until the validity runs out.
RETRY_FRACTION = 10


def next_extension_ms(expiry_ms: int, now_ms: int, randrange: Callable[[int, int], int]) -> int:
    """Return when to extend next: a third of the expiry from now, minus up to 10 % jitter."""
    period = max(1, expiry_ms // EXTEND_FRACTION)
    return now_ms + period - randrange(0, period // 10 + 1)


def early_ms(expiry_ms: int) -> int:
    """Return how early an extension may go to share a round trip with others due now.

    At most a tenth of the extension period, and never more than 100 ms: extending a little
    early only refreshes the TTL sooner, and batching keeps the cost per lock low.
    """
    return min(100, expiry_ms // (EXTEND_FRACTION * 10))


def retry_or_lost_ms(now_ms: int, until_ms: int | None, expiry_ms: int, gone: bool) -> int | None:
    """Return when to retry a failed extension, or None when the lock is lost.

    Lost means: a quorum said our value is gone, or the local validity has run out.
    """
    if gone or until_ms is None or now_ms >= until_ms:
        return None
    return min(now_ms + max(10, expiry_ms // RETRY_FRACTION), until_ms)


def within_max_hold(now_ms: int, expiry_ms: int, hold_end_ms: int | None) -> bool:
    """Return True when extending now (by ``expiry_ms``) keeps the lock within ``max_hold``.

    ``hold_end_ms`` is when the lock was acquired plus ``max_hold`` (None: no cap). Extensions
    are never shortened to fit the cap (a shorter TTL could cut a validity the holder counts
    on); they stop instead, and the lock expires between a third of an expiry before the cap
    and the cap.
    """
    return hold_end_ms is None or now_ms + expiry_ms <= hold_end_ms
