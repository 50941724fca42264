"""A Redis Cluster as one Redlock node: each key goes to the master that owns its slot."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis.asyncio.cluster

from redsync_core import AsyncRedsync, LockTaken, Redsync
from redsync_core._algorithm.effects import FanOut, NodeReply, Op, Status
from redsync_core.testing import LocalRedisCluster

NAMES = [f"cluster:{i}" for i in range(12)]


def owners(cluster_client: redis.cluster.RedisCluster, keys: list[str]) -> set[str]:
    """The masters (host:port) that own the slots of ``keys``."""
    found = set()
    for key in keys:
        node = cluster_client.get_node_from_key(key)
        found.add(f"{node.host}:{node.port}")
    return found


@pytest.fixture
def cluster_client(redis_cluster: LocalRedisCluster) -> Iterator[redis.cluster.RedisCluster]:
    client = redis_cluster.client()
    yield client
    client.close()


def test_keys_in_different_slots_lock_extend_and_unlock(
    cluster_client: redis.cluster.RedisCluster,
) -> None:
    assert len(owners(cluster_client, NAMES)) == 3  # the names really spread over the masters
    with Redsync([cluster_client]) as rs:
        assert rs.quorum == 1
        mutexes = [rs.new_mutex(name, expiry=5) for name in NAMES]
        for m in mutexes:
            m.lock()
        for m in mutexes:
            assert cluster_client.get(m.key) == m.value.encode()
            assert 4000 < cluster_client.pttl(m.key) <= 5000
            assert m.valid()
        assert all(m.extend(9.0) for m in mutexes)
        for m in mutexes:
            assert 8000 < cluster_client.pttl(m.key) <= 9000
        other = rs.new_mutex(NAMES[0], expiry=5, tries=1)
        with pytest.raises(LockTaken) as caught:
            other.lock()
        assert caught.value.nodes == (0,)
        assert all(m.unlock() for m in mutexes)
        assert cluster_client.exists(*NAMES) == 0
        assert rs.inspect(NAMES[0]).holder is None


def test_cluster_scripts_survive_script_flush(
    redis_cluster: LocalRedisCluster, cluster_client: redis.cluster.RedisCluster
) -> None:
    with Redsync([cluster_client]) as rs:
        mutexes = [rs.new_mutex(name, expiry=5) for name in NAMES[:6]]
        for m in mutexes:
            m.lock()
            assert m.extend()
        for server in redis_cluster.servers:
            client = server.client()
            client.script_flush()
            client.close()
        assert all(m.extend(6.0) for m in mutexes)
        assert all(m.unlock() for m in mutexes)
        assert cluster_client.exists(*NAMES[:6]) == 0


async def test_async_cluster_client_as_one_node(
    redis_cluster: LocalRedisCluster, cluster_client: redis.cluster.RedisCluster
) -> None:
    port = redis_cluster.servers[0].port
    client = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=port)
    try:
        async with AsyncRedsync([client]) as ars:
            mutexes = [ars.new_mutex(name, expiry=5) for name in NAMES]
            for m in mutexes:
                await m.lock()
            for m in mutexes:
                assert cluster_client.get(m.key) == m.value.encode()
                assert await m.valid()
            assert all([await m.extend(9.0) for m in mutexes])
            for m in mutexes:
                assert 8000 < cluster_client.pttl(m.key) <= 9000
            with pytest.raises(LockTaken):
                await ars.new_mutex(NAMES[3], expiry=5, tries=1).lock()
            assert all([await m.unlock() for m in mutexes])
            assert cluster_client.exists(*NAMES) == 0
    finally:
        await client.aclose()


def scripts_run(cluster: LocalRedisCluster, reset: bool = False) -> int:
    """How many scripts the masters ran (since the last ``reset``)."""
    total = 0
    for server in cluster.servers:
        client = server.client()
        try:
            if reset:
                client.config_resetstat()
            stats = client.info("commandstats")
        finally:
            client.close()
        for name in ("evalsha", "eval"):
            stat = stats.get(f"cmdstat_{name}", {})
            total += int(stat.get("calls", 0)) - int(stat.get("failed_calls", 0))
    return total


def test_a_try_lock_is_plain_on_each_master_and_through_the_client(
    redis_cluster: LocalRedisCluster, cluster_client: redis.cluster.RedisCluster
) -> None:
    scripts_run(redis_cluster, reset=True)
    with Redsync([cluster_client]) as rs:
        for name in NAMES:  # on our connection to the slot's master: SET NX PX, then PTTL
            mutex = rs.new_mutex(name, expiry=5, tries=1)
            assert mutex.try_lock()
            assert not rs.new_mutex(name).try_lock()  # held there: both replies read
            assert mutex.extend()
            assert mutex.unlock()
        assert scripts_run(redis_cluster) == 2 * len(NAMES)  # the extensions and releases
        # Through the cluster client (after a redirection): both commands in one pipeline.
        (node,) = rs._nodes  # type: ignore[attr-defined]
        effect = FanOut(Op.ACQUIRE, NAMES[0], "through", ttl_ms=5000, fresh=True)
        assert node._through_client(effect) == NodeReply(Status.OK)
        other = FanOut(Op.ACQUIRE, NAMES[0], "other", ttl_ms=5000, fresh=True)
        taken = node._through_client(other)
        assert taken.status is Status.TAKEN
        assert taken.ttl_ms is not None
        assert 4000 < taken.ttl_ms <= 5000
        assert cluster_client.get(NAMES[0]) == b"through"
        cluster_client.delete(NAMES[0])
    assert scripts_run(redis_cluster) == 2 * len(NAMES)


async def test_a_try_lock_is_plain_through_the_async_cluster_client(
    redis_cluster: LocalRedisCluster, cluster_client: redis.cluster.RedisCluster
) -> None:
    scripts_run(redis_cluster, reset=True)
    port = redis_cluster.servers[0].port
    client = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=port)
    try:
        async with AsyncRedsync([client]) as ars:
            for name in NAMES:
                mutex = ars.new_mutex(name, expiry=5, tries=1)
                assert await mutex.try_lock()
                assert cluster_client.get(name) == mutex.value.encode()  # type: ignore[union-attr]
                with pytest.raises(LockTaken) as caught:
                    await ars.new_mutex(name, tries=1).lock()
                assert caught.value.retry_after is not None
                assert 4.0 < caught.value.retry_after <= 5.0
                assert await mutex.extend()
                assert await mutex.unlock()
    finally:
        await client.aclose()
    assert scripts_run(redis_cluster) == 2 * len(NAMES)


def test_a_cluster_next_to_standalone_nodes(
    cluster_client: redis.cluster.RedisCluster, redis_servers: object
) -> None:
    standalone = redis_servers(2)  # type: ignore[operator]
    with Redsync([cluster_client, *(server.url for server in standalone)]) as rs:
        assert rs.quorum == 2
        m = rs.new_mutex(NAMES[5], expiry=5)
        m.lock()
        assert cluster_client.get(m.key) == m.value.encode()
        standalone[0].kill()
        assert m.extend()
        assert m.unlock()
        assert cluster_client.exists(m.key) == 0
