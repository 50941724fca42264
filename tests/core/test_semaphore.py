"""Semaphores against real nodes: at most ``limit`` holders, each permit its own Redlock key.

Sync and asyncio twins of each behaviour: ``limit`` holders get in and the next one is busy,
a release frees a permit, auto-extension keeps a permit past its expiry, an expired permit is
free again, one node down still admits holders, and a permit is held on a quorum of one key.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from redsync_core import (
    AsyncRedsync,
    ConfigurationError,
    LockLost,
    LockTaken,
    QuorumUnreachable,
    Redsync,
)
from redsync_core.testing import RedisServer


def holders(servers: list[RedisServer], key: str) -> list[str | None]:
    """The value each node holds at ``key``."""
    found = []
    for server in servers:
        client = server.client()
        try:
            raw = client.get(key)
        finally:
            client.close()
        found.append(None if raw is None else raw.decode())
    return found


def test_limit_holders_get_in_and_the_next_is_busy(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    sems = [rs.new_semaphore("pool", 3, expiry=10) for _ in range(4)]
    assert [s.try_acquire() for s in sems[:3]] == [True, True, True]
    assert sorted(s.permit for s in sems[:3]) == [0, 1, 2]
    for s in sems[:3]:  # each holder owns its permit key on a quorum (here: every node)
        assert s.key == f"pool:{s.permit}"
        assert holders(redis_nodes, s.key).count(s.value) >= 2
    assert sems[3].try_acquire() is False
    assert sems[3].permit is None
    with pytest.raises(LockTaken) as caught:
        rs.new_semaphore("pool", 3, tries=2, retry_delay=0.01).acquire()
    assert "all 3 permits" in str(caught.value)
    assert caught.value.retry_after is not None
    assert 5 < caught.value.retry_after <= 10
    for s in sems[:3]:
        assert s.release()
    assert all(holders(redis_nodes, f"pool:{slot}") == [None] * 3 for slot in range(3))


def test_a_release_frees_a_permit_for_the_next_holder(rs: Redsync) -> None:
    first, second, third = (rs.new_semaphore("jobs", 2) for _ in range(3))
    assert first.try_acquire()
    assert second.try_acquire()
    assert not third.try_acquire()
    assert second.release()
    assert third.try_acquire()
    assert third.permit == 1 - first.permit  # the permit second gave back
    assert not second.release()  # already given back
    assert first.release()
    assert third.release()


def test_acquire_waits_for_a_permit_released_meanwhile(rs: Redsync) -> None:
    holder = rs.new_semaphore("wait", 1)
    holder.acquire()
    waiter = rs.new_semaphore("wait", 1, retry_delay=0.02, tries=None)
    started = time.monotonic()
    release_at = started + 0.3
    timer = threading.Timer(0.3, holder.release)
    timer.start()
    waiter.acquire(timeout=5)
    timer.join()
    assert time.monotonic() >= release_at - 0.01
    assert waiter.held
    assert waiter.release()


def test_an_expired_permit_is_free_again(rs: Redsync) -> None:
    short = rs.new_semaphore("lease", 1, expiry=0.2)
    assert short.try_acquire()
    assert not rs.new_semaphore("lease", 1).try_acquire()
    time.sleep(0.3)
    assert not short.held
    late = rs.new_semaphore("lease", 1)
    assert late.try_acquire()
    assert not short.release()  # its value is gone: nothing of the new holder is touched
    assert late.valid()
    assert late.release()


def test_auto_extend_keeps_a_permit_past_its_expiry(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    with rs.new_semaphore("kept", 1, expiry=0.3, auto_extend=True) as sem:
        time.sleep(1.0)
        assert sem.held
        assert not sem.lost
        assert not rs.new_semaphore("kept", 1).try_acquire()
        assert holders(redis_nodes, sem.key).count(sem.value) >= 2
    assert not sem.held
    assert rs.new_semaphore("kept", 1).try_acquire()


def test_a_permit_lost_while_the_block_ran_raises_lock_lost(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    lost = []
    sem = rs.new_semaphore("gone", 2, expiry=1.5, auto_extend=True, on_lost=lost.append)

    def run_until_lost() -> None:
        with sem:
            for server in redis_nodes:  # an operator wipes every permit
                client = server.client()
                client.delete(sem.key)
                client.close()
            deadline = time.monotonic() + 3
            while not sem.lost and time.monotonic() < deadline:
                time.sleep(0.05)

    with pytest.raises(LockLost):
        run_until_lost()
    assert lost == [sem]


def test_one_node_down_still_admits_limit_holders(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    redis_nodes[1].kill()
    sems = [rs.new_semaphore("degraded", 2) for _ in range(3)]
    assert [s.try_acquire() for s in sems] == [True, True, False]
    assert all(s.release() for s in sems[:2])
    redis_nodes[2].kill()
    with pytest.raises(QuorumUnreachable):
        rs.new_semaphore("degraded", 2).try_acquire()


def test_a_permit_half_taken_by_another_acquirer_is_not_counted(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    # Another acquirer holds permit 0 on node 0 only (mid-acquisition, or a crashed one): the
    # nodes disagree on the first free permit, and the winner still needs a quorum on one key.
    client = redis_nodes[0].client()
    client.set("split:0", "someone-else", px=10_000)
    client.close()
    sems = [rs.new_semaphore("split", 2) for _ in range(2)]
    results = [s.try_acquire() for s in sems]
    assert results[0] is True  # permit 1 is free everywhere; permit 0 on nodes 1 and 2
    for s in sems:
        if s.held:
            assert holders(redis_nodes, s.key).count(s.value) >= 2
    # our value is never left behind on a permit we did not win
    for slot in range(2):
        for node, value in enumerate(holders(redis_nodes, f"split:{slot}")):
            assert (
                value is None
                or value == "someone-else"
                or any(s.held and s.value == value and s.key == f"split:{slot}" for s in sems)
            ), (slot, node)


@pytest.mark.parametrize(
    ("limit", "options"),
    [
        pytest.param(0, {}, id="limit-0"),
        pytest.param(2.0, {}, id="limit-float"),
        pytest.param(True, {}, id="limit-bool"),
        pytest.param(2, {"value": "shared"}, id="fixed-value"),
        pytest.param(2, {"fencing": True}, id="fencing"),
        pytest.param(2, {"max_hold": 1.0, "expiry": 8.0}, id="max-hold-below-expiry"),
    ],
)
def test_invalid_semaphores_are_refused_at_construction(
    limit: object, options: dict[str, object]
) -> None:
    with Redsync(["memory://sem-config"]) as rs, pytest.raises(ConfigurationError):
        rs.new_semaphore("bad", limit, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("options", [{"value": "shared"}, {"fencing": True}])
def test_async_semaphores_refuse_a_fixed_value_and_fencing(options: dict[str, object]) -> None:
    ars = AsyncRedsync(["memory://asem-config"])
    with pytest.raises(ConfigurationError, match=next(iter(options))):
        ars.new_semaphore("bad", 2, **options)


# --- asyncio -------------------------------------------------------------------------------


async def test_async_limit_holders_get_in_and_the_next_is_busy(
    ars: AsyncRedsync, redis_nodes: list[RedisServer]
) -> None:
    sems = [ars.new_semaphore("apool", 2, expiry=10) for _ in range(3)]
    assert [await s.try_acquire() for s in sems] == [True, True, False]
    assert sorted(s.permit for s in sems[:2]) == [0, 1]
    for s in sems[:2]:
        assert holders(redis_nodes, s.key).count(s.value) >= 2
    assert await sems[0].release()
    assert await sems[2].try_acquire()
    assert await sems[1].release()
    assert await sems[2].release()


async def test_async_acquire_waits_and_context_manager_releases(ars: AsyncRedsync) -> None:
    holder = ars.new_semaphore("await", 1)
    await holder.acquire()

    async def release_later() -> None:
        await asyncio.sleep(0.2)
        await holder.release()

    task = asyncio.create_task(release_later())
    async with ars.new_semaphore("await", 1, retry_delay=0.02, tries=None) as sem:
        assert sem.held
        assert not await ars.new_semaphore("await", 1).try_acquire()
    await task
    assert await ars.new_semaphore("await", 1).try_acquire()


async def test_async_auto_extend_keeps_and_expiry_frees(ars: AsyncRedsync) -> None:
    async with ars.new_semaphore("akept", 1, expiry=0.3, auto_extend=True) as sem:
        await asyncio.sleep(1.0)
        assert sem.held
        assert not sem.lost
        assert not await ars.new_semaphore("akept", 1).try_acquire()
    short = ars.new_semaphore("alease", 1, expiry=0.2)
    assert await short.try_acquire()
    await asyncio.sleep(0.3)
    assert await ars.new_semaphore("alease", 1).try_acquire()


async def test_async_one_node_down_still_admits_holders(
    ars: AsyncRedsync, redis_nodes: list[RedisServer]
) -> None:
    redis_nodes[0].kill()
    sems = [ars.new_semaphore("adegraded", 2) for _ in range(3)]
    assert [await s.try_acquire() for s in sems] == [True, True, False]
    assert await sems[0].release()
    assert await sems[1].release()
