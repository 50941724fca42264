"""Hung nodes cost at most one deadline per fan-out, whatever their place in the node list.

Two of five nodes are ports that accept connections and never answer, listed *before* the three
healthy nodes. All N requests of a fan-out are in flight at once, so a node that hangs costs at
most the deadline, and two hung nodes cost one deadline, not two. So lock() with tries=1 takes
at most one SET fan-out (it succeeds on the three healthy nodes) and unlock() one release
fan-out, each bounded by the deadline.

The deadline (3 s) is long enough that the bound keeps 2 s of slack for a busy CPU and still
fails when the hung nodes are waited for one after the other (6 s).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from chaos_harness import HungListener

from redsync_core import AsyncRedsync, Redsync

pytestmark = [pytest.mark.chaos]

EXPIRY = 30.0
TIMEOUT_FACTOR = 0.1  # deadline: 3 s, large enough to dominate scheduling noise
DEADLINE = EXPIRY * TIMEOUT_FACTOR
SLACK = 2.0  # seconds for a loaded 2-CPU machine; still below a second deadline


def _urls(hung: list[HungListener], healthy: list[Any]) -> list[str]:
    return [h.url for h in hung] + [s.url for s in healthy]


@pytest.mark.parametrize("flavour", [pytest.param("sync"), "asyncio"])
def test_hung_nodes_listed_first_cost_one_deadline(
    flavour: str, redis_servers: Any, chaos_figures: Any
) -> None:
    healthy = redis_servers(3)
    hung = [HungListener(), HungListener()]
    timings: list[tuple[str, float, bool]] = []
    try:
        urls = _urls(hung, healthy)
        options = {"expiry": EXPIRY, "timeout_factor": TIMEOUT_FACTOR, "tries": 1}
        if flavour == "sync":
            with Redsync(urls, **options) as rs:
                for i in range(2):
                    mutex = rs.new_mutex(f"bounded:{i}")
                    t0 = time.monotonic()
                    acquired = mutex.try_lock()
                    timings.append(("lock", time.monotonic() - t0, acquired))
                    t0 = time.monotonic()
                    released = mutex.unlock() if acquired else False
                    timings.append(("unlock", time.monotonic() - t0, released))
        else:

            async def main() -> None:
                async with AsyncRedsync(urls, **options) as ars:
                    for i in range(2):
                        mutex = ars.new_mutex(f"bounded:{i}")
                        t0 = time.monotonic()
                        acquired = await mutex.try_lock()
                        timings.append(("lock", time.monotonic() - t0, acquired))
                        t0 = time.monotonic()
                        released = await mutex.unlock() if acquired else False
                        timings.append(("unlock", time.monotonic() - t0, released))

            asyncio.run(main())
    finally:
        for h in hung:
            h.close()
    longest = max(t for _, t, _ in timings)
    chaos_figures(
        {
            "scenario": f"{flavour}: 2 hung nodes listed before 3 healthy ones",
            "faults injected": 2,
            "acquisitions checked": sum(1 for kind, _, ok in timings if kind == "lock" and ok),
            "longest call": f"{longest:.3f} s (bound {DEADLINE:.3f} s per call)",
            "calls": [f"{kind} {t:.3f} s {ok}" for kind, t, ok in timings],
        }
    )
    assert all(ok for _, _, ok in timings), f"a quorum of healthy nodes was up: {timings}"
    assert longest <= DEADLINE + SLACK, timings
