"""wake_on_release for semaphores and multi-mutexes, in the pure flows and the notice bookkeeping.

The flows are driven by hand with a fake clock (``test_wake_flow.Driver``): a semaphore waits
for a notice on any of its permits, a multi-mutex on any of its keys, and the schedule of the
mutex holds (an early attempt lost is no try and goes back to the rest of the same delay).
Then ``wait_any`` with notices injected as the reader thread or task would hear them: the
turns are taken per key, so two waiters of a semaphore woken by releases of two permits both go.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Generator
from typing import Any

import pytest
from test_wake_flow import HELD_60S, Driver

from redsync_core import LockTaken, LockTimeout, MutexOptions
from redsync_core._algorithm import family, flows
from redsync_core._algorithm.effects import OK, FanOut, NodeReply, Op, Sleep, Status
from redsync_core._transport.notices import AsyncNotices, SyncNotices
from redsync_core.testing import FakeClock

FULL = NodeReply(Status.TAKEN, 60_000)  # every permit held, the soonest expires in 60 s
PERMIT_0 = NodeReply(Status.OK, slot=0)
PERMITS = ("sem:0", "sem:1")
KEYS = ("a", "b", "c")


def acquire_permit(clock: FakeClock, **opts: Any) -> Generator[Any, Any, family.Permit]:
    tries = opts.pop("tries", 3)
    timeout_ms = opts.pop("timeout_ms", None)
    return family.acquire_permit(
        MutexOptions(**opts),
        flows.Target("sem", "sem", "v1", 3),
        len(PERMITS),
        now_ms=clock(),
        tries=tries,
        timeout_ms=timeout_ms,
        randrange=lambda lo, hi: lo,
        waiter="token",
    )


def lock_multi(clock: FakeClock, **opts: Any) -> Generator[Any, Any, flows.Acquired]:
    tries = opts.pop("tries", 3)
    flow = flows.acquire_token(
        MutexOptions(**opts),
        flows.Target("a,b,c", "a", "v1", 3, KEYS),
        now_ms=clock(),
        tries=tries,
        timeout_ms=None,
        randrange=lambda lo, hi: lo,
        waiter="token",
        queue=False,  # as MultiMutex drives it
    )
    return family.over_keys(flow, KEYS)


def sleeps(driver: Driver) -> list[Sleep]:
    return [e for e in driver.effects if isinstance(e, Sleep)]


# --- semaphores -------------------------------------------------------------------------------


def test_a_notice_for_any_permit_brings_the_attempt_forward() -> None:
    clock = FakeClock()
    driver = Driver(clock, [(FULL,) * 3, (PERMIT_0,) * 3], notices=[300])
    permit = driver.run(acquire_permit(clock, retry_delay=5.0))
    assert permit.slot == 0
    assert driver.ops() == ["acquire_any", "sleep 5000", "acquire_any"]
    (sleep,) = sleeps(driver)
    assert (sleep.key, sleep.keys) == ("sem:0", PERMITS)  # woken by a release of any permit
    assert sleep.nodes == frozenset({0, 1, 2})  # the nodes the attempt found full
    assert sleep.waiter == "token"


def test_an_early_permit_attempt_lost_waits_the_rest_of_the_same_delay_and_is_no_try() -> None:
    clock = FakeClock()
    start = clock()
    driver = Driver(clock, [(FULL,) * 3], notices=[300, 200])
    with pytest.raises(LockTaken) as taken:
        driver.run(acquire_permit(clock, retry_delay=1.0, tries=2))
    # try 1; woken at 300 ms: an early attempt, lost; woken 200 ms later: lost again; the rest
    # of the delay (1000 - 300 - 200 - the two attempts' 1 ms each); try 2.
    assert driver.ops() == ["acquire_any", "sleep 1000", "acquire_any", "sleep 699",
                            "acquire_any", "sleep 498", "acquire_any"]  # fmt: skip
    assert taken.value.attempts == 2  # the early attempts used up no try
    assert clock() - start >= 1000  # the delay was waited out in full
    attempts = [e for e in driver.effects if isinstance(e, FanOut) and e.op is Op.ACQUIRE_ANY]
    assert [a.early for a in attempts] == [False, True, True, False]  # hooks count the others
    released = [e for e in driver.effects if isinstance(e, FanOut) and e.op is Op.RELEASE_ALL]
    assert released == []  # every node was full: none holds our value, a try is one round trip


def test_the_expiry_of_a_permit_on_a_quorum_ends_the_wait_early() -> None:
    clock = FakeClock()
    expiring = NodeReply(Status.TAKEN, 700)
    driver = Driver(clock, [(expiring, expiring, FULL), (PERMIT_0,) * 3], notices=[])
    driver.run(acquire_permit(clock, retry_delay=5.0))
    assert driver.ops() == ["acquire_any", "sleep 701", "acquire_any"]


def test_without_wake_on_release_a_permit_wait_cannot_be_cut_short() -> None:
    clock = FakeClock()
    driver = Driver(clock, [(FULL,) * 3, (PERMIT_0,) * 3], notices=[])
    driver.run(acquire_permit(clock, retry_delay=0.2, wake_on_release=False))
    assert [(s.ms, s.key, s.keys) for s in sleeps(driver)] == [(200, None, ())]


def test_early_permit_attempts_never_run_past_the_timeout() -> None:
    clock = FakeClock()
    start = clock()
    driver = Driver(clock, [(FULL,) * 3], notices=[10] * 1000)
    with pytest.raises(LockTimeout):
        driver.run(acquire_permit(clock, retry_delay=0.1, tries=None, timeout_ms=1000))
    assert clock() - start <= 1000 + 1


def test_a_permit_waiter_that_just_arrived_lets_older_waiters_try_first() -> None:
    clock = FakeClock()
    driver = Driver(clock, [(FULL,) * 3, (PERMIT_0,) * 3], notices=[2])
    driver.run(acquire_permit(clock, retry_delay=5.0))
    assert driver.ops() == ["acquire_any", "sleep 5000", f"sleep {flows.YOUNG_DEFER_MS}",
                            "acquire_any"]  # fmt: skip


# --- multi-mutexes ------------------------------------------------------------------------------


def test_a_multi_mutex_waits_for_a_notice_on_any_of_its_keys() -> None:
    clock = FakeClock()
    driver = Driver(clock, [(HELD_60S,) * 3, (OK,) * 3], notices=[300])
    driver.run(lock_multi(clock, retry_delay=5.0))
    assert driver.ops() == ["acquire_all", "sleep 5000", "acquire_all"]
    (sleep,) = sleeps(driver)
    assert (sleep.key, sleep.keys, sleep.waiter) == ("a", KEYS, "token")


def test_an_early_multi_mutex_attempt_lost_is_no_try() -> None:
    clock = FakeClock()
    driver = Driver(clock, [(HELD_60S,) * 3], notices=[300])
    with pytest.raises(LockTaken) as taken:
        driver.run(lock_multi(clock, retry_delay=1.0, tries=2))
    assert driver.ops() == ["acquire_all", "sleep 1000", "acquire_all", "sleep 699",
                            "acquire_all"]  # fmt: skip
    assert taken.value.attempts == 2


def test_a_multi_mutex_without_wake_on_release_sleeps_plainly() -> None:
    clock = FakeClock()
    driver = Driver(clock, [(HELD_60S,) * 3, (OK,) * 3], notices=[])
    driver.run(lock_multi(clock, retry_delay=0.2, wake_on_release=False))
    assert [(s.ms, s.key, s.keys) for s in sleeps(driver)] == [(200, None, ())]


# --- wait_any: the turns, per key ---------------------------------------------------------------


def test_releases_of_two_permits_wake_two_waiters_oldest_first() -> None:
    clock = FakeClock()
    notices = SyncNotices([], clock)
    woken: list[str] = []
    lock = threading.Lock()

    def wait(name: str) -> None:
        if notices.wait_any(PERMITS, clock(), 10_000, None, name):
            with lock:
                woken.append(name)

    threads = [threading.Thread(target=wait, args=(name,)) for name in ("old", "young")]
    threads[0].start()  # "old" joins first: it is the older waiter
    assert _eventually(lambda: _asleep(notices, PERMITS[:1]) == 1)
    threads[1].start()
    assert _eventually(lambda: _asleep(notices, PERMITS[:1]) == 2)
    clock.advance(0.01)
    notices._heard("sem:1", 0, b"release-1")  # one release: the oldest waiter goes
    assert _eventually(lambda: woken == ["old"])
    assert woken == ["old"]  # and only it: "young" has no turn
    notices._heard("sem:0", 1, b"release-2")  # another permit: the turn of that key
    assert _eventually(lambda: woken == ["old", "young"])
    for thread in threads:
        thread.join(5)
    notices.close()


async def test_async_releases_of_two_permits_wake_two_waiters_oldest_first() -> None:
    clock = FakeClock()
    notices = AsyncNotices([], clock)
    woken: list[str] = []

    async def wait(name: str) -> None:
        if await notices.wait_any(PERMITS, clock(), 10_000, None, name):
            woken.append(name)

    tasks = []
    for name in ("old", "young"):
        tasks.append(asyncio.ensure_future(wait(name)))
        await asyncio.sleep(0)  # it joins the keys before the next one
    clock.advance(0.01)
    notices._heard("sem:1", 0, b"release-1")
    for _ in range(5):
        await asyncio.sleep(0)
    assert woken == ["old"]
    notices._heard("sem:0", 1, b"release-2")
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert woken == ["old", "young"]
    await notices.close()


def test_a_waiter_on_several_keys_gets_a_turn_passed_on_by_a_single_key_waiter() -> None:
    clock = FakeClock()
    notices = SyncNotices([], clock)
    results: dict[str, bool] = {}
    thread = threading.Thread(
        target=lambda: results.update(multi=notices.wait_any(KEYS, clock(), 10_000, None, "m"))
    )
    single = threading.Thread(
        target=lambda: results.update(single=notices.wait("b", clock(), 10_000, None, "s"))
    )
    single.start()
    assert _eventually(lambda: _asleep(notices, ("b",)) == 1)
    thread.start()
    assert _eventually(lambda: _asleep(notices, ("b",)) == 2)
    clock.advance(0.01)
    notices._heard("b", 0, b"release-1")
    single.join(5)  # the older one has the turn; it gives up without the lock
    notices.leave("b", "s", won=False)
    thread.join(5)  # the turn went on to the waiter of several keys, which was woken for it
    assert results == {"single": True, "multi": True}
    notices.close()


def _asleep(notices: SyncNotices, keys: tuple[str, ...]) -> int:
    with notices._lock:
        return sum(len(notices._keys[k].asleep) for k in keys if k in notices._keys)


def _eventually(check: Any, within: float = 5.0) -> bool:
    done = threading.Event()
    for _ in range(int(within / 0.01)):
        if check():
            return True
        done.wait(0.01)
    return bool(check())
