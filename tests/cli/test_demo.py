"""`redsync demo`: real redis-server nodes, worker processes, faults; zero violations with the
lock, lost updates without it, and every process stopped at the end (also when interrupted)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import CLI, clean_env, redsync, wait_for

from redsync_core.testing import child_process

pytestmark = pytest.mark.slow


def number(label: str, text: str) -> int:
    match = re.search(rf"^\s+{label}\s+(\d+)", text, re.MULTILINE)
    assert match, f"no {label!r} line in:\n{text}"
    return int(match.group(1))


def lost_updates(text: str) -> int:
    match = re.search(r"-> lost updates: (\d+)", text)
    assert match, text
    return int(match.group(1))


def test_demo_with_the_lock_is_safe_through_node_faults(redis_server_binary):
    result = redsync("demo", "--seconds", "5", timeout=180)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    acquisitions = number("acquisitions", out)
    assert acquisitions > 0
    assert number("counter", out) == acquisitions
    assert lost_updates(out) == 0
    assert number("overlapping holders", out) == 0
    assert re.search(r"acquire latency\s+p50 [\d.]+ ms\s+p90 [\d.]+ ms\s+p99 [\d.]+ ms", out)
    for fault in ("killed n0, n1", "restarted n0 empty", "paused n2", "resumed n2"):
        assert fault in out
    # The empty restart is honest: it came later than the expiry after the node's death.
    match = re.search(r"restarted n0 empty.*?, ([\d.]+) s after its kill", out)
    assert match
    assert float(match.group(1)) > 1.0
    assert "verdict: SAFE" in out.splitlines()[-1]


def test_demo_without_the_lock_shows_lost_updates(redis_server_binary):
    result = redsync("demo", "--seconds", "3", "--workers", "4", "--unsafe", timeout=180)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert lost_updates(out) > 0
    assert number("overlapping holders", out) > 0
    assert "verdict: UNSAFE" in out


def test_demo_on_memory_nodes_uses_threads_and_says_so():
    result = redsync("demo", "--seconds", "3", "--memory", "--nodes", "3", timeout=120)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "memory:// nodes" in out
    assert "no node faults" in out
    assert lost_updates(out) == 0
    assert number("overlapping holders", out) == 0
    assert "verdict: SAFE" in out


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux /proc)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an orphan is reaped by init, not by us)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def refuses(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_interrupting_the_demo_stops_every_process_it_started(redis_server_binary, signum):
    demo = child_process(
        [*CLI, "demo", "--seconds", "120", "--workers", "3", "--nodes", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert demo.stdout is not None
        intro = ""
        for line in demo.stdout:
            intro += line
            if "acquisitions" in line:  # the first progress line: workers and nodes all run
                break
        ports = [int(p) for p in re.findall(r"\b(\d{4,5})\b", intro.split("ports", 1)[1])[:4]]
        assert len(ports) == 4  # 3 lock nodes and the referee
        started = descendants(demo.pid)
        assert len(started) >= 3 + 4  # the workers and the redis-servers
        demo.send_signal(signum)
        assert demo.wait(timeout=60) == 128 + signum
        assert demo.stderr is not None
        assert "interrupted" in demo.stderr.read()
    finally:
        demo.kill()
        demo.wait(timeout=60)
    wait_for(lambda: not any(alive(pid) for pid in started), what="the demo's processes to end")
    assert all(refuses(port) for port in ports)


def test_a_killed_demo_takes_its_workers_and_nodes_along(redis_server_binary):
    # SIGKILL runs no cleanup in the demo: the kernel's parent-death signal must do it (Linux).
    demo = child_process(
        [*CLI, "demo", "--seconds", "120", "--workers", "3", "--nodes", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=clean_env(),
    )
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            if "acquisitions" in line:  # the first progress line: workers and nodes all run
                break
        started = descendants(demo.pid)
        assert len(started) >= 3 + 4  # the workers and the redis-servers
        demo.kill()
        demo.wait(timeout=60)
    finally:
        demo.kill()
        demo.wait(timeout=60)
    try:
        wait_for(
            lambda: not any(alive(pid) for pid in started),
            timeout=10,
            what="the killed demo's processes to end",
        )
    finally:
        for pid in filter(alive, started):  # a failure must not leak them from this test
            os.kill(pid, signal.SIGKILL)


def test_demo_falls_back_to_memory_nodes_when_the_server_is_too_old(tmp_path):
    old = tmp_path / "redis-server"
    old.write_text('#!/bin/sh\necho "Redis server v=6.0.16 sha=00000000:0 malloc=jemalloc-5.2.1"\n')
    old.chmod(0o755)
    env = clean_env(REDSYNC_TEST_SERVER=str(old))
    result = redsync("demo", "--seconds", "3", "--nodes", "3", env=env, timeout=120)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert f"{old} is Redis 6.0.16, too old (Redis >= 7.0 or Valkey >= 7.2 needed)" in out
    assert "using in-process memory:// nodes" in out
    assert "verdict: SAFE" in out


def test_demo_says_when_the_server_setting_names_nothing():
    env = clean_env(REDSYNC_TEST_SERVER="no-such-redis-server")
    result = redsync("demo", "--seconds", "3", "--nodes", "3", env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "REDSYNC_TEST_SERVER='no-such-redis-server' names no executable" in result.stdout


def test_the_command_line_does_not_import_the_test_helpers():
    code = (
        "import sys, redsync_core.cli, redsync_core._cli.demo; "
        "assert 'redsync_core.testing' not in sys.modules, sorted(sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
