"""Hand-over: a release sets the key to the oldest queued waiter's value, which then holds the
lock on the notices of a quorum of nodes, without an attempt of its own.

Three layers: the pure acquire flow driven by hand (when a hand-over may be trusted and what
validity it gives), the scripts on a real server (who is handed the key, a dead waiter skipped,
giving up and unlocking take the waiter off the queue), and lock() on real nodes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Generator, Iterator
from typing import Any

import pytest
import redis
from polling import evalsha_calls, eventually, settled

from redsync_core import AsyncRedsync, MutexOptions, Redsync
from redsync_core._algorithm import flows
from redsync_core._algorithm.effects import (
    OK,
    FanOut,
    NodeReply,
    Op,
    Sleep,
    Status,
    Tally,
    Waiter,
    Woke,
)
from redsync_core._algorithm.fencing import Acquired
from redsync_core._algorithm.queues import handover_proof, queue_keys, queue_member, wake_channel
from redsync_core._algorithm.timing import drift_ms
from redsync_core._transport import commands
from redsync_core._transport.commands import TURN_MS, command, packed, prepare
from redsync_core._transport.notices import _Waited
from redsync_core._transport.scripts import LEAVE, RELEASE
from redsync_core.testing import FakeClock, RedisServer

HELD = NodeReply(Status.TAKEN, 60_000)
KEY = "handover:job"
WAITER = Waiter("0000000a.1", 1)
TTL_MS = 8000


# --- the flow ---------------------------------------------------------------------------------


def waiter_flow(clock: FakeClock, **opts: Any) -> Generator[Any, Any, Acquired]:
    """The acquire flow of a waiter (``WAITER``) on 3 nodes, up to 3 tries, 5 s apart."""
    return flows.acquire_token(
        MutexOptions(**{"retry_delay": 5.0, "expiry": TTL_MS / 1000, **opts}),
        flows.Target("job", KEY, "v1", 3),
        now_ms=clock(),
        tries=3,
        timeout_ms=None,
        randrange=lambda lo, hi: lo,
        waiter=WAITER,
    )


def run_flow(
    replies: list[tuple[Any, ...]], granted: frozenset[int], after_ms: int = 5, **opts: Any
) -> tuple[Acquired, list[Any], int]:
    """Drive an acquire flow of a waiter on 3 nodes: attempts answered with ``replies`` in turn,
    the first sleep ended after ``after_ms`` by a notice from ``granted`` nodes (handed over);
    return the outcome, the effects and when the first attempt began."""
    clock = FakeClock()
    flow = waiter_flow(clock, **opts)
    effects: list[Any] = []
    attempts, first_ms = 0, -1
    reply: Any = None
    while True:
        try:
            effect = flow.send(reply)
        except StopIteration as done:
            return done.value, effects, first_ms
        effects.append(effect)
        if isinstance(effect, Sleep):
            notice = after_ms if sum(isinstance(e, Sleep) for e in effects) == 1 else None
            clock.advance((effect.ms if notice is None else notice) / 1000)
            reply = Woke(clock(), True, granted) if notice is not None else None
            continue
        started = clock()
        first_ms = started if first_ms < 0 else first_ms
        clock.advance(0.001)
        if effect.op is Op.ACQUIRE:
            canned = replies[min(attempts, len(replies) - 1)]
            attempts += 1
        else:
            canned = (OK,) * 3
        reply = Tally(canned, started, clock())


def attempts(effects: list[Any]) -> int:
    return sum(1 for e in effects if isinstance(e, FanOut) and e.op is Op.ACQUIRE)


def test_a_quorum_of_hand_overs_holds_the_lock_without_an_attempt() -> None:
    won, effects, first_ms = run_flow([(HELD,) * 3, (OK,) * 3], granted=frozenset({0, 2}))
    assert attempts(effects) == 1  # only the one that queued it
    # The nodes set the key after they queued us, so after our first attempt began: the
    # validity runs from there, as if that attempt had taken the lock.
    assert won.until_ms == first_ms + TTL_MS - drift_ms(TTL_MS, 0.01)
    assert won.queued == WAITER  # node 1 did not hand over: the unlock takes us off its queue


def test_a_waiter_sleeps_with_the_release_its_unlock_sends_after_a_hand_over() -> None:
    won, effects, _ = run_flow([(HELD,) * 3], granted=frozenset({0, 2}))
    (sleep,) = [e for e in effects if isinstance(e, Sleep)]
    opts = MutexOptions(retry_delay=5.0, expiry=TTL_MS / 1000)
    unlock = flows.release(opts, flows.Target("job", KEY, "v1", 3), won.queued)
    assert sleep.then == next(unlock)  # what the driver packs while it waits
    assert sleep.then is not None
    assert sleep.then.waiter is WAITER  # it leaves the queue of node 1, which did not hand over
    assert sleep.then.queued


def test_a_prepared_command_is_sent_as_made_once() -> None:
    release = FanOut(Op.RELEASE, KEY, "v1", ttl_ms=TTL_MS, waiter=WAITER, queued=True)
    prepare(release)
    ready = commands._packed.ready[2]
    again = release._replace()  # the unlock's own fan-out: equal, not the same object
    assert again is not release
    assert packed(again) is ready  # not packed again
    assert ready[1] == command(release).encode()
    assert commands._packed.ready[0] is None  # used up
    other = release._replace(value="v2")
    prepare(release)
    assert packed(other)[1] == command(other).encode()  # another fan-out is packed anew


def test_when_every_node_handed_over_nothing_is_left_to_leave() -> None:
    won, effects, _ = run_flow([(HELD,) * 3], granted=frozenset({0, 1, 2}))
    assert attempts(effects) == 1
    assert won.queued is None
    assert not [e for e in effects if isinstance(e, FanOut) and e.op is Op.LEAVE]


def test_hand_overs_from_fewer_than_a_quorum_are_checked_by_an_attempt() -> None:
    won, effects, _ = run_flow([(HELD,) * 3, (OK, HELD, OK)], granted=frozenset({0}))
    assert attempts(effects) == 2
    assert won.queued is None


def test_after_a_clean_up_hand_overs_heard_are_not_trusted() -> None:
    # The first attempt took node 0 and released it: a hand-over heard from node 0 since
    # may be one that this release undid. Only an attempt can tell.
    won, effects, _ = run_flow([(OK, HELD, HELD), (OK,) * 3], granted=frozenset({0, 1}))
    assert [e.op for e in effects if isinstance(e, FanOut)] == [Op.ACQUIRE, Op.RELEASE, Op.ACQUIRE]
    assert won.queued is None


def test_hand_overs_from_nodes_no_clean_up_released_still_count() -> None:
    # The first attempt took node 0 and released it; nodes 1 and 2 queued us and then handed
    # the key over: no clean-up of ours touched them, so their hand-overs stand (a quorum).
    won, effects, first_ms = run_flow([(OK, HELD, HELD), (OK,) * 3], granted=frozenset({1, 2}))
    assert [e.op for e in effects if isinstance(e, FanOut)] == [Op.ACQUIRE, Op.RELEASE]
    assert won.until_ms == first_ms + TTL_MS - drift_ms(TTL_MS, 0.01)
    assert won.queued == WAITER  # node 0 did not hand over: the unlock leaves its queue


def test_a_young_waiter_woken_in_vain_is_handed_the_key_during_its_head_start() -> None:
    # Woken 2 ms into its lock() call by a notice that does not name it (a node with nobody
    # queued released), it gives older waiters a head start; a quorum hands the key over to
    # it meanwhile: that ends the head start, and it holds the lock without an attempt.
    clock = FakeClock()
    flow = waiter_flow(clock)
    attempt = next(flow)
    assert attempt.op is Op.ACQUIRE
    started = clock()
    clock.advance(0.001)
    sleep = flow.send(Tally((HELD,) * 3, started, clock()))
    assert isinstance(sleep, Sleep)
    assert sleep.ms > flows.YOUNG_DEFER_MS
    clock.advance(0.001)
    head_start = flow.send(Woke(clock()))  # news, but not for this waiter
    assert isinstance(head_start, Sleep)
    assert (head_start.ms, head_start.key, head_start.nodes) == (
        flows.YOUNG_DEFER_MS,
        KEY,
        frozenset(),  # only a notice naming this waiter ends it early
    )
    with pytest.raises(StopIteration) as done:
        flow.send(Woke(clock(), True, frozenset({0, 1})))
    won = done.value.value
    assert won.until_ms == started + TTL_MS - drift_ms(TTL_MS, 0.01)


def test_a_hand_over_late_in_the_expiry_is_re_armed_by_an_attempt() -> None:
    late = int(TTL_MS * flows.HANDED_OVER_WITHIN) + 10
    _, effects, _ = run_flow([(HELD,) * 3, (OK,) * 3], granted=frozenset({0, 1}), after_ms=late)
    assert attempts(effects) == 2  # the keys' TTL is set again before the lock is held


# --- the scripts ------------------------------------------------------------------------------


@pytest.fixture
def client(redis_servers: Any) -> Iterator[redis.Redis]:
    (server,) = redis_servers(1)
    c = server.client()
    yield c
    c.close()


def queue_and_turn() -> tuple[str, str]:
    keys = queue_keys(KEY)
    assert keys is not None
    return keys


def listen(client: redis.Redis, inbox: str) -> Any:
    listener = client.pubsub()
    listener.subscribe(wake_channel(KEY, inbox))
    assert listener.get_message(timeout=1.0) is not None  # the confirmation
    return listener


def release(client: redis.Redis, value: str, *then: str | int) -> Any:
    queue, turn = queue_and_turn()
    return client.eval(RELEASE.source, 3, KEY, queue, turn, value, "p", "digest", 1, TURN_MS, *then)


def test_a_release_hands_the_key_to_the_oldest_live_waiter_skipping_a_dead_one(
    client: redis.Redis,
) -> None:
    queue, _ = queue_and_turn()
    dead = queue_member("deadbeef.1", 5000, "dead-value")  # its process is gone: no subscriber
    live = queue_member("0000000b.7", 3000, "live value")  # a value may hold spaces
    client.zadd(queue, {dead: 1, live: 2})
    listener = listen(client, "0000000b")
    client.set(KEY, "holder", px=60_000)
    assert release(client, "holder") == 1
    message = listener.get_message(timeout=2.0)
    listener.close()
    assert message is not None
    assert message["data"] == f"digest 0000000b.7 {handover_proof('live value')}".encode()
    assert client.get(KEY) == b"live value"
    assert 2900 < client.pttl(KEY) <= 3000  # the waiter's own TTL
    assert client.zcard(queue) == 0  # both popped: the dead one for good


def test_a_waiter_that_gives_up_releases_the_key_handed_to_it_and_hands_it_on(
    client: redis.Redis,
) -> None:
    queue, turn = queue_and_turn()
    mine = queue_member("0000000a.1", TTL_MS, "a-value")
    nxt = queue_member("0000000b.1", TTL_MS, "b-value")
    client.zadd(queue, {nxt: 2})
    client.set(KEY, "a-value", px=TTL_MS)  # handed to A after its last attempt
    listener = listen(client, "0000000b")
    client.eval(LEAVE.source, 3, KEY, queue, turn, "p", "left", mine, TURN_MS, "1")
    message = listener.get_message(timeout=2.0)
    listener.close()
    assert message is not None
    assert message["data"] == f"left 0000000b.1 {handover_proof('b-value')}".encode()
    assert client.get(KEY) == b"b-value"


def test_a_waiter_that_won_keeps_a_key_handed_to_it_when_it_leaves(client: redis.Redis) -> None:
    queue, turn = queue_and_turn()
    mine = queue_member("0000000a.1", TTL_MS, "a-value")
    client.set(KEY, "a-value", px=TTL_MS)  # it holds the lock: this key is part of it
    client.eval(LEAVE.source, 3, KEY, queue, turn, "p", "left", mine, TURN_MS, "0")
    assert client.get(KEY) == b"a-value"


def test_an_unlock_takes_the_holder_off_a_queue_where_the_key_is_not_its(
    client: redis.Redis,
) -> None:
    queue, _ = queue_and_turn()
    mine = queue_member("0000000a.1", TTL_MS, "a-value")
    client.zadd(queue, {mine: 1})
    client.set(KEY, "other", px=60_000)  # never handed over here
    assert release(client, "a-value", "leave", mine) < 0  # another value: not deleted
    assert client.zcard(queue) == 0  # but no later release here hands it a key in vain
    assert client.get(KEY) == b"other"


# --- lock() on real nodes ---------------------------------------------------------------------


DRIVERS = [pytest.param("sync", id="sync"), pytest.param("asyncio", id="asyncio")]


def unlock_effect(mutex: Any) -> FanOut:
    """The release fan-out that ``mutex.unlock()`` sends now."""
    return next(flows.release(mutex._options, mutex._target(), mutex._queued))


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_holder_handed_over_by_a_quorum_leaves_the_other_queues_when_it_unlocks(
    driver: str, redis_nodes: list[RedisServer]
) -> None:
    clients = [s.client() for s in redis_nodes]
    urls = [s.url for s in redis_nodes]
    queue, _ = queue_and_turn()
    holder_rs = Redsync(urls)
    try:
        holder = holder_rs.new_mutex(KEY)
        holder.lock()
        clients[2].set(KEY, "other", px=60_000)  # node 2: another value (left by some crash)
        took: list[bool] = []
        seen: list[object] = []  # checked here: an assert in the thread would only warn

        def while_held(waiter: Any) -> tuple[int, bool]:
            # Still queued where the key was not handed over; the unlock's release was packed
            # while the waiter slept (``Sleep.then``).
            return clients[2].zcard(queue), commands._packed.ready[0] == unlock_effect(waiter)

        def wait_sync() -> None:
            with Redsync(urls) as rs:
                waiter = rs.new_mutex(KEY, retry_delay=30.0, tries=2, expiry=60.0)
                waiter.lock()
                took.append(waiter.held)
                seen.append(while_held(waiter))
                waiter.unlock()
                seen.append(commands._packed.ready[0] is None)  # the unlock sent it

        async def wait_async() -> None:
            async with AsyncRedsync(urls) as rs:
                waiter = rs.new_mutex(KEY, retry_delay=30.0, tries=2, expiry=60.0)
                await waiter.lock()
                took.append(waiter.held)
                seen.append(while_held(waiter))
                await waiter.unlock()
                seen.append(commands._packed.ready[0] is None)

        target = wait_sync if driver == "sync" else lambda: asyncio.run(wait_async())
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        assert eventually(lambda: all(c.zcard(queue) == 1 for c in clients))  # it is queued
        assert eventually(lambda: settled(clients))  # and subscribed: its first wake-up done
        for c in clients:
            c.config_resetstat()
        holder.unlock()  # nodes 0 and 1 hand the key over: a quorum of 3
        thread.join(20)  # a 30 s retry delay: only the hand-over ends the wait in time
        assert took == [True]
        assert seen == [(1, True), True]
        assert [c.zcard(queue) for c in clients] == [0, 0, 0]  # the unlock left node 2's queue
        # The holder's release and the waiter's unlock on each node; no attempt anywhere.
        assert [evalsha_calls(c) for c in clients] == [2, 2, 2]
    finally:
        holder_rs.close()
        for c in clients:
            c.close()


def test_a_hand_over_notice_counts_only_with_the_proof_of_the_waiters_value() -> None:
    waited = _Waited(None, need=2)
    waiter = Waiter("0000000a.1", 1, handover_proof("v1"))
    for node in (0, 1):  # a quorum names it, but for another value (a mistake, or forged)
        waited.heard(0, node, f"digest 0000000a.1 {handover_proof('v0')}")
    assert waited.granted_to(waiter) == frozenset()
    waited.heard(0, 2, f"digest 0000000a.1 {handover_proof('v1')}")
    assert waited.granted_to(waiter) == frozenset({2})
