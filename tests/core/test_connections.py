"""How the transport keeps its connections: restarts, paused nodes, late replies, close()."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from redsync_core import AsyncRedsync, Redsync
from redsync_core.testing import LocalRedisCluster, RedisServer


def test_a_restarted_node_is_reconnected_without_losing_a_vote(
    redis_servers: object,
) -> None:
    (server,) = redis_servers(1)  # type: ignore[operator]
    assert isinstance(server, RedisServer)
    with Redsync([server.url], tries=1) as rs:
        mutex = rs.new_mutex("after-restart")
        assert mutex.try_lock()
        assert mutex.unlock()
        server.restart()  # the idle connection is now closed by the server
        assert mutex.try_lock()  # one node, one try: a stale connection would fail it
        assert mutex.unlock()


def test_a_paused_node_costs_one_deadline_then_fails_fast_until_it_answers(
    redis_nodes: list[RedisServer],
) -> None:
    with Redsync([s.url for s in redis_nodes], expiry=60.0, tries=1) as rs:  # 3 s deadline
        warm = rs.new_mutex("warm")
        assert warm.try_lock()  # connections are open
        assert warm.unlock()
        redis_nodes[0].pause()
        try:
            started = time.monotonic()
            first = rs.new_mutex("paused-1")
            assert first.try_lock()  # two of three answer
            assert time.monotonic() - started < 5.5  # one 3 s deadline; two would be 6 s
            started = time.monotonic()
            second = rs.new_mutex("paused-2")
            assert second.try_lock()
            assert second.unlock()
            # The paused node still owes a reply, so it is failed at once: no deadline spent
            # (a lock and an unlock would otherwise wait 6 s; one deadline is 3 s).
            assert time.monotonic() - started < 2.5
        finally:
            redis_nodes[0].resume()
        # Once it answers again, its late replies are dropped and it votes again.
        time.sleep(0.05)
        third = rs.new_mutex("paused-3")
        assert third.try_lock()
        assert rs.inspect("paused-3").nodes[0].holder == third.value
        assert third.unlock()
        assert first.unlock()


async def test_async_replies_that_arrived_before_the_deadline_still_count(
    redis_nodes: list[RedisServer], recwarn: pytest.WarningsRecorder
) -> None:
    async with AsyncRedsync([s.url for s in redis_nodes], expiry=20.0, tries=1) as ars:
        warm = ars.new_mutex("warm")
        assert await warm.try_lock()  # idle open connections: their replies are read in turn
        assert await warm.unlock()
        redis_nodes[0].pause()  # read first, it holds up the others' replies until the deadline
        try:
            mutex = ars.new_mutex("cut-short")
            assert await mutex.try_lock()  # nodes 1 and 2 answered in time: 2 of 3
        finally:
            redis_nodes[0].resume()
        assert await mutex.unlock()
    assert [str(w.message) for w in recwarn if w.category is DeprecationWarning] == []


# --- close() ------------------------------------------------------------------------------------
# Each test names its connections (client_name) and counts them with CLIENT LIST on every node.
# The garbage collector is off throughout: close() itself must close them, from any thread or loop.


@pytest.fixture
def ours() -> Iterator[str]:
    """A client name no other test uses; the garbage collector stays off during the test."""
    gc.collect()
    gc.disable()
    try:
        yield f"redsync-close-{uuid.uuid4().hex[:8]}"
    finally:
        gc.enable()


def connections_named(servers: list[RedisServer], name: str) -> list[int]:
    """Count, on each node, the connections that CLIENT LIST shows under ``name``."""
    counts = []
    for server in servers:
        admin = server.client()
        try:
            counts.append(sum(1 for c in admin.client_list() if c.get("name") == name))
        finally:
            admin.close()
    return counts


def settled(servers: list[RedisServer], name: str, expected: list[int]) -> list[int]:
    """Return the counts once they equal ``expected``; a server sees a close a moment later."""
    deadline = time.monotonic() + 2.0
    counts = connections_named(servers, name)
    while counts != expected and time.monotonic() < deadline:
        time.sleep(0.02)
        counts = connections_named(servers, name)
    return counts


def lock_and_unlock(rs: Redsync, name: str) -> None:
    mutex = rs.new_mutex(name)
    assert mutex.try_lock()
    assert mutex.unlock()


@contextlib.contextmanager
def live_threads(count: int, work: Callable[[int], None]) -> Iterator[None]:
    """Run ``work(i)`` in ``count`` threads that stay alive until the block ends."""
    ready = threading.Barrier(count + 1)
    finish = threading.Event()

    def run(i: int) -> None:
        try:
            work(i)
        finally:
            ready.wait()
            finish.wait()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    ready.wait()
    try:
        yield
    finally:
        finish.set()
        for thread in threads:
            thread.join()


@contextlib.contextmanager
def loop_in_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """Run an event loop in another thread for the duration of the block."""
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever)
    runner.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join()
        loop.close()


async def lock_and_unlock_async(ars: AsyncRedsync, name: str) -> None:
    mutex = ars.new_mutex(name)
    assert await mutex.try_lock()
    assert await mutex.unlock()


def test_close_closes_the_connections_of_every_thread(
    redis_nodes: list[RedisServer], ours: str
) -> None:
    rs = Redsync([s.url for s in redis_nodes], client_options={"client_name": ours})
    with live_threads(4, lambda i: lock_and_unlock(rs, f"job-{i}")):
        assert connections_named(redis_nodes, ours) == [4, 4, 4]
        rs.close()
        assert settled(redis_nodes, ours, [0, 0, 0]) == [0, 0, 0]
    lock_and_unlock(rs, "after-close")  # a closed Redsync connects again when used
    assert connections_named(redis_nodes, ours) == [1, 1, 1]
    rs.close()


def test_a_thread_that_ends_closes_its_connections(
    redis_nodes: list[RedisServer], ours: str
) -> None:
    rs = Redsync([s.url for s in redis_nodes], client_options={"client_name": ours})
    worker = threading.Thread(target=lock_and_unlock, args=(rs, "short-lived"))
    worker.start()
    worker.join()
    assert settled(redis_nodes, ours, [0, 0, 0]) == [0, 0, 0]  # not waiting for the collector
    rs.close()


def test_close_keeps_the_pool_of_a_client_the_user_passed_in(
    redis_nodes: list[RedisServer], ours: str
) -> None:
    clients = [s.client(client_name=ours) for s in redis_nodes]
    try:
        for client in clients:
            assert client.ping()  # the user's own pooled connection
        rs = Redsync(clients)
        with live_threads(2, lambda i: lock_and_unlock(rs, f"theirs-{i}")):
            assert connections_named(redis_nodes, ours) == [3, 3, 3]  # theirs + ours
            rs.close()
            assert settled(redis_nodes, ours, [1, 1, 1]) == [1, 1, 1]
        assert all(client.ping() for client in clients)
    finally:
        for client in clients:
            client.close()


def run_and_close_by_hand(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` on a new loop and close it without ``asyncio.run()``'s shutdown steps."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(work)
    finally:
        loop.close()


async def test_async_close_keeps_the_pool_of_a_client_the_user_passed_in(
    redis_nodes: list[RedisServer], ours: str
) -> None:
    clients = [s.async_client(client_name=ours) for s in redis_nodes]
    try:
        for client in clients:
            assert await client.ping()  # the user's own pooled connection
        ars = AsyncRedsync(clients)
        await lock_and_unlock_async(ars, "theirs")
        assert connections_named(redis_nodes, ours) == [2, 2, 2]  # theirs + ours
        await ars.close()
        assert settled(redis_nodes, ours, [1, 1, 1]) == [1, 1, 1]
        for client in clients:
            assert await client.ping()
    finally:
        for client in clients:
            await client.aclose()


def test_close_closes_our_connections_to_the_masters_of_a_cluster(
    redis_cluster: LocalRedisCluster, ours: str
) -> None:
    masters = redis_cluster.servers
    client = redis_cluster.client(client_name=ours)
    try:
        theirs = connections_named(masters, ours)  # the client's own (some redis-py versions)
        rs = Redsync([client])
        with live_threads(2, lambda i: lock_and_unlock(rs, f"cluster-close-{i}")):
            # One per thread, on the master that owns its key.
            assert sum(connections_named(masters, ours)) == sum(theirs) + 2
            rs.close()
            assert settled(masters, ours, theirs) == theirs
        assert client.ping()  # the cluster client is the user's, and still works
    finally:
        client.close()


async def test_async_close_closes_the_connections_of_every_loop(
    redis_nodes: list[RedisServer], ours: str
) -> None:
    ars = AsyncRedsync([s.url for s in redis_nodes], client_options={"client_name": ours})
    await lock_and_unlock_async(ars, "here")
    with loop_in_thread() as running:
        work = lock_and_unlock_async(ars, "running")
        asyncio.run_coroutine_threadsafe(work, running).result(timeout=10)
        # A loop closed by hand in another thread: its idle connection is left to close().
        ended = threading.Thread(
            target=run_and_close_by_hand, args=(lock_and_unlock_async(ars, "ended"),)
        )
        ended.start()
        ended.join()
        assert connections_named(redis_nodes, ours) == [3, 3, 3]
        await ars.close()
        assert settled(redis_nodes, ours, [0, 0, 0]) == [0, 0, 0]
        work = lock_and_unlock_async(ars, "after-close")  # and connects again when used
        asyncio.run_coroutine_threadsafe(work, running).result(timeout=10)
        assert connections_named(redis_nodes, ours) == [1, 1, 1]
        await ars.close()
        assert settled(redis_nodes, ours, [0, 0, 0]) == [0, 0, 0]


def test_asyncio_run_closes_the_connections_of_its_loop(
    redis_nodes: list[RedisServer], ours: str
) -> None:
    ars = AsyncRedsync([s.url for s in redis_nodes], client_options={"client_name": ours})
    for i in range(3):  # e.g. a sync program calling asyncio.run() once per job
        asyncio.run(lock_and_unlock_async(ars, f"job-{i}"))
        assert settled(redis_nodes, ours, [0, 0, 0]) == [0, 0, 0]


def test_connections_of_loops_closed_by_hand_do_not_pile_up(
    redis_nodes: list[RedisServer], ours: str
) -> None:
    ars = AsyncRedsync([s.url for s in redis_nodes], client_options={"client_name": ours})
    for i in range(4):
        run_and_close_by_hand(lock_and_unlock_async(ars, f"job-{i}"))
        # The next loop closes what the last one left: only the last loop's connection stays.
        assert settled(redis_nodes, ours, [1, 1, 1]) == [1, 1, 1]
    asyncio.run(ars.close())
    assert settled(redis_nodes, ours, [0, 0, 0]) == [0, 0, 0]


def test_sync_close_closes_the_async_twins_it_built(
    redis_nodes: list[RedisServer], ours: str
) -> None:
    rs = Redsync([s.url for s in redis_nodes], client_options={"client_name": ours})

    async def use_twin(name: str) -> None:
        await lock_and_unlock_async(rs.asyncio(), name)

    lock_and_unlock(rs, "sync")
    run_and_close_by_hand(use_twin("ended-loop"))
    with loop_in_thread() as running:
        asyncio.run_coroutine_threadsafe(use_twin("running-loop"), running).result(timeout=10)
        assert connections_named(redis_nodes, ours) == [3, 3, 3]
        rs.close()
        assert settled(redis_nodes, ours, [0, 0, 0]) == [0, 0, 0]


async def test_async_close_closes_its_sync_twin_in_every_thread(
    redis_nodes: list[RedisServer], ours: str
) -> None:
    ars = AsyncRedsync([s.url for s in redis_nodes], client_options={"client_name": ours})
    twin = ars.sync()
    with live_threads(2, lambda i: lock_and_unlock(twin, f"job-{i}")):
        assert connections_named(redis_nodes, ours) == [2, 2, 2]
        await ars.close()
        assert settled(redis_nodes, ours, [0, 0, 0]) == [0, 0, 0]


async def test_threads_racing_for_the_sync_twin_share_one_and_close_closes_it(
    redis_nodes: list[RedisServer], ours: str
) -> None:
    ars = AsyncRedsync([s.url for s in redis_nodes], client_options={"client_name": ours})
    threads = 8
    start = threading.Barrier(threads)
    twins: list[Redsync] = []

    def race(i: int) -> None:
        start.wait()  # every thread asks at once
        twin = ars.sync()
        twins.append(twin)
        lock_and_unlock(twin, f"job-{i}")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch often: a check-then-build race shows at once
    try:
        with live_threads(threads, race):
            sys.setswitchinterval(interval)
            assert len({id(twin) for twin in twins}) == 1
            assert twins[0] is ars.sync()
            assert connections_named(redis_nodes, ours) == [threads] * 3
            await ars.close()
            assert settled(redis_nodes, ours, [0, 0, 0]) == [0, 0, 0]
    finally:
        sys.setswitchinterval(interval)


def test_loops_racing_for_their_asyncio_twins_get_one_each_and_close_closes_them(
    redis_nodes: list[RedisServer], ours: str
) -> None:
    rs = Redsync([s.url for s in redis_nodes], client_options={"client_name": ours})
    threads = 8
    start = threading.Barrier(threads)
    twins: list[tuple[AsyncRedsync, AsyncRedsync]] = []

    async def race(i: int) -> None:
        start.wait()  # a thread and its loop each: every loop asks at once
        twin = rs.asyncio()
        twins.append((twin, rs.asyncio()))
        await lock_and_unlock_async(twin, f"job-{i}")

    loops = [asyncio.new_event_loop() for _ in range(threads)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with live_threads(threads, lambda i: loops[i].run_until_complete(race(i))):
            sys.setswitchinterval(interval)
            assert all(first is again for first, again in twins)
            assert len({id(first) for first, _ in twins}) == threads  # one per loop
            assert connections_named(redis_nodes, ours) == [threads] * 3
            rs.close()
            assert settled(redis_nodes, ours, [0, 0, 0]) == [0, 0, 0]
    finally:
        sys.setswitchinterval(interval)
        for loop in loops:
            loop.close()


async def test_sync_close_inside_the_twins_running_loop(
    redis_nodes: list[RedisServer], ours: str
) -> None:
    rs = Redsync([s.url for s in redis_nodes], client_options={"client_name": ours})
    await lock_and_unlock_async(rs.asyncio(), "same-loop")
    assert connections_named(redis_nodes, ours) == [1, 1, 1]
    rs.close()  # cannot await here: the twin's connections are closed without waiting
    await asyncio.sleep(0.05)  # the loop runs the disconnects scheduled on it
    assert settled(redis_nodes, ours, [0, 0, 0]) == [0, 0, 0]
    await lock_and_unlock_async(rs.asyncio(), "after-close")  # and the twin connects again
    rs.close()
