"""wake_on_release in the pure acquire flow: what it waits for, and that the schedule stays.

Driven by hand with a fake clock: a ``Sleep`` is answered with ``Woke`` at a chosen time (a
notice arrived) or at its end.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from redsync_core import LockTaken, LockTimeout, MutexOptions, NodeError, QuorumUnreachable
from redsync_core._algorithm import flows
from redsync_core._algorithm.effects import (
    OK,
    FanOut,
    NodeReply,
    Op,
    Sleep,
    Status,
    Tally,
    Waiter,
    Woke,
)
from redsync_core.testing import FakeClock

HELD_60S = NodeReply(Status.TAKEN, 60_000)
#: The attempts of a mutex, a semaphore and a multi-mutex; their releases.
ATTEMPTS = (Op.ACQUIRE, Op.ACQUIRE_ANY, Op.ACQUIRE_ALL)
RELEASES = (Op.RELEASE, Op.RELEASE_ALL)


class Driver:
    """Answers every attempt with ``replies`` in turn (then the last one), releases with OK,
    and each Sleep with a wake-up after ``notices[k]`` ms (k-th sleep) or at its end."""

    def __init__(
        self,
        clock: FakeClock,
        replies: list[tuple[Any, ...]],
        notices: list[int],
        named: bool = False,
    ):
        self.clock = clock
        self.named = named  # the notices name the waiter (a release popped it off the queue)
        self.replies = replies
        self.notices = list(notices)
        self.effects: list[Any] = []

    def run(self, flow: Generator[Any, Any, Any]) -> Any:
        reply: Any = None
        sent = 0
        while True:
            try:
                effect = flow.send(reply)
            except StopIteration as done:
                return done.value
            self.effects.append(effect)
            if isinstance(effect, Sleep):
                notice = self.notices.pop(0) if self.notices else None
                waited = effect.ms if notice is None else min(effect.ms, notice)
                self.clock.advance(waited / 1000)
                reply = Woke(self.clock(), self.named and notice is not None)
                continue
            started = self.clock()
            self.clock.advance(0.001)
            if effect.op in ATTEMPTS:
                canned = self.replies[min(sent, len(self.replies) - 1)]
                sent += 1
            else:
                canned = (OK,) * 3
            reply = Tally(canned, started, self.clock())

    def ops(self) -> list[str]:
        return [
            f"sleep {e.ms}" if isinstance(e, Sleep) else e.op.value
            for e in self.effects
            if isinstance(e, Sleep) or e.op not in RELEASES
        ]


def acquire(clock: FakeClock, **opts: Any) -> Generator[Any, Any, int]:
    tries = opts.pop("tries", 3)
    timeout_ms = opts.pop("timeout_ms", None)
    waiter = opts.pop("waiter", None)
    return flows.acquire(
        MutexOptions(**opts),
        flows.Target("job", "job", "v1", 3),
        now_ms=clock(),
        tries=tries,
        timeout_ms=timeout_ms,
        randrange=lambda lo, hi: lo,
        waiter=waiter,
    )


def test_a_notice_brings_the_attempt_forward() -> None:
    clock = FakeClock()
    driver = Driver(clock, [(HELD_60S,) * 3, (OK, OK, OK)], notices=[300])
    driver.run(acquire(clock, retry_delay=5.0))
    assert driver.ops() == ["acquire", "sleep 5000", "acquire"]
    sleep = driver.effects[1]
    assert sleep.key == "job"
    assert sleep.since_ms == clock() - 300 - 1 - 1  # the failed attempt's start


def test_an_early_attempt_lost_waits_the_rest_of_the_same_delay_and_is_no_try() -> None:
    clock = FakeClock()
    start = clock()
    driver = Driver(clock, [(HELD_60S,) * 3], notices=[300, 200])
    with pytest.raises(LockTaken) as taken:
        driver.run(acquire(clock, retry_delay=1.0, tries=2))
    # try 1, woken at 300 ms: early attempt lost; woken at +200 ms: early attempt lost;
    # the rest of the delay (1000 - 300 - 200 - the two attempts' 1 ms); try 2.
    assert driver.ops() == ["acquire", "sleep 1000", "acquire", "sleep 699", "acquire",
                            "sleep 498", "acquire"]  # fmt: skip
    assert taken.value.attempts == 2  # the early attempts used up no try
    assert clock() - start >= 1000  # the delay was waited out in full


def test_the_holders_expiry_ends_the_wait_early() -> None:
    clock = FakeClock()
    expiring = NodeReply(Status.TAKEN, 700)
    driver = Driver(clock, [(expiring, expiring, HELD_60S), (OK, OK, OK)], notices=[])
    driver.run(acquire(clock, retry_delay=5.0))
    # 2 of 3 keys expire in 700 ms: a quorum is free then (plus 1 ms), far before 5 s.
    assert driver.ops() == ["acquire", "sleep 701", "acquire"]


def test_an_unknown_or_long_expiry_keeps_the_delay() -> None:
    clock = FakeClock()
    forever = NodeReply(Status.TAKEN, None)
    driver = Driver(clock, [(forever, forever, OK), (OK, OK, OK)], notices=[])
    driver.run(acquire(clock, retry_delay=0.2))
    assert driver.ops() == ["acquire", "sleep 200", "acquire"]


def test_without_wake_on_release_the_sleep_cannot_be_cut_short() -> None:
    clock = FakeClock()
    driver = Driver(clock, [(HELD_60S,) * 3, (OK, OK, OK)], notices=[])
    driver.run(acquire(clock, retry_delay=0.2, wake_on_release=False))
    sleeps = [e for e in driver.effects if isinstance(e, Sleep)]
    assert [(s.ms, s.key) for s in sleeps] == [(200, None)]


def test_a_try_every_node_refused_sends_no_release() -> None:
    clock = FakeClock()
    driver = Driver(clock, [(HELD_60S,) * 3], notices=[])
    with pytest.raises(LockTaken):
        driver.run(acquire(clock, retry_delay=0.01, tries=2))
    assert not [e for e in driver.effects if isinstance(e, FanOut) and e.op is Op.RELEASE]


def test_the_release_after_a_failed_try_skips_the_nodes_held_by_another() -> None:
    clock = FakeClock()
    driver = Driver(clock, [(OK, HELD_60S, HELD_60S)], notices=[])
    with pytest.raises(LockTaken):
        driver.run(acquire(clock, tries=1))
    releases = [e for e in driver.effects if isinstance(e, FanOut) and e.op is Op.RELEASE]
    assert [r.only for r in releases] == [frozenset({0})]


def test_early_attempts_never_run_past_the_timeout() -> None:
    clock = FakeClock()
    start = clock()
    driver = Driver(clock, [(HELD_60S,) * 3], notices=[10] * 1000)
    with pytest.raises(LockTimeout):
        driver.run(acquire(clock, retry_delay=0.1, tries=None, timeout_ms=1000))
    assert clock() - start <= 1000 + 1


def test_a_waiter_that_just_arrived_lets_older_waiters_try_first() -> None:
    clock = FakeClock()
    driver = Driver(clock, [(HELD_60S,) * 3, (OK, OK, OK)], notices=[2])
    driver.run(acquire(clock, retry_delay=5.0))
    # Woken 3 ms into its lock() call: it waits flows.YOUNG_DEFER_MS before trying.
    assert driver.ops() == ["acquire", "sleep 5000", f"sleep {flows.YOUNG_DEFER_MS}", "acquire"]
    old = FakeClock()
    driver = Driver(old, [(HELD_60S,) * 3, (OK, OK, OK)], notices=[flows.YOUNG_MS + 5])
    driver.run(acquire(old, retry_delay=5.0))
    assert driver.ops() == ["acquire", "sleep 5000", "acquire"]  # an older waiter tries at once


def test_a_waiter_named_by_the_notice_tries_at_once_however_young() -> None:
    clock = FakeClock()
    driver = Driver(clock, [(HELD_60S,) * 3, (OK, OK, OK)], notices=[2], named=True)
    driver.run(acquire(clock, retry_delay=5.0, waiter=Waiter("w.1", 0)))
    # The release popped it off the queue: no older waiter was woken, so no head start.
    assert driver.ops() == ["acquire", "sleep 5000", "acquire"]


def test_a_queued_waiter_leaves_the_queues_when_it_gives_up_not_when_nodes_fail() -> None:
    waiter = Waiter("w.1", 0)
    clock = FakeClock()
    driver = Driver(clock, [(HELD_60S,) * 3], notices=[])
    with pytest.raises(LockTaken):
        driver.run(acquire(clock, retry_delay=0.01, tries=2, waiter=waiter))
    assert [e.op for e in driver.effects if isinstance(e, FanOut)][-1] is Op.LEAVE
    failed = NodeError(1, "redis://x", "no reply")
    driver = Driver(clock, [(HELD_60S, failed, failed)], notices=[])
    with pytest.raises(QuorumUnreachable):
        driver.run(acquire(clock, retry_delay=0.01, tries=2, waiter=waiter))
    assert Op.LEAVE not in [e.op for e in driver.effects if isinstance(e, FanOut)]  # queues expire
