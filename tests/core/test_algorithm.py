"""The pure Redlock layer: quorum, validity and drift, retries, and what each flow yields.

No Redis and no sleeping: the flows are driven by hand with synthetic replies and a fake clock.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from redsync_core import (
    LockNotAcquired,
    LockTaken,
    LockTimeout,
    MutexOptions,
    NodeError,
    QuorumUnreachable,
)
from redsync_core._algorithm import flows, renewal, timing
from redsync_core._algorithm.effects import MISSING, OK, FanOut, NodeReply, Op, Sleep, Status, Tally
from redsync_core.testing import FakeClock

TAKEN_5S = NodeReply(Status.TAKEN, 5000)


def err(i: int) -> NodeError:
    return NodeError(i, f"redis://node{i}", "ConnectionError: refused")


@pytest.mark.parametrize(
    ("n", "expected"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4), (8, 5)]
)
def test_quorum_is_a_strict_majority(n: int, expected: int) -> None:
    assert timing.quorum(n) == expected
    assert timing.quorum(n) * 2 > n


def test_drift_is_expiry_times_factor_plus_two_ms() -> None:
    assert timing.drift_ms(8000, 0.01) == 82
    assert timing.drift_ms(1000, 0.0) == 2
    assert timing.validity_ms(8000, 100, 0.01) == 8000 - 100 - 82


def test_fanout_deadline_is_a_fraction_of_the_expiry() -> None:
    assert timing.fanout_deadline_ms(8000, 0.05) == 400
    assert timing.fanout_deadline_ms(10, 0.05) == 1  # never 0: that would fail every node
    assert timing.fanout_deadline_ms(8000, 0.0) is None


def test_default_retry_delay_is_random_50_to_250_ms() -> None:
    seen = []

    def randrange(lo: int, hi: int) -> int:
        seen.append((lo, hi))
        return lo

    assert timing.retry_delay_ms(1, fixed_s=None, func=None, randrange=randrange) == 50
    assert seen == [(50, 250)]
    assert timing.retry_delay_ms(3, fixed_s=0.5, func=None, randrange=randrange) == 500
    assert timing.retry_delay_ms(3, fixed_s=0.5, func=lambda a: a / 10, randrange=randrange) == 300


class Driver:
    """Drives a flow with scripted replies and a fake clock; records the effects."""

    def __init__(
        self,
        clock: FakeClock,
        fanout_ms: int = 5,
        scripted: Op = Op.ACQUIRE,
        others: tuple[Any, ...] | None = None,
    ) -> None:
        self.clock = clock
        self.scripted = scripted
        self.others = others  # the replies to every other fan-out (default: all OK)
        self.fanout_ms = fanout_ms
        self.effects: list[Any] = []

    def run(self, flow: Generator[Any, Tally | None, Any], replies: list[tuple[Any, ...]]) -> Any:
        answers = iter(replies)
        reply: Tally | None = None
        while True:
            try:
                effect = flow.send(reply)
            except StopIteration as done:
                return done.value
            self.effects.append(effect)
            if isinstance(effect, Sleep):
                self.clock.advance(effect.ms / 1000)
                reply = None
            else:
                started = self.clock()
                self.clock.advance(self.fanout_ms / 1000)
                other = self.others or (OK,) * len(replies[0])
                canned = next(answers) if effect.op is self.scripted else other
                reply = Tally(canned, started, self.clock())


def acquire(
    clock: FakeClock, n: int, *, tries: int | None = 1, timeout_ms: int | None = None, **opts: Any
) -> Generator[Any, Tally | None, int]:
    return flows.acquire(
        MutexOptions(**opts),
        flows.Target("job", "job", "v1", n),
        now_ms=clock(),
        tries=tries,
        timeout_ms=timeout_ms,
        randrange=lambda lo, hi: lo,
    )


def test_success_needs_a_quorum_and_returns_the_validity_end() -> None:
    clock = FakeClock()
    start = clock()
    driver = Driver(clock, fanout_ms=20)
    until = driver.run(acquire(clock, 5, expiry=1.0), [(OK, OK, OK, TAKEN_5S, err(4))])
    assert until == start + 1000 - timing.drift_ms(1000, 0.01)
    assert [e.op for e in driver.effects] == [Op.ACQUIRE]  # no release after a success


def test_validity_used_up_fails_and_releases_everywhere() -> None:
    clock = FakeClock()
    driver = Driver(clock, fanout_ms=995)  # the round trip ate the whole 1 s expiry
    with pytest.raises(LockNotAcquired) as caught:
        driver.run(acquire(clock, 3, expiry=1.0), [(OK, OK, OK)])
    assert type(caught.value) is LockNotAcquired
    assert "no validity" in str(caught.value)
    release = driver.effects[-1]
    assert isinstance(release, FanOut)
    assert release.op is Op.RELEASE
    assert release.value == "v1"


def test_a_quorum_held_by_another_value_is_lock_taken_with_retry_after() -> None:
    clock = FakeClock()
    taken_2s = NodeReply(Status.TAKEN, 2000)
    # The release after each attempt reports who holds the nodes and for how long.
    driver = Driver(clock, others=(TAKEN_5S, taken_2s, MISSING))
    with pytest.raises(LockTaken) as caught:
        driver.run(acquire(clock, 3, tries=3), [(TAKEN_5S, taken_2s, OK)] * 3)
    error = caught.value
    assert error.attempts == 3
    assert error.nodes == (0, 1)
    # A quorum (2 of 3) is free once the shorter of the two foreign keys expires.
    assert error.retry_after == pytest.approx(2.0)
    assert "2 nodes hold it for another holder" in str(error)


def taken(ttl_ms: int | None) -> NodeReply:
    return NodeReply(Status.TAKEN, ttl_ms)


# One failed attempt of 'invoice:42' on 5 nodes: its replies, then the error raised, word for
# word (a lock() with tries=1 builds it on every contended try, from one pass over the replies).
GIVE_UP_CASES = [
    pytest.param(
        (taken(4200), OK, taken(2500), taken(None), None),
        5,
        LockTaken,
        "Could not lock 'invoice:42': 1 of 5 nodes agreed, 3 needed, after 1 attempt; 3 nodes "
        "hold it for another holder (free in about 4.2 s). Wait longer (tries=, timeout=) or skip "
        "the work with try_lock().",
        4.2,
        (0, 2, 3),
        id="taken-on-a-quorum",
    ),
    pytest.param(
        (taken(4200), taken(4100), taken(4300), taken(4200), taken(4250)),
        5,
        LockTaken,
        "Could not lock 'invoice:42': 0 of 5 nodes agreed, 3 needed, after 1 attempt; 5 nodes "
        "hold it for another holder (free in about 4.2 s). Wait longer (tries=, timeout=) or skip "
        "the work with try_lock().",
        4.2,
        (0, 1, 2, 3, 4),
        id="taken-everywhere",
    ),
    pytest.param(
        (taken(4200), OK, OK, NodeError(3, "redis://h:3", "timeout"), MISSING),
        5,
        LockNotAcquired,
        "Could not lock 'invoice:42': 2 of 5 nodes agreed, 3 needed after 1 attempt (1 held by "
        "another holder, 1 failed (node 3 (redis://h:3): timeout)). Another holder may have it "
        "on some nodes; retry later or wait longer (tries=).",
        0.0,
        None,
        id="split-vote",
    ),
    pytest.param(
        (OK, OK, OK, taken(900), MISSING),
        1000,
        LockNotAcquired,
        "Could not lock 'invoice:42' after 1 attempt: a quorum agreed but the fan-out took 1000 "
        "ms of the 1000 ms expiry, leaving no validity (-12 ms). Raise expiry= or check the "
        "latency to the Redis nodes.",
        0.0,
        None,
        id="no-validity-left",
    ),
]


@pytest.mark.parametrize(
    ("replies", "fanout_ms", "kind", "message", "retry_after", "nodes"), GIVE_UP_CASES
)
def test_a_failed_try_raises_the_same_error_word_for_word(
    replies: tuple[Any, ...],
    fanout_ms: int,
    kind: type[LockNotAcquired],
    message: str,
    retry_after: float,
    nodes: tuple[int, ...] | None,
) -> None:
    clock = FakeClock()
    flow = flows.acquire(
        MutexOptions(expiry=1.0),
        flows.Target("invoice:42", "invoice:42", "v1", 5),
        now_ms=clock(),
        tries=1,
        timeout_ms=None,
        randrange=lambda lo, hi: lo,
    )
    with pytest.raises(LockNotAcquired) as caught:
        Driver(clock, fanout_ms=fanout_ms).run(flow, [replies])
    error = caught.value
    assert type(error) is kind
    assert str(error) == message
    assert (error.name, error.attempts, error.retry_after) == ("invoice:42", 1, retry_after)
    if nodes is not None:
        assert isinstance(error, LockTaken)
        assert error.nodes == nodes
        assert error.args == ("invoice:42", message, 1, retry_after, nodes)


TRY_CASES = [
    pytest.param((OK, OK, OK, taken(900), MISSING), 5, {}, id="won"),
    pytest.param((OK, OK, OK, taken(900), MISSING), 5, {"fencing": True}, id="won-fenced"),
    pytest.param((OK, err(1), err(2), err(3), OK), 5, {}, id="unreachable"),
    *[pytest.param(case.values[0], case.values[1], {}, id=case.id) for case in GIVE_UP_CASES],
]


@pytest.mark.parametrize(("replies", "fanout_ms", "options"), TRY_CASES)
def test_try_acquire_is_one_try_of_acquire_without_its_error(
    replies: tuple[Any, ...], fanout_ms: int, options: dict[str, Any]
) -> None:
    """try_lock()'s flow sends what acquire_token(tries=1) sends, wins what it wins and fails
    as it fails, but returns None for a lost try instead of building the error (unless asked)."""
    opts = MutexOptions(expiry=1.0, **options)
    target = flows.Target("invoice:42", "invoice:42", "v1", 5)
    outcomes: dict[str, tuple[Any, list[Any]]] = {}
    for kind in ("acquire", "try", "try-loud"):
        clock = FakeClock()
        if kind == "acquire":
            flow: Generator[Any, Any, Any] = flows.acquire_token(
                opts, target, now_ms=clock(), tries=1, timeout_ms=None, randrange=lambda lo, hi: lo
            )
        else:
            flow = flows.try_acquire(opts, target, quiet=kind == "try")
        driver = Driver(clock, fanout_ms=fanout_ms)
        try:
            result: Any = driver.run(flow, [replies])
        except LockNotAcquired as exc:
            result = (type(exc), str(exc), exc.args)
        outcomes[kind] = (result, driver.effects)
    sent, tried, loud = outcomes["acquire"], outcomes["try"], outcomes["try-loud"]
    assert tried[1] == loud[1] == sent[1]  # the same fan-outs, release and fence included
    assert loud[0] == sent[0]
    lost = isinstance(sent[0], tuple) and sent[0][0] is not QuorumUnreachable
    assert tried[0] == (None if lost else sent[0])


def test_errors_that_make_a_quorum_impossible_stop_retrying() -> None:
    clock = FakeClock()
    driver = Driver(clock)
    with pytest.raises(QuorumUnreachable) as caught:
        driver.run(acquire(clock, 3, tries=32), [(OK, err(1), err(2))])
    assert caught.value.attempts == 1
    assert [e.node for e in caught.value.errors] == [1, 2]
    assert [type(e) for e in driver.effects] == [FanOut, FanOut]  # acquire, release; no sleep


def test_tries_and_delays_follow_the_options() -> None:
    clock = FakeClock()
    driver = Driver(clock)
    calls: list[int] = []

    def delay(attempt: int) -> float:
        calls.append(attempt)
        return 0.1 * attempt

    with pytest.raises(LockTaken):
        driver.run(
            acquire(clock, 3, tries=4, retry_delay_func=delay),
            [(TAKEN_5S, TAKEN_5S, OK)] * 4,
        )
    assert calls == [1, 2, 3]
    sleeps = [e.ms for e in driver.effects if isinstance(e, Sleep)]
    assert sleeps == [100, 200, 300]


def test_timeout_bounds_unlimited_tries() -> None:
    clock = FakeClock()
    start = clock()
    driver = Driver(clock)
    with pytest.raises(LockTimeout) as caught:
        driver.run(
            acquire(clock, 3, tries=None, timeout_ms=1000, retry_delay=0.1),
            [(TAKEN_5S, TAKEN_5S, OK)] * 100,
        )
    assert clock() - start <= 1000
    assert caught.value.attempts >= 5
    acquires = [e for e in driver.effects if isinstance(e, FanOut) and e.op is Op.ACQUIRE]
    assert all(e.deadline_ms is not None and e.deadline_ms <= 1000 for e in acquires)


def test_tries_running_out_before_timeout_raise_the_tries_outcome() -> None:
    clock = FakeClock()
    driver = Driver(clock)
    with pytest.raises(LockTaken):
        driver.run(
            acquire(clock, 3, tries=2, timeout_ms=60_000, retry_delay=0.01),
            [(TAKEN_5S, TAKEN_5S, OK)] * 2,
        )


def test_fail_fast_asks_the_transport_to_stop_at_the_quorum() -> None:
    clock = FakeClock()
    driver = Driver(clock)
    driver.run(acquire(clock, 5, fail_fast=True), [(OK, OK, OK, None, None)])
    assert driver.effects[0].stop_at == 3


def extend(
    clock: FakeClock, until_ms: int | None, **opts: Any
) -> Generator[Any, Tally | None, flows.Extended]:
    return flows.extend(
        MutexOptions(**opts),
        flows.Target("job", "job", "v1", 3),
        ttl_ms=2000,
        now_ms=clock(),
        until_ms=until_ms,
    )


def test_extend_refuses_without_touching_a_key_once_validity_ran_out() -> None:
    clock = FakeClock()
    driver = Driver(clock)
    outcome = driver.run(extend(clock, until_ms=clock() - 1), [])
    assert outcome == flows.Extended(None)
    assert driver.effects == []


def test_extend_with_set_nx_tries_even_after_expiry() -> None:
    clock = FakeClock()
    driver = Driver(clock, scripted=Op.EXTEND)
    expired_at = clock() - 1  # the local validity ran out 1 ms ago
    outcome = driver.run(
        extend(clock, until_ms=expired_at, set_nx_on_extend=True), [(OK, OK, MISSING)]
    )
    assert [e.op for e in driver.effects] == [Op.EXTEND]
    assert driver.effects[0].set_nx is True
    assert outcome.until_ms is not None
    assert outcome.until_ms > clock()


def test_extend_without_local_validity_lets_the_nodes_decide() -> None:
    clock = FakeClock()
    driver = Driver(clock, scripted=Op.EXTEND)
    outcome = driver.run(extend(clock, until_ms=None), [(OK, OK, MISSING)])
    assert [e.op for e in driver.effects] == [Op.EXTEND]
    assert driver.effects[0].set_nx is False
    assert outcome.until_ms is not None


@pytest.mark.parametrize(
    ("replies", "gone"),
    [
        pytest.param((MISSING, TAKEN_5S, OK), True, id="a-quorum-says-not-ours"),
        pytest.param((OK, err(1), err(2)), False, id="nodes-failing-is-not-proof"),
    ],
)
def test_failed_extension_says_whether_the_lock_is_gone(
    replies: tuple[Any, ...], gone: bool
) -> None:
    clock = FakeClock()
    outcome = Driver(clock, scripted=Op.EXTEND).run(extend(clock, clock() + 1000), [replies])
    assert outcome.until_ms is None
    assert outcome.gone is gone


def test_renewal_schedule_and_loss() -> None:
    assert renewal.next_extension_ms(3000, 0, lambda lo, hi: lo) == 1000
    assert renewal.next_extension_ms(3000, 0, lambda lo, hi: hi - 1) == 900
    assert renewal.retry_or_lost_ms(100, 1000, 3000, gone=False) == 400
    assert renewal.retry_or_lost_ms(900, 1000, 3000, gone=False) == 1000
    assert renewal.retry_or_lost_ms(1000, 1000, 3000, gone=False) is None
    assert renewal.retry_or_lost_ms(100, 1000, 3000, gone=True) is None
    assert renewal.early_ms(1000) == 33  # a tenth of the period for short locks
    assert renewal.early_ms(30_000) == 100  # never more than 100 ms


def test_retry_after_needs_the_quorum_th_expiry() -> None:
    tally = Tally(
        (NodeReply(Status.TAKEN, 3000), NodeReply(Status.TAKEN, 1000), MISSING, err(3), None),
        0,
        1,
    )
    # 5 nodes, quorum 3: one node free (failed nodes do not count), two must expire.
    assert flows.retry_after_ms(tally, 5) == 3000
    unknown = Tally((NodeReply(Status.TAKEN, None), TAKEN_5S, MISSING, err(3), None), 0, 1)
    assert flows.retry_after_ms(unknown, 5) is None  # one TTL unknown (no expiry)
    tally = Tally((NodeReply(Status.TAKEN, 3000), NodeReply(Status.TAKEN, 1000), MISSING), 0, 1)
    assert flows.retry_after_ms(tally, 3) == 1000
