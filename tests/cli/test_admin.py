"""`redsync status`, `release --force` and `ping` against real redis-server nodes."""

from __future__ import annotations

import hashlib

from cli_helpers import clean_env, one_line, redsync, url_args

from redsync_core import Redsync

NAME = "orders:42"


def fingerprint(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:8]


def test_status_of_a_free_lock_exits_1(urls):
    result = redsync("status", NAME, *url_args(urls))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert sum(line.rstrip().endswith("free") for line in lines) == 3
    assert lines[-1].startswith("verdict: FREE")


def test_status_of_a_held_lock_shows_holder_ttl_and_verdict(urls, rs):
    holder = rs.new_mutex(NAME, expiry=30)
    holder.lock()
    result = redsync("status", NAME, *url_args(urls))
    assert result.returncode == 0, result.stderr
    assert holder.value is not None
    assert holder.value not in result.stdout  # the value would let anyone unlock it
    held_lines = [line for line in result.stdout.splitlines() if "held by" in line]
    assert len(held_lines) == 3
    assert all(fingerprint(holder.value) in line and "ttl" in line for line in held_lines)
    verdict = result.stdout.splitlines()[-1]
    assert verdict.startswith(f"verdict: HELD by {fingerprint(holder.value)} on 3 of 3 nodes")
    holder.unlock()


def test_status_stays_held_with_a_node_down(redis_nodes, urls, rs):
    holder = rs.new_mutex(NAME, expiry=30)
    holder.lock()
    redis_nodes[2].kill()
    result = redsync("status", NAME, *url_args(urls))
    assert result.returncode == 0
    assert "error:" in result.stdout.splitlines()[3]
    assert "verdict: HELD" in result.stdout
    assert result.stderr == ""  # node errors are in the table, not repeated as warnings


def test_status_is_unknown_when_too_few_nodes_answer(redis_nodes, urls):
    for server in redis_nodes[:2]:
        server.kill()
    result = redsync("status", NAME, *url_args(urls))
    assert result.returncode == 69
    assert "verdict: UNKNOWN" in result.stdout


def test_status_uses_the_key_prefix(urls):
    with Redsync(urls, key_prefix="app:") as prefixed:
        holder = prefixed.new_mutex(NAME)
        holder.lock()
        unprefixed = redsync("status", NAME, *url_args(urls))
        assert unprefixed.returncode == 1
        result = redsync("status", NAME, "--key-prefix", "app:", *url_args(urls))
        assert result.returncode == 0
        assert f"key 'app:{NAME}'" in result.stdout
        from_env = redsync(
            "status", NAME, env=clean_env(REDSYNC_URLS=",".join(urls), REDSYNC_KEY_PREFIX="app:")
        )
        assert from_env.returncode == 0
        holder.unlock()


def test_release_without_force_refuses_and_keeps_the_lock(urls, rs):
    holder = rs.new_mutex(NAME, expiry=30)
    holder.lock()
    result = redsync("release", NAME, *url_args(urls))
    assert result.returncode == 2
    assert "--force" in one_line(result.stderr)
    assert rs.inspect(NAME).holder == holder.value


def test_release_force_deletes_the_key_on_every_node(redis_nodes, urls, rs):
    holder = rs.new_mutex(NAME, expiry=30)
    holder.lock()
    result = redsync("release", NAME, "--force", *url_args(urls))
    assert result.returncode == 0, result.stderr
    assert "deleted on 3 of 3 nodes" in result.stdout
    assert "may still be working" in result.stdout
    for server in redis_nodes:
        client = server.client()
        try:
            assert client.exists(NAME) == 0
        finally:
            client.close()


def test_release_force_with_no_quorum_exits_69(redis_nodes, urls, rs):
    for server in redis_nodes[:2]:
        server.kill()
    result = redsync("release", NAME, "--force", *url_args(urls))
    assert result.returncode == 69
    assert result.stdout.count("not reached") == 2


def test_ping_reports_each_node_and_the_quorum(redis_nodes, urls):
    client = redis_nodes[0].client()
    info = client.info("server")
    client.close()
    # A Valkey server answers redis_version 7.2.4 whatever its own: it is shown by its name.
    if "valkey_version" in info:
        shown = f"valkey {info['valkey_version']}"
    else:
        shown = f"redis {info['redis_version']}"
    result = redsync("ping", *url_args(urls))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for server, line in zip(redis_nodes, lines, strict=False):
        assert f":{server.port}/0" in line
        assert " ok " in line
        assert " ms " in line
        assert f"  {shown}" in line
    assert lines[-1] == "quorum: 3 of 3 nodes reachable, 2 needed: ok"


def test_ping_without_a_quorum_exits_non_zero(redis_nodes, urls):
    redis_nodes[0].kill()
    redis_nodes[1].pause()
    result = redsync("ping", "--timeout", "0.5", *url_args(urls))
    assert result.returncode == 69
    assert result.stdout.count("DOWN") == 2
    assert "NO QUORUM" in result.stdout.splitlines()[-1]


def test_ping_with_a_minority_down_is_ok(redis_nodes, urls):
    redis_nodes[0].kill()
    result = redsync("ping", *url_args(urls))
    assert result.returncode == 0
    assert "quorum: 2 of 3 nodes reachable, 2 needed: ok" in result.stdout


def test_passwords_are_never_printed(redis_servers):
    servers = redis_servers(3, password="pw-s3cret")
    urls = [server.url for server in servers]
    assert all("pw-s3cret" in url for url in urls)
    outputs = [
        redsync("ping", *url_args(urls)),
        redsync("status", NAME, *url_args(urls)),
        redsync("run", NAME, "--url", urls[0].replace("pw-s3cret", "wrong-s3cret"), "--", "true"),
    ]
    assert [result.returncode for result in outputs] == [0, 1, 69]
    for result in outputs:
        assert "s3cret" not in result.stdout + result.stderr
