"""Asyncio fan-out: every node's command is written at once, then the replies are read within one
deadline for all of them.

A node with an idle open connection gets its command written directly and its reply read in
turn, with no task; only a node that must connect first (or a cluster client, or a fail-fast
fan-out) gets a task of its own. A read still pending at the deadline drops its connection, so
a late reply is never read as the answer to a later command.

redis-py opens and sets up every connection (AUTH, HELLO, SELECT, its connect hooks). Then, on
a plain socket (TCP or Unix, not TLS) with hiredis installed, our own protocol (``_Wire``) takes
the connection's transport over: each reply is parsed with hiredis in the event loop's read
callback, and a fan-out sleeps once, until every node's reply is in or the deadline passed.
Behind TLS (or without a hiredis that can tell an incomplete reply apart) the replies are read
from redis-py's stream, one node after the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import sys
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar, overload

from .._algorithm.effects import Batch, FanOut, NodeReply
from .._algorithm.family import combine_split
from .._exceptions import NodeError
from .addresses import redact
from .clients import Family, family_of
from .commands import (
    PENDING,
    Command,
    Decoder,
    Reply,
    Single,
    UnexpectedReply,
    command,
    decided,
    decode,
    new_reader,
    next_reply,
    pack,
    packed,
    spans_slots,
    split_batch,
)
from .memory import MemoryStore
from .sync import READ_SIZE, batches, node_error, server_version

__all__ = ["AsyncMemoryNode", "AsyncNode", "AsyncRedisNode", "extend_many", "fan_out"]


class AsyncNode(Protocol):
    """One independent Redis master as seen by the asyncio fan-out."""

    index: int
    address: str

    async def start(self, effect: FanOut | Batch) -> _Sent | _Exchange | None:
        """Write ``effect``'s command without waiting if the node can; None: use ``run``."""

    async def run(self, effect: FanOut | Batch) -> NodeReply | tuple[NodeReply, ...]:
        """Carry out ``effect`` on this node; raise NodeError when it fails."""

    async def ping(self) -> str:
        """Return the server version; raise NodeError when the node fails."""

    async def close(self) -> None:
        """Close our connections (on every loop) and the clients built from URLs."""

    def close_nowait(self) -> None:
        """Close our connections from any thread or loop without waiting (sync ``close()``)."""


class _LoopConnections:
    """The connections one pool made on one event loop: all of them, and the idle ones."""

    __slots__ = ("buffer", "deadlines", "family", "idle", "made", "shutdown")

    def __init__(self, family: Family) -> None:
        self.family = family
        self.idle: list[Any] = []
        self.made: weakref.WeakSet[Any] = weakref.WeakSet()
        self.shutdown: AsyncGenerator[None, None] | None = None
        # The receive buffer of this loop's wires: a loop runs one callback at a time, and
        # hiredis copies what it is fed.
        self.buffer = bytearray(READ_SIZE)
        self.deadlines = _Deadlines()  # of the fan-outs waiting on this loop's wires

    async def close_at_shutdown(self) -> None:
        """Close the idle connections when the loop shuts down, while it still runs.

        A connection cannot outlive its loop, and once the loop is closed its socket can only be
        shut down, not closed. ``asyncio.run()`` (and ``loop.shutdown_asyncgens()``) finishes
        every async generator started on the loop before closing it: one waits here for that.
        """
        self.shutdown = self._wait_for_shutdown()
        await anext(self.shutdown)

    async def _wait_for_shutdown(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            idle, self.idle = self.idle, []
            for conn in idle:
                with contextlib.suppress(self.family.error, OSError):
                    await conn.disconnect()


class _Connections:
    """Connections of one pool, each kept by the event loop that made it between calls.

    Checking a connection out of a redis-py pool (and ``execute_command``'s retry and
    bookkeeping) costs more than a loopback round trip; a command in flight owns its connection
    until the reply is read, and a cancelled one is dropped, never reused. ``close()`` reaches
    the connections of every loop, idle or in flight, not only the running loop's.
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self.family = family_of(pool)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopConnections] = (
            weakref.WeakKeyDictionary()
        )
        # The loop asked for last, and its connections (one lookup less per node and call).
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], _LoopConnections] | None = None
        self.readers: list[Any] = []  # hiredis readers between exchanges (none holds data)

    def here(self) -> _LoopConnections:
        """Return the running loop's connections."""
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0]() is loop:
            return last[1]
        here = self._loops.get(loop)
        if here is None:
            # A new loop: a good time to close what loops that ended left behind (an open
            # connection holds its loop, so they would stay until close()).
            self._close_ended_loops()
            here = self._loops[loop] = _LoopConnections(self.family)
        self._last = (weakref.ref(loop), here)
        return here

    def take(self) -> Any:
        here = self.here()
        if here.idle:
            return here.idle.pop()
        # No socket timeout: the fan-out's deadline bounds every wait, and redis-py would wrap
        # each send in a timer task.
        kwargs = {**self._pool.connection_kwargs, "socket_timeout": None}
        conn = self._pool.connection_class(**kwargs)
        here.made.add(conn)
        return conn

    def give(self, conn: Any) -> None:
        self.here().idle.append(conn)

    def wire(self, conn: Any, here: _LoopConnections) -> _Wire | None:
        """Return our protocol on ``conn``, an open connection of ``here``, putting it in place
        of redis-py's stream first if it can be; None when redis-py's stream stays (TLS, no
        hiredis, or a stream that is not idle: ``_usable`` then has it connected again)."""
        protocol = conn._writer.transport.get_protocol()
        if type(protocol) is _Wire:
            return protocol
        return take_over(
            conn,
            lambda transport, stream, reader: _Wire(
                transport, stream, reader, here.buffer, self.family
            ),
        )

    async def call(self, sent: Command) -> Any:
        """Run ``sent`` on an idle connection (a new one when none is idle); return its reply
        (the list of them when it has several)."""
        here = self.here()
        if here.shutdown is None:  # the first call on this loop
            await here.close_at_shutdown()
        conn = self.take()
        wire = None
        try:
            if conn.is_connected:
                protocol = conn._writer.transport.get_protocol()
                if type(protocol) is _Wire:
                    wire = protocol
                if not _usable(conn, wire):  # redis-py connects again below
                    wire = None
                    await conn.disconnect(nowait=True)
            if wire is None:
                raw = await _exchange(conn, self.family, sent)
            else:
                raw = await wire.round_trip(sent)
        except BaseException:
            # Also on cancellation: a reply may still be on its way.
            if wire is not None:
                wire.abort()
            await asyncio.shield(conn.disconnect(nowait=True))
            raise
        self.give(conn)
        return raw

    async def close(self) -> None:
        """Close every connection made on any loop; the running loop's are awaited."""
        running = asyncio.get_running_loop()
        for loop, conns in self._forget_all():
            for conn in conns:
                if loop is running:
                    with contextlib.suppress(self.family.error, OSError):
                        await conn.disconnect()
                else:
                    _close_elsewhere(conn, loop)

    def close_nowait(self) -> None:
        """Close every connection made on any loop without waiting (from any thread)."""
        for loop, conns in self._forget_all():
            for conn in conns:
                _close_elsewhere(conn, loop)

    def _forget_all(self) -> list[tuple[asyncio.AbstractEventLoop, list[Any]]]:
        """Return every open connection by loop, idle or in flight (a call in flight then fails
        as a node error); forget the idle ones and the loops that are closed."""
        found = []
        for loop, there in list(self._loops.items()):
            found.append((loop, [conn for conn in there.made if conn.is_connected]))
            there.idle.clear()
            if loop.is_closed():
                del self._loops[loop]
        return found

    def _close_ended_loops(self) -> None:
        for loop, there in list(self._loops.items()):
            if loop.is_closed():
                del self._loops[loop]
                for conn in list(there.made):
                    _close_elsewhere(conn, loop)


def _usable(conn: Any, wire: _Wire | None) -> bool:
    """Return False when an idle open connection is lost (the server closed it: a restart)
    or has bytes nobody asked for; it is then closed and connected again before its next
    command instead of failing that command."""
    if wire is not None:
        return wire.ready()
    stream = conn._reader
    return not (stream._buffer or stream.at_eof())


def _close_elsewhere(conn: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Close ``conn``, a connection of ``loop``, from outside that loop and without waiting.

    The socket is shut down at once, so the server drops the connection now. A loop that is
    running (in another thread) then disconnects it; the descriptor of a connection whose loop
    is not running is released when the connection is collected.
    """
    writer = conn._writer
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    if loop.is_running():
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            asyncio.run_coroutine_threadsafe(conn.disconnect(nowait=True), loop)


async def _exchange(conn: Any, family: Family, sent: Command) -> Any:
    """Send ``sent`` on ``conn`` and read its reply, or the list of its replies when it has
    several (a script by EVALSHA, then EVAL on NOSCRIPT)."""
    await conn.send_packed_command([sent.encode()], check_health=False)
    script = sent.script
    if script is None:
        raw = await conn.read_response()
        if sent.then:
            raw = [raw, *[await conn.read_response() for _ in sent.then]]
        return raw
    try:
        return await conn.read_response()
    except family.no_script_error:
        await conn.send_packed_command(
            [pack("EVAL", script.source, *sent.args)], check_health=False
        )
        return await conn.read_response()


class _Gather:
    """Wakes the fan-out waiting on some wires once every one of them has its reply, or was
    lost, or the deadline passed: one wake-up per fan-out, not one per node."""

    __slots__ = ("due", "expired", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[None] = loop.create_future()
        self.due = 0  # wires whose reply is still due
        self.expired = False

    def arrived(self) -> None:
        self.due -= 1
        if not self.due and not self.future.done():
            self.future.set_result(None)

    def expire(self) -> None:
        self.expired = True
        if not self.future.done():
            self.future.set_result(None)


class _Deadlines:
    """The deadlines of the fan-outs waiting on one loop, behind one timer.

    A timer per fan-out (``call_at``, then ``cancel``, then the loop's heap pops it) costs as
    much as a tenth of the fan-out. This one timer fires at the earliest deadline still waited
    for, expires the fan-outs that are due, and is armed again for the next one: a fan-out that
    ends in time touches no timer, unless its deadline is the earliest.
    """

    __slots__ = ("at", "timer", "waiting")

    def __init__(self) -> None:
        self.waiting: dict[_Gather, float] = {}  # each waiting fan-out's deadline (loop time)
        self.timer: asyncio.TimerHandle | None = None
        self.at = math.inf  # when the timer fires

    def add(self, gather: _Gather, deadline: float, loop: asyncio.AbstractEventLoop) -> None:
        self.waiting[gather] = deadline
        if deadline < self.at:
            self._arm(deadline, loop)

    def remove(self, gather: _Gather) -> None:
        self.waiting.pop(gather, None)

    def _arm(self, at: float, loop: asyncio.AbstractEventLoop) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.at = at
        self.timer = loop.call_at(at, self._fire, loop)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        due_by = self.at  # the loop ran this timer: everything due by then is late
        self.timer, self.at = None, math.inf
        nearest = math.inf
        for gather, deadline in list(self.waiting.items()):
            if deadline <= due_by:
                del self.waiting[gather]
                gather.expire()
            else:
                nearest = min(nearest, deadline)
        if nearest < math.inf:
            self._arm(nearest, loop)


P = TypeVar("P", bound=asyncio.BaseProtocol)


def take_over(
    conn: Any, make: Callable[[asyncio.Transport, asyncio.BaseProtocol, Any], P]
) -> P | None:
    """Put ``make(transport, stream, reader)``, a protocol of ours reading with the hiredis
    ``reader``, in place of redis-py's stream protocol on the open connection ``conn``; None
    when the stream stays (TLS: the ssl module decrypts; no hiredis that tells an incomplete
    reply apart; bytes already buffered by the stream, or its end)."""
    writer = getattr(conn, "_writer", None)
    stream = getattr(conn, "_reader", None)
    if writer is None or stream is None or stream._buffer or stream.at_eof():
        return None
    transport = writer.transport
    if transport.get_extra_info("sslcontext") is not None:
        return None
    reader = new_reader(conn._parser.parse_error)
    if reader is None:
        return None
    protocol = make(transport, transport.get_protocol(), reader)
    transport.set_protocol(protocol)
    return protocol


class Taken(asyncio.BufferedProtocol):
    """Our protocol in place of redis-py's stream on a connection that redis-py opened and set
    up (see ``take_over``): the event loop reads the socket into ``buffer``, which is fed to
    the hiredis ``reader``. redis-py's stream protocol is still told when the connection is
    lost, so the connection's ``disconnect()`` works as before."""

    __slots__ = ("buffer", "family", "reader", "stream", "transport")

    def __init__(
        self,
        transport: asyncio.Transport,
        stream: asyncio.BaseProtocol,
        reader: Any,
        buffer: bytearray,
        family: Family,
    ) -> None:
        self.transport = transport
        self.stream = stream  # redis-py's protocol, told when the connection is lost
        self.reader = reader
        self.buffer = buffer
        self.family = family

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def eof_received(self) -> bool:
        self._lose(self.family.connection_error("Connection closed by server."))
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose(exc or self.family.connection_error("Connection closed."))
        self.stream.connection_lost(exc)

    def _lose(self, exc: BaseException) -> None:
        """The connection is gone (``exc`` says why)."""
        raise NotImplementedError


class _Wire(Taken):
    """Our protocol on a fan-out's connection.

    The first whole reply is kept until taken, and the ``_Gather`` waiting for it is told: no
    stream buffer, no read coroutine, no task woken per node. A command sent with several
    replies (``send(data, replies)``) is answered once all of them are in, as their list (or
    the first error among them). The connection stays redis-py's: a lost wire is closed and
    connected again by ``_Connections.call`` through redis-py.
    """

    __slots__ = ("due", "gather", "lost", "parts", "reply")

    def __init__(
        self,
        transport: asyncio.Transport,
        stream: asyncio.BaseProtocol,
        reader: Any,
        buffer: bytearray,
        family: Family,
    ) -> None:
        super().__init__(transport, stream, reader, buffer, family)
        self.reply: Any = PENDING  # the first whole reply not taken yet
        self.gather: _Gather | None = None  # who waits for that reply
        self.lost: BaseException | None = None  # why the connection is gone
        self.due = 1  # replies of the command in flight not read yet
        self.parts: list[Any] = []  # those read, while more are due

    def buffer_updated(self, nbytes: int) -> None:
        self.reader.feed(self.buffer, 0, nbytes)
        if self.reply is not PENDING:
            return  # the reply due is in; anything more is out of step (see in_step())
        try:
            reply = self.reader.gets()  # an error reply comes as its exception
            while self.due > 1 and reply is not PENDING:
                self.due -= 1
                self.parts.append(reply)
                reply = self.reader.gets()
        except UnexpectedReply as exc:  # not RESP: nothing more can be read from this stream
            self.abort(exc)
            return
        if reply is not PENDING:
            if self.parts:
                reply = self._joined(reply)
            self.reply = reply
            self._wake()

    def _joined(self, last: Any) -> Any:
        """Return the replies of a command with several, as a list (or the first error)."""
        replies, self.parts = [*self.parts, last], []
        for reply in replies:
            if isinstance(reply, Exception):
                return reply
        return replies

    def _lose(self, exc: BaseException) -> None:
        if self.lost is None:
            self.lost = exc
        self._wake()

    def _wake(self) -> None:
        gather = self.gather
        if gather is not None:
            self.gather = None
            gather.arrived()

    def ready(self) -> bool:
        """Return True when a command can be sent: connected, and nothing arrived unasked."""
        return self.lost is None and self.reply is PENDING

    def wait_in(self, gather: _Gather) -> None:
        """Have ``gather`` wait for this wire's reply, unless it arrived (or the wire is lost)."""
        if self.reply is PENDING and self.lost is None:
            self.gather = gather
            gather.due += 1

    def take(self) -> Any:
        """Return the reply and forget it; ``PENDING`` while it has not arrived whole.

        Raises:
            ResponseError: (the client library's) the reply is an error.
            ConnectionError: (the client library's, or OSError) the connection was lost first.
            UnexpectedReply: the bytes were not RESP.
        """
        reply = self.reply
        if reply is PENDING:
            if self.lost is not None:
                raise self.family.connection_error(str(self.lost) or "Connection lost.")
            return PENDING
        self.reply = PENDING
        if isinstance(reply, Exception):
            try:
                raise reply
            finally:
                del reply  # see next_reply: no frame of ours in the error's traceback
        return reply

    def in_step(self) -> bool:
        """Return True when nothing arrived after the reply just taken (the connection can
        carry the next command)."""
        try:
            return self.lost is None and self.reader.gets() is PENDING
        except UnexpectedReply:
            return False

    def send(self, data: bytes, replies: int = 1) -> None:
        """Write ``data``, a command that is answered with ``replies`` replies; what the socket
        does not take at once goes out as it can (the reply cannot come before it, and the
        fan-out's deadline bounds the wait)."""
        self.due = replies
        self.transport.write(data)

    def abort(self, exc: BaseException | None = None) -> None:
        """Drop the connection at once (unsent bytes too); the next command connects again."""
        self._lose(exc or self.family.connection_error("Connection dropped."))
        self.transport.abort()

    async def round_trip(self, sent: Command) -> Any:
        """Send ``sent`` and wait for its reply, or the list of its replies when it has several
        (a script by EVALSHA, then EVAL on NOSCRIPT)."""
        self.send(sent.encode(), sent.replies)
        script = sent.script
        if script is None:
            return await self._next()
        try:
            return await self._next()
        except self.family.no_script_error:
            self.send(pack("EVAL", script.source, *sent.args))
            return await self._next()

    async def _next(self) -> Any:
        reply = self.take()
        while reply is PENDING:
            gather = _Gather(asyncio.get_running_loop())
            self.wait_in(gather)
            try:
                await gather.future
            finally:
                self.gather = None
            reply = self.take()
        if not self.in_step():
            self.abort()  # more than one reply (never seen from a Redis)
        return reply


class _Sent:
    """A command written on a wire whose reply is taken once the fan-out wakes up."""

    __slots__ = ("command", "conn", "decoder", "family", "here", "sent_source", "wire")

    def __init__(
        self,
        conn: Any,
        wire: _Wire,
        here: _LoopConnections,
        family: Family,
        command: Command,
        decoder: Decoder,
    ) -> None:
        self.conn = conn
        self.wire = wire
        self.here = here  # the running loop's connections, where this one goes back to
        self.family = family
        self.command = command
        self.decoder = decoder
        self.sent_source = False

    def result(self) -> NodeReply | tuple[NodeReply, ...] | None:
        """Return the decoded reply and give the connection back; None while the reply is
        still due (also after NOSCRIPT: the command went again with EVAL).

        Raises:
            ResponseError, ConnectionError: (the client library's) see ``_Wire.take``.
            UnexpectedReply: the reply is not one this command returns.
        """
        wire = self.wire
        try:
            raw = wire.take()
        except self.family.no_script_error:
            script = self.command.script
            if script is None or self.sent_source:
                self.drop()
                raise
            self.sent_source = True
            wire.send(pack("EVAL", script.source, *self.command.args))
            return None
        except BaseException:
            self.drop()
            raise
        if raw is PENDING:
            return None
        if not wire.in_step():
            wire.abort()  # more than one reply (never seen from a Redis)
        # Given back even when lost: the next command closes it and connects again.
        self.here.idle.append(self.conn)
        return self.decoder(raw)

    def drop(self) -> None:
        """Give up on the reply: drop the connection (a late reply must never be read as the
        answer to a later command); it is closed and connected again on its next use."""
        self.wire.gather = None
        self.wire.abort()
        self.here.idle.append(self.conn)


async def read_reply(conn: Any, reader: Any, family: Family) -> Any:
    """Return the next reply (or pub/sub message) on redis-py's asyncio connection ``conn``,
    parsed by our hiredis ``reader`` from the connection's stream.

    Raises:
        ResponseError: (the client library's) the server answered with an error.
        ConnectionError: (the client library's) the server closed the connection.
    """
    reply = next_reply(reader)
    while reply is PENDING:
        stream = conn._reader
        data = None if stream is None else await stream.read(READ_SIZE)
        if not data:
            raise family.connection_error("Connection closed by server.")
        reader.feed(data)
        reply = next_reply(reader)
    return reply


class _Exchange:
    """A command written on an open connection whose reply is read later (no task needed).

    With hiredis the reply is parsed here from the connection's stream, without redis-py's
    read layers; otherwise redis-py reads it.
    """

    __slots__ = ("command", "conn", "connections", "effect", "reader")

    def __init__(
        self, conn: Any, connections: _Connections, effect: FanOut | Batch, command: Command
    ) -> None:
        self.conn = conn
        self.connections = connections
        self.effect = effect
        self.command = command
        readers = connections.readers
        self.reader = readers.pop() if readers else new_reader(conn._parser.parse_error)

    async def finish(self) -> NodeReply | tuple[NodeReply, ...]:
        """Read the reply, or every reply when the command has several (re-sending with EVAL
        after NOSCRIPT), and give the connection back."""
        conn = self.conn
        sent = self.command
        try:
            try:
                raw = await self._read()
            except self.connections.family.no_script_error:
                assert sent.script is not None  # only scripts answer NOSCRIPT
                packed = pack("EVAL", sent.script.source, *sent.args)
                await conn.send_packed_command([packed], check_health=False)
                raw = await self._read()
            if sent.then:
                raw = [raw, *[await self._read() for _ in sent.then]]
        except BaseException:
            # Also on cancellation (the deadline): a reply may still be on its way.
            self.reader = None  # it may hold part of a reply: never reused
            await asyncio.shield(conn.disconnect(nowait=True))
            raise
        reader = self.reader
        if reader is not None and reader.gets() is not PENDING:
            # More than one reply: the stream is out of step (never seen from a Redis).
            await conn.disconnect(nowait=True)
        else:
            self.connections.give(conn)
            if reader is not None:
                self.connections.readers.append(reader)
        return decode(self.effect, raw)

    async def _read(self) -> Any:
        """Read one reply, raising the server's error replies."""
        if self.reader is None:
            return await self.conn.read_response()
        return await read_reply(self.conn, self.reader, self.connections.family)

    async def arrived(self) -> bool:
        """Return True when the reply is already buffered (reading it will not wait)."""
        if self.reader is not None:
            stream = self.conn._reader
            # As redis-py itself looks: bytes in the stream's buffer, or its end.
            return stream is None or bool(stream._buffer) or stream.at_eof()
        # redis-py 8 renamed can_read_destructive() to can_read() (the old name warns).
        can_read = getattr(self.conn, "can_read", None) or self.conn.can_read_destructive
        try:
            return bool(await can_read())
        except Exception:  # noqa: BLE001 - a broken connection: finish() will say how
            return True


class AsyncRedisNode:
    """A node behind a ``redis.asyncio`` or ``valkey.asyncio`` client (standalone, Sentinel or
    cluster)."""

    def __init__(self, index: int, client: Any, address: str, *, owned: bool) -> None:
        self.index = index
        self.address = address
        self.client = client
        self.family = family_of(client)
        self._owned = owned
        pool = getattr(client, "connection_pool", None)  # a cluster client has none
        self._connections = None if pool is None else _Connections(pool)

    async def run(self, effect: FanOut | Batch) -> NodeReply | tuple[NodeReply, ...]:
        if isinstance(effect, Batch) and self._connections is None:
            # Keys of a batch live in different slots of a cluster: one command each.
            replies = [await self.run(item) for item in effect.effects]
            return tuple(r for r in replies if isinstance(r, NodeReply))
        if self._connections is None and spans_slots(effect, self.client.keyslot):
            assert isinstance(effect, FanOut)  # batches were split above
            steps = combine_split(effect, self.client.keyslot)
            part = next(steps)
            while True:
                reply = await self.run(part)
                assert isinstance(reply, NodeReply)  # a single FanOut decodes to one reply
                try:
                    part = steps.send(reply)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
        sent = command(effect, sharded=self._connections is None)
        try:
            if self._connections is None:
                raw = await self._through_client(sent)
            else:
                raw = await self._connections.call(sent)
            return decode(effect, raw)
        except Exception as exc:
            raise node_error(self, exc) from exc

    async def start(self, effect: FanOut | Batch) -> _Sent | _Exchange | None:
        """Write ``effect``'s command now if an open connection is idle; None otherwise.

        Raises:
            NodeError: the write failed.
        """
        connections = self._connections
        if connections is None:
            return None
        here = connections.here()
        idle = here.idle
        if not idle or not idle[-1].is_connected:
            return None  # a task connects first
        conn = idle.pop()
        wire = connections.wire(conn, here)
        if not _usable(conn, wire):  # lost while idle (a restart): a task connects again
            idle.append(conn)
            return None
        sent, data, decoder = packed(effect)
        if wire is not None:
            wire.send(data, sent.replies)
            return _Sent(conn, wire, here, self.family, sent, decoder)
        try:
            writer = conn._writer
            writer.write(data)
            if writer.transport.get_write_buffer_size():  # the node reads slower than we write
                await writer.drain()
        except Exception as exc:
            await conn.disconnect(nowait=True)
            raise node_error(self, exc) from exc
        return _Exchange(conn, connections, effect, sent)

    async def _through_client(self, sent: Command) -> Any:
        if sent.then:  # several commands: one pipeline, their replies in a list
            pipe = self.client.pipeline()
            for each in sent.commands():
                pipe.execute_command(*each)
            return await pipe.execute()
        script, args = sent.script, sent.args
        if script is None:
            return await self.client.execute_command(*args)
        try:
            return await self.client.execute_command("EVALSHA", script.sha, *args)
        except self.family.no_script_error:
            return await self.client.execute_command("EVAL", script.source, *args)

    async def ping(self) -> str:
        try:
            if self._connections is not None:  # our connection: the client's pool stays unused
                info = await self._connections.call(Command(None, ("INFO", "server")))
                return server_version(info)
            info = await self.client.info("server")
        except Exception as exc:
            raise node_error(self, exc) from exc
        if isinstance(info, dict) and "redis_version" not in info:
            # A cluster client answers with one dict per node.
            info = next(iter(info.values()), {})
        return server_version(info) if isinstance(info, dict) else "?"

    async def close(self) -> None:
        if self._connections is not None:
            await self._connections.close()
        if self._owned:  # a client the user passed in keeps its pool
            await self.client.aclose()

    def close_nowait(self) -> None:
        # An owned client's pool has no connection to close: only our connections are used.
        if self._connections is not None:
            self._connections.close_nowait()


class AsyncMemoryNode:
    """An in-process ``memory://NAME`` node: answers at once."""

    def __init__(self, index: int, store: MemoryStore) -> None:
        self.index = index
        self.address = redact(f"memory://{store.name}")
        self.store = store

    async def start(self, effect: FanOut | Batch) -> _Sent | _Exchange | None:
        return None  # run() answers at once

    async def run(self, effect: FanOut | Batch) -> NodeReply | tuple[NodeReply, ...]:
        if isinstance(effect, Batch):
            return tuple(self.store.apply(item) for item in effect.effects)
        return self.store.apply(effect)

    async def ping(self) -> str:
        return "memory"

    async def close(self) -> None:
        """Memory stores live as long as the process."""

    def close_nowait(self) -> None:
        """Memory stores live as long as the process."""


@overload
async def fan_out(
    nodes: Sequence[AsyncNode], effect: FanOut, order: Sequence[int] | None = ...
) -> tuple[Single, ...]: ...


@overload
async def fan_out(
    nodes: Sequence[AsyncNode], effect: Batch, order: Sequence[int] | None = ...
) -> tuple[Reply, ...]: ...


async def fan_out(
    nodes: Sequence[AsyncNode], effect: FanOut | Batch, order: Sequence[int] | None = None
) -> tuple[Reply, ...]:
    """Send ``effect`` to every node at once and collect one reply per node (in node order).

    Same contract as the sync ``fan_out``: bounded by ``effect.deadline_ms``; with
    ``effect.stop_at`` it returns once that many nodes agreed either way.
    """
    replies: list[Reply] = [None] * len(nodes)
    timeout = None if effect.deadline_ms is None else effect.deadline_ms / 1000
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    stop_at = effect.stop_at
    # Nodes with an idle open connection get the command written at once and no task: on our
    # protocol their replies are gathered with one wake-up, through redis-py's stream they are
    # read in turn. The others (connecting, cluster, memory://, fail fast) get a task each.
    sent: dict[int, _Sent] = {}
    direct: dict[int, _Exchange] = {}
    tasks: dict[asyncio.Task[NodeReply | tuple[NodeReply, ...]], int] = {}
    for i in order if order is not None else range(len(nodes)):
        if effect.only is not None and i not in effect.only:
            continue
        try:
            exchange = None if stop_at is not None else await nodes[i].start(effect)
        except NodeError as failed:
            replies[i] = failed
            continue
        if exchange is None:
            tasks[asyncio.ensure_future(nodes[i].run(effect))] = i
        elif isinstance(exchange, _Sent):
            sent[i] = exchange
        else:
            direct[i] = exchange
    pending: set[asyncio.Task[NodeReply | tuple[NodeReply, ...]]] = set(tasks)
    try:
        if sent:
            await _gather(nodes, sent, replies, deadline, effect.deadline_ms)
        if direct:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            await _read_in_turn(nodes, direct, replies, left, effect.deadline_ms)
        while pending:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            done, pending = await asyncio.wait(
                pending,
                timeout=left,
                return_when=asyncio.ALL_COMPLETED if stop_at is None else asyncio.FIRST_COMPLETED,
            )
            for task in done:
                i = tasks[task]
                exc = task.exception()
                if exc is None:
                    replies[i] = task.result()
                elif isinstance(exc, NodeError):
                    replies[i] = exc
                else:
                    raise exc
            if not done:
                for task in pending:
                    replies[tasks[task]] = _late(nodes[tasks[task]], effect.deadline_ms)
                break
            if stop_at is not None and decided(replies, stop_at):
                break
    finally:
        for task in pending:
            task.cancel()
    return tuple(replies)


async def extend_many(
    nodes: Sequence[AsyncNode], effects: Sequence[FanOut]
) -> list[tuple[Single, ...]]:
    """Send several EXTEND fan-outs in as few round trips as the scripts allow; return each
    one's replies (in node order). Never raises for node failures."""
    replies: list[tuple[Single, ...]] = [()] * len(effects)
    for indexes, call in batches(effects):
        if isinstance(call, Batch):
            carried = split_batch(call, await fan_out(nodes, call))
        else:
            carried = [await fan_out(nodes, call)]
        for i, each in zip(indexes, carried, strict=True):
            replies[i] = each
    return replies


def _late(node: AsyncNode, deadline_ms: int | None) -> NodeError:
    return node_error(node, f"no reply within the {deadline_ms} ms deadline")


async def _gather(
    nodes: Sequence[AsyncNode],
    sent: dict[int, _Sent],
    replies: list[Reply],
    deadline: float | None,
    deadline_ms: int | None,
) -> None:
    """Collect the replies of commands written on wires, by ``deadline`` (loop time).

    The fan-out sleeps until every reply is in (or its wire was lost) or the deadline passed,
    then takes them all; a NOSCRIPT sends that node's command again and sleeps once more.
    """
    loop = asyncio.get_running_loop()
    deadlines = next(iter(sent.values())).here.deadlines
    due = sent
    while due:
        gather = _Gather(loop)
        for call in due.values():
            call.wire.wait_in(gather)
        if gather.due:
            if deadline is not None:
                deadlines.add(gather, deadline, loop)
            try:
                await gather.future
            except BaseException:
                for call in due.values():  # cancelled: the replies may still be on their way
                    call.drop()
                raise
            finally:
                deadlines.remove(gather)
        still: dict[int, _Sent] = {}
        for i, call in due.items():
            call.wire.gather = None
            try:
                result = call.result()
            except Exception as exc:  # noqa: BLE001 - a node may answer anything: see sync._FAILURES
                replies[i] = node_error(nodes[i], exc)
                continue
            if result is not None:
                replies[i] = result
            elif gather.expired:
                call.drop()
                replies[i] = _late(nodes[i], deadline_ms)
            else:
                still[i] = call
        due = still


async def _read_in_turn(
    nodes: Sequence[AsyncNode],
    direct: dict[int, _Exchange],
    replies: list[Reply],
    timeout: float | None,
    deadline_ms: int | None,
) -> None:
    """Read the replies of commands written directly, within ``timeout`` seconds in all.

    Replies arrive in parallel, so reading them in turn costs the slowest node, not the sum.
    When the deadline cuts a read short, the replies that already arrived are still read.
    """
    unread = dict(direct)

    async def read_all() -> None:
        for i, exchange in direct.items():
            replies[i] = await _finish(nodes[i], exchange)
            del unread[i]

    try:
        await _within(read_all(), timeout)
    except asyncio.TimeoutError:
        for i, exchange in list(unread.items()):
            if replies[i] is None and await exchange.arrived():
                replies[i] = await _finish(nodes[i], exchange)
            else:
                await exchange.conn.disconnect(nowait=True)
                replies[i] = _late(nodes[i], deadline_ms)


async def _finish(
    node: AsyncNode, exchange: _Exchange
) -> NodeReply | tuple[NodeReply, ...] | NodeError:
    try:
        return await exchange.finish()
    except Exception as exc:  # noqa: BLE001 - a node may answer anything: see sync._FAILURES
        return node_error(node, exc)


async def _within(awaitable: Awaitable[None], timeout: float | None) -> None:
    """Await ``awaitable`` for at most ``timeout`` seconds (asyncio.TimeoutError after)."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(timeout):
            await awaitable
    else:  # pragma: no cover - Python 3.10 has no asyncio.timeout; wait_for adds one task
        await asyncio.wait_for(awaitable, timeout)
