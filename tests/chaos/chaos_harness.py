"""Fault-injection harness for the chaos tests.

Worker processes (forked with ``multiprocessing``) contend for one Redlock lock around a
deliberately non-atomic read-modify-write (GET, sleep, SET) of a counter on a separate referee
Redis that is never faulted. Every holder reports the interval during which it believed it held
the lock and did its side effect, on the system-wide ``CLOCK_BOOTTIME`` clock, so intervals from
different processes can be compared. The parent injects faults into the lock nodes meanwhile and
records when each phase of the schedule began and ended.

What is checked afterwards (``Verdict``):

- no lost update: the counter equals the number of committed increments (counted twice: by the
  workers and by an atomic INCR on the referee);
- no overlapping holders: the committed intervals, sorted by start, never overlap;
- no holder overran its validity: each side effect ended before the validity the holder computed;
- progress: at least one acquisition in every phase that has a quorum of lock nodes up;
- no acquisition in a phase without a quorum;
- every ``lock()``/``unlock()`` call returned within its bound (tries x 2 x deadline + delays,
  or timeout + deadline);
- ``lock()`` failed only with LockTaken / LockNotAcquired / QuorumUnreachable / LockTimeout and
  ``unlock()`` never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import queue
import signal
import socket
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio

from redsync_core import AsyncRedsync, LockNotAcquired, QuorumUnreachable, Redsync
from redsync_core.testing import die_with_parent

ALLOWED_LOCK_ERRORS = frozenset(
    {"LockTaken", "LockNotAcquired", "QuorumUnreachable", "LockTimeout"}
)
LOCK_NAME = "chaos:lock"
COUNTER_KEY = "chaos:counter"
COMMITS_KEY = "chaos:commits"
#: Seconds the read-modify-write sleeps between its GET and its SET, to widen the race window.
RMW_GAP = 0.003
#: Allowance for process scheduling on a loaded 2-core machine when comparing a call's duration
#: with its bound. The bound itself is what the library promises; this slack is only for the CPU.
SCHEDULING_SLACK = 2.0

_CONTEXT = multiprocessing.get_context("fork")


def now() -> float:
    """Return seconds on CLOCK_BOOTTIME: monotonic, system-wide, counting through suspend."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


# --- workers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerConfig:
    """How one worker locks: the library's options and the bound its calls must respect."""

    urls: tuple[str, ...]
    referee_url: str
    expiry: float = 1.0
    timeout_factor: float = 0.1
    tries: int | None = 3
    retry_delay: float = 0.05
    timeout: float | None = None  # lock(timeout=...)
    margin: float = 0.2  # seconds of validity required before the side effect
    tasks: int = 1  # asyncio tasks per worker process

    @property
    def deadline(self) -> float:
        """One fan-out's deadline in seconds (``expiry * timeout_factor``, whole ms)."""
        return max(1, int(round(self.expiry * 1000) * self.timeout_factor)) / 1000

    @property
    def lock_bound(self) -> float:
        """The longest a ``lock()`` call may take, in seconds.

        With ``timeout``: the last attempt's SET fan-out is cut at the timeout, then one release
        fan-out follows. Otherwise each try is a SET fan-out plus a release fan-out (each at
        most one deadline), with a retry delay between tries.
        """
        if self.timeout is not None:
            return self.timeout + self.deadline
        assert self.tries is not None
        return self.tries * 2 * self.deadline + (self.tries - 1) * self.retry_delay

    @property
    def unlock_bound(self) -> float:
        """The longest an ``unlock()`` call may take: one fan-out, in seconds."""
        return self.deadline

    def options(self) -> dict[str, Any]:
        return {
            "expiry": self.expiry,
            "timeout_factor": self.timeout_factor,
            "tries": self.tries,
            "retry_delay": self.retry_delay,
        }


@dataclass
class Recorder:
    """What one worker (process or asyncio task) saw."""

    wid: str
    cfg: WorkerConfig
    # (t0 call start, t1 lock returned, end of side effect, validity end)
    commits: list[tuple[float, float, float, float]] = field(default_factory=list)
    acquisitions: list[tuple[float, float]] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    skipped: int = 0
    unlock_false: int = 0
    lock_calls: int = 0
    unlock_calls: int = 0
    longest_lock: tuple[float, str, float] = (0.0, "", 0.0)  # duration, outcome, start
    longest_unlock: tuple[float, float] = (0.0, 0.0)
    over_bound: list[str] = field(default_factory=list)

    def lock_call(self, t0: float, t1: float, outcome: str) -> None:
        self.lock_calls += 1
        took = t1 - t0
        if took > self.longest_lock[0]:
            self.longest_lock = (took, outcome, t0)
        if took > self.cfg.lock_bound + SCHEDULING_SLACK:
            self.over_bound.append(
                f"{self.wid}: lock() took {took:.3f} s ({outcome}) > bound "
                f"{self.cfg.lock_bound:.3f} s + {SCHEDULING_SLACK} s slack, started at {t0:.3f}"
            )

    def unlock_call(self, t0: float, t1: float, ok: bool) -> None:
        self.unlock_calls += 1
        if not ok:
            self.unlock_false += 1
        took = t1 - t0
        if took > self.longest_unlock[0]:
            self.longest_unlock = (took, t0)
        if took > self.cfg.unlock_bound + SCHEDULING_SLACK:
            self.over_bound.append(
                f"{self.wid}: unlock() took {took:.3f} s > bound {self.cfg.unlock_bound:.3f} s "
                f"+ {SCHEDULING_SLACK} s slack, started at {t0:.3f}"
            )

    def failed(self, t0: float, exc: BaseException) -> None:
        name = type(exc).__name__
        self.failures[name] += 1
        self.lock_call(t0, now(), name)
        if name not in ALLOWED_LOCK_ERRORS:
            self.unexpected.append(f"lock() raised {name}: {exc}")

    def crashed(self, call: str, exc: BaseException) -> None:
        self.unexpected.append(
            f"{call}() raised {type(exc).__name__}: {exc}\n{''.join(traceback.format_exception(exc))}"
        )

    def dump(self) -> dict[str, Any]:
        return {
            "wid": self.wid,
            "commits": self.commits,
            "acquisitions": self.acquisitions,
            "failures": dict(self.failures),
            "unexpected": self.unexpected,
            "skipped": self.skipped,
            "unlock_false": self.unlock_false,
            "lock_calls": self.lock_calls,
            "unlock_calls": self.unlock_calls,
            "longest_lock": self.longest_lock,
            "longest_unlock": self.longest_unlock,
            "lock_bound": self.cfg.lock_bound,
            "unlock_bound": self.cfg.unlock_bound,
            "over_bound": self.over_bound,
        }


def _sync_worker(wid: str, cfg: WorkerConfig, stop: Any, results: Any) -> None:
    rec = Recorder(wid, cfg)
    try:
        rs = Redsync(list(cfg.urls), **cfg.options())
        referee = redis.Redis.from_url(cfg.referee_url, socket_timeout=10)
        while not stop.is_set():
            mutex = rs.new_mutex(LOCK_NAME)
            t0 = now()
            try:
                mutex.lock(timeout=cfg.timeout)
            except LockNotAcquired as exc:
                rec.failed(t0, exc)
                if isinstance(exc, QuorumUnreachable):
                    time.sleep(0.02)  # nodes refuse at once: do not spin the shared CPU
                continue
            except Exception as exc:
                rec.crashed("lock", exc)
                time.sleep(0.02)
                continue
            t1 = now()
            validity_end = t1 + mutex.remaining
            rec.lock_call(t0, t1, "acquired")
            rec.acquisitions.append((t0, t1))
            # The pattern safety.md asks of users: check `remaining` before the side effect.
            if mutex.remaining > cfg.margin:
                value = int(referee.get(COUNTER_KEY) or 0)
                time.sleep(RMW_GAP)
                if mutex.remaining > cfg.margin:
                    referee.set(COUNTER_KEY, value + 1)
                    end = now()
                    referee.incr(COMMITS_KEY)
                    rec.commits.append((t0, t1, end, validity_end))
                else:
                    rec.skipped += 1
            else:
                rec.skipped += 1
            u0 = now()
            try:
                ok = mutex.unlock()
            except Exception as exc:
                rec.crashed("unlock", exc)
                ok = False
            rec.unlock_call(u0, now(), ok)
        rs.close()
        referee.close()
        results.put(rec.dump())
    except BaseException as exc:
        rec.crashed("worker", exc)
        results.put(rec.dump())


async def _async_task(
    wid: str, cfg: WorkerConfig, rs: AsyncRedsync, stop: Any, rec: Recorder
) -> None:
    referee = redis.asyncio.Redis.from_url(cfg.referee_url, socket_timeout=10)
    try:
        while not stop.is_set():
            mutex = rs.new_mutex(LOCK_NAME)
            t0 = now()
            try:
                await mutex.lock(timeout=cfg.timeout)
            except LockNotAcquired as exc:
                rec.failed(t0, exc)
                if isinstance(exc, QuorumUnreachable):
                    await asyncio.sleep(0.02)
                continue
            except Exception as exc:
                rec.crashed("lock", exc)
                await asyncio.sleep(0.02)
                continue
            t1 = now()
            validity_end = t1 + mutex.remaining
            rec.lock_call(t0, t1, "acquired")
            rec.acquisitions.append((t0, t1))
            if mutex.remaining > cfg.margin:
                value = int(await referee.get(COUNTER_KEY) or 0)
                await asyncio.sleep(RMW_GAP)
                if mutex.remaining > cfg.margin:
                    await referee.set(COUNTER_KEY, value + 1)
                    end = now()
                    await referee.incr(COMMITS_KEY)
                    rec.commits.append((t0, t1, end, validity_end))
                else:
                    rec.skipped += 1
            else:
                rec.skipped += 1
            u0 = now()
            try:
                ok = await mutex.unlock()
            except Exception as exc:
                rec.crashed("unlock", exc)
                ok = False
            rec.unlock_call(u0, now(), ok)
    finally:
        await referee.aclose()


def _async_worker(wid: str, cfg: WorkerConfig, stop: Any, results: Any) -> None:
    recs = [Recorder(f"{wid}.{i}", cfg) for i in range(cfg.tasks)]

    async def main() -> None:
        rs = AsyncRedsync(list(cfg.urls), **cfg.options())
        try:
            # return_exceptions: one task's crash must not hide the others' records.
            outcomes = await asyncio.gather(
                *(_async_task(rec.wid, cfg, rs, stop, rec) for rec in recs),
                return_exceptions=True,
            )
            for rec, outcome in zip(recs, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    rec.crashed("task", outcome)
        finally:
            await rs.close()

    try:
        asyncio.run(main())
    except BaseException as exc:
        recs[0].crashed("worker", exc)
    for rec in recs:
        results.put(rec.dump())


def _dying_with_parent(parent_pid: int, target: Callable[..., None], *args: Any) -> None:
    """Worker entry: die with the test process, even a SIGKILLed one (Linux), then run."""
    die_with_parent(parent_pid)
    target(*args)


class Workers:
    """Worker processes started by the test and stopped by their own PIDs."""

    def __init__(self, configs: Sequence[WorkerConfig], *, asyncio_workers: bool = False) -> None:
        self.stop_event = _CONTEXT.Event()
        self.results: Any = _CONTEXT.Queue()
        target = _async_worker if asyncio_workers else _sync_worker
        self.expected = sum(cfg.tasks if asyncio_workers else 1 for cfg in configs)
        parent = os.getpid()
        self.procs = [
            _CONTEXT.Process(
                target=_dying_with_parent,
                args=(parent, target, f"w{i}", cfg, self.stop_event, self.results),
                daemon=True,
            )
            for i, cfg in enumerate(configs)
        ]

    def start(self) -> None:
        for proc in self.procs:
            proc.start()

    def stop(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Ask the workers to finish their current call; return every worker's record."""
        self.stop_event.set()
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        try:
            while len(records) < self.expected:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                with contextlib.suppress(queue.Empty):
                    records.append(self.results.get(timeout=min(1.0, left)))
        finally:
            for proc in self.procs:
                proc.join(timeout=5)
                if proc.is_alive():
                    proc.kill()  # our own child, by its PID
                    proc.join(timeout=10)
        if len(records) < self.expected:
            raise AssertionError(
                f"only {len(records)} of {self.expected} workers reported within {timeout} s "
                "(a worker hung: that is itself a bounded-call violation)"
            )
        return records


# --- faults ----------------------------------------------------------------------------------


class HungListener:
    """A TCP port that accepts connections and never answers (a node that hangs).

    Bound to ``127.0.0.1:port``; a thread accepts and keeps every connection open, reading
    nothing. ``close()`` closes the listener and every accepted socket.
    """

    def __init__(self, port: int = 0) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(128)
        self.port: int = self._sock.getsockname()[1]
        self._accepted: list[socket.socket] = []
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="hung-listener", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._accepted.append(conn)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=2)
        for conn in self._accepted:
            conn.close()

    def __enter__(self) -> HungListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def refused_port() -> int:
    """Return a loopback port with nothing listening (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Phase:
    label: str
    quorum_up: bool
    start: float = 0.0
    end: float = 0.0


@dataclass
class Schedule:
    """Runs fault actions and records each phase's window on CLOCK_BOOTTIME."""

    phases: list[Phase] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)

    def phase(
        self, label: str, *, quorum_up: bool, seconds: float, action: Callable[[], None] | None
    ) -> None:
        if action is not None:
            action()
        phase = Phase(label, quorum_up, start=now())
        time.sleep(seconds)
        phase.end = now()
        self.phases.append(phase)

    def fault(self, kind: str, count: int = 1) -> None:
        self.faults[kind] += count

    @property
    def fault_count(self) -> int:
        return sum(self.faults.values())


def restart_delay(expiry: float) -> float:
    """Return how long a crashed lock node stays down before it restarts empty, in seconds.

    antirez's delayed restart: longer than the largest expiry in use, so that no validity the
    node voted for is still running when it comes back without its keys.
    """
    return expiry + 0.2


def restart_later(node: Any, expiry: float) -> tuple[threading.Thread, list[float]]:
    """Restart the (crashed) ``node`` empty after ``restart_delay(expiry)`` s, in a thread.

    Return the thread and a list that receives the restart time (CLOCK_BOOTTIME) once done.
    """
    restarted: list[float] = []

    def run() -> None:
        time.sleep(restart_delay(expiry))
        node.start()
        restarted.append(now())

    thread = threading.Thread(target=run, name="delayed-restart", daemon=True)
    thread.start()
    return thread, restarted


def pause_process(pid: int) -> None:
    """SIGSTOP one of our own worker processes."""
    os.kill(pid, signal.SIGSTOP)


def resume_process(pid: int) -> None:
    """SIGCONT one of our own worker processes."""
    os.kill(pid, signal.SIGCONT)


# --- verdict ---------------------------------------------------------------------------------


@dataclass
class Verdict:
    """Everything the workers and the referee reported, checked."""

    records: list[dict[str, Any]]
    counter: int
    commits_on_referee: int
    schedule: Schedule

    @property
    def commits(self) -> list[tuple[float, float, float, float, str]]:
        return sorted(
            ((*tuple(c), r["wid"]) for r in self.records for c in r["commits"]),  # type: ignore[misc]
            key=lambda c: c[1],
        )

    @property
    def acquisitions(self) -> list[tuple[float, float, str]]:
        return sorted((a[0], a[1], r["wid"]) for r in self.records for a in r["acquisitions"])

    def overlaps(self) -> list[str]:
        """Scan the committed [lock returned, side effect done] intervals for overlaps."""
        found = []
        prev: tuple[float, float, float, float, str] | None = None
        for commit in self.commits:
            if prev is not None and commit[1] < prev[2]:
                found.append(
                    f"{commit[4]} held from {commit[1]:.4f} while {prev[4]} held "
                    f"[{prev[1]:.4f}, {prev[2]:.4f}]"
                )
            if prev is None or commit[2] > prev[2]:
                prev = commit
        return found

    def overruns(self) -> list[str]:
        return [
            f"{c[4]} finished its side effect at {c[2]:.4f} after its validity ended at {c[3]:.4f}"
            for c in self.commits
            if c[2] > c[3]
        ]

    def lost_updates(self) -> int:
        return len(self.commits) - self.counter

    def unexpected(self) -> list[str]:
        return [u for r in self.records for u in r["unexpected"]]

    def over_bound(self) -> list[str]:
        return [o for r in self.records for o in r["over_bound"]]

    def failures(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for r in self.records:
            total.update(r["failures"])
        return total

    def stalled_phases(self) -> list[str]:
        """Phases with a quorum up but no acquisition completed inside them."""
        stalled = []
        for phase in self.schedule.phases:
            if phase.quorum_up and not any(
                phase.start <= t1 <= phase.end for _, t1, _ in self.acquisitions
            ):
                stalled.append(phase.label)
        return stalled

    def impossible_acquisitions(self) -> list[str]:
        """Acquisitions made entirely inside a phase without a quorum of lock nodes."""
        found = []
        for phase in self.schedule.phases:
            if phase.quorum_up:
                continue
            for t0, t1, wid in self.acquisitions:
                if phase.start <= t0 and t1 <= phase.end:
                    found.append(f"{wid} acquired at {t1:.4f} during {phase.label!r}")
        return found

    def longest(self, key: str) -> tuple[float, float]:
        """Return the longest call of kind ``key`` and the bound of the worker that made it."""
        worst = max(self.records, key=lambda r: r[key][0])
        bound = worst["lock_bound" if key == "longest_lock" else "unlock_bound"]
        return worst[key][0], bound

    def violations(self) -> list[str]:
        problems = []
        if self.counter != self.commits_on_referee or self.lost_updates():
            problems.append(
                f"lost updates: counter={self.counter}, commits reported={len(self.commits)}, "
                f"commits counted on the referee={self.commits_on_referee}"
            )
        problems += self.overlaps()
        problems += self.overruns()
        problems += self.impossible_acquisitions()
        return problems

    def figures(self, title: str) -> dict[str, Any]:
        lock_took, lock_bound = self.longest("longest_lock")
        unlock_took, unlock_bound = self.longest("longest_unlock")
        return {
            "scenario": title,
            "faults injected": self.schedule.fault_count,
            "fault kinds": dict(self.schedule.faults),
            "lock() calls": sum(r["lock_calls"] for r in self.records),
            "acquisitions checked": len(self.acquisitions),
            "committed read-modify-writes": len(self.commits),
            "skipped (remaining too small)": sum(r["skipped"] for r in self.records),
            "failures by type": dict(self.failures()),
            "unlock() == False": sum(r["unlock_false"] for r in self.records),
            "violations": len(self.violations()),
            "longest lock()": f"{lock_took:.3f} s (bound {lock_bound:.3f} s)",
            "longest unlock()": f"{unlock_took:.3f} s (bound {unlock_bound:.3f} s)",
        }


def read_referee(url: str) -> tuple[int, int]:
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        return int(client.get(COUNTER_KEY) or 0), int(client.get(COMMITS_KEY) or 0)
    finally:
        client.close()


def phases_text(phases: Iterable[Phase]) -> str:
    return "; ".join(f"{p.label} [{p.start:.2f}-{p.end:.2f}]" for p in phases)
