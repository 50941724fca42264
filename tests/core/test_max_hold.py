"""``max_hold``: auto-extension stops after this many seconds, then the lock expires and is lost.

Real nodes, sync and asyncio: the lock is kept by auto-extension until the cap, then expires
on the nodes (another holder gets it), ``lost`` is set, ``on_lost`` is called once, and the
context manager raises ``LockLost``. Without the cap the same lock is still held. Bad values
are refused at construction with a ``ConfigurationError`` naming the option.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from redsync_core import AsyncRedsync, ConfigurationError, LockLost, Redsync

EXPIRY = 0.6
MAX_HOLD = 1.5


def test_auto_extension_stops_at_max_hold_and_the_lock_is_lost(rs: Redsync) -> None:
    lost = []
    mutex = rs.new_mutex(
        "capped", expiry=EXPIRY, auto_extend=True, max_hold=MAX_HOLD, on_lost=lost.append
    )
    uncapped = rs.new_mutex("uncapped", expiry=EXPIRY, auto_extend=True)
    started = time.monotonic()
    with pytest.raises(LockLost), mutex, uncapped:  # noqa: PT012 - the block is the stuck holder
        time.sleep(EXPIRY * 1.5)  # past one expiry: extensions did run
        assert mutex.held
        assert not rs.new_mutex("capped").try_lock()
        while not mutex.lost and time.monotonic() - started < MAX_HOLD + 3:
            time.sleep(0.02)
        assert mutex.lost
        assert time.monotonic() - started <= MAX_HOLD + 0.5  # gone by the cap
        assert not mutex.held
        # expired on the nodes too (within the drift allowance after the validity)
        rs.new_mutex("capped", tries=10, retry_delay=0.01).lock()
        assert uncapped.held  # the same lock without a cap is still kept
        assert not uncapped.lost
    assert lost == [mutex]


def test_max_hold_applies_to_semaphores(rs: Redsync) -> None:
    sem = rs.new_semaphore("capped-sem", 1, expiry=EXPIRY, auto_extend=True, max_hold=MAX_HOLD)
    sem.acquire()
    deadline = time.monotonic() + MAX_HOLD + 3
    while not sem.lost and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sem.lost
    rs.new_semaphore("capped-sem", 1, tries=10, retry_delay=0.01).acquire()
    assert not sem.release()


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"max_hold": 0}, id="zero"),
        pytest.param({"max_hold": -1}, id="negative"),
        pytest.param({"max_hold": "10"}, id="a-string"),
        pytest.param({"max_hold": float("inf")}, id="infinite"),
        pytest.param({"max_hold": 5.0, "expiry": 8.0}, id="below-the-expiry"),
    ],
)
def test_invalid_max_hold_is_refused(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match="max_hold"):
        Redsync(["memory://max-hold"], **options)


def test_max_hold_equal_to_the_expiry_is_accepted() -> None:
    with Redsync(["memory://max-hold"]) as rs:
        assert rs.new_mutex("m", expiry=8.0, max_hold=8.0).options.max_hold == 8.0


async def test_async_auto_extension_stops_at_max_hold(ars: AsyncRedsync) -> None:
    lost = []
    mutex = ars.new_mutex(
        "acapped", expiry=EXPIRY, auto_extend=True, max_hold=MAX_HOLD, on_lost=lost.append
    )
    started = time.monotonic()
    with pytest.raises(LockLost):  # noqa: PT012 - the block is the stuck holder
        async with mutex:
            await asyncio.sleep(EXPIRY * 1.5)
            assert mutex.held
            while not mutex.lost and time.monotonic() - started < MAX_HOLD + 3:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            assert mutex.lost
            await ars.new_mutex("acapped", tries=10, retry_delay=0.01).lock()
    assert lost == [mutex]
