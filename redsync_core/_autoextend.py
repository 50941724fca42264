"""Auto-extension: one scheduler per process (one per event loop for asyncio) keeps every
auto-extended lock alive, and reports the ones it could not keep.

Extensions due together on the same ``Redsync`` go out as one batch: one script call per node,
all nodes at once. The decisions (when to extend, when a lock is lost) come from
``_algorithm.renewal`` and the extend flow; this module only schedules and forwards.

Fork safety: the sync scheduler's thread is not inherited by a child process. The child
starts with an empty scheduler (``os.register_at_fork``) and a fresh thread on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import inspect
import itertools
import logging
import os
import random
import threading
import weakref
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import _hooks as hooks
from ._algorithm import flows
from ._algorithm.effects import Batch, Effect, FanOut, Tally
from ._algorithm.renewal import early_ms, next_extension_ms, retry_or_lost_ms
from ._clock import monotonic_ms
from ._transport import aio as async_transport
from ._transport import sync as sync_transport
from ._transport.commands import Single, split_batch

if TYPE_CHECKING:
    from ._async import AsyncMutex
    from ._base import MutexBase
    from ._sync import Mutex

__all__ = ["async_scheduler", "sync_scheduler"]

logger = logging.getLogger("redsync")

#: No job is ever pulled forward by more than this (see ``early_ms``).
MAX_EARLY_MS = 100

ExtendFlow = Generator[Effect, "Tally | None", flows.Extended]


@dataclass(order=True)
class _Job:
    due_ms: int
    seq: int
    mutex: MutexBase = field(compare=False)
    generation: int = field(compare=False)

    @property
    def live(self) -> bool:
        """False once the mutex was unlocked or re-locked since this job was planned."""
        return self.generation == self.mutex._renewal_generation


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

    def add(self, mutex: MutexBase, now_ms: int) -> None:
        due = next_extension_ms(mutex.options.expiry_ms, now_ms, self._rng.randrange)
        self._push(mutex, due)

    def _push(self, mutex: MutexBase, due_ms: int) -> None:
        heapq.heappush(self._heap, _Job(due_ms, next(self._seq), mutex, mutex._renewal_generation))

    def next_due_ms(self) -> int | None:
        while self._heap and not self._heap[0].live:
            heapq.heappop(self._heap)
        return self._heap[0].due_ms if self._heap else None

    def pop_due(self, now_ms: int) -> list[_Job]:
        """Pop the jobs due now, and those due soon enough to join the same batch."""
        jobs, later = [], []
        while self._heap and self._heap[0].due_ms <= now_ms + MAX_EARLY_MS:
            job = heapq.heappop(self._heap)
            if not job.live:
                continue
            if job.due_ms <= now_ms + early_ms(job.mutex.options.expiry_ms):
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
            mutex = job.mutex
            flow = flows.extend(
                mutex.options,
                mutex._target(),
                ttl_ms=mutex.options.expiry_ms,
                now_ms=now_ms,
                until_ms=mutex._until_ms,
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
        self, step: _Step, replies: tuple[Single, ...], started_ms: int, now_ms: int
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
        mutex = job.mutex
        if not job.live:
            return []
        reports: list[Callable[[], Any]] = []
        if hooks.listeners:
            elapsed_ms = now_ms - (now_ms if started_ms is None else started_ms)
            reports.append(hooks.extend_report(mutex, outcome.until_ms is not None, elapsed_ms))
        expiry_ms = mutex.options.expiry_ms
        if outcome.until_ms is not None:
            mutex._until_ms = outcome.until_ms
            self._push(mutex, next_extension_ms(expiry_ms, now_ms, self._rng.randrange))
            return reports
        retry_ms = retry_or_lost_ms(now_ms, mutex._until_ms, expiry_ms, outcome.gone)
        if retry_ms is not None:
            self._push(mutex, retry_ms)
            return reports
        reason = (
            "a quorum of nodes no longer holds our value"
            if outcome.gone
            else "extensions failed until its validity ran out"
        )
        if mutex._mark_lost(reason):
            reports.append(functools.partial(mutex._report_lost, reason))
        return reports


def _batches(steps: list[_Step]) -> Iterator[tuple[Any, list[_Step], FanOut | Batch]]:
    """Group steps by Redsync; several plain extensions become one Batch per node set."""
    groups: dict[int, tuple[Any, list[_Step]]] = {}
    for step in steps:
        redsync = step.job.mutex._redsync  # type: ignore[attr-defined]
        groups.setdefault(id(redsync), (redsync, []))[1].append(step)
    for redsync, group in groups.values():
        batchable = [s for s in group if not s.effect.set_nx]
        for step in group:
            if step.effect.set_nx or len(batchable) == 1:
                yield redsync, [step], step.effect
        if len(batchable) > 1:
            deadlines = [s.effect.deadline_ms for s in batchable]
            deadline = None if None in deadlines else max(d for d in deadlines if d is not None)
            yield redsync, batchable, Batch(tuple(s.effect for s in batchable), deadline)


def _replies_per_step(effect: FanOut | Batch, replies: tuple[Any, ...]) -> list[tuple[Single, ...]]:
    if isinstance(effect, Batch):
        return split_batch(effect, replies)
    return [replies]


def _run_callbacks(callbacks: list[Callable[[], Any]]) -> list[Any]:
    results = []
    for callback in callbacks:
        try:
            results.append(callback())
        except Exception:
            logger.exception("on_lost callback raised")
    return results


class ThreadScheduler:
    """Extends every auto-extended sync ``Mutex`` of this process from one daemon thread."""

    def __init__(self) -> None:
        self._plan = _Plan()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, mutex: Mutex) -> None:
        """Start extending ``mutex`` (just acquired) every third of its expiry."""
        with self._cond:
            self._plan.add(mutex, monotonic_ms())
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
            for redsync, group, effect in _batches(steps):
                started = monotonic_ms()
                replies = sync_transport.fan_out(redsync._nodes, effect)
                finished = monotonic_ms()
                for step, step_replies in zip(
                    group, _replies_per_step(effect, replies), strict=True
                ):
                    with self._cond:
                        callbacks += self._plan.finish(step, step_replies, started, finished)
            _run_callbacks(callbacks)


class AsyncScheduler:
    """Extends every auto-extended ``AsyncMutex`` of one event loop from one task."""

    def __init__(self) -> None:
        self._plan = _Plan()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def add(self, mutex: AsyncMutex) -> None:
        """Start extending ``mutex`` (just acquired) every third of its expiry."""
        self._plan.add(mutex, monotonic_ms())
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
            for redsync, group, effect in _batches(steps):
                started = monotonic_ms()
                replies = await async_transport.fan_out(redsync._nodes, effect)
                finished = monotonic_ms()
                for step, step_replies in zip(
                    group, _replies_per_step(effect, replies), strict=True
                ):
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
