"""wake_on_release: a waiter wakes on a release notice or the holder's expiry, not only its delay.

Real redis-server nodes, sync and asyncio. The timing bounds are generous on purpose: the retry
delay is fixed and long (5 s) and a woken waiter must get the lock in under 2 s, so a pass cannot
come from luck with the delay, and a slow machine cannot make it fail.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.asyncio.cluster
from polling import eventually
from scenarios import ADMIN_PW, LOCKER_PW, NO_CHANNELS, servers_without_channel_rights

from redsync_core import AsyncRedsync, LockTaken, Redsync
from redsync_core._algorithm.queues import wait_key, wake_channel
from redsync_core._transport.notices import inbox
from redsync_core.testing import RedisServer

LONG_DELAY = 5.0
WAKE_BOUND = 2.0


def subscribers(server: RedisServer) -> list[dict[str, Any]]:
    """Return the server's subscriber connections (CLIENT LIST), subscribed now or before."""
    client = server.client()
    try:
        return [
            c for c in client.client_list() if "P" in c["flags"] or c["cmd"].endswith("subscribe")
        ]
    finally:
        client.close()


def channels(server: RedisServer) -> set[str]:
    client = server.client()
    try:
        return {c.decode() if isinstance(c, bytes) else c for c in client.pubsub_channels()}
    finally:
        client.close()


def own_channels(keys: list[str]) -> set[str]:
    """The channels this process subscribes for waiters of ``keys``: each key's own, and its
    wake channel for this process (where a release wakes a queued waiter of ours)."""
    return {*keys, *(wake_channel(key, inbox()) or key for key in keys)}


def held_elsewhere(server_urls: list[str], name: str, release_after: float) -> threading.Thread:
    """Lock ``name`` with another Redsync now; unlock it after ``release_after`` s (a thread)."""
    rs = Redsync(server_urls)
    holder = rs.new_mutex(name)
    holder.lock()

    def release() -> None:
        time.sleep(release_after)
        holder.unlock()
        rs.close()

    thread = threading.Thread(target=release)
    thread.start()
    return thread


def urls(servers: list[RedisServer]) -> list[str]:
    return [s.url for s in servers]


# --- waking -----------------------------------------------------------------------------------


def test_a_waiter_wakes_when_the_lock_is_released(redis_nodes: list[RedisServer]) -> None:
    thread = held_elsewhere(urls(redis_nodes), "wake:1", 0.5)
    with Redsync(urls(redis_nodes)) as rs:
        waiter = rs.new_mutex("wake:1", retry_delay=LONG_DELAY, tries=3)
        started = time.monotonic()
        waiter.lock()
        waited = time.monotonic() - started
        assert waiter.unlock()
    thread.join()
    assert 0.4 < waited < WAKE_BOUND


async def test_an_async_waiter_wakes_when_the_lock_is_released(
    redis_nodes: list[RedisServer],
) -> None:
    thread = held_elsewhere(urls(redis_nodes), "wake:1", 0.5)
    async with AsyncRedsync(urls(redis_nodes)) as rs:
        waiter = rs.new_mutex("wake:1", retry_delay=LONG_DELAY, tries=3)
        started = time.monotonic()
        await waiter.lock()
        waited = time.monotonic() - started
        assert await waiter.unlock()
    thread.join()
    assert 0.4 < waited < WAKE_BOUND


def test_without_wake_on_release_a_waiter_sleeps_its_delay(redis_nodes: list[RedisServer]) -> None:
    thread = held_elsewhere(urls(redis_nodes), "wake:off", 0.2)
    with Redsync(urls(redis_nodes), wake_on_release=False) as rs:
        waiter = rs.new_mutex("wake:off", retry_delay=1.5, tries=3)
        started = time.monotonic()
        waiter.lock()
        waited = time.monotonic() - started
        assert not any(subscribers(s) for s in redis_nodes)  # nothing subscribed
        waiter.unlock()
    thread.join()
    assert waited >= 1.5


def test_force_release_wakes_the_waiters(redis_nodes: list[RedisServer]) -> None:
    with Redsync(urls(redis_nodes)) as admin, Redsync(urls(redis_nodes)) as rs:
        admin.new_mutex("wake:forced", expiry=60).lock()
        timer = threading.Timer(0.5, admin.force_release, ["wake:forced"])
        timer.start()
        started = time.monotonic()
        rs.new_mutex("wake:forced", retry_delay=LONG_DELAY, tries=3).lock()
        timer.join()
        assert time.monotonic() - started < WAKE_BOUND


def test_a_waiter_wakes_when_the_holders_keys_expire(redis_nodes: list[RedisServer]) -> None:
    """No notice at all (the holder never releases): the failed try's PTTLs say when to retry."""
    with Redsync(urls(redis_nodes)) as rs:
        rs.new_mutex("wake:expiry", expiry=0.6).lock()
        waiter = rs.new_mutex("wake:expiry", retry_delay=LONG_DELAY, tries=3)
        started = time.monotonic()
        waiter.lock()
        assert time.monotonic() - started < WAKE_BOUND


async def test_an_async_waiter_wakes_when_the_holders_keys_expire(
    redis_nodes: list[RedisServer],
) -> None:
    async with AsyncRedsync(urls(redis_nodes)) as rs:
        await rs.new_mutex("wake:expiry", expiry=0.6).lock()
        waiter = rs.new_mutex("wake:expiry", retry_delay=LONG_DELAY, tries=3)
        started = time.monotonic()
        await waiter.lock()
        assert time.monotonic() - started < WAKE_BOUND


# --- the retry schedule does not change --------------------------------------------------------


def _acquire_calls(servers: list[RedisServer]) -> int:
    total = 0
    for server in servers:
        client = server.client()
        stats = client.info("commandstats")
        client.close()
        total += int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    return total


def _publish_notices(servers: list[RedisServer], key: str, count: int, every: float) -> None:
    client = servers[0].client()
    for i in range(count):
        time.sleep(every)
        client.publish(key, f"not-a-release-{i}")  # a notice whose lock is still held
    client.close()


def test_early_tries_lost_to_another_holder_use_up_no_try(redis_nodes: list[RedisServer]) -> None:
    """Woken by notices while the lock stays taken: each early try loses, goes back to waiting
    the rest of the same delay, and is not counted; lock() still takes its full schedule."""
    with Redsync(urls(redis_nodes)) as rs:
        rs.new_mutex("wake:tries", expiry=60).lock()
        waiter = rs.new_mutex("wake:tries", retry_delay=1.0, tries=2)
        notices = threading.Thread(
            target=_publish_notices, args=(redis_nodes, "wake:tries", 3, 0.25)
        )
        before = _acquire_calls(redis_nodes)
        started = time.monotonic()
        notices.start()
        with pytest.raises(LockTaken) as taken:
            waiter.lock()
        waited = time.monotonic() - started
        notices.join()
        tries_sent = (_acquire_calls(redis_nodes) - before) // len(redis_nodes)
    assert taken.value.attempts == 2  # the schedule's tries, not the early ones
    assert waited >= 1.0  # the delay was waited out in full
    assert tries_sent >= 4  # 2 scheduled tries + the early ones the notices caused


async def test_async_early_tries_use_up_no_try(redis_nodes: list[RedisServer]) -> None:
    async with AsyncRedsync(urls(redis_nodes)) as rs:
        await rs.new_mutex("wake:tries", expiry=60).lock()
        waiter = rs.new_mutex("wake:tries", retry_delay=1.0, tries=2)
        notices = threading.Thread(
            target=_publish_notices, args=(redis_nodes, "wake:tries", 3, 0.25)
        )
        before = _acquire_calls(redis_nodes)
        started = time.monotonic()
        notices.start()
        with pytest.raises(LockTaken) as taken:
            await waiter.lock()
        waited = time.monotonic() - started
        await asyncio.to_thread(notices.join)
        tries_sent = (_acquire_calls(redis_nodes) - before) // len(redis_nodes)
    assert taken.value.attempts == 2
    assert waited >= 1.0
    assert tries_sent >= 4


# --- one subscriber connection per node, only while someone waits ---------------------------


def test_200_waiters_on_50_keys_share_one_subscriber_per_node(
    redis_nodes: list[RedisServer],
) -> None:
    keys = [f"wake:many:{i}" for i in range(50)]
    holders_rs = Redsync(urls(redis_nodes))
    holders = [holders_rs.new_mutex(key) for key in keys]
    for holder in holders:
        holder.lock()
    acquired: list[str] = []
    with Redsync(urls(redis_nodes)) as rs:

        def wait_for(key: str) -> None:
            mutex = rs.new_mutex(key, retry_delay=LONG_DELAY, tries=4, expiry=60)
            mutex.lock()
            acquired.append(key)
            mutex.unlock()

        before = {t for t in threading.enumerate() if t.name == "redsync-notices"}
        threads = [threading.Thread(target=wait_for, args=(k,)) for k in keys * 4]
        for thread in threads:
            thread.start()
        assert eventually(lambda: all(channels(s) == own_channels(keys) for s in redis_nodes))
        for server in redis_nodes:
            subs = subscribers(server)
            assert len(subs) == 1, subs  # one connection for 200 waiters
            assert int(subs[0]["sub"]) == 100  # 50 keys, and their wake channels
        readers = {t for t in threading.enumerate() if t.name == "redsync-notices"} - before
        assert len(readers) == 1  # one reader thread for every waiter, none per waiter
        started = time.monotonic()
        for holder in holders:
            holder.unlock()
        for thread in threads:
            thread.join()
        handed_over = time.monotonic() - started
        assert sorted(acquired) == sorted(keys * 4)
        # Nobody waits any more: nothing stays subscribed.
        assert eventually(lambda: not any(channels(s) for s in redis_nodes))
    holders_rs.close()
    assert not any(subscribers(s) for s in redis_nodes)  # close() closed the connections
    assert handed_over < LONG_DELAY  # four hand-overs per key, none waited a delay out


async def test_200_async_waiters_share_one_subscriber_per_node(
    redis_nodes: list[RedisServer],
) -> None:
    keys = [f"wake:many:{i}" for i in range(50)]
    async with AsyncRedsync(urls(redis_nodes)) as holders_rs:
        holders = [holders_rs.new_mutex(key) for key in keys]
        for holder in holders:
            await holder.lock()
        acquired: list[str] = []
        async with AsyncRedsync(urls(redis_nodes)) as rs:

            async def wait_for(key: str) -> None:
                mutex = rs.new_mutex(key, retry_delay=LONG_DELAY, tries=4, expiry=60)
                await mutex.lock()
                acquired.append(key)
                await mutex.unlock()

            tasks = [asyncio.ensure_future(wait_for(k)) for k in keys * 4]
            for _ in range(250):
                await asyncio.sleep(0.02)
                if all(channels(s) == own_channels(keys) for s in redis_nodes):
                    break
            for server in redis_nodes:
                subs = subscribers(server)
                assert len(subs) == 1, subs
                assert int(subs[0]["sub"]) == 100  # 50 keys, and their wake channels
            # The 200 waiters, this test, and one reader task per subscriber connection; on
            # Python 3.10 each waiter has one more (its asyncio.wait_for runs the wait as a task).
            per_waiter = 2 if sys.version_info < (3, 11) else 1
            assert len(asyncio.all_tasks()) <= per_waiter * len(tasks) + 1 + len(redis_nodes)
            started = time.monotonic()
            for holder in holders:
                await holder.unlock()
            await asyncio.gather(*tasks)
            handed_over = time.monotonic() - started
            assert sorted(acquired) == sorted(keys * 4)
            for _ in range(250):
                if not any(channels(s) for s in redis_nodes):
                    break
                await asyncio.sleep(0.02)
            assert not any(channels(s) for s in redis_nodes)
        assert not any(subscribers(s) for s in redis_nodes)
    assert handed_over < LONG_DELAY


# --- notices are hints: faults never block or fail a lock() -----------------------------------


def _acl_urls(redis_servers: Any) -> tuple[list[RedisServer], list[str]]:
    servers = servers_without_channel_rights(redis_servers)
    return servers, [f"redis://locker:{LOCKER_PW}@127.0.0.1:{s.port}/0" for s in servers]


def test_a_user_without_channel_rights_locks_as_before_with_one_warning(
    redis_servers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, acl_urls = _acl_urls(redis_servers)
    caplog.set_level(logging.WARNING, logger="redsync")
    with Redsync(acl_urls, key_prefix="locks:") as rs:
        for _ in range(2):
            holder = rs.new_mutex("a")
            holder.lock()
            timer = threading.Timer(0.2, holder.unlock)
            timer.start()
            started = time.monotonic()
            waiter = rs.new_mutex("a", retry_delay=0.6, tries=5)
            waiter.lock()  # the release's PUBLISH is refused inside the script: unlock works
            waited = time.monotonic() - started
            timer.join()
            assert waiter.unlock()
            assert 0.55 <= waited < 0.6 + WAKE_BOUND  # no notice: the delay, as before
    refusals = [r for r in caplog.records if "refused the release notices" in r.getMessage()]
    assert len(refusals) == 1
    assert LOCKER_PW not in caplog.text


async def test_async_user_without_channel_rights_locks_as_before_with_one_warning(
    redis_servers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, acl_urls = _acl_urls(redis_servers)
    caplog.set_level(logging.WARNING, logger="redsync")
    async with AsyncRedsync(acl_urls, key_prefix="locks:") as rs:
        for _ in range(2):
            holder = rs.new_mutex("a")
            await holder.lock()
            asyncio.get_running_loop().call_later(0.2, asyncio.ensure_future, holder.unlock())
            started = time.monotonic()
            waiter = rs.new_mutex("a", retry_delay=0.6, tries=5)
            await waiter.lock()
            waited = time.monotonic() - started
            assert await waiter.unlock()
            assert 0.55 <= waited < 0.6 + WAKE_BOUND
    refusals = [r for r in caplog.records if "refused the release notices" in r.getMessage()]
    assert len(refusals) == 1


def _subscribed_everywhere(servers: list[RedisServer], key: str) -> Callable[[], bool]:
    return lambda: all(key in channels(s) for s in servers if s.running and not s.paused)


@pytest.mark.parametrize("fault", ["paused", "killed"])
def test_a_node_failing_while_waiters_are_subscribed(
    redis_nodes: list[RedisServer], fault: str
) -> None:
    node_urls = urls(redis_nodes)
    thread = held_elsewhere(node_urls, "wake:fault", 1.0)
    with Redsync(node_urls, expiry=8.0) as rs:  # a 400 ms deadline: room on a busy box
        waiter = rs.new_mutex("wake:fault", retry_delay=LONG_DELAY, tries=3)
        result: list[float] = []

        def wait() -> None:
            started = time.monotonic()
            waiter.lock()
            result.append(time.monotonic() - started)

        waiting = threading.Thread(target=wait)
        waiting.start()
        assert eventually(_subscribed_everywhere(redis_nodes, "wake:fault"))
        if fault == "paused":
            redis_nodes[2].pause()
        else:
            redis_nodes[2].kill()
        try:
            waiting.join(timeout=10)
            thread.join()
        finally:
            if fault == "paused":
                redis_nodes[2].resume()
        assert result, "lock() did not return"
        # Woken by the notices of the two live nodes; the release to the failed node costs
        # one fan-out deadline (expiry * timeout_factor = 0.1 s).
        assert 0.9 < result[0] < 1.0 + WAKE_BOUND
        waiter.unlock()


@pytest.mark.parametrize("fault", ["paused", "killed"])
async def test_async_node_failing_while_waiters_are_subscribed(
    redis_nodes: list[RedisServer], fault: str
) -> None:
    node_urls = urls(redis_nodes)
    thread = held_elsewhere(node_urls, "wake:fault", 1.0)
    async with AsyncRedsync(node_urls, expiry=8.0) as rs:  # a 400 ms deadline
        waiter = rs.new_mutex("wake:fault", retry_delay=LONG_DELAY, tries=3)
        started = time.monotonic()
        task = asyncio.ensure_future(waiter.lock())
        for _ in range(250):
            await asyncio.sleep(0.02)
            if _subscribed_everywhere(redis_nodes, "wake:fault")():
                break
        if fault == "paused":
            redis_nodes[2].pause()
        else:
            redis_nodes[2].kill()
        try:
            await asyncio.wait_for(task, 10)
            waited = time.monotonic() - started
        finally:
            if fault == "paused":
                redis_nodes[2].resume()
        await asyncio.to_thread(thread.join)
        assert 0.9 < waited < 1.0 + WAKE_BOUND
        await waiter.unlock()


def test_a_node_paused_before_the_first_wait_does_not_delay_the_others(
    redis_nodes: list[RedisServer],
) -> None:
    """The subscriber connection to a paused node never opens; notices come from the others."""
    node_urls = urls(redis_nodes)
    redis_nodes[0].pause()
    try:
        thread = held_elsewhere(node_urls, "wake:paused-first", 1.0)
        with Redsync(node_urls, expiry=8.0) as rs:  # a 400 ms deadline: room on a busy box
            started = time.monotonic()
            rs.new_mutex("wake:paused-first", retry_delay=LONG_DELAY, tries=3).lock()
            waited = time.monotonic() - started
        thread.join()
    finally:
        redis_nodes[0].resume()
    assert waited < 1.0 + WAKE_BOUND


def test_close_stops_the_reader_and_closes_the_subscribers(redis_nodes: list[RedisServer]) -> None:
    thread = held_elsewhere(urls(redis_nodes), "wake:close", 0.3)
    rs = Redsync(urls(redis_nodes))
    rs.new_mutex("wake:close", retry_delay=LONG_DELAY, tries=3).lock()
    thread.join()
    readers = [t for t in threading.enumerate() if t.name == "redsync-notices"]
    assert readers
    assert all(len(subscribers(s)) == 1 for s in redis_nodes)
    rs.close()
    assert not any(t.is_alive() for t in readers)
    assert not any(subscribers(s) for s in redis_nodes)


def test_publishing_is_refused_quietly_without_the_publish_right(
    redis_servers: Any,
) -> None:
    """unlock() and force_release() still delete when the script's PUBLISH is refused."""
    servers, acl_urls = _acl_urls(redis_servers)
    with Redsync(acl_urls, key_prefix="locks:") as rs:
        mutex = rs.new_mutex("p")
        mutex.lock()
        assert mutex.unlock()
        rs.new_mutex("q").lock()
        assert rs.force_release("q") == 3
    for server in servers:
        admin = server.client()
        assert admin.exists("locks:p", "locks:q") == 0
        admin.close()


def test_the_notice_channel_is_the_key_and_carries_no_lock_value(
    redis_nodes: list[RedisServer],
) -> None:
    listener = redis_nodes[0].client()
    pubsub = listener.pubsub()
    pubsub.subscribe("app:orders:42")
    assert pubsub.get_message(timeout=1.0) is not None  # the confirmation
    with Redsync(urls(redis_nodes), key_prefix="app:") as rs:
        mutex = rs.new_mutex("orders:42")
        mutex.lock()
        value = mutex.value
        mutex.unlock()
    message = pubsub.get_message(timeout=2.0)
    pubsub.close()
    listener.close()
    assert message is not None
    assert message["channel"] in (b"app:orders:42", "app:orders:42")
    assert value is not None
    assert value.encode() not in message["data"]


def test_cluster_waiters_wake_by_sharded_notices(redis_cluster: Any) -> None:
    client: redis.cluster.RedisCluster = redis_cluster.client()
    other: redis.cluster.RedisCluster = redis_cluster.client()
    try:
        holder_rs, rs = Redsync([other]), Redsync([client])
        holder = holder_rs.new_mutex("wake:cluster")
        holder.lock()
        timer = threading.Timer(0.5, holder.unlock)
        timer.start()
        started = time.monotonic()
        rs.new_mutex("wake:cluster", retry_delay=LONG_DELAY, tries=3).lock()
        waited = time.monotonic() - started
        timer.join()
        rs.close()
        holder_rs.close()
    finally:
        client.close()
        other.close()
    assert waited < WAKE_BOUND


# --- the release after a failed try skips nodes held by another ------------------------------


def test_our_own_value_left_by_an_earlier_try_is_released(redis_nodes: list[RedisServer]) -> None:
    """A node may hold our value from an earlier try whose reply was lost (the SET landed, the
    reply did not). The acquire script answers OK for it (re-armed), never TAKEN, so the
    clean-up after the failed try releases it: nothing of ours is left behind."""
    ours, theirs = "our-value-123", "their-value-456"
    clients = [s.client() for s in redis_nodes]
    clients[0].set("wake:left", ours, px=60_000)  # the late SET of an earlier try
    for client in clients[1:]:
        client.set("wake:left", theirs, px=60_000)
    with Redsync(urls(redis_nodes)) as rs, pytest.raises(LockTaken):
        rs.new_mutex("wake:left", value=ours, tries=1).lock()
    left = [client.get("wake:left") for client in clients]
    for client in clients:
        client.close()
    assert left == [None, theirs.encode(), theirs.encode()]


#: The documented least-privilege user with release notices (docs/safety.md, Security).
WITH_CHANNELS = [r for r in NO_CHANNELS if r != "resetchannels"] + [
    "resetchannels", "&locks:*", "+publish", "+subscribe", "+unsubscribe",
    "+zadd", "+zrem", "+zpopmin", "+zcard",
]  # fmt: skip


def test_the_documented_acl_line_lets_waiters_wake(
    redis_servers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    servers = redis_servers(3, password=ADMIN_PW)
    for server in servers:
        admin = server.client()
        admin.execute_command("ACL", "SETUSER", "locker", "reset", *WITH_CHANNELS)
        admin.close()
    acl_urls = [f"redis://locker:{LOCKER_PW}@127.0.0.1:{s.port}/0" for s in servers]
    caplog.set_level(logging.WARNING, logger="redsync")
    queued: list[int] = []
    with Redsync(acl_urls, key_prefix="locks:") as rs:
        holder = rs.new_mutex("a")
        holder.lock()

        def release() -> None:
            for server in servers:  # the waiter is queued: the release wakes it by name
                admin = server.client()
                queued.append(admin.zcard(wait_key("locks:a") or ""))
                admin.close()
            holder.unlock()

        timer = threading.Timer(0.5, release)
        timer.start()
        started = time.monotonic()
        rs.new_mutex("a", retry_delay=LONG_DELAY, tries=3).lock()
        waited = time.monotonic() - started
        timer.join()
    assert queued == [1, 1, 1]
    assert waited < WAKE_BOUND
    assert "refused" not in caplog.text


async def test_async_cluster_waiters_wake_by_sharded_notices(redis_cluster: Any) -> None:
    port = redis_cluster.servers[0].port
    client = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=port)
    other = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=port)
    try:
        async with AsyncRedsync([other]) as holder_rs, AsyncRedsync([client]) as rs:
            holder = holder_rs.new_mutex("wake:cluster")
            await holder.lock()
            asyncio.get_running_loop().call_later(0.5, asyncio.ensure_future, holder.unlock())
            started = time.monotonic()
            await rs.new_mutex("wake:cluster", retry_delay=LONG_DELAY, tries=3).lock()
            waited = time.monotonic() - started
    finally:
        await client.aclose()
        await other.aclose()
    assert waited < WAKE_BOUND


def test_a_forked_child_waits_with_its_own_reader(redis_nodes: list[RedisServer]) -> None:
    """A Redsync whose reader thread and subscriber connections exist before os.fork() works
    in the child (its own thread and connections), and still in the parent afterwards."""
    node_urls = urls(redis_nodes)

    def wait_woken(rs: Redsync, name: str) -> float:
        thread = held_elsewhere(node_urls, name, 0.5)
        started = time.monotonic()
        mutex = rs.new_mutex(name, retry_delay=LONG_DELAY, tries=3)
        mutex.lock()
        waited = time.monotonic() - started
        mutex.unlock()
        thread.join()
        return waited

    with Redsync(node_urls) as rs:
        assert wait_woken(rs, "wake:fork:parent") < WAKE_BOUND  # the reader runs now
        ctx = multiprocessing.get_context("fork")
        results = ctx.Queue()
        child = ctx.Process(target=lambda: results.put(wait_woken(rs, "wake:fork:child")))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        assert results.get(timeout=1) < WAKE_BOUND
        assert wait_woken(rs, "wake:fork:again") < WAKE_BOUND  # the parent's reader is intact
