"""`redsync ls` and `redsync release --pattern` against real redis-server nodes."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from cli_helpers import CLI, TIMEOUT, clean_env, one_line, redsync, url_args

from redsync_core import Redsync
from redsync_core.testing import RedisServer

TASK_VALUE = "5f1c9b7e-task:1:s3cret-token"


def hold(servers: list[RedisServer], key: str, value: str, ttl_ms: int = 30_000) -> None:
    for server in servers:
        client = server.client()
        try:
            client.set(key, value, px=ttl_ms)
        finally:
            client.close()


def keys(server: RedisServer) -> list[str]:
    client = server.client()
    try:
        return sorted(key.decode() for key in client.keys("*"))
    finally:
        client.close()


@pytest.fixture
def locks(redis_nodes: list[RedisServer], urls: list[str]) -> list[str]:
    """Under prefix "app:": two library locks, a Celery-shaped one, a leftover and a hash."""
    values = []
    with Redsync(urls, key_prefix="app:") as rs:
        for name in ("orders:1", "orders:2"):
            mutex = rs.new_mutex(name, expiry=30)
            mutex.lock()
            assert mutex.value is not None
            values.append(mutex.value)
    hold(redis_nodes, "app:billing", TASK_VALUE)
    hold(redis_nodes[:1], "app:leftover", "old-value-s3cret")
    client = redis_nodes[0].client()
    client.hset("app:settings", "mode", "fast")
    client.set("unprefixed", "x", px=30_000)
    client.close()
    return values


def test_ls_lists_locks_with_verdict_holder_ttl_and_nodes(urls, locks):
    result = redsync("ls", "--key-prefix", "app:", *url_args(urls))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "VERDICT", "HOLDER", "TTL", "NODES"]
    rows = {line.split()[0]: line for line in lines[1:5]}
    assert list(rows) == ["billing", "leftover", "orders:1", "orders:2"]
    assert "held" in rows["billing"]
    assert "task 5f1c9b7e-task" in rows["billing"]
    assert rows["billing"].endswith("3 of 3")
    assert " free " in rows["leftover"]
    assert rows["leftover"].endswith("1 of 3")
    assert "sha256:" in rows["orders:1"]
    assert " s " in rows["orders:1"]
    assert "4 lock(s) matching '*' under prefix 'app:', 3 held" in result.stdout
    assert "1 key(s) under the prefix are not locks" in result.stdout
    assert "unprefixed" not in result.stdout
    for secret in [*locks, "s3cret"]:
        assert secret not in result.stdout + result.stderr


def test_ls_pattern_and_json(urls, locks):
    result = redsync("ls", "orders:*", "--json", "--key-prefix", "app:", *url_args(urls))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [lock["name"] for lock in document["locks"]] == ["orders:1", "orders:2"]
    assert document["skipped"] == 0
    assert document["partial"] is False
    first = document["locks"][0]
    assert first["verdict"] == "held"
    assert first["holder"].startswith("sha256:")
    assert 0 < first["remaining"] <= 30
    assert [node["holder"] == first["holder"] for node in first["nodes"]] == [True] * 3
    for secret in locks:
        assert secret not in result.stdout


def test_ls_with_a_node_down_is_partial_and_without_a_quorum_exits_69(redis_nodes, urls, locks):
    redis_nodes[2].kill()
    result = redsync("ls", "--json", "--key-prefix", "app:", *url_args(urls))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["partial"] is True
    assert [node["address"] for node in document["incomplete"]] == [urls[2]]
    redis_nodes[1].kill()
    result = redsync("ls", "--key-prefix", "app:", *url_args(urls))
    assert result.returncode == 69
    assert "unknown" in result.stdout
    assert "fewer than 2 of 3 nodes were listed" in one_line(result.stderr)


def test_release_pattern_without_a_terminal_refuses_and_deletes_nothing(redis_nodes, urls, locks):
    before = [keys(server) for server in redis_nodes]
    result = redsync(
        "release", "--pattern", "orders:*", "--force", "--key-prefix", "app:", *url_args(urls)
    )
    assert result.returncode == 2
    assert "orders:1" in result.stdout  # it shows what it would delete
    assert "--yes" in one_line(result.stderr)
    assert [keys(server) for server in redis_nodes] == before


def test_release_pattern_yes_deletes_the_matching_locks_only(redis_nodes, urls, locks):
    result = redsync(
        "release", "--pattern", "*", "--force", "--yes", "--key-prefix", "app:", *url_args(urls)
    )
    assert result.returncode == 0, result.stderr
    assert "released 'orders:1': deleted on 3 of 3 nodes" in result.stdout
    assert "released 'leftover': deleted on 1 of 3 nodes" in result.stdout
    for secret in [*locks, "s3cret"]:
        assert secret not in result.stdout + result.stderr
    assert keys(redis_nodes[0]) == ["app:settings", "unprefixed"]  # not locks, or not ours
    assert keys(redis_nodes[1]) == keys(redis_nodes[2]) == []


@pytest.mark.parametrize(("answer", "deleted"), [("y\n", True), ("n\n", False), ("\n", False)])
def test_release_pattern_asks_on_a_terminal(redis_nodes, urls, locks, answer, deleted):
    primary, secondary = os.openpty()
    try:
        os.write(primary, answer.encode())
        result = subprocess.run(
            [
                *CLI,
                "release",
                "--pattern",
                "orders:*",
                "--force",
                "--key-prefix",
                "app:",
                *url_args(urls),
            ],
            stdin=secondary,
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=TIMEOUT,
            check=False,
        )
    finally:
        os.close(primary)
        os.close(secondary)
    assert result.returncode == 0, result.stderr
    assert "Delete these 2 lock(s) on every node? [y/N]" in result.stdout
    left = [key for key in keys(redis_nodes[1]) if key.startswith("app:orders")]
    assert left == ([] if deleted else ["app:orders:1", "app:orders:2"])
    assert ("nothing deleted" in result.stdout) is not deleted


def test_passwords_and_values_are_never_printed(redis_servers):
    servers = redis_servers(3, password="pw-s3cret")
    urls = [server.url for server in servers]
    hold(servers, "job", "value-s3cret")
    servers[2].kill()  # its error line names the node: by address only
    outputs = [
        redsync("ls", *url_args(urls)),
        redsync("ls", "--json", *url_args(urls)),
        redsync("release", "--pattern", "*", "--force", "--yes", *url_args(urls)),
    ]
    assert [result.returncode for result in outputs] == [0, 0, 0]
    assert "released 'job': deleted on 2 of 3 nodes" in outputs[2].stdout
    for result in outputs:
        assert "s3cret" not in result.stdout + result.stderr
