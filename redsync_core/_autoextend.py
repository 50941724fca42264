"""Auto-extension: one scheduler per process (one per event loop for asyncio) keeps every
auto-extended lock alive, and reports the ones it could not keep.

What it renews is anything that fits ``Renewable`` (an acquisition of a mutex), handed in with
the fan-out that extends it. Extensions due together on the same fan-out go out as one call:
one round trip per node, all nodes at once. The decisions (when to extend, when a lock is lost)
come from ``_algorithm.renewal`` and the extend flow; this module only schedules and forwards.
It knows no driver and no transport.

Fork safety: the sync scheduler's thread is not inherited by a child process. The child
starts with an empty scheduler (``os.register_at_fork``) and a fresh thread on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import inspect
import itertools
import logging
import os
import random
import threading
import weakref
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import _hooks as hooks
from ._algorithm import flows
from ._algorithm.effects import Effect, FanOut, NodeReply, Tally
from ._algorithm.family import over_keys
from ._algorithm.renewal import early_ms, next_extension_ms, retry_or_lost_ms, within_max_hold
from ._clock import monotonic_ms
from ._exceptions import NodeError
from ._options import MutexOptions

__all__ = [
    "AsyncExtendMany",
    "ExtendMany",
    "Renewable",
    "Replies",
    "async_scheduler",
    "sync_scheduler",
]

logger = logging.getLogger("redsync")

#: No job is ever pulled forward by more than this (see ``early_ms``).
MAX_EARLY_MS = 100

Replies = tuple[NodeReply | NodeError | None, ...]
"""One fan-out's replies, in node order."""

ExtendMany = Callable[[Sequence[FanOut]], list[Replies]]
"""Send several EXTEND fan-outs (one round trip per node where it can); return each one's replies.

The scheduler batches the extensions that share a fan-out: give the same callable (or an equal
one, such as the same object's bound method) for every lock on the same nodes."""

AsyncExtendMany = Callable[[Sequence[FanOut]], Awaitable[list[Replies]]]
"""The asyncio ``ExtendMany``."""

ExtendFlow = Generator[Effect, "Tally | None", flows.Extended]


class Renewable(Protocol):
    """One acquisition of a lock, as the scheduler sees it while it keeps the lock alive."""

    @property
    def options(self) -> MutexOptions:
        """The lock's options (``expiry_ms``, ``set_nx_on_extend``...)."""

    @property
    def live(self) -> bool:
        """False once the lock was released or acquired again: stop extending this one."""

    @property
    def until_ms(self) -> int | None:
        """The end of the validity on the monotonic clock (ms)."""

    @property
    def hold_end_ms(self) -> int | None:
        """When auto-extension must stop (``max_hold`` after the acquisition, ms), or None."""

    def target(self) -> flows.Target:
        """Return the key and value the extensions are for."""

    def extended(self, until_ms: int) -> None:
        """Record a successful extension: the validity now ends at ``until_ms``."""

    def extend_report(self, ok: bool, elapsed_ms: int) -> Callable[[], object] | None:
        """Return the report of one extension attempt to call after the batch, if any."""

    def lost(self, reason: str) -> Callable[[], object] | None:
        """Record that the lock could not be kept; return the report to call (once), if any."""


@dataclass(order=True)
class _Job:
    due_ms: int
    seq: int
    renewable: Renewable = field(compare=False)
    fan_out: Any = field(compare=False)  # ExtendMany or AsyncExtendMany; the batch key


@dataclass
class _Step:
    """One due extension: its flow, and the fan-out it is waiting for."""

    job: _Job
    flow: ExtendFlow
    effect: FanOut


class _Plan:
    """The schedule of every auto-extended lock, shared by the thread and asyncio schedulers."""

    def __init__(self) -> None:
        self._heap: list[_Job] = []
        self._seq = itertools.count()
        self._rng = random.Random()

    def add(self, renewable: Renewable, fan_out: Any, now_ms: int) -> None:
        due = next_extension_ms(renewable.options.expiry_ms, now_ms, self._rng.randrange)
        self._push(_Job(due, next(self._seq), renewable, fan_out))

    def _push(self, job: _Job) -> None:
        heapq.heappush(self._heap, job)

    def _again(self, job: _Job, due_ms: int) -> None:
        self._push(_Job(due_ms, next(self._seq), job.renewable, job.fan_out))

    def next_due_ms(self) -> int | None:
        while self._heap and not self._heap[0].renewable.live:
            heapq.heappop(self._heap)
        return self._heap[0].due_ms if self._heap else None

    def pop_due(self, now_ms: int) -> list[_Job]:
        """Pop the jobs due now, and those due soon enough to join the same batch."""
        jobs, later = [], []
        while self._heap and self._heap[0].due_ms <= now_ms + MAX_EARLY_MS:
            job = heapq.heappop(self._heap)
            if not job.renewable.live:
                continue
            if job.due_ms <= now_ms + early_ms(job.renewable.options.expiry_ms):
                jobs.append(job)
            else:
                later.append(job)
        for job in later:
            heapq.heappush(self._heap, job)
        return jobs

    def start(self, jobs: list[_Job], now_ms: int) -> tuple[list[_Step], list[Callable[[], Any]]]:
        """Start the extend flow of every due job; settle the ones that finish at once."""
        steps, callbacks = [], []
        for job in jobs:
            renewable = job.renewable
            options = renewable.options
            if not within_max_hold(now_ms, options.expiry_ms, renewable.hold_end_ms):
                callbacks += self._stop(job, now_ms)
                continue
            target = renewable.target()
            flow = over_keys(
                flows.extend(
                    options,
                    target,
                    ttl_ms=options.expiry_ms,
                    now_ms=now_ms,
                    until_ms=renewable.until_ms,
                ),
                target.keys,
            )
            try:
                effect = next(flow)
            except StopIteration as done:
                callbacks += self.settle(job, done.value, now_ms)
                continue
            assert isinstance(effect, FanOut)  # the extend flow never sleeps
            steps.append(_Step(job, flow, effect))
        return steps, callbacks

    def finish(
        self, step: _Step, replies: Replies, started_ms: int, now_ms: int
    ) -> list[Callable[[], Any]]:
        """Feed one step its replies and settle the outcome."""
        # Listeners hear about it with the callbacks, never under the scheduler's lock.
        reports = [hooks.node_errors_report(replies)] if hooks.listeners else []
        try:
            step.flow.send(Tally(replies, started_ms, now_ms))
        except StopIteration as done:
            return reports + self.settle(step.job, done.value, now_ms, started_ms)
        raise RuntimeError("the extend flow yielded twice")  # pragma: no cover

    def settle(
        self, job: _Job, outcome: flows.Extended, now_ms: int, started_ms: int | None = None
    ) -> list[Callable[[], Any]]:
        """Reschedule after an extension, or mark the lock lost; return the reports to call
        (listeners' events, ``on_lost``)."""
        renewable = job.renewable
        if not renewable.live:
            return []
        reports: list[Callable[[], Any]] = []
        report = renewable.extend_report(
            outcome.until_ms is not None, now_ms - (now_ms if started_ms is None else started_ms)
        )
        if report is not None:
            reports.append(report)
        expiry_ms = renewable.options.expiry_ms
        if outcome.until_ms is not None:
            renewable.extended(outcome.until_ms)
            self._again(job, next_extension_ms(expiry_ms, now_ms, self._rng.randrange))
            return reports
        retry_ms = retry_or_lost_ms(now_ms, renewable.until_ms, expiry_ms, outcome.gone)
        if retry_ms is not None:
            self._again(job, retry_ms)
            return reports
        reason = (
            "a quorum of nodes no longer holds our value"
            if outcome.gone
            else "extensions failed until its validity ran out"
        )
        return reports + self._lose(job, reason)

    def _stop(self, job: _Job, now_ms: int) -> list[Callable[[], Any]]:
        """Stop extending at ``max_hold``: report the loss once the validity has run out."""
        renewable = job.renewable
        if renewable.until_ms is not None and now_ms < renewable.until_ms:
            self._again(job, renewable.until_ms)
            return []
        return self._lose(
            job, f"held for max_hold={renewable.options.max_hold:g} s; auto-extension stopped"
        )

    @staticmethod
    def _lose(job: _Job, reason: str) -> list[Callable[[], Any]]:
        """Mark the lock lost; return its report (listeners, ``on_lost``) the first time only."""
        report = job.renewable.lost(reason)
        return [] if report is None else [report]


def _by_fan_out(steps: list[_Step]) -> list[tuple[Any, list[_Step]]]:
    """Group the steps that share a fan-out (the same nodes): each group is one call."""
    groups: dict[Any, list[_Step]] = {}
    for step in steps:
        groups.setdefault(step.job.fan_out, []).append(step)
    return list(groups.items())


def _run_callbacks(callbacks: list[Callable[[], Any]]) -> list[Any]:
    results = []
    for callback in callbacks:
        try:
            results.append(callback())
        except Exception:
            logger.exception("on_lost callback raised")
    return results


class ThreadScheduler:
    """Extends every auto-extended sync lock of this process from one daemon thread."""

    def __init__(self) -> None:
        self._plan = _Plan()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, renewable: Renewable, fan_out: ExtendMany) -> None:
        """Start extending ``renewable`` (just acquired) through ``fan_out``, every third of
        its expiry."""
        with self._cond:
            self._plan.add(renewable, fan_out, monotonic_ms())
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="redsync-autoextend", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _next_jobs(self) -> list[_Job]:
        with self._cond:
            while True:
                now = monotonic_ms()
                due = self._plan.next_due_ms()
                if due is not None and due <= now:
                    return self._plan.pop_due(now)
                self._cond.wait(None if due is None else (due - now) / 1000)

    def _run(self) -> None:
        while True:
            jobs = self._next_jobs()
            steps, callbacks = self._plan.start(jobs, monotonic_ms())
            for fan_out, group in _by_fan_out(steps):
                started = monotonic_ms()
                replies = fan_out([step.effect for step in group])
                finished = monotonic_ms()
                for step, step_replies in zip(group, replies, strict=True):
                    with self._cond:
                        callbacks += self._plan.finish(step, step_replies, started, finished)
            _run_callbacks(callbacks)


class AsyncScheduler:
    """Extends every auto-extended asyncio lock of one event loop from one task."""

    def __init__(self) -> None:
        self._plan = _Plan()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def add(self, renewable: Renewable, fan_out: AsyncExtendMany) -> None:
        """Start extending ``renewable`` (just acquired) through ``fan_out``, every third of
        its expiry."""
        self._plan.add(renewable, fan_out, monotonic_ms())
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="redsync-autoextend"
            )
        self._wake.set()

    async def _next_jobs(self) -> list[_Job]:
        while True:
            now = monotonic_ms()
            due = self._plan.next_due_ms()
            if due is not None and due <= now:
                return self._plan.pop_due(now)
            self._wake.clear()
            timeout = None if due is None else (due - now) / 1000
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _run(self) -> None:
        while True:
            jobs = await self._next_jobs()
            steps, callbacks = self._plan.start(jobs, monotonic_ms())
            for fan_out, group in _by_fan_out(steps):
                started = monotonic_ms()
                replies = await fan_out([step.effect for step in group])
                finished = monotonic_ms()
                for step, step_replies in zip(group, replies, strict=True):
                    callbacks += self._plan.finish(step, step_replies, started, finished)
            for result in _run_callbacks(callbacks):
                if inspect.isawaitable(result):
                    await result


_thread_scheduler: ThreadScheduler | None = None
_thread_scheduler_lock = threading.Lock()
_loop_schedulers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncScheduler] = (
    weakref.WeakKeyDictionary()
)


def sync_scheduler() -> ThreadScheduler:
    """Return this process's thread scheduler (created, with its thread, on first use)."""
    global _thread_scheduler
    with _thread_scheduler_lock:
        if _thread_scheduler is None:
            _thread_scheduler = ThreadScheduler()
        return _thread_scheduler


def async_scheduler() -> AsyncScheduler:
    """Return the scheduler of the running event loop."""
    loop = asyncio.get_running_loop()
    scheduler = _loop_schedulers.get(loop)
    if scheduler is None:
        scheduler = _loop_schedulers[loop] = AsyncScheduler()
    return scheduler


def _forget_after_fork() -> None:
    # The child has no scheduler thread; its inherited locks belong to the parent.
    global _thread_scheduler, _thread_scheduler_lock
    _thread_scheduler = None
    _thread_scheduler_lock = threading.Lock()
    _loop_schedulers.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
