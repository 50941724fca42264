"""``LockedCommand`` and the ``redsync`` management command, against real nodes."""

from __future__ import annotations

import io
import itertools
import threading
import time
from typing import ClassVar

import dl_testsite as site
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError


@pytest.fixture(autouse=True)
def _fresh_site():
    site.reset()
    WATCHED.clear()
    yield
    site.RELEASE.set()


WATCHED: list[float | None] = []  # filled by the command of the auto-extension test


def run(command, *args, **options):
    out, err = io.StringIO(), io.StringIO()
    call_command(command, *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def test_command_run_twice_at_once_one_runs_one_reports_busy(rs):
    first: list[tuple[str, str]] = []
    runner = threading.Thread(target=lambda: first.append(run(site.BlockingCommand())))
    runner.start()
    try:
        assert site.ENTERED.wait(60)
        assert rs.inspect("manage:blocking").held
        out, err = run(site.BlockingCommand())  # returns normally: exit status 0
    finally:
        site.RELEASE.set()
        runner.join(60)
    assert out == ""
    assert err.count("\n") == 1
    assert "'manage:blocking' is held by another run" in err
    assert first == [("finished\n", "")]
    assert site.CALLS["command"] == 1
    assert not rs.inspect("manage:blocking").held


def test_default_lock_name_is_manage_and_the_command_module(hold):
    hold("manage:dl_testsite")  # call_command names an instance's command after its module
    _, err = run(site.QuickCommand())
    assert "lock 'manage:dl_testsite' is held" in err
    assert site.CALLS["quick"] == 0


def test_no_lock_runs_even_when_held(hold):
    hold("manage:dl_testsite")
    out, _ = run(site.QuickCommand(), "--no-lock")
    assert out == "quick done\n"


def test_lock_wait_waits_for_the_holder(hold):
    hold("manage:dl_testsite", expiry=0.5)
    out, err = run(site.QuickCommand(), "--lock-wait", "20")
    assert (out, err) == ("quick done\n", "")


def test_the_lock_is_auto_extended_with_lock_options(rs):
    """handle() watches its own lock: held with lock_expiry's TTL, and the TTL goes back up."""

    class Watching(site.QuickCommand):
        lock_name = "manage:watching"
        lock_expiry = 1.0
        lock_options: ClassVar[dict[str, object]] = {"auto_extend": False}  # forced on anyway

        def handle(self, *args, **options):
            started = time.monotonic()
            ttls = []
            while time.monotonic() - started < 2.5:  # two and a half expiries
                info = rs.inspect("manage:watching")
                ttls.append(info.remaining if info.held else None)
                time.sleep(0.05)
            WATCHED.extend(ttls)

    _, err = run(Watching())
    assert err == ""
    assert WATCHED, "handle() never ran"
    assert None not in WATCHED, "the lock was not held all through handle()"
    assert max(WATCHED) <= 1.0  # lock_expiry's TTL, not the 30 s default
    rises = sum(1 for a, b in itertools.pairwise(WATCHED) if b > a + 0.05)
    assert rises >= 1, f"the TTL never went back up (no extension seen): {WATCHED}"
    assert not rs.inspect("manage:watching").held


@pytest.mark.slow
def test_the_lock_outlives_its_expiry_while_handle_runs(rs):
    class Slow(site.QuickCommand):
        lock_name = "manage:slow"
        lock_expiry = 2.0
        lock_options: ClassVar[dict[str, object]] = {"auto_extend": False}  # forced on anyway

        def handle(self, *args, **options):
            time.sleep(6.0)  # three expiries: only auto-extension keeps the lock
            self.stdout.write(str(rs.inspect("manage:slow").held))

    out, _ = run(Slow())
    assert out == "True\n"


def test_a_command_instance_can_run_twice(rs):
    command = site.QuickCommand()
    run(command)
    run(command)
    assert site.CALLS["quick"] == 2


def test_redsync_status_release_and_ping(hold, rs):
    out, _ = run("redsync", "status", "stuck")
    assert out.startswith("stuck (key 'test:stuck'): free")
    hold("stuck", expiry=20.0)
    out, _ = run("redsync", "status", "stuck")
    assert "stuck (key 'test:stuck'): held, free in about" in out
    assert out.count("held by the quorum holder") == 3

    with pytest.raises(CommandError, match="without --force"):
        run("redsync", "release", "stuck")
    assert rs.inspect("stuck").held
    out, _ = run("redsync", "release", "stuck", "--force")
    assert out == "Released 'stuck': deleted on 3 of 3 nodes.\n"
    assert not rs.inspect("stuck").held

    out, _ = run("redsync", "ping")
    assert out.count(": ok, ") == 3
    assert out.endswith("quorum ok: 3 of 3 nodes answered, 2 needed\n")


def test_redsync_ping_fails_without_a_quorum(redis_nodes, rs):
    for server in redis_nodes[:2]:
        server.kill()
    with pytest.raises(CommandError, match="quorum NOT REACHABLE: 1 of 3"):
        run("redsync", "ping")
