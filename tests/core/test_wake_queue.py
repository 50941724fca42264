"""Waiter queues: a release wakes the oldest waiting process, and only that one.

Real redis-server nodes, sync and asyncio; waiters in separate processes where the claim is
about processes. The assertions are logical (who got the lock in which order, how many scripts
the nodes ran, which keys exist), never timings: retry delays are long (30 s) so that a waiter
woken by anything but its notice would show up as extra attempts.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from polling import evalsha_calls, eventually, settled

from redsync_core import AsyncRedsync, LockTaken, LockTimeout, Redsync
from redsync_core._algorithm.queues import queue_keys, wait_key, wake_channel
from redsync_core._transport.commands import TURN_MS
from redsync_core._transport.scripts import LEAVE
from redsync_core.testing import RedisServer

DRIVERS = [pytest.param("sync", id="sync"), pytest.param("asyncio", id="asyncio")]
#: A waiter's retry delay where only notices may wake it in time (a timer would show).
LONG_DELAY = 30.0
#: An expiry long enough that a hand-over within a test is early in it (a waiter handed the key
#: later than flows.HANDED_OVER_WITHIN of its expiry makes an attempt first).
LONG_EXPIRY = 60.0
KEY = "wake:queue"


def urls(servers: list[RedisServer]) -> list[str]:
    return [s.url for s in servers]


def queue_of(key: str) -> str:
    queue = wait_key(key)
    assert queue is not None
    return queue


def turn_of(key: str) -> str:
    keys = queue_keys(key)
    assert keys is not None
    return keys[1]


@pytest.fixture
def clients(redis_nodes: list[RedisServer]) -> Iterator[list[redis.Redis]]:
    """A plain client per node, to look at (and shape) the queues by hand."""
    opened = [s.client() for s in redis_nodes]
    yield opened
    for client in opened:
        client.close()


def queue_a_dead_waiter(clients: list[redis.Redis]) -> None:
    """Queue a waiter older than any, whose process is gone, on every node."""
    for client in clients:
        client.zadd(queue_of(KEY), {"deadbeef.0": 1})


def _wait_in_child(driver: str, node_urls: list[str], index: int, order: Any) -> None:
    """A waiting process: lock (a long retry delay), report, hold a little, unlock."""
    if driver == "sync":
        with Redsync(node_urls) as rs:
            mutex = rs.new_mutex(KEY, retry_delay=LONG_DELAY, tries=3, expiry=LONG_EXPIRY)
            mutex.lock()
            order.put(index)
            time.sleep(0.05)
            mutex.unlock()
        return

    async def run() -> None:
        async with AsyncRedsync(node_urls) as rs:
            mutex = rs.new_mutex(KEY, retry_delay=LONG_DELAY, tries=3, expiry=LONG_EXPIRY)
            await mutex.lock()
            order.put(index)
            await asyncio.sleep(0.05)
            await mutex.unlock()

    asyncio.run(run())


@pytest.mark.parametrize("driver", DRIVERS)
def test_each_release_wakes_one_waiting_process_oldest_first(
    driver: str, redis_nodes: list[RedisServer], clients: list[redis.Redis]
) -> None:
    ctx = multiprocessing.get_context("fork")
    order = ctx.Queue()
    holder_rs = Redsync(urls(redis_nodes))
    holder = holder_rs.new_mutex(KEY)
    holder.lock()
    children = []
    try:
        for i in range(3):  # one at a time: their order in the queue is their order of arrival
            child = ctx.Process(target=_wait_in_child, args=(driver, urls(redis_nodes), i, order))
            child.start()
            children.append(child)
            assert eventually(lambda i=i: all(c.zcard(queue_of(KEY)) == i + 1 for c in clients))
        assert eventually(lambda: settled(clients))  # first tries done, subscriptions confirmed
        for client in clients:
            client.config_resetstat()
        holder.unlock()
        got = [order.get(timeout=30) for _ in children]
        for child in children:
            child.join(30)
            assert child.exitcode == 0
        assert got == [0, 1, 2]  # oldest first
        # Four releases (the holder's and each waiter's) and no attempt: each release handed
        # the key over to the oldest waiting process, which held it on the notices alone. A
        # herd (or a hand-over not taken) shows up here as attempts.
        assert [evalsha_calls(c) for c in clients] == [4] * len(clients)
        assert not any(c.exists(queue_of(KEY)) for c in clients)  # every waiter left it
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
        holder_rs.close()


def test_a_dead_waiter_in_the_queue_costs_at_most_the_retry_delay(
    redis_nodes: list[RedisServer], clients: list[redis.Redis]
) -> None:
    with Redsync(urls(redis_nodes)) as rs:
        holder = rs.new_mutex(KEY)
        holder.lock()
        queue_a_dead_waiter(clients)
        waiter = rs.new_mutex(KEY, retry_delay=0.3, tries=3)
        done = threading.Event()

        def wait() -> None:
            waiter.lock()
            done.set()

        thread = threading.Thread(target=wait)
        thread.start()
        assert eventually(lambda: all(c.zcard(queue_of(KEY)) == 2 for c in clients))
        holder.unlock()  # wakes the dead waiter: nobody hears it
        assert [c.get(turn_of(KEY)) for c in clients] == [b"deadbeef.0"] * len(clients)
        thread.join(30)
        assert done.is_set()  # the retry delay's attempt took it (its second of three tries)
        assert waiter.held
        waiter.unlock()
    assert not any(c.exists(queue_of(KEY)) for c in clients)


@pytest.mark.parametrize("driver", DRIVERS)
def test_queue_keys_expire_and_a_waiter_that_gives_up_leaves_the_queue(
    driver: str, redis_nodes: list[RedisServer], clients: list[redis.Redis]
) -> None:
    queued: list[list[int]] = []

    def look() -> None:
        queued.append([c.pttl(queue_of(KEY)) for c in clients])

    async def give_up_async(rs: AsyncRedsync) -> None:
        waiter = rs.new_mutex(KEY, retry_delay=0.2, tries=2, expiry=3)
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, look)
        with pytest.raises(LockTaken):
            await waiter.lock()
        timed = rs.new_mutex(KEY, retry_delay=0.2, expiry=3)
        with pytest.raises(LockTimeout):
            await timed.lock(timeout=0.3)

    with Redsync(urls(redis_nodes)) as holder_rs:
        holder = holder_rs.new_mutex(KEY)
        holder.lock()
        if driver == "sync":
            with Redsync(urls(redis_nodes)) as rs:
                timer = threading.Timer(0.1, look)
                timer.start()
                with pytest.raises(LockTaken):
                    rs.new_mutex(KEY, retry_delay=0.2, tries=2, expiry=3).lock()
                timer.join()
                with pytest.raises(LockTimeout):
                    rs.new_mutex(KEY, retry_delay=0.2, expiry=3).lock(timeout=0.3)
        else:

            async def run() -> None:
                async with AsyncRedsync(urls(redis_nodes)) as rs:
                    await give_up_async(rs)

            asyncio.run(run())
        # While it waited, the queue expired with the waiter's expiry (3 s), never later.
        assert all(0 < ttl <= 3000 for ttl in queued[0]), queued
        assert not any(c.exists(queue_of(KEY)) for c in clients)  # both left on giving up
        holder.unlock()


def test_the_turn_key_expires_soon_after_a_release_that_woke_a_waiter(
    redis_nodes: list[RedisServer], clients: list[redis.Redis]
) -> None:
    with Redsync(urls(redis_nodes)) as rs:
        holder = rs.new_mutex(KEY)
        holder.lock()
        queue_a_dead_waiter(clients)
        holder.unlock()
        assert all(0 < c.pttl(turn_of(KEY)) <= TURN_MS for c in clients)
        assert eventually(lambda: not any(c.exists(turn_of(KEY)) for c in clients))


@pytest.mark.parametrize("driver", DRIVERS)
def test_without_wake_on_release_no_queue_is_written(
    driver: str, redis_nodes: list[RedisServer], clients: list[redis.Redis]
) -> None:
    with Redsync(urls(redis_nodes)) as holder_rs:
        holder = holder_rs.new_mutex(KEY)
        holder.lock()
        if driver == "sync":
            with (
                Redsync(urls(redis_nodes), wake_on_release=False) as rs,
                pytest.raises(LockTaken),
            ):
                rs.new_mutex(KEY, retry_delay=0.05, tries=3).lock()
        else:

            async def run() -> None:
                async with AsyncRedsync(urls(redis_nodes), wake_on_release=False) as rs:
                    with pytest.raises(LockTaken):
                        await rs.new_mutex(KEY, retry_delay=0.05, tries=3).lock()

            asyncio.run(run())
        assert [sorted(c.keys("*")) for c in clients] == [[KEY.encode()]] * len(clients)
        holder.unlock()


def test_a_key_with_braces_but_no_hash_tag_has_no_queue(
    redis_nodes: list[RedisServer], clients: list[redis.Redis]
) -> None:
    name = "wake:{odd"  # no queue key could share its Redis Cluster slot
    assert wait_key(name) is None
    with Redsync(urls(redis_nodes)) as rs:
        holder = rs.new_mutex(name)
        holder.lock()
        with pytest.raises(LockTaken):
            rs.new_mutex(name, retry_delay=0.05, tries=2).lock()
        assert [c.keys("*") for c in clients] == [[name.encode()]] * len(clients)
        holder.unlock()


def test_a_woken_waiter_that_gives_up_wakes_the_next_one(clients: list[redis.Redis]) -> None:
    client = clients[0]
    queue, turn = queue_keys(KEY) or ("", "")
    client.zadd(queue, {"0000000b.1": 2})  # B waits behind A, whom a release has just woken
    client.set(turn, "0000000a.1", px=10_000)
    listener = client.pubsub()
    listener.subscribe(wake_channel(KEY, "0000000b"))
    assert listener.get_message(timeout=1.0) is not None  # the confirmation
    # A gives up (the script that lock() runs then): it leaves and hands its turn on to B.
    client.eval(LEAVE.source, 3, KEY, queue, turn, "p", "left", "0000000a.1", TURN_MS, "1")
    message = listener.get_message(timeout=2.0)
    listener.close()
    assert message is not None
    assert message["data"] == b"left 0000000b.1"
    assert client.get(turn) == b"0000000b.1"
    assert client.zcard(queue) == 0


def _child_inbox(out: Any) -> None:
    from redsync_core._transport.notices import inbox

    out.send(inbox())
    out.close()


def test_a_forked_child_has_an_inbox_of_its_own() -> None:
    """Wake channels are named after the process's inbox: a forked child that kept its
    parent's would take the notices meant for the parent's waiters (and the reverse)."""
    from redsync_core._transport.notices import inbox

    parent = inbox()
    receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=_child_inbox, args=(send,))
    child.start()
    try:
        assert receive.poll(10)
        theirs = receive.recv()
    finally:
        child.join(10)
    assert theirs
    assert theirs != parent
    assert inbox() == parent  # the parent keeps its own
