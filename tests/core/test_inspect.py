"""Operator views of a lock: inspect (holder, remaining, verdict), force_release, ping."""

from __future__ import annotations

from redsync_core import Redsync
from redsync_core.testing import RedisServer


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
        assert all(n.version and n.version[0].isdigit() for n in report.nodes)
        redis_nodes[0].kill()
        redis_nodes[1].kill()
        report = rs.ping()
        assert not report.ok
        assert report.reachable == 1
        assert report.nodes[0].error
