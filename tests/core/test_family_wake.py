"""wake_on_release for semaphores and multi-mutexes against real nodes, sync and asyncio.

The retry delay is fixed and long (5 s) and the waiter has two tries, so a waiter that gets its
permit or its keys with **one** counted attempt (the ``lock`` event of ``redsync_core.hooks``)
got them by an early attempt: it was woken by a release notice, not by its delay. Without
notices the same wait takes its second, scheduled try. No timing is asserted.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio.cluster
import redis.cluster
from test_wake import LOCKER_PW, _acl_urls, channels, eventually, urls

from redsync_core import AsyncRedsync, Redsync, hooks
from redsync_core._transport.commands import notice_payload
from redsync_core.testing import LocalRedisCluster, RedisServer

LONG_DELAY = 5.0
RELEASE_AFTER = 0.3
GIVE_UP = 30.0  # a timeout far beyond the two tries: a broken wake-up fails, it never hangs


class Attempts(hooks.Listener):
    """Counts the tries of every finished lock() call, by lock name."""

    def __init__(self) -> None:
        self.by_name: dict[str, list[tuple[str, int]]] = {}

    def lock(self, event: hooks.LockEvent) -> None:
        self.by_name.setdefault(event.name, []).append((event.outcome, event.attempts))


@pytest.fixture
def attempts() -> Iterator[Attempts]:
    listener = Attempts()
    hooks.add_listener(listener)
    yield listener
    hooks.remove_listener(listener)


def release_later(release: Any) -> threading.Timer:
    timer = threading.Timer(RELEASE_AFTER, release)
    timer.start()
    return timer


# --- semaphores -------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2], ids=["limit=1", "limit=2"])
def test_a_semaphore_waiter_wakes_when_a_permit_is_released(
    redis_nodes: list[RedisServer], attempts: Attempts, limit: int
) -> None:
    with Redsync(urls(redis_nodes)) as holders_rs, Redsync(urls(redis_nodes)) as rs:
        holders = [holders_rs.new_semaphore("sem:w", limit) for _ in range(limit)]
        for holder in holders:
            holder.acquire()
        given_back = holders[-1].permit
        timer = release_later(holders[-1].release)
        waiter = rs.new_semaphore("sem:w", limit, retry_delay=LONG_DELAY, tries=2)
        waiter.acquire(timeout=GIVE_UP)
        timer.join()
        assert waiter.permit == given_back
        assert attempts.by_name["sem:w"][-1] == ("acquired", 1)  # woken: no second try
        assert waiter.release()
        for holder in holders[:-1]:
            assert holder.release()
        # Nothing stays subscribed once nobody waits (after the linger).
        assert eventually(lambda: not any(channels(s) for s in redis_nodes))


@pytest.mark.parametrize("limit", [1, 2], ids=["limit=1", "limit=2"])
async def test_an_async_semaphore_waiter_wakes_when_a_permit_is_released(
    redis_nodes: list[RedisServer], attempts: Attempts, limit: int
) -> None:
    async with AsyncRedsync(urls(redis_nodes)) as holders_rs, AsyncRedsync(urls(redis_nodes)) as rs:
        holders = [holders_rs.new_semaphore("sem:w", limit) for _ in range(limit)]
        for holder in holders:
            await holder.acquire()
        given_back = holders[-1].permit
        loop = asyncio.get_running_loop()
        loop.call_later(RELEASE_AFTER, asyncio.ensure_future, holders[-1].release())
        waiter = rs.new_semaphore("sem:w", limit, retry_delay=LONG_DELAY, tries=2)
        await waiter.acquire(timeout=GIVE_UP)
        assert waiter.permit == given_back
        assert attempts.by_name["sem:w"][-1] == ("acquired", 1)
        assert await waiter.release()
        for holder in holders[:-1]:
            assert await holder.release()


def test_without_wake_on_release_a_semaphore_waiter_waits_its_delay(
    redis_nodes: list[RedisServer], attempts: Attempts
) -> None:
    with (
        Redsync(urls(redis_nodes)) as holders_rs,
        Redsync(urls(redis_nodes), wake_on_release=False) as rs,
    ):
        holder = holders_rs.new_semaphore("sem:off", 1)
        holder.acquire()
        timer = release_later(holder.release)
        waiter = rs.new_semaphore("sem:off", 1, retry_delay=1.0, tries=2)
        waiter.acquire(timeout=GIVE_UP)
        timer.join()
        assert attempts.by_name["sem:off"][-1] == ("acquired", 2)  # the scheduled try
        assert not any(channels(s) for s in redis_nodes)  # nothing was subscribed
        assert waiter.release()


async def test_without_wake_on_release_an_async_semaphore_waiter_waits_its_delay(
    redis_nodes: list[RedisServer], attempts: Attempts
) -> None:
    async with (
        AsyncRedsync(urls(redis_nodes)) as holders_rs,
        AsyncRedsync(urls(redis_nodes), wake_on_release=False) as rs,
    ):
        holder = holders_rs.new_semaphore("sem:off", 1)
        await holder.acquire()
        loop = asyncio.get_running_loop()
        loop.call_later(RELEASE_AFTER, asyncio.ensure_future, holder.release())
        waiter = rs.new_semaphore("sem:off", 1, retry_delay=1.0, tries=2)
        await waiter.acquire(timeout=GIVE_UP)
        assert attempts.by_name["sem:off"][-1] == ("acquired", 2)
        assert not any(channels(s) for s in redis_nodes)
        assert await waiter.release()


# --- multi-mutexes ------------------------------------------------------------------------------


@pytest.mark.parametrize("holder", ["overlapping set", "mutex on its last key"])
def test_a_multi_mutex_waiter_wakes_when_any_of_its_keys_is_released(
    redis_nodes: list[RedisServer], attempts: Attempts, holder: str
) -> None:
    with Redsync(urls(redis_nodes)) as holder_rs, Redsync(urls(redis_nodes)) as rs:
        if holder == "overlapping set":  # one script per node, publishing for each key
            held: Any = holder_rs.new_multi_mutex(["mm:a", "mm:b"])
        else:  # a key the waiter's waits name second, not first
            held = holder_rs.new_mutex("mm:c")
        held.lock()
        timer = release_later(held.unlock)
        waiter = rs.new_multi_mutex(["mm:b", "mm:c"], retry_delay=LONG_DELAY, tries=2)
        waiter.lock(timeout=GIVE_UP)
        timer.join()
        assert attempts.by_name["mm:b,mm:c"][-1] == ("acquired", 1)
        assert waiter.unlock()


@pytest.mark.parametrize(
    ("wake_on_release", "tries_used"), [(True, 1), (False, 2)], ids=["woken", "not woken"]
)
async def test_an_async_multi_mutex_waiter_wakes_when_an_overlapping_set_is_released(
    redis_nodes: list[RedisServer], attempts: Attempts, wake_on_release: bool, tries_used: int
) -> None:
    delay = LONG_DELAY if wake_on_release else 1.0  # without notices: the scheduled try
    async with (
        AsyncRedsync(urls(redis_nodes)) as holder_rs,
        AsyncRedsync(urls(redis_nodes), wake_on_release=wake_on_release) as rs,
    ):
        holder = holder_rs.new_multi_mutex(["mm:a", "mm:b"])
        await holder.lock()
        loop = asyncio.get_running_loop()
        loop.call_later(RELEASE_AFTER, asyncio.ensure_future, holder.unlock())
        waiter = rs.new_multi_mutex(["mm:b", "mm:c"], retry_delay=delay, tries=2)
        await waiter.lock(timeout=GIVE_UP)
        assert attempts.by_name["mm:b,mm:c"][-1] == ("acquired", tries_used)
        assert await waiter.unlock()


def test_a_multi_mutex_release_publishes_a_digest_on_every_key(
    redis_nodes: list[RedisServer],
) -> None:
    listener = redis_nodes[0].client()
    pubsub = listener.pubsub()
    pubsub.subscribe("app:mm:a", "app:mm:b")
    for _ in range(2):
        assert pubsub.get_message(timeout=1.0) is not None  # the confirmations
    with Redsync(urls(redis_nodes), key_prefix="app:") as rs:
        mm = rs.new_multi_mutex(["mm:b", "mm:a"])
        mm.lock()
        value = mm.value
        assert mm.unlock()
    messages = [pubsub.get_message(timeout=2.0) for _ in range(2)]
    pubsub.close()
    listener.close()
    assert value is not None
    assert sorted(_text(m["channel"]) for m in messages if m) == ["app:mm:a", "app:mm:b"]
    assert {_text(m["data"]) for m in messages if m} == {notice_payload(value)}


# --- refused pub/sub and Redis Cluster ----------------------------------------------------------


def test_a_user_without_channel_rights_uses_semaphores_and_multi_mutexes_as_before(
    redis_servers: Any, attempts: Attempts, caplog: pytest.LogCaptureFixture
) -> None:
    servers, acl_urls = _acl_urls(redis_servers)
    caplog.set_level(logging.WARNING, logger="redsync")
    with Redsync(acl_urls, key_prefix="locks:") as rs:
        holder = rs.new_semaphore("s", 1)
        holder.acquire()
        timer = release_later(holder.release)
        waiter = rs.new_semaphore("s", 1, retry_delay=0.6, tries=2)
        waiter.acquire(timeout=GIVE_UP)  # the subscribe is refused: the delay, as before
        timer.join()
        assert attempts.by_name["s"][-1] == ("acquired", 2)
        assert waiter.release()
        mm = rs.new_multi_mutex(["a", "b"])
        mm.lock()
        assert mm.unlock()  # the PUBLISH inside RELEASE_ALL is refused quietly
    for server in servers:
        admin = server.client()
        assert admin.exists("locks:s:0", "locks:a", "locks:b") == 0
        admin.close()
    refusals = [r for r in caplog.records if "refused the release notices" in r.getMessage()]
    assert len(refusals) == 1
    assert LOCKER_PW not in caplog.text


def test_cluster_family_waiters_wake_by_sharded_notices(
    redis_cluster: LocalRedisCluster, attempts: Attempts
) -> None:
    client: redis.cluster.RedisCluster = redis_cluster.client()
    other: redis.cluster.RedisCluster = redis_cluster.client()
    names = ["cw:a", "cw:b", "cw:c"]
    assert len({client.keyslot(name) for name in names}) > 1  # split by slot: several scripts
    try:
        with Redsync([other]) as holder_rs, Redsync([client]) as rs:
            holder = holder_rs.new_multi_mutex(names[:2])
            holder.lock()
            timer = release_later(holder.unlock)
            waiter = rs.new_multi_mutex(names[1:], retry_delay=LONG_DELAY, tries=2)
            waiter.lock(timeout=GIVE_UP)
            timer.join()
            assert attempts.by_name["cw:b,cw:c"][-1] == ("acquired", 1)
            assert waiter.unlock()
            sems = [holder_rs.new_semaphore("cw:s", 2) for _ in range(2)]
            for s in sems:
                s.acquire()
            timer = release_later(sems[0].release)
            sem_waiter = rs.new_semaphore("cw:s", 2, retry_delay=LONG_DELAY, tries=2)
            sem_waiter.acquire(timeout=GIVE_UP)
            timer.join()
            assert attempts.by_name["cw:s"][-1] == ("acquired", 1)
            assert sem_waiter.release()
            assert sems[1].release()
    finally:
        client.close()
        other.close()


def _text(data: object) -> str:
    return data.decode() if isinstance(data, bytes) else str(data)


async def test_async_cluster_multi_mutex_waiters_wake_by_sharded_notices(
    redis_cluster: LocalRedisCluster, attempts: Attempts
) -> None:
    port = redis_cluster.servers[0].port
    client = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=port)
    other = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=port)
    try:
        async with AsyncRedsync([other]) as holder_rs, AsyncRedsync([client]) as rs:
            holder = holder_rs.new_multi_mutex(["cw:a", "cw:b"])
            await holder.lock()
            loop = asyncio.get_running_loop()
            loop.call_later(RELEASE_AFTER, asyncio.ensure_future, holder.unlock())
            waiter = rs.new_multi_mutex(["cw:b", "cw:c"], retry_delay=LONG_DELAY, tries=2)
            await waiter.lock(timeout=GIVE_UP)
            assert attempts.by_name["cw:b,cw:c"][-1] == ("acquired", 1)
            assert await waiter.unlock()
    finally:
        await client.aclose()
        await other.aclose()
