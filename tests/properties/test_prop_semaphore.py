"""Semaphores never admit more than ``limit`` holders: a model search and the real flow.

1. An exhaustive search of a small model (``semaphore_model``): the permit-per-key design
   never admits ``limit + 1`` holders, whatever the interleaving and whichever free permit each
   node hands out; counting holders per node does (the counterexample is printed), and so does
   the permit design once a node may restart without persistence (an assumption of Redlock).
2. The real ``acquire_permit`` flow of several acquirers, driven against in-process nodes with
   the same scripts' semantics, one node at a time in an order Hypothesis picks: at every step
   at most ``limit`` flows have returned a permit that is still held, and each holder's value
   sits on a quorum of nodes under its one permit key.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from semaphore_model import explore

from redsync_core import LockNotAcquired, MutexOptions
from redsync_core._algorithm import family
from redsync_core._algorithm.effects import Effect, FanOut, NodeReply, Op, Sleep, Tally
from redsync_core._algorithm.flows import Target
from redsync_core._algorithm.timing import quorum
from redsync_core._transport.memory import MemoryStore


@pytest.mark.parametrize(
    ("nodes", "limit", "clients", "attempts"),
    [
        pytest.param(3, 2, 3, 1, id="3-nodes-limit-2-3-clients"),
        pytest.param(3, 1, 3, 2, id="3-nodes-limit-1-3-clients-2-attempts"),
        pytest.param(5, 1, 2, 1, id="5-nodes-limit-1-2-clients"),
        pytest.param(4, 2, 3, 1, id="4-nodes-limit-2-3-clients", marks=pytest.mark.slow),
    ],
)
def test_the_permit_design_never_admits_more_than_limit(
    nodes: int, limit: int, clients: int, attempts: int
) -> None:
    violation, states = explore(
        "slots", nodes=nodes, limit=limit, clients=clients, attempts=attempts
    )
    assert violation is None, "\n".join(violation.trace)
    assert states > 1000  # the search really explored interleavings


def test_counting_holders_per_node_admits_limit_plus_one() -> None:
    violation, _ = explore("counting", nodes=3, limit=2, clients=3, attempts=1)
    assert violation is not None
    assert violation.holders == 3
    print("\n".join(violation.trace))  # the counterexample, as docs/safety.md shows it


@pytest.mark.slow
def test_the_permit_design_needs_nodes_that_remember() -> None:
    violation, _ = explore("slots", nodes=3, limit=2, clients=3, attempts=1, restarts=1)
    assert violation is not None
    assert violation.holders == 3
    assert any("restarts without persistence" in step for step in violation.trace)
    print("\n".join(violation.trace))


# --- the real flow, interleaved node by node -------------------------------------------------

NODES = 3
TTL_S = 60.0  # nothing expires during an example
_stores = itertools.count()


@dataclass
class Acquirer:
    """One acquirer's flow, the fan-out it is in the middle of, and what it got."""

    flow: Generator[Effect, Tally | None, family.Permit]
    value: str
    effect: FanOut | None = None
    replies: list[NodeReply | None] = field(default_factory=list)
    permit: int | None = None
    done: bool = False

    def advance(self, answer: Tally | None) -> None:
        """Feed the flow until it asks for a fan-out (or finishes)."""
        try:
            step = self.flow.send(answer)
            while isinstance(step, Sleep):
                step = self.flow.send(None)
        except StopIteration as finished:
            self.permit = finished.value.slot
            self.done = True
            return
        except LockNotAcquired:
            self.done = True
            return
        self.effect = step
        self.replies = []


def start(limit: int, value: str, tries: int, seed: int) -> Acquirer:
    options = MutexOptions(expiry=TTL_S, tries=tries, retry_delay=0.0)
    starts = itertools.cycle([seed % limit, (seed // 7) % limit])
    flow = family.acquire_permit(
        options,
        Target("sem", "sem", value, NODES),
        limit,
        now_ms=0,
        tries=tries,
        timeout_ms=None,
        randrange=lambda low, high: low + next(starts) % (high - low),
    )
    acquirer = Acquirer(flow, value)
    acquirer.advance(None)
    return acquirer


def holds(stores: list[MemoryStore], key: str, value: str) -> int:
    probe = FanOut(Op.GET, key, value)
    return sum(1 for store in stores if store.apply(probe).status.value == "ok")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limit=st.integers(1, 3),
    seeds=st.lists(st.integers(0, 1000), min_size=2, max_size=5),
    tries=st.integers(1, 3),
    data=st.data(),
)
def test_interleaved_acquirers_never_exceed_the_limit(
    limit: int, seeds: list[int], tries: int, data: st.DataObject
) -> None:
    run = next(_stores)
    stores = [MemoryStore(f"prop-sem-{run}-{i}") for i in range(NODES)]
    acquirers = [start(limit, f"v{i}", tries, seed) for i, seed in enumerate(seeds)]
    need = quorum(NODES)
    for _ in range(200):
        busy = [a for a in acquirers if not a.done]
        holders = [a for a in acquirers if a.permit is not None]
        if not busy and not holders:
            break
        choice = data.draw(st.sampled_from(busy + holders), label="who moves")
        if choice.done:  # a holder releases its permit
            key = f"sem:{choice.permit}"
            for store in stores:
                store.apply(FanOut(Op.RELEASE, key, choice.value))
            choice.permit = None
            continue
        assert choice.effect is not None
        node = len(choice.replies)  # the next node of this fan-out answers now
        choice.replies.append(stores[node].apply(choice.effect))
        if len(choice.replies) == NODES:
            choice.advance(Tally(tuple(choice.replies), 0, 0))
        holders = [a for a in acquirers if a.permit is not None]
        assert len(holders) <= limit
        for holder in holders:
            assert holds(stores, f"sem:{holder.permit}", holder.value) >= need
        assert len({h.permit for h in holders}) == len(holders)
