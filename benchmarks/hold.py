"""Holding many auto-extended locks: what keeping them alive costs the client and the servers.

Run by the harness in a fresh process (``python -m benchmarks.hold '<json>'``) so that nothing
else runs in it: the process takes ``count`` locks with ``auto_extend=True`` (sync: the one
scheduler thread; async: the one scheduler task), then idles for ``window_s`` seconds while
the core extends them every ``expiry / 3``. It prints one JSON line: the process CPU time spent
in the window (all of it is extension work; the main thread sleeps), the EVALSHA/EVAL calls
each server counted in the window (INFO commandstats), and how many locks were lost (must be 0).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from typing import Any

from redsync_core import AsyncRedsync, Redsync

from .harness import parse_commandstats
from .resp import RawConnection

__all__ = ["hold"]

_ACQUIRE_BATCH = 200  # async locks taken concurrently, to fill 10,000 locks quickly
_SCRIPT_COMMANDS = ("evalsha", "eval")


def _script_calls(urls: list[str]) -> list[int]:
    calls = []
    for url in urls:
        conn = RawConnection(url)
        try:
            reply = conn.call("INFO", "commandstats")
        finally:
            conn.close()
        stats = parse_commandstats(reply if isinstance(reply, bytes) else b"")
        calls.append(sum(stats.get(name, 0) for name in _SCRIPT_COMMANDS))
    return calls


def _window(urls: list[str], window_s: float) -> tuple[float, list[int]]:
    """Idle for ``window_s`` s; return the process CPU seconds and script calls per server."""
    before = _script_calls(urls)
    cpu0 = time.process_time()
    time.sleep(window_s)
    cpu = time.process_time() - cpu0
    after = _script_calls(urls)
    return cpu, [b - a for a, b in zip(before, after, strict=True)]


def _hold_sync(urls: list[str], count: int, expiry_s: float, window_s: float) -> dict[str, Any]:
    with Redsync(urls) as rs:
        mutexes = [
            rs.new_mutex(f"bench:hold:sync:{i}", expiry=expiry_s, auto_extend=True, tries=3)
            for i in range(count)
        ]
        t0 = time.perf_counter()
        for m in mutexes:
            m.lock()
        acquire_s = time.perf_counter() - t0
        cpu, calls = _window(urls, window_s)
        lost = sum(1 for m in mutexes if m.lost or not m.held)
        threads = threading.active_count()
        for m in mutexes:
            m.unlock()
    return {"acquire_s": acquire_s, "cpu_s": cpu, "calls": calls, "lost": lost, "threads": threads}


async def _hold_async(
    urls: list[str], count: int, expiry_s: float, window_s: float
) -> dict[str, Any]:
    async with AsyncRedsync(urls) as rs:
        mutexes = [
            rs.new_mutex(f"bench:hold:async:{i}", expiry=expiry_s, auto_extend=True, tries=3)
            for i in range(count)
        ]
        t0 = time.perf_counter()
        for i in range(0, count, _ACQUIRE_BATCH):
            await asyncio.gather(*(m.lock() for m in mutexes[i : i + _ACQUIRE_BATCH]))
        acquire_s = time.perf_counter() - t0
        before = _script_calls(urls)
        cpu0 = time.process_time()
        await asyncio.sleep(window_s)
        cpu = time.process_time() - cpu0
        after = _script_calls(urls)
        lost = sum(1 for m in mutexes if m.lost or not m.held)
        threads = threading.active_count()
        for i in range(0, count, _ACQUIRE_BATCH):
            await asyncio.gather(*(m.unlock() for m in mutexes[i : i + _ACQUIRE_BATCH]))
    calls = [b - a for a, b in zip(before, after, strict=True)]
    return {"acquire_s": acquire_s, "cpu_s": cpu, "calls": calls, "lost": lost, "threads": threads}


def hold(
    urls: list[str], count: int, mode: str, expiry_s: float, window_s: float
) -> dict[str, Any]:
    """Hold ``count`` auto-extended locks for ``window_s`` s; return the measured costs."""
    if mode == "sync":
        result = _hold_sync(urls, count, expiry_s, window_s)
    else:
        result = asyncio.run(_hold_async(urls, count, expiry_s, window_s))
    per_node = [c / window_s for c in result["calls"]]
    result.update(
        count=count,
        mode=mode,
        nodes=len(urls),
        expiry_s=expiry_s,
        window_s=window_s,
        cpu_ms_per_s=result["cpu_s"] / window_s * 1000,
        round_trips_per_s_per_node=per_node,
        # Each lock is extended about every expiry/3 s: this many extensions per second in all.
        extensions_per_s=count / (expiry_s / 3),
    )
    return result


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    print(json.dumps(hold(**args)), flush=True)
