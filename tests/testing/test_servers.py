"""Throwaway redis-server processes and the pytest fixtures that hand them out.

Everything here runs real processes; each test checks what it claims through the process's PID
or a real client, never through the helper's own bookkeeping alone.
"""

from __future__ import annotations

import os
import socket
import textwrap
import time
from collections.abc import Iterator

import pytest
import redis
import redis.cluster

from redsync_core.testing import (
    LocalRedisCluster,
    RedisServer,
    RedisServerGroup,
    find_redis_server,
    free_port,
)

pytest_plugins = ["pytester"]

# Inner pytest sessions (pytester) run in order and without plugins they do not need.
# The inner sessions must not set up Django again (the outer session may have configured it).
INNER_ARGS = ("-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:asyncio", "-p", "no:django")


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def ping(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return client.ping()
    finally:
        client.close()


@pytest.fixture
def server(redis_server_binary: str) -> Iterator[RedisServer]:
    """A private server, stopped at teardown even when the test fails half way."""
    server = RedisServer(binary=redis_server_binary)
    yield server
    server.stop()


def test_find_redis_server_and_free_port(redis_server_binary: str) -> None:
    assert find_redis_server() == redis_server_binary
    assert 0 < free_port() < 65536


def test_start_and_stop_leave_no_process_and_no_files(server: RedisServer) -> None:
    server.start()
    pid, log_path = server.pid, server.log_path
    assert pid is not None
    assert log_path is not None
    assert server.running
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert ping(server.url)
    with server.client() as client:
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}

    server.stop()
    assert_gone(pid)
    assert not os.path.exists(os.path.dirname(log_path))
    assert not server.running
    assert server.pid is None
    server.stop()  # idempotent


def test_context_manager_starts_and_stops(redis_server_binary: str) -> None:
    with RedisServer(binary=redis_server_binary) as server:
        pid = server.pid
        assert pid is not None
        assert ping(server.url)
    assert_gone(pid)


def test_kill_ends_the_process_at_once(server: RedisServer) -> None:
    server.start()
    pid = server.pid
    assert pid is not None
    server.kill()
    assert_gone(pid)
    assert not server.running
    with server.client(socket_connect_timeout=0.3) as client, pytest.raises(redis.ConnectionError):
        client.ping()


def test_pause_makes_pings_time_out_until_resume(server: RedisServer) -> None:
    server.start()
    with server.client(socket_timeout=1.0) as client:
        assert client.ping()
        server.pause()
        assert server.paused
        assert server.running
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        assert time.monotonic() - started < 1.95  # one 1 s timeout: a retry would make 2 s

        server.resume()
        assert not server.paused
        assert client.ping()


def test_stop_ends_a_paused_server(server: RedisServer) -> None:
    server.start()
    pid = server.pid
    assert pid is not None
    server.pause()
    server.stop()
    assert_gone(pid)


def test_restart_comes_back_empty_on_the_same_port(server: RedisServer) -> None:
    server.start()
    port, pid = server.port, server.pid
    assert pid is not None
    with server.client() as client:
        client.set("k", "v")

    server.restart()

    assert_gone(pid)
    assert server.port == port
    assert server.pid not in (None, pid)
    with server.client() as client:
        assert client.dbsize() == 0


def test_unix_socket_server_has_a_working_url(redis_server_binary: str) -> None:
    with RedisServer(unix_socket=True, binary=redis_server_binary) as server:
        assert server.port is None
        assert server.unix_path is not None
        assert server.url == f"unix://{server.unix_path}?db=0"
        assert ping(server.url)
        server.restart()
        assert ping(server.url)


def test_password_server_rejects_unauthenticated_clients(redis_server_binary: str) -> None:
    with RedisServer(password="s3cret: #1", binary=redis_server_binary) as server:
        assert server.url == f"redis://:s3cret%3A%20%231@127.0.0.1:{server.port}/0"
        assert ping(server.url)
        with server.client() as client:
            assert client.ping()
        with server.client(password=None) as anonymous, pytest.raises(redis.AuthenticationError):
            anonymous.ping()


def test_start_failure_names_the_cause_and_leaves_no_process(redis_server_binary: str) -> None:
    server = RedisServer(extra_args=["--no-such-option", "1"], binary=redis_server_binary)
    with pytest.raises(RuntimeError, match="did not start: it exited"):
        server.start()
    assert not server.running
    server.stop()


def test_a_taken_port_is_replaced_unless_it_was_asked_for(redis_server_binary: str) -> None:
    auto = RedisServer(binary=redis_server_binary)
    chosen = auto.port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", chosen or 0))  # bound, not listening: connects fail fast
        try:
            auto.start()
            assert auto.port != chosen
            assert ping(auto.url)
        finally:
            auto.stop()

        fixed = RedisServer(port=chosen, binary=redis_server_binary)
        with pytest.raises(RuntimeError, match="port was taken"):
            fixed.start()
        assert not fixed.running
        fixed.stop()


async def test_async_client_talks_to_the_server(server: RedisServer) -> None:
    server.start()
    client = server.async_client()
    try:
        assert await client.ping()
    finally:
        await client.aclose()


def test_group_starts_n_servers_in_parallel(redis_server_binary: str) -> None:
    with RedisServerGroup(5, binary=redis_server_binary) as group:
        assert len(group) == 5
        pids = [server.pid for server in group]
        assert len({server.port for server in group}) == 5
        assert group.urls == [group[i].url for i in range(5)]
        assert all(ping(url) for url in group.urls)
    for pid in pids:
        assert pid is not None
        assert_gone(pid)


def test_cluster_serves_keys_in_every_slot_range(redis_cluster: LocalRedisCluster) -> None:
    client = redis_cluster.client()
    try:
        keys = [f"key:{i}" for i in range(30)]
        owners = {client.get_node_from_key(key).port for key in keys}
        assert owners == {server.port for server in redis_cluster.servers}
        for key in keys:
            client.set(key, key)
        assert [client.get(key) for key in keys] == [key.encode() for key in keys]
    finally:
        client.close()
    assert len(redis_cluster.urls) == len(redis_cluster.startup_nodes) == 3


def test_cluster_fixture_hands_out_an_empty_cluster(redis_cluster: LocalRedisCluster) -> None:
    for server in redis_cluster.servers:
        with server.client() as client:
            assert client.dbsize() == 0


def test_pooled_servers_are_started_and_distinct(
    redis_nodes: list[RedisServer], redis_nodes5: list[RedisServer]
) -> None:
    servers = redis_nodes + redis_nodes5
    assert len({server.port for server in servers}) == 8
    assert all(ping(server.url) for server in servers)


def test_pool_hands_out_flushed_servers_and_replaces_broken_ones(
    pytester: pytest.Pytester,
) -> None:
    # Two tests in one inner session, run in order: the first dirties, kills, pauses and
    # restarts pooled servers; the second must get them back clean, or replaced.
    pytester.makepyfile(
        textwrap.dedent(
            """
            import os

            SHA = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"  # SHA1 of "return 1"
            seen = {}

            def test_dirty_and_break(redis_servers):
                servers = redis_servers(4)
                for server in servers:
                    with server.client() as client:
                        client.set("left", "behind")
                        assert client.script_load("return 1") == SHA
                seen["pids"] = [server.pid for server in servers]
                servers[1].kill()
                servers[2].pause()
                servers[3].restart()
                seen["replaced"] = seen["pids"][1:] + [servers[3].pid]

            def test_gets_flushed_and_healthy_servers(redis_servers):
                servers = redis_servers(4)
                pids = {server.pid for server in servers}
                assert seen["pids"][0] in pids
                assert not pids & set(seen["replaced"])
                for pid in seen["replaced"]:
                    try:
                        os.kill(pid, 0)
                    except ProcessLookupError:
                        continue
                    raise AssertionError(f"broken server {pid} was not stopped")
                for server in servers:
                    with server.client(socket_timeout=1) as client:
                        assert client.dbsize() == 0
                        assert client.script_exists(SHA) == [False]
            """
        )
    )
    result = pytester.runpytest(*INNER_ARGS)
    result.assert_outcomes(passed=2)


def test_private_servers_get_their_options_and_are_stopped(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        textwrap.dedent(
            """
            import os
            import pytest

            pids = []

            def test_private(redis_servers):
                (server,) = redis_servers(1, password="pw")
                assert server.url.startswith("redis://:pw@")
                pids.append(server.pid)

            def test_private_was_stopped():
                with pytest.raises(ProcessLookupError):
                    os.kill(pids[0], 0)
            """
        )
    )
    result = pytester.runpytest(*INNER_ARGS)
    result.assert_outcomes(passed=2)


def test_missing_redis_server_fails_instead_of_skipping(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("def test_needs_redis(redis_nodes):\n    pass\n")
    monkeypatch.setenv("PATH", str(pytester.path))  # a PATH without redis-server
    monkeypatch.delenv("REDSYNC_TEST_SERVER", raising=False)
    result = pytester.runpytest(*INNER_ARGS)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*redis-server not found on PATH (REDSYNC_TEST_SERVER is not set)*"]
    )
