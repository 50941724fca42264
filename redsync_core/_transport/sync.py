"""Sync fan-out: write the command to every node, then read the replies as they arrive.

No thread is involved: one request per node goes out on its own connection, then ``poll``
waits on all sockets at once until every node answered, the deadline passed, or (fail fast)
the outcome is decided. A node that hangs costs at most the deadline. Its connection is kept:
the late reply is read and dropped before that connection's next command, which fails at once
while the reply is still due (too many late replies close the connection). So a late reply is
never read as the answer to a later command.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any, Protocol, overload

import redis
import redis.exceptions

from .._algorithm.effects import Batch, FanOut, NodeReply, Op
from .._exceptions import NodeError
from .._process import pid
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
    drive_split,
    new_reader,
    pack,
    packed,
    spans_slots,
    split_batch,
)
from .memory import MemoryStore

__all__ = ["ClusterNode", "MemoryNode", "RedisNode", "SyncNode", "extend_many", "fan_out"]

#: A connection with more late replies than this is closed instead of waited for.
MAX_UNANSWERED = 64
#: Bytes read from a socket at a time (as redis-py reads).
READ_SIZE = 65536

_POLL = hasattr(select, "poll")  # POSIX; select() elsewhere


class _ReadBuffer(threading.local):
    """One receive buffer per thread: a thread reads one socket at a time, and hiredis copies
    what it is fed."""

    def __init__(self) -> None:
        self.data = bytearray(READ_SIZE)


_read_buffer = _ReadBuffer()

Done = NodeReply | tuple[NodeReply, ...]
"""A finished node call: one reply, or one per item of a batch."""


class InFlight(Protocol):
    """A command sent to one node whose reply has not been read yet.

    ``fd``: its socket's file descriptor. ``buffers``: a reply may wait in a buffer that
    ``poll`` cannot see (TLS, redis-py's reader); ``buffered()`` then says whether one does.
    (Attributes, not methods: the fan-out reads them for every node at every wake-up.)
    """

    @property
    def fd(self) -> int: ...

    @property
    def buffers(self) -> bool: ...

    def buffered(self) -> bool: ...

    def finish(self) -> InFlight | Done: ...

    def abandon(self) -> None: ...

    def fail(self) -> None: ...


class SyncNode(Protocol):
    """One independent Redis master as seen by the sync fan-out."""

    index: int
    address: str

    def begin(
        self, effect: FanOut | Batch, budget_s: float | None, connect: bool = True
    ) -> InFlight | Done | None:
        """Send ``effect``'s command; return the call in flight, or the reply when immediate.

        With ``connect`` False, send nothing and return None when a new connection is needed.
        """

    def ping(self, timeout_s: float) -> str:
        """Return the server version; raise NodeError when the node does not answer in time."""

    def close(self) -> None:
        """Close our connections (every thread's) and the clients built from URLs."""


def node_error(node: SyncNode | Any, exc: BaseException | str) -> NodeError:
    """Map a redis-py exception (or a reason) to the NodeError of ``node``."""
    if isinstance(exc, str):
        reason = exc
    else:
        detail = str(exc) or type(exc).__name__
        reason = f"{type(exc).__name__}: {detail}"
    return NodeError(node.index, node.address, reason)


class _Lease:
    """A connection of one pool kept by one thread of one process between calls.

    Checking a connection out of a redis-py pool costs more than a loopback round trip, so each
    thread keeps its own (built from the pool's connection class and arguments). It connects
    on first use within the fan-out's budget and is closed by ``close()`` from any thread, or
    when the thread ends.

    Nothing here waits for a node's reply: the connection setup (AUTH, HELLO, CLIENT SETNAME,
    SELECT) is pipelined in front of the first command and its replies are checked before
    that command's reply, so a paused node costs the fan-out's deadline, never a blocked
    handshake. Replies we stopped waiting for are read and dropped before the next command.

    On a plain socket (TCP or Unix, not TLS) with hiredis installed, the socket is ours alone
    and non-blocking: a command is one ``send`` and a reply is read with hiredis as its bytes
    arrive, without redis-py's read and write layers (each of which waits for the socket
    first). Otherwise (TLS, no hiredis) redis-py's connection reads and writes.
    """

    __slots__ = (
        "__weakref__",
        "buffer",
        "conn",
        "family",
        "handshake",
        "pid",
        "polled",
        "pool",
        "reader",
        "unanswered",
    )

    def __init__(self, pool: Any) -> None:
        self.pid = pid()
        self.pool = pool
        self.family: Family = family_of(pool)
        self.conn = pool.connection_class(**pool.connection_kwargs)
        self.reader: Any = None  # our hiredis reader while the socket is non-blocking
        self.buffer = _read_buffer.data  # the calling thread's: a lease stays in its thread
        self.polled: Any = None  # a poll object on that socket (POSIX)
        # Through a weak reference: a cycle would keep the socket open after the thread ends.
        lease = weakref.ref(self)

        def setup(conn: Any) -> None:
            this = lease()
            if this is not None:
                this._pipeline_setup(conn)

        setattr(self.conn, self.family.connect_hook, setup)
        self.handshake = 0  # setup replies due before the next command's reply
        self.unanswered = 0  # replies of commands we stopped waiting for (deadline, fail fast)

    def _pipeline_setup(self, conn: Any) -> None:
        """Send the connection setup commands without reading their replies (yet)."""
        conn._parser.on_connect(conn)  # what redis-py's own setup does first
        setup: list[tuple[str | int, ...]] = []
        credentials = _credentials(conn)
        if credentials:
            setup.append(("AUTH", *credentials))
        if str(getattr(conn, "protocol", 2)) == "3":
            setup.append(("HELLO", 3))
        if getattr(conn, "client_name", None):
            setup.append(("CLIENT", "SETNAME", conn.client_name))
        if getattr(conn, "db", 0):
            setup.append(("SELECT", conn.db))
        if setup:
            conn.send_packed_command([pack(*command) for command in setup], check_health=False)
        self.handshake = len(setup)
        self.unanswered = 0
        self.reader = None
        self.polled = None
        if type(conn._sock) is socket.socket:  # not TLS: its records need the ssl module
            self.reader = new_reader(conn._parser.parse_error)
        if self.reader is not None:
            conn._sock.settimeout(0)
            if hasattr(select, "poll"):
                self.polled = select.poll()
                self.polled.register(conn._sock, select.POLLIN)

    def take(self) -> Any:
        """Return the next reply if it arrived whole, else ``PENDING``; never waits on a plain
        socket (through redis-py, the rest of a reply that began to arrive is waited for).

        Raises:
            ResponseError: (the client library's) the reply is an error.
            ConnectionError: (the client library's) the server closed the connection.
        """
        reader = self.reader
        if reader is None:
            if not self.conn.can_read(timeout=0):
                return PENDING
            # redis-py 5.0 with hiredis hands back, instead of raising, an error reply of the
            # connection kind (NOAUTH's AuthenticationError...) that can_read() had buffered.
            reply = self.conn.read_response()
            if isinstance(reply, Exception):
                try:
                    raise reply
                finally:
                    del reply  # the traceback would hold this frame, and so the connection
            return reply
        reply = reader.gets()
        if reply is PENDING:
            try:
                size = self.conn._sock.recv_into(self.buffer)
            except BlockingIOError:
                return PENDING
            if not size:
                raise self.family.connection_error("Connection closed by server.")
            reader.feed(self.buffer, 0, size)
            reply = reader.gets()
        if isinstance(reply, Exception):  # as next_reply: this frame must not keep it
            try:
                raise reply
            finally:
                del reply
        return reply

    def write(self, data: bytes, budget_s: float | None = None) -> None:
        """Send ``data``; what cannot go out at once is waited for within the socket timeout
        and ``budget_s``.

        Raises:
            OSError: the send failed or timed out (``TimeoutError``).
        """
        if self.reader is None:
            self.conn.send_packed_command([data], check_health=False)
            return
        self._push(self.conn._sock, data, budget_s)

    def _push(self, sock: Any, data: bytes, budget_s: float | None) -> None:
        """Send ``data`` on our non-blocking socket: at once, or the rest within the budget."""
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            self._write_rest(sock, data, sent, budget_s)

    def _write_rest(self, sock: Any, data: bytes, sent: int, budget_s: float | None) -> None:
        """Send what one ``send`` left of ``data`` (a large command, or a node that reads
        slower than we write), waiting within the socket timeout and ``budget_s``."""
        timeout = self.conn.socket_timeout
        if budget_s is not None:
            timeout = budget_s if timeout is None else min(timeout, budget_s)
        sock.settimeout(timeout)
        try:
            sock.sendall(memoryview(data)[sent:])
        finally:
            sock.settimeout(0)

    def wait(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for data from the node; return True when some came."""
        sock = self.conn._sock
        if sock is None:
            return True  # closed: reading says how
        if self.reader is None:
            return bool(self.conn.can_read(timeout=timeout_s))
        if self.polled is not None:
            return bool(self.polled.poll(max(0, int(timeout_s * 1000 + 0.999))))
        readable, _, _ = select.select([sock], [], [], max(0.0, timeout_s))
        return bool(readable)

    def read_setup(self) -> bool:
        """Read the setup replies that arrived; return True once none is due.

        Raises:
            ConnectionError: (the client library's) the node refused the setup (AUTH, SELECT...).
        """
        while self.handshake:
            try:
                if self.take() is PENDING:
                    return False
            except self.family.response_error as exc:
                raise self.family.connection_error(f"connection setup failed: {exc}") from exc
            self.handshake -= 1
        return True

    def ready(self) -> bool:
        """Catch up with the connection; return False while earlier replies are still due.

        A node that has not answered an earlier command yet (paused, overloaded) fails the next
        command at once instead of costing another deadline. A connection that is broken, or
        that the server closed while idle (a restart), is closed and reconnected by the next
        command.
        """
        conn = self.conn
        if conn._sock is None:
            return True
        polled = self.polled
        if polled is not None and not (self.handshake or self.unanswered or polled.poll(0)):
            return True  # the usual case: nothing due, nothing to read
        try:
            if not self.read_setup():
                return False
            while self.unanswered:
                try:
                    if self.take() is PENDING:
                        break
                except self.family.response_error:
                    pass
                self.unanswered -= 1
            if not self.unanswered and self._idle_has_news():
                conn.disconnect()  # an idle connection has nothing to say: it was closed
        except (self.family.error, OSError):
            conn.disconnect()
            self.handshake = self.unanswered = 0
        if self.unanswered > MAX_UNANSWERED:
            conn.disconnect()
            self.unanswered = 0
        return self.unanswered == 0 and self.handshake == 0

    def _idle_has_news(self) -> bool:
        """Return True when a connection that owes no reply has something to read (an end)."""
        if self.reader is None:
            return bool(self.conn.can_read(timeout=0))
        if self.polled is not None:  # cheaper than a recv that fails
            return bool(self.polled.poll(0))
        readable, _, _ = select.select([self.conn._sock], [], [], 0)
        return bool(readable)

    @property
    def connected(self) -> bool:
        return self.conn._sock is not None

    def send(self, data: bytes, budget_s: float | None) -> None:
        """Send one packed command, connecting first (within ``budget_s``) when needed."""
        conn = self.conn
        sock = conn._sock
        polled = self.polled
        # The usual case, without the calls of ready() and write(): a plain socket that owes
        # no reply and has nothing to read takes the command at once.
        direct = (
            sock is not None
            and polled is not None
            and not (self.handshake or self.unanswered or polled.poll(0))
        )
        if not direct and not self.ready():
            raise redis.exceptions.TimeoutError(
                "no reply yet to an earlier command (the node is paused or overloaded)"
            )
        try:
            if direct:
                self._push(sock, data, budget_s)
            else:
                if conn._sock is None:
                    self._connect_within(budget_s)
                self.write(data, budget_s)
        except BaseException:
            conn.disconnect()
            self.handshake = self.unanswered = 0
            raise

    def _connect_within(self, budget_s: float | None) -> None:
        """Open the socket in at most ``budget_s`` seconds (the setup is pipelined, not
        awaited)."""
        conn = self.conn
        if budget_s is None:
            conn.connect()
            return
        connect_timeout = conn.socket_connect_timeout
        conn.socket_connect_timeout = (
            budget_s if connect_timeout is None else min(connect_timeout, budget_s)
        )
        try:
            conn.connect()
        finally:
            conn.socket_connect_timeout = connect_timeout
        if conn._sock is not None:
            conn._sock.settimeout(conn.socket_timeout if self.reader is None else 0)

    def drop(self) -> None:
        """Close the connection after an error (its state is unknown); the next command
        connects again."""
        self.conn.disconnect()
        self.handshake = self.unanswered = 0

    def close(self) -> None:
        """Close the connection (from any thread: a call in flight on it fails as a node error).

        The next command connects again.
        """
        if self.pid == pid():  # never close a socket a forked child inherited
            with contextlib.suppress(Exception):
                self.conn.disconnect()
        self.handshake = self.unanswered = 0

    def __del__(self) -> None:
        self.close()


class _ThreadLeases(threading.local):
    def __init__(self) -> None:
        self.last: _Lease | None = None  # the lease asked for last (a node has one pool)
        self.by_pool: weakref.WeakKeyDictionary[Any, _Lease] = weakref.WeakKeyDictionary()


class _Leases:
    """The connections one node opened: one per thread and pool, closable from any thread.

    A lease goes when its thread ends or its pool goes; ``close()`` closes the leases of every
    live thread (the calling thread's lease alone would leave the others open until collected).
    """

    def __init__(self) -> None:
        self._local = _ThreadLeases()
        self._all: weakref.WeakSet[_Lease] = weakref.WeakSet()
        self._all_lock = threading.Lock()

    def lease(self, pool: Any) -> _Lease:
        """Return the calling thread's lease on ``pool``, made on first use."""
        local = self._local
        lease = local.last
        if lease is not None and lease.pool is pool and lease.pid == pid():
            return lease
        lease = local.by_pool.get(pool)
        if lease is None or lease.pid != pid():
            lease = local.by_pool[pool] = _Lease(pool)
            with self._all_lock:
                self._all.add(lease)
        local.last = lease
        return lease

    def close(self) -> None:
        """Close every thread's connections; each thread connects again on its next command."""
        with self._all_lock:
            leases = list(self._all)
        for lease in leases:
            lease.close()


class _Call:
    """One command (or the commands of one ``Command``) in flight on the calling thread's
    connection to one node."""

    __slots__ = (
        "buffers",
        "command",
        "decoder",
        "due",
        "effect",
        "fd",
        "lease",
        "read",
        "sent_source",
    )

    def __init__(
        self, lease: _Lease, effect: FanOut | Batch, command: Command, decoder: Decoder
    ) -> None:
        self.lease = lease
        self.effect = effect
        self.command = command
        self.decoder = decoder
        self.due = command.replies  # replies not read yet
        self.read: tuple[Any, ...] = ()  # the replies read while more were due
        self.sent_source = False
        sock = lease.conn._sock
        self.fd: int = -1 if sock is None else sock.fileno()
        self.buffers = lease.reader is None  # our reader: a plain socket, poll sees everything

    def buffered(self) -> bool:
        """Return True when TLS already decrypted data that ``poll`` cannot see."""
        if not self.buffers:
            return False
        pending = getattr(self.lease.conn._sock, "pending", None)
        return bool(pending and pending())

    def finish(self) -> _Call | Done:
        """Read the reply (every reply, when the command has several); re-send with EVAL (and
        stay in flight) when the server says NOSCRIPT.

        Stays in flight while a reply (or only the connection's setup replies) has not arrived
        whole. After an error reply, the replies still due are dropped before the connection's
        next command.
        """
        lease = self.lease
        if lease.handshake and not lease.read_setup():
            return self
        try:
            raw = lease.take()
            while self.due > 1 and raw is not PENDING:  # more due: they may be buffered already
                self.due -= 1
                self.read += (raw,)
                raw = lease.take()
        except lease.family.no_script_error:
            script = self.command.script
            if script is None or self.sent_source:
                raise
            self.sent_source = True
            lease.write(pack("EVAL", script.source, *self.command.args))
            return self
        except lease.family.response_error:
            lease.unanswered += self.due - 1
            raise
        if raw is PENDING:
            return self
        self.due = 0
        return self.decoder([*self.read, raw] if self.read else raw)

    def abandon(self) -> None:
        """Stop waiting: the late replies are dropped before the connection's next command."""
        self.lease.unanswered += self.due

    def fail(self) -> None:
        """Close the connection after an error while reading (its state is unknown)."""
        self.lease.drop()


def _credentials(conn: Any) -> tuple[str, ...]:
    """Return the AUTH arguments of a connection (user and password, or password), if any."""
    provider = getattr(conn, "credential_provider", None)
    if provider is not None:
        return tuple(provider.get_credentials())
    username, password = getattr(conn, "username", None), getattr(conn, "password", None)
    if username and password:
        return (username, password)
    return (password,) if password else ()


def _send(
    lease: _Lease,
    effect: FanOut | Batch,
    budget_s: float | None,
    sharded: bool = False,
) -> _Call:
    sent, data, decoder = packed(effect, sharded)
    lease.send(data, budget_s)
    return _Call(lease, effect, sent, decoder)


class RedisNode:
    """A node behind a ``redis.Redis`` or ``valkey.Valkey`` client (standalone or a Sentinel
    ``master_for``)."""

    def __init__(self, index: int, client: redis.Redis, address: str, *, owned: bool) -> None:
        self.index = index
        self.address = address
        self.client = client
        self._owned = owned
        self._leases = _Leases()

    def begin(
        self, effect: FanOut | Batch, budget_s: float | None, connect: bool = True
    ) -> InFlight | Done | None:
        lease = self._leases.lease(self.client.connection_pool)
        if not connect and lease.conn._sock is None:
            return None
        sent, data, decoder = packed(effect)
        lease.send(data, budget_s)
        return _Call(lease, effect, sent, decoder)

    def ping(self, timeout_s: float) -> str:
        lease = self._leases.lease(self.client.connection_pool)
        deadline = time.monotonic() + timeout_s
        try:
            lease.send(pack("INFO", "server"), timeout_s)
            while True:
                info = lease.take() if lease.read_setup() else PENDING
                if info is not PENDING:
                    return server_version(info)
                left = deadline - time.monotonic()
                if left <= 0 or not lease.wait(left):
                    lease.unanswered += 1
                    raise node_error(self, f"no reply within {timeout_s:g} s")
        except NodeError:
            raise
        except Exception as exc:
            lease.drop()
            raise node_error(self, exc) from exc

    def close(self) -> None:
        self._leases.close()
        if self._owned:  # a client the user passed in keeps its pool
            self.client.close()


class ClusterNode:
    """A Redis Cluster (redis-py's or valkey-py's client) as one node: each key goes to the
    master that owns its slot."""

    def __init__(self, index: int, client: Any, address: str) -> None:
        self.index = index
        self.address = address
        self.client = client
        self.family = family_of(client)
        self._leases = _Leases()  # to each master, for commands that need no redirection

    def begin(
        self, effect: FanOut | Batch, budget_s: float | None, connect: bool = True
    ) -> InFlight | Done | None:
        # ``connect`` is not needed: the cluster client keeps its own connections.
        if isinstance(effect, Batch):
            # Keys of a batch live in different slots: one command each, through the client.
            return tuple(self._through_client(item) for item in effect.effects)
        if spans_slots(effect, self.client.keyslot):
            return drive_split(effect, self.client.keyslot, self._through_client)
        target = self.client.get_node_from_key(effect.key)
        connection = getattr(target, self.family.cluster_connection, None)
        if connection is None:
            return self._through_client(effect)
        lease = self._leases.lease(connection.connection_pool)
        call = _send(lease, effect, budget_s, sharded=True)
        return _ClusterCall(self, call)

    def _through_client(self, effect: FanOut) -> NodeReply:
        """Run the command through the cluster client, which follows MOVED/ASK redirections."""
        sent = command(effect, sharded=True)
        script, args = sent.script, sent.args
        if sent.then:  # several commands: one pipeline, their replies in a list
            pipe = self.client.pipeline()
            for each in sent.commands():
                pipe.execute_command(*each)
            raw = pipe.execute()
        elif script is None:
            raw = self.client.execute_command(*args)
        else:
            try:
                raw = self.client.execute_command("EVALSHA", script.sha, *args)
            except self.family.no_script_error:
                raw = self.client.execute_command("EVAL", script.source, *args)
        reply = decode(effect, raw)
        assert isinstance(reply, NodeReply)  # a single FanOut decodes to one reply
        return reply

    def ping(self, timeout_s: float) -> str:
        try:
            return server_version(self.client.info("server", target_nodes=self.client.RANDOM))
        except Exception as exc:
            raise node_error(self, exc) from exc

    def close(self) -> None:
        """Close our connections to the masters; the cluster client is always the caller's."""
        self._leases.close()


class _ClusterCall:
    """A call to one cluster master that falls back to the cluster client after a redirection."""

    __slots__ = ("call", "node")

    def __init__(self, node: ClusterNode, call: _Call) -> None:
        self.node = node
        self.call = call

    @property
    def fd(self) -> int:
        return self.call.fd

    @property
    def buffers(self) -> bool:
        return self.call.buffers

    def buffered(self) -> bool:
        return self.call.buffered()

    def finish(self) -> InFlight | Done:
        try:
            result = self.call.finish()
        except self.node.family.response_error as exc:
            if not str(exc).startswith(("MOVED", "ASK")):
                raise
            self.node.client.nodes_manager.initialize()
            effect = self.call.effect
            assert isinstance(effect, FanOut)  # batches never take this path
            return self.node._through_client(effect)
        return self if result is self.call else result

    def abandon(self) -> None:
        self.call.abandon()

    def fail(self) -> None:
        self.call.fail()


class MemoryNode:
    """An in-process ``memory://NAME`` node: answers at once."""

    def __init__(self, index: int, store: MemoryStore) -> None:
        self.index = index
        self.address = redact(f"memory://{store.name}")
        self.store = store

    def begin(
        self, effect: FanOut | Batch, budget_s: float | None, connect: bool = True
    ) -> InFlight | Done | None:
        if isinstance(effect, Batch):
            return tuple(self.store.apply(item) for item in effect.effects)
        return self.store.apply(effect)

    def ping(self, timeout_s: float) -> str:
        return "memory"

    def close(self) -> None:
        """Memory stores live as long as the process."""


def server_version(info: Any) -> str:
    """Return the server's version from an INFO reply (text or parsed), or ``"?"``.

    Redis: its ``redis_version`` (``"7.2.4"``). Valkey answers ``redis_version: 7.2.4`` whatever
    its own version (for compatibility), so a server that names itself gets its name and
    version: ``server_name`` and ``valkey_version`` (``"valkey 8.1.0"``).
    """
    if not isinstance(info, dict):
        if not isinstance(info, (bytes, str)):  # INFO answers text: this node is not a Redis
            raise UnexpectedReply(f"unexpected reply {info!r:.40} to INFO")
        text = info.decode() if isinstance(info, bytes) else info
        info = {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}
    if info.get("valkey_version"):
        return f"{info.get('server_name') or 'valkey'} {info['valkey_version']}"
    return str(info.get("redis_version") or "?")


# _FAILURES: a node is a remote server that may answer anything. redis-py raises RedisError and
# OSError for what it expects, but a misbehaving server (wrong reply types during the setup or
# to INFO) surfaces as AttributeError, TypeError, ValueError... from its parsers. Each of them
# means "this node failed"; letting one escape would abandon the other nodes' replies and, after
# a partial acquisition, skip the release. The transport (this module and aio.py) is the one
# place that catches node failures broadly.


@overload
def fan_out(
    nodes: Sequence[SyncNode],
    effect: FanOut,
    order: Sequence[int] | None = ...,
) -> tuple[Single, ...]: ...


@overload
def fan_out(
    nodes: Sequence[SyncNode],
    effect: Batch,
    order: Sequence[int] | None = ...,
) -> tuple[Reply, ...]: ...


def fan_out(
    nodes: Sequence[SyncNode],
    effect: FanOut | Batch,
    order: Sequence[int] | None = None,
) -> tuple[Reply, ...]:
    """Send ``effect`` to every node at once and collect one reply per node (in node order).

    Returns when every node answered, ``effect.deadline_ms`` passed (the rest become
    NodeErrors), or, with ``effect.stop_at``, when that many nodes agreed either way (the rest
    stay None). Nodes left out by ``effect.only`` stay None. Never raises for node failures.
    """
    replies: list[Reply] = [None] * len(nodes)
    budget_s = None if effect.deadline_ms is None else effect.deadline_ms / 1000
    deadline = None if budget_s is None else time.monotonic() + budget_s
    inflight: dict[int, Any] = {}
    only = effect.only
    indexes: Sequence[int] = range(len(nodes)) if order is None else order
    if only is not None:
        indexes = [i for i in indexes if i in only]
    # Nodes with an open connection first, then the others: opening one may take a little of
    # the budget.
    connecting: list[int] = []
    for connect in (False, True):
        left = None if deadline is None else max(0.001, deadline - time.monotonic())
        for i in tuple(connecting) if connect else indexes:
            node = nodes[i]
            if connect and deadline is not None:  # each new connection gets what is left then
                left = max(0.001, deadline - time.monotonic())
            try:
                started = node.begin(effect, left, connect)
            except Exception as exc:  # noqa: BLE001 - see _FAILURES
                replies[i] = node_error(node, exc)
                continue
            if started is None:
                connecting.append(i)
            elif isinstance(started, (NodeReply, tuple)):
                replies[i] = started
            else:
                inflight[i] = started
        if not connecting:
            break
    stop_at = effect.stop_at
    # The unlock of a lock handed over under contention: read the replies in one go once the
    # node asked last answered (the next holder's notices, which the same scripts publish,
    # then have the CPU first). Elsewhere each reply is read as it comes (lowest latency).
    last_first = isinstance(effect, FanOut) and effect.op is Op.RELEASE and effect.queued
    buffering = any(call.buffers for call in inflight.values())
    while inflight:
        if stop_at is not None and decided(replies, stop_at):
            for call in inflight.values():
                call.abandon()
            break
        ready = _wait(
            inflight,
            None if deadline is None else deadline - time.monotonic(),
            last_first,
            buffering,
        )
        if not ready:
            for i, call in inflight.items():
                call.abandon()
                waited = effect.deadline_ms
                replies[i] = node_error(nodes[i], f"no reply within the {waited} ms deadline")
            break
        for i in ready:
            call = inflight[i]
            try:
                result = call.finish()
            except Exception as exc:  # noqa: BLE001 - see _FAILURES
                call.fail()
                replies[i] = node_error(nodes[i], exc)
                del inflight[i]
                continue
            if isinstance(result, (NodeReply, tuple)):
                replies[i] = result
                del inflight[i]
            else:
                inflight[i] = result
                buffering = buffering or result.buffers
    return tuple(replies)


def batches(effects: Sequence[FanOut]) -> list[tuple[list[int], FanOut | Batch]]:
    """Plan several EXTEND fan-outs as few calls: plain extensions go as one Batch (one
    script call per node); those that may SET NX or span several keys, or a lone one, go by
    themselves.

    Returns each call with the indexes (in ``effects``) of the extensions it carries.
    """
    plain = [i for i, effect in enumerate(effects) if not effect.set_nx and not effect.keys]
    calls: list[tuple[list[int], FanOut | Batch]] = [
        ([i], effect) for i, effect in enumerate(effects) if i not in plain or len(plain) == 1
    ]
    if len(plain) > 1:
        deadlines = [effects[i].deadline_ms for i in plain]
        deadline = None if None in deadlines else max(d for d in deadlines if d is not None)
        calls.append((plain, Batch(tuple(effects[i] for i in plain), deadline)))
    return calls


def extend_many(nodes: Sequence[SyncNode], effects: Sequence[FanOut]) -> list[tuple[Single, ...]]:
    """Send several EXTEND fan-outs in as few round trips as the scripts allow; return each
    one's replies (in node order). Never raises for node failures."""
    replies: list[tuple[Single, ...]] = [()] * len(effects)
    for indexes, call in batches(effects):
        if isinstance(call, Batch):
            carried = split_batch(call, fan_out(nodes, call))
        else:
            carried = [fan_out(nodes, call)]
        for i, each in zip(indexes, carried, strict=True):
            replies[i] = each
    return replies


def _wait(
    inflight: dict[int, Any], timeout_s: float | None, last_first: bool, buffering: bool = True
) -> list[int]:
    """Return the indexes of calls with a reply to read, waiting at most ``timeout_s``.

    ``last_first``: when nothing is there yet, wait for the node asked last (``inflight`` keeps
    the order the nodes were asked in; the others mostly answer before it), then take whatever
    arrived: one wake-up for the replies instead of one each, the same time to the last one.
    ``buffering``: some call may have a reply in a buffer that ``poll`` cannot see (TLS); False
    when none can (plain sockets), which skips asking each call.
    """
    if buffering:
        ready = [i for i, call in inflight.items() if call.buffers and call.buffered()]
        if ready:
            return ready
    if _POLL:
        poller = select.poll()
        fds = {}
        for i, call in inflight.items():
            fd = fds[i] = call.fd
            poller.register(fd, select.POLLIN)
        wait_ms = None if timeout_s is None else max(0, int(timeout_s * 1000 + 0.999))
        if last_first and len(fds) > 1:
            events = poller.poll(0)
            if not events:
                last = select.poll()
                last.register(fds[next(reversed(fds))], select.POLLIN)
                last.poll(wait_ms)
                events = poller.poll(0)
        else:
            events = poller.poll(wait_ms)
        if len(events) == len(fds):
            return list(fds)  # every call has something to read
        readable = {fd for fd, _ in events}
        return [i for i, fd in fds.items() if fd in readable]
    by_fd = {call.fd: i for i, call in inflight.items()}
    timeout = None if timeout_s is None else max(0.0, timeout_s)
    readable_fds, _, _ = select.select(list(by_fd), [], [], timeout)
    return [by_fd[fd] for fd in readable_fds]
