"""Polling helpers of the tests on real nodes: wait for a condition, count the commands nodes ran
(INFO commandstats)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import redis

from redsync_core.testing import RedisServer


def eventually(check: Callable[[], bool], within: float = 10.0) -> bool:
    """Poll ``check`` every 20 ms for ``within`` seconds; return its last answer."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return check()


def evalsha_calls(client: redis.Redis) -> int:
    """How many EVALSHA calls the server ran (since start or CONFIG RESETSTAT)."""
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0))


def settled(clients: list[redis.Redis], quiet: float = 0.3) -> bool:
    """True once the nodes ran no script for ``quiet`` seconds (the waiters sleep)."""
    before = [evalsha_calls(c) for c in clients]
    time.sleep(quiet)
    return [evalsha_calls(c) for c in clients] == before


def reset_stats(servers: Sequence[RedisServer]) -> None:
    """Zero the nodes' command statistics (CONFIG RESETSTAT)."""
    for server in servers:
        with server.client() as client:
            client.config_resetstat()


def ran(servers: Sequence[RedisServer], *names: str) -> list[int]:
    """How often each server ran the commands ``names`` since ``reset_stats`` (refused calls,
    such as an EVALSHA answered NOSCRIPT, do not count)."""
    counts = []
    for server in servers:
        with server.client() as client:
            stats = client.info("commandstats")
        total = 0
        for name in names:
            stat = stats.get(f"cmdstat_{name}", {})
            total += int(stat.get("calls", 0)) - int(stat.get("failed_calls", 0))
        counts.append(total)
    return counts
