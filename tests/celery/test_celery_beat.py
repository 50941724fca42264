"""Beat on two hosts: two real ``celery beat`` processes with ``LeaderScheduler`` (or
``LeaderDatabaseScheduler`` on one SQLite database) share one leader lock (expiry 3 s); exactly
one sends, a standby takes over when the leader is killed, and no tick is ever sent twice."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rs_celery_beat import Beat
from rs_celery_workers import PYTHONPATH, eventually

from redsync_core import LockTaken

HERE = Path(__file__).parent
EXPIRY = 3.0  # seconds: the leader lock's expiry in these tests
SLACK = 2.0  # seconds of scheduling delay allowed on a loaded 2-core machine
SCHEDULER = "redsync_celery.beat:LeaderScheduler"
DATABASE_SCHEDULER = "redsync_celery.beat:LeaderDatabaseScheduler"


@pytest.fixture
def lock_name() -> str:
    return f"beat-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def start_beat(celery_env: Any, lock_name: str, tmp_path: Path) -> Iterator[Any]:
    started: list[Beat] = []
    env = {**celery_env.env, "RSC_BEAT_LOCK": lock_name, "RSC_BEAT_EXPIRY": str(EXPIRY)}

    def start(scheduler: str = SCHEDULER, period: int = 1) -> Beat:
        env["RSC_BEAT_PERIOD"] = str(period)
        if scheduler == DATABASE_SCHEDULER and "RSC_BEAT_DJANGO_DB" not in env:
            env["RSC_BEAT_DJANGO_DB"] = str(tmp_path / "beat.sqlite3")
            migrate = "import rs_celery_beatapp; from django.core.management import call_command; "
            subprocess.run(
                [sys.executable, "-c", migrate + "call_command('migrate', verbosity=0)"],
                env={**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(HERE), PYTHONPATH])},
                check=True,
                timeout=120,
            )
        beat = Beat("rs_celery_beatapp", scheduler, env=env, pythonpath=[str(HERE)])
        started.append(beat)
        return beat

    try:
        yield start
    finally:
        for beat in started:
            beat.cleanup()


def sends(celery_env: Any, lock_name: str) -> list[dict[str, Any]]:
    journal = celery_env.app.journal
    return [json.loads(raw) for raw in journal.lrange(f"beat:{lock_name}", 0, -1)]


@pytest.mark.parametrize(
    "scheduler", [SCHEDULER, DATABASE_SCHEDULER], ids=["persistent", "django-celery-beat"]
)
def test_one_beat_sends_and_a_standby_takes_over_within_the_expiry(
    celery_env: Any, start_beat: Any, lock_name: str, scheduler: str
) -> None:
    leader = start_beat(scheduler)
    leader.wait_for("beat: leading")
    standby = start_beat(scheduler)
    standby.wait_for("beat: standing by")
    eventually(
        lambda: len([s for s in sends(celery_env, lock_name) if s["pid"] == leader.pid]) >= 3, 30
    )
    assert not [s for s in sends(celery_env, lock_name) if s["pid"] == standby.pid]

    leader.kill()
    killed_at = time.monotonic()
    standby.wait_for("beat: leading", timeout=EXPIRY + 30)
    eventually(lambda: [s for s in sends(celery_env, lock_name) if s["pid"] == standby.pid], 30)

    found = sends(celery_env, lock_name)
    by_leader = [s for s in found if s["pid"] == leader.pid]
    by_standby = [s for s in found if s["pid"] == standby.pid]
    assert all(s["t"] < killed_at for s in by_leader)
    assert all(s["t"] > killed_at for s in by_standby)
    took_over = by_standby[0]["t"] - killed_at
    assert took_over <= EXPIRY + SLACK, took_over
    ticks = Counter(s["tick"] for s in found)
    assert [tick for tick, count in ticks.items() if count > 1] == []
    assert max(s["tick"] for s in by_leader) < min(s["tick"] for s in by_standby)
    times = sorted(s["t"] for s in found)
    assert min(b - a for a, b in itertools.pairwise(times)) > 0.5  # one send per tick, never two


def test_a_new_leader_does_not_send_again_what_the_old_one_sent(
    celery_env: Any, start_beat: Any, lock_name: str
) -> None:
    """Ticks every 6 s; the leader is killed just after sending one, and the standby leads
    within the expiry (3 s), inside the same 6 s slot. The standby passed that tick on its own
    schedule while standing by, so it sends the next one, not that one again."""
    leader = start_beat(period=6)
    leader.wait_for("beat: leading")
    standby = start_beat(period=6)
    standby.wait_for("beat: standing by")
    sent_before = len(sends(celery_env, lock_name))
    eventually(lambda: len(sends(celery_env, lock_name)) > sent_before, 30)
    leader.kill()
    killed_at = time.monotonic()
    standby.wait_for("beat: leading", timeout=EXPIRY + 30)
    eventually(lambda: [s for s in sends(celery_env, lock_name) if s["pid"] == standby.pid], 30)
    found = sends(celery_env, lock_name)
    by_leader = [s["tick"] for s in found if s["pid"] == leader.pid]
    by_standby = [s for s in found if s["pid"] == standby.pid]
    assert by_standby[0]["t"] > killed_at
    assert by_standby[0]["tick"] == by_leader[-1] + 1, (by_leader, by_standby)
    assert [t for t, n in Counter(s["tick"] for s in found).items() if n > 1] == []


def test_a_new_database_leader_reads_what_the_old_one_sent(
    celery_env: Any, start_beat: Any, lock_name: str
) -> None:
    """django-celery-beat, a task every 6 s: the leader writes each run time right after the
    send, and the standby, taking over within the expiry (3 s), reads it again. So its first
    send comes a whole interval after the leader's last one, not at once."""
    leader = start_beat(DATABASE_SCHEDULER, period=6)
    leader.wait_for("beat: leading")
    standby = start_beat(DATABASE_SCHEDULER, period=6)
    standby.wait_for("beat: standing by")
    sent_before = len(sends(celery_env, lock_name))
    eventually(lambda: len(sends(celery_env, lock_name)) > sent_before, 30)
    # The worker can run the task before the leader has written its run time (a leader killed
    # in between sends that tick again: docs/celery.md says so). Kill it after the write.
    time.sleep(1.0)
    leader.kill()
    standby.wait_for("beat: leading", timeout=EXPIRY + 30)
    eventually(lambda: [s for s in sends(celery_env, lock_name) if s["pid"] == standby.pid], 30)
    found = sends(celery_env, lock_name)
    last_by_leader = [s["t"] for s in found if s["pid"] == leader.pid][-1]
    first_by_standby = next(s["t"] for s in found if s["pid"] == standby.pid)
    assert first_by_standby - last_by_leader > 6 - 0.5, (last_by_leader, first_by_standby)


def test_a_leader_that_loses_its_lock_stops_sending(
    celery_env: Any, start_beat: Any, lock_name: str
) -> None:
    """The lock is taken away from a running leader (deleted, then taken by someone else):
    auto-extension reports the loss, and the leader sends nothing after that."""
    leader = start_beat()
    leader.wait_for("beat: leading")
    eventually(lambda: len(sends(celery_env, lock_name)) >= 2, 30)
    thief = celery_env.redsync.new_mutex(lock_name, expiry=60.0)
    celery_env.redsync.force_release(lock_name)
    thief.lock()
    try:
        leader.wait_for("beat: lost the leader lock", timeout=EXPIRY + 30)
        leader.wait_for("beat: standing by", timeout=30)
        log = leader.log()
        after_loss = log[log.index("Lost lock") :]
        assert "Sending due task" not in after_loss
        count = len(sends(celery_env, lock_name))
        time.sleep(2.5)  # due ticks pass: a standby sends none
        assert len(sends(celery_env, lock_name)) == count
        with pytest.raises(LockTaken):
            celery_env.redsync.new_mutex(lock_name).lock()
    finally:
        thief.unlock()
    leader.wait_for("beat: leading", timeout=EXPIRY + 30)  # and it wins the lock again


def test_a_stopped_leader_releases_its_lock(
    celery_env: Any, start_beat: Any, lock_name: str
) -> None:
    """A leader shut down cleanly (SIGTERM) releases its lock instead of leaving it to expire,
    and the standby leads next."""
    leader = start_beat()
    leader.wait_for("beat: leading")
    standby = start_beat()
    standby.wait_for("beat: standing by")
    leader.stop()
    assert "released the leader lock" in leader.log()
    holder = celery_env.redsync.inspect(lock_name).holder
    assert holder is None or holder.startswith(f"beat:{socket.gethostname()}:{standby.pid}:")
    standby.wait_for("beat: leading", timeout=EXPIRY + 30)
    assert celery_env.redsync.inspect(lock_name).holder.startswith(
        f"beat:{socket.gethostname()}:{standby.pid}:"
    )
