"""The worker process: measures one contender on request, in its own interpreter.

Started by the harness as ``<python> benchmarks/runner.py`` (our interpreter, or a peer's
``.venvs/<env>/bin/python``), it reads one JSON request per line on stdin and answers one JSON
line on stdout. Anything a library prints goes to stderr, so it cannot corrupt the answers.
Requests:

- ``s1``: uncontended acquire+release pairs for ``seconds`` after a warm-up; the duration of
  every pair (ns).
- ``s2_setup`` then ``s2_run``: one of several processes contending for one lock name. Inside
  each hold it SETs a marker NX on the referee node and DELetes it on exit (either failing is a
  violation) and records the hold interval on the system-wide monotonic clock, so the harness
  can check that no two holders overlapped.
- ``s3_setup`` then ``s3_run``: the same, but each process loops as an application would with
  the library's default waiting options: ``lock()``, hold ``hold_s``, ``unlock()``, ``work_s``
  outside the lock. A ``lock()`` that gives up is called again (its wait goes on).
- ``profile``: the ``s1`` loop under cProfile; the top functions by own time.

Standard library only (plus the contender's own library).
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import pstats
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

# The repository root goes first on sys.path: in a peer's virtualenv nothing else finds us.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.contenders import (
    CONTENDERS,
    AsyncContender,
    Contender,
    SyncContender,
)
from benchmarks.resp import RawConnection

Result = dict[str, Any]


def _build(req: Result) -> Contender:
    spec = CONTENDERS[req["contender"]]
    return spec.adapter(req["urls"], req["key"], req["ttl_s"])


# -- S1 ----------------------------------------------------------------------------------------


def _s1_sync(c: SyncContender, seconds: float, samples: list[int]) -> int:
    failures = 0
    clock = time.perf_counter_ns
    end = clock() + int(seconds * 1e9)
    while True:
        t0 = clock()
        if t0 >= end:
            return failures
        if c.acquire():
            c.release()
            samples.append(clock() - t0)
        else:
            failures += 1


async def _s1_async(c: AsyncContender, seconds: float, samples: list[int]) -> int:
    failures = 0
    clock = time.perf_counter_ns
    end = clock() + int(seconds * 1e9)
    while True:
        t0 = clock()
        if t0 >= end:
            return failures
        if await c.acquire():
            await c.release()
            samples.append(clock() - t0)
        else:
            failures += 1


def _measure_s1(req: Result, profiler: cProfile.Profile | None = None) -> Result:
    """Set up, warm up, measure, close; ``profiler`` (if given) is on for the measured part."""
    samples: list[int] = []
    warm: list[int] = []
    c = _build(req)
    seconds = req["seconds"]
    if isinstance(c, SyncContender):
        try:
            _s1_sync(c, req["warmup_s"], warm)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            if profiler:
                profiler.enable()
            failures = _s1_sync(c, seconds, samples)
            if profiler:
                profiler.disable()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        finally:
            c.close()
    else:
        assert isinstance(c, AsyncContender)

        async def main(c: AsyncContender) -> tuple[int, float, float]:
            await c.open()
            try:
                await _s1_async(c, req["warmup_s"], warm)
                cpu0, wall0 = time.process_time(), time.perf_counter()
                # cProfile follows the thread: enabled around the await, it sees the loop's work.
                if profiler:
                    profiler.enable()
                found = await _s1_async(c, seconds, samples)
                if profiler:
                    profiler.disable()
                return found, time.process_time() - cpu0, time.perf_counter() - wall0
            finally:
                await c.close()

        failures, cpu, wall = asyncio.run(main(c))
    return {"samples_ns": samples, "failures": failures, "cpu_s": cpu, "wall_s": wall}


def _profile(req: Result) -> Result:
    profiler = cProfile.Profile()
    result = _measure_s1(req, profiler)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(req.get("top", 15))
    return {"text": out.getvalue(), "pairs": len(result["samples_ns"]), "wall_s": result["wall_s"]}


# -- S2 ----------------------------------------------------------------------------------------


class S2Worker:
    """One contending process: its contender, its referee connection and its records."""

    def __init__(self, req: Result) -> None:
        self.req = req
        self.contender = _build(req)
        self.referee = RawConnection(req["referee"])
        self.marker = req["marker"]
        self.rng = random.Random(req.get("seed"))
        self.intervals: list[tuple[int, int]] = []
        self.waits: list[int] = []
        self.tries = 0
        self.gave_up = 0
        self.referee_failures = 0
        self.errors: list[str] = []

    def hold(self, hold_s: float = 0.0) -> None:
        """The critical section: the marker must be free on entry and ours on exit."""
        enter = time.monotonic_ns()
        if self.referee.call("SET", self.marker, "1", "NX", "PX", 60000) != b"OK":
            self.referee_failures += 1
        if hold_s:
            time.sleep(hold_s)
        if self.referee.call("DEL", self.marker) != 1:
            self.referee_failures += 1
        self.intervals.append((enter, time.monotonic_ns()))

    def result(self, cpu_s: float, wall_s: float) -> Result:
        return {
            "acquired": len(self.intervals),
            "tries": self.tries,
            "gave_up": self.gave_up,
            "intervals": self.intervals,
            "waits_ns": self.waits,
            "referee_failures": self.referee_failures,
            "cpu_s": cpu_s,
            "wall_s": wall_s,
            "errors": self.errors[:5],
            "error_count": len(self.errors),
        }


def _sleep_until(t_ns: int) -> None:
    delay = (t_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


def _s2_sync(w: S2Worker, c: SyncContender, stop_ns: int, backoff_s: float) -> None:
    clock = time.monotonic_ns
    first_try: int | None = None
    while True:
        now = clock()
        if now >= stop_ns:
            return
        if first_try is None:
            first_try = now
        w.tries += 1
        try:
            got = c.acquire()
        except Exception as exc:
            w.errors.append(f"{type(exc).__name__}: {exc}")
            got = False
        if got:
            w.waits.append(clock() - first_try)
            first_try = None
            w.hold()
            c.release()
        else:
            time.sleep(w.rng.uniform(0, backoff_s))


async def _s2_async(w: S2Worker, c: AsyncContender, stop_ns: int, backoff_s: float) -> None:
    clock = time.monotonic_ns
    first_try: int | None = None
    while True:
        now = clock()
        if now >= stop_ns:
            return
        if first_try is None:
            first_try = now
        w.tries += 1
        try:
            got = await c.acquire()
        except Exception as exc:
            w.errors.append(f"{type(exc).__name__}: {exc}")
            got = False
        if got:
            w.waits.append(clock() - first_try)
            first_try = None
            w.hold()  # blocking referee calls on purpose: the same cost for every contender
            await c.release()
        else:
            await asyncio.sleep(w.rng.uniform(0, backoff_s))


def _s2_run(w: S2Worker, req: Result) -> Result:
    start_ns, stop_ns, backoff_s = req["start_ns"], req["stop_ns"], req["backoff_s"]
    c = w.contender
    try:
        if isinstance(c, SyncContender):
            _sleep_until(start_ns)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            _s2_sync(w, c, stop_ns, backoff_s)
        else:
            assert isinstance(c, AsyncContender)

            async def main(c: AsyncContender) -> tuple[float, float]:
                await c.open()
                try:
                    _sleep_until(start_ns)
                    cpu0, wall0 = time.process_time(), time.perf_counter()
                    await _s2_async(w, c, stop_ns, backoff_s)
                    return time.process_time() - cpu0, time.perf_counter() - wall0
                finally:
                    await c.close()

            return w.result(*asyncio.run(main(c)))
        return w.result(time.process_time() - cpu0, time.perf_counter() - wall0)
    finally:
        if isinstance(c, SyncContender):
            c.close()
        w.referee.close()


# -- S3 ----------------------------------------------------------------------------------------


def _s3_sync(w: S2Worker, c: SyncContender, stop_ns: int, hold_s: float, work_s: float) -> None:
    clock = time.monotonic_ns
    while clock() < stop_ns:
        first_try = clock()
        while True:
            w.tries += 1
            try:
                got = c.lock()
            except Exception as exc:
                w.errors.append(f"{type(exc).__name__}: {exc}")
                got = False
            if got or clock() >= stop_ns:
                break
            w.gave_up += 1
        if not got:
            return
        w.waits.append(clock() - first_try)
        w.hold(hold_s)
        c.unlock()
        time.sleep(work_s)


async def _s3_async(
    w: S2Worker, c: AsyncContender, stop_ns: int, hold_s: float, work_s: float
) -> None:
    clock = time.monotonic_ns
    while clock() < stop_ns:
        first_try = clock()
        while True:
            w.tries += 1
            try:
                got = await c.lock()
            except Exception as exc:
                w.errors.append(f"{type(exc).__name__}: {exc}")
                got = False
            if got or clock() >= stop_ns:
                break
            w.gave_up += 1
        if not got:
            return
        w.waits.append(clock() - first_try)
        w.hold(hold_s)  # blocking, as in S2: the same for every contender
        await c.unlock()
        await asyncio.sleep(work_s)


def _s3_run(w: S2Worker, req: Result) -> Result:
    start_ns, stop_ns = req["start_ns"], req["stop_ns"]
    hold_s, work_s = req["hold_s"], req["work_s"]
    c = w.contender
    try:
        if isinstance(c, SyncContender):
            _sleep_until(start_ns)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            _s3_sync(w, c, stop_ns, hold_s, work_s)
            return w.result(time.process_time() - cpu0, time.perf_counter() - wall0)
        assert isinstance(c, AsyncContender)

        async def main(c: AsyncContender) -> tuple[float, float]:
            await c.open()
            try:
                _sleep_until(start_ns)
                cpu0, wall0 = time.process_time(), time.perf_counter()
                await _s3_async(w, c, stop_ns, hold_s, work_s)
                return time.process_time() - cpu0, time.perf_counter() - wall0
            finally:
                await c.close()

        return w.result(*asyncio.run(main(c)))
    finally:
        if isinstance(c, SyncContender):
            c.close()
        w.referee.close()


# -- the request loop --------------------------------------------------------------------------


def serve(stdin: TextIO, out: TextIO) -> None:
    worker: S2Worker | None = None
    for line in stdin:
        req = json.loads(line)
        cmd = req["cmd"]
        try:
            if cmd == "s1":
                result = _measure_s1(req)
            elif cmd == "profile":
                result = _profile(req)
            elif cmd in ("s2_setup", "s3_setup"):
                worker = S2Worker(req)
                result = {"ready": True}
            elif cmd == "s2_run":
                assert worker is not None, "s2_run before s2_setup"
                result = _s2_run(worker, req)
                worker = None
            elif cmd == "s3_run":
                assert worker is not None, "s3_run before s3_setup"
                result = _s3_run(worker, req)
                worker = None
            elif cmd == "quit":
                return
            else:
                result = {"error": f"unknown request {cmd!r}"}
        except Exception as exc:
            result = {
                "error": f"{type(exc).__name__}: {exc}",
                "trace": traceback.format_exc(limit=8),
            }
        out.write(json.dumps(result) + "\n")
        out.flush()


if __name__ == "__main__":
    protocol = sys.stdout
    sys.stdout = sys.stderr  # a library's print() must not corrupt the answers
    serve(sys.stdin, protocol)
