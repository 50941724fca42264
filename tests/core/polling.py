"""Polling helpers of the wake-up tests: wait for a condition, count the scripts nodes ran."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis


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
