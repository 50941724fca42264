"""Helpers for testing code that uses redsync_core, public so users can test their own code.

- ``RedisServer`` / ``RedisServerGroup`` / ``LocalRedisCluster``: throwaway ``redis-server``
  processes on free loopback ports (persistence off) that a test can kill, pause (SIGSTOP),
  resume and restart empty; each is stopped by its own PID.
- pytest fixtures (loaded automatically through the ``pytest11`` entry point, see
  ``redsync_core.testing.plugin``): ``redis_servers``, ``redis_nodes``, ``redis_nodes5``,
  ``redis_cluster``.
- ``memory_urls(n)``: ``memory://`` node URLs unique to the caller, for tests without Redis.
- ``FakeClock``: a monotonic clock in milliseconds that moves only when told to.
"""

from __future__ import annotations

import itertools

from ._clock import FakeClock
from ._servers import (
    LocalRedisCluster,
    RedisServer,
    RedisServerGroup,
    find_redis_server,
    free_port,
)

__all__ = [
    "FakeClock",
    "LocalRedisCluster",
    "RedisServer",
    "RedisServerGroup",
    "find_redis_server",
    "free_port",
    "memory_urls",
]

_memory_ids = itertools.count(1)


def memory_urls(n: int = 3) -> list[str]:
    """Return ``n`` fresh ``memory://`` node URLs that no other caller in this process shares."""
    group = next(_memory_ids)
    return [f"memory://test-{group}-{i}" for i in range(n)]
