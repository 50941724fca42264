"""An explicit-state model of semaphore admission on N Redlock nodes, searched exhaustively.

Two designs are modelled, both under the lock's own assumptions (no node forgets what it
granted) unless ``restarts`` allows a node to restart empty:

- ``"counting"``: each node admits up to ``limit`` holders (a counter or set per node), and a
  client holds the semaphore when a quorum of nodes admitted it.
- ``"slots"``: what ``Semaphore`` does. Each node has ``limit`` permit keys; a node gives a
  client one free permit (any of them: the search tries every choice, which covers every order
  a client may send and every race between clients), and a client holds the semaphore when a
  quorum of nodes gave it the **same** permit. It gives back the permits it did not win.

Every client steps through: start an attempt, ask the nodes one at a time (any interleaving
with the other clients' steps), decide, and later release; a failed attempt gives back every
grant. Attempts per client are bounded, so the state space is finite and searched breadth
first: the first violation found is a shortest one.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

Slot = int | None
NodeState = tuple[Slot, ...]  # counting: the clients admitted (sorted); slots: owner per permit
Client = tuple[str, tuple[object, ...], int]  # phase, reply per node (None: not asked), budget


@dataclass(frozen=True)
class Violation:
    """A reachable state with more than ``limit`` holders, and the steps that lead to it."""

    holders: int
    trace: tuple[str, ...]


def _quorum(nodes: int) -> int:
    return nodes // 2 + 1


def explore(
    design: str,
    *,
    nodes: int = 3,
    limit: int = 2,
    clients: int = 3,
    attempts: int = 2,
    restarts: int = 0,
) -> tuple[Violation | None, int]:
    """Search every reachable state; return the first violation (or None) and the state count."""
    need = _quorum(nodes)
    empty_node: NodeState = () if design == "counting" else (None,) * limit
    start = (
        (empty_node,) * nodes,
        tuple(("idle", (None,) * nodes, attempts) for _ in range(clients)),
        restarts,
    )
    parents: dict[object, tuple[object, str] | None] = {start: None}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        node_states, client_states, restarts_left = state
        holding = sum(1 for phase, _, _ in client_states if phase == "holding")
        if holding > limit:
            return Violation(holding, _trace(parents, state)), len(parents)
        for step, successor in _successors(
            design, node_states, client_states, restarts_left, need, limit
        ):
            if successor not in parents:
                parents[successor] = (state, step)
                queue.append(successor)
    return None, len(parents)


def _trace(parents: dict[object, tuple[object, str] | None], state: object) -> tuple[str, ...]:
    steps = []
    link = parents[state]
    while link is not None:
        state, step = link
        steps.append(step)
        link = parents[state]
    return tuple(reversed(steps))


def _successors(
    design: str,
    node_states: tuple[NodeState, ...],
    client_states: tuple[Client, ...],
    restarts_left: int,
    need: int,
    limit: int,
) -> list[tuple[str, object]]:
    found: list[tuple[str, object]] = []
    names = "ABCDEFGH"

    def emit(step: str, nodes: list[NodeState], clients: list[Client], restarts: int) -> None:
        found.append((step, (tuple(nodes), tuple(clients), restarts)))

    for c, (phase, replies, budget) in enumerate(client_states):
        who = names[c]
        if phase == "idle" and budget > 0:
            clients = list(client_states)
            clients[c] = ("asking", (None,) * len(node_states), budget - 1)
            emit(f"{who} starts an attempt", list(node_states), clients, restarts_left)
        elif phase == "asking":
            unasked = [n for n, r in enumerate(replies) if r is None]
            for n in unasked:
                for reply, node_state in _grants(design, node_states[n], c, limit):
                    nodes = list(node_states)
                    nodes[n] = node_state
                    clients = list(client_states)
                    new_replies = list(replies)
                    new_replies[n] = reply
                    clients[c] = ("asking", tuple(new_replies), budget)
                    said = "refuses" if reply == "no" else f"grants {_granted(design, reply)}"
                    emit(f"node {n + 1} {said} to {who}", nodes, clients, restarts_left)
            if not unasked:
                won = _decide(design, replies, need)
                nodes = [_give_back(design, s, c, keep=won) for s in node_states]
                clients = list(client_states)
                if won is None:
                    clients[c] = ("idle", (None,) * len(node_states), budget)
                    emit(f"{who} fails and gives its grants back", nodes, clients, restarts_left)
                else:
                    clients[c] = ("holding", replies, budget)
                    what = "" if design == "counting" else f" (permit {won})"
                    emit(f"{who} HOLDS{what}", nodes, clients, restarts_left)
        elif phase == "holding":
            nodes = [_give_back(design, s, c, keep=None) for s in node_states]
            clients = list(client_states)
            clients[c] = ("idle", (None,) * len(node_states), budget)
            emit(f"{who} releases", nodes, clients, restarts_left)
    if restarts_left:
        for n, node_state in enumerate(node_states):
            if any(owner is not None for owner in node_state):
                nodes = list(node_states)
                nodes[n] = () if design == "counting" else (None,) * limit
                emit(
                    f"node {n + 1} restarts without persistence",
                    nodes,
                    list(client_states),
                    restarts_left - 1,
                )
    return found


def _granted(design: str, reply: object) -> str:
    return "a place" if design == "counting" else f"permit {reply}"


def _grants(
    design: str, node: NodeState, client: int, limit: int
) -> list[tuple[object, NodeState]]:
    """Every way ``node`` may answer ``client``: (reply, node state after)."""
    if design == "counting":
        if client in node or len(node) >= limit:
            return [("no", node)]
        return [("yes", tuple(sorted((*node, client))))]
    if client in node:  # already ours (a retry): the same permit again
        return [(node.index(client), node)]
    free = [slot for slot, owner in enumerate(node) if owner is None]
    if not free:
        return [("no", node)]
    return [(slot, (*node[:slot], client, *node[slot + 1 :])) for slot in free]


def _decide(design: str, replies: tuple[object, ...], need: int) -> int | None:
    """Return what the client won (a permit; 0 for counting), or None."""
    if design == "counting":
        return 0 if sum(1 for r in replies if r == "yes") >= need else None
    counts: dict[int, int] = {}
    for reply in replies:
        if isinstance(reply, int):
            counts[reply] = counts.get(reply, 0) + 1
    best = [slot for slot, count in counts.items() if count >= need]
    return min(best) if best else None


def _give_back(design: str, node: NodeState, client: int, keep: int | None) -> NodeState:
    """Return ``node`` without ``client``'s grants, except the permit it keeps."""
    if design == "counting":
        if keep is not None:
            return node
        return tuple(owner for owner in node if owner != client)
    return tuple(
        None if owner == client and slot != keep else owner for slot, owner in enumerate(node)
    )
