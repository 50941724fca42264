"""Release notices: wake the waiters of a lock when it is released (pub/sub, sync and asyncio).

A release (``unlock()``, ``force_release()``, the clean-up after a failed try) publishes on the
channel named like the lock's key, in the same script as the delete; on Redis Cluster on the
sharded channel (SPUBLISH), which lives in the key's slot. Here the other side: a waiter that
sleeps between two attempts asks ``wait(key, since_ms, timeout_ms)`` to end early when a notice
for ``key`` arrives.

- One subscriber connection per Redis server (per event loop for asyncio), subscribed only to
  keys that have waiters in this process; no thread or task per waiter. Sync: while a thread
  waits, it polls every subscriber socket itself (one waiting thread at a time; it wakes the
  others through a Condition per key), so that a notice wakes the thread that acts on it with
  no hop through another thread; what came while nobody polled is read by the next lock()
  call before it tries (``settle``). One reader thread per ``Redsync`` opens the connections
  and polls when no thread has waited for a while (``HANDBACK_S``), or when the connections
  are read through redis-py (TLS, no hiredis: it waits for the rest of a reply that began to
  arrive); it is started by the
  first waiter, ends after a while without waiters, and is not inherited by a forked child
  (the child starts its own). Asyncio: one reader task per subscriber connection on the loop
  opens it; on a plain socket with hiredis our protocol (``_Listener``) then handles each
  message in the loop's read callback, and a notice sets the futures of the waiting tasks it
  concerns there (no reader task woken per notice); otherwise the task reads through redis-py.
- Notices are hints. A waiter always wakes at its timeout whatever happens here: a refused
  SUBSCRIBE (ACL NOPERM, logged once at WARNING), a node that is down, paused or drops the
  connection, a lost message. Nothing here raises into ``lock()``.
- A new subscription misses what was published before the server saw it, so its first
  confirmation wakes the key's waiters once (they try again at once). A waiter wakes only for
  a notice from a node that its last attempt found held (``nodes``): the same release heard
  from the other nodes, which its attempt already found free, is no news to it.
- Turns: waiters that give a ``waiter`` token (every ``lock()``) are woken one at a time per
  key and process, oldest first. The woken one has the turn until it sleeps again (it lost:
  notices heard before its attempt began are then no news to the others) or its ``lock()``
  ends (``leave``; when it won, notices heard until then are no news either). So one release
  costs this process one attempt, not one per waiting thread or task; the others still wake
  at their own timeout, as without notices. The copies of a release from the other nodes
  (same payload) that arrive in the ``STALE_NS`` after a win in this process wake nobody.
- Several keys: a semaphore waits for any of its permits, a multi-mutex for any of its keys
  (``wait_any``). Such a waiter is a waiter of each key, takes the turns of each, and wakes
  when it has one of them; its lock() call leaves each (``won`` for the keys it took).
- Queues, across processes: a waiting ``lock()`` queues itself on the nodes (see
  ``scripts.RELEASE``), and a release that pops a queued waiter publishes on that waiter's
  process's wake channel (``<key>:wake:<inbox>``) only, naming it in the payload. A process
  subscribes, for each key with waiters, the key's channel and its own wake channel; a notice
  that names a waiter is news to that waiter only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import secrets
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from .._algorithm.effects import Waiter
from .._algorithm.queues import WAKE_INFIX, handover_proof, wake_channel
from .._algorithm.timing import quorum
from .._clock import Clock
from .._process import pid
from .aio import Taken, read_reply, take_over
from .clients import Family, family_of
from .commands import PENDING, new_reader, next_reply, pack
from .sync import READ_SIZE, RedisNode, _credentials

__all__ = ["AsyncNotices", "SyncNotices", "new_waiter"]

logger = logging.getLogger("redsync")

#: Seconds a subscriber connection may take to open; the reader retries a failed one after
#: ``RETRY_S``. Only notices wait for this, never a lock() (waiters wake at their timeout).
CONNECT_TIMEOUT_S = 1.0
RETRY_S = 1.0
#: The sync reader thread ends after this many seconds without any waiter.
IDLE_S = 10.0
#: A key stays subscribed this many seconds after its last waiter left: a process that locks
#: the same name again and again (the common case under contention) then neither unsubscribes
#: and resubscribes every time nor misses the notices in between.
LINGER_S = 0.5
#: After the last waiting thread stopped polling, the reader thread leaves the subscriber
#: sockets alone this many seconds (what arrives meanwhile is read by the next waiting
#: thread, or then by the reader).
HANDBACK_S = LINGER_S / 4
#: After a win in this process, copies (from other nodes) of a release heard before it are
#: ignored for this long (ns): they come late from a slow node or a busy reader, and would
#: wake a waiter for a lock that is taken again. Later ones only cost that waiter a try.
STALE_NS = 20_000_000
#: A key remembers the ids named by this many of its latest notices (a waiter named while it
#: was still trying finds its notice there when it goes to sleep).
NAMED_KEPT = 64

_SUBSCRIBE = {False: "SUBSCRIBE", True: "SSUBSCRIBE"}
_UNSUBSCRIBE = {False: "UNSUBSCRIBE", True: "SUNSUBSCRIBE"}
_MESSAGE = (b"message", b"smessage", "message", "smessage")
_CONFIRM = (b"subscribe", b"ssubscribe", "subscribe", "ssubscribe")
#: ``SyncNotices._poller`` while the reader thread uses the subscriber sockets.
_READER = object()


def _text(data: object) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "surrogateescape")
    return str(data)


#: The order in which ``lock()`` calls first waited (their rank for the turns).
_arrivals = itertools.count()


#: This process's inbox token: queued waiters are woken on channels named after it.
_inbox = ""
_waiter_ids = itertools.count()


def inbox() -> str:
    """Return this process's inbox token (a new one in a forked child)."""
    global _inbox  # one per process, renewed after a fork
    if not _inbox:
        _inbox = secrets.token_hex(4)
    return _inbox


def _forked() -> None:
    global _inbox
    _inbox = ""


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def new_waiter(value: str) -> Waiter:
    """Return a new waiting ``lock()`` call for ``value``: an id ``<inbox>.<n>`` (a release that
    wakes it publishes on its process's wake channel), ranked by the wall clock (ms) now
    (comparable between processes and hosts, unlike monotonic clocks; skew costs only order),
    and the proof that a hand-over is for its value."""
    rank = time.time_ns() // 1_000_000
    return Waiter(f"{inbox()}.{next(_waiter_ids)}", rank, handover_proof(value))


def _channels(key: str) -> list[str]:
    """The channels of ``key``'s notices for this process: the key's own, and its wake
    channel (releases that wake a queued waiter of this process)."""
    own = wake_channel(key, inbox())
    return [key] if own is None else [key, own]


def _lock_key(channel: str) -> str:
    """The lock key of a notice's channel (see ``_channels``)."""
    key, infix, _ = channel.partition(WAKE_INFIX + inbox())
    return key if infix else channel


class _Waited:
    """The waiters of one key in this process, and when each node last sent a notice for it."""

    __slots__ = (
        "also",
        "asleep",
        "confirmed_ms",
        "confirmed_ns",
        "granted",
        "heard_ms",
        "heard_ns",
        "idle_since",
        "named",
        "need",
        "ranks",
        "recent",
        "stale",
        "stale_ns",
        "turn",
        "turn_ns",
        "waiters",
        "wake",
        "woke_ns",
    )

    def __init__(self, wake: threading.Condition | None, need: int = 1) -> None:
        self.waiters = 0
        self.heard_ms: dict[int, int] = {}  # node index -> when its last notice arrived
        self.heard_ns: dict[int, int] = {}  # the same on time.monotonic_ns (for the turns)
        self.confirmed_ms = -1  # when the first subscription was confirmed
        self.confirmed_ns = -1
        # Waiter ids named by notices (popped off a node's queue), with when: news to those
        # waiters only, not to the others of this process.
        self.named: dict[str, tuple[int, int]] = {}
        # Waiter ids -> the nodes that handed the key over to them (a notice ending in '+'
        # and a proof), with the proofs: such a waiter is woken once ``need`` (a quorum) did.
        self.granted: dict[str, dict[int, str]] = {}
        self.need = need
        # When the last waiter left (time.monotonic() in sync, the loop's time in asyncio).
        self.idle_since: float | None = None
        self.wake = wake  # sync: a Condition on the registry lock
        # Sync: the wake-ups of waiters on several keys (``wait_any``) that include this one,
        # notified with ``wake`` (a Condition on the registry lock each). Asyncio: the future of
        # every waiting task of this key, set by a notice that concerns the key.
        self.also: set[Any] = set()
        # The turns of lock() calls (waiter tokens); times on time.monotonic_ns, finer than
        # the flows' ms: two notices of one release often arrive within the same ms.
        self.ranks: dict[object, int] = {}  # waiting lock() calls -> order of arrival
        self.asleep: dict[object, tuple[int, frozenset[int] | None]] = {}  # -> since, nodes
        self.woke_ns: dict[object, int] = {}  # when each last stopped sleeping (then tried)
        self.turn: object | None = None  # the one woken whose attempt has not come back yet
        self.turn_ns = -1  # notices heard before this are no news to the lock() calls
        # Payloads (a digest of the released value) of the notices heard since the last win,
        # with the nodes they came from, and those heard before it: a copy from another node
        # arriving soon after the win tells of a release that the win came after.
        self.recent: dict[object, set[int]] = {}
        self.stale: dict[object, set[int]] = {}
        self.stale_ns = -1  # the end of the window in which such copies are ignored

    def heard(self, now_ms: int, node: int | None, payload: object = None) -> bool:
        """Record a notice from ``node`` (None: a subscription confirmed); return True to wake.

        ``payload``: the released value's digest, then the ids of the waiters the release woke
        (a notice that names waiters is news to them only)."""
        names: list[str] = []
        if payload is not None and node is not None:
            released, *names = _text(payload).split(" ")
            if len(names) == 2 and names[1].startswith("+"):
                return self.handed(names[0], node, names[1], now_ms)
            copied = self.stale.get(released)
            if copied is not None and node not in copied and time.monotonic_ns() < self.stale_ns:
                copied.add(node)  # once per node: the same value released again is news
                return False  # a late copy of a release from before the last win
            self.recent.setdefault(released, set()).add(node)
        if names:
            self._name(names, now_ms)
            return any(getattr(w, "id", None) in names for w in self.ranks)
        if node is None:
            if self.confirmed_ms >= 0:
                return False
            self.confirmed_ms = now_ms
            self.confirmed_ns = time.monotonic_ns()
        else:
            self.heard_ms[node] = now_ms
            self.heard_ns[node] = time.monotonic_ns()
        return True

    def _name(self, names: list[str], now_ms: int) -> None:
        at = (now_ms, time.monotonic_ns())
        for name in names:
            self.named.pop(name, None)
            self.named[name] = at
        while len(self.named) > NAMED_KEPT:
            del self.named[next(iter(self.named))]

    def handed(self, name: str, node: int, proof: str, now_ms: int) -> bool:
        """Record that ``node`` handed the key over to the waiter ``name`` (``proof``: of which
        value); return True to wake (it is waiting here and a quorum of nodes did)."""
        nodes = self.granted.pop(name, {})
        self.granted[name] = nodes
        nodes[node] = proof
        while len(self.granted) > NAMED_KEPT:
            del self.granted[next(iter(self.granted))]
        if len(nodes) < self.need:
            return False
        self._name([name], now_ms)
        return any(getattr(w, "id", None) == name for w in self.ranks)

    def granted_to(self, waiter: object) -> frozenset[int]:
        """The nodes that handed the key over to ``waiter``'s value in its lock() call."""
        proof = getattr(waiter, "proof", None)
        nodes = self.granted.get(getattr(waiter, "id", ""), {})
        return frozenset(node for node, given in nodes.items() if given == proof)

    def news(
        self,
        since_ms: int,
        nodes: frozenset[int] | None,
        after_ns: int = -1,
        waiter: object | None = None,
    ) -> bool:
        """True when something was heard at or after ``since_ms`` (and after ``after_ns``)
        from one of ``nodes`` (None: any node), or the first subscription was confirmed since,
        or a notice named ``waiter`` since."""
        if self.confirmed_ms >= since_ms and self.confirmed_ns > after_ns:
            return True
        if self.named_since(waiter, since_ms, after_ns):
            return True
        return any(
            at >= since_ms and self.heard_ns[node] > after_ns and (nodes is None or node in nodes)
            for node, at in self.heard_ms.items()
        )

    def named_since(self, waiter: object, since_ms: int, after_ns: int = -1) -> bool:
        """True when a notice named ``waiter`` at or after ``since_ms`` (and after ``after_ns``)."""
        named = self.named.get(getattr(waiter, "id", ""))
        return named is not None and named[0] >= since_ms and named[1] > after_ns

    def join(self, waiter: object, since_ms: int, nodes: frozenset[int] | None) -> bool:
        """Put ``waiter`` to sleep here (back from its attempt if it had the turn); return
        True when the turn went to someone (wake the sleepers)."""
        self.ranks.setdefault(waiter, next(_arrivals))
        self.asleep[waiter] = (since_ms, nodes)
        if self.turn is waiter:  # it lost: what was heard before its attempt is no news
            self.turn = None
            self.turn_ns = max(self.turn_ns, self.woke_ns.get(waiter, -1))
        return self.pass_turn()

    def awake(self, waiter: object) -> None:
        """``waiter`` stops sleeping (woken or its delay over) and tries next."""
        self.asleep.pop(waiter, None)
        self.woke_ns[waiter] = time.monotonic_ns()

    def leave(self, waiter: object, won: bool) -> bool:
        """Forget ``waiter`` (its lock() ended); return True when the turn went to someone."""
        self.ranks.pop(waiter, None)
        self.asleep.pop(waiter, None)
        self.woke_ns.pop(waiter, None)
        self.granted.pop(getattr(waiter, "id", ""), None)
        if won:
            self.stale, self.recent = self.recent, {}
            self.stale_ns = time.monotonic_ns() + STALE_NS
        if self.turn is not waiter:
            return False
        self.turn = None
        if won:  # the lock is taken again: what was heard up to now is no news
            self.turn_ns = max(self.turn_ns, time.monotonic_ns())
        return self.pass_turn()

    def woken(self, waiter: object | None, since_ms: int, nodes: frozenset[int] | None) -> bool:
        """True when the waiter may wake: it has the turn (or news, without a token)."""
        return self.news(since_ms, nodes) if waiter is None else self.turn is waiter

    def pass_turn(self) -> bool:
        """Give a free turn to the oldest sleeper with news; return True if it was given.

        News to a sleeper: heard after it last tried (and after ``turn_ns``), from a node
        that its last attempt found held."""
        if self.turn is not None:
            return False
        chosen, best = None, -1
        for waiter, (since_ms, nodes) in self.asleep.items():
            rank = self.ranks[waiter]
            if chosen is not None and rank > best:
                continue
            after_ns = max(self.turn_ns, self.woke_ns.get(waiter, -1))
            if self.news(since_ms, nodes, after_ns, waiter):
                chosen, best = waiter, rank
        self.turn = chosen
        return chosen is not None


def _endpoint(node: object, key: str) -> tuple[Any, bool] | None:
    """Return what opens a connection to the server that carries ``key``'s notices on ``node``
    (a pool, or anything with ``connection_class`` and ``connection_kwargs``) and whether the
    channel is sharded (Redis Cluster); None when the node has no pub/sub (memory nodes)."""
    client = getattr(node, "client", None)
    if client is None:
        return None
    if isinstance(node, RedisNode):
        return client.connection_pool, False
    if hasattr(client, "get_node_from_key"):  # a cluster client, sync or asyncio
        try:
            target = client.get_node_from_key(key)
        except Exception:  # noqa: BLE001 - cluster map not ready: no notices from it yet
            return None
        redis_connection = getattr(target, "redis_connection", None)  # sync cluster nodes
        pool = getattr(redis_connection, "connection_pool", None) or target
        return (pool, True) if hasattr(pool, "connection_kwargs") else None
    pool = getattr(client, "connection_pool", None)
    return None if pool is None else (pool, False)


def _carries(nodes: Sequence[Any], pool: Any, key: str) -> bool:
    """Return True when ``pool``'s server carries the notices of ``key`` for some node."""
    for node in nodes:
        endpoint = _endpoint(node, key)
        if endpoint is not None and endpoint[0] is pool:
            return True
    return False


def _is_refusal(family: Family, exc: Exception) -> bool:
    """True when the server will not let this user subscribe (ACL) or knows no pub/sub."""
    text = str(exc)
    return isinstance(exc, family.no_permission_error) or text.startswith(
        ("NOPERM", "unknown command")
    )


def _failures(family: Family) -> tuple[type[Exception], ...]:
    """What a subscriber connection of ``family``'s client library raises when it fails."""
    return (family.error, OSError, ValueError, AttributeError, TypeError)


def _refusal(address: str, exc: BaseException) -> None:
    logger.warning(
        "Redis node %s refused the release notices of waiting locks (%s): waiters fall back to "
        "their retry delay. Allow the lock channels in the ACL (e.g. '&<key_prefix>*'), or set "
        "wake_on_release=False.",
        address,
        exc,
    )


# --- sync -----------------------------------------------------------------------------------


class _Sub:
    """A sync subscriber connection to one server (its socket is used by one thread at a time:
    the one that polls, see ``SyncNotices``).

    On a plain socket (TCP or Unix, not TLS) with hiredis installed, the socket is
    non-blocking and read as the sync transport reads: everything that arrived in one
    ``recv``, parsed by a hiredis reader of our own. Otherwise redis-py's connection reads.
    """

    def __init__(self, pool: Any, sharded: bool, node: int, address: str) -> None:
        self.pool = pool
        self.family = family_of(pool)  # whose exception classes this connection raises
        self.node = node
        self.sharded = sharded
        self.address = address
        self.conn: Any = None
        self.reader: Any = None  # our hiredis reader while the socket is non-blocking
        self.channels: set[str] = set()  # subscribed (or asked for) on this connection
        self.pending: collections.deque[tuple[bool, str | None]] = collections.deque()
        self.refused = False
        self.retry_at = 0.0

    def fileno(self) -> int:
        sock = None if self.conn is None else self.conn._sock
        return -1 if sock is None else int(sock.fileno())

    def connect(self) -> None:
        """Open the connection; the AUTH reply (if any) is read later with the others.

        Raises:
            RedisError (or valkey-py's ValkeyError), OSError: the server could not be reached.
        """
        kwargs = {
            **self.pool.connection_kwargs,
            "protocol": 2,  # plain message arrays, whatever the pool speaks
            "socket_timeout": CONNECT_TIMEOUT_S,
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
        }
        conn = self.pool.connection_class(**kwargs)
        setattr(conn, self.family.connect_hook, self._setup)  # redis-py or valkey-py hook
        self.pending.clear()
        self.channels.clear()
        self.reader = None
        conn.connect()
        if type(conn._sock) is socket.socket:  # not TLS: its records need the ssl module
            self.reader = new_reader(conn._parser.parse_error)
            if self.reader is not None:
                conn._sock.settimeout(0)
        self.conn = conn

    def _setup(self, conn: Any) -> None:
        conn._parser.on_connect(conn)
        credentials = _credentials(conn)
        if credentials:
            conn.send_packed_command([pack("AUTH", *credentials)], check_health=False)
            self.pending.append((False, None))

    def send(self, subscribe: bool, key: str) -> None:
        """Write (UN)SUBSCRIBE for ``key``'s channels; never waits on a plain socket.

        Raises:
            RedisError (or valkey-py's ValkeyError), OSError: the connection failed, or (plain
                socket) the server does not read what we write: drop the connection.
        """
        command = (_SUBSCRIBE if subscribe else _UNSUBSCRIBE)[self.sharded]
        channels = _channels(key)  # one command each: one reply each, for ``pending``
        data = b"".join(pack(command, c) for c in channels)
        if self.reader is None:
            self.conn.send_packed_command([data], check_health=False)
        elif self.conn._sock.send(data) < len(data):  # a full buffer raises BlockingIOError
            raise BlockingIOError("the server does not read its subscriber connection")
        self.pending.extend((subscribe, key) for _ in channels)
        if subscribe:
            self.channels.add(key)
        else:
            self.channels.discard(key)

    def replies(self, buffer: bytearray) -> list[Any]:
        """Return the replies that arrived (error replies as exception objects, in order).

        Raises:
            ConnectionError (the client library's), OSError: the connection failed or closed.
        """
        conn, reader = self.conn, self.reader
        replies: list[Any] = []
        if reader is None:
            while True:
                try:
                    replies.append(conn.read_response())
                except self.family.response_error as exc:
                    replies.append(exc)
                if not conn.can_read(timeout=0):
                    return replies
        while True:
            try:
                size = conn._sock.recv_into(buffer)
            except BlockingIOError:
                break
            if not size:
                raise self.family.connection_error("Connection closed by server.")
            reader.feed(buffer, 0, size)
            if size < len(buffer):
                break
        while True:
            try:
                reply = next_reply(reader)
            except self.family.response_error as exc:
                replies.append(exc)
                continue
            if reply is PENDING:
                return replies
            replies.append(reply)

    def drop(self) -> None:
        conn, self.conn = self.conn, None
        self.reader = None
        self.channels.clear()
        self.pending.clear()
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.disconnect()


class SyncNotices:
    """Release notices for the waiters of one ``Redsync`` (read by a waiting thread, or by one
    reader thread started lazily)."""

    def __init__(self, nodes: Sequence[Any], clock: Clock) -> None:
        self._nodes = list(nodes)
        self._need = quorum(len(self._nodes))
        self._clock = clock
        #: False when no node can carry notices (memory nodes): waiters just sleep.
        self.available = any(getattr(node, "client", None) is not None for node in nodes)
        self._pid = -1
        self._reset()

    def _reset(self) -> None:
        # Also in a forked child: the parent's thread is not there and its sockets are not ours
        # (they are dropped unclosed: closing them would shut the parent's connections down).
        inherited = getattr(self, "_pipe", None)
        if inherited is not None:
            for fd in inherited:
                with contextlib.suppress(OSError):
                    os.close(fd)  # our copies only: the parent's pipe stays open
        self._pid = pid()
        self._sweep_at = 0.0
        self._lock = threading.Lock()
        self._keys: dict[str, _Waited] = {}
        self._changed: set[str] = set()
        self._subs: dict[int, _Sub] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._pipe: tuple[int, int] | None = None
        self._warned = False
        self._buffer: bytearray | None = None  # for the subscriber sockets' reads
        # The poll object of the sockets last polled (and their fds): one thread polls at once.
        self._polling: tuple[tuple[int, ...], Any] | None = None
        # Who uses the subscriber sockets now: the reader thread (``_READER``), a waiting
        # thread (its ident), or nobody. A waiting thread takes them when it can, so that a
        # notice wakes the thread that acts on it, with no hop through the reader thread.
        self._poller: object = None
        self._hopefuls: set[threading.Condition] = set()  # waiters that asked the reader
        self._sleeping = 0  # threads in ``_sleep``
        self._left_at = -HANDBACK_S  # when the last waiting thread that polled stopped
        self._yield = False  # the reader thread was asked to hand the sockets over
        self._handed = threading.Condition(self._lock)  # the reader waits for them here

    def wait(
        self,
        key: str,
        since_ms: int,
        timeout_ms: int,
        nodes: frozenset[int] | None = None,
        waiter: object | None = None,
    ) -> bool:
        """Return False after ``timeout_ms``, or True as soon as a notice for ``key`` from one
        of ``nodes`` (None: any) was heard at or after ``since_ms`` (this object's clock), and,
        with a ``waiter`` token, it is this waiter's turn (see the module). Never raises for
        node trouble."""
        if pid() != self._pid:
            self._reset()
        end = time.monotonic() + timeout_ms / 1000
        with self._lock:
            waited = self._enter(key)
            assert waited.wake is not None
            if waiter is not None and waited.join(waiter, since_ms, nodes):
                self._notify(waited)
            try:
                return self._sleep(waited.wake, lambda: waited.woken(waiter, since_ms, nodes), end)
            finally:
                self._exit(waited, waiter)

    def wait_any(
        self,
        keys: Sequence[str],
        since_ms: int,
        timeout_ms: int,
        nodes: frozenset[int] | None = None,
        waiter: object | None = None,
    ) -> bool:
        """``wait`` for several keys (the permits of a semaphore, the keys of a multi-mutex):
        True as soon as a notice for any of them wakes this waiter; with a ``waiter`` token,
        when it has the turn of one of them (the turns are per key). Never raises for node
        trouble."""
        if pid() != self._pid:
            self._reset()
        end = time.monotonic() + timeout_ms / 1000
        with self._lock:
            wake = threading.Condition(self._lock)
            waits = [self._enter(key, wake) for key in keys]
            for waited in waits:
                if waiter is not None and waited.join(waiter, since_ms, nodes):
                    self._notify(waited)
            try:
                return self._sleep(
                    wake, lambda: any(w.woken(waiter, since_ms, nodes) for w in waits), end
                )
            finally:
                for waited in waits:
                    self._exit(waited, waiter, wake)

    def _sleep(self, wake: threading.Condition, woken: Callable[[], bool], end: float) -> bool:
        """Wait (with the lock held) until ``woken()`` or the monotonic time ``end``; return
        ``woken()``.

        One waiting thread polls the subscriber sockets itself, so that a notice wakes the
        thread that acts on it without a hop through the reader thread: it asks the reader
        thread for them (handed over between two rounds), and hands them back when done or
        when a connection is to be opened (which only the reader thread does: it may take
        ``CONNECT_TIMEOUT_S``). The other waiting threads sleep on ``wake``, notified by the
        thread that polls. The last waiting thread to stop leaves the sockets to the next one
        for a while (``HANDBACK_S``) rather than waking the reader thread: a process that locks
        again and again then polls in the thread that waits each time, with no thread switch."""
        me = threading.get_ident()
        lead = True  # False after a bug in this thread's round: sleep as the others do
        self._sleeping += 1
        try:
            while not woken():
                left = end - time.monotonic()
                if left <= 0:
                    return False
                opening = self._opening()
                if self._poller == me and opening:
                    self._poller = None
                elif lead and self._poller is None and self._pipe is not None and not opening:
                    if self._direct():
                        self._poller = me
                    else:
                        lead = False
                if self._poller == me:
                    self._lock.release()
                    try:
                        lead = self._lead(left, woken)
                    finally:
                        self._lock.acquire()
                    if not lead:
                        self._poller = None
                    continue
                if not lead or self._poller not in (None, _READER):
                    if self._poller is None:
                        self._handed.notify()  # nobody polls: the reader thread does
                    wake.wait(left)  # another waiting thread polls, and notifies
                    continue
                if not self._yield:  # the reader thread hands the sockets over after a round
                    self._yield = True
                    self._poke()
                    self._handed.notify()
                self._hopefuls.add(wake)
                try:
                    wake.wait(left)
                finally:
                    self._hopefuls.discard(wake)
            return True
        finally:
            self._sleeping -= 1
            if self._poller == me:
                self._poller = None
                self._left_at = time.monotonic()
            if self._poller is None and (self._sleeping or self._stopping):
                self._handed.notify()  # the reader thread polls for the others
                if self._stopping and self._thread is None and self._pipe is not None:
                    for fd in self._pipe:  # closed meanwhile: close() left the pipe to us
                        os.close(fd)
                    self._pipe = None

    def settle(self) -> None:
        """Read the notices that arrived while nobody polled (see ``HANDBACK_S``), before a
        ``lock()`` call's first attempt: they came before it, so they are no news to it (read
        only when it sleeps, they would look new and wake it for nothing)."""
        if pid() != self._pid or self._pipe is None:
            return
        with self._lock:
            if self._poller is not None or self._sleeping or not self._keys or not self._direct():
                return  # nothing subscribed, or read as it comes (reader or waiting thread)
            self._poller = me = threading.get_ident()
        try:
            self._poll(set(), 0.0)
        except Exception:  # never into lock(): the reader thread reads them later
            logger.exception("Release notices failed in a thread about to wait")
        finally:
            with self._lock:
                if self._poller == me:
                    self._poller = None
                    self._left_at = time.monotonic()

    def _direct(self) -> bool:
        """True when every open subscriber connection is read without waiting (a plain socket
        read with hiredis): only then may a waiting thread read them (redis-py waits for the
        rest of a reply that began to arrive)."""
        return all(s.reader is not None for s in self._subs.values() if s.conn is not None)

    def _opening(self) -> bool:
        """True when the reader thread is to open a subscriber connection now."""
        now = time.monotonic()
        due = any(
            s.conn is None and not s.refused and now >= s.retry_at for s in self._subs.values()
        )
        return due and self._thread is not None and self._thread.is_alive()

    def _lead(self, timeout_s: float, woken: Callable[[], bool]) -> bool:
        """Do one round of a waiting thread that polls (at most ``timeout_s`` seconds): what the
        reader thread does, but never opening a connection, and stopping as soon as
        ``woken()`` (the rest is read by the reader thread meanwhile). Return False after a
        bug (the thread then sleeps on its Condition, as the others)."""
        try:
            now = time.monotonic()
            changed, wanted = self._changes(now)
            for key in changed:
                self._reconcile(key, key in wanted)
            retry = [s.retry_at for s in self._subs.values() if s.conn is None and not s.refused]
            if retry:  # back to the reader thread when a connection is to be opened
                timeout_s = min(timeout_s, max(0.0, min(retry) - now))
            self._poll(wanted, timeout_s, woken)
        except Exception:  # a waiter must outlive any bug here: it still wakes at its time
            logger.exception("Release notices failed in a waiting thread")
            return False
        return True

    def _notify(self, waited: _Waited) -> None:
        """Wake the threads waiting for the key, and the one that polls if another does."""
        _notify(waited)
        poller = self._poller
        if poller is not None and poller is not _READER and poller != threading.get_ident():
            self._poke()

    def _enter(self, key: str, wake: threading.Condition | None = None) -> _Waited:
        """Count a waiter of ``key`` (subscribing it if new); a ``wake`` of its own (a waiter
        of several keys) is notified with the key's. Called with the lock held."""
        waited = self._keys.get(key)
        if waited is None:
            waited = self._keys[key] = _Waited(threading.Condition(self._lock), self._need)
            self._changed.add(key)
            self._start()
        waited.waiters += 1
        waited.idle_since = None
        if wake is not None:
            waited.also.add(wake)
        return waited

    @staticmethod
    def _exit(
        waited: _Waited, waiter: object | None, wake: threading.Condition | None = None
    ) -> None:
        """Undo ``_enter`` (the key is unsubscribed after LINGER_S without waiters)."""
        waited.also.discard(wake)
        waited.waiters -= 1
        if waiter is not None:
            waited.awake(waiter)
        if waited.waiters == 0:
            waited.idle_since = time.monotonic()

    def named(self, key: str, waiter: object, since_ms: int) -> tuple[bool, frozenset[int]]:
        """Whether a notice for ``key`` named ``waiter`` at or after ``since_ms`` (a release
        woke it off the key's queue: no other waiter was woken by that release), and the nodes
        that handed the key over to it."""
        with self._lock:
            waited = self._keys.get(key)
            if waited is None:
                return False, frozenset()
            return waited.named_since(waiter, since_ms), waited.granted_to(waiter)

    def leave(self, key: str, waiter: object, won: bool) -> None:
        """The ``lock()`` call of ``waiter`` for ``key`` ended (``won``: it took the lock, maybe
        without ever waiting): pass its turn on."""
        if pid() != self._pid or key not in self._keys:
            return  # nobody waits here (or a forked child: its first wait() starts afresh)
        with self._lock:
            waited = self._keys.get(key)
            if waited is not None and waited.leave(waiter, won):
                self._notify(waited)

    def _start(self) -> None:
        """Start the reader thread if needed, and tell it that the wanted keys changed."""
        if self._thread is None or not self._thread.is_alive():
            self._stopping = False
            if self._pipe is None:
                self._pipe = os.pipe()
                for fd in self._pipe:
                    os.set_blocking(fd, False)
            self._thread = threading.Thread(
                target=_read_notices, args=(weakref.ref(self),), name="redsync-notices", daemon=True
            )
            self._thread.start()
        self._poke()

    def _poke(self) -> None:
        if self._pipe is not None:
            with contextlib.suppress(BlockingIOError):
                os.write(self._pipe[1], b"!")

    def close(self) -> None:
        """Stop the reader thread and close the subscriber connections."""
        if pid() != self._pid:
            self._reset()
            return
        with self._lock:
            self._stopping = True
            thread = self._thread
            self._poke()
            self._handed.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(CONNECT_TIMEOUT_S * 3)
        with self._lock:
            for sub in self._subs.values():
                sub.drop()
            self._subs.clear()
            polled = self._poller is not None  # a waiting thread still polls the pipe
            if self._pipe is not None and (thread is None or not thread.is_alive()) and not polled:
                for fd in self._pipe:
                    os.close(fd)
                self._pipe = None
            self._thread = None

    # --- the reader thread's side (called with nothing locked unless said) ------------------

    def _step(self, idle_since: float) -> float | None:
        """Do one round of the reader's work; return the new idle time, or None to stop."""
        now = time.monotonic()
        with self._lock:
            if self._stopping:
                return None
            if self._poller is not None or (self._hopefuls and not self._opening()):
                self._handed.wait(LINGER_S / 4)  # a waiting thread polls, or is about to
                return now
            left = self._left_at + HANDBACK_S - now
            if left > 0 and not self._sleeping and not self._changed:
                self._handed.wait(left)  # the next waiting thread is likely to come soon
                return now
            self._poller = _READER
        try:
            return self._round(now, idle_since)
        finally:
            with self._lock:
                if self._poller is _READER:
                    self._poller = None
                if self._yield:  # hand the sockets over to a waiting thread
                    self._yield = False
                    for wake in self._hopefuls:
                        wake.notify_all()

    def _round(self, now: float, idle_since: float) -> float | None:
        changed, wanted = self._changes(now)
        if wanted:
            idle_since = now
        elif now - idle_since > IDLE_S:
            with self._lock:
                if not self._keys and not self._changed:
                    for sub in self._subs.values():
                        sub.drop()
                    self._subs.clear()
                    self._thread = None
                    return None
        for key in changed:
            self._reconcile(key, key in wanted)
        for sub in list(self._subs.values()):
            if sub.conn is None and not sub.refused and now >= sub.retry_at:
                self._open(sub, wanted)
        retry = [s.retry_at for s in self._subs.values() if s.conn is None and not s.refused]
        timeout_s = IDLE_S if not retry else max(0.0, min(retry) - time.monotonic())
        self._poll(wanted, timeout_s)
        return idle_since

    def _changes(self, now: float) -> tuple[set[str], set[str]]:
        """Return the keys to (un)subscribe and the wanted keys; drop the keys that lingered
        long enough."""
        with self._lock:
            changed, self._changed = self._changed, set()
            if now >= self._sweep_at:
                self._sweep_at = now + LINGER_S / 4
                for key, waited in list(self._keys.items()):
                    idle = waited.idle_since
                    if not waited.waiters and idle is not None and now - idle >= LINGER_S:
                        del self._keys[key]
                        changed.add(key)
            return changed, set(self._keys)

    def _sub_for(self, node: Any, key: str) -> _Sub | None:
        endpoint = _endpoint(node, key)
        if endpoint is None:
            return None
        pool, sharded = endpoint
        sub = self._subs.get(id(pool))
        if sub is None or sub.pool is not pool:
            sub = self._subs[id(pool)] = _Sub(pool, sharded, node.index, node.address)
        return sub

    def _reconcile(self, key: str, wanted: bool) -> None:
        for node in self._nodes:
            sub = self._sub_for(node, key) if wanted else None
            if sub is not None and key not in sub.channels and sub.conn is not None:
                self._send(sub, True, key)
        if not wanted:
            for sub in self._subs.values():
                if key in sub.channels and sub.conn is not None:
                    self._send(sub, False, key)

    def _send(self, sub: _Sub, subscribe: bool, key: str) -> None:
        try:
            sub.send(subscribe, key)
        except (sub.family.error, OSError):
            self._broken(sub)

    def _open(self, sub: _Sub, wanted: set[str]) -> None:
        try:
            sub.connect()
        except (sub.family.error, OSError, ValueError) as exc:
            logger.debug("Release notices from %s unavailable: %s", sub.address, exc)
            self._broken(sub)
            return
        for key in wanted:
            if not sub.sharded or _carries(self._nodes, sub.pool, key):
                self._send(sub, True, key)

    def _broken(self, sub: _Sub) -> None:
        sub.drop()
        sub.retry_at = time.monotonic() + RETRY_S

    def _poll(
        self, wanted: set[str], timeout_s: float, woken: Callable[[], bool] | None = None
    ) -> None:
        """Wait at most ``timeout_s`` for the subscriber sockets or a poke; read what came.

        The reader thread returns after one wait. A waiting thread goes on reading notices
        until ``woken()``, a poke (something changed: the keys, a turn) or a connection lost,
        with one poll object for the whole round: a quorum of hand-over notices, which come
        one node at a time, costs one poll and one read each."""
        pipe = self._pipe
        if pipe is None:
            return
        by_fd: dict[int, _Sub] = {}
        for sub in list(self._subs.values()):
            fd = sub.fileno()
            if fd >= 0:
                by_fd[fd] = sub
        poller = self._polled(pipe[0], by_fd)
        if wanted:
            timeout_s = min(timeout_s, LINGER_S / 4)  # look for lingering keys to drop
        end = time.monotonic() + timeout_s
        while True:
            ready = poller(max(0.0, end - time.monotonic()))
            if not ready:
                return
            again = woken is not None
            for fd in ready:
                if fd == pipe[0]:
                    again = False
                    with contextlib.suppress(BlockingIOError):
                        os.read(fd, 4096)
                elif fd in by_fd:
                    sub = by_fd[fd]
                    self._read(sub)
                    again = again and sub.fileno() == fd
                    if woken is not None:
                        with self._lock:
                            if woken():
                                return
            if not again:
                return

    def _polled(self, pipe: int, by_fd: dict[int, _Sub]) -> Callable[[float], list[int]]:
        """Return a function that waits for ``pipe`` and the sockets of ``by_fd``: a poll
        object kept while the sockets stay the same (select where there is no poll)."""
        fds = (pipe, *by_fd)
        if not hasattr(select, "poll"):  # pragma: no cover - Windows
            return lambda timeout_s: list(select.select(fds, [], [], timeout_s)[0])
        if self._polling is None or self._polling[0] != fds:
            poller = select.poll()
            for fd in fds:
                poller.register(fd, select.POLLIN)
            self._polling = (fds, poller)
        poll = self._polling[1].poll
        return lambda timeout_s: [fd for fd, _ in poll(int(timeout_s * 1000 + 0.999))]

    def _read(self, sub: _Sub) -> None:
        """Read what ``sub``'s server sent; take the lock once for all its notices."""
        if self._buffer is None:
            self._buffer = bytearray(READ_SIZE)
        events: list[tuple[str, int | None, object]] = []
        try:
            for reply in sub.replies(self._buffer):
                if isinstance(reply, Exception):
                    self._refused(sub, reply)
                    if sub.conn is None:
                        break
                else:
                    self._handle(sub, reply, events)
        except _failures(sub.family) as exc:
            logger.debug("Release notices from %s interrupted: %s", sub.address, exc)
            self._broken(sub)
        finally:
            if events:
                self._hear(events)

    def _handle(
        self, sub: _Sub, message: object, events: list[tuple[str, int | None, object]]
    ) -> None:
        if not isinstance(message, list) or len(message) < 3:
            if sub.pending:
                sub.pending.popleft()  # the AUTH reply
            return
        kind = message[0]
        if kind in _MESSAGE:
            events.append((_text(message[1]), sub.node, message[2]))
            return
        if sub.pending:
            sub.pending.popleft()
        if kind in _CONFIRM:
            events.append((_text(message[1]), None, None))

    def _refused(self, sub: _Sub, exc: Exception) -> None:
        subscribe, key = sub.pending.popleft() if sub.pending else (False, None)
        if key is not None:
            sub.channels.discard(key)
        if key is None and not subscribe:  # AUTH failed: this connection is of no use
            sub.refused = True
            sub.drop()
        elif _is_refusal(sub.family, exc):
            sub.refused = True  # the ACL will not change under us often: stop asking
            sub.drop()
        if sub.refused and not self._warned:
            self._warned = True
            _refusal(sub.address, exc)

    def _heard(self, channel: str, node: int | None, payload: object = None) -> None:
        self._hear([(channel, node, payload)])

    def _hear(self, events: Sequence[tuple[str, int | None, object]]) -> None:
        """Record notices (``node`` None: a subscription confirmed) and wake whom they concern."""
        woken: dict[int, _Waited] = {}
        with self._lock:
            now_ms = self._clock()
            for channel, node, payload in events:
                waited = self._keys.get(_lock_key(channel))
                if waited is not None and waited.heard(now_ms, node, payload):
                    waited.pass_turn()
                    woken[id(waited)] = waited
            for waited in woken.values():
                self._notify(waited)


def _notify(waited: _Waited) -> None:
    """Wake every thread waiting for the key (each looks whether it may go)."""
    assert waited.wake is not None
    waited.wake.notify_all()
    for wake in waited.also:
        wake.notify_all()


def _read_notices(ref: weakref.ref[SyncNotices]) -> None:
    """The reader thread: work for the notices object while it exists and has waiters."""
    idle_since: float | None = time.monotonic()
    while idle_since is not None:
        notices = ref()
        if notices is None:
            return
        try:
            idle_since = notices._step(idle_since)
        except Exception:  # the thread must outlive any bug: waiters rely on it
            logger.exception("Release notices reader failed; waiters fall back to their delay")
            time.sleep(RETRY_S)
        del notices


# --- asyncio --------------------------------------------------------------------------------


class _AsyncSub:
    """An asyncio subscriber connection to one server, with its reader task."""

    def __init__(self, pool: Any, sharded: bool, node: int, address: str) -> None:
        self.pool = pool
        self.family = family_of(pool)  # whose exception classes this connection raises
        self.node = node
        self.sharded = sharded
        self.address = address
        self.conn: Any = None
        self.ready = False
        self.channels: set[str] = set()
        self.pending: collections.deque[tuple[bool, str]] = collections.deque()
        self.refused = False
        self.task: asyncio.Task[None] | None = None

    def send(self, subscribe: bool, key: str) -> None:
        """Write (UN)SUBSCRIBE now, without waiting: a buffered write, read by the task."""
        command = (_SUBSCRIBE if subscribe else _UNSUBSCRIBE)[self.sharded]
        channels = _channels(key)  # one command each: one reply each, for ``pending``
        try:
            self.conn._writer.write(b"".join(pack(command, c) for c in channels))
        except (AttributeError, OSError, RuntimeError):
            return  # the reader task notices the broken connection and starts over
        self.pending.extend((subscribe, key) for _ in channels)
        if subscribe:
            self.channels.add(key)
        else:
            self.channels.discard(key)


class _Listener(Taken):
    """Our protocol on a subscriber connection (a plain socket, hiredis installed): every
    message is parsed in the event loop's read callback and handled there, so a notice (a
    quorum of hand-over notices) wakes its waiter with no reader task woken in between."""

    __slots__ = ("done", "handle")

    def __init__(
        self,
        transport: asyncio.Transport,
        stream: asyncio.BaseProtocol,
        reader: Any,
        buffer: bytearray,
        family: Family,
        handle: Callable[[object], bool],
    ) -> None:
        super().__init__(transport, stream, reader, buffer, family)
        self.handle = handle  # takes a message (an error reply as its exception); True: stop
        # The reader task waits here: None when it is to stop, the failure when the
        # connection is lost.
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def buffer_updated(self, nbytes: int) -> None:
        reader = self.reader
        reader.feed(self.buffer, 0, nbytes)
        try:
            message = reader.gets()
            while message is not PENDING:
                if self.handle(message):
                    self._end(None)
                    return
                message = reader.gets()
        except Exception as exc:  # noqa: BLE001 - not RESP, or a bug: the task starts over
            self._end(exc)
            self.transport.abort()

    def _lose(self, exc: BaseException) -> None:
        self._end(exc)

    def _end(self, exc: BaseException | None) -> None:
        done = self.done
        if not done.done():  # also cancelled with the task (close())
            if exc is None:
                done.set_result(None)
            else:
                done.set_exception(exc)


def _listen(
    conn: Any, buffer: bytearray, family: Family, handle: Callable[[object], bool]
) -> _Listener | None:
    """Put a ``_Listener`` in place of redis-py's stream on the open connection ``conn``; None
    when the stream stays (TLS, no hiredis, or bytes already buffered)."""
    return take_over(
        conn,
        lambda transport, stream, reader: _Listener(
            transport, stream, reader, buffer, family, handle
        ),
    )


class AsyncNotices:
    """Release notices for the waiters of one ``AsyncRedsync`` on one event loop."""

    def __init__(self, nodes: Sequence[Any], clock: Clock) -> None:
        self._nodes = list(nodes)
        self._need = quorum(len(self._nodes))
        self._clock = clock
        self.available = any(getattr(node, "client", None) is not None for node in nodes)
        self._keys: dict[str, _Waited] = {}
        self._subs: dict[int, _AsyncSub] = {}
        self._warned = False
        self._closed = False
        self._buffer: bytearray | None = None  # the subscriber connections' receive buffer
        # The keys' channels as the messages name them (bytes): no decoding, and no look at
        # this process's inbox, per notice.
        self._by_channel: dict[object, _Waited] = {}
        # One timer unsubscribes the keys that have had no waiter for LINGER_S (a timer per
        # key that lost its last waiter would be set and cancelled on every lock() call).
        self._sweep: asyncio.TimerHandle | None = None

    async def wait(
        self,
        key: str,
        since_ms: int,
        timeout_ms: int,
        nodes: frozenset[int] | None = None,
        waiter: object | None = None,
    ) -> bool:
        """Return False after ``timeout_ms``, or True as soon as a notice for ``key`` from one
        of ``nodes`` (None: any) was heard at or after ``since_ms`` (this object's clock), and,
        with a ``waiter`` token, it is this waiter's turn (see the module). Never raises for
        node trouble."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_ms / 1000
        waited = self._enter(key)
        if waiter is not None and waited.join(waiter, since_ms, nodes):
            _wake(waited)
        try:
            return await _sleep(loop, (waited,), lambda: waited.woken(waiter, since_ms, nodes), end)
        finally:
            self._exit(waited, waiter, loop)

    async def wait_any(
        self,
        keys: Sequence[str],
        since_ms: int,
        timeout_ms: int,
        nodes: frozenset[int] | None = None,
        waiter: object | None = None,
    ) -> bool:
        """``wait`` for several keys, as ``SyncNotices.wait_any``. Never raises for node
        trouble."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_ms / 1000
        waits = [self._enter(key) for key in keys]
        for waited in waits:
            if waiter is not None and waited.join(waiter, since_ms, nodes):
                _wake(waited)
        try:
            return await _sleep(
                loop, waits, lambda: any(w.woken(waiter, since_ms, nodes) for w in waits), end
            )
        finally:
            for waited in waits:
                self._exit(waited, waiter, loop)

    def _enter(self, key: str) -> _Waited:
        """Count a waiter of ``key`` (subscribing it if new)."""
        waited = self._keys.get(key)
        if waited is None:
            waited = self._keys[key] = _Waited(None, self._need)
            for channel in _channels(key):
                self._by_channel[channel.encode("utf-8", "surrogateescape")] = waited
            self._closed = False
            self._want(key)
        waited.waiters += 1
        waited.idle_since = None
        return waited

    def _exit(
        self, waited: _Waited, waiter: object | None, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Undo ``_enter`` (the key is unsubscribed after LINGER_S without waiters)."""
        waited.waiters -= 1
        if waiter is not None:
            waited.awake(waiter)
        if waited.waiters == 0:
            waited.idle_since = loop.time()
            if self._sweep is None:
                self._sweep = loop.call_later(LINGER_S, self._swept, loop)

    def _swept(self, loop: asyncio.AbstractEventLoop) -> None:
        """Unsubscribe the keys without waiters for LINGER_S; look again when the next is due."""
        self._sweep = None
        now = loop.time()
        due = [
            (waited.idle_since + LINGER_S, key)
            for key, waited in self._keys.items()
            if not waited.waiters and waited.idle_since is not None
        ]
        for at, key in due:
            if at <= now:
                self._unwant(key)
        later = [at for at, _ in due if at > now]
        if later:
            self._sweep = loop.call_at(min(later), self._swept, loop)

    def named(self, key: str, waiter: object, since_ms: int) -> tuple[bool, frozenset[int]]:
        """As ``SyncNotices.named``."""
        waited = self._keys.get(key)
        if waited is None:
            return False, frozenset()
        return waited.named_since(waiter, since_ms), waited.granted_to(waiter)

    def leave(self, key: str, waiter: object, won: bool) -> None:
        """The ``lock()`` call of ``waiter`` for ``key`` ended (``won``: it took the lock, maybe
        without ever waiting): pass its turn on."""
        waited = self._keys.get(key)
        if waited is not None and waited.leave(waiter, won):
            _wake(waited)

    def _unwant(self, key: str) -> None:
        """Unsubscribe ``key`` once it has had no waiter for ``LINGER_S``."""
        waited = self._keys.get(key)
        if waited is None or waited.waiters:
            return
        del self._keys[key]
        for channel in _channels(key):
            self._by_channel.pop(channel.encode("utf-8", "surrogateescape"), None)
        for sub in self._subs.values():
            if key in sub.channels and sub.ready:
                sub.send(False, key)

    def _want(self, key: str) -> None:
        for node in self._nodes:
            endpoint = _endpoint(node, key)
            if endpoint is None:
                continue
            pool, sharded = endpoint
            sub = self._subs.get(id(pool))
            if sub is None or sub.pool is not pool:
                sub = self._subs[id(pool)] = _AsyncSub(pool, sharded, node.index, node.address)
            if sub.refused:
                continue
            if sub.ready:
                if key not in sub.channels:
                    sub.send(True, key)
            elif sub.task is None or sub.task.done():
                sub.task = asyncio.ensure_future(self._run(sub))

    async def _run(self, sub: _AsyncSub) -> None:
        """The reader task of one subscriber connection: connect, subscribe, read; start over
        after a failure while keys have waiters."""
        while not self._closed and not sub.refused and self._keys:
            try:
                await self._serve(sub)
            except _failures(sub.family) as exc:
                logger.debug("Release notices from %s interrupted: %s", sub.address, exc)
            finally:
                sub.ready = False
                sub.channels.clear()
                sub.pending.clear()
                conn, sub.conn = sub.conn, None
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.disconnect(nowait=True))
            if not self._closed and not sub.refused and self._keys:
                await asyncio.sleep(RETRY_S)

    async def _serve(self, sub: _AsyncSub) -> None:
        kwargs = {
            **sub.pool.connection_kwargs,
            "protocol": 2,
            "socket_timeout": None,  # a subscriber waits for messages as long as it takes
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
        }
        conn = sub.conn = sub.pool.connection_class(**kwargs)
        await conn.connect()
        if self._buffer is None:
            self._buffer = bytearray(READ_SIZE)
        listener = _listen(conn, self._buffer, sub.family, lambda message: self._got(sub, message))
        sub.ready = True
        for key in list(self._keys):
            if not sub.sharded or _carries(self._nodes, sub.pool, key):
                sub.send(True, key)
        if listener is not None:
            await listener.done  # messages are handled as they arrive (see ``_Listener``)
            return
        # With hiredis, messages are parsed here from the connection's stream: one read for
        # the burst of notices that one release sends, without redis-py's read layers.
        reader = new_reader(conn._parser.parse_error)
        while True:
            try:
                if reader is None:
                    message = await conn.read_response()
                else:
                    message = await read_reply(conn, reader, sub.family)
            except sub.family.response_error as exc:
                if self._refused(sub, exc):
                    return
                continue
            self._handle(sub, message)

    def _got(self, sub: _AsyncSub, message: object) -> bool:
        """Handle a message that a ``_Listener`` read (an error reply comes as its exception);
        return True when the connection is of no more use (refused)."""
        if isinstance(message, Exception):
            return isinstance(message, sub.family.response_error) and self._refused(sub, message)
        self._handle(sub, message)
        return False

    def _handle(self, sub: _AsyncSub, message: object) -> None:
        if not isinstance(message, list) or len(message) < 3:
            return
        kind = message[0]
        if kind in _MESSAGE:
            waited = self._by_channel.get(message[1])
            if waited is None:  # not bytes (a client that decodes), or not ours
                waited = self._keys.get(_lock_key(_text(message[1])))
            self._tell(waited, sub.node, message[2])
            return
        if sub.pending:
            sub.pending.popleft()
        if kind in _CONFIRM:
            self._heard(_text(message[1]), None)

    def _refused(self, sub: _AsyncSub, exc: Exception) -> bool:
        if sub.pending:
            sub.pending.popleft()
        if not _is_refusal(sub.family, exc):
            return False
        sub.refused = True
        if not self._warned:
            self._warned = True
            _refusal(sub.address, exc)
        return True

    def _heard(self, channel: str, node: int | None, payload: object = None) -> None:
        self._tell(self._keys.get(_lock_key(channel)), node, payload)

    def _tell(self, waited: _Waited | None, node: int | None, payload: object = None) -> None:
        """Record a notice (``node`` None: a subscription confirmed) and wake whom it concerns."""
        if waited is not None and waited.heard(self._clock(), node, payload):
            waited.pass_turn()
            _wake(waited)

    async def close(self) -> None:
        """Stop the reader tasks and close the subscriber connections."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._keys.clear()
        self._by_channel.clear()
        tasks = [sub.task for sub in self._subs.values() if sub.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._subs.clear()


def _wake(waited: _Waited) -> None:
    """Wake every task waiting for the key (each looks whether it may go)."""
    for wake in waited.also:
        if not wake.done():
            wake.set_result(None)


async def _sleep(
    loop: asyncio.AbstractEventLoop,
    waits: Sequence[_Waited],
    woken: Callable[[], bool],
    end: float,
) -> bool:
    """Wait until ``woken()`` (looked at whenever a notice concerns one of ``waits``) or the
    loop's time ``end``; return ``woken()``.

    A future and a timer, not an Event and ``asyncio.timeout`` (four coroutines more): the
    read callback that hears a quorum of hand-over notices sets the future itself."""
    while not woken():
        if loop.time() >= end:
            return False
        wake: asyncio.Future[None] = loop.create_future()
        for waited in waits:
            waited.also.add(wake)
        timer = loop.call_at(end, _expire, wake)
        try:
            await wake
        finally:
            timer.cancel()
            for waited in waits:
                waited.also.discard(wake)
    return True


def _expire(wake: asyncio.Future[None]) -> None:
    if not wake.done():
        wake.set_result(None)
