"""The orchestration: servers, CPU placement, worker processes, interleaved rounds, statistics.

One run starts 5 lock servers and 1 referee server (``redsync_core.testing``) on loopback; a
measurement at N nodes uses the first N of them. Every contender runs in its own worker
processes (``runner.py``), each cell is split into rounds, and in every round every contender
gets its slice in a rotated order, so drift of the machine (other jobs, thermal) spreads over
all contenders alike. Samples are pooled over the rounds.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redsync_core.testing import RedisServer, RedisServerGroup, child_process

from .contenders import CONTENDERS, Spec
from .peers import ENVS, EnvStatus, prepare
from .resp import RawConnection

__all__ = ["Harness", "Placement", "S1Cell", "S2Cell", "S3Cell", "percentile", "placement"]

RUNNER = Path(__file__).resolve().parent / "runner.py"
MAX_NODES = 5
S2_PROCESSES = 4
#: S3: each process holds the lock this long, then works this long outside it (seconds).
S3_HOLD_S = 0.001
S3_WORK_S = 0.002
S3_PROCESSES = (4, 8)
#: Seconds a worker may run past the end of an S3 slice (a lock() still waiting at the end).
S3_GRACE_S = 30.0
REQUEST_GRACE_S = 60.0  # a worker answering this much later than its work should take is hung


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0-100) of ``values`` (0.0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q / 100 * len(ordered))))
    return float(ordered[rank - 1])


# -- CPU placement -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Which CPUs the clients (workers) and the redis-server processes may run on."""

    mode: str  # "cross" or "none"
    client: frozenset[int] | None
    servers: frozenset[int] | None

    def describe(self) -> str:
        if self.client is None or self.servers is None:
            return "not pinned (the scheduler places clients and servers)"
        return (
            f"clients on CPU {_cpus(self.client)}, every redis-server on CPU "
            f"{_cpus(self.servers)}: each round trip crosses CPUs, as over a network"
        )


def _cpus(cpus: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def placement(mode: str) -> Placement:
    """Split the CPUs this process may use: the first for clients, the rest for servers."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if mode == "none" or len(cpus) < 2:
        return Placement("none", None, None)
    return Placement(mode, frozenset(cpus[:1]), frozenset(cpus[1:]))


def _pin_all_threads(pid: int, cpus: frozenset[int]) -> None:
    """Pin every thread of ``pid`` (redis-server has background threads) to ``cpus``."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), cpus)


# -- worker processes --------------------------------------------------------------------------


class WorkerError(RuntimeError):
    """A worker answered with an error, or did not answer in time."""


class Worker:
    """One ``runner.py`` process, spoken to with one JSON line per request.

    An idle worker quits when our end of its stdin closes; one in the middle of a request would
    run on (a slice, a hung lock()) after the benchmark was killed: the kernel kills it when
    this process dies (``child_process``, Linux), as it does the redis-server processes.
    """

    def __init__(self, python: str) -> None:
        self.proc = child_process(
            [python, str(RUNNER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # a peer's warnings show on our stderr
            text=True,
            cwd=str(RUNNER.parent.parent),
        )

    def send(self, request: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def receive(self, timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not ready:
            self.stop()
            raise WorkerError(f"no answer within {timeout_s:.0f} s; worker stopped")
        line = self.proc.stdout.readline()
        if not line:
            raise WorkerError(f"worker exited (code {self.proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise WorkerError(answer["error"] + "\n" + answer.get("trace", ""))
        return answer

    def request(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        self.send(request)
        return self.receive(timeout_s)

    def stop(self) -> None:
        """Ask the worker to quit; kill it (by its own PID) if it does not."""
        if self.proc.poll() is None:
            try:
                self.send({"cmd": "quit"})
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


# -- cells -------------------------------------------------------------------------------------


@dataclass
class S1Cell:
    """One contender at one N: pooled acquire+release pair durations."""

    contender: str
    nodes: int
    samples_ns: list[int] = field(default_factory=list)
    failures: int = 0
    cpu_s: float = 0.0
    error: str | None = None

    def add(self, answer: dict[str, Any]) -> None:
        self.samples_ns += answer["samples_ns"]
        self.failures += answer["failures"]
        self.cpu_s += answer["cpu_s"]

    def summary(self) -> dict[str, Any]:
        n = len(self.samples_ns)
        total_s = sum(self.samples_ns) / 1e9
        return {
            "contender": self.contender,
            "nodes": self.nodes,
            "pairs": n,
            "median_us": percentile(self.samples_ns, 50) / 1000,
            "p99_us": percentile(self.samples_ns, 99) / 1000,
            "pairs_per_s": n / total_s if total_s else 0.0,
            "cpu_us_per_pair": self.cpu_s / n * 1e6 if n else 0.0,
            "failures": self.failures,
            "error": self.error,
        }


@dataclass
class S2Cell:
    """One contender at one N under contention: acquisitions, waits, holds, violations."""

    contender: str
    nodes: int
    seconds: float = 0.0
    acquired: int = 0
    tries: int = 0
    cpu_s: float = 0.0
    waits_ns: list[int] = field(default_factory=list)
    holds_ns: list[int] = field(default_factory=list)
    referee_failures: int = 0
    overlaps: int = 0
    per_process: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    error: str | None = None

    def add(self, answers: list[dict[str, Any]], seconds: float) -> None:
        self.seconds += seconds
        intervals: list[tuple[int, int]] = []
        for i, a in enumerate(answers):
            self.acquired += a["acquired"]
            self.tries += a["tries"]
            self.cpu_s += a["cpu_s"]
            self.waits_ns += a["waits_ns"]
            self.referee_failures += a["referee_failures"]
            self.error_count += a["error_count"]
            self.errors += [e for e in a["errors"] if e not in self.errors][:3]
            intervals += [(s, e) for s, e in a["intervals"]]
            if len(self.per_process) <= i:
                self.per_process.append(0)
            self.per_process[i] += a["acquired"]
        self.holds_ns += [e - s for s, e in intervals]
        self.overlaps += count_overlaps(intervals)

    def summary(self) -> dict[str, Any]:
        return {
            "contender": self.contender,
            "nodes": self.nodes,
            "acquired": self.acquired,
            "acq_per_s": self.acquired / self.seconds if self.seconds else 0.0,
            "tries": self.tries,
            "cpu_us_per_try": self.cpu_s / self.tries * 1e6 if self.tries else 0.0,
            "wait_p50_us": percentile(self.waits_ns, 50) / 1000,
            "wait_p99_us": percentile(self.waits_ns, 99) / 1000,
            "hold_p50_us": percentile(self.holds_ns, 50) / 1000,
            "referee_failures": self.referee_failures,
            "overlaps": self.overlaps,
            "per_process": self.per_process,
            "lock_errors": self.error_count,
            "lock_error_examples": self.errors[:3],
            "error": self.error,
        }


@dataclass
class S3Cell:
    """One contender at one N with P processes handing one lock over with default options."""

    contender: str
    nodes: int
    processes: int
    hold_s: float
    work_s: float
    seconds: float = 0.0
    busy_ns: int = 0
    acquired: int = 0
    tries: int = 0
    gave_up: int = 0
    cpu_s: float = 0.0
    waits_ns: list[int] = field(default_factory=list)
    holds_ns: list[int] = field(default_factory=list)
    handoffs_ns: list[int] = field(default_factory=list)
    referee_failures: int = 0
    overlaps: int = 0
    per_process: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    handoff_floor_us: float | None = None  # limit's acquire+release at this N, same run
    error: str | None = None

    def add(self, answers: list[dict[str, Any]], start_ns: int, stop_ns: int) -> None:
        self.seconds += (stop_ns - start_ns) / 1e9
        intervals: list[tuple[int, int]] = []
        for i, a in enumerate(answers):
            self.acquired += a["acquired"]
            self.tries += a["tries"]
            self.gave_up += a["gave_up"]
            self.cpu_s += a["cpu_s"]
            self.waits_ns += a["waits_ns"]
            self.referee_failures += a["referee_failures"]
            self.error_count += a["error_count"]
            self.errors += [e for e in a["errors"] if e not in self.errors][:3]
            intervals += [(s, e) for s, e in a["intervals"]]
            if len(self.per_process) <= i:
                self.per_process.append(0)
            self.per_process[i] += a["acquired"]
        self.holds_ns += [e - s for s, e in intervals]
        self.handoffs_ns += handoffs(intervals)
        self.overlaps += count_overlaps(intervals)
        # Busy time inside the window (holds never overlap unless a violation is reported).
        self.busy_ns += sum(max(0, min(e, stop_ns) - max(s, start_ns)) for s, e in intervals)

    def summary(self) -> dict[str, Any]:
        hold_us = percentile(self.holds_ns, 50) / 1000
        ideal = None
        if self.handoff_floor_us is not None and hold_us:
            ideal = hold_us / (hold_us + self.handoff_floor_us)
        counts = self.per_process or [0]
        return {
            "contender": self.contender,
            "nodes": self.nodes,
            "processes": self.processes,
            "acquired": self.acquired,
            "acq_per_s": self.acquired / self.seconds if self.seconds else 0.0,
            "busy": self.busy_ns / 1e9 / self.seconds if self.seconds else 0.0,
            "ideal_busy": ideal,
            "handoff_floor_us": self.handoff_floor_us,
            "wait_p50_ms": percentile(self.waits_ns, 50) / 1e6,
            "wait_p99_ms": percentile(self.waits_ns, 99) / 1e6,
            "wait_max_ms": max(self.waits_ns, default=0) / 1e6,
            "hold_p50_us": hold_us,
            "handoff_p50_us": percentile(self.handoffs_ns, 50) / 1000,
            "handoff_p90_us": percentile(self.handoffs_ns, 90) / 1000,
            "per_process": self.per_process,
            "spread": max(counts) / min(counts) if min(counts) else None,
            "lock_calls": self.tries,
            "gave_up": self.gave_up,
            "cpu_us_per_acq": self.cpu_s / self.acquired * 1e6 if self.acquired else 0.0,
            "referee_failures": self.referee_failures,
            "overlaps": self.overlaps,
            "lock_errors": self.error_count,
            "lock_error_examples": self.errors[:3],
            "error": self.error,
        }


def count_overlaps(intervals: list[tuple[int, int]]) -> int:
    """How many hold intervals start before an earlier-starting one has ended."""
    overlaps, latest_end = 0, -1
    for start, end in sorted(intervals):
        if start < latest_end:
            overlaps += 1
        latest_end = max(latest_end, end)
    return overlaps


def handoffs(intervals: list[tuple[int, int]]) -> list[int]:
    """The time from the end of each hold to the start of the next one (ns): what a hand-off
    takes (``unlock()``, the next holder's wake-up and the end of its ``lock()``), or how long
    the lock lay free. Overlapping holds (violations, counted apart) give none."""
    ordered = sorted(intervals)
    return [b[0] - a[1] for a, b in itertools.pairwise(ordered) if b[0] >= a[1]]


# -- the harness -------------------------------------------------------------------------------


@dataclass
class Harness:
    """Servers, worker pools and the rounds of one benchmark run."""

    place: Placement
    ttl_s: float = 10.0
    warmup_s: float = 0.15
    backoff_s: float = 0.001
    log: bool = True
    servers: list[RedisServer] = field(default_factory=list)
    referee: RedisServer | None = None
    env_status: dict[str, EnvStatus] = field(default_factory=dict)
    _pools: dict[str, list[Worker]] = field(default_factory=dict)

    def say(self, text: str) -> None:
        if self.log:
            print(text, flush=True)

    # servers -----------------------------------------------------------------------------

    @contextmanager
    def running(self) -> Iterator[Harness]:
        """Start the servers (pinned) and stop them, and every worker, on the way out."""
        own = os.sched_getaffinity(0) if self.place.client else None
        group = RedisServerGroup(MAX_NODES)
        referee = RedisServer()
        try:
            if self.place.servers is not None:
                os.sched_setaffinity(0, self.place.servers)  # the servers inherit it
            group.start()
            referee.start()
            if self.place.client is not None:
                os.sched_setaffinity(0, self.place.client)  # we and our workers: client CPUs
            self.servers, self.referee = group.servers, referee
            if self.place.servers is not None:
                for server in [*self.servers, referee]:
                    assert server.pid is not None
                    _pin_all_threads(server.pid, self.place.servers)
            yield self
        finally:
            for pool in self._pools.values():
                for worker in pool:
                    worker.stop()
            self._pools.clear()
            referee.stop()
            group.stop()
            if own is not None:
                os.sched_setaffinity(0, own)

    def affinities(self) -> dict[str, str]:
        """The CPUs each process may run on, read back from the kernel (for the report)."""
        out = {"benchmark process": _cpus(frozenset(os.sched_getaffinity(0)))}
        for i, server in enumerate(self.servers):
            if server.pid is not None:
                out[f"redis-server {i + 1}"] = _cpus(frozenset(os.sched_getaffinity(server.pid)))
        if self.referee is not None and self.referee.pid is not None:
            out["referee redis-server"] = _cpus(frozenset(os.sched_getaffinity(self.referee.pid)))
        return out

    def urls(self, n: int) -> list[str]:
        return [server.url for server in self.servers[:n]]

    # contenders and workers --------------------------------------------------------------

    def available(self, names: Sequence[str]) -> list[Spec]:
        """The contenders whose environment is ready (peers' virtualenvs built on demand)."""
        specs = []
        for name in names:
            spec = CONTENDERS[name]
            if spec.env is not None:
                if spec.env not in self.env_status:
                    self.env_status[spec.env] = prepare(ENVS[spec.env], progress=self.log)
                if not self.env_status[spec.env].ok:
                    continue
            specs.append(spec)
        return specs

    def workers(self, spec: Spec, count: int) -> list[Worker]:
        pool = self._pools.setdefault(spec.name, [])
        python = sys.executable if spec.env is None else str(ENVS[spec.env].python())
        while len(pool) < count:
            pool.append(Worker(python))
        return pool[:count]

    def retire(self, spec: Spec) -> None:
        """Stop a contender's workers (after its last cell: frees memory and CPU)."""
        for worker in self._pools.pop(spec.name, []):
            worker.stop()

    @staticmethod
    def node_counts(spec: Spec, nodes: Sequence[int]) -> list[int]:
        """The node counts ``spec`` is measured at: a single-node lock at N=1 only."""
        if spec.single_node:
            return [1] if 1 in nodes else []
        return list(nodes)

    # S1 ----------------------------------------------------------------------------------

    def run_s1(
        self, specs: Sequence[Spec], nodes: Sequence[int], seconds: float, rounds: int
    ) -> list[S1Cell]:
        """Uncontended acquire+release: ``seconds`` per cell, split into ``rounds`` slices."""
        cells = {(s.name, n): S1Cell(s.name, n) for s in specs for n in self.node_counts(s, nodes)}
        slice_s = seconds / rounds
        for rnd in range(rounds):
            for n in nodes:
                group = [s for s in specs if (s.name, n) in cells]
                for spec in _rotate(group, rnd):
                    cell = cells[(spec.name, n)]
                    if cell.error:
                        continue
                    request = {
                        "cmd": "s1",
                        "contender": spec.name,
                        "urls": self.urls(n),
                        "key": f"bench:s1:{spec.name}:{n}:{rnd}",
                        "ttl_s": self.ttl_s,
                        "warmup_s": self.warmup_s,
                        "seconds": slice_s,
                    }
                    try:
                        (worker,) = self.workers(spec, 1)
                        cell.add(worker.request(request, slice_s + REQUEST_GRACE_S))
                    except WorkerError as exc:
                        cell.error = str(exc)
                        self.say(f"  S1 {spec.name} N={n}: FAILED {str(exc).splitlines()[0]}")
            self.say(f"  S1 round {rnd + 1}/{rounds} done")
        return sorted(cells.values(), key=lambda cell: cell.nodes)  # grouped by N, stable

    # S2 ----------------------------------------------------------------------------------

    def run_s2(
        self, specs: Sequence[Spec], nodes: Sequence[int], seconds: float, rounds: int
    ) -> list[S2Cell]:
        """Contended: 4 processes, one lock name, one attempt per try, random back-off."""
        cells = {(s.name, n): S2Cell(s.name, n) for s in specs for n in self.node_counts(s, nodes)}
        slice_s = seconds / rounds
        for rnd in range(rounds):
            for n in nodes:
                group = [s for s in specs if (s.name, n) in cells]
                for spec in _rotate(group, rnd):
                    cell = cells[(spec.name, n)]
                    if not cell.error:
                        self._s2_slice(spec, n, rnd, slice_s, cell)
            self.say(f"  S2 round {rnd + 1}/{rounds} done")
        return sorted(cells.values(), key=lambda cell: cell.nodes)  # grouped by N, stable

    def _s2_slice(self, spec: Spec, n: int, rnd: int, slice_s: float, cell: S2Cell) -> None:
        workers = self.workers(spec, S2_PROCESSES)
        setup = {
            "cmd": "s2_setup",
            "contender": spec.name,
            "urls": self.urls(n),
            "key": f"bench:s2:{spec.name}:{n}:{rnd}",
            "ttl_s": self.ttl_s,
            "referee": self.referee_url,
            "marker": f"bench:marker:{spec.name}:{n}:{rnd}",
        }
        try:
            for i, worker in enumerate(workers):
                worker.send({**setup, "seed": rnd * 100 + i})
            for worker in workers:
                worker.receive(REQUEST_GRACE_S)
            start_ns = time.monotonic_ns() + 200_000_000  # every worker starts at the same time
            stop_ns = start_ns + int(slice_s * 1e9)
            run = {"cmd": "s2_run", "start_ns": start_ns, "stop_ns": stop_ns}
            for worker in workers:
                worker.send({**run, "backoff_s": self.backoff_s})
            answers = [worker.receive(slice_s + REQUEST_GRACE_S) for worker in workers]
        except WorkerError as exc:
            cell.error = str(exc)
            self.say(f"  S2 {spec.name} N={n}: FAILED {str(exc).splitlines()[0]}")
            self.retire(spec)  # the others may still wait for s2_run: start afresh
            return
        cell.add(answers, slice_s)

    # S3 ----------------------------------------------------------------------------------

    def run_s3(
        self,
        specs: Sequence[Spec],
        nodes: Sequence[int],
        processes: Sequence[int],
        seconds: float,
        rounds: int,
    ) -> list[S3Cell]:
        """Hand-off under contention with default options: P processes loop lock(), hold,
        unlock(), work; ``seconds`` per cell in ``rounds`` interleaved slices."""
        cells = {
            (s.name, n, p): S3Cell(s.name, n, p, S3_HOLD_S, S3_WORK_S)
            for s in specs
            for n in self.node_counts(s, nodes)
            for p in processes
        }
        floors = {n: self._handoff_floor_us(n) for n in nodes}
        for cell in cells.values():
            cell.handoff_floor_us = floors[cell.nodes]
        slice_s = seconds / rounds
        for rnd in range(rounds):
            for n in nodes:
                for p in processes:
                    group = [s for s in specs if (s.name, n, p) in cells]
                    for spec in _rotate(group, rnd):
                        cell = cells[(spec.name, n, p)]
                        if not cell.error:
                            self._s3_slice(spec, n, p, rnd, slice_s, cell)
            self.say(f"  S3 round {rnd + 1}/{rounds} done")
        return sorted(cells.values(), key=lambda cell: (cell.nodes, cell.processes))

    def _handoff_floor_us(self, n: int) -> float | None:
        """The fastest possible hand-off at N: limit's release + acquire round trips (S1 median)."""
        cell = S1Cell("limit", n)
        request = {
            "cmd": "s1",
            "contender": "limit",
            "urls": self.urls(n),
            "key": f"bench:s3:floor:{n}",
            "ttl_s": self.ttl_s,
            "warmup_s": self.warmup_s,
            "seconds": 0.5,
        }
        try:
            (worker,) = self.workers(CONTENDERS["limit"], 1)
            cell.add(worker.request(request, 0.5 + REQUEST_GRACE_S))
        except WorkerError:
            return None
        return float(cell.summary()["median_us"])

    def _s3_slice(self, spec: Spec, n: int, p: int, rnd: int, slice_s: float, cell: S3Cell) -> None:
        workers = self.workers(spec, p)
        setup = {
            "cmd": "s3_setup",
            "contender": spec.name,
            "urls": self.urls(n),
            "key": f"bench:s3:{spec.name}:{n}:{p}:{rnd}",
            "ttl_s": self.ttl_s,
            "referee": self.referee_url,
            "marker": f"bench:marker3:{spec.name}:{n}:{p}:{rnd}",
        }
        try:
            for i, worker in enumerate(workers):
                worker.send({**setup, "seed": rnd * 100 + i})
            for worker in workers:
                worker.receive(REQUEST_GRACE_S)
            start_ns = time.monotonic_ns() + 300_000_000
            stop_ns = start_ns + int(slice_s * 1e9)
            run = {
                "cmd": "s3_run",
                "start_ns": start_ns,
                "stop_ns": stop_ns,
                "hold_s": cell.hold_s,
                "work_s": cell.work_s,
            }
            for worker in workers:
                worker.send(run)
            # A library may block past the stop for its last lock (up to its own give-up).
            answers = [worker.receive(slice_s + S3_GRACE_S) for worker in workers]
        except WorkerError as exc:
            cell.error = str(exc)
            self.say(f"  S3 {spec.name} N={n} P={p}: FAILED {str(exc).splitlines()[0]}")
            self.retire(spec)
            return
        cell.add(answers, start_ns, stop_ns)

    @property
    def referee_url(self) -> str:
        assert self.referee is not None
        return self.referee.url

    # profile -----------------------------------------------------------------------------

    def profile(self, spec: Spec, n: int, seconds: float, top: int = 15) -> dict[str, Any]:
        """Run the S1 loop of ``spec`` at N=``n`` under cProfile; return the top functions."""
        request = {
            "cmd": "profile",
            "contender": spec.name,
            "urls": self.urls(n),
            "key": f"bench:profile:{spec.name}:{n}",
            "ttl_s": self.ttl_s,
            "warmup_s": self.warmup_s,
            "seconds": seconds,
            "top": top,
        }
        (worker,) = self.workers(spec, 1)
        return worker.request(request, seconds + REQUEST_GRACE_S)

    # server-side counters ----------------------------------------------------------------

    def commandstats(self, n: int) -> list[dict[str, int]]:
        """``calls`` per command on each of the first ``n`` servers (INFO commandstats)."""
        out = []
        for url in self.urls(n):
            conn = RawConnection(url)
            try:
                reply = conn.call("INFO", "commandstats")
            finally:
                conn.close()
            out.append(parse_commandstats(reply if isinstance(reply, bytes) else b""))
        return out


def parse_commandstats(text: bytes) -> dict[str, int]:
    """``{"evalsha": calls, ...}`` from the text of INFO commandstats."""
    calls = {}
    for line in text.decode().splitlines():
        if line.startswith("cmdstat_"):
            name, _, fields = line[len("cmdstat_") :].partition(":")
            for item in fields.split(","):
                key, _, value = item.partition("=")
                if key == "calls":
                    calls[name] = int(value)
    return calls


def _rotate(items: list[Spec], k: int) -> list[Spec]:
    if not items:
        return items
    k %= len(items)
    return items[k:] + items[:k]
