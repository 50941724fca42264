"""Helpers for testing code that uses redsync_core, public so users can test their own code.

- ``RedisServer`` / ``RedisServerGroup`` / ``LocalRedisCluster``: throwaway ``redis-server``
  processes on free loopback ports (persistence off) that a test can kill, pause (SIGSTOP),
  resume and restart empty; each is stopped by its own PID and dies with the test process.
  The binary is the one named by the environment variable ``REDSYNC_TEST_SERVER`` (default
  ``redis-server``); Redis >= 7.0 or Valkey >= 7.2 is required and checked before a start.
- pytest fixtures (loaded automatically through the ``pytest11`` entry point, see
  ``redsync_core.testing.plugin``): ``redis_servers``, ``redis_nodes``, ``redis_nodes5``,
  ``redis_cluster``.
- ``child_process(args, **popen_kwargs)``: ``subprocess.Popen`` for a helper process (a worker,
  a server) that the kernel kills when the test process dies, even by SIGKILL (Linux).
- ``die_with_parent(parent_pid)``: the same, called first thing in a multiprocessing target.
- ``wait_child(pid, timeout)``: ``os.waitpid`` for a forked child, with a timeout (the child is
  killed when it runs out): a test never waits forever.
- ``memory_urls(n)``: ``memory://`` node URLs unique to the caller, for tests without Redis.
- ``FakeClock``: a monotonic clock in milliseconds that moves only when told to.
"""

from __future__ import annotations

import itertools

from redsync_core._children import die_with_parent, wait_child
from redsync_core._children import popen as child_process
from redsync_core._servers import RedisServer, RedisServerGroup, find_redis_server, free_port

from ._clock import FakeClock
from ._cluster import LocalRedisCluster

__all__ = [
    "FakeClock",
    "LocalRedisCluster",
    "RedisServer",
    "RedisServerGroup",
    "child_process",
    "die_with_parent",
    "find_redis_server",
    "free_port",
    "memory_urls",
    "wait_child",
]

_memory_ids = itertools.count(1)


def memory_urls(n: int = 3) -> list[str]:
    """Return ``n`` fresh ``memory://`` node URLs that no other caller in this process shares."""
    group = next(_memory_ids)
    return [f"memory://test-{group}-{i}" for i in range(n)]
