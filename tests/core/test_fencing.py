"""Fencing tokens (``fencing=True``, ``mutex.token``) against real redis-server nodes, sync and
asyncio: tokens strictly increase from holder to holder (after unlock, after expiry, after a
restart with persistence), cost one extra fan-out, and live in one counter key per lock name.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest
from polling import reset_stats
from redis.cluster import key_slot

from redsync_core import AsyncRedsync, Redsync
from redsync_core._algorithm.fencing import fence_key
from redsync_core.testing import RedisServer


def urls(servers: Sequence[RedisServer]) -> list[str]:
    return [server.url for server in servers]


def counters(servers: Sequence[RedisServer], key: str) -> list[int | None]:
    out = []
    for server in servers:
        with server.client() as client:
            raw = client.get(fence_key(key))
            out.append(None if raw is None else int(raw))
    return out


def calls(servers: Sequence[RedisServer], command: str) -> int:
    """Return how often the nodes ran ``command`` since the last reset (INFO commandstats)."""
    total = 0
    for server in servers:
        with server.client() as client:
            total += int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))
    return total


# --- sync ----------------------------------------------------------------------------------


def test_tokens_strictly_increase_from_holder_to_holder(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    tokens = []
    for _ in range(5):
        m = rs.new_mutex("orders:42", fencing=True)
        m.lock()
        assert isinstance(m.token, int)
        tokens.append(m.token)
        assert m.unlock()
    assert tokens == sorted(set(tokens))
    assert counters(redis_nodes, "orders:42") == [tokens[-1]] * 3


def test_try_lock_yields_a_token_and_a_busy_try_leaves_the_counters_alone(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    holder = rs.new_mutex("orders:42", fencing=True)
    assert holder.try_lock()
    before = counters(redis_nodes, "orders:42")
    assert not rs.new_mutex("orders:42", fencing=True).try_lock()
    assert counters(redis_nodes, "orders:42") == before
    holder.unlock()
    after = rs.new_mutex("orders:42", fencing=True)
    assert after.try_lock()
    assert after.token is not None
    assert holder.token is not None
    assert after.token > holder.token


def test_a_holder_after_expiry_gets_a_larger_token(rs: Redsync) -> None:
    first = rs.new_mutex("orders:42", fencing=True, expiry=0.2)
    first.lock()
    time.sleep(0.25)  # first's validity ended: it never unlocked
    second = rs.new_mutex("orders:42", fencing=True, expiry=0.2)
    second.lock()
    assert first.token is not None
    assert second.token is not None
    assert second.token > first.token


def test_no_token_without_fencing_and_no_counter_key(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    m = rs.new_mutex("orders:42")
    m.lock()
    assert m.token is None
    m.unlock()
    assert counters(redis_nodes, "orders:42") == [None] * 3


def test_the_counter_lives_under_the_prefix_without_expiry(redis_nodes: list[RedisServer]) -> None:
    with Redsync(urls(redis_nodes), key_prefix="app:") as rs:
        m = rs.new_mutex("orders:42", fencing=True)
        m.lock()
        m.unlock()
        listing = rs.list_locks()
    for server in redis_nodes:
        with server.client() as client:
            keys = sorted(k.decode() for k in client.keys("*"))
            assert keys == ["app:orders:42:fence{app:orders:42}"]
            assert client.pttl(keys[0]) == -1  # no expiry: a counter must never go back
    assert list(listing) == []
    assert listing.skipped == 1  # listed as "not a lock", and never released by the tools


def test_a_fenced_lock_costs_one_extra_fan_out(rs: Redsync, redis_nodes: list[RedisServer]) -> None:
    for fencing in (False, True):  # warm up: scripts loaded, connections open
        m = rs.new_mutex("warm", fencing=fencing)
        m.lock()
        m.unlock()
    plain, fenced = rs.new_mutex("orders:1"), rs.new_mutex("orders:2", fencing=True)
    reset_stats(redis_nodes)
    plain.lock()
    assert calls(redis_nodes, "evalsha") == 3  # the acquire script, once per node
    reset_stats(redis_nodes)
    fenced.lock()
    # FENCED_ACQUIRE and FENCE on each node, scripts by SHA: one extra fan-out, no more
    assert calls(redis_nodes, "evalsha") == 6
    assert calls(redis_nodes, "eval") == 0


def test_tokens_keep_increasing_after_a_restart_with_persistence(
    redis_servers: object,
) -> None:
    durable = redis_servers(3, extra_args=["--appendonly", "yes", "--appendfsync", "always"])  # type: ignore[operator]
    with Redsync(urls(durable)) as rs:
        first = rs.new_mutex("orders:42", fencing=True)
        first.lock()
        first.unlock()
        for server in durable:  # every node crashes and comes back from its AOF
            server.restart()
        second = rs.new_mutex("orders:42", fencing=True)
        second.lock()
        assert first.token is not None
        assert second.token is not None
        assert second.token > first.token


def test_restarts_without_persistence_start_the_tokens_over(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    # Outside the assumptions, and documented: empty nodes have no counters left.
    first = rs.new_mutex("orders:42", fencing=True)
    for _ in range(3):
        first.lock()
        first.unlock()
    assert first.token == 3
    for server in redis_nodes:
        server.restart()
    second = rs.new_mutex("orders:42", fencing=True)
    second.lock()
    assert second.token == 1


@pytest.mark.parametrize(
    "key",
    ["orders:42", "app:{user:7}:orders", "a{b", "{}x", "a}b"],
    ids=["plain", "hash-tag", "open-brace", "empty-tag", "close-brace"],
)
def test_the_counter_key_starts_with_the_lock_key(key: str) -> None:
    counter = fence_key(key)
    assert counter.startswith(key + ":fence")
    if ("{" not in key and "}" not in key) or "{user:7}" in key:
        assert key_slot(counter.encode()) == key_slot(key.encode())  # one script, one slot


def test_fenced_locks_on_a_cluster_node(redis_cluster: object) -> None:
    client = redis_cluster.client()  # type: ignore[attr-defined]
    try:
        with Redsync([client]) as rs:
            tokens = []
            for name in ("orders:42", "orders:42", "app:{user:7}:x", "app:{user:7}:x"):
                m = rs.new_mutex(name, fencing=True)
                m.lock()
                tokens.append(m.token)
                m.unlock()
        assert tokens == [1, 2, 1, 2]
    finally:
        client.close()


# --- asyncio -------------------------------------------------------------------------------


async def test_async_tokens_strictly_increase_from_holder_to_holder(
    ars: AsyncRedsync, redis_nodes: list[RedisServer]
) -> None:
    tokens = []
    for _ in range(5):
        m = ars.new_mutex("orders:42", fencing=True)
        await m.lock()
        assert isinstance(m.token, int)
        tokens.append(m.token)
        assert await m.unlock()
    assert tokens == sorted(set(tokens))
    assert counters(redis_nodes, "orders:42") == [tokens[-1]] * 3


async def test_async_a_holder_after_expiry_gets_a_larger_token(ars: AsyncRedsync) -> None:
    first = ars.new_mutex("orders:42", fencing=True, expiry=0.2)
    await first.lock()
    await asyncio.sleep(0.25)
    second = ars.new_mutex("orders:42", fencing=True, expiry=0.2)
    assert await second.try_lock()
    assert first.token is not None
    assert second.token is not None
    assert second.token > first.token


async def test_async_no_token_without_fencing(ars: AsyncRedsync) -> None:
    m = ars.new_mutex("orders:42")
    await m.lock()
    assert m.token is None
    await m.unlock()


async def test_async_concurrent_holders_get_distinct_increasing_tokens(
    ars: AsyncRedsync,
) -> None:
    granted: list[tuple[float, float, int]] = []

    async def worker() -> None:
        for _ in range(5):
            m = ars.new_mutex("orders:42", fencing=True, retry_delay=0.005, tries=None)
            await m.lock()
            start = time.monotonic()
            await asyncio.sleep(0.002)
            assert m.token is not None
            granted.append((start, time.monotonic(), m.token))
            await m.unlock()

    await asyncio.gather(*(worker() for _ in range(4)))
    granted.sort()
    assert [t for _, _, t in granted] == sorted({t for _, _, t in granted})
