"""A fresh value's first attempt is plain: SET NX PX and PTTL in one write, no script.

``try_lock()`` (and the first attempt of a ``lock()`` that does not queue: ``tries=1`` or
``wake_on_release=False``) with a value drawn for the call sends ``SET key value NX PX ttl``
then ``PTTL key`` to every node instead of the acquire script: no key can hold that value yet
(nothing to re-arm) and there is no waiter to queue. Its replies mean what the script's would.
A fixed ``value=``, a ``gen_value_func`` and every later attempt keep the script. Each node's
INFO commandstats tells which ran (a script's own SET and PTTL count there too).
"""

from __future__ import annotations

import types
from collections.abc import Generator, Sequence
from typing import Any

import pytest
import redis
from polling import ran, reset_stats
from scenarios import FOREIGN, FOREIGN_TTL_MS, hold_foreign, pttls_on, values_on

from redsync_core import AsyncRedsync, LockTaken, MutexOptions, Redsync
from redsync_core._algorithm import flows
from redsync_core._algorithm.effects import (
    MISSING,
    OK,
    FanOut,
    NodeReply,
    Op,
    Sleep,
    Status,
    Tally,
    Waiter,
)
from redsync_core._transport import aio as aio_transport
from redsync_core._transport import sync as sync_transport
from redsync_core._transport.clients import REDIS
from redsync_core._transport.commands import (
    PENDING,
    Command,
    UnexpectedReply,
    command,
    decode,
    decode_plain_acquire,
    decoder,
    new_reader,
    pack,
)
from redsync_core._transport.memory import MemoryStore
from redsync_core.testing import RedisServer

NAME = "plain:job"
EXPIRY_MS = 8000


# --- what is sent, and what its replies mean ------------------------------------------------


def fresh_acquire(**fields: Any) -> FanOut:
    """An ACQUIRE of a fresh value (``fields`` changed)."""
    return FanOut(Op.ACQUIRE, NAME, "v", ttl_ms=EXPIRY_MS, fresh=True)._replace(**fields)


def test_a_fresh_acquire_is_set_nx_px_then_pttl_in_one_write() -> None:
    sent = command(fresh_acquire())
    assert sent == Command(None, ("SET", NAME, "v", "NX", "PX", EXPIRY_MS), (("PTTL", NAME),), 2)
    assert sent.replies == 1 + len(sent.then)
    assert sent.replies == 2
    assert sent.encode() == pack("SET", NAME, "v", "NX", "PX", EXPIRY_MS) + pack("PTTL", NAME)


@pytest.mark.parametrize(
    "effect",
    [
        pytest.param(fresh_acquire(fresh=False), id="a value that may have been sent before"),
        pytest.param(fresh_acquire(waiter=Waiter("w.1", 1)), id="a waiter to queue"),
        pytest.param(fresh_acquire(op=Op.FENCED_ACQUIRE), id="fenced"),
        pytest.param(fresh_acquire(op=Op.ACQUIRE_ALL, keys=(NAME, "b")), id="several keys"),
    ],
)
def test_other_acquires_keep_their_script(effect: FanOut) -> None:
    sent = command(effect)
    assert sent.script is not None
    assert sent.replies == 1


@pytest.mark.parametrize(
    ("replies", "expected"),
    [
        pytest.param([b"OK", EXPIRY_MS], OK, id="set"),
        pytest.param(["OK", EXPIRY_MS], OK, id="set, text replies"),
        pytest.param([True, EXPIRY_MS], OK, id="set, redis-py's callback"),
        pytest.param([None, 4200], NodeReply(Status.TAKEN, 4200), id="held: its TTL"),
        pytest.param([None, 0], NodeReply(Status.TAKEN, 0), id="held, expiring now"),
        pytest.param([None, -1], NodeReply(Status.TAKEN, None), id="held without expiry"),
        pytest.param([None, -2], NodeReply(Status.TAKEN, 0), id="gone between SET and PTTL"),
    ],
)
def test_plain_replies_decode_as_the_script_code_would(
    replies: list[Any], expected: object
) -> None:
    assert decode_plain_acquire(replies) == expected
    assert decode(fresh_acquire(), replies) == expected
    assert decode(fresh_acquire(), replies) != MISSING  # a fresh value: never "missing"


@pytest.mark.parametrize(
    "replies",
    [
        pytest.param(b"OK", id="one reply"),
        pytest.param(1, id="a script's code"),
        pytest.param(None, id="nil"),
        pytest.param([b"OK"], id="SET alone"),
        pytest.param([b"OK", 5, 5], id="three"),
        pytest.param([None, b"5"], id="PTTL as text"),
        pytest.param([None, True], id="PTTL as bool"),
        pytest.param([None, -3], id="PTTL below -2"),
        pytest.param([b"QUEUED", 5], id="SET answered QUEUED"),
        pytest.param([False, 5], id="SET answered false"),
        pytest.param([1, 5], id="SET answered 1"),
    ],
)
def test_other_plain_replies_are_unexpected(replies: object) -> None:
    with pytest.raises(UnexpectedReply):
        decode(fresh_acquire(), replies)


def test_only_the_first_attempt_of_a_call_with_a_drawn_value_is_fresh() -> None:
    def attempts(fresh: bool) -> list[bool]:
        flow = flows.acquire_token(
            MutexOptions(wake_on_release=False, retry_delay=0.01),
            flows.Target(NAME, NAME, "v", 3),
            now_ms=0,
            tries=3,
            timeout_ms=None,
            randrange=lambda lo, hi: lo,
            fresh=fresh,
        )
        return [e.fresh for e in _drive(flow, held=(NodeReply(Status.TAKEN, 500),) * 3)]

    assert attempts(fresh=True) == [True, False, False]
    assert attempts(fresh=False) == [False, False, False]


def _drive(flow: Generator[Any, Any, Any], held: tuple[NodeReply, ...]) -> list[FanOut]:
    """Answer every ACQUIRE of ``flow`` with ``held`` until it gives up; return the ACQUIREs."""
    sent: list[FanOut] = []
    reply: Any = None
    now = 0
    while True:
        try:
            effect = flow.send(reply)
        except LockTaken:
            return sent
        if isinstance(effect, Sleep):
            now += effect.ms
            reply = None
            continue
        assert effect.op is Op.ACQUIRE  # every node held: no release to send
        sent.append(effect)
        reply = Tally(held, now, now + 1)
        now += 1


# --- the sync transport's accounting of the replies still due -----------------------------


class _Lease:
    """A connection that hands out scripted replies (``PENDING``: nothing more arrived)."""

    family = REDIS
    handshake = 0
    reader = None

    def __init__(self, *replies: object) -> None:
        self.replies = list(replies)
        self.unanswered = 0
        self.conn = types.SimpleNamespace(_sock=None)

    def take(self) -> object:
        reply = self.replies.pop(0) if self.replies else PENDING
        if isinstance(reply, Exception):
            raise reply
        return reply


def _call(lease: _Lease) -> Any:
    effect = fresh_acquire()
    return sync_transport._Call(lease, effect, command(effect), decoder(effect))  # type: ignore[arg-type]


def test_a_call_reads_both_replies_even_when_they_come_apart() -> None:
    lease = _Lease(b"OK", PENDING, 7999)
    call = _call(lease)
    assert call.finish() is call  # SET's reply alone: still in flight
    assert call.finish() == OK
    assert lease.unanswered == 0


@pytest.mark.parametrize(
    ("arrived", "dropped"), [((), 2), ((None,), 1)], ids=["no reply yet", "SET's reply only"]
)
def test_a_call_given_up_drops_the_replies_still_due(
    arrived: tuple[object, ...], dropped: int
) -> None:
    lease = _Lease(*arrived, PENDING)
    call = _call(lease)
    assert call.finish() is call
    call.abandon()  # the deadline: what is still due is dropped before the next command
    assert lease.unanswered == dropped


def test_an_error_reply_first_leaves_the_other_reply_to_drop() -> None:
    lease = _Lease(redis.exceptions.ResponseError("MOVED 1 127.0.0.1:7000"), -2)
    call = _call(lease)
    with pytest.raises(redis.exceptions.ResponseError):
        call.finish()  # a cluster client then asks the right master; PTTL's reply is still due
    assert lease.unanswered == 1


class _Transport:
    def write(self, data: bytes) -> None:
        pass

    def abort(self) -> None:
        pass


@pytest.mark.skipif(
    new_reader(ValueError) is None, reason="hiredis (with notEnoughData) is not installed"
)
def test_our_asyncio_protocol_answers_once_every_reply_came() -> None:
    buffer = bytearray(64)
    reader = new_reader(redis.exceptions.ResponseError)
    wire = aio_transport._Wire(_Transport(), None, reader, buffer, REDIS)  # type: ignore[arg-type]

    def arrive(data: bytes) -> None:
        buffer[: len(data)] = data
        wire.buffer_updated(len(data))

    wire.send(b"", 2)
    arrive(b"+OK\r\n:79")
    assert wire.take() is PENDING  # SET's reply alone
    arrive(b"99\r\n")
    assert wire.take() == [b"OK", 7999]
    assert wire.in_step()
    wire.send(b"")  # a command with one reply next
    arrive(b":1\r\n")
    assert wire.take() == 1
    wire.send(b"", 2)
    arrive(b"-MOVED 1 127.0.0.1:7000\r\n")
    assert wire.take() is PENDING  # an error first: PTTL's reply is still due
    arrive(b":-2\r\n")
    with pytest.raises(redis.exceptions.ResponseError):
        wire.take()
    assert wire.in_step()


# --- against real nodes: which commands ran ---------------------------------------------------


def scripts(servers: Sequence[RedisServer]) -> list[int]:
    return ran(servers, "evalsha", "eval")


def held_for(servers: Sequence[RedisServer], value: str) -> None:
    """Assert every server holds ``value`` with (about) the whole expiry."""
    assert values_on(servers, NAME) == [value] * len(servers)
    assert all(EXPIRY_MS - 1000 < ttl <= EXPIRY_MS for ttl in pttls_on(servers, NAME))


def test_try_lock_on_a_free_key_runs_set_and_pttl_and_no_script(
    redis_nodes: list[RedisServer],
) -> None:
    reset_stats(redis_nodes)
    with Redsync([s.url for s in redis_nodes]) as rs:
        mutex = rs.new_mutex(NAME)
        assert mutex.try_lock()
        assert (scripts(redis_nodes), ran(redis_nodes, "set"), ran(redis_nodes, "pttl")) == (
            [0] * 3,
            [1] * 3,
            [1] * 3,
        )
        assert mutex.value is not None
        held_for(redis_nodes, mutex.value)
        assert mutex.unlock()
    assert values_on(redis_nodes, NAME) == [None] * 3
    assert scripts(redis_nodes) == [1] * 3  # the release


async def test_try_lock_on_a_free_key_runs_set_and_pttl_and_no_script_asyncio(
    redis_nodes: list[RedisServer],
) -> None:
    reset_stats(redis_nodes)
    async with AsyncRedsync([s.url for s in redis_nodes]) as ars:
        mutex = ars.new_mutex(NAME)
        assert await mutex.try_lock()
        assert (scripts(redis_nodes), ran(redis_nodes, "set"), ran(redis_nodes, "pttl")) == (
            [0] * 3,
            [1] * 3,
            [1] * 3,
        )
        assert mutex.value is not None
        held_for(redis_nodes, mutex.value)
        assert await mutex.unlock()
    assert values_on(redis_nodes, NAME) == [None] * 3
    assert scripts(redis_nodes) == [1] * 3


def test_a_contended_try_lock_reads_the_holders_ttl_and_leaves_nothing(
    redis_nodes: list[RedisServer],
) -> None:
    hold_foreign(redis_nodes, NAME, range(3))
    reset_stats(redis_nodes)
    with Redsync([s.url for s in redis_nodes]) as rs:
        assert not rs.new_mutex(NAME).try_lock()
        with pytest.raises(LockTaken) as caught:
            rs.new_mutex(NAME, tries=1).lock()
    assert caught.value.retry_after is not None
    assert FOREIGN_TTL_MS - 2000 < caught.value.retry_after * 1000 <= FOREIGN_TTL_MS
    assert values_on(redis_nodes, NAME) == [FOREIGN] * 3
    assert scripts(redis_nodes) == [0] * 3  # every node said TAKEN: no release either


async def test_a_contended_try_lock_reads_the_holders_ttl_and_leaves_nothing_asyncio(
    redis_nodes: list[RedisServer],
) -> None:
    hold_foreign(redis_nodes, NAME, range(3))
    reset_stats(redis_nodes)
    async with AsyncRedsync([s.url for s in redis_nodes]) as ars:
        assert not await ars.new_mutex(NAME).try_lock()
        with pytest.raises(LockTaken) as caught:
            await ars.new_mutex(NAME, tries=1).lock()
    assert caught.value.retry_after is not None
    assert FOREIGN_TTL_MS - 2000 < caught.value.retry_after * 1000 <= FOREIGN_TTL_MS
    assert values_on(redis_nodes, NAME) == [FOREIGN] * 3
    assert scripts(redis_nodes) == [0] * 3


def _hold_forever(servers: Sequence[RedisServer]) -> None:
    for server in servers:
        client = server.client()
        try:
            client.set(NAME, FOREIGN)  # no expiry
        finally:
            client.close()


def test_a_key_without_ttl_is_taken_with_no_ttl(redis_nodes: list[RedisServer]) -> None:
    _hold_forever(redis_nodes)
    with Redsync([s.url for s in redis_nodes]) as rs:
        effect = FanOut(Op.ACQUIRE, NAME, "fresh-value", ttl_ms=EXPIRY_MS, fresh=True)
        replies = sync_transport.fan_out(rs._nodes, effect)  # type: ignore[attr-defined]
        assert replies == (NodeReply(Status.TAKEN, None),) * 3
        with pytest.raises(LockTaken) as caught:
            rs.new_mutex(NAME, tries=1).lock()
    assert caught.value.retry_after is None


async def test_a_key_without_ttl_is_taken_with_no_ttl_asyncio(
    redis_nodes: list[RedisServer],
) -> None:
    _hold_forever(redis_nodes)
    async with AsyncRedsync([s.url for s in redis_nodes]) as ars:
        effect = FanOut(Op.ACQUIRE, NAME, "fresh-value", ttl_ms=EXPIRY_MS, fresh=True)
        for _ in range(2):  # new connections (a task each), then idle ones (written directly)
            replies = await aio_transport.fan_out(ars._nodes, effect)  # type: ignore[attr-defined]
            assert replies == (NodeReply(Status.TAKEN, None),) * 3
        with pytest.raises(LockTaken) as caught:
            await ars.new_mutex(NAME, tries=1).lock()
    assert caught.value.retry_after is None


CHOSEN = "chosen-value"
CHOSEN_VALUES = [
    pytest.param({"value": CHOSEN}, id="value="),
    pytest.param({"gen_value_func": lambda: CHOSEN}, id="gen_value_func"),
]


def _hold_chosen(servers: Sequence[RedisServer]) -> None:
    """Our own chosen value is there already, about to expire (a lost reply, a restart...)."""
    for server in servers:
        client = server.client()
        try:
            client.set(NAME, CHOSEN, px=1000)
        finally:
            client.close()


@pytest.mark.parametrize("options", CHOSEN_VALUES)
def test_a_chosen_value_keeps_the_script_which_rearms_our_key(
    redis_nodes: list[RedisServer], options: dict[str, Any]
) -> None:
    _hold_chosen(redis_nodes)
    reset_stats(redis_nodes)
    with Redsync([s.url for s in redis_nodes]) as rs:
        mutex = rs.new_mutex(NAME, **options)
        assert mutex.try_lock()  # SET NX alone would have found the key held
        held_for(redis_nodes, CHOSEN)
        assert scripts(redis_nodes) == [1] * 3
        assert mutex.unlock()


@pytest.mark.parametrize("options", CHOSEN_VALUES)
async def test_a_chosen_value_keeps_the_script_which_rearms_our_key_asyncio(
    redis_nodes: list[RedisServer], options: dict[str, Any]
) -> None:
    _hold_chosen(redis_nodes)
    reset_stats(redis_nodes)
    async with AsyncRedsync([s.url for s in redis_nodes]) as ars:
        mutex = ars.new_mutex(NAME, **options)
        assert await mutex.try_lock()
        held_for(redis_nodes, CHOSEN)
        assert scripts(redis_nodes) == [1] * 3
        assert await mutex.unlock()


#: lock() that does not queue: its first attempt is plain, the later ones are scripts.
RETRIES = {"tries": 3, "retry_delay": 0.01, "wake_on_release": False}


def test_lock_without_waiting_queue_sends_plain_first_then_scripts(
    redis_nodes: list[RedisServer],
) -> None:
    hold_foreign(redis_nodes, NAME, range(3))
    reset_stats(redis_nodes)
    with Redsync([s.url for s in redis_nodes], **RETRIES) as rs:
        with pytest.raises(LockTaken) as caught:
            rs.new_mutex(NAME).lock()
        assert caught.value.attempts == 3
        # Attempts 2 and 3 ran the script; every attempt ran one SET (plain, then the script's).
        assert (scripts(redis_nodes), ran(redis_nodes, "set")) == ([2] * 3, [3] * 3)
        assert values_on(redis_nodes, NAME) == [FOREIGN] * 3
        reset_stats(redis_nodes)
        mutex = rs.new_mutex("plain:free")
        mutex.lock()  # free: the first attempt wins, with no script
        assert scripts(redis_nodes) == [0] * 3
        assert mutex.unlock()
        reset_stats(redis_nodes)
        waiting = rs.new_mutex("plain:free", wake_on_release=True)
        waiting.lock()  # a lock() that may queue keeps the script (it carries its waiter)
        assert scripts(redis_nodes) == [1] * 3
        assert waiting.unlock()


async def test_lock_without_waiting_queue_sends_plain_first_then_scripts_asyncio(
    redis_nodes: list[RedisServer],
) -> None:
    hold_foreign(redis_nodes, NAME, range(3))
    reset_stats(redis_nodes)
    async with AsyncRedsync([s.url for s in redis_nodes], **RETRIES) as ars:
        with pytest.raises(LockTaken) as caught:
            await ars.new_mutex(NAME).lock()
        assert caught.value.attempts == 3
        assert (scripts(redis_nodes), ran(redis_nodes, "set")) == ([2] * 3, [3] * 3)
        assert values_on(redis_nodes, NAME) == [FOREIGN] * 3
        reset_stats(redis_nodes)
        mutex = ars.new_mutex("plain:free")
        await mutex.lock()
        assert scripts(redis_nodes) == [0] * 3
        assert await mutex.unlock()
        reset_stats(redis_nodes)
        waiting = ars.new_mutex("plain:free", wake_on_release=True)
        await waiting.lock()
        assert scripts(redis_nodes) == [1] * 3
        assert await waiting.unlock()


def test_memory_nodes_answer_a_fresh_acquire_as_redis_does(redis_nodes: list[RedisServer]) -> None:
    # memory:// nodes run every ACQUIRE alike: for a fresh value that is what SET NX PX + PTTL say.
    store = MemoryStore("plain-parity")
    effect = FanOut(Op.ACQUIRE, NAME, "fresh", ttl_ms=EXPIRY_MS, fresh=True)
    with Redsync([redis_nodes[0].url]) as rs:
        (node,) = rs._nodes  # type: ignore[attr-defined]
        assert store.apply(effect) == sync_transport.fan_out([node], effect)[0] == OK
        hold_foreign(redis_nodes, "held", [0])
        store.apply(FanOut(Op.ACQUIRE, "held", FOREIGN, ttl_ms=FOREIGN_TTL_MS))
        held = effect._replace(key="held")
        in_memory, in_redis = store.apply(held), sync_transport.fan_out([node], held)[0]
        assert isinstance(in_redis, NodeReply)
        assert in_memory.status is in_redis.status is Status.TAKEN
        assert in_memory.ttl_ms is not None
        assert in_redis.ttl_ms is not None
        assert abs(in_memory.ttl_ms - in_redis.ttl_ms) < 1000
