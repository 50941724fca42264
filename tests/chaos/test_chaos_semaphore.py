"""Worker processes contend for a semaphore of limit 2 while a fault schedule hits 5 lock nodes.

Each holder counts itself in and out on a separate referee redis-server (INCR when it enters,
DECR when it leaves) and records its hold interval on the system-wide clock. Safety: the
referee never counts more than 2 holders inside, and no instant is covered by more than 2 hold
intervals that ended within their validity. Progress: permits are acquired in every phase with
a quorum up. Failures are only the documented exceptions.

Restarts follow the delayed-restart rule of test_chaos_contention.py: a crashed node stays down
longer than the expiry before it comes back empty (restarts without it break every Redlock
design: docs/safety.md shows the semaphore counterexample).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import time
from collections import Counter
from typing import Any

import pytest
import redis
import redis.asyncio
from chaos_harness import now, restart_delay

from redsync_core import (
    AsyncRedsync,
    LockNotAcquired,
    QuorumUnreachable,
    Redsync,
)

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

LIMIT = 2
WORKERS = 4
EXPIRY = 1.0  # seconds; fan-out deadline = 0.1 s with timeout_factor=0.1
NAME = "chaos:semaphore"
INSIDE = "chaos:semaphore:inside"
OPTIONS = {"expiry": EXPIRY, "tries": 2, "retry_delay": 0.02}
_CONTEXT = multiprocessing.get_context("fork")


def _record(results: Any, wid: str, holds: list[Any], errors: Counter[str], seen: int) -> None:
    results.put({"wid": wid, "holds": holds, "errors": dict(errors), "max_inside": seen})


def _sync_worker(wid: str, urls: list[str], referee_url: str, stop: Any, results: Any) -> None:
    rs = Redsync(urls, timeout_factor=0.1)
    referee = redis.Redis.from_url(referee_url, socket_timeout=10)
    holds: list[tuple[float, float, bool]] = []
    errors: Counter[str] = Counter()
    seen = 0
    while not stop.is_set():
        sem = rs.new_semaphore(NAME, LIMIT, **OPTIONS)
        try:
            sem.acquire()
        except (LockNotAcquired, QuorumUnreachable) as exc:
            errors[type(exc).__name__] += 1
            time.sleep(random.uniform(0, 0.01))
            continue
        t0 = now()
        seen = max(seen, int(referee.incr(INSIDE)))
        time.sleep(random.uniform(0.005, 0.02))
        referee.decr(INSIDE)
        t1 = now()
        holds.append((t0, t1, sem.remaining > 0))
        sem.release()
    referee.close()
    rs.close()
    _record(results, wid, holds, errors, seen)


def _async_worker(wid: str, urls: list[str], referee_url: str, stop: Any, results: Any) -> None:
    async def run() -> None:
        ars = AsyncRedsync(urls, timeout_factor=0.1)
        referee = redis.asyncio.Redis.from_url(referee_url, socket_timeout=10)
        holds: list[tuple[float, float, bool]] = []
        errors: Counter[str] = Counter()
        seen = 0
        while not stop.is_set():
            sem = ars.new_semaphore(NAME, LIMIT, **OPTIONS)
            try:
                await sem.acquire()
            except (LockNotAcquired, QuorumUnreachable) as exc:
                errors[type(exc).__name__] += 1
                await asyncio.sleep(random.uniform(0, 0.01))
                continue
            t0 = now()
            seen = max(seen, int(await referee.incr(INSIDE)))
            await asyncio.sleep(random.uniform(0.005, 0.02))
            await referee.decr(INSIDE)
            t1 = now()
            holds.append((t0, t1, sem.remaining > 0))
            await sem.release()
        await referee.aclose()
        await ars.close()
        _record(results, wid, holds, errors, seen)

    asyncio.run(run())


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """Return the largest number of intervals covering one instant."""
    events = sorted([(t0, 1) for t0, _ in intervals] + [(t1, -1) for _, t1 in intervals])
    inside = peak = 0
    for _, step in events:  # at equal times an end (-1) sorts first: touching is not overlap
        inside += step
        peak = max(peak, inside)
    return peak


def test_most_at_once_counts_overlaps() -> None:
    assert most_at_once([(0, 1), (1, 2)]) == 1
    assert most_at_once([(0, 3), (1, 2), (1.5, 4)]) == 3


@pytest.mark.parametrize("flavour", ["sync", "asyncio"])
def test_semaphore_contention_under_faults_never_admits_more_than_limit(
    flavour: str, redis_servers: Any, chaos_figures: Any
) -> None:
    nodes = redis_servers(5)
    referee = redis_servers(1)[0]
    urls = [n.url for n in nodes]
    target = _async_worker if flavour == "asyncio" else _sync_worker
    stop = _CONTEXT.Event()
    results = _CONTEXT.Queue()
    procs = [
        _CONTEXT.Process(target=target, args=(f"w{i}", urls, referee.url, stop, results))
        for i in range(WORKERS)
    ]
    for proc in procs:
        proc.start()
    phases: list[tuple[str, float, float, bool]] = []
    killed_at: dict[int, float] = {}

    def phase(label: str, seconds: float, quorum_up: bool) -> None:
        start = now()
        time.sleep(seconds)
        phases.append((label, start, now(), quorum_up))

    def kill(*idx: int) -> None:
        for i in idx:
            nodes[i].kill()
            killed_at[i] = now()

    def restart(*idx: int) -> None:
        for i in idx:
            assert now() - killed_at.pop(i) >= restart_delay(EXPIRY)
            nodes[i].start()

    try:
        time.sleep(0.3)  # let the workers import and connect
        phase("all 5 up", 1.5, True)
        kill(3, 4)
        phase("2 of 5 killed", 1.5, True)
        nodes[0].pause()
        phase("plus node 0 SIGSTOPped: 3 of 5 unusable", 1.0, False)
        nodes[0].resume()
        restart(3, 4)
        phase("node 0 resumed, nodes 3 and 4 restarted empty (delayed)", 1.5, True)
        kill(0, 1, 2)
        phase("3 of 5 killed", 1.5, False)
        restart(0, 1, 2)
        phase("majority restarted empty (delayed)", 1.5, True)
    finally:
        for node in nodes:
            if node.paused:
                node.resume()
        stop.set()
        records = [results.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():  # pragma: no cover - a stuck worker: do not leave it running
                proc.kill()
                proc.join(timeout=5)

    holds = [(t0, t1, valid) for r in records for t0, t1, valid in r["holds"]]
    errors: Counter[str] = Counter()
    for r in records:
        errors.update(r["errors"])
    max_inside = max(r["max_inside"] for r in records)
    overruns = sum(1 for _, _, valid in holds if not valid)
    peak = most_at_once([(t0, t1) for t0, t1, valid in holds if valid])
    progress = {
        label: sum(1 for t0, _, _ in holds if start <= t0 <= end)
        for label, start, end, up in phases
        if up
    }
    chaos_figures(
        {
            "scenario": f"semaphore limit {LIMIT}, {WORKERS} {flavour} workers, 5 nodes, faults",
            "acquisitions": len(holds),
            "most holders at once (referee)": max_inside,
            "most holders at once (intervals)": peak,
            "holds past their validity": overruns,
            "failures": dict(errors),
            "acquisitions per phase with a quorum": progress,
        }
    )
    assert peak <= LIMIT, "SAFETY VIOLATION: more holders than permits"
    if overruns == 0:  # a holder past its validity breaks the model, not the semaphore
        assert max_inside <= LIMIT, "SAFETY VIOLATION: the referee counted more holders"
    assert peak == LIMIT, "permits were never all in use: too little contention to mean anything"
    assert all(progress.values()), f"no progress with a quorum up: {progress}"
    assert errors["QuorumUnreachable"] > 0, "majority faults must surface as QuorumUnreachable"
    assert set(errors) <= {"LockTaken", "LockNotAcquired", "QuorumUnreachable", "LockTimeout"}
