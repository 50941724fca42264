"""The pure semaphore and multi-mutex flows, driven with synthetic replies (no Redis).

What the drivers rely on: a permit is won only with a quorum on one key, permits other nodes
gave are handed back, a failed attempt releases every permit on every node that may hold one,
the errors are the documented ones, multi-key fan-outs address every key, and a cluster node
split by slot keeps "all or none".
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from redsync_core import LockNotAcquired, LockTaken, MutexOptions, NodeError, QuorumUnreachable
from redsync_core._algorithm import family, flows
from redsync_core._algorithm.effects import Effect, FanOut, NodeReply, Op, Sleep, Status, Tally

OPTIONS = MutexOptions(expiry=10.0, retry_delay=0.0)
TARGET = flows.Target("sem", "sem", "v", 3)


def ok(slot: int) -> NodeReply:
    return NodeReply(Status.OK, slot=slot)


FULL = NodeReply(Status.TAKEN, 4000)


def start(limit: int, tries: int = 1, first: int = 0) -> Generator[Effect, Tally | None, object]:
    return family.acquire_permit(
        OPTIONS,
        TARGET,
        limit,
        now_ms=0,
        tries=tries,
        timeout_ms=None,
        randrange=lambda low, high: first,
    )


def answer(*replies: NodeReply | NodeError | None) -> Tally:
    return Tally(tuple(replies), 0, 5)


def test_a_quorum_on_one_permit_wins_it() -> None:
    flow = start(3, first=1)
    effect = next(flow)
    assert isinstance(effect, FanOut)
    assert effect.op is Op.ACQUIRE_ANY
    assert effect.keys == ("sem:1", "sem:2", "sem:0")  # rotated from the random start
    with pytest.raises(StopIteration) as done:
        flow.send(answer(ok(0), ok(0), ok(0)))
    assert done.value.value.slot == 1
    assert done.value.value.until_ms == 5 + 10_000 - 5 - (100 + 2)


def test_permits_other_nodes_gave_are_handed_back() -> None:
    flow = start(2)
    next(flow)
    cleanup = flow.send(answer(ok(0), ok(1), ok(0)))  # node 1 gave the other permit
    assert isinstance(cleanup, FanOut)
    assert cleanup.op is Op.RELEASE_ALL
    assert cleanup.keys == ("sem:1",)
    with pytest.raises(StopIteration) as done:
        flow.send(answer(None, None, None))
    assert done.value.value.slot == 0


def test_a_quorum_split_over_permits_wins_nothing_and_releases_every_permit() -> None:
    flow = start(3)
    next(flow)
    release = flow.send(answer(ok(0), ok(1), ok(2)))
    assert isinstance(release, FanOut)
    assert release.op is Op.RELEASE_ALL
    assert release.keys == ("sem:0", "sem:1", "sem:2")
    with pytest.raises(LockNotAcquired) as caught:
        flow.send(answer(None, None, None))
    assert not isinstance(caught.value, LockTaken)
    assert "best: 1" in str(caught.value)


def test_every_permit_held_on_a_quorum_is_lock_taken_with_retry_after() -> None:
    flow = start(2, tries=2)
    next(flow)
    next_step = flow.send(answer(FULL, FULL, ok(1)))
    assert next_step.op is Op.RELEASE_ALL
    assert next_step.only == frozenset({2})  # a full node holds no permit of ours
    assert isinstance(flow.send(answer(None, None, None)), Sleep)
    assert flow.send(None).op is Op.ACQUIRE_ANY  # the second try
    with pytest.raises(LockTaken) as caught:
        flow.send(answer(FULL, FULL, FULL))  # every node full: nothing to release
    assert caught.value.retry_after == 4.0
    assert caught.value.attempts == 2
    assert "all 2 permits" in str(caught.value)


def test_node_errors_beyond_a_minority_are_quorum_unreachable() -> None:
    error = NodeError(0, "redis://127.0.0.1:1/0", "down")
    flow = start(2)
    next(flow)
    flow.send(answer(error, error, ok(0)))
    with pytest.raises(QuorumUnreachable):
        flow.send(answer(None, None, None))


ERROR = NodeError(0, "redis://127.0.0.1:1/0", "down")
TRY_CASES = [
    pytest.param(3, answer(ok(0), ok(0), ok(0)), id="won"),
    pytest.param(2, answer(ok(0), ok(1), ok(0)), id="won-handing-back"),
    pytest.param(3, answer(ok(0), ok(1), ok(2)), id="split"),
    pytest.param(2, answer(FULL, FULL, ok(1)), id="taken"),
    pytest.param(2, answer(FULL, FULL, FULL), id="full"),
    pytest.param(2, Tally((ok(0), ok(0), ok(0)), 0, 20_000), id="no-validity"),
    pytest.param(2, answer(ERROR, ERROR, ok(0)), id="unreachable"),
]


@pytest.mark.parametrize(("limit", "first_replies"), TRY_CASES)
def test_try_permit_is_one_try_of_acquire_permit_without_its_error(
    limit: int, first_replies: Tally
) -> None:
    """Semaphore.try_lock()'s flow sends what acquire_permit(tries=1) sends, wins what it
    wins and fails as it fails, but returns None for a lost try instead of building the error
    (unless asked)."""
    outcomes: dict[str, tuple[object, list[Effect]]] = {}
    for kind in ("acquire", "try", "try-loud"):
        flow: Generator[Effect, Tally | None, object]
        if kind == "acquire":
            flow = start(limit, first=1)
        else:
            flow = family.try_permit(
                OPTIONS, TARGET, limit, randrange=lambda low, high: 1, quiet=kind == "try"
            )
        effects: list[Effect] = []
        reply: Tally | None = None
        try:
            while True:
                effects.append(flow.send(reply))
                reply = first_replies if len(effects) == 1 else answer(None, None, None)
        except StopIteration as done:
            result: object = done.value
        except LockNotAcquired as exc:
            result = (type(exc), str(exc), exc.args)
        outcomes[kind] = (result, effects)
    sent, tried, loud = outcomes["acquire"], outcomes["try"], outcomes["try-loud"]
    assert tried[1] == loud[1] == sent[1]  # the same fan-outs, hand-backs and releases included
    assert loud[0] == sent[0]
    lost = isinstance(sent[0], tuple) and sent[0][0] is not QuorumUnreachable
    assert tried[0] == (None if lost else sent[0])


def test_winning_slot_prefers_the_most_nodes_then_the_earlier_position() -> None:
    assert family.winning_slot(answer(ok(1), ok(0), ok(1))) == (1, 2)
    assert family.winning_slot(answer(ok(1), ok(0), FULL)) == (0, 1)
    assert family.winning_slot(answer(FULL, None, FULL)) == (None, 0)


def test_over_keys_sends_every_mutex_fan_out_to_all_keys() -> None:
    keys = ("a", "b")
    flow = family.over_keys(flows.release(OPTIONS, flows.Target("a,b", "a", "v", 3)), keys)
    effect = next(flow)
    assert isinstance(effect, FanOut)
    assert (effect.op, effect.key, effect.keys) == (Op.RELEASE_ALL, "a", keys)
    with pytest.raises(StopIteration) as done:
        flow.send(answer(NodeReply(Status.OK), NodeReply(Status.OK), FULL))
    assert done.value.value is True
    single = flows.release(OPTIONS, TARGET)
    assert family.over_keys(single, ()) is single


def test_multi_keys_are_prefixed_unique_and_sorted() -> None:
    assert family.multi_keys("p:", ["b", "a", "b"]) == ("p:a", "p:b")


def drive_split(effect: FanOut, replies: dict[tuple[str, ...], NodeReply]) -> tuple:
    steps = family.combine_split(effect, lambda key: ord(key[0]))
    sent = []
    part = next(steps)
    while True:
        sent.append((part.op, part.keys))
        try:
            part = steps.send(replies.get(part.keys, NodeReply(Status.OK, slot=0)))
        except StopIteration as done:
            return done.value, sent


def test_a_cluster_split_acquire_all_gives_back_the_groups_it_took() -> None:
    effect = FanOut(Op.ACQUIRE_ALL, "a1", "v", ttl_ms=1000, keys=("a1", "a2", "b1", "c1"))
    result, sent = drive_split(effect, {("b1",): FULL, ("a1", "a2"): NodeReply(Status.OK)})
    assert result == FULL
    assert sent == [
        (Op.ACQUIRE_ALL, ("a1", "a2")),
        (Op.ACQUIRE_ALL, ("b1",)),
        (Op.RELEASE_ALL, ("a1", "a2")),  # all or none on this node
    ]


def test_a_cluster_split_acquire_any_maps_the_permit_back() -> None:
    effect = FanOut(Op.ACQUIRE_ANY, "a0", "v", ttl_ms=1000, keys=("a0", "b1", "b2"))
    result, sent = drive_split(effect, {("a0",): NodeReply(Status.TAKEN, 300), ("b1", "b2"): ok(1)})
    assert result == NodeReply(Status.OK, slot=2)
    assert [keys for _, keys in sent] == [("a0",), ("b1", "b2")]


def test_a_cluster_split_release_reports_the_worst_group() -> None:
    effect = FanOut(Op.RELEASE_ALL, "a", "v", keys=("a", "b"))
    result, _ = drive_split(
        effect, {("a",): NodeReply(Status.OK), ("b",): NodeReply(Status.MISSING)}
    )
    assert result.status is Status.MISSING


def test_max_hold_stops_extensions_that_would_outlast_the_cap() -> None:
    from redsync_core._algorithm.renewal import within_max_hold

    assert within_max_hold(now_ms=5_000, expiry_ms=3_000, hold_end_ms=None)
    assert within_max_hold(now_ms=5_000, expiry_ms=3_000, hold_end_ms=8_000)  # ends at the cap
    assert not within_max_hold(now_ms=5_001, expiry_ms=3_000, hold_end_ms=8_000)
