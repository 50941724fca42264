"""An explicit-state model of fenced Redlock: every reachable state of a small system, searched.

The clients run the library's own flows (``flows.acquire_token`` and ``flows.release``: the
generators the sync and asyncio drivers forward), so the model checks the protocol the code
implements, step for step. The model supplies the world around them:

- N nodes with the semantics of the Lua scripts: ``FENCED_ACQUIRE`` (SET NX PX, or re-arm a
  key that holds our value, and read the counter there), ``FENCE`` (raise the counter to the token while the key holds our value),
  ``RELEASE`` (compare-and-delete);
- messages: when a flow yields a fan-out, each node either runs the request at once and the
  client hears the reply, or the request is delayed: it runs at any later moment (interleaved
  with everything else) and its reply comes too late to count. A node that is down fails at
  once, and so does a node whose connection still has a delayed request in flight (as the
  transports do: a connection never carries two requests at once);
- time: a clock in milliseconds, advanced one tick at a time. The client reads it exactly (the
  Tally timings) and collects its replies within its fan-out deadline (``timeout_factor``). A
  node expires a key TTL ms after it was set at the latest and, with bounded drift, no earlier
  than TTL minus the drift allowance the flows subtract from the validity; with unbounded drift
  a node may drop a key at any moment (a clock jump);
- nodes crash (delayed requests to them are lost) and restart, with their data (persistence)
  or empty.

A violation is a client that has just acquired the lock while an earlier grant is still valid
(mutual exclusion), or after an earlier grant's validity ended or its holder began to unlock,
with a token that is not larger (fencing). The state stores times relative to now, keeps only
the largest token of the grants that ended, and clients collect within their deadline, so the
state space is finite without a time horizon: ``search`` visits all of it (or every state
within a number of transitions), breadth first, and returns a shortest counterexample trace;
``random_walks`` samples configurations too big to visit.

Run ``python tests/model/fencing_model.py`` to print what each configuration finds.
"""

from __future__ import annotations

import itertools
import random
import sys
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any, NamedTuple

from redsync_core import LockNotAcquired, MutexOptions, NodeError
from redsync_core._algorithm import flows
from redsync_core._algorithm.effects import (
    MISSING,
    OK,
    TAKEN,
    Effect,
    FanOut,
    NodeReply,
    Op,
    Sleep,
    Status,
    Tally,
)
from redsync_core._algorithm.fencing import Acquired
from redsync_core._algorithm.timing import drift_ms, fanout_deadline_ms

KEY = "model-lock"


@cache
def _options(ttl_ms: int, fencing: bool) -> MutexOptions:
    return MutexOptions(expiry=ttl_ms / 1000, drift_factor=0.0, retry_delay=0.0, fencing=fencing)


@dataclass(frozen=True)
class Config:
    """One model: its size, the clients' programs and which assumptions hold."""

    nodes: int = 3
    #: Each client's program of ("lock", tries) and ("unlock",) steps; an unlock after a
    #: failed lock is skipped. Every lock() call uses a new value.
    programs: tuple[tuple[tuple[Any, ...], ...], ...] = (
        (("lock", 1), ("unlock",)),
        (("lock", 1), ("unlock",)),
    )
    ttl_ms: int = 4
    crashes: int = 1
    persistence: bool = True
    bounded_drift: bool = True
    #: How many requests may be delayed (in flight) at once.
    max_delayed: int = 1
    fencing: bool = True
    #: Report a second holder while a grant is valid (the lock's own property). Off, the
    #: search goes on past such overlaps and reports token inversions only.
    check_mutual_exclusion: bool = True

    @property
    def options(self) -> MutexOptions:
        return _options(self.ttl_ms, self.fencing)

    @property
    def deadline_ms(self) -> int:
        """How long a client waits for the replies of a fan-out, at most (``timeout_factor``)."""
        deadline = fanout_deadline_ms(self.ttl_ms, self.options.timeout_factor)
        return self.ttl_ms if deadline is None else deadline

    @property
    def drift_ms(self) -> int:
        return drift_ms(self.ttl_ms, self.options.drift_factor)


# -- state: tuples and frozen dataclasses, every time relative to now (now is always 0) --------


class Node(NamedTuple):
    up: bool = True
    key: tuple[str, int] | None = None  # (value, set at)
    counter: int = 0


class Client(NamedTuple):
    step: int = 0  # index in the program
    session: int = 0  # lock() calls begun (the value is per call)
    held: bool = False  # the last lock() succeeded (so the unlock runs)
    flow: tuple[Tally, ...] | None = None  # replies sent to the running flow (None: idle)
    started: int = 0  # the running flow's now_ms
    sent_at: int | None = None  # when the fan-out awaited was sent (None: none awaited)
    replies: tuple[NodeReply | None, ...] = ()  # heard (None: not heard)


class Live(NamedTuple):
    """A grant whose validity has not ended and whose holder has not begun to unlock."""

    client: int
    session: int
    token: int | None
    end: int


class State(NamedTuple):
    nodes: tuple[Node, ...]
    clients: tuple[Client, ...]
    inflight: tuple[tuple[int, int, FanOut], ...]  # (client, node, request) delayed
    live: tuple[Live, ...]
    ended_token: int  # the largest token of the grants that ended (0: none)
    crashes: int


def value_of(client: int, session: int) -> str:
    return f"{'ABCDEFGH'[client]}{session}"


def _with(items: tuple[Any, ...], i: int, item: Any) -> tuple[Any, ...]:
    return (*items[:i], item, *items[i + 1 :])


# -- the library's flows, replayed from the replies they were sent ------------------------------


@cache
def _advance(
    config: Config, client: int, step: int, session: int, started: int, sent: tuple[Tally, ...]
) -> tuple[str, Any]:
    """Replay ``client``'s current flow; return ("effect", FanOut), ("done", outcome) or
    ("failed", exception name). The flows are deterministic: the same replies, the same flow.
    """
    op = config.programs[client][step]
    target = flows.Target(KEY, KEY, value_of(client, session), config.nodes)
    flow: Generator[Effect, Tally | None, Any]
    if op[0] == "lock":
        flow = flows.acquire_token(
            config.options,
            target,
            now_ms=started,
            tries=op[1],
            timeout_ms=None,
            randrange=lambda low, high: low,
        )
    else:
        flow = flows.release(config.options, target)
    replies = iter(sent)
    try:
        effect = flow.send(None)
        while True:
            if isinstance(effect, Sleep):  # retry_delay=0: the next attempt follows at once
                assert effect.ms == 0
                effect = flow.send(None)
                continue
            reply = next(replies, None)
            if reply is None:
                return ("effect", effect)
            effect = flow.send(reply)
    except StopIteration as done:
        return ("done", done.value)
    except LockNotAcquired as exc:
        return ("failed", type(exc).__name__)


def _shift(tally: Tally, by: int) -> Tally:
    return Tally(tally.replies, tally.started_ms + by, tally.finished_ms + by)


# -- node semantics: those of the Lua scripts in redsync_core/_transport/scripts.py -----------


def run_command(node: Node, effect: FanOut) -> tuple[Node, NodeReply]:
    """Run one command atomically on a model node (at time 0); return the node and its reply."""
    key = node.key
    if effect.op in (Op.ACQUIRE, Op.FENCED_ACQUIRE):
        if key is not None and key[0] != effect.value:
            return node, TAKEN  # the holder's TTL only feeds messages: left out
        node = node._replace(key=(effect.value, 0))
        return node, OK if effect.op is Op.ACQUIRE else NodeReply(Status.OK, counter=node.counter)
    if key is None:
        return node, MISSING
    if key[0] != effect.value:
        return node, TAKEN
    if effect.op is Op.RELEASE:
        return node._replace(key=None), OK
    if effect.op is Op.FENCE:
        return node._replace(counter=max(node.counter, effect.token)), OK
    raise AssertionError(f"the model has no {effect.op}")


def _describe(reply: NodeReply | NodeError | None) -> str:
    if not isinstance(reply, NodeReply):
        return "no reply"
    if reply.counter is not None:
        return f"{reply.status.name} counter={reply.counter}"
    return reply.status.name


#: The reply slot of a node a fan-out did not ask (``FanOut.only``): None in the Tally.
NOT_SENT = NodeReply(Status.MISSING, holder="not sent")

#: One error per node, shared: exceptions compare by identity, and states must compare equal.
_NO_REPLY = tuple(NodeError(n, f"node{n}", "no reply") for n in range(8))


# -- transitions ---------------------------------------------------------------------------


@dataclass
class Violation:
    kind: str
    detail: str
    trace: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"{self.kind}: {self.detail}", "trace (t: milliseconds since the start):"]
        return "\n".join(lines + [f"  {i:2}. {step}" for i, step in enumerate(self.trace, 1)])


Step = tuple[State, list[str], Violation | None]


class Model:
    """The transition relation of one ``Config``.

    Log lines carry ``{t}``, the time since the start, filled in by ``search`` (states only
    know relative times).
    """

    def __init__(self, config: Config) -> None:
        self.config = config

    def initial(self) -> State:
        nodes = tuple(Node() for _ in range(self.config.nodes))
        return State(nodes, tuple(Client() for _ in self.config.programs), (), (), 0, 0)

    def _run(self, state: State, c: int, log: list[str]) -> Iterator[Step]:
        """Run client ``c``'s flow until it awaits a fan-out (one step per way of sending it:
        which nodes run the request now, which get it delayed) or ends."""
        cfg = self.config
        client = state.clients[c]
        assert client.flow is not None
        kind, what = _advance(cfg, c, client.step, client.session, client.started, client.flow)
        if kind == "effect":
            busy = {n for cc, n, _ in state.inflight if cc == c}
            reachable = [n for n in range(cfg.nodes) if state.nodes[n].up and n not in busy]
            room = cfg.max_delayed - len(state.inflight)
            for delayed in _subsets(reachable, room):
                yield self._send(state, c, what, reachable, delayed, log)
            return
        name = value_of(c, client.session)
        op = cfg.programs[c][client.step]
        violation = None
        if op[0] == "lock" and kind == "done":
            assert isinstance(what, Acquired)
            log = [
                *log,
                f"t={{t}} {name}: ACQUIRED, token {what.token}, valid until t={{t}}+"
                f"{what.until_ms}",
            ]
            state, violation = self._grant(state, c, client.session, what)
        else:
            log = [*log, f"t={{t}} {name}: {op[0]} returned {what}"]
        held = op[0] == "lock" and kind == "done"
        step = client.step + 1
        program = cfg.programs[c]
        while not held and step < len(program) and program[step][0] == "unlock":
            step += 1  # nothing to unlock after a failed lock()
        client = client._replace(step=step, flow=None, held=held, started=0)
        yield state._replace(clients=_with(state.clients, c, client)), log, violation

    def _send(
        self,
        state: State,
        c: int,
        effect: FanOut,
        reachable: list[int],
        delayed: tuple[int, ...],
        log: list[str],
    ) -> Step:
        nodes = list(state.nodes)
        replies: list[NodeReply | None] = [None] * self.config.nodes
        inflight = list(state.inflight)
        fates = []
        for n in range(self.config.nodes):
            if effect.only is not None and n not in effect.only:
                replies[n] = NOT_SENT
                fates.append(f"node {n} not asked")
            elif n not in reachable:
                fates.append(f"node {n} fails at once")
            elif n in delayed:
                inflight.append((c, n, effect))
                fates.append(f"node {n} delayed")
            else:
                nodes[n], replies[n] = run_command(nodes[n], effect)
                fates.append(f"node {n} {_describe(replies[n])}")
        token = f" token {effect.token}" if effect.op is Op.FENCE else ""
        line = f"t={{t}} {effect.value} sends {effect.op.name}{token}: " + ", ".join(fates)
        client = state.clients[c]._replace(sent_at=0, replies=tuple(replies))
        state = state._replace(
            nodes=tuple(nodes),
            inflight=tuple(sorted(inflight, key=repr)),
            clients=_with(state.clients, c, client),
        )
        return state, [*log, line], None

    def _grant(
        self, state: State, c: int, session: int, acquired: Acquired
    ) -> tuple[State, Violation | None]:
        name = value_of(c, session)
        for g in state.live if self.config.check_mutual_exclusion else ():
            return state, Violation(
                "mutual exclusion",
                f"{name} acquired while {value_of(g.client, g.session)} is valid for "
                f"{g.end} ms more",
            )
        token = acquired.token
        if self.config.fencing and state.ended_token and (token or 0) <= state.ended_token:
            return state, Violation(
                "token inversion",
                f"{name} acquired with token {token} after the hold of a token "
                f"{state.ended_token} ended",
            )
        live = Live(c, session, token, acquired.until_ms)
        return state._replace(live=(*state.live, live)), None

    def _end(self, state: State, keep: Callable[[Live], bool]) -> State:
        ended = [g for g in state.live if not keep(g)]
        if not ended:
            return state
        top = max([state.ended_token, *((g.token or 0) for g in ended)])
        live = tuple(g for g in state.live if keep(g))
        return state._replace(live=live, ended_token=top)

    def successors(self, state: State) -> Iterator[tuple[str, Step]]:
        """Yield (label, (next state, log lines, violation)) for every enabled transition."""
        cfg = self.config
        # a client that runs no flow begins its next step (lock or unlock), at any moment
        for c, client in enumerate(state.clients):
            program = cfg.programs[c]
            if client.flow is not None or client.step >= len(program):
                continue
            op = program[client.step]
            session = client.session + (op[0] == "lock")
            new = client._replace(flow=(), started=0, session=session)
            begun = state._replace(clients=_with(state.clients, c, new))
            if op[0] == "unlock":  # "A released it": from the moment unlock() is called
                begun = self._end(begun, lambda g, c=c: g.client != c)
            log = [f"t={{t}} {value_of(c, session)}: {op[0]}() begins"]
            for step in self._run(begun, c, log):
                yield "begin", step
        # a client collects its replies (all heard, or its deadline passed) and goes on
        for c, client in enumerate(state.clients):
            if client.sent_at is None or client.flow is None:
                continue
            replies = tuple(
                None if r is NOT_SENT else r if r is not None else _NO_REPLY[n]
                for n, r in enumerate(client.replies)
            )
            tally = Tally(replies, client.sent_at, 0)
            new = client._replace(sent_at=None, replies=(), flow=(*client.flow, tally))
            collected = state._replace(clients=_with(state.clients, c, new))
            log = [
                f"t={{t}} {value_of(c, client.session)} collects: "
                + ", ".join(_describe(r) for r in replies)
            ]
            for step in self._run(collected, c, log):
                yield "collect", step
        # a delayed request runs on its node; its reply is too late to count
        for i, (_, n, effect) in enumerate(state.inflight):
            node, reply = run_command(state.nodes[n], effect)
            line = (
                f"t={{t}} node {n} runs the delayed {effect.op.name} of {effect.value}: "
                f"{_describe(reply)} (too late to count)"
            )
            inflight = state.inflight[:i] + state.inflight[i + 1 :]
            new_state = state._replace(nodes=_with(state.nodes, n, node), inflight=inflight)
            yield "deliver", (new_state, [line], None)
        # a node drops a key before its TTL: by up to the drift allowance, or at any moment
        for n, node in enumerate(state.nodes):
            if node.key is None:
                continue
            age = -node.key[1]
            if not cfg.bounded_drift or age >= cfg.ttl_ms - cfg.drift_ms:
                line = f"t={{t}} node {n} expires {node.key[0]}'s key, {age} ms after it was set"
                dropped = _with(state.nodes, n, node._replace(key=None))
                yield "expire", (state._replace(nodes=dropped), [line], None)
        # a node crashes, or restarts with its data (persistence) or empty
        for n, node in enumerate(state.nodes):
            if node.up and state.crashes < cfg.crashes:
                down = _with(state.nodes, n, node._replace(up=False))
                inflight = tuple(m for m in state.inflight if m[1] != n)
                new_state = state._replace(nodes=down, inflight=inflight, crashes=state.crashes + 1)
                yield "crash", (new_state, [f"t={{t}} node {n} crashes"], None)
            elif not node.up:
                kept = node if cfg.persistence else Node()
                back = _with(state.nodes, n, kept._replace(up=True))
                how = "with its data" if cfg.persistence else "EMPTY (no persistence)"
                line = f"t={{t}} node {n} restarts {how}, counter {kept.counter}"
                yield "restart", (state._replace(nodes=back), [line], None)
        # one millisecond passes (not while a client has waited its whole deadline for replies)
        if all(cl.sent_at is None or -cl.sent_at < cfg.deadline_ms for cl in state.clients):
            yield "tick", (self._tick(state), ["tick"], None)

    def _tick(self, state: State) -> State:
        ttl = self.config.ttl_ms
        nodes = tuple(
            node._replace(
                key=None
                if node.key is None or node.key[1] - 1 + ttl <= 0
                else (node.key[0], node.key[1] - 1),
            )
            for node in state.nodes
        )
        clients = tuple(
            client
            if client.flow is None
            else client._replace(
                started=client.started - 1,
                sent_at=None if client.sent_at is None else client.sent_at - 1,
                flow=tuple(_shift(t, -1) for t in client.flow),
            )
            for client in state.clients
        )
        live = tuple(g._replace(end=g.end - 1) for g in state.live)
        state = state._replace(nodes=nodes, clients=clients, live=live)
        return self._end(state, lambda g: g.end > 0)


def _subsets(items: list[int], most: int) -> Iterator[tuple[int, ...]]:
    for size in range(min(len(items), most) + 1):
        yield from itertools.combinations(items, size)


@dataclass
class Result:
    states: int
    violation: Violation | None
    depth: int = 0  # the deepest level explored (transitions from the start)
    complete: bool = True  # every reachable state was visited (no depth bound cut it)


def search(config: Config, *, max_depth: int | None = None, limit: int = 2_000_000) -> Result:
    """Visit every state of ``config`` reachable in at most ``max_depth`` transitions (None:
    every reachable state), breadth first; stop at the first violation, whose trace is then a
    shortest one.

    Raises:
        RuntimeError: more than ``limit`` states (the model is too big to finish).
    """
    model = Model(config)
    first = model.initial()
    parent: dict[State, tuple[State, list[str]] | None] = {first: None}
    layer, depth, cut = [first], 0, False
    while layer:
        if max_depth is not None and depth == max_depth:
            cut = True
            break
        depth += 1
        next_layer = []
        for state in layer:
            for _, (nxt, lines, violation) in model.successors(state):
                if violation is not None:
                    return Result(
                        len(parent), _explained(violation, parent, state, lines), depth, False
                    )
                if nxt not in parent:
                    parent[nxt] = (state, lines)
                    if len(parent) > limit:
                        raise RuntimeError(f"more than {limit} states")
                    next_layer.append(nxt)
        layer = next_layer
    return Result(len(parent), None, depth, not cut)


def random_walks(config: Config, *, walks: int, seed: int, steps: int = 200) -> Result:
    """Follow ``walks`` random paths of at most ``steps`` transitions each (a seeded sample of
    the behaviours too many to visit all); stop at the first violation."""
    model = Model(config)
    rng = random.Random(seed)
    seen: set[State] = set()
    for _ in range(walks):
        state, trace = model.initial(), []
        for _ in range(steps):
            options = list(model.successors(state))
            if not options:
                break
            _, (state, lines, violation) = rng.choice(options)
            trace.append(lines)
            seen.add(state)
            if violation is not None:
                violation.trace = _timed(trace)
                return Result(len(seen), violation, complete=False)
    return Result(len(seen), None, complete=False)


def _timed(steps: list[list[str]]) -> list[str]:
    trace, now = [], 0
    for lines in steps:
        for line in lines:
            if line == "tick":
                now += 1
            else:
                trace.append(line.replace("{t}", str(now)))
    return trace


def _explained(
    violation: Violation,
    parent: dict[State, tuple[State, list[str]] | None],
    state: State,
    last: list[str],
) -> Violation:
    """Attach the trace that led to ``state``, with absolute times."""
    steps: list[list[str]] = [last]
    link = parent[state]
    while link is not None:
        steps.append(link[1])
        link = parent[link[0]]
    violation.trace = _timed(list(reversed(steps)))
    return violation


def main() -> int:
    """Print what the searches of ``test_fencing_model.py`` find."""
    lock_unlock, lock = (("lock", 1), ("unlock",)), (("lock", 1),)
    searches: dict[str, Callable[[], Result]] = {
        "within the assumptions: crash + restart with data": lambda: search(Config(max_delayed=0)),
        "within the assumptions: delayed requests, 9 transitions": lambda: search(
            Config(programs=(lock_unlock, lock), crashes=0), max_depth=9
        ),
        "restart without persistence": lambda: search(
            Config(
                programs=(lock_unlock, lock),
                max_delayed=0,
                crashes=2,
                persistence=False,
                check_mutual_exclusion=False,
            )
        ),
        "unbounded drift": lambda: search(
            Config(
                programs=(lock, lock_unlock),
                max_delayed=0,
                crashes=0,
                bounded_drift=False,
                check_mutual_exclusion=False,
            )
        ),
    }
    for name, run in searches.items():
        result = run()
        print(f"== {name}: {result.states} states")
        print(result.violation.render() if result.violation else "no violation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
