"""`redsync run NAME --limit N -- CMD`: up to N commands at once (a distributed sem).

Real `redsync run` processes against real redis-server nodes: two run together under a limit
of 2, a third is busy (or waits for a permit), the permits show in `redsync ls` as NAME:0 and
NAME:1, they are kept alive past their expiry, and a lost permit is handled like a lost lock.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_helpers import assert_gone, clean_env, one_line, redsync, start, url_args, wait_for

from redsync_core import Redsync

NAME = "reports"


def permits(rs: Redsync, limit: int = 2) -> list[str | None]:
    """The holder (a quorum's value) of each permit key, None where free."""
    return [rs.inspect(f"{NAME}:{slot}").holder for slot in range(limit)]


class Runs:
    """`redsync run --limit` processes, each running a command in a directory of its own."""

    def __init__(self, urls: list[str], tmp_path: Path, child_script: Callable[..., list[str]]):
        self.urls = urls
        self.tmp_path = tmp_path
        self.child_script = child_script
        self.started: list[tuple[subprocess.Popen[str], Path]] = []

    def start(self, *options: str) -> tuple[subprocess.Popen[str], Path]:
        """Start `redsync run NAME OPTIONS -- CMD`; return the process and CMD's directory."""
        where = self.tmp_path / f"run{len(self.started)}"
        where.mkdir()
        wrapper = start(
            "run", NAME, *options, *url_args(self.urls), "--",
            *self.child_script(where=where), stderr=where / "stderr",
        )  # fmt: skip
        self.started.append((wrapper, where))
        return wrapper, where

    def stop(self) -> None:
        for wrapper, where in self.started:
            (where / "finish").touch()
            if wrapper.poll() is None:
                try:
                    wrapper.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    wrapper.kill()
                    wrapper.wait(timeout=60)


@pytest.fixture
def runs(urls, tmp_path, child_script) -> Iterator[Runs]:
    started = Runs(urls, tmp_path, child_script)
    yield started
    started.stop()


def test_two_commands_run_at_once_and_a_third_exits_busy(urls, rs, runs, tmp_path):
    first, first_dir = runs.start("--limit", "2")
    second, second_dir = runs.start("--limit", "2")
    wait_for((first_dir / "started").exists, what="the first command to start")
    wait_for((second_dir / "started").exists, what="the second command to start")
    held = permits(rs)
    assert None not in held, held
    assert held[0] != held[1]  # one permit each
    marker = tmp_path / "ran"
    third = redsync(
        "run", NAME, "--limit", "2", *url_args(urls), "--",
        sys.executable, "-c", f"open({str(marker)!r}, 'w')",
    )  # fmt: skip
    assert third.returncode == 75, third.stderr
    assert not marker.exists()
    line = one_line(third.stderr)
    assert f"lock {NAME!r} is busy: all 2 permits are held" in line
    assert "free in about" in line
    assert permits(rs) == held  # the holders' permits are untouched
    for wrapper, where in ((first, first_dir), (second, second_dir)):
        (where / "finish").touch()
        assert wrapper.wait(timeout=60) == 0
    assert permits(rs) == [None, None]
    again = redsync("run", NAME, "--limit", "2", *url_args(urls), "--", "true")
    assert again.returncode == 0, again.stderr


def test_the_limit_is_kept_by_permits_not_by_the_plain_lock(urls, rs, runs):
    _, where = runs.start("--limit", "1")
    wait_for((where / "started").exists, what="the command to start")
    assert not rs.inspect(NAME).held  # the permit is key NAME:0, not NAME
    assert rs.inspect(f"{NAME}:0").held
    busy = redsync(
        "run", NAME, "--limit", "1", "--busy-exit-code", "3", *url_args(urls), "--", "true"
    )
    assert busy.returncode == 3
    assert "all 1 permits are held" in one_line(busy.stderr)


def test_with_wait_a_third_command_runs_once_a_permit_is_given_back(urls, rs, runs):
    first, first_dir = runs.start("--limit", "2")
    _, second_dir = runs.start("--limit", "2")
    wait_for((first_dir / "started").exists, what="the first command to start")
    wait_for((second_dir / "started").exists, what="the second command to start")
    third, third_dir = runs.start("--limit", "2", "--wait", "60")
    assert third.poll() is None
    assert not (third_dir / "started").exists()
    (first_dir / "finish").touch()
    assert first.wait(timeout=60) == 0
    wait_for((third_dir / "started").exists, what="the waiting command to get the permit")
    (third_dir / "finish").touch()
    assert third.wait(timeout=60) == 0


def test_ls_shows_each_permit_as_a_lock(urls, runs):
    for _ in range(2):
        _, where = runs.start("--limit", "3")
        wait_for((where / "started").exists, what="a command to start")
    result = redsync("ls", f"{NAME}:*", "--json", *url_args(urls))
    assert result.returncode == 0, result.stderr
    locks = json.loads(result.stdout)["locks"]
    assert len(locks) == 2  # the free third permit has no key
    assert {lock["name"] for lock in locks} <= {f"{NAME}:{slot}" for slot in range(3)}
    assert all(lock["verdict"] == "held" and lock["held_on"] == 3 for lock in locks)
    assert locks[0]["holder"] != locks[1]["holder"]
    table = redsync("ls", *url_args(urls))
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()[1:3]]
    assert [row[0] for row in rows] == [lock["name"] for lock in locks]
    assert all(row[1] == "held" for row in rows)
    assert "2 lock(s) matching '*' under prefix '', 2 held" in table.stdout


def test_permits_are_extended_while_a_longer_command_runs(rs, runs):
    wrapper, where = runs.start("--limit", "2", "--expiry", "1")
    wait_for((where / "started").exists, what="the command to start")
    [slot] = [slot for slot, holder in enumerate(permits(rs)) if holder is not None]
    holder = permits(rs)[slot]
    time.sleep(3.5)  # 3.5 times the expiry: only extensions keep it
    info = rs.inspect(f"{NAME}:{slot}")
    assert info.holder == holder
    assert info.remaining is not None
    assert info.remaining <= 1.0
    (where / "finish").touch()
    assert wrapper.wait(timeout=60) == 0
    assert "lost" not in (where / "stderr").read_text()
    assert permits(rs) == [None, None]


def test_a_lost_permit_is_reported_and_kill_on_lost_terminates_the_command(rs, runs):
    wrapper, where = runs.start("--limit", "2", "--expiry", "1", "--kill-on-lost")
    wait_for((where / "started").exists, what="the command to start")
    child_pid = int((where / "started").read_text())
    for slot in range(2):  # an operator deletes the permits: the next extension fails
        rs.force_release(f"{NAME}:{slot}")
    assert wrapper.wait(timeout=60) == 128 + signal.SIGTERM
    text = (where / "stderr").read_text()
    assert f"ERROR: lost a permit of {NAME!r} (--limit 2)" in text
    assert "more than 2 commands may run concurrently now" in text
    assert "terminating the command" in text
    assert_gone(child_pid)


def test_a_lost_permit_without_kill_on_lost_lets_the_command_finish(rs, runs):
    wrapper, where = runs.start("--limit", "2", "--expiry", "1")
    wait_for((where / "started").exists, what="the command to start")
    for slot in range(2):
        rs.force_release(f"{NAME}:{slot}")
    errors = where / "stderr"
    wait_for(lambda: "lost a permit" in errors.read_text(), what="the ERROR line")
    assert wrapper.poll() is None  # still running, unprotected, as the line says
    assert "keeps running" in errors.read_text()
    (where / "finish").touch()
    assert wrapper.wait(timeout=60) == 0


@pytest.mark.parametrize("value", ["0", "-1", "1025", "two", "1.5", ""])
def test_a_bad_limit_is_a_usage_error_naming_it(value):
    result = redsync(
        "run", "job", "--limit", value, "--url", "redis://127.0.0.1:1/0", "--", "true",
        env=clean_env(REDSYNC_URLS=""),
    )  # fmt: skip
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "argument --limit" in line
    assert f"limit={value!r}" in line or f"limit={value}" in line
    assert "expected an integer in [1, 1024]" in line
    assert "Traceback" not in result.stderr


def test_help_documents_the_limit():
    result = redsync("run", "--help")
    assert result.returncode == 0
    assert "--limit N" in result.stdout
    assert "NAME:0" in result.stdout
