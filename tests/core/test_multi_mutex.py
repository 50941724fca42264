"""Multi-mutexes against real nodes: all names or none, released together, in a stable order.

Sync and asyncio twins: a free set is taken on every node, a set overlapping a held one takes
nothing (no key of it is left behind), unlock frees every key, extend and auto-extension
reach every key, concurrent callers with overlapping sets never both hold and never deadlock,
and a Redis Cluster node takes keys of different slots separately.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import redis.asyncio.cluster
import redis.cluster

from redsync_core import AsyncRedsync, ConfigurationError, LockTaken, Redsync
from redsync_core.testing import LocalRedisCluster, RedisServer


def values(servers: list[RedisServer], keys: list[str]) -> list[list[str | None]]:
    """Per node, the value of each key."""
    found = []
    for server in servers:
        client = server.client()
        try:
            found.append([None if v is None else v.decode() for v in client.mget(keys)])
        finally:
            client.close()
    return found


def test_all_names_are_taken_together_and_released_together(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    mm = rs.new_multi_mutex(["b", "a", "c", "a"])
    assert mm.names == ("a", "b", "c")
    assert mm.keys == ("a", "b", "c")
    mm.lock()
    assert values(redis_nodes, ["a", "b", "c"]) == [[mm.value] * 3] * 3
    assert mm.valid()
    assert mm.extend(20.0)
    for server in redis_nodes:
        client = server.client()
        assert all(15_000 < client.pttl(key) <= 20_000 for key in "abc")
        client.close()
    assert mm.unlock()
    assert values(redis_nodes, ["a", "b", "c"]) == [[None] * 3] * 3


def test_a_set_overlapping_a_held_name_takes_nothing(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    single = rs.new_mutex("shared", expiry=10)
    single.lock()
    mm = rs.new_multi_mutex(["free-1", "shared", "free-2"], tries=2, retry_delay=0.01)
    with pytest.raises(LockTaken) as caught:
        mm.lock()
    assert caught.value.retry_after is not None
    assert 5 < caught.value.retry_after <= 10
    assert values(redis_nodes, ["free-1", "free-2"]) == [[None, None]] * 3  # none taken
    assert not mm.try_lock()
    assert single.unlock()
    assert mm.try_lock()
    assert not rs.new_mutex("shared").try_lock()  # every name of the set is held
    assert mm.unlock()


def test_unlock_is_false_when_a_key_was_lost(rs: Redsync, redis_nodes: list[RedisServer]) -> None:
    mm = rs.new_multi_mutex(["x", "y"])
    mm.lock()
    for server in redis_nodes:  # an operator deletes one of the keys everywhere
        client = server.client()
        client.delete("y")
        client.close()
    assert not mm.valid()
    assert not mm.unlock()
    assert values(redis_nodes, ["x", "y"]) == [[None, None]] * 3  # ours deleted anyway


def test_auto_extend_keeps_every_key(rs: Redsync, redis_nodes: list[RedisServer]) -> None:
    with rs.new_multi_mutex(["k1", "k2"], expiry=0.3, auto_extend=True) as mm:
        time.sleep(1.0)
        assert mm.held
        assert not mm.lost
        assert values(redis_nodes, ["k1", "k2"]) == [[mm.value] * 2] * 3
    assert values(redis_nodes, ["k1", "k2"]) == [[None, None]] * 3


def test_overlapping_sets_in_any_order_never_overlap_or_deadlock(rs: Redsync) -> None:
    sets = [["a", "b"], ["b", "c"], ["c", "a"], ["c", "b", "a"]]
    inside: list[str] = []
    overlaps: list[tuple[str, ...]] = []
    done = []
    guard = threading.Lock()

    def worker(names: list[str]) -> None:
        for _ in range(5):
            with rs.new_multi_mutex(names, expiry=5, tries=None, retry_delay=0.005):
                with guard:
                    if set(inside) & set(names):
                        overlaps.append(tuple(names))
                    inside.extend(names)
                time.sleep(0.005)
                with guard:
                    for name in names:
                        inside.remove(name)
        done.append(names)

    threads = [threading.Thread(target=worker, args=(names,)) for names in sets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(done) == len(sets)
    assert overlaps == []


@pytest.mark.parametrize(
    "names",
    [
        pytest.param([], id="empty"),
        pytest.param("abc", id="a-string"),
        pytest.param(["ok", ""], id="an-empty-name"),
        pytest.param(None, id="none"),
    ],
)
def test_invalid_names_are_refused(names: object) -> None:
    with Redsync(["memory://mm-config"]) as rs, pytest.raises(ConfigurationError):
        rs.new_multi_mutex(names)  # type: ignore[arg-type]


def test_a_cluster_node_takes_keys_of_different_slots_separately(
    redis_cluster: LocalRedisCluster,
) -> None:
    client: redis.cluster.RedisCluster = redis_cluster.client()
    names = [f"multi:{i}" for i in range(6)]
    assert len({client.keyslot(name) for name in names}) > 1
    try:
        with Redsync([client]) as rs:
            mm = rs.new_multi_mutex(names, expiry=5)
            mm.lock()
            assert all(client.get(name) == mm.value.encode() for name in names)
            blocker = rs.new_mutex(names[3], tries=1)
            assert not blocker.try_lock()
            other = rs.new_multi_mutex(["free:1", "free:2", names[3]], tries=1)
            assert not other.try_lock()
            assert client.exists("free:1", "free:2") == 0  # given back: all or none
            assert mm.extend(9.0)
            assert all(8000 < client.pttl(name) <= 9000 for name in names)
            assert mm.unlock()
            assert client.exists(*names) == 0
            sem = rs.new_semaphore("csem", 3)  # permits in several slots too
            assert sem.try_acquire()
            assert client.get(sem.key) == sem.value.encode()
            assert sem.release()
    finally:
        client.close()


# --- asyncio -------------------------------------------------------------------------------


async def test_async_all_or_none_and_released_together(
    ars: AsyncRedsync, redis_nodes: list[RedisServer]
) -> None:
    holder = ars.new_mutex("a2", expiry=10)
    await holder.lock()
    mm = ars.new_multi_mutex(["a1", "a2"], tries=1)
    assert not await mm.try_lock()
    assert values(redis_nodes, ["a1"]) == [[None]] * 3
    await holder.unlock()
    async with mm:
        assert values(redis_nodes, ["a1", "a2"]) == [[mm.value] * 2] * 3
        assert await mm.extend()
        assert await mm.valid()
    assert values(redis_nodes, ["a1", "a2"]) == [[None, None]] * 3


async def test_async_auto_extend_keeps_every_key(
    ars: AsyncRedsync, redis_nodes: list[RedisServer]
) -> None:
    async with ars.new_multi_mutex(["ak1", "ak2"], expiry=0.3, auto_extend=True) as mm:
        await asyncio.sleep(1.0)
        assert mm.held
        assert values(redis_nodes, ["ak1", "ak2"]) == [[mm.value] * 2] * 3


async def test_async_cluster_node_takes_keys_of_different_slots_separately(
    redis_cluster: LocalRedisCluster,
) -> None:
    client = redis.asyncio.cluster.RedisCluster(
        host="127.0.0.1", port=redis_cluster.servers[0].port
    )
    names = [f"amulti:{i}" for i in range(6)]
    try:
        async with AsyncRedsync([client]) as ars:
            mm = ars.new_multi_mutex(names, expiry=5)
            await mm.lock()
            assert [await client.get(name) for name in names] == [mm.value.encode()] * 6
            assert not await ars.new_multi_mutex(["afree", names[2]], tries=1).try_lock()
            assert await client.exists("afree") == 0
            assert await mm.unlock()
            assert await client.exists(*names) == 0
    finally:
        await client.aclose()
