"""What a singleton task does when busy, when it ends, when it runs long, when it loses its
lock and when its worker process dies: one prefork worker (3 children), real Redis."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest
from billiard.exceptions import WorkerLostError
from celery.exceptions import TimeLimitExceeded
from rs_celery_workers import eventually

from redsync_core import LockTaken

RESULT_TIMEOUT = 90.0  # seconds; the machine is shared and slow


@pytest.fixture(scope="module")
def worker(celery_env: Any) -> Any:
    return celery_env.workers("prefork")[0]


def events(celery_env: Any, key: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in celery_env.app.journal.lrange(f"journal:{key}", 0, -1)]


def started(celery_env: Any, key: str, task_id: str) -> dict[str, Any]:
    """Wait until run ``task_id`` recorded its start; return that event."""

    def probe() -> dict[str, Any] | None:
        return next(
            (e for e in events(celery_env, key) if e["id"] == task_id and e["event"] == "start"),
            None,
        )

    return eventually(probe, 60)


def busy(celery_env: Any, task_id: str) -> dict[str, Any]:
    raw = eventually(lambda: celery_env.app.journal.get(f"busy:{task_id}"), 60)
    return dict(json.loads(raw))


def test_retry_mode_runs_the_duplicate_after_the_holder(
    celery_env: Any, worker: Any, key: str
) -> None:
    task = celery_env.app.work_retry
    first = worker.send(task, key, 2.0)
    started(celery_env, key, first.id)
    second = worker.send(task, key, 2.0)
    assert busy(celery_env, second.id)["action"] == "retry"
    assert first.get(timeout=RESULT_TIMEOUT) == key
    assert second.get(timeout=RESULT_TIMEOUT) == key
    runs = {e["id"]: e for e in events(celery_env, key) if e["event"] == "start"}
    ends = {e["id"]: e for e in events(celery_env, key) if e["event"] == "end"}
    assert runs[second.id]["retries"] >= 1
    assert runs[second.id]["t"] >= ends[first.id]["t"]


def test_raise_mode_fails_the_duplicate_with_lock_taken(
    celery_env: Any, worker: Any, key: str
) -> None:
    task = celery_env.app.work_raise
    first = worker.send(task, key, 3.0)
    started(celery_env, key, first.id)
    second = worker.send(task, key, 3.0)
    with pytest.raises(LockTaken) as caught:
        second.get(timeout=RESULT_TIMEOUT)
    assert second.state == "FAILURE"
    assert first.id in str(caught.value)
    assert caught.value.name == task.lock_name_for((key, 3.0), {})
    assert first.get(timeout=RESULT_TIMEOUT) == key


def test_lock_is_released_after_an_exception(celery_env: Any, worker: Any, key: str) -> None:
    task = celery_env.app.work
    result = worker.send(task, key, 0.2, fail=True)
    with pytest.raises(ValueError, match="failing on purpose"):
        result.get(timeout=RESULT_TIMEOUT)
    assert celery_env.holder(task, key, 0.2, fail=True) is None
    again = worker.send(task, key, 0.2, fail=True)  # not skipped: the lock is free
    with pytest.raises(ValueError, match="failing on purpose"):
        again.get(timeout=RESULT_TIMEOUT)


def test_lock_is_released_after_success(celery_env: Any, worker: Any, key: str) -> None:
    task = celery_env.app.work
    assert worker.send(task, key, 0.2).get(timeout=RESULT_TIMEOUT) == key
    assert celery_env.holder(task, key, 0.2) is None


def test_a_run_three_times_longer_than_lock_expiry_keeps_its_lock(
    celery_env: Any, worker: Any, key: str
) -> None:
    task = celery_env.app.work_short  # lock_expiry=1
    first = worker.send(task, key, 3.5)
    start = started(celery_env, key, first.id)
    while time.monotonic() < start["t"] + 2.5:  # well past the first expiry
        time.sleep(0.1)
    assert celery_env.holder(task, key, 3.5) == start["holder"]
    duplicate = worker.send(task, key, 3.5)
    assert busy(celery_env, duplicate.id)["holder"] == first.id
    assert first.get(timeout=RESULT_TIMEOUT) == key
    (end,) = [e for e in events(celery_env, key) if e["event"] == "end"]
    assert end["t"] - start["t"] >= 3.5
    assert end["lock_lost"] is False
    assert celery_env.app.journal.get(f"lost:{first.id}") is None


def test_a_lost_lock_is_reported_to_the_task(celery_env: Any, worker: Any, key: str) -> None:
    task = celery_env.app.work_short  # lock_expiry=1
    first = worker.send(task, key, 3.0)
    started(celery_env, key, first.id)
    assert celery_env.redsync.force_release(task.lock_name_for((key, 3.0), {})) >= 2
    assert eventually(lambda: celery_env.app.journal.get(f"lost:{first.id}"), 30)
    assert first.get(timeout=RESULT_TIMEOUT) == key
    (end,) = [e for e in events(celery_env, key) if e["event"] == "end"]
    assert end["lock_lost"] is True
    assert f"[{first.id}] lost its lock" in worker.log()


def test_a_retry_takes_the_lock_of_its_earlier_attempt(
    celery_env: Any, worker: Any, key: str
) -> None:
    """A retry is published before its attempt releases the lock: the retry must wait for
    that attempt, not be skipped as a duplicate of itself."""
    task = celery_env.app.work_self_retry
    result = worker.send(task, key, 2)
    assert result.get(timeout=60) == 2
    attempts = [e for e in events(celery_env, key) if e["event"] == "attempt"]
    assert [a["retries"] for a in attempts] == [0, 1, 2]
    assert [a["holder"].split(":")[:2] for a in attempts] == [
        [attempts[0]["id"], str(n)] for n in range(3)
    ]


def kill_running_child(celery_env: Any, key: str, task_id: str) -> str:
    start = started(celery_env, key, task_id)
    assert start["pid"] != os.getpid()
    os.kill(start["pid"], signal.SIGKILL)  # the pool child running the task, by its PID
    return str(start["holder"])


def test_killed_child_lock_is_released_by_the_parent(
    celery_env: Any, worker: Any, key: str
) -> None:
    task = celery_env.app.work_crash  # lock_expiry=60
    result = worker.send(task, key, 60.0)
    kill_running_child(celery_env, key, result.id)
    eventually(lambda: celery_env.holder(task, key, 60.0) is None, 20)  # expiry is 60 s
    with pytest.raises(WorkerLostError):
        result.get(timeout=RESULT_TIMEOUT)
    assert f"[{result.id}]: its worker process ended" in worker.log()


def test_killed_child_lock_expires_without_parent_release(
    celery_env: Any, worker: Any, key: str
) -> None:
    task = celery_env.app.work_crash_ttl  # lock_expiry=4, lock_release_on_worker_lost=False
    result = worker.send(task, key, 60.0)
    holder = kill_running_child(celery_env, key, result.id)
    assert celery_env.holder(task, key, 60.0) == holder  # nobody released it
    eventually(lambda: celery_env.holder(task, key, 60.0) is None, 4 + 10)
    with pytest.raises(WorkerLostError):
        result.get(timeout=RESULT_TIMEOUT)
    assert f"[{result.id}]: its worker process ended" not in worker.log()


def test_hard_time_limit_frees_the_lock(celery_env: Any, worker: Any, key: str) -> None:
    """billiard turns the SIGTERM sent at a hard time limit into SystemExit: the body's
    finally releases the lock before the SIGKILL."""
    task = celery_env.app.work_hard_limit  # time_limit=2, lock_expiry=60
    result = worker.send(task, key, 60.0)
    started(celery_env, key, result.id)
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=RESULT_TIMEOUT)
    eventually(lambda: celery_env.holder(task, key, 60.0) is None, 20)


def test_hard_time_limit_on_a_stuck_child_is_released_by_the_parent(
    celery_env: Any, worker: Any, key: str
) -> None:
    """A child that ignores SIGTERM is SIGKILLed; the parent releases its lock once it is gone."""
    task = celery_env.app.work_hard_limit_stubborn  # time_limit=2, lock_expiry=60
    result = worker.send(task, key, 60.0)
    started(celery_env, key, result.id)
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=RESULT_TIMEOUT)
    eventually(lambda: celery_env.holder(task, key, 60.0) is None, 20)
    eventually(lambda: f"[{result.id}]: its worker process ended" in worker.log(), 10)
