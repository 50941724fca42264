"""Sync fan-out: write the command to every node, then read the replies as they arrive.

No thread is involved: one request per node goes out on its own connection, then ``poll``
waits on all sockets at once until every node answered, the deadline passed, or (fail fast)
the outcome is decided. A node that hangs costs at most the deadline; its connection is
dropped so that a late reply can never be read as the answer to a later command.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Protocol, overload

import redis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from .._algorithm.effects import Batch, FanOut, NodeReply
from .._exceptions import NodeError
from .commands import Reply, Single, UnexpectedReply, command, decided, decode, pack
from .memory import MemoryStore
from .scripts import Script

__all__ = ["ClusterNode", "MemoryNode", "RedisNode", "SyncNode", "fan_out"]

Done = NodeReply | tuple[NodeReply, ...]
"""A finished node call: one reply, or one per item of a batch."""


class InFlight(Protocol):
    """A command sent to one node whose reply has not been read yet."""

    def fileno(self) -> int: ...

    def buffered(self) -> bool: ...

    def finish(self) -> InFlight | Done: ...

    def abandon(self) -> None: ...


class SyncNode(Protocol):
    """One independent Redis master as seen by the sync fan-out."""

    index: int
    address: str

    def begin(self, effect: FanOut | Batch, budget_s: float | None) -> InFlight | Done:
        """Send ``effect``'s command; return the call in flight, or the reply when immediate."""

    def ping(self, timeout_s: float) -> str:
        """Return the server version; raise NodeError when the node does not answer in time."""

    def close(self) -> None:
        """Release what the node owns (connections of clients built from URLs)."""


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
    thread keeps its own (built from the pool's connection class and arguments, connected on
    first use within the fan-out's budget). It is closed when the thread ends.
    """

    __slots__ = ("conn", "pid")

    def __init__(self, pool: Any) -> None:
        self.pid = os.getpid()
        self.conn = pool.connection_class(**pool.connection_kwargs)

    def __del__(self) -> None:
        if self.pid == os.getpid():  # never close a socket a forked child inherited
            with contextlib.suppress(Exception):
                self.conn.disconnect()


class _Leases(threading.local):
    """The calling thread's lease on each pool; a lease goes when its pool goes."""

    def __init__(self) -> None:
        self.by_pool: weakref.WeakKeyDictionary[Any, _Lease] = weakref.WeakKeyDictionary()

    def connection(self, pool: Any) -> Any:
        lease = self.by_pool.get(pool)
        if lease is None or lease.pid != os.getpid():
            lease = self.by_pool[pool] = _Lease(pool)
        return lease.conn

    def drop(self, pool: Any) -> None:
        """Close this thread's connection to ``pool`` (``Redsync.close()``)."""
        lease = self.by_pool.pop(pool, None)
        if lease is not None and lease.pid == os.getpid():
            lease.conn.disconnect()


_leases = _Leases()


class _Call:
    """One command in flight on the calling thread's connection to one node."""

    __slots__ = ("args", "conn", "effect", "node", "script", "sent_source")

    def __init__(
        self,
        node: SyncNode,
        conn: Any,
        effect: FanOut | Batch,
        script: Script | None,
        args: tuple[Any, ...],
    ) -> None:
        self.node = node
        self.conn = conn
        self.effect = effect
        self.script = script
        self.args = args
        self.sent_source = False

    def fileno(self) -> int:
        sock = self.conn._sock
        return -1 if sock is None else int(sock.fileno())

    def buffered(self) -> bool:
        """Return True when TLS already decrypted data that ``poll`` cannot see."""
        pending = getattr(self.conn._sock, "pending", None)
        return bool(pending and pending())

    def finish(self) -> _Call | Done:
        """Read the reply; re-send with EVAL (and stay in flight) when the server says NOSCRIPT."""
        try:
            raw = self.conn.read_response()
        except NoScriptError:
            if self.script is None or self.sent_source:
                raise
            self.sent_source = True
            self.conn.send_packed_command([pack("EVAL", self.script.source, *self.args)])
            return self
        return decode(self.effect, raw)

    def abandon(self) -> None:
        """Drop the connection: a reply may still arrive and must never be read later."""
        self.conn.disconnect()


def _connect_within(conn: Any, budget_s: float | None) -> None:
    """Connect (and authenticate) in at most ``budget_s`` seconds, keeping the client's timeouts."""
    if budget_s is None:
        conn.connect()
        return
    timeout, connect_timeout = conn.socket_timeout, conn.socket_connect_timeout
    conn.socket_timeout = budget_s if timeout is None else min(timeout, budget_s)
    conn.socket_connect_timeout = (
        budget_s if connect_timeout is None else min(connect_timeout, budget_s)
    )
    try:
        conn.connect()
    finally:
        conn.socket_timeout, conn.socket_connect_timeout = timeout, connect_timeout
    if conn._sock is not None:
        conn._sock.settimeout(timeout)


def _send(node: SyncNode, pool: Any, effect: FanOut | Batch, budget_s: float | None) -> _Call:
    script, args = command(effect)
    conn = _leases.connection(pool)
    try:
        if conn._sock is None:
            _connect_within(conn, budget_s)
        if script is None:
            conn.send_packed_command([pack(*args)], check_health=False)
        else:
            conn.send_packed_command([pack("EVALSHA", script.sha, *args)], check_health=False)
    except BaseException:
        conn.disconnect()
        raise
    return _Call(node, conn, effect, script, args)


class RedisNode:
    """A node behind a ``redis.Redis`` client (standalone or a Sentinel ``master_for``)."""

    def __init__(self, index: int, client: redis.Redis, address: str, *, owned: bool) -> None:
        self.index = index
        self.address = address
        self.client = client
        self._owned = owned

    def begin(self, effect: FanOut | Batch, budget_s: float | None) -> InFlight | Done:
        return _send(self, self.client.connection_pool, effect, budget_s)

    def ping(self, timeout_s: float) -> str:
        conn = _leases.connection(self.client.connection_pool)
        try:
            if conn._sock is None:
                _connect_within(conn, timeout_s)
            conn.send_command("INFO", "server")
            if not conn.can_read(timeout=timeout_s):
                conn.disconnect()
                raise node_error(self, f"no reply within {timeout_s:g} s")
            info = conn.read_response()
        except (RedisError, OSError) as exc:
            conn.disconnect()
            raise node_error(self, exc) from exc
        return _server_version(info)

    def close(self) -> None:
        _leases.drop(self.client.connection_pool)
        if self._owned:
            self.client.close()


class ClusterNode:
    """A Redis Cluster as one node: each key goes to the master that owns its slot."""

    def __init__(self, index: int, client: Any, address: str) -> None:
        self.index = index
        self.address = address
        self.client = client

    def begin(self, effect: FanOut | Batch, budget_s: float | None) -> InFlight | Done:
        if isinstance(effect, Batch):
            # Keys of a batch live in different slots: one command each, through the client.
            return tuple(self._through_client(item) for item in effect.effects)
        target = self.client.get_node_from_key(effect.key)
        if target is None or target.redis_connection is None:
            return self._through_client(effect)
        call = _send(self, target.redis_connection.connection_pool, effect, budget_s)
        return _ClusterCall(self, call)

    def _through_client(self, effect: FanOut) -> NodeReply:
        """Run the command through the cluster client, which follows MOVED/ASK redirections."""
        script, args = command(effect)
        if script is None:
            raw = self.client.execute_command(*args)
        else:
            try:
                raw = self.client.execute_command("EVALSHA", script.sha, *args)
            except NoScriptError:
                raw = self.client.execute_command("EVAL", script.source, *args)
        reply = decode(effect, raw)
        assert isinstance(reply, NodeReply)  # a single FanOut decodes to one reply
        return reply

    def ping(self, timeout_s: float) -> str:
        try:
            return _server_version(self.client.info("server", target_nodes=self.client.RANDOM))
        except (RedisError, OSError) as exc:
            raise node_error(self, exc) from exc

    def close(self) -> None:
        """Cluster clients are always the caller's: nothing to release."""


class _ClusterCall:
    """A call to one cluster master that falls back to the cluster client after a redirection."""

    __slots__ = ("call", "node")

    def __init__(self, node: ClusterNode, call: _Call) -> None:
        self.node = node
        self.call = call

    def fileno(self) -> int:
        return self.call.fileno()

    def buffered(self) -> bool:
        return self.call.buffered()

    def finish(self) -> InFlight | Done:
        try:
            result = self.call.finish()
        except ResponseError as exc:
            if not str(exc).startswith(("MOVED", "ASK")):
                raise
            self.node.client.nodes_manager.initialize()
            effect = self.call.effect
            assert isinstance(effect, FanOut)  # batches never take this path
            return self.node._through_client(effect)
        return self if result is self.call else result

    def abandon(self) -> None:
        self.call.abandon()


class MemoryNode:
    """An in-process ``memory://NAME`` node: answers at once."""

    def __init__(self, index: int, store: MemoryStore) -> None:
        self.index = index
        self.address = f"memory://{store.name}"
        self.store = store

    def begin(self, effect: FanOut | Batch, budget_s: float | None) -> InFlight | Done:
        if isinstance(effect, Batch):
            return tuple(self.store.apply(item) for item in effect.effects)
        return self.store.apply(effect)

    def ping(self, timeout_s: float) -> str:
        return "memory"

    def close(self) -> None:
        """Memory stores live as long as the process."""


def _server_version(info: Any) -> str:
    if isinstance(info, dict):
        return str(info.get("redis_version", "?"))
    text = info.decode() if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        if line.startswith("redis_version:"):
            return line.partition(":")[2].strip()
    return "?"


@overload
def fan_out(
    nodes: Sequence[SyncNode],
    effect: FanOut,
    order: Sequence[int] | None = ...,
    now: Callable[[], float] = ...,
) -> tuple[Single, ...]: ...


@overload
def fan_out(
    nodes: Sequence[SyncNode],
    effect: Batch,
    order: Sequence[int] | None = ...,
    now: Callable[[], float] = ...,
) -> tuple[Reply, ...]: ...


def fan_out(
    nodes: Sequence[SyncNode],
    effect: FanOut | Batch,
    order: Sequence[int] | None = None,
    now: Callable[[], float] = time.monotonic,
) -> tuple[Reply, ...]:
    """Send ``effect`` to every node at once and collect one reply per node (in node order).

    Returns when every node answered, ``effect.deadline_ms`` passed (the rest become
    NodeErrors), or, with ``effect.stop_at``, when that many nodes agreed either way (the rest
    stay None). Never raises for node failures.
    """
    replies: list[Reply] = [None] * len(nodes)
    budget_s = None if effect.deadline_ms is None else effect.deadline_ms / 1000
    deadline = None if budget_s is None else now() + budget_s
    inflight: dict[int, Any] = {}
    for i in order if order is not None else range(len(nodes)):
        node = nodes[i]
        try:
            started = node.begin(effect, budget_s)
        except (RedisError, OSError) as exc:
            replies[i] = node_error(node, exc)
            continue
        if isinstance(started, (NodeReply, tuple)):
            replies[i] = started
        else:
            inflight[i] = started
    stop_at = effect.stop_at
    while inflight:
        if stop_at is not None and decided(replies, stop_at):
            for call in inflight.values():
                call.abandon()
            break
        ready = _wait(inflight, None if deadline is None else deadline - now())
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
            except (RedisError, OSError, UnexpectedReply) as exc:
                call.abandon()
                replies[i] = node_error(nodes[i], exc)
                del inflight[i]
                continue
            if isinstance(result, (NodeReply, tuple)):
                replies[i] = result
                del inflight[i]
            else:
                inflight[i] = result
    return tuple(replies)


def _wait(inflight: dict[int, Any], timeout_s: float | None) -> list[int]:
    """Return the indexes of calls with a reply to read, waiting at most ``timeout_s``."""
    ready = [i for i, call in inflight.items() if call.buffered()]
    if ready:
        return ready
    by_fd = {call.fileno(): i for i, call in inflight.items()}
    if hasattr(select, "poll"):
        poller = select.poll()
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        events = poller.poll(None if timeout_s is None else max(0, int(timeout_s * 1000 + 0.999)))
        return [by_fd[fd] for fd, _ in events]
    timeout = None if timeout_s is None else max(0.0, timeout_s)
    readable, _, _ = select.select(list(by_fd), [], [], timeout)
    return [by_fd[fd] for fd in readable]
