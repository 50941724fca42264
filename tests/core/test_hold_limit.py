"""``Redsync.hold(..., limit=N)``: adapters hold a semaphore permit instead of a mutex.

The Hold API stays the same (``acquire() -> bool``, ``busy``, ``mutex``, ``release()``); with a
limit, N holds of one name are acquired at once, the next one is busy, and releasing one frees
a permit. Sync and asyncio.
"""

from __future__ import annotations

import pytest

from redsync_core import (
    AsyncRedsync,
    AsyncSemaphore,
    ConfigurationError,
    LockTaken,
    Redsync,
    Semaphore,
)


def test_a_hold_with_a_limit_holds_a_permit(rs: Redsync) -> None:
    holds = [rs.hold("report", limit=2) for _ in range(3)]
    assert [h.acquire() for h in holds] == [True, True, False]
    assert all(isinstance(h.mutex, Semaphore) for h in holds)
    assert isinstance(holds[2].busy, LockTaken)
    assert holds[0].release()
    assert holds[2].acquire()
    with rs.hold("report", limit=2) as busy:
        assert busy.busy is not None
        assert not busy.acquired
    for h in holds[1:]:
        assert h.release()


def test_a_hold_without_a_limit_is_a_mutex(rs: Redsync) -> None:
    with rs.hold("plain") as held:
        assert not isinstance(held.mutex, Semaphore)
        assert held.acquired


def test_an_invalid_limit_is_refused(rs: Redsync) -> None:
    with pytest.raises(ConfigurationError, match="limit"):
        rs.hold("bad", limit=0)


async def test_async_hold_with_a_limit(ars: AsyncRedsync) -> None:
    holds = [ars.hold("areport", limit=2) for _ in range(3)]
    assert [await h.acquire() for h in holds] == [True, True, False]
    assert all(isinstance(h.mutex, AsyncSemaphore) for h in holds)
    assert await holds[0].release()
    async with ars.hold("areport", limit=2) as held:
        assert held.acquired
    assert await holds[1].release()
