"""Operator views of a lock: inspect (holder, remaining, verdict), force_release, ping."""

from __future__ import annotations

from typing import Any

import pytest

from redsync_core import AsyncRedsync, NodeHealth, Redsync
from redsync_core._transport.commands import UnexpectedReply
from redsync_core._transport.sync import server_version
from redsync_core.testing import RedisServer


def expected_version(server: RedisServer) -> str:
    """What ping() reports for ``server``: Valkey by its own name and version."""
    client = server.client()
    info = client.info("server")
    client.close()
    if "valkey_version" in info:
        return f"{info['server_name']} {info['valkey_version']}"
    return str(info["redis_version"])


def test_inspect_reports_holder_remaining_and_verdict(redis_nodes: list[RedisServer]) -> None:
    with Redsync([s.url for s in redis_nodes], key_prefix="ops:") as rs:
        assert rs.inspect("job").verdict == "free"
        mutex = rs.new_mutex("job", expiry=5.0)
        mutex.lock()
        info = rs.inspect("job")
        assert info.key == "ops:job"
        assert info.verdict == "held"
        assert info.holder == mutex.value
        assert info.remaining is not None
        assert 0 < info.remaining <= 5.0
        redis_nodes[0].kill()
        # Two of three still hold it: held. With a second node silent, nobody can tell.
        assert rs.inspect("job").verdict == "held"
        redis_nodes[1].kill()
        unknown = rs.inspect("job")
        assert unknown.verdict == "unknown"
        assert unknown.nodes[0].error is not None


def test_force_release_deletes_whatever_holds_the_key(redis_nodes: list[RedisServer]) -> None:
    with Redsync([s.url for s in redis_nodes]) as rs:
        mutex = rs.new_mutex("stuck", expiry=30.0)
        mutex.lock()
        assert rs.force_release("stuck") == 3
        assert rs.inspect("stuck").verdict == "free"
        assert mutex.unlock() is False  # it was no longer ours


def test_ping_reports_each_node_and_the_quorum(redis_nodes: list[RedisServer]) -> None:
    with Redsync([s.url for s in redis_nodes]) as rs:
        report = rs.ping()
        assert report.ok
        assert [n.ok for n in report.nodes] == [True, True, True]
        assert [n.version for n in report.nodes] == [expected_version(s) for s in redis_nodes]
        redis_nodes[0].kill()
        redis_nodes[1].kill()
        report = rs.ping()
        assert not report.ok
        assert report.reachable == 1
        assert report.nodes[0].error


async def test_async_ping_reports_the_server_version(redis_nodes: list[RedisServer]) -> None:
    async with AsyncRedsync([s.url for s in redis_nodes]) as ars:
        report = await ars.ping()
    assert [n.version for n in report.nodes] == [expected_version(s) for s in redis_nodes]


REDIS_INFO = (
    "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\nredis_mode:standalone\r\n"
)
VALKEY_INFO = (
    "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:9.1.2\r\n"
    "valkey_release_stage:ga\r\nredis_git_sha1:00000000\r\n"
)


@pytest.mark.parametrize(
    ("info", "version"),
    [
        (REDIS_INFO, "7.0.15"),
        (REDIS_INFO.encode(), "7.0.15"),
        (VALKEY_INFO, "valkey 9.1.2"),  # not its redis_version: a compatibility field
        (VALKEY_INFO.encode(), "valkey 9.1.2"),
        ({"redis_version": "7.0.15", "redis_mode": "standalone"}, "7.0.15"),
        (
            {"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": "8.1.0"},
            "valkey 8.1.0",
        ),
        ("# Server\r\n", "?"),
        ({}, "?"),
    ],
)
def test_the_version_is_read_from_info_redis_or_valkey(info: Any, version: str) -> None:
    assert server_version(info) == version


def test_a_reply_to_info_that_is_not_text_is_refused() -> None:
    with pytest.raises(UnexpectedReply):
        server_version(7)


@pytest.mark.parametrize(
    ("version", "server"),
    [("7.0.15", "redis 7.0.15"), ("valkey 9.1.2", "valkey 9.1.2"), (None, "redis ?")],
)
def test_node_health_names_the_server_for_display(version: str | None, server: str) -> None:
    assert NodeHealth(0, "redis://h:6379/0", True, 0.1, version).server == server
