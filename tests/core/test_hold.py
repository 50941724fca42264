"""``Redsync.hold`` / ``AsyncRedsync.hold``: "busy" is a result, errors of the body stay errors.

Every adapter holds its locks through ``hold``, so these tests pin what they rely on: a free
lock is held on the nodes for the block and released after it; a busy lock enters the block
with ``busy`` set and touches no key; a ``LockNotAcquired`` raised by the body is never taken for
"busy"; node failures raise; a lock lost while the block ran raises ``LockLost`` on exit.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from redsync_core import (
    AsyncRedsync,
    ConfigurationError,
    LockLost,
    LockTaken,
    LockTimeout,
    QuorumUnreachable,
    Redsync,
)

# Ports where nothing listens on loopback: every node refuses at once.
DEAD_NODES = ["redis://127.0.0.1:1/0", "redis://127.0.0.1:2/0", "redis://127.0.0.1:3/0"]


def test_a_free_lock_is_held_on_a_quorum_during_the_block_and_released_after(
    rs: Redsync,
) -> None:
    with rs.hold("orders:1") as held:
        assert held.busy is None
        assert held.acquired
        assert rs.inspect("orders:1").holder == held.mutex.value
    assert not held.acquired
    assert rs.inspect("orders:1").holder is None


def test_a_busy_lock_is_reported_not_raised_and_the_holder_keeps_it(rs: Redsync) -> None:
    other = rs.new_mutex("orders:2", expiry=20)
    other.lock()
    with rs.hold("orders:2") as held:
        assert not held.acquired
        assert isinstance(held.busy, LockTaken)
        assert held.busy.retry_after is not None
        assert 10 < held.busy.retry_after <= 20
    assert rs.inspect("orders:2").holder == other.value  # exit released nothing
    other.unlock()


def test_an_error_raised_by_the_body_is_not_busy_and_the_lock_is_released(rs: Redsync) -> None:
    blocker = rs.new_mutex("inner", expiry=20)
    blocker.lock()

    def body() -> None:
        with rs.hold("outer") as held:
            assert held.busy is None
            rs.new_mutex("inner").lock()  # the body's own lock is busy: that is the body's error

    with pytest.raises(LockTaken) as raised:
        body()
    assert raised.value.name == "inner"
    assert rs.inspect("outer").holder is None
    blocker.unlock()


def test_wait_keeps_trying_until_it_runs_out(rs: Redsync) -> None:
    other = rs.new_mutex("slow", expiry=20)
    other.lock()
    held = rs.hold("slow", wait=0.6)
    assert not held.acquire()
    assert isinstance(held.busy, LockTimeout)
    assert held.busy.attempts > 1  # it retried, rather than one attempt
    other.unlock()


def test_a_lock_freed_during_the_wait_is_taken(rs: Redsync) -> None:
    other = rs.new_mutex("freed", expiry=0.4)
    other.lock()
    held = rs.hold("freed", wait=10)
    assert held.acquire()
    assert rs.inspect("freed").holder == held.mutex.value
    assert held.release()
    assert not held.release()  # once


def test_nodes_down_raise_instead_of_reporting_busy() -> None:
    with Redsync(DEAD_NODES) as rs, pytest.raises(QuorumUnreachable):
        rs.hold("down").acquire()


def test_a_lock_lost_while_the_block_ran_raises_lock_lost_on_exit(rs: Redsync) -> None:
    def body() -> None:
        with rs.hold("lost", expiry=0.3, auto_extend=True) as held:
            assert held.busy is None
            rs.force_release("lost")  # an operator clears it; the next extension finds it gone
            deadline = time.monotonic() + 10
            while not held.mutex.lost and time.monotonic() < deadline:
                time.sleep(0.05)
            assert held.mutex.lost

    with pytest.raises(LockLost):
        body()


@pytest.mark.parametrize("wait", [-1, float("nan"), "1", True], ids=repr)
def test_a_bad_wait_is_refused_before_any_io(rs: Redsync, wait: object) -> None:
    with pytest.raises(ConfigurationError, match=r"Invalid wait="):
        rs.hold("x", wait=wait)  # type: ignore[arg-type]


# --- the asyncio twin ----------------------------------------------------------------------


async def test_async_a_free_lock_is_held_during_the_block_and_released_after(
    ars: AsyncRedsync,
) -> None:
    async with ars.hold("orders:1") as held:
        assert held.busy is None
        assert (await ars.inspect("orders:1")).holder == held.mutex.value
    assert (await ars.inspect("orders:1")).holder is None


async def test_async_a_busy_lock_is_reported_not_raised(ars: AsyncRedsync) -> None:
    other = ars.new_mutex("orders:2", expiry=20)
    await other.lock()
    async with ars.hold("orders:2") as held:
        assert isinstance(held.busy, LockTaken)
    assert (await ars.inspect("orders:2")).holder == other.value
    await other.unlock()


async def test_async_an_error_raised_by_the_body_is_not_busy(ars: AsyncRedsync) -> None:
    blocker = ars.new_mutex("inner", expiry=20)
    await blocker.lock()

    async def body() -> None:
        async with ars.hold("outer") as held:
            assert held.busy is None
            await ars.new_mutex("inner").lock()

    with pytest.raises(LockTaken) as raised:
        await body()
    assert raised.value.name == "inner"
    assert (await ars.inspect("outer")).holder is None
    await blocker.unlock()


async def test_async_wait_keeps_trying_until_it_runs_out(ars: AsyncRedsync) -> None:
    other = ars.new_mutex("slow", expiry=20)
    await other.lock()
    held = ars.hold("slow", wait=0.6)
    assert not await held.acquire()
    assert isinstance(held.busy, LockTimeout)
    assert held.busy.attempts > 1
    await other.unlock()


async def test_async_nodes_down_raise_instead_of_reporting_busy() -> None:
    async with AsyncRedsync(DEAD_NODES) as ars:
        with pytest.raises(QuorumUnreachable):
            await ars.hold("down").acquire()


async def test_async_a_lock_lost_while_the_block_ran_raises_lock_lost(ars: AsyncRedsync) -> None:
    async def body() -> None:
        async with ars.hold("lost", expiry=0.3, auto_extend=True) as held:
            await ars.force_release("lost")
            for _ in range(200):
                if held.mutex.lost:
                    break
                await asyncio.sleep(0.05)
            assert held.mutex.lost

    with pytest.raises(LockLost):
        await body()
