"""The demo's report: counts, lost updates, overlapping holders, latencies, faults, verdict."""

from __future__ import annotations

import shutil
import textwrap
from collections import Counter

from ..common import EXIT_OK, EXIT_VIOLATION
from .schedule import TIMEOUT_FACTOR, Plan, describe
from .workers import WorkerResult

__all__ = ["print_wrapped", "report"]

# Per fault: why the run goes on safely, printed under the fault in the report.
_EFFECTS = {
    "kill": "a quorum still answers; the dead nodes count as failed votes",
    "restart": (
        "that is longer than the {expiry:g} s expiry, so every lock it held had expired and the "
        "empty node cannot vote for a second holder. Restarting it sooner without persistence "
        "could (Redlock's known limit): delay restarts by the longest expiry, or use fsync'ed AOF"
    ),
    "pause": (
        "acquire and release wait for its {deadline_ms:.0f} ms fan-out deadline, so every lock "
        "cycle slows down (fail_fast=True spares the acquire)"
    ),
    "resume": "it answers again; its keys kept expiring in real time while it was frozen",
}


def report(
    plan: Plan, began_ns: int, results: list[WorkerResult], updates: int, counter: int
) -> int:
    """Print the report of a run that began at ``began_ns``; return the exit status.

    ``updates`` is what the referee counted and ``counter`` what the unsafe updates left: their
    difference is the number of lost updates. Returns 1 on a lost update, an overlap or a worker
    that did not report (with the lock); with ``--unsafe``, 1 when the violations showed.
    """
    intervals = sorted(
        (begin, end, outlived, r.worker) for r in results for begin, end, outlived in r.intervals
    )
    latencies = sorted(ms for r in results for ms in r.latencies_ms)
    failures: Counter[str] = Counter()
    for r in results:
        failures.update(r.failures)
    overlaps = _overlaps(intervals)
    outlived = sum(1 for _, _, late, _ in intervals if late)
    lost = updates - counter
    what = "updates" if plan.unsafe else "acquisitions"
    print("report")
    print(f"  {what:<20} {updates:7d}  ({updates / plan.seconds:.0f}/s)")
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
    _report_faults(plan, began_ns, intervals)
    complete = len(results) == plan.workers
    if not complete:
        print(f"  {plan.workers - len(results)} worker(s) did not report: overlaps unchecked")
    if plan.unsafe:
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
        + (", through every fault above" if plan.faults else "")
    )
    return EXIT_OK


def _report_faults(plan: Plan, began_ns: int, intervals: list[tuple[int, int, bool, int]]) -> None:
    """Print each fault injected, why the run stayed safe, and the acquisition rate after it."""
    done = [f for f in plan.faults if f.done_at is not None]
    if not done:
        return
    starts = [(begin - began_ns) / 1e9 for begin, _, _, _ in intervals]
    bounds = [0.0, *(f.done_at or 0.0 for f in done), plan.seconds]

    def window(lo: float, hi: float) -> str:
        n = sum(1 for t in starts if lo <= t < hi)
        return f"{n / max(1e-3, hi - lo):.0f} acquisitions/s"

    print(f"  faults (before the first: {window(bounds[0], bounds[1])})")
    deadline_ms = plan.expiry * TIMEOUT_FACTOR * 1000
    for i, fault in enumerate(done):
        assert fault.done_at is not None
        print(f"    {fault.done_at:5.1f}s  {describe(fault, plan)}")
        effect = _EFFECTS[fault.action].format(expiry=plan.expiry, deadline_ms=deadline_ms)
        rate = window(bounds[i + 1], bounds[i + 2])
        print_wrapped(f"-> {effect} [{rate}]", indent=12)


def print_wrapped(text: str, indent: int) -> None:
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
