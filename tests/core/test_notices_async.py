"""Asyncio release notices read in the event loop's read callback, with real redis-server nodes.

On a plain socket with hiredis, our protocol (``_Listener``) takes the subscriber connection's
transport over and handles each message where the loop reads it: a notice sets the futures of
the tasks it wakes there, with no reader task step in between. Without hiredis (or behind TLS)
the reader task reads through redis-py. These tests pin both ways, the waits' timers, the
linger of a key without waiters, and a subscriber connection the server drops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

import pytest

from redsync_core import AsyncRedsync
from redsync_core._transport import aio as aio_transport
from redsync_core._transport import commands
from redsync_core._transport import notices as notices_module
from redsync_core._transport.notices import AsyncNotices, _Listener
from redsync_core.testing import RedisServer

hiredis_reads = pytest.mark.skipif(
    commands.new_reader(ValueError) is None, reason="hiredis (with notEnoughData) is not installed"
)

LONG_MS = 5_000  # no wait here ends at its timeout while a test runs, unless it says so


def publish(servers: Sequence[RedisServer], channel: str, payload: str) -> None:
    for server in servers:
        client = server.client()
        client.publish(channel, payload)
        client.close()


def channels(server: RedisServer) -> set[str]:
    client = server.client()
    try:
        return {c.decode() for c in client.pubsub_channels()}
    finally:
        client.close()


@pytest.fixture
async def ars(redis_nodes: list[RedisServer]) -> AsyncIterator[AsyncRedsync]:
    async with AsyncRedsync([server.url for server in redis_nodes]) as redsync:
        yield redsync


@pytest.fixture
async def notices(ars: AsyncRedsync) -> AsyncIterator[AsyncNotices]:
    notices = AsyncNotices(ars._nodes, ars._clock)
    yield notices
    await notices.close()


async def subscribed(notices: AsyncNotices, ars: AsyncRedsync, key: str) -> None:
    """Wait until ``key`` is subscribed (its first confirmation wakes a wait once)."""
    assert await notices.wait(key, ars._clock(), LONG_MS)


def after(ars: AsyncRedsync) -> int:
    """A ``since_ms`` after everything heard so far (the confirmations came this ms or before)."""
    return ars._clock() + 1


def protocols(notices: AsyncNotices) -> list[type]:
    return [type(sub.conn._writer.transport.get_protocol()) for sub in notices._subs.values()]


@hiredis_reads
async def test_a_notice_wakes_its_waiter_from_the_read_callback(
    ars: AsyncRedsync, notices: AsyncNotices, redis_nodes: list[RedisServer]
) -> None:
    await subscribed(notices, ars, "async:callback")
    assert protocols(notices) == [_Listener] * len(redis_nodes)
    waiting = asyncio.ensure_future(notices.wait("async:callback", after(ars), LONG_MS))
    await asyncio.sleep(0.01)  # the task sleeps on its future; the notice comes after since_ms
    (wake,) = notices._keys["async:callback"].also
    listener = next(iter(notices._subs.values())).conn._writer.transport.get_protocol()
    message = commands.pack("message", "async:callback", "a-release")  # same RESP as a reply
    listener.buffer[: len(message)] = message
    listener.buffer_updated(len(message))
    assert wake.done()  # set by the callback itself, before the loop ran anything else
    assert await waiting


@hiredis_reads
async def test_a_published_release_wakes_a_waiter_read_by_our_protocol(
    ars: AsyncRedsync, notices: AsyncNotices, redis_nodes: list[RedisServer]
) -> None:
    await subscribed(notices, ars, "async:published")
    waiting = asyncio.ensure_future(notices.wait("async:published", after(ars), LONG_MS))
    await asyncio.sleep(0.05)
    publish(redis_nodes[1:2], "async:published", "a-release")
    assert await asyncio.wait_for(waiting, LONG_MS / 1000)


async def test_without_hiredis_the_reader_task_reads_through_redis_py(
    ars: AsyncRedsync,
    notices: AsyncNotices,
    redis_nodes: list[RedisServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(notices_module, "new_reader", lambda reply_error: None)
    monkeypatch.setattr(aio_transport, "new_reader", lambda reply_error: None)
    await subscribed(notices, ars, "async:redis-py")
    assert _Listener not in protocols(notices)
    waiting = asyncio.ensure_future(notices.wait("async:redis-py", after(ars), LONG_MS))
    await asyncio.sleep(0.05)
    publish(redis_nodes[:1], "async:redis-py", "a-release")
    assert await asyncio.wait_for(waiting, LONG_MS / 1000)


async def test_a_wait_ends_at_its_timeout_and_leaves_nothing_behind(
    ars: AsyncRedsync, notices: AsyncNotices
) -> None:
    await subscribed(notices, ars, "async:timeout")
    started = time.monotonic()
    assert not await notices.wait("async:timeout", after(ars), 200)
    assert time.monotonic() - started >= 0.19
    waited = notices._keys["async:timeout"]
    assert not waited.also
    assert waited.waiters == 0


async def test_a_cancelled_wait_leaves_nothing_behind(
    ars: AsyncRedsync, notices: AsyncNotices
) -> None:
    await subscribed(notices, ars, "async:cancel")
    waiting = asyncio.ensure_future(notices.wait("async:cancel", after(ars), LONG_MS))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    waited = notices._keys["async:cancel"]
    assert not waited.also
    assert waited.waiters == 0


async def test_a_key_lingers_for_its_last_waiter_then_is_unsubscribed(
    ars: AsyncRedsync,
    notices: AsyncNotices,
    redis_nodes: list[RedisServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(notices_module, "LINGER_S", 0.4)
    await subscribed(notices, ars, "async:linger")  # the first waiter leaves: linger begins
    await asyncio.sleep(0.25)
    assert not await notices.wait("async:linger", after(ars), 50)  # another comes and goes
    await asyncio.sleep(0.3)  # past the first waiter's linger, within the second's
    assert "async:linger" in channels(redis_nodes[0])
    assert "async:linger" in notices._keys
    for _ in range(100):
        if not any("async:linger" in channels(server) for server in redis_nodes):
            break
        await asyncio.sleep(0.02)
    assert not any("async:linger" in channels(server) for server in redis_nodes)
    assert "async:linger" not in notices._keys


async def test_a_dropped_subscriber_connection_is_opened_and_subscribed_again(
    ars: AsyncRedsync,
    notices: AsyncNotices,
    redis_nodes: list[RedisServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(notices_module, "RETRY_S", 0.05)
    waiting = asyncio.ensure_future(notices.wait("async:dropped", ars._clock(), LONG_MS))
    assert await asyncio.wait_for(waiting, LONG_MS / 1000)  # the first confirmation
    waiting = asyncio.ensure_future(notices.wait("async:dropped", after(ars), LONG_MS))
    client = redis_nodes[0].client()
    try:
        assert client.client_kill_filter(_type="pubsub") == 1
    finally:
        client.close()
    for _ in range(100):
        if "async:dropped" in channels(redis_nodes[0]):
            break
        await asyncio.sleep(0.02)
    assert "async:dropped" in channels(redis_nodes[0])
    assert not waiting.done()  # a confirmation wakes waiters only once per key
    publish(redis_nodes[:1], "async:dropped", "a-release")
    assert await asyncio.wait_for(waiting, LONG_MS / 1000)
