"""The server binary comes from REDSYNC_TEST_SERVER and is checked before a start: Redis >= 7.0
or Valkey >= 7.2, else a message with the version found, the version needed and the fix.

The old or foreign servers are tiny shell scripts that print a version line; the accepted
Valkey one passes every other argument on to the real redis-server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from redsync_core.testing import RedisServer, find_redis_server

INNER_ARGS = ("-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:asyncio", "-p", "no:django")


def fake_server(directory: Path, version_line: str, real: str | None = None) -> str:
    """Write an executable that prints ``version_line`` for --version (else runs ``real``)."""
    path = directory / "fake-server"
    run_real = f'exec "{real}" "$@"' if real else "exit 1"
    path.write_text(
        f'#!/bin/sh\nif [ "$1" = "--version" ]; then echo "{version_line}"; exit 0; fi\n{run_real}\n'
    )
    path.chmod(0o755)
    return str(path)


REDIS_6 = (
    "Redis server v=6.0.16 sha=00000000:0 malloc=jemalloc-5.2.1 bits=64 build=a3fdef44459b3ad6"
)


def test_an_old_redis_is_refused_with_found_needed_and_fix(tmp_path: Path) -> None:
    binary = fake_server(tmp_path, REDIS_6)
    server = RedisServer(binary=binary)
    with pytest.raises(RuntimeError) as caught:
        server.start()
    message = str(caught.value)
    assert "is Redis 6.0.16, too old" in message
    assert "Redis >= 7.0 or Valkey >= 7.2" in message
    assert "REDSYNC_TEST_SERVER" in message
    assert "apt-get install redis-server" in message
    assert not server.running


@pytest.mark.parametrize(
    ("version_line", "why"),
    [
        ("Valkey server v=7.0.0 sha=00000000:0 malloc=libc bits=64", "is Valkey 7.0.0, too old"),
        ("KeyDB server v=6.3.4 sha=00000000:0 malloc=jemalloc bits=64", "not a Redis or Valkey"),
        ("something else entirely", "not a Redis or Valkey"),
    ],
    ids=["valkey-7.0", "keydb", "garbage"],
)
def test_other_servers_are_refused(tmp_path: Path, version_line: str, why: str) -> None:
    with pytest.raises(RuntimeError, match=why):
        RedisServer(binary=fake_server(tmp_path, version_line)).start()


def test_valkey_version_lines_are_accepted(
    tmp_path: Path, redis_server_binary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = fake_server(
        tmp_path, "Valkey server v=8.1.1 sha=00000000:0 malloc=jemalloc-5.3.0", redis_server_binary
    )
    monkeypatch.setenv("REDSYNC_TEST_SERVER", binary)
    assert find_redis_server() == binary
    with RedisServer() as server, server.client() as client:
        assert client.ping()


def test_the_setting_picks_the_binary_by_name_on_path(
    tmp_path: Path, redis_server_binary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_server(tmp_path, "Redis server v=7.4.2 sha=0", redis_server_binary)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setenv("REDSYNC_TEST_SERVER", "fake-server")
    assert find_redis_server() == str(tmp_path / "fake-server")


def run_inner_session(tmp_path: Path, server_setting: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_needs_redis.py").write_text("def test_needs_redis(redis_nodes):\n    pass\n")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *INNER_ARGS, "test_needs_redis.py"],
        cwd=tmp_path,
        env={**os.environ, "REDSYNC_TEST_SERVER": server_setting},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_fixtures_fail_with_the_message_when_the_server_is_too_old(tmp_path: Path) -> None:
    result = run_inner_session(tmp_path, fake_server(tmp_path, REDIS_6))
    assert result.returncode != 0
    assert "1 error" in result.stdout
    assert "is Redis 6.0.16, too old: the redsync suite needs Redis >= 7.0" in result.stdout


def test_fixtures_fail_when_the_setting_names_nothing(tmp_path: Path) -> None:
    result = run_inner_session(tmp_path, "no-such-redis-server")
    assert result.returncode != 0
    assert "1 error" in result.stdout
    assert "REDSYNC_TEST_SERVER='no-such-redis-server' names no executable" in result.stdout


def test_a_relative_path_in_the_setting_works_from_the_servers_own_directories(
    tmp_path: Path, redis_server_binary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_server(tmp_path, "Redis server v=7.2.4 sha=0", redis_server_binary)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDSYNC_TEST_SERVER", "./fake-server")
    assert find_redis_server() == str(tmp_path / "fake-server")
    with RedisServer() as server, server.client() as client:  # runs in its own temporary dir
        assert client.ping()
