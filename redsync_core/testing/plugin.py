"""Pytest fixtures that hand out real ``redis-server`` processes (a pytest11 plugin).

Fixtures
    ``redis_server_binary`` (session)
        Path of the server binary named by the environment variable ``REDSYNC_TEST_SERVER``
        (default ``redis-server`` on PATH), checked to be Redis >= 7.0 or Valkey >= 7.2. When
        it is missing or too old, every test that needs Redis FAILS (never skips), with what to
        do: a test that claims Redis behaviour must not pass unnoticed without Redis.
    ``redis_servers`` (function)
        A factory ``redis_servers(n=3, **kwargs) -> list[RedisServer]`` of started servers.
    ``redis_nodes`` / ``redis_nodes5`` (function)
        ``redis_servers(3)`` / ``redis_servers(5)``: independent masters for Redlock.
    ``redis_cluster`` (function)
        A 3-master ``LocalRedisCluster``, flushed before the test.

Design: processes are expensive and state is cheap to wipe, so the processes live for the whole
session and the fixtures are function-scoped and hand out clean state. The session state (a pool
of idle servers and at most one cluster) sits in ``config.stash``; it is created on first use, so
a suite that never asks for Redis starts no process, and it is stopped by ``config.add_cleanup``
at the end of the session. Nothing here is autouse and no hook is registered, because the plugin
is loaded into users' test suites too.

- Servers from ``redis_servers(n)`` without keyword arguments come from the pool, FLUSHALL'ed and
  SCRIPT FLUSH'ed. At the end of the test every server it was given goes back to the pool unless
  the test left it killed, paused, stopped or restarted; those are stopped, and the pool starts
  fresh ones when needed. A pooled server that does not answer PING within 1 s is replaced too.
- Servers from ``redis_servers(n, password=..., unix_socket=True, ...)`` are private to the test
  and stopped at its end.
- ``redis_cluster`` checks the session's cluster (every master running, unpaused, answering PING
  and reporting ``cluster_state:ok``), rebuilds it if a test broke it, then flushes every master.

Fault injection is done on the handed-out objects: ``server.kill()``, ``.pause()``,
``.restart()``, and ``cluster.servers[i]`` for the cluster's masters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import pytest
import redis

from redsync_core._servers import (
    RedisServer,
    ServerUnavailable,
    _start_all,
    _stop_all,
    require_server,
)
from redsync_core.testing._cluster import LocalRedisCluster, _cluster_info

__all__ = ["RedisServerFactory"]  # the fixtures are found by pytest

HEALTH_TIMEOUT = 1.0  # seconds a pooled server gets to answer PING before it is replaced


class RedisServerFactory(Protocol):
    """The ``redis_servers`` fixture: ``redis_servers(n=3, **kwargs)`` returns started servers."""

    def __call__(
        self,
        n: int = 3,
        *,
        unix_socket: bool = False,
        extra_args: Sequence[str] = (),
        binary: str | None = None,
        password: str | None = None,
    ) -> list[RedisServer]:
        """Return ``n`` started servers; keyword arguments (``RedisServer``'s) make them private."""
        ...


def _scrub(server: RedisServer) -> bool:
    """Empty ``server`` (FLUSHALL, SCRIPT FLUSH); return False if it is not healthy."""
    if not server.running or server.paused:
        return False
    client = server.client(socket_timeout=HEALTH_TIMEOUT, socket_connect_timeout=HEALTH_TIMEOUT)
    try:
        client.ping()
        client.flushall()
        client.script_flush()
    except redis.RedisError:
        return False
    finally:
        client.close()
    return True


class _ServerPool:
    """Idle healthy servers shared by the tests of one session."""

    def __init__(self, binary: str) -> None:
        self._binary = binary
        self._idle: list[RedisServer] = []

    def acquire(self, n: int) -> list[RedisServer]:
        """Return ``n`` started, empty servers: idle ones first, then fresh ones."""
        servers: list[RedisServer] = []
        broken: list[RedisServer] = []
        while self._idle and len(servers) < n:
            server = self._idle.pop()
            (servers if _scrub(server) else broken).append(server)
        _stop_all(broken)
        fresh = [RedisServer(binary=self._binary) for _ in range(n - len(servers))]
        try:
            _start_all(fresh)
        except BaseException:
            self._idle.extend(servers)  # still healthy: keep them for the next test
            raise
        return servers + fresh

    def release(self, servers: Sequence[RedisServer], pids: Sequence[int | None]) -> None:
        """Take ``servers`` back; stop those killed, paused, stopped or restarted meanwhile."""
        broken: list[RedisServer] = []
        for server, pid in zip(servers, pids, strict=True):
            if server.running and not server.paused and server.pid == pid:
                self._idle.append(server)
            else:
                broken.append(server)
        _stop_all(broken)

    def close(self) -> None:
        """Stop every idle server."""
        idle, self._idle = self._idle, []
        _stop_all(idle)


class _SessionState:
    """What outlives a test: the server pool and the cluster, stopped by ``close()``."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.pool = _ServerPool(binary)
        self._cluster: LocalRedisCluster | None = None

    def clean_cluster(self) -> LocalRedisCluster:
        """Return the session's cluster, rebuilt if a test broke it, with every master empty."""
        cluster = self._cluster
        if cluster is not None and not self._flush_cluster(cluster):
            cluster.stop()
            cluster = None
        if cluster is None:
            self._cluster = None
            cluster = LocalRedisCluster(binary=self.binary)
            cluster.start()
            self._cluster = cluster
        return cluster

    @staticmethod
    def _flush_cluster(cluster: LocalRedisCluster) -> bool:
        for server in cluster.servers:
            if not _scrub(server):
                return False
            client = server.client(socket_timeout=HEALTH_TIMEOUT)
            try:
                if _cluster_info(client).get("cluster_state") != "ok":
                    return False
            except redis.RedisError:
                return False
            finally:
                client.close()
        return True

    def close(self) -> None:
        """Stop every process this state started."""
        try:
            self.pool.close()
        finally:
            if self._cluster is not None:
                self._cluster.stop()
                self._cluster = None


_STATE = pytest.StashKey[_SessionState]()


def _session_state(config: pytest.Config, binary: str) -> _SessionState:
    state = config.stash.get(_STATE, None)
    if state is None:
        state = _SessionState(binary)
        config.stash[_STATE] = state
        config.add_cleanup(state.close)
    return state


@pytest.fixture(scope="session")
def redis_server_binary() -> str:
    """Return the path of the server binary; fail (never skip) when it is missing or too old."""
    try:
        return require_server()
    except ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def redis_servers(
    request: pytest.FixtureRequest, redis_server_binary: str
) -> Iterator[RedisServerFactory]:
    """Return a factory of started servers, all given back or stopped when the test ends."""
    pool = _session_state(request.config, redis_server_binary).pool
    pooled: list[tuple[RedisServer, int | None]] = []
    private: list[RedisServer] = []

    def factory(n: int = 3, **kwargs: Any) -> list[RedisServer]:
        if n < 0:
            raise ValueError(f"redis_servers: n must be >= 0, got {n}")
        if kwargs:
            kwargs.setdefault("binary", redis_server_binary)
            servers = [RedisServer(**kwargs) for _ in range(n)]
            private.extend(servers)
            _start_all(servers)
            return servers
        servers = pool.acquire(n)
        pooled.extend((server, server.pid) for server in servers)
        return list(servers)

    try:
        yield factory
    finally:
        with contextlib.ExitStack() as stack:
            stack.callback(_stop_all, private)
            stack.callback(pool.release, [s for s, _ in pooled], [pid for _, pid in pooled])


@pytest.fixture
def redis_nodes(redis_servers: RedisServerFactory) -> list[RedisServer]:
    """Return 3 started, empty, independent servers (a Redlock quorum of 2)."""
    return redis_servers(3)


@pytest.fixture
def redis_nodes5(redis_servers: RedisServerFactory) -> list[RedisServer]:
    """Return 5 started, empty, independent servers (a Redlock quorum of 3)."""
    return redis_servers(5)


@pytest.fixture
def redis_cluster(request: pytest.FixtureRequest, redis_server_binary: str) -> LocalRedisCluster:
    """Return the session's 3-master Redis Cluster, with every master flushed."""
    return _session_state(request.config, redis_server_binary).clean_cluster()
