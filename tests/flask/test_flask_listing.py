"""`flask redsync ls` and `flask redsync release --pattern` against real nodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from flask import Flask

from redsync_core.testing import RedisServer
from redsync_flask import Redsync

VALUES = {"cli:jobs:1": "value-one-s3cret", "cli:jobs:2": "task-42:1:t0ken-s3cret"}


@pytest.fixture
def app(make_app: Any, redis_nodes: list[RedisServer]) -> Flask:
    app: Flask = make_app(REDSYNC_URLS=[s.url for s in redis_nodes], REDSYNC_KEY_PREFIX="cli:")
    Redsync(app)
    for server in redis_nodes:
        client = server.client()
        for key, value in VALUES.items():
            client.set(key, value, px=30_000)
        client.set("cli:other", "x", px=30_000)
        client.hset("cli:not-a-lock", "a", "1")
        client.close()
    return app


def invoke(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["redsync", *args])


def exists(servers: list[RedisServer], *keys: str) -> list[int]:
    counts = []
    for server in servers:
        client = server.client()
        counts.append(int(client.exists(*keys)))
        client.close()
    return counts


def test_ls_lists_matching_locks_without_values(app: Flask) -> None:
    result = invoke(app, "ls", "jobs:*")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("jobs:1: held, sha256:")
    assert lines[0].endswith("on 3 of 3 nodes")
    assert lines[1].startswith("jobs:2: held, task task-42,")
    assert "2 lock(s) matching 'jobs:*'" in result.output
    assert "s3cret" not in result.output


def test_ls_json_counts_keys_that_are_not_locks(app: Flask) -> None:
    result = invoke(app, "ls", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert [lock["name"] for lock in document["locks"]] == ["jobs:1", "jobs:2", "other"]
    assert document["skipped"] == 1
    assert "s3cret" not in result.output


def test_ls_without_a_quorum_of_nodes_exits_1(app: Flask, redis_nodes: list[RedisServer]) -> None:
    redis_nodes[0].kill()
    redis_nodes[1].kill()
    result = invoke(app, "ls")
    assert result.exit_code == 1
    assert "partial" in result.output
    assert "fewer than 2 of 3 nodes" in result.output


def test_release_pattern_refuses_without_force_or_confirmation(
    app: Flask, redis_nodes: list[RedisServer]
) -> None:
    no_force = invoke(app, "release", "--pattern", "jobs:*")
    assert no_force.exit_code == 2
    assert "--force" in no_force.output
    unconfirmed = invoke(app, "release", "--pattern", "jobs:*", "--force")
    assert unconfirmed.exit_code == 2
    assert "jobs:1: held" in unconfirmed.output  # what it would delete
    assert "--yes" in unconfirmed.output
    assert exists(redis_nodes, *VALUES) == [2, 2, 2]


def test_release_pattern_yes_deletes_the_matching_locks(
    app: Flask, redis_nodes: list[RedisServer]
) -> None:
    result = invoke(app, "release", "--pattern", "jobs:*", "--force", "--yes")
    assert result.exit_code == 0, result.output
    assert "released lock 'jobs:1': deleted on 3 of 3 nodes" in result.output
    assert exists(redis_nodes, *VALUES) == [0, 0, 0]
    assert exists(redis_nodes, "cli:other", "cli:not-a-lock") == [2, 2, 2]


def test_release_needs_a_name_or_a_pattern(app: Flask) -> None:
    assert invoke(app, "release", "--force").exit_code == 2
    assert invoke(app, "release", "jobs:1", "--pattern", "x", "--force").exit_code == 2


FLASK = [sys.executable, "-m", "flask", "--app", "tty_app"]
APP_MODULE = """
from flask import Flask
from redsync_flask import Redsync

app = Flask("tty_app")
app.config.update(REDSYNC_URLS={urls!r}, REDSYNC_KEY_PREFIX="cli:")
Redsync(app)
"""


@pytest.mark.parametrize(("answer", "deleted"), [("y\n", True), ("n\n", False)])
def test_release_pattern_asks_on_a_terminal(
    app: Flask, redis_nodes: list[RedisServer], tmp_path: Any, answer: str, deleted: bool
) -> None:
    (tmp_path / "tty_app.py").write_text(APP_MODULE.format(urls=[s.url for s in redis_nodes]))
    primary, secondary = os.openpty()
    try:
        os.write(primary, answer.encode())
        result = subprocess.run(
            [*FLASK, "redsync", "release", "--pattern", "jobs:*", "--force"],
            stdin=secondary,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])},
            timeout=90,
            check=False,
        )
    finally:
        os.close(primary)
        os.close(secondary)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Delete these 2 lock(s) on every node? [y/N]" in result.stdout
    assert exists(redis_nodes, *VALUES) == ([0, 0, 0] if deleted else [2, 2, 2])
