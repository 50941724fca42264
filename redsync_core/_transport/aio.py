"""Asyncio fan-out: every node's command is written at once, then the replies are read within one
deadline for all of them.

A node with an idle open connection gets its command written directly and its reply read in
turn, with no task; only a node that must connect first (or a cluster client, or a fail-fast
fan-out) gets a task of its own. A read still pending at the deadline drops its connection, so
a late reply is never read as the answer to a later command.
"""

from __future__ import annotations

import asyncio
import sys
import weakref
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, overload

from .._algorithm.effects import Batch, FanOut, NodeReply
from .._exceptions import NodeError
from .addresses import redact
from .clients import Family, family_of
from .commands import Reply, Single, command, decided, decode, pack
from .memory import MemoryStore
from .scripts import Script
from .sync import node_error

__all__ = ["AsyncMemoryNode", "AsyncNode", "AsyncRedisNode", "fan_out"]


class AsyncNode(Protocol):
    """One independent Redis master as seen by the asyncio fan-out."""

    index: int
    address: str

    async def start(self, effect: FanOut | Batch) -> _Exchange | None:
        """Write ``effect``'s command without waiting if the node can; None: use ``run``."""

    async def run(self, effect: FanOut | Batch) -> NodeReply | tuple[NodeReply, ...]:
        """Carry out ``effect`` on this node; raise NodeError when it fails."""

    async def ping(self) -> str:
        """Return the server version; raise NodeError when the node fails."""

    async def close(self) -> None:
        """Release what the node owns (connections of clients built from URLs)."""


class _Connections:
    """Idle connections of one pool, kept per event loop between calls.

    Checking a connection out of a redis-py pool (and ``execute_command``'s retry and
    bookkeeping) costs more than a loopback round trip; a command in flight owns its connection
    until the reply is read, and a cancelled one is dropped, never reused.
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self.family = family_of(pool)
        self._idle: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Any]] = (
            weakref.WeakKeyDictionary()
        )

    def _free(self) -> list[Any]:
        loop = asyncio.get_running_loop()
        free = self._idle.get(loop)
        if free is None:
            free = self._idle[loop] = []
        return free

    def take(self) -> Any:
        free = self._free()
        if free:
            return free.pop()
        # No socket timeout: the fan-out's deadline bounds every wait, and redis-py would wrap
        # each send in a timer task.
        kwargs = {**self._pool.connection_kwargs, "socket_timeout": None}
        return self._pool.connection_class(**kwargs)

    def take_connected(self) -> Any | None:
        """Return an idle connection that is already open, or None."""
        free = self._free()
        return free.pop() if free and free[-1].is_connected else None

    def give(self, conn: Any) -> None:
        self._free().append(conn)

    async def close(self) -> None:
        free = self._idle.pop(asyncio.get_running_loop(), [])
        for conn in free:
            await conn.disconnect()


async def _exchange(conn: Any, family: Family, script: Script | None, args: tuple[Any, ...]) -> Any:
    """Send one command on ``conn`` and read its reply (EVALSHA, then EVAL on NOSCRIPT)."""
    if script is None:
        await conn.send_packed_command([pack(*args)], check_health=False)
        return await conn.read_response()
    await conn.send_packed_command([pack("EVALSHA", script.sha, *args)], check_health=False)
    try:
        return await conn.read_response()
    except family.no_script_error:
        await conn.send_packed_command([pack("EVAL", script.source, *args)], check_health=False)
        return await conn.read_response()


class _Exchange:
    """A command written on an open connection whose reply is read later (no task needed)."""

    __slots__ = ("args", "conn", "connections", "effect", "script")

    def __init__(
        self,
        conn: Any,
        connections: _Connections,
        effect: FanOut | Batch,
        script: Script | None,
        args: tuple[Any, ...],
    ) -> None:
        self.conn = conn
        self.connections = connections
        self.effect = effect
        self.script = script
        self.args = args

    async def finish(self) -> NodeReply | tuple[NodeReply, ...]:
        """Read the reply (re-sending with EVAL after NOSCRIPT) and give the connection back."""
        conn = self.conn
        try:
            try:
                raw = await conn.read_response()
            except self.connections.family.no_script_error:
                assert self.script is not None  # only scripts answer NOSCRIPT
                packed = pack("EVAL", self.script.source, *self.args)
                await conn.send_packed_command([packed], check_health=False)
                raw = await conn.read_response()
        except BaseException:
            # Also on cancellation (the deadline): a reply may still be on its way.
            await asyncio.shield(conn.disconnect(nowait=True))
            raise
        self.connections.give(conn)
        return decode(self.effect, raw)

    async def arrived(self) -> bool:
        """Return True when the reply is already buffered (reading it will not wait)."""
        try:
            return bool(await self.conn.can_read_destructive())
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
        script, args = command(effect)
        try:
            if self._connections is None:
                raw = await self._through_client(script, args)
            else:
                conn = self._connections.take()
                try:
                    raw = await _exchange(conn, self.family, script, args)
                except BaseException:
                    # Also on cancellation: a reply may still be on its way.
                    await asyncio.shield(conn.disconnect(nowait=True))
                    raise
                self._connections.give(conn)
            return decode(effect, raw)
        except Exception as exc:
            raise node_error(self, exc) from exc

    async def start(self, effect: FanOut | Batch) -> _Exchange | None:
        """Write ``effect``'s command now if an open connection is idle; None otherwise.

        Raises:
            NodeError: the write failed.
        """
        if self._connections is None:
            return None
        conn = self._connections.take_connected()
        if conn is None:
            return None
        script, args = command(effect)
        packed = pack(*args) if script is None else pack("EVALSHA", script.sha, *args)
        try:
            await conn.send_packed_command([packed], check_health=False)
        except Exception as exc:
            await conn.disconnect(nowait=True)
            raise node_error(self, exc) from exc
        return _Exchange(conn, self._connections, effect, script, args)

    async def _through_client(self, script: Script | None, args: tuple[Any, ...]) -> Any:
        if script is None:
            return await self.client.execute_command(*args)
        try:
            return await self.client.execute_command("EVALSHA", script.sha, *args)
        except self.family.no_script_error:
            return await self.client.execute_command("EVAL", script.source, *args)

    async def ping(self) -> str:
        try:
            info = await self.client.info("server")
        except Exception as exc:
            raise node_error(self, exc) from exc
        if isinstance(info, dict) and "redis_version" not in info:
            # A cluster client answers with one dict per node.
            info = next(iter(info.values()), {})
        return str(info.get("redis_version", "?")) if isinstance(info, dict) else "?"

    async def close(self) -> None:
        if self._connections is not None:
            await self._connections.close()
        if self._owned:
            await self.client.aclose()


class AsyncMemoryNode:
    """An in-process ``memory://NAME`` node: answers at once."""

    def __init__(self, index: int, store: MemoryStore) -> None:
        self.index = index
        self.address = redact(f"memory://{store.name}")
        self.store = store

    async def start(self, effect: FanOut | Batch) -> _Exchange | None:
        return None  # run() answers at once

    async def run(self, effect: FanOut | Batch) -> NodeReply | tuple[NodeReply, ...]:
        if isinstance(effect, Batch):
            return tuple(self.store.apply(item) for item in effect.effects)
        return self.store.apply(effect)

    async def ping(self) -> str:
        return "memory"

    async def close(self) -> None:
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
    # Nodes with an idle open connection get the command written at once and their replies
    # read in turn (no task for them); the others (connecting, cluster, memory://, fail fast)
    # get a task each.
    direct: dict[int, _Exchange] = {}
    tasks: dict[asyncio.Task[NodeReply | tuple[NodeReply, ...]], int] = {}
    for i in order if order is not None else range(len(nodes)):
        try:
            exchange = None if stop_at is not None else await nodes[i].start(effect)
        except NodeError as failed:
            replies[i] = failed
            continue
        if exchange is None:
            tasks[asyncio.ensure_future(nodes[i].run(effect))] = i
        else:
            direct[i] = exchange
    if direct:
        left = None if deadline is None else max(0.0, deadline - loop.time())
        await _read_in_turn(nodes, direct, replies, left, effect.deadline_ms)
    pending: set[asyncio.Task[NodeReply | tuple[NodeReply, ...]]] = set(tasks)
    try:
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


def _late(node: AsyncNode, deadline_ms: int | None) -> NodeError:
    return node_error(node, f"no reply within the {deadline_ms} ms deadline")


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
