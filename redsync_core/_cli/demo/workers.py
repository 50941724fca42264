"""The demo's workers: the unsafe update under the lock, and their threads or processes.

Worker processes are spawned (no inherited threads or sockets), ignore Ctrl-C (the demo stops
them), and ask the kernel to kill them if the demo dies without stopping them (Linux).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from redsync_core import LockNotAcquired, Redsync
from redsync_core._children import die_with_parent

from .referee import RedisReferee, Referee
from .schedule import TIMEOUT_FACTOR

__all__ = ["Crew", "WorkerConfig", "WorkerResult", "work"]

LOCK_NAME = "counter"
KEY_PREFIX = "redsync-demo:"
READY_TIMEOUT = 60.0  # seconds the workers get to start (spawned processes import redis)
COLLECT_GRACE = 15.0  # seconds, beyond the expiry, the workers get to hand in their results
JOIN_TIMEOUT = 2.0  # seconds a stopping worker process gets before terminate, then kill


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

    def set(self) -> None: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class _Queue(Protocol):
    def put(self, item: Any) -> None: ...

    def get(self, block: bool = True, timeout: float | None = None) -> Any: ...


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
    worker: int,
    config: WorkerConfig,
    start: _Event,
    stop: _Event,
    results: _Queue,
    parent_pid: int,
) -> None:
    """Entry point of a worker process: die with the demo; Ctrl-C is the demo's business."""
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("redsync").setLevel(logging.CRITICAL)  # node faults are expected here
    assert config.referee_url is not None  # processes always use a redis-server referee
    referee = RedisReferee(config.referee_url)
    try:
        work(worker, config, referee, start, stop, results)
    finally:
        referee.close()


class Crew:
    """The workers of one run: threads (memory nodes) or processes, started, then collected.

    Whatever has to be undone (setting ``stop``, stopping the processes) is pushed on ``stack``
    as soon as it exists, so Ctrl-C at any moment leaves nothing running.
    """

    def __init__(self, workers: int, config: WorkerConfig, stack: contextlib.ExitStack) -> None:
        self.workers = workers
        self._config = config
        self._stack = stack
        self._handles: list[Any] = []
        self.start: _Event
        self.stop: _Event
        self._results: _Queue

    def start_threads(self, referee: Referee) -> None:
        """Start the workers as threads of this process, sharing ``referee``."""
        self.start, self.stop = threading.Event(), threading.Event()
        self._results = queue.Queue()
        self._handles = [
            threading.Thread(
                target=work,
                args=(i, self._config, referee, self.start, self.stop, self._results),
                name=f"demo-worker-{i}",
                daemon=True,
            )
            for i in range(self.workers)
        ]
        self._stack.callback(self.stop.set)  # also on Ctrl-C: they see it within an attempt
        for thread in self._handles:
            thread.start()

    def start_processes(self) -> None:
        """Start the workers as spawned processes, each with its own referee client."""
        ctx = multiprocessing.get_context("spawn")  # no inherited threads or sockets
        self.start, self.stop, self._results = ctx.Event(), ctx.Event(), ctx.Queue()
        self._handles = [
            ctx.Process(
                target=_process_main,
                args=(i, self._config, self.start, self.stop, self._results, os.getpid()),
                name=f"redsync-demo-worker-{i}",
                daemon=True,
            )
            for i in range(self.workers)
        ]
        self._stack.callback(_stop_processes, self._handles)
        self._stack.callback(self.stop.set)
        for proc in self._handles:
            proc.start()

    def await_ready(self) -> None:
        """Wait until every worker is ready; raise RuntimeError after 60 s."""
        deadline = time.monotonic() + READY_TIMEOUT
        ready = 0
        while ready < self.workers:
            try:
                kind, _ = self._results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"only {ready} of {self.workers} workers started") from None
            ready += kind == "ready"

    def collect(self, expiry: float) -> list[WorkerResult]:
        """Return the results handed in within ``expiry`` + 15 s (seconds), joining the workers."""
        collected: list[WorkerResult] = []
        deadline = time.monotonic() + expiry + COLLECT_GRACE
        while len(collected) < self.workers and time.monotonic() < deadline:
            try:
                kind, item = self._results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if kind == "done":
                collected.append(item)
        for handle in self._handles:
            handle.join(timeout=max(0.1, deadline - time.monotonic()))
        return collected


def _stop_processes(procs: list[Any]) -> None:
    """Join the worker processes; terminate, then kill, those that do not stop (by their PID)."""
    for proc in procs:
        if proc.pid is not None:
            proc.join(timeout=JOIN_TIMEOUT)
    for proc in procs:
        if proc.pid is not None and proc.is_alive():
            proc.terminate()
            proc.join(timeout=JOIN_TIMEOUT)
        if proc.pid is not None and proc.is_alive():
            proc.kill()
            proc.join(timeout=JOIN_TIMEOUT)
