"""Listing the keys under a pattern on every node: SCAN pages, all nodes at once, one time budget.

Each round sends every node that is not done its own next page (one Lua script call: SCAN, then
TYPE, GET and PTTL of each key found) through the ordinary fan-out, so the nodes are read in
parallel, a node that hangs costs at most what is left of the budget, and no thread is started.
A page holds about ``count`` keys (SCAN's COUNT), which bounds the work each call asks of Redis.
When the budget runs out, the nodes not yet done are reported as cut short.

A Redis Cluster node is listed master by master through its client (its cursor says which master
and where in it); those calls wait on the client's own socket timeouts, not on the budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from .._algorithm.effects import Batch, FanOut, NodeKeys, NodeReply, Op, ScanPage, Status
from .._exceptions import NodeError
from . import aio, sync
from .aio import AsyncNode
from .clients import family_of
from .commands import MAX_LISTED_VALUE, decode
from .scripts import SCAN_PAGE_CLUSTER
from .sync import SyncNode, node_error

__all__ = ["list_keys", "list_keys_async"]

#: Said of a node whose listing the time budget cut short.
CUT_SHORT = "listing cut short: the time budget ran out"
#: A cluster's cursor is ``master position << CLUSTER_SHIFT | that master's SCAN cursor``.
CLUSTER_SHIFT = 64
#: A round that ends this close to the budget's end ran out of time (event loop timers may fire
#: up to a clock tick early, so "now >= deadline" alone would miss some).
EARLY_WAKE_S = 0.01


class _Listing:
    """The paging state shared by the sync and asyncio drivers: which node reads which page."""

    def __init__(self, nodes: Sequence[SyncNode | AsyncNode], match: str, count: int) -> None:
        self.match = match
        self.count = count
        self.nodes = [NodeKeys(node.index, node.address) for node in nodes]

    def round(self) -> list[tuple[int, FanOut]]:
        """Return (node position, its next page) for every node not done yet."""
        return [
            (i, FanOut(Op.SCAN, self.match, "", cursor=state.cursor, page_size=self.count))
            for i, state in enumerate(self.nodes)
            if state.cursor is not None
        ]

    def record(self, i: int, reply: NodeReply | NodeError | None, *, late: bool) -> None:
        state = self.nodes[i]
        if isinstance(reply, NodeReply) and reply.page is not None:
            state.keys.extend(reply.page.keys)
            state.cursor = reply.page.cursor or None
        else:
            state.cursor = None
            if late:
                state.error = CUT_SHORT
            elif isinstance(reply, NodeError):
                state.error = reply.reason
            else:
                state.error = "no reply"

    def cut_short(self) -> None:
        for state in self.nodes:
            if state.cursor is not None:
                state.cursor = None
                state.error = CUT_SHORT


class _SyncPage:
    """A sync node that is sent its own SCAN page whatever the fan-out's effect."""

    def __init__(self, node: SyncNode, page: FanOut) -> None:
        self.node = node
        self.page = page
        self.index = node.index
        self.address = node.address

    def begin(
        self, effect: FanOut | Batch, budget_s: float | None, connect: bool = True
    ) -> sync.InFlight | sync.Done | None:
        if isinstance(self.node, sync.ClusterNode):
            return _cluster_page(self.node.client, self.page)
        return self.node.begin(self.page, budget_s, connect)

    def ping(self, timeout_s: float) -> str:
        return self.node.ping(timeout_s)

    def close(self) -> None:
        """The node belongs to its Redsync."""


def _nth(primaries: Sequence[Any], index: int) -> Any:
    """The cluster's ``index``-th master in a stable order (by host:port)."""
    return sorted(primaries, key=lambda node: node.name)[index]


def _advance(reply: NodeReply | tuple[NodeReply, ...], index: int, masters: int) -> NodeReply:
    """Turn one master's page into the cluster's: on to the next master when it is done."""
    assert isinstance(reply, NodeReply)  # a single FanOut decodes to one reply
    assert reply.page is not None  # and a SCAN to a page
    cursor = reply.page.cursor
    if cursor:
        cursor |= index << CLUSTER_SHIFT
    elif index + 1 < masters:
        cursor = (index + 1) << CLUSTER_SHIFT
    return NodeReply(Status.OK, page=ScanPage(cursor, reply.page.keys))


def _cluster_page(client: Any, page: FanOut) -> NodeReply:
    """Read ``page`` from the master its cursor names, through a sync cluster client."""
    primaries = client.get_primaries()
    index, cursor = divmod(page.cursor, 1 << CLUSTER_SHIFT)
    args = (0, cursor, page.key, page.page_size, MAX_LISTED_VALUE)
    master = _nth(primaries, index)
    try:
        raw = client.execute_command("EVALSHA", SCAN_PAGE_CLUSTER.sha, *args, target_nodes=master)
    except family_of(client).no_script_error:
        raw = client.execute_command("EVAL", SCAN_PAGE_CLUSTER.source, *args, target_nodes=master)
    return _advance(decode(page, raw), index, len(primaries))


def list_keys(
    nodes: Sequence[SyncNode],
    match: str,
    count: int,
    budget_ms: int,
    now: Callable[[], float] = time.monotonic,
) -> list[NodeKeys]:
    """List the keys matching ``match`` on every node within ``budget_ms``, ``count`` a page."""
    listing = _Listing(nodes, match, count)
    deadline = now() + budget_ms / 1000
    while pages := listing.round():
        left_ms = int((deadline - now()) * 1000)
        if left_ms <= 0:
            break
        paged = [_SyncPage(nodes[i], page) for i, page in pages]
        replies = sync.fan_out(paged, FanOut(Op.SCAN, match, "", deadline_ms=left_ms))
        late = now() >= deadline - EARLY_WAKE_S
        for (i, _), reply in zip(pages, replies, strict=True):
            listing.record(i, reply, late=late)
    listing.cut_short()
    return listing.nodes


class _AsyncPage:
    """An asyncio node that is sent its own SCAN page whatever the fan-out's effect."""

    def __init__(self, node: AsyncNode, page: FanOut) -> None:
        self.node = node
        self.page = page
        self.index = node.index
        self.address = node.address

    async def start(self, effect: FanOut | Batch) -> aio._Sent | aio._Exchange | None:
        return await self.node.start(self.page)

    async def run(self, effect: FanOut | Batch) -> NodeReply | tuple[NodeReply, ...]:
        client = getattr(self.node, "client", None)
        if client is None or hasattr(client, "connection_pool"):
            return await self.node.run(self.page)
        # A cluster client has no pool of its own: list it master by master.
        try:
            await client.initialize()  # knows no master before its first command otherwise
            primaries = client.get_primaries()
            index, cursor = divmod(self.page.cursor, 1 << CLUSTER_SHIFT)
            args = (0, cursor, self.page.key, self.page.page_size, MAX_LISTED_VALUE)
            master = _nth(primaries, index)
            try:
                raw = await client.execute_command(
                    "EVALSHA", SCAN_PAGE_CLUSTER.sha, *args, target_nodes=master
                )
            except family_of(client).no_script_error:
                raw = await client.execute_command(
                    "EVAL", SCAN_PAGE_CLUSTER.source, *args, target_nodes=master
                )
            return _advance(decode(self.page, raw), index, len(primaries))
        except Exception as exc:
            # The fan-out expects NodeError from run(); a node may fail in any way (see
            # sync._FAILURES), and this is the transport.
            raise node_error(self, exc) from exc

    async def ping(self) -> str:
        return await self.node.ping()

    async def close(self) -> None:
        """The node belongs to its AsyncRedsync."""

    def close_nowait(self) -> None:
        """The node belongs to its AsyncRedsync."""


async def list_keys_async(
    nodes: Sequence[AsyncNode],
    match: str,
    count: int,
    budget_ms: int,
    now: Callable[[], float] = time.monotonic,
) -> list[NodeKeys]:
    """Asyncio twin of ``list_keys``."""
    listing = _Listing(nodes, match, count)
    deadline = now() + budget_ms / 1000
    while pages := listing.round():
        left_ms = int((deadline - now()) * 1000)
        if left_ms <= 0:
            break
        paged = [_AsyncPage(nodes[i], page) for i, page in pages]
        replies = await aio.fan_out(paged, FanOut(Op.SCAN, match, "", deadline_ms=left_ms))
        late = now() >= deadline - EARLY_WAKE_S
        for (i, _), reply in zip(pages, replies, strict=True):
            listing.record(i, reply, late=late)
    listing.cut_short()
    return listing.nodes
