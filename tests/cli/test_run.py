"""`redsync run NAME -- CMD`: a distributed flock -n for cron, against real redis-server nodes."""

from __future__ import annotations

import signal
import sys
import time

import pytest
from cli_helpers import CLI, assert_gone, clean_env, one_line, redsync, start, url_args, wait_for

from redsync_core import Redsync
from redsync_core.testing import child_process

NAME = "nightly-backup"


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.mark.parametrize("code", [0, 1, 3, 42], ids=lambda c: f"exit-{c}")
def test_the_command_status_is_passed_through(urls, rs, code):
    result = redsync("run", NAME, *url_args(urls), "--", *python(f"raise SystemExit({code})"))
    assert result.returncode == code, result.stderr
    assert not rs.inspect(NAME).held


def test_a_command_killed_by_a_signal_exits_128_plus_the_signal(urls, rs):
    result = redsync(
        "run", NAME, *url_args(urls), "--",
        *python("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"),
    )  # fmt: skip
    assert result.returncode == 128 + signal.SIGKILL
    assert not rs.inspect(NAME).held


def test_the_command_gets_its_arguments_and_the_terminal_streams(urls):
    result = redsync(
        "run", NAME, *url_args(urls), "--",
        *python("import sys; print('args', sys.argv[1:])"), "a b", "--c", "-x",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "args ['a b', '--c', '-x']\n"


def test_busy_lock_exits_75_at_once_without_running_the_command(urls, rs, tmp_path):
    holder = rs.new_mutex(NAME, expiry=60)
    holder.lock()
    marker = tmp_path / "ran"
    started = time.monotonic()
    result = redsync("run", NAME, *url_args(urls), "--", *python(f"open({str(marker)!r}, 'w')"))
    elapsed = time.monotonic() - started
    assert result.returncode == 75
    assert not marker.exists()
    line = one_line(result.stderr)
    assert repr(NAME) in line
    assert "busy" in line
    assert "free in about" in line
    # One attempt, not a wait for the holder's 60 s: generous margin for a loaded machine.
    assert elapsed < 30
    assert rs.inspect(NAME).holder == holder.value  # the holder's lock is untouched
    holder.unlock()


def test_busy_exit_code_can_be_chosen(urls, rs, tmp_path):
    holder = rs.new_mutex(NAME, expiry=60)
    holder.lock()
    marker = tmp_path / "ran"
    result = redsync(
        "run", NAME, "--busy-exit-code", "0", *url_args(urls), "--",
        *python(f"open({str(marker)!r}, 'w')"),
    )  # fmt: skip
    assert result.returncode == 0
    assert not marker.exists()
    assert "busy" in one_line(result.stderr)
    holder.unlock()


def test_wait_takes_the_lock_once_the_holder_lets_it_expire(urls, rs):
    holder = rs.new_mutex(NAME, expiry=1.5)  # not extended: frees itself after 1.5 s
    holder.lock()
    result = redsync(
        "run", NAME, "--wait", "60", *url_args(urls), "--", *python("raise SystemExit(5)")
    )
    assert result.returncode == 5, result.stderr


def test_the_lock_is_held_while_the_command_runs_and_released_after(
    urls, rs, tmp_path, child_script
):
    wrapper = start("run", NAME, *url_args(urls), "--", *child_script(exit_code=0))
    try:
        wait_for((tmp_path / "started").exists, what="the command to start")
        info = rs.inspect(NAME)
        assert info.held
        assert all(node.holder == info.holder for node in info.nodes)
        second = redsync("run", NAME, *url_args(urls), "--", "true")
        assert second.returncode == 75
        (tmp_path / "finish").touch()
        assert wrapper.wait(timeout=60) == 0
    finally:
        wrapper.kill()
        wrapper.wait(timeout=60)
    assert not rs.inspect(NAME).held
    assert all(node.holder is None for node in rs.inspect(NAME).nodes)


def test_a_short_expiry_is_extended_while_a_longer_command_runs(urls, rs, tmp_path, child_script):
    errors = tmp_path / "stderr"
    wrapper = start(
        "run", NAME, "--expiry", "1", *url_args(urls), "--", *child_script(exit_code=0),
        stderr=errors,
    )  # fmt: skip
    try:
        wait_for((tmp_path / "started").exists, what="the command to start")
        first = rs.inspect(NAME).holder
        assert first is not None
        time.sleep(3.5)  # 3.5 times the expiry: only extensions keep it
        info = rs.inspect(NAME)
        assert info.holder == first
        assert info.remaining is not None
        assert info.remaining <= 1.0
        (tmp_path / "finish").touch()
        assert wrapper.wait(timeout=60) == 0
    finally:
        wrapper.kill()
        wrapper.wait(timeout=60)
    assert "lost" not in errors.read_text()
    assert not rs.inspect(NAME).held


def test_sigterm_to_the_wrapper_ends_the_command_and_releases_the_lock(
    urls, rs, tmp_path, child_script
):
    wrapper = start("run", NAME, *url_args(urls), "--", *child_script())
    try:
        wait_for((tmp_path / "started").exists, what="the command to start")
        child_pid = int((tmp_path / "started").read_text())
        assert rs.inspect(NAME).held
        wrapper.send_signal(signal.SIGTERM)
        assert wrapper.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        wrapper.kill()
        wrapper.wait(timeout=60)
    assert_gone(child_pid)
    assert not rs.inspect(NAME).held


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name
)
def test_signals_are_forwarded_to_the_command(urls, rs, tmp_path, child_script, signum):
    command = child_script(trap=[signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
    wrapper = start("run", NAME, *url_args(urls), "--", *command)
    try:
        wait_for((tmp_path / "started").exists, what="the command to start")
        wrapper.send_signal(signum)
        # The command handled the signal and chose its status; the wrapper passes it through.
        assert wrapper.wait(timeout=60) == 10 + signum
    finally:
        wrapper.kill()
        wrapper.wait(timeout=60)
    assert not rs.inspect(NAME).held


def test_a_lost_lock_is_reported_and_kill_on_lost_terminates_the_command(
    urls, rs, tmp_path, child_script
):
    errors = tmp_path / "stderr"
    wrapper = start(
        "run", NAME, "--expiry", "1", "--kill-on-lost", *url_args(urls), "--", *child_script(),
        stderr=errors,
    )  # fmt: skip
    try:
        wait_for((tmp_path / "started").exists, what="the command to start")
        child_pid = int((tmp_path / "started").read_text())
        assert rs.force_release(NAME) == 3  # an operator deletes it: the next extension fails
        assert wrapper.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        wrapper.kill()
        wrapper.wait(timeout=60)
    assert_gone(child_pid)
    text = errors.read_text()
    assert "ERROR" in text
    assert f"lost lock {NAME!r}" in text
    assert "terminating the command" in text


def test_a_lost_lock_without_kill_on_lost_lets_the_command_finish(urls, rs, tmp_path, child_script):
    errors = tmp_path / "stderr"
    wrapper = start(
        "run", NAME, "--expiry", "1", *url_args(urls), "--", *child_script(exit_code=4),
        stderr=errors,
    )  # fmt: skip
    try:
        wait_for((tmp_path / "started").exists, what="the command to start")
        rs.force_release(NAME)
        wait_for(lambda: "lost lock" in errors.read_text(), what="the ERROR line")
        assert wrapper.poll() is None  # still running, unprotected, as the line says
        (tmp_path / "finish").touch()
        assert wrapper.wait(timeout=60) == 4
    finally:
        wrapper.kill()
        wrapper.wait(timeout=60)
    assert "keeps running" in errors.read_text()


@pytest.mark.parametrize(
    ("command", "status"),
    [(["/nonexistent/redsync-test"], 127), (["/etc/passwd"], 126)],
    ids=["not-found", "not-executable"],
)
def test_a_command_that_cannot_run_exits_like_a_shell_and_releases(urls, rs, command, status):
    result = redsync("run", NAME, *url_args(urls), "--", *command)
    assert result.returncode == status
    assert command[0] in one_line(result.stderr)
    assert not rs.inspect(NAME).held


def test_no_quorum_exits_69(redis_nodes, rs):
    for server in redis_nodes[:2]:
        server.kill()
    result = redsync("run", NAME, *url_args([s.url for s in redis_nodes]), "--", "true")
    assert result.returncode == 69
    assert "nodes failed" in result.stderr


def test_nodes_and_prefix_come_from_the_environment(urls, tmp_path, child_script):
    env = clean_env(REDSYNC_URLS=",".join(urls), REDSYNC_KEY_PREFIX="cron:")
    wrapper_env_rs = Redsync(urls, key_prefix="cron:")
    wrapper = child_process(
        [*CLI, "run", NAME, "--", *child_script()], env=env, death_signal=signal.SIGTERM
    )
    try:
        wait_for((tmp_path / "started").exists, what="the command to start")
        assert wrapper_env_rs.inspect(NAME).held
        assert wrapper_env_rs.inspect(NAME).key == "cron:" + NAME
        (tmp_path / "finish").touch()
        assert wrapper.wait(timeout=60) == 0
    finally:
        wrapper.kill()
        wrapper.wait(timeout=60)
        wrapper_env_rs.close()


def test_a_lock_name_with_braces_is_taken_literally(urls, rs):
    result = redsync("run", "job:{id}", *url_args(urls), "--", "true")
    assert result.returncode == 0, result.stderr
