"""Properties of the pure Redlock flows, driven with synthetic replies and a fake clock.

The flows in ``redsync_core._algorithm.flows`` are generators: they yield effects and receive a
``Tally`` per fan-out. Here Hypothesis plays every node (OK, TAKEN with a TTL, MISSING, a
NodeError, or no answer) and every latency, and a ``FakeClock`` moves only with the fan-outs'
elapsed time and the retry sleeps. Checked for any mix:

- quorum is a strict majority;
- the validity never exceeds the expiry and a success always has validity left;
- no success once the validity ran out;
- a failed attempt is followed by a RELEASE fan-out of the same key and value to every node that
  did not answer TAKEN (a TAKEN node holds another value), and by none when all said TAKEN;
- ``tries`` is respected (early attempts woken by a notice or the holder's expiry are not
  tries), and ``timeout`` bounds the whole call (plus the final release);
- the outcome is the documented one: QuorumUnreachable, LockTaken, LockTimeout, LockNotAcquired.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from redsync_core import (
    ConfigurationError,
    LockError,
    LockNotAcquired,
    LockTaken,
    LockTimeout,
    MutexOptions,
    NodeError,
    QuorumUnreachable,
)
from redsync_core._algorithm import flows
from redsync_core._algorithm.effects import FanOut, NodeReply, Op, Sleep, Status, Tally
from redsync_core._algorithm.timing import drift_ms, fanout_deadline_ms, quorum, validity_ms
from redsync_core.testing import FakeClock

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

REPLY = st.one_of(
    st.just(NodeReply(Status.OK)),
    st.builds(
        NodeReply,
        st.just(Status.TAKEN),
        st.one_of(st.none(), st.integers(0, 60_000)),
    ),
    st.just(NodeReply(Status.MISSING)),
    st.builds(NodeError, st.integers(0, 8), st.just("redis://127.0.0.1:1/0"), st.text(max_size=20)),
    st.none(),  # not waited for (fail fast)
)


def _options(**kwargs: Any) -> MutexOptions | None:
    """Options as the core takes them, or None for an expiry within its drift allowance (the
    core refuses such a lock: it could never be valid)."""
    try:
        return MutexOptions(**kwargs)
    except ConfigurationError:
        return None


OPTIONS = st.builds(
    _options,
    expiry=st.integers(1, 20_000).map(lambda ms: ms / 1000),
    tries=st.one_of(st.none(), st.integers(1, 6)),
    retry_delay=st.one_of(st.none(), st.integers(0, 300).map(lambda ms: ms / 1000)),
    drift_factor=st.sampled_from([0.0, 0.01, 0.1, 0.5]),
    timeout_factor=st.sampled_from([0.0, 0.01, 0.05, 0.5]),
    fail_fast=st.booleans(),
    wake_on_release=st.booleans(),
).filter(lambda opts: opts is not None)


@dataclass
class Step:
    effect: FanOut | Sleep
    at_ms: int  # fake clock when the effect was yielded
    tally: Tally | None = None


def drive(
    flow: Generator[Any, Tally | None, Any], clock: FakeClock, data: st.DataObject, nodes: int
) -> tuple[Any, BaseException | None, list[Step]]:
    """Run ``flow`` to its end; Hypothesis answers every fan-out. Return (value, error, steps)."""
    steps: list[Step] = []
    reply: Tally | None = None
    while True:
        try:
            effect = flow.send(reply)
        except StopIteration as done:
            return done.value, None, steps
        except LockError as exc:
            return None, exc, steps
        step = Step(effect, clock())
        steps.append(step)
        assert len(steps) < 200, "the flow does not end"
        if isinstance(effect, Sleep):
            assert effect.ms >= 0
            clock.now_ms += effect.ms
            reply = None
            continue
        replies = tuple(data.draw(st.lists(REPLY, min_size=nodes, max_size=nodes)))
        # The transport never runs past the fan-out's deadline (a little beyond without one).
        limit = effect.deadline_ms if effect.deadline_ms is not None else 3 * max(effect.ttl_ms, 1)
        elapsed = data.draw(st.integers(0, limit))
        started = clock()
        clock.now_ms += elapsed
        reply = step.tally = Tally(replies, started, clock())


def errors(tally: Tally) -> int:
    return sum(1 for r in tally.replies if isinstance(r, NodeError))


@given(st.integers(1, 100))
def test_quorum_is_a_strict_majority(n: int) -> None:
    q = quorum(n)
    assert 2 * q > n  # two quorums always share a node
    assert 2 * (q - 1) <= n  # and no smaller number would do


@SETTINGS
@given(
    opts=OPTIONS,
    nodes=st.integers(1, 7),
    timeout_ms=st.one_of(st.none(), st.integers(0, 3_000)),
    data=st.data(),
)
def test_acquire_properties(
    opts: MutexOptions, nodes: int, timeout_ms: int | None, data: st.DataObject
) -> None:
    if opts.tries is None and timeout_ms is None:
        timeout_ms = 2_000  # unlimited tries need a timeout to end
    clock = FakeClock(start_ms=10_000)
    start = clock()
    target = flows.Target("orders:42", "orders:42", "our-value", nodes)
    flow = flows.acquire(
        opts,
        target,
        now_ms=start,
        tries=opts.tries,
        timeout_ms=timeout_ms,
        randrange=lambda lo, hi: data.draw(st.integers(lo, hi - 1)),
    )
    until, error, steps = drive(flow, clock, data, nodes)
    need = quorum(nodes)
    ttl = opts.expiry_ms
    node_deadline = fanout_deadline_ms(ttl, opts.timeout_factor)
    acquires = [s for s in steps if isinstance(s.effect, FanOut) and s.effect.op is Op.ACQUIRE]

    for i, step in enumerate(steps):
        effect = step.effect
        if isinstance(effect, FanOut) and effect.op is Op.ACQUIRE:
            assert (effect.key, effect.value, effect.ttl_ms) == ("orders:42", "our-value", ttl)
            assert effect.stop_at == (need if opts.fail_fast else None)
            if node_deadline is not None:
                assert effect.deadline_ms is not None
                assert effect.deadline_ms <= node_deadline
            if timeout_ms is not None:
                # Every attempt starts before the timeout and is cut at it.
                assert step.at_ms < start + max(timeout_ms, 1)
                assert effect.deadline_ms is not None
                assert step.at_ms + effect.deadline_ms <= start + max(timeout_ms, 1)
            last = i == len(steps) - 1
            if not (last and error is None):
                # A failed attempt: release where our value may be, at once.
                mine = {
                    n
                    for n, r in enumerate(step.tally.replies)  # type: ignore[union-attr]
                    if not (isinstance(r, NodeReply) and r.status is Status.TAKEN)
                }
                nxt = steps[i + 1].effect if not last else None
                if mine:
                    assert isinstance(nxt, FanOut)
                    assert nxt.op is Op.RELEASE
                    assert (nxt.key, nxt.value) == ("orders:42", "our-value")
                    assert set(nxt.only if nxt.only is not None else range(nodes)) == mine
                else:
                    assert not (isinstance(nxt, FanOut) and nxt.op is Op.RELEASE)
        if isinstance(effect, Sleep):
            low, high = (
                (50, 249) if opts.retry_delay is None else (round(opts.retry_delay * 1000),) * 2
            )
            if opts.wake_on_release:
                assert effect.ms <= high  # may end early; never later than the delay
                if effect.key is not None:
                    assert effect.key == "orders:42"
                    assert effect.since_ms == acquires_before(steps, i)[-1].tally.started_ms  # type: ignore[union-attr]
            else:
                assert effect.key is None
                assert low <= effect.ms <= high

    # Early attempts (woken before the delay ended) are not tries: only without wake-ups is
    # every attempt a try.
    tries_made = len(acquires) if not opts.wake_on_release else None
    if opts.tries is not None and tries_made is not None:
        assert tries_made <= opts.tries
    if timeout_ms is not None:
        # The whole call: the timeout, then at most one release fan-out.
        release_ms = node_deadline if node_deadline is not None else 3 * max(ttl, 1)
        assert clock() <= start + max(timeout_ms, 1) + release_ms

    last_tally = acquires[-1].tally
    assert last_tally is not None
    valid = validity_ms(ttl, last_tally.elapsed_ms, opts.drift_factor)
    if error is None:
        assert steps[-1] is acquires[-1], "success ends the flow at once"
        assert last_tally.ok >= need
        assert valid > 0
        assert until == last_tally.finished_ms + valid
        assert until > clock(), "a success always has validity left"
        # The validity never exceeds the expiry counted from when the SET was sent.
        assert until <= last_tally.started_ms + ttl - drift_ms(ttl, opts.drift_factor)
        assert last_tally.elapsed_ms < ttl - drift_ms(ttl, opts.drift_factor)
        return

    assert isinstance(error, LockNotAcquired)
    if tries_made is not None:
        assert error.attempts == tries_made
    else:
        assert error.attempts <= len(acquires)
        assert opts.tries is None or error.attempts <= opts.tries
    if errors(last_tally) > nodes - need:
        assert type(error) is QuorumUnreachable
    elif opts.tries is not None and len(acquires) >= opts.tries:
        if len(last_tally.taken) >= need:
            assert type(error) is LockTaken
        else:
            assert type(error) is LockNotAcquired
    else:
        assert type(error) is LockTimeout
    # No partial acquisition left behind: the flow ended right after a release, or after an
    # attempt that every node refused (nothing of ours anywhere).
    final = steps[-1]
    assert isinstance(final.effect, FanOut)
    if final.effect.op is Op.ACQUIRE:
        assert final.tally is not None
        assert len(final.tally.taken) == nodes
    else:
        assert final.effect.op is Op.RELEASE


def acquires_before(steps: list[Step], i: int) -> list[Step]:
    return [s for s in steps[:i] if isinstance(s.effect, FanOut) and s.effect.op is Op.ACQUIRE]


@SETTINGS
@given(
    expiry_ms=st.integers(1, 20_000),
    drift=st.sampled_from([0.0, 0.01, 0.1]),
    set_nx=st.booleans(),
    nodes=st.integers(1, 7),
    left_ms=st.one_of(st.none(), st.integers(-5_000, 20_000)),
    data=st.data(),
)
def test_extend_properties(
    expiry_ms: int,
    drift: float,
    set_nx: bool,
    nodes: int,
    left_ms: int | None,
    data: st.DataObject,
) -> None:
    opts = _options(expiry=expiry_ms / 1000, drift_factor=drift, set_nx_on_extend=set_nx)
    assume(opts is not None)  # an expiry within its drift allowance is refused
    assert opts is not None
    clock = FakeClock()
    start = clock()
    until_ms = None if left_ms is None else start + left_ms
    target = flows.Target("n", "n", "v", nodes)
    flow = flows.extend(opts, target, ttl_ms=expiry_ms, now_ms=start, until_ms=until_ms)
    outcome, error, steps = drive(flow, clock, data, nodes)
    assert error is None
    if not set_nx and until_ms is not None and start >= until_ms:
        assert steps == [], "an expired lock is never extended (no key touched)"
        assert outcome.until_ms is None
        return
    assert len(steps) == 1
    effect, tally = steps[0].effect, steps[0].tally
    assert isinstance(effect, FanOut)
    assert effect.op is Op.EXTEND
    assert effect.set_nx == set_nx
    assert tally is not None
    valid = validity_ms(expiry_ms, tally.elapsed_ms, drift)
    if tally.ok >= quorum(nodes) and valid > 0:
        assert outcome.until_ms == tally.finished_ms + valid
        assert outcome.until_ms <= tally.started_ms + expiry_ms
    else:
        assert outcome.until_ms is None


@SETTINGS
@given(nodes=st.integers(1, 7), data=st.data())
def test_release_needs_a_quorum(nodes: int, data: st.DataObject) -> None:
    clock = FakeClock()
    flow = flows.release(MutexOptions(), flows.Target("n", "n", "v", nodes))
    released, error, steps = drive(flow, clock, data, nodes)
    assert error is None
    assert len(steps) == 1
    effect, tally = steps[0].effect, steps[0].tally
    assert isinstance(effect, FanOut)
    assert effect.op is Op.RELEASE
    assert tally is not None
    assert released == (tally.ok >= quorum(nodes))
