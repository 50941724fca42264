"""``locked(..., limit=N)``: up to N decorated calls run at once, each holding a semaphore permit.

Sync and asyncio twins against real nodes: two calls of a limit-2 function run together and a
third is busy (``LockTaken``) or, with ``wait``, runs once a permit is given back; the permits
are free after the calls; a bad ``limit`` is refused when decorating.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from redsync_core import AsyncRedsync, ConfigurationError, LockTaken, Redsync

TIMEOUT = 30.0  # seconds any one step may take on a loaded machine


class Gauge:
    """How many calls are inside at once, and the most there ever were."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


def permits_held(rs: Redsync, name: str, limit: int) -> list[bool]:
    """Whether a quorum holds each permit key of the semaphore ``name``."""
    return [rs.inspect(f"{name}:{slot}").held for slot in range(limit)]


def test_two_calls_run_at_once_and_a_third_is_busy(rs: Redsync) -> None:
    gauges = {"pdf": Gauge(), "csv": Gauge()}
    entered = [threading.Event() for _ in range(3)]
    gates = [threading.Event() for _ in range(3)]
    gates[2].set()  # were the third call let in, it would return at once

    @rs.locked("report:{kind}", limit=2, expiry=10)
    def report(kind: str, n: int) -> int:
        with gauges[kind]:
            entered[n].set()
            assert gates[n].wait(TIMEOUT)
        return n

    results: list[int] = []
    workers = [
        threading.Thread(target=lambda n=n: results.append(report("pdf", n))) for n in (0, 1)
    ]
    for worker in workers:
        worker.start()
    try:
        assert entered[0].wait(TIMEOUT)
        assert entered[1].wait(TIMEOUT), "the second call did not run beside the first"
        assert gauges["pdf"].now == 2
        assert permits_held(rs, "report:pdf", 2) == [True, True]
        with pytest.raises(LockTaken) as caught:
            report("pdf", 2)
        assert not entered[2].is_set()
        assert "all 2 permits" in str(caught.value)
        assert caught.value.retry_after is not None
        assert report("csv", 2) == 2  # another name has its own permits
    finally:
        for gate in gates:
            gate.set()
        for worker in workers:
            worker.join(TIMEOUT)
    assert sorted(results) == [0, 1]
    assert gauges["pdf"].most == 2
    assert permits_held(rs, "report:pdf", 2) == [False, False], "a permit outlived its call"


def test_with_wait_a_third_call_runs_once_a_permit_is_given_back(rs: Redsync) -> None:
    gauge = Gauge()
    entered = [threading.Event() for _ in range(3)]
    gates = [threading.Event() for _ in range(3)]

    # An expiry longer than any wait here: only a free permit lets a call in, never an expired one.
    @rs.locked("queue", limit=2, wait=TIMEOUT, expiry=2 * TIMEOUT, retry_delay=0.05)
    def job(n: int) -> int:
        with gauge:
            entered[n].set()
            assert gates[n].wait(TIMEOUT)
        return n

    results: list[int] = []
    workers = [threading.Thread(target=lambda n=n: results.append(job(n))) for n in range(3)]
    try:
        for n in (0, 1):
            workers[n].start()
            assert entered[n].wait(TIMEOUT), f"call {n} did not run beside the others"
        assert gauge.now == 2
        workers[2].start()
        gates[0].set()
        assert entered[2].wait(TIMEOUT), "the waiting call never got the permit given back"
    finally:
        for gate in gates:
            gate.set()
        for worker in workers:
            if worker.ident is not None:  # started
                worker.join(TIMEOUT)
    assert sorted(results) == [0, 1, 2]
    assert gauge.most == 2, "more calls ran at once than the limit"


async def test_async_two_calls_run_at_once_and_a_third_is_busy(
    ars: AsyncRedsync, rs: Redsync
) -> None:
    gauges = {"pdf": Gauge(), "csv": Gauge()}
    entered = [asyncio.Event() for _ in range(3)]
    gates = [asyncio.Event() for _ in range(3)]
    gates[2].set()

    @ars.locked("areport:{kind}", limit=2, expiry=10)
    async def report(kind: str, n: int) -> int:
        with gauges[kind]:
            entered[n].set()
            await asyncio.wait_for(gates[n].wait(), TIMEOUT)
        return n

    tasks = [asyncio.create_task(report("pdf", n)) for n in (0, 1)]
    try:
        await asyncio.wait_for(entered[0].wait(), TIMEOUT)
        await asyncio.wait_for(entered[1].wait(), TIMEOUT)
        assert gauges["pdf"].now == 2
        assert await asyncio.to_thread(permits_held, rs, "areport:pdf", 2) == [True, True]
        with pytest.raises(LockTaken) as caught:
            await report("pdf", 2)
        assert not entered[2].is_set()
        assert "all 2 permits" in str(caught.value)
        assert await report("csv", 2) == 2
    finally:
        for gate in gates:
            gate.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
    assert sorted(results) == [0, 1]
    assert gauges["pdf"].most == 2
    assert await asyncio.to_thread(permits_held, rs, "areport:pdf", 2) == [False, False]


async def test_async_with_wait_a_third_call_runs_once_a_permit_is_given_back(
    rs: Redsync,
) -> None:
    gauge = Gauge()
    entered = [asyncio.Event() for _ in range(3)]
    gates = [asyncio.Event() for _ in range(3)]

    # Through the asyncio twin; an expiry longer than any wait here: only a free permit lets a
    # call in, never an expired one.
    @rs.locked("aqueue", limit=2, wait=TIMEOUT, expiry=2 * TIMEOUT, retry_delay=0.05)
    async def job(n: int) -> int:
        with gauge:
            entered[n].set()
            await asyncio.wait_for(gates[n].wait(), TIMEOUT)
        return n

    tasks = []
    try:
        for n in (0, 1):
            tasks.append(asyncio.create_task(job(n)))
            await asyncio.wait_for(entered[n].wait(), TIMEOUT)
        assert gauge.now == 2
        tasks.append(asyncio.create_task(job(2)))
        gates[0].set()
        await asyncio.wait_for(entered[2].wait(), TIMEOUT)
    finally:
        for gate in gates:
            gate.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
        await rs.asyncio().close()
    assert sorted(results) == [0, 1, 2]
    assert gauge.most == 2, "more calls ran at once than the limit"


BAD_LIMITS = [0, -1, 1025, 2.0, True, "2"]


@pytest.mark.parametrize("limit", BAD_LIMITS, ids=repr)
def test_a_bad_limit_is_refused_at_decoration(rs: Redsync, limit: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"limit=.*expected an integer in \[1, 1024\]"):
        rs.locked("x", limit=limit)


@pytest.mark.parametrize("limit", BAD_LIMITS, ids=repr)
async def test_async_a_bad_limit_is_refused_at_decoration(ars: AsyncRedsync, limit: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"limit=.*expected an integer in \[1, 1024\]"):
        ars.locked("x", limit=limit)


def test_a_fixed_value_is_refused_with_a_limit(rs: Redsync) -> None:
    rs.locked("x", value="shared")  # a mutex may be handed a value
    with pytest.raises(ConfigurationError, match="value"):
        rs.locked("x", limit=2, value="shared")
