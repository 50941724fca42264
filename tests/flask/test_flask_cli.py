"""The `flask redsync` command group against real nodes, through Flask's CLI runner."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from redsync_core.testing import RedisServer
from redsync_flask import Redsync


@pytest.fixture
def app(make_app: Any, redis_nodes: list[RedisServer]) -> Flask:
    app: Flask = make_app(
        REDSYNC_URLS=[s.url for s in redis_nodes],
        REDSYNC_KEY_PREFIX="cli:",
        REDSYNC_CLIENT_OPTIONS={"socket_timeout": 1.0, "socket_connect_timeout": 1.0},
    )
    Redsync(app)
    return app


def invoke(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["redsync", *args])


def test_the_group_is_registered_by_init_app(app: Flask) -> None:
    result = invoke(app, "--help")
    assert result.exit_code == 0
    for command in ("ping", "status", "release"):
        assert command in result.output


def test_ping_reports_each_node_and_the_quorum(app: Flask, redis_nodes: list[RedisServer]) -> None:
    result = invoke(app, "ping")

    assert result.exit_code == 0, result.output
    for index, server in enumerate(redis_nodes):
        assert f"node {index} redis://127.0.0.1:{server.port}/0: ok, " in result.output
    assert " ms, redis " in result.output or " ms, valkey " in result.output
    assert "quorum: 3 of 3 nodes answered, 2 needed: ok" in result.output


def test_ping_with_one_node_down_still_has_a_quorum(
    app: Flask, redis_nodes: list[RedisServer]
) -> None:
    redis_nodes[1].kill()
    result = invoke(app, "ping", "--timeout", "1")
    assert result.exit_code == 0, result.output
    assert "node 1 " in result.output
    assert "FAILED" in result.output
    assert "quorum: 2 of 3 nodes answered, 2 needed: ok" in result.output


def test_ping_without_a_quorum_exits_1(app: Flask, redis_nodes: list[RedisServer]) -> None:
    redis_nodes[0].kill()
    redis_nodes[2].kill()
    result = invoke(app, "ping", "--timeout", "1")
    assert result.exit_code == 1
    assert "quorum: 1 of 3 nodes answered, 2 needed: NOT REACHED" in result.output


def test_status_of_a_free_lock(app: Flask) -> None:
    result = invoke(app, "status", "report:1")
    assert result.exit_code == 0, result.output
    assert "lock 'report:1' (key 'cli:report:1'): not held" in result.output
    assert result.output.count(": free") == 3


def test_status_of_a_held_lock_shows_each_node_without_the_token(app: Flask) -> None:
    core = app.extensions["redsync"]
    mutex = core.new_mutex("report:1", expiry=20.0, auto_extend=False)
    mutex.lock()
    try:
        fingerprint = core.inspect("report:1").holder_digest
        result = invoke(app, "status", "report:1")
    finally:
        mutex.unlock()
    assert fingerprint is not None
    assert fingerprint.startswith("sha256:")
    assert result.exit_code == 0, result.output
    summary, *nodes = result.output.splitlines()
    assert summary.startswith(f"lock 'report:1' (key 'cli:report:1'): held by {fingerprint}")
    assert len(nodes) == 3
    assert all(f": held by {fingerprint}, " in line and " s left" in line for line in nodes)
    assert mutex.value not in result.output
    assert mutex.value[:6] not in result.output  # not even a prefix of the token


def test_release_needs_force(app: Flask) -> None:
    mutex = app.extensions["redsync"].new_mutex("stuck", expiry=20.0, auto_extend=False)
    mutex.lock()
    try:
        result = invoke(app, "release", "stuck")
        assert result.exit_code == 2
        assert "without --force" in result.output
        assert mutex.valid()  # untouched
    finally:
        mutex.unlock()


def test_release_force_deletes_the_lock_on_every_node(app: Flask) -> None:
    mutex = app.extensions["redsync"].new_mutex("stuck", expiry=20.0, auto_extend=False)
    mutex.lock()

    result = invoke(app, "release", "stuck", "--force")

    assert result.exit_code == 0, result.output
    assert "released lock 'stuck': deleted on 3 of 3 nodes" in result.output
    assert not app.extensions["redsync"].inspect("stuck").held
    assert mutex.unlock() is False  # the holder finds it gone
    again = invoke(app, "release", "stuck", "--force")
    assert "not held on any node" in again.output


def test_each_app_uses_its_own_nodes(make_app: Any, redis_servers: Any) -> None:
    redsync = Redsync()
    apps = []
    for prefix in ("a:", "b:"):
        app = make_app(REDSYNC_URLS=[s.url for s in redis_servers(3)], REDSYNC_KEY_PREFIX=prefix)
        redsync.init_app(app)
        apps.append(app)
    with apps[0].extensions["redsync"].new_mutex("job"):  # no app context: the CLI pushes its own
        assert "key 'a:job'): held" in invoke(apps[0], "status", "job").output
        assert "key 'b:job'): not held" in invoke(apps[1], "status", "job").output
