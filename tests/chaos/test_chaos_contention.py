"""Worker processes contend for one lock while a fault schedule hits the 5 lock nodes.

Safety (no lost update, no overlapping holders) must hold through every fault; progress must
resume whenever a quorum (3 of 5) is up; every call must return within its bound; failures
must come out as the documented exception types. See chaos_harness.py for the checks.

About restarts (Redlock's known hole): the lock nodes run without persistence, so a node that
restarts empty forgets the keys it held. If it restarted while a holder still counted it in
its quorum, a second client could build a quorum with it and both would hold the lock
(Kleppmann's counter-example; test_chaos_restart.py shows it happening). The schedule below
therefore follows antirez's "delayed restart": a crashed node stays down for longer than the
expiry (locks here are never extended, so no validity outlives the expiry) before it comes
back empty. Restarts are injected only that way, and the comments at each step say how long
the node was down.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from chaos_harness import (
    HungListener,
    Schedule,
    Verdict,
    WorkerConfig,
    Workers,
    now,
    phases_text,
    read_referee,
    restart_delay,
)

from redsync_core.testing import RedisServer

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

EXPIRY = 1.0  # seconds; fan-out deadline = 0.1 s with timeout_factor=0.1


def configs(urls: list[str], referee: str, *, tasks: int = 1) -> list[WorkerConfig]:
    base = {"urls": tuple(urls), "referee_url": referee, "expiry": EXPIRY, "tasks": tasks}
    return [
        WorkerConfig(**base, tries=3, retry_delay=0.05),  # bound: 3 x 2 x 0.1 + 2 x 0.05
        WorkerConfig(**base, tries=None, timeout=0.4),  # bound: 0.4 + 0.1
        WorkerConfig(**base, tries=2, retry_delay=0.02),
    ]


def run_schedule(nodes: list[RedisServer], *, short: bool) -> Schedule:
    """Inject the faults; return the phases with their windows and the fault counts."""
    sched = Schedule()
    hung: HungListener | None = None

    killed_at: dict[int, float] = {}

    def kill(*idx: int) -> None:
        for i in idx:
            nodes[i].kill()
            killed_at[i] = now()
        sched.fault("kill", len(idx))

    def start(*idx: int) -> None:
        # Empty restart (no persistence): only after the delayed-restart policy's time down.
        for i in idx:
            down = now() - killed_at.pop(i)
            assert down >= restart_delay(EXPIRY), f"node {i} restarted after {down:.2f} s down"
            nodes[i].start()
        sched.fault("restart empty (delayed)", len(idx))

    def hang_and_refuse() -> None:
        # Node 3 (killed above) comes back as a port that accepts and never answers; node 4
        # stays a port that refuses connections.
        nonlocal hung
        hung = HungListener(nodes[3].port or 0)
        sched.fault("hung listener")
        sched.fault("refused port")

    def pause(i: int) -> None:
        nodes[i].pause()
        sched.fault("SIGSTOP node")

    def unhang_and_restart() -> None:
        nodes[0].resume()
        assert hung is not None
        hung.close()
        start(3, 4)  # down since "kill a minority" (>= 4 s > EXPIRY): delayed restart

    try:
        sched.phase("all 5 up", quorum_up=True, seconds=1.5, action=None)
        sched.phase(
            "kill 2 of 5 (minority)", quorum_up=True, seconds=2.0, action=lambda: kill(3, 4)
        )
        sched.phase(
            "node 3 hangs (accepts, never answers), node 4 refuses",
            quorum_up=True,
            seconds=2.0,
            action=hang_and_refuse,
        )
        sched.phase(
            "plus node 0 SIGSTOPped: 3 of 5 unusable",
            quorum_up=False,
            seconds=1.5,
            action=lambda: pause(0),
        )
        sched.phase(
            "node 0 resumed, nodes 3 and 4 restarted empty after > expiry down",
            quorum_up=True,
            seconds=2.0,
            action=unhang_and_restart,
        )
        if not short:
            sched.phase(
                "node 1 SIGSTOPped for 2 s (> deadline and > expiry)",
                quorum_up=True,
                seconds=2.0,
                action=lambda: pause(1),
            )
            sched.phase(
                "node 1 resumed, node 2 killed",
                quorum_up=True,
                seconds=1.5,
                action=lambda: (nodes[1].resume(), kill(2)),
            )
            # Node 2 has been down 1.5 s > EXPIRY: a delayed restart.
            sched.phase(
                "node 2 restarted empty", quorum_up=True, seconds=1.5, action=lambda: start(2)
            )
        sched.phase(
            "kill 3 of 5 (majority)", quorum_up=False, seconds=1.5, action=lambda: kill(0, 1, 2)
        )
        # Down 1.5 s > EXPIRY: whatever lock was valid when the majority died has expired.
        sched.phase(
            "majority restarted empty after > expiry down",
            quorum_up=True,
            seconds=2.0,
            action=lambda: start(0, 1, 2),
        )
    finally:
        if hung is not None:
            hung.close()
        for node in nodes:
            if node.paused:
                node.resume()
    return sched


@pytest.mark.parametrize("flavour", ["sync", "asyncio"])
def test_contention_under_faults_is_safe_live_and_bounded(
    flavour: str, redis_servers: Any, chaos_figures: Any
) -> None:
    nodes = redis_servers(5)
    referee = redis_servers(1)[0]
    asyncio_workers = flavour == "asyncio"
    workers = Workers(
        configs([n.url for n in nodes], referee.url, tasks=2 if asyncio_workers else 1),
        asyncio_workers=asyncio_workers,
    )
    workers.start()
    try:
        time.sleep(0.3)  # let the workers import and connect
        sched = run_schedule(nodes, short=asyncio_workers)
    finally:
        records = workers.stop()
    counter, commits_on_referee = read_referee(referee.url)
    verdict = Verdict(records, counter, commits_on_referee, sched)
    chaos_figures(verdict.figures(f"{flavour} workers, 5 nodes, fault schedule"))

    assert verdict.unexpected() == [], "calls failed with undocumented errors"
    assert verdict.violations() == [], "SAFETY VIOLATION"
    assert verdict.over_bound() == [], "calls outlived their bound"
    assert verdict.stalled_phases() == [], (
        f"no progress with a quorum up: {phases_text(sched.phases)}"
    )
    assert len(verdict.commits) > 20, "too little contention to mean anything"
    failures = verdict.failures()
    assert failures["QuorumUnreachable"] > 0, "majority faults must surface as QuorumUnreachable"
    assert set(failures) <= {"LockTaken", "LockNotAcquired", "QuorumUnreachable", "LockTimeout"}
