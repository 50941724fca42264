"""Turns among the waiters of one process: a release notice wakes the oldest waiter of the key,
not all of them; the turn passes on when that waiter sleeps again or its lock() ends.

The rules first, on the bookkeeping alone; then with real redis-server nodes, sync and asyncio:
waiters of one ``Redsync`` get the lock oldest first, and each release costs one attempt, where
waking every waiter costs one attempt per waiter (the acquire fan-outs the Redsync sends).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from redsync_core import AsyncRedsync, Redsync
from redsync_core._algorithm.effects import FanOut, Op, Sleep
from redsync_core._transport.notices import _Waited
from redsync_core.testing import RedisServer

LONG_DELAY = 5.0  # no scheduled try happens while a test runs: only notices wake the waiters
WAITERS = 4
SPACING = 0.2  # between two waiters' first tries: their order is known
HOLD = 0.1
WAKE_BOUND = 2.0
#: One first try each, one try per release, one woken by the subscription, and slack for two
#: stray tries on a loaded machine: 11. Waking every waiter on every release costs 15 (4 first
#: tries, 1 for the subscription, then 4 + 3 + 2 + 1).
MOST_ATTEMPTS = 2 * WAITERS + 4 - 1


# --- the rules ----------------------------------------------------------------------------------


def test_a_notice_gives_the_turn_to_the_oldest_sleeper_only() -> None:
    waited = _Waited(None)
    old, young = object(), object()
    waited.join(old, since_ms=10, nodes=None)
    waited.join(young, since_ms=12, nodes=None)
    waited.heard(20, node=0)
    assert waited.pass_turn()
    assert waited.woken(old, 10, None)
    assert not waited.woken(young, 12, None)
    waited.heard(21, node=1)  # the same release heard from another node: still one turn
    assert not waited.pass_turn()
    assert not waited.woken(young, 12, None)


def test_a_turn_holder_that_lost_passes_the_turn_on_fresh_news_only() -> None:
    waited = _Waited(None)
    first, second = object(), object()
    waited.join(first, since_ms=10, nodes=None)
    waited.join(second, since_ms=11, nodes=None)
    waited.heard(20, node=0)
    waited.pass_turn()
    waited.heard(20, node=1)  # the same release from another node, before the turn's try
    waited.awake(first)  # it wakes and tries, and loses to another process
    assert not waited.join(first, since_ms=20, nodes=None)  # nobody wakes for the copy
    assert waited.turn is None
    waited.heard(20, node=0)  # a new release (in the same ms): the oldest again
    assert waited.pass_turn()
    assert waited.woken(first, 20, None)
    assert not waited.woken(second, 11, None)


def test_news_heard_while_the_turn_holder_tries_stays_news() -> None:
    waited = _Waited(None)
    first, second = object(), object()
    waited.join(first, since_ms=10, nodes=None)
    waited.join(second, since_ms=11, nodes=None)
    waited.heard(20, node=0)
    waited.pass_turn()
    waited.awake(first)
    waited.heard(21, node=1)  # released after its try found node 1 held
    assert waited.join(first, since_ms=20, nodes=frozenset({1}))
    assert waited.woken(first, 20, frozenset({1}))  # it tries again at once


def test_a_turn_holder_whose_lock_call_ends_without_the_lock_passes_the_turn() -> None:
    waited = _Waited(None)
    first, second = object(), object()
    waited.join(first, since_ms=10, nodes=None)
    waited.join(second, since_ms=11, nodes=None)
    waited.heard(20, node=0)
    waited.pass_turn()
    waited.awake(first)
    assert waited.leave(first, won=False)  # it timed out: the news is still news
    assert waited.woken(second, 11, None)


def test_a_winner_makes_the_notices_heard_before_no_news() -> None:
    waited = _Waited(None)
    first, second = object(), object()
    waited.join(first, since_ms=10, nodes=None)
    waited.join(second, since_ms=11, nodes=None)
    waited.heard(20, node=0)
    waited.pass_turn()
    waited.awake(first)
    waited.heard(20, node=1)
    assert not waited.leave(first, won=True)  # it holds the lock now
    assert not waited.woken(second, 11, None)
    waited.heard(20, node=0)  # its release, in the same ms
    assert waited.pass_turn()
    assert waited.woken(second, 11, None)


def test_a_late_copy_of_a_release_from_before_a_win_is_no_news() -> None:
    waited = _Waited(None)
    first, second = object(), object()
    waited.join(first, since_ms=10, nodes=None)
    waited.join(second, since_ms=11, nodes=None)
    waited.heard(20, node=0, payload=b"release-1")
    waited.pass_turn()
    waited.awake(first)
    assert not waited.leave(first, won=True)
    assert not waited.heard(20, node=3, payload=b"release-1")  # node 3's copy, after the win
    assert not waited.pass_turn()
    assert waited.heard(20, node=3, payload=b"release-2")  # the winner's release
    assert waited.pass_turn()
    assert waited.woken(second, 11, None)


def test_the_same_value_released_again_from_a_node_is_news() -> None:
    """A value is released once per node per release: node 0 releasing it again (a failed
    try's clean-up, then the unlock of the same lock() call) is a new release."""
    waited = _Waited(None)
    first, second = object(), object()
    waited.join(first, since_ms=10, nodes=None)
    waited.join(second, since_ms=11, nodes=None)
    waited.heard(20, node=0, payload=b"value-b")
    waited.pass_turn()
    waited.awake(first)
    waited.leave(first, won=True)
    assert waited.heard(30, node=0, payload=b"value-b")
    assert waited.pass_turn()
    assert waited.woken(second, 11, None)


def test_a_notice_from_a_node_not_found_held_gives_no_turn() -> None:
    waited = _Waited(None)
    waiter = object()
    waited.join(waiter, since_ms=10, nodes=frozenset({1, 2}))
    waited.heard(20, node=0)
    assert not waited.pass_turn()
    waited.heard(21, node=2)
    assert waited.pass_turn()


def test_waiters_without_a_token_wake_on_any_news() -> None:
    waited = _Waited(None)
    waited.join(object(), since_ms=10, nodes=None)
    waited.heard(20, node=0)
    waited.pass_turn()
    assert waited.woken(None, 10, None)  # the multi-key and permit flows: as before


# --- with redis-server ------------------------------------------------------------------------


def _urls(servers: list[RedisServer]) -> list[str]:
    return [s.url for s in servers]


def _count_attempts(rs: Redsync | AsyncRedsync) -> list[int]:
    """Count the acquire fan-outs ``rs`` sends from now on (in a one-item list)."""
    count = [0]
    fan_out = rs._fan_out

    def counted(effect: FanOut, order: Any = None) -> Any:
        count[0] += effect.op is Op.ACQUIRE
        return fan_out(effect, order)

    rs._fan_out = counted  # type: ignore[method-assign]
    return count


def test_waiters_of_one_process_take_turns_oldest_first(redis_nodes: list[RedisServer]) -> None:
    other = Redsync(_urls(redis_nodes))
    holder = other.new_mutex("turns:sync")
    holder.lock()
    order: list[int] = []
    with Redsync(_urls(redis_nodes)) as rs:
        attempts = _count_attempts(rs)

        def wait(i: int) -> None:
            mutex = rs.new_mutex("turns:sync", retry_delay=LONG_DELAY, tries=3)
            mutex.lock()
            order.append(i)
            time.sleep(HOLD)
            mutex.unlock()

        threads = [threading.Thread(target=wait, args=(i,)) for i in range(WAITERS)]
        for thread in threads:
            thread.start()
            time.sleep(SPACING)
        started = time.monotonic()
        holder.unlock()
        for thread in threads:
            thread.join()
        took = time.monotonic() - started
    other.close()
    assert order == list(range(WAITERS))
    assert took < WAKE_BOUND  # every hand-off came from a notice, not from a delay
    assert attempts[0] <= MOST_ATTEMPTS


async def test_async_waiters_of_one_loop_take_turns_oldest_first(
    redis_nodes: list[RedisServer],
) -> None:
    other = Redsync(_urls(redis_nodes))
    holder = other.new_mutex("turns:async")
    holder.lock()
    order: list[int] = []
    async with AsyncRedsync(_urls(redis_nodes)) as rs:
        attempts = _count_attempts(rs)

        async def wait(i: int) -> None:
            mutex = rs.new_mutex("turns:async", retry_delay=LONG_DELAY, tries=3)
            await mutex.lock()
            order.append(i)
            await asyncio.sleep(HOLD)
            await mutex.unlock()

        tasks = []
        for i in range(WAITERS):
            tasks.append(asyncio.ensure_future(wait(i)))
            await asyncio.sleep(SPACING)
        started = time.monotonic()
        await asyncio.to_thread(holder.unlock)
        await asyncio.gather(*tasks)
        took = time.monotonic() - started
    other.close()
    assert order == list(range(WAITERS))
    assert took < WAKE_BOUND
    assert attempts[0] <= MOST_ATTEMPTS


# --- a lock() call that ends passes its turn (an exception, a timeout, a cancellation) ---------


def _publish(server: RedisServer, key: str) -> None:
    client = server.client()
    client.publish(key, "a-release")
    client.close()


def test_a_turn_holder_that_ends_without_the_lock_wakes_the_next(
    redis_nodes: list[RedisServer],
) -> None:
    with Redsync(_urls(redis_nodes)) as rs:
        notices = rs._notices
        key, first, second = "turns:leave", object(), object()
        woken: dict[str, bool] = {}

        def sleep(name: str, waiter: object) -> None:
            woken[name] = notices.wait(key, rs._clock(), int(LONG_DELAY * 1000), None, waiter)

        threads = [
            threading.Thread(target=sleep, args=("first", first)),
            threading.Thread(target=sleep, args=("second", second)),
        ]
        for thread in threads:
            thread.start()
            time.sleep(SPACING)  # subscribed (its confirmation wakes "first" once), then queued
        threads[0].join()
        threads[0] = threading.Thread(target=sleep, args=("first", first))  # "first" tried, lost
        threads[0].start()
        time.sleep(SPACING)
        _publish(redis_nodes[0], key)
        threads[0].join(WAKE_BOUND)
        assert woken.get("first") is True
        assert threads[1].is_alive()  # one turn: the second sleeps on
        started = time.monotonic()
        rs._left(key, first, won=False)  # its lock() ended (say, a timeout) without the lock
        threads[1].join(WAKE_BOUND)
        assert woken.get("second") is True
        assert time.monotonic() - started < WAKE_BOUND


async def test_an_async_turn_holder_that_ends_without_the_lock_wakes_the_next(
    redis_nodes: list[RedisServer],
) -> None:
    async with AsyncRedsync(_urls(redis_nodes)) as rs:
        key, first, second = "turns:leave-async", object(), object()
        await rs._sleep(Sleep(1, key, rs._clock(), None, first))  # subscribes; "first" queued
        await asyncio.sleep(SPACING)  # the subscription's confirmation wakes nobody
        notices = rs._notices[asyncio.get_running_loop()]

        async def sleep(waiter: object) -> bool:
            return await notices.wait(key, rs._clock(), int(LONG_DELAY * 1000), None, waiter)

        first_sleeps = asyncio.ensure_future(sleep(first))
        await asyncio.sleep(SPACING)
        second_sleeps = asyncio.ensure_future(sleep(second))
        await asyncio.sleep(SPACING)
        await asyncio.to_thread(_publish, redis_nodes[0], key)
        assert await asyncio.wait_for(first_sleeps, WAKE_BOUND)
        await asyncio.sleep(SPACING)
        assert not second_sleeps.done()  # one turn: the second sleeps on
        rs._left(key, first, won=False)
        assert await asyncio.wait_for(second_sleeps, WAKE_BOUND)
