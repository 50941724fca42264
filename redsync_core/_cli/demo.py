"""``redsync demo``: Redlock at work on throwaway local nodes, with node faults injected midway.

Workers contend for one lock around a deliberately unsafe read-modify-write of a counter kept
on a separate "referee" server (GET, sleep a little, SET value+1). With the lock every update
lands; without it (``--unsafe``) concurrent updates overwrite each other. Each worker also logs
the interval in which it held the lock, so overlapping holders are detected directly.

The fault schedule stays within what Redlock tolerates, and the report says why:

- a minority of nodes is killed (as many as the quorum tolerates);
- one killed node is restarted *empty* only after the lock expiry has passed since its death.
  Every lock it held had expired by then, so it cannot vote for a second holder. Restarting
  sooner without persistence could (Redlock's known limit; antirez's "delayed restarts");
- one node is paused (SIGSTOP) and resumed, while no more than the tolerated number of nodes is
  unavailable.

Any lost update or overlap is reported, never hidden, and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import queue
import random
import shutil
import signal
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

from redsync_core import LockNotAcquired, Redsync
from redsync_core.testing import (
    RedisServer,
    RedisServerGroup,
    find_redis_server,
    memory_urls,
)

from .common import EXIT_OK, EXIT_SIGNAL_BASE, EXIT_UNAVAILABLE, EXIT_VIOLATION, UsageError, say

__all__ = ["DESCRIPTION", "add_arguments", "main"]

DESCRIPTION = (
    "Start throwaway redis-server nodes on loopback (or in-process memory:// nodes when "
    "redis-server is not installed), let worker processes contend for one lock around a "
    "deliberately unsafe read-modify-write, kill, pause and restart nodes midway, and report "
    "acquisitions, lost updates and overlapping holders (both must be 0) and acquire latency. "
    "--unsafe runs the same workers without the lock, to show what the lock prevents. Exit "
    "status 1 when a safety violation is observed."
)
LOCK_NAME = "counter"
KEY_PREFIX = "redsync-demo:"
MIN_NODES = 3
MIN_WORKERS = 2
MIN_SECONDS = 3.0
RESTART_MARGIN = 0.25  # seconds added to the expiry before an empty restart
READY_TIMEOUT = 60.0  # seconds the workers get to start (spawned processes import redis)
TICK = 1.0  # seconds between progress lines
TIMEOUT_FACTOR = 0.1  # fan-out deadline = expiry * this


def add_arguments(
    parser: argparse.ArgumentParser,
    *,
    seconds: Callable[[str], float],
    count: Callable[[str], int],
) -> None:
    """Add the demo's options to its subparser (the argument types come from the CLI)."""
    parser.add_argument("--nodes", type=count, default=5, metavar="N", help="lock nodes (>= 3)")
    parser.add_argument("--workers", type=count, default=6, metavar="N", help="workers (>= 2)")
    parser.add_argument(
        "--seconds", type=seconds, default=20.0, metavar="S", help="run time (>= 3; default 20)"
    )
    parser.add_argument(
        "--unsafe",
        action="store_true",
        help="run the workers without the lock, to show the lost updates it prevents",
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="use in-process memory:// nodes and threads even if redis-server is installed",
    )


# --- the shared counter -----------------------------------------------------------------------


class Referee(Protocol):
    """The protected resource: a counter updated unsafely, plus honest bookkeeping."""

    def read(self) -> int: ...

    def write(self, value: int) -> None: ...

    def note(self, worker: int) -> None:
        """Count one update atomically and record its worker as the last holder."""

    def snapshot(self) -> tuple[int, int, str]:
        """Return (updates counted, counter, last holder)."""

    def close(self) -> None: ...


class RedisReferee:
    """The counter on its own redis-server, which is not one of the lock's nodes."""

    def __init__(self, url: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=10.0, decode_responses=True)

    def read(self) -> int:
        return int(self._client.get("counter") or 0)

    def write(self, value: int) -> None:
        self._client.set("counter", value)

    def note(self, worker: int) -> None:
        pipe = self._client.pipeline(transaction=False)
        pipe.incr("updates")
        pipe.set("holder", f"w{worker}")
        pipe.execute()

    def snapshot(self) -> tuple[int, int, str]:
        updates, counter, holder = self._client.mget("updates", "counter", "holder")
        return int(updates or 0), int(counter or 0), str(holder or "-")

    def close(self) -> None:
        self._client.close()


class MemoryReferee:
    """The counter in this process, for worker threads (no redis-server installed)."""

    def __init__(self) -> None:
        self._counter = 0
        self._updates = 0
        self._holder = "-"
        self._lock = threading.Lock()

    def read(self) -> int:
        return self._counter

    def write(self, value: int) -> None:
        self._counter = value

    def note(self, worker: int) -> None:
        with self._lock:
            self._updates += 1
            self._holder = f"w{worker}"

    def snapshot(self) -> tuple[int, int, str]:
        with self._lock:
            return self._updates, self._counter, self._holder

    def close(self) -> None:
        """Nothing to release."""


# --- workers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs (picklable: spawned processes receive it)."""

    urls: tuple[str, ...]
    referee_url: str | None
    expiry: float
    unsafe: bool


@dataclass
class WorkerResult:
    """One worker's log: (begin_ns, end_ns, outlived_validity) per update, latencies, failures."""

    worker: int
    intervals: list[tuple[int, int, bool]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)


class _Event(Protocol):
    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class _Queue(Protocol):
    def put(self, item: Any) -> None: ...


def _update(referee: Referee, worker: int, rng: random.Random) -> None:
    """The deliberately unsafe read-modify-write: only mutual exclusion keeps it correct."""
    value = referee.read()
    referee.note(worker)
    time.sleep(rng.uniform(0.001, 0.004))
    referee.write(value + 1)


def work(
    worker: int,
    config: WorkerConfig,
    referee: Referee,
    start: _Event,
    stop: _Event,
    results: _Queue,
) -> None:
    """Update the counter, under the lock unless ``config.unsafe``, until ``stop`` is set."""
    rng = random.Random()
    result = WorkerResult(worker)
    rs = None if config.unsafe else Redsync(list(config.urls), key_prefix=KEY_PREFIX)
    mutex = None
    if rs is not None:
        mutex = rs.new_mutex(
            LOCK_NAME,
            expiry=config.expiry,
            tries=None,
            timeout_factor=TIMEOUT_FACTOR,
            retry_delay_func=lambda attempt: rng.uniform(0.002, 0.02),
        )
    results.put(("ready", worker))
    start.wait()
    try:
        while not stop.is_set():
            if mutex is None:
                begin = time.monotonic_ns()
                _update(referee, worker, rng)
                result.intervals.append((begin, time.monotonic_ns(), False))
                continue
            asked = time.monotonic_ns()
            try:
                mutex.lock(timeout=config.expiry)
            except LockNotAcquired as exc:
                result.failures[type(exc).__name__] += 1
                stop.wait(0.01)
                continue
            begin = time.monotonic_ns()
            result.latencies_ms.append((begin - asked) / 1e6)
            try:
                _update(referee, worker, rng)
            finally:
                end = time.monotonic_ns()
                outlived = mutex.remaining <= 0
                mutex.unlock()
            result.intervals.append((begin, end, outlived))
            stop.wait(rng.uniform(0, 0.003))  # let the others take a turn
    finally:
        results.put(("done", result))
        if rs is not None:
            rs.close()


def _process_main(
    worker: int, config: WorkerConfig, start: _Event, stop: _Event, results: _Queue
) -> None:
    """Entry point of a worker process: Ctrl-C is the parent's business."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("redsync").setLevel(logging.CRITICAL)  # node faults are expected here
    assert config.referee_url is not None  # processes always use a redis-server referee
    referee = RedisReferee(config.referee_url)
    try:
        work(worker, config, referee, start, stop, results)
    finally:
        referee.close()


# --- nodes and faults -------------------------------------------------------------------------


@dataclass
class Fault:
    """One planned fault: at ``at`` seconds into the run, ``action`` on node indexes."""

    at: float
    action: str  # "kill", "restart", "pause", "resume"
    nodes: tuple[int, ...]
    done_at: float | None = None
    note: str = ""


def fault_schedule(nodes: int, seconds: float, expiry: float) -> list[Fault]:
    """Plan faults that never leave more nodes unavailable than the quorum tolerates."""
    tolerated = nodes - (nodes // 2 + 1)
    killed = tuple(range(tolerated))
    kill_at = 0.25 * seconds
    restart_at = max(0.45 * seconds, kill_at + expiry + RESTART_MARGIN)
    pause_at = max(0.5 * seconds, restart_at)
    resume_at = max(0.7 * seconds, pause_at + 0.1 * seconds)
    paused = (tolerated,)  # the first node that was not killed
    return [
        Fault(kill_at, "kill", killed),
        Fault(restart_at, "restart", (0,)),
        Fault(pause_at, "pause", paused),
        Fault(resume_at, "resume", paused),
    ]


class Cluster:
    """The lock nodes and the referee: redis-server processes, or memory:// names."""

    def __init__(self, nodes: int, *, memory: bool, unsafe: bool) -> None:
        self.memory = memory
        self.states = ["up"] * (0 if unsafe else nodes)
        self._servers: list[RedisServer] = []
        self._referee: RedisServer | None = None
        self._group: RedisServerGroup | None = None
        self.urls: tuple[str, ...] = ()
        self.referee_url: str | None = None
        if memory:
            self.urls = tuple(memory_urls(len(self.states)))

    def start(self) -> None:
        """Start the redis-server processes (in parallel); nothing for memory nodes."""
        if self.memory:
            return
        self._group = RedisServerGroup(len(self.states) + 1)
        self._group.start()
        *self._servers, self._referee = self._group.servers
        self.urls = tuple(server.url for server in self._servers)
        self.referee_url = self._referee.url

    def stop(self) -> None:
        """Stop every process started (paused ones are resumed first); safe to repeat."""
        if self._group is not None:
            self._group.stop()

    def apply(self, fault: Fault) -> None:
        """Inject ``fault`` into the redis-server processes."""
        for i in fault.nodes:
            server = self._servers[i]
            if fault.action == "kill":
                server.kill()
                self.states[i] = "down"
            elif fault.action == "restart":
                server.restart()
                self.states[i] = "empty"
            elif fault.action == "pause":
                server.pause()
                self.states[i] = "paused"
            else:
                server.resume()
                self.states[i] = "up"

    def where(self) -> str:
        """Say where the redis-server processes listen."""
        port = self._referee.port if self._referee is not None else "-"
        referee = f"the counter on a separate referee redis-server on port {port}"
        if not self._servers:
            return referee
        ports = ", ".join(str(server.port) for server in self._servers)
        return f"lock nodes n0-n{len(self._servers) - 1} on 127.0.0.1 ports {ports}; {referee}"


# --- the run ----------------------------------------------------------------------------------


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stop(Exception):
    """Ctrl-C, SIGTERM or SIGHUP: unwind and stop every process the demo started."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    # Once: a second Ctrl-C must not interrupt the cleanup and leave processes behind.
    for other in STOP_SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    raise _Stop(signum)


def main(args: argparse.Namespace) -> int:
    """Run the demo; return 0 when safe, 1 on a safety violation."""
    if args.nodes < MIN_NODES:
        raise UsageError(f"--nodes must be at least {MIN_NODES} for a fault to be tolerated")
    if args.workers < MIN_WORKERS:
        raise UsageError(f"--workers must be at least {MIN_WORKERS} to contend for the lock")
    if args.seconds < MIN_SECONDS:
        raise UsageError(f"--seconds must be at least {MIN_SECONDS:g}")
    memory = args.memory or find_redis_server() is None
    previous = {signum: signal.signal(signum, _raise_stop) for signum in STOP_SIGNALS}
    logging.getLogger("redsync").setLevel(logging.CRITICAL)
    cluster = Cluster(args.nodes, memory=memory, unsafe=args.unsafe)
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(cluster.stop)
            cluster.start()
            return _Demo(args, cluster, stack).run()
    except RuntimeError as exc:  # a redis-server or a worker that did not start
        say(f"error: {exc}")
        return EXIT_UNAVAILABLE
    except _Stop as exc:
        say("interrupted: stopped every worker and node the demo started")
        return EXIT_SIGNAL_BASE + exc.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _Demo:
    def __init__(
        self, args: argparse.Namespace, cluster: Cluster, stack: contextlib.ExitStack
    ) -> None:
        self.seconds: float = args.seconds
        self.workers: int = args.workers
        self.unsafe: bool = args.unsafe
        self.cluster = cluster
        self.stack = stack
        self.expiry = min(2.0, max(1.0, self.seconds / 10))
        self.faults = (
            []
            if args.unsafe or cluster.memory
            else fault_schedule(args.nodes, self.seconds, self.expiry)
        )
        self.tty = sys.stdout.isatty()
        self.memory_asked: bool = args.memory
        self.config = WorkerConfig(cluster.urls, cluster.referee_url, self.expiry, args.unsafe)

    def run(self) -> int:
        self._intro()
        referee: Referee
        if self.cluster.memory:
            referee = MemoryReferee()
            start, stop, results, handles = self._threads(referee)
        else:
            assert self.cluster.referee_url is not None
            referee = RedisReferee(self.cluster.referee_url)
            start, stop, results, handles = self._processes()
        self.stack.callback(referee.close)
        self._await_ready(results)
        began_ns = time.monotonic_ns()
        start.set()
        self._drive(referee)
        stop.set()
        collected = self._collect(results, handles)
        updates, counter, _ = referee.snapshot()
        return self._report(began_ns, collected, updates, counter)

    # -- starting and stopping the workers -----------------------------------------------------

    def _threads(self, referee: Referee) -> tuple[Any, Any, Any, list[Any]]:
        start, stop = threading.Event(), threading.Event()
        results: queue.Queue[Any] = queue.Queue()
        threads = [
            threading.Thread(
                target=work,
                args=(i, self.config, referee, start, stop, results),
                name=f"demo-worker-{i}",
                daemon=True,
            )
            for i in range(self.workers)
        ]
        self.stack.callback(stop.set)  # also on Ctrl-C: the threads see it within an attempt
        for thread in threads:
            thread.start()
        return start, stop, results, threads

    def _processes(self) -> tuple[Any, Any, Any, list[Any]]:
        ctx = multiprocessing.get_context("spawn")  # no inherited threads or sockets
        start, stop, results = ctx.Event(), ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(
                target=_process_main,
                args=(i, self.config, start, stop, results),
                name=f"redsync-demo-worker-{i}",
                daemon=True,
            )
            for i in range(self.workers)
        ]
        self.stack.callback(_stop_processes, procs)
        self.stack.callback(stop.set)
        for proc in procs:
            proc.start()
        return start, stop, results, procs

    def _await_ready(self, results: Any) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        ready = 0
        while ready < self.workers:
            try:
                kind, _ = results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"only {ready} of {self.workers} workers started") from None
            ready += kind == "ready"

    def _collect(self, results: Any, handles: list[Any]) -> list[WorkerResult]:
        collected: list[WorkerResult] = []
        deadline = time.monotonic() + self.expiry + 15.0
        while len(collected) < self.workers and time.monotonic() < deadline:
            try:
                kind, item = results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if kind == "done":
                collected.append(item)
        for handle in handles:
            handle.join(timeout=max(0.1, deadline - time.monotonic()))
        return collected

    # -- the timeline --------------------------------------------------------------------------

    def _drive(self, referee: Referee) -> None:
        t0 = time.monotonic()
        pending = list(self.faults)
        next_tick = TICK
        last_updates, last_tick = 0, 0.0
        killed_at: float | None = None
        while True:
            now = time.monotonic() - t0
            if now >= self.seconds:
                break
            if pending:
                fault = pending[0]
                due = fault.at
                if fault.action == "restart" and killed_at is not None:
                    due = max(due, killed_at + self.expiry + RESTART_MARGIN)
                if now >= due:
                    pending.pop(0)
                    self.cluster.apply(fault)
                    fault.done_at = time.monotonic() - t0
                    if fault.action == "kill":
                        killed_at = fault.done_at
                    if fault.action == "restart" and killed_at is not None:
                        fault.note = f"{fault.done_at - killed_at:.1f} s after its kill"
                    self._line(f"{fault.done_at:5.1f}s  FAULT  {self._describe(fault)}")
                    continue
            if now >= next_tick:
                updates, _, holder = referee.snapshot()
                rate = (updates - last_updates) / max(1e-3, now - last_tick)
                last_updates, last_tick = updates, now
                nodes = " ".join(self.cluster.states) or "(no lock)"
                self._progress(
                    f"{now:5.1f}s  {'updates' if self.unsafe else 'acquisitions'} {updates:6d}"
                    f"  ({rate:5.0f}/s)  last holder {holder:<4}  nodes [{nodes}]"
                )
                next_tick += TICK
            wake = min(self.seconds, next_tick, *(f.at for f in pending[:1]))
            time.sleep(min(0.2, max(0.005, wake - (time.monotonic() - t0))))
        if self.tty:
            print()

    def _describe(self, fault: Fault) -> str:
        names = ", ".join(f"n{i}" for i in fault.nodes)
        total = len(self.cluster.states)
        quorum = total // 2 + 1
        if fault.action == "kill":
            return (
                f"killed {names} (SIGKILL): {len(fault.nodes)} of {total} down, a quorum of "
                f"{quorum} is still reachable"
            )
        if fault.action == "restart":
            return f"restarted {names} empty (no persistence), {fault.note}"
        if fault.action == "pause":
            return f"paused {names} (SIGSTOP): it accepts connections but never answers"
        return f"resumed {names} (SIGCONT)"

    def _line(self, text: str) -> None:
        if self.tty:
            print("\r\033[K" + text, flush=True)
        else:
            print(text, flush=True)

    def _progress(self, text: str) -> None:
        if self.tty:
            print("\r\033[K" + text, end="", flush=True)
        else:
            print(text, flush=True)

    def _intro(self) -> None:
        cluster = self.cluster
        kind = "threads" if cluster.memory else "processes"
        if self.unsafe:
            print(
                f"redsync demo --unsafe: {self.workers} worker {kind} update one counter "
                f"with no lock for {self.seconds:g} s (read it, sleep 1-4 ms, write it +1)"
            )
        else:
            nodes = len(cluster.states)
            _print_wrapped(
                f"redsync demo: {self.workers} worker {kind} contend for lock "
                f"{KEY_PREFIX + LOCK_NAME!r} on {nodes} nodes (quorum {nodes // 2 + 1}, expiry "
                f"{self.expiry:g} s) for {self.seconds:g} s; under it each one updates a counter "
                "unsafely (read it, sleep 1-4 ms, write it +1)",
                indent=0,
            )
        if cluster.memory:
            why = "--memory was given" if self.memory_asked else "redis-server is not installed"
            print(
                f"  {why}: using in-process memory:// nodes, so the workers are threads of this "
                "process and no node faults are injected"
                + ("" if self.memory_asked else " (install redis-server for the full demo)")
            )
        else:
            print(f"  {cluster.where()}; all stopped at the end")
        if self.faults:
            planned = ", ".join(
                f"{f.action} {', '.join(f'n{i}' for i in f.nodes)} at {f.at:.1f}s"
                for f in self.faults
            )
            print(f"  faults planned (never more than the quorum tolerates): {planned}")

    # -- the report ----------------------------------------------------------------------------

    def _report(
        self, began_ns: int, results: list[WorkerResult], updates: int, counter: int
    ) -> int:
        intervals = sorted(
            (begin, end, outlived, r.worker)
            for r in results
            for begin, end, outlived in r.intervals
        )
        latencies = sorted(ms for r in results for ms in r.latencies_ms)
        failures: Counter[str] = Counter()
        for r in results:
            failures.update(r.failures)
        overlaps = _overlaps(intervals)
        outlived = sum(1 for _, _, late, _ in intervals if late)
        lost = updates - counter
        what = "updates" if self.unsafe else "acquisitions"
        print("report")
        print(f"  {what:<20} {updates:7d}  ({updates / self.seconds:.0f}/s)")
        print(f"  {'counter':<20} {counter:7d}  -> lost updates: {lost}")
        print(f"  {'overlapping holders':<20} {overlaps:7d}")
        if latencies:
            p50, p90, p99 = (_percentile(latencies, p) for p in (50, 90, 99))
            print(
                f"  {'acquire latency':<20} p50 {p50:.1f} ms  p90 {p90:.1f} ms  p99 {p99:.1f} ms"
                "  (includes waiting for the other holders)"
            )
        if failures:
            gave_up = ", ".join(f"{n} {kind}" for kind, n in sorted(failures.items()))
            print(f"  {'attempts given up':<20} {gave_up} (retried; nothing was written)")
        if outlived:
            print(
                f"  {'outlived validity':<20} {outlived:7d}  critical sections ended after "
                "the lock's validity (the worker was slowed or paused past the expiry)"
            )
        self._report_faults(began_ns, intervals, latencies)
        complete = len(results) == self.workers
        if not complete:
            print(f"  {self.workers - len(results)} worker(s) did not report: overlaps unchecked")
        if self.unsafe:
            print(
                f"verdict: UNSAFE, as expected without the lock: {lost} lost updates, "
                f"{overlaps} overlapping updates in {updates}. Run without --unsafe to compare."
            )
            return EXIT_VIOLATION if lost or overlaps else EXIT_OK
        if lost or overlaps or not complete:
            why = (
                " Some critical sections outlived their lock validity: Redlock cannot stop a "
                "holder that is paused past its expiry; fence the resource with the lock value."
                if outlived
                else ""
            )
            print(
                f"verdict: SAFETY VIOLATION: {lost} lost updates, {overlaps} overlapping holders "
                f"in {updates} acquisitions.{why}"
            )
            return EXIT_VIOLATION
        print(
            f"verdict: SAFE: 0 lost updates and 0 overlapping holders in {updates} acquisitions"
            + (", through every fault above" if self.faults else "")
        )
        return EXIT_OK

    def _report_faults(
        self, began_ns: int, intervals: list[tuple[int, int, bool, int]], latencies: list[float]
    ) -> None:
        done = [f for f in self.faults if f.done_at is not None]
        if not done:
            return
        starts = [(begin - began_ns) / 1e9 for begin, _, _, _ in intervals]
        bounds = [0.0, *(f.done_at or 0.0 for f in done), self.seconds]

        def window(lo: float, hi: float) -> str:
            n = sum(1 for t in starts if lo <= t < hi)
            return f"{n / max(1e-3, hi - lo):.0f} acquisitions/s"

        print(f"  faults (before the first: {window(bounds[0], bounds[1])})")
        deadline_ms = self.expiry * TIMEOUT_FACTOR * 1000
        effects = {
            "kill": "a quorum still answers; the dead nodes count as failed votes",
            "restart": (
                f"that is longer than the {self.expiry:g} s expiry, so every lock it held had "
                "expired and the empty node cannot vote for a second holder. Restarting it "
                "sooner without persistence could (Redlock's known limit): delay restarts by "
                "the longest expiry, or use fsync'ed AOF"
            ),
            "pause": (
                f"acquire and release wait for its {deadline_ms:.0f} ms fan-out deadline, so "
                "every lock cycle slows down (fail_fast=True spares the acquire)"
            ),
            "resume": "it answers again; its keys kept expiring in real time while it was frozen",
        }
        for i, fault in enumerate(done):
            assert fault.done_at is not None
            print(f"    {fault.done_at:5.1f}s  {self._describe(fault)}")
            rate = window(bounds[i + 1], bounds[i + 2])
            _print_wrapped(f"-> {effects[fault.action]} [{rate}]", indent=12)


def _print_wrapped(text: str, indent: int) -> None:
    """Print ``text`` wrapped to the terminal's width, every line indented."""
    width = max(60, min(120, shutil.get_terminal_size().columns))
    print(textwrap.fill(text, width, initial_indent=" " * indent, subsequent_indent=" " * indent))


def _overlaps(intervals: list[tuple[int, int, bool, int]]) -> int:
    """Count intervals that began before an earlier one (sorted by begin) had ended."""
    count = 0
    latest_end = None
    for begin, end, _, _ in intervals:
        if latest_end is not None and begin < latest_end:
            count += 1
        latest_end = end if latest_end is None else max(latest_end, end)
    return count


def _percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile of sorted ``values``."""
    rank = max(1, -(-len(values) * p // 100))
    return values[int(rank) - 1]


def _stop_processes(procs: list[Any]) -> None:
    """Join the worker processes; terminate, then kill, those that do not stop (by their PID)."""
    for proc in procs:
        if proc.pid is not None:
            proc.join(timeout=2.0)
    for proc in procs:
        if proc.pid is not None and proc.is_alive():
            proc.terminate()
            proc.join(timeout=2.0)
        if proc.pid is not None and proc.is_alive():
            proc.kill()
            proc.join()
