"""``lock_scope="queue"``: locked from ``apply_async`` to the end of the last attempt, with real
workers and real Redis; and ``lock_hold_after``, the throttle window, in both scopes."""

from __future__ import annotations

import json
import os
import pickle
import signal
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from billiard.exceptions import WorkerLostError
from rs_celery_workers import eventually

from redsync_celery import DuplicateTask
from redsync_core import LockTaken

RESULT_TIMEOUT = 90.0  # seconds; the machine is shared and slow


@pytest.fixture(scope="module", params=["prefork", "threads", "solo", "gevent", "eventlet"])
def pool(request: pytest.FixtureRequest, celery_env: Any) -> str:
    celery_env.workers(request.param)
    return str(request.param)


@pytest.fixture(scope="module")
def worker(celery_env: Any) -> Any:
    return celery_env.workers("prefork")[0]


def events(celery_env: Any, key: str, kind: str | None = None) -> list[dict[str, Any]]:
    found = [json.loads(raw) for raw in celery_env.app.journal.lrange(f"journal:{key}", 0, -1)]
    return [e for e in found if kind is None or e["event"] == kind]


def duplicates(celery_env: Any, name: str) -> list[dict[str, Any]]:
    journal = celery_env.app.journal
    return [json.loads(raw) for raw in journal.lrange(f"duplicate:{name}", 0, -1)]


def info(celery_env: Any, task: Any, *args: Any, **kwargs: Any) -> Any:
    return celery_env.redsync.inspect(task.lock_name_for(args, kwargs))


def test_a_duplicate_is_not_queued_and_returns_the_holders_result(
    celery_env: Any, pool: str, key: str
) -> None:
    """The lock is held from apply_async (value "<id>:q0:..."), taken over by the run
    ("<id>:0:...", auto-extended) and released at the end; a duplicate sent meanwhile, queued
    or running, returns the first task's AsyncResult and sends nothing."""
    task = celery_env.app.work_queue
    queue = celery_env.workers(pool)[0].queue
    first = task.apply_async((key, 2.0), queue=queue, countdown=1.5)
    queued = info(celery_env, task, key, 2.0)
    assert queued.holder.startswith(f"{first.id}:q0:")
    assert 3600 < queued.remaining <= 3600 + 1.5
    assert task.apply_async((key, 2.0), queue=queue).id == first.id  # while queued
    (start,) = eventually(lambda: events(celery_env, key, "start"), 60)
    assert start["id"] == first.id
    assert start["holder"].startswith(f"{first.id}:0:")
    assert task.delay(key, seconds=2.0).id == first.id  # while running (keyword call)
    running = info(celery_env, task, key, 2.0)
    assert running.holder.startswith(f"{first.id}:0:") or running.holder is None
    assert first.get(timeout=RESULT_TIMEOUT) == key
    assert [e["id"] for e in events(celery_env, key, "start")] == [first.id]
    assert info(celery_env, task, key, 2.0).holder is None
    found = duplicates(celery_env, task.lock_name_for((key, 2.0), {}))
    assert [(d["action"], d["holder"]) for d in found] == [("duplicate", first.id)] * 2


def test_raise_mode_raises_duplicate_task_naming_the_holder(
    celery_env: Any, worker: Any, key: str
) -> None:
    task = celery_env.app.work_queue_raise
    first = task.apply_async((key, 1.0), queue=worker.queue)
    with pytest.raises(DuplicateTask) as caught:
        task.apply_async((key, 1.0), queue=worker.queue)
    error = caught.value
    assert isinstance(error, LockTaken)
    assert error.task_id == first.id
    assert first.id in str(error)
    assert error.retry_after is not None
    assert 0 < error.retry_after <= 3600
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes, as Celery pickles errors
    assert (type(copy), copy.task_id, copy.name, str(copy)) == (
        DuplicateTask,
        first.id,
        error.name,
        str(error),
    )
    assert first.get(timeout=RESULT_TIMEOUT) == key


def test_countdown_and_eta_lengthen_the_queued_lock(celery_env: Any, key: str) -> None:
    """Sent to a queue no worker reads: only the caller's side is looked at."""
    task = celery_env.app.work_queue
    task.apply_async((key, 0.0), queue="nobody", countdown=100)
    assert 3600 + 95 < info(celery_env, task, key, 0.0).remaining <= 3700
    other = f"{key}-eta"
    eta = datetime.now(timezone.utc) + timedelta(seconds=200)
    task.apply_async((other, 0.0), queue="nobody", eta=eta)
    assert 3600 + 190 < info(celery_env, task, other, 0.0).remaining <= 3800
    for k in (key, other):
        celery_env.redsync.force_release(task.lock_name_for((k, 0.0), {}))


def test_retries_keep_the_lock_until_the_last_attempt(celery_env: Any, pool: str, key: str) -> None:
    task = celery_env.app.work_queue_end
    queue = celery_env.workers(pool)[0].queue
    result = task.apply_async((key, "retry"), queue=queue)
    eventually(lambda: len(events(celery_env, key, "attempt")) >= 1, 60)
    # Until the last attempt ends, the lock stays with this task, also during the countdowns
    # between attempts (1 s each): a duplicate sent then is not queued.
    assert task.apply_async((key, "retry"), queue=queue).id == result.id
    while not result.ready():
        attempts = len(events(celery_env, key, "attempt"))
        holder = info(celery_env, task, key, "retry").holder
        if holder is None:
            assert attempts == 3, "released before the last attempt"
            break
        assert holder.startswith(f"{result.id}:"), holder
        time.sleep(0.05)
    assert result.get(timeout=RESULT_TIMEOUT) == key
    attempts = events(celery_env, key, "attempt")
    assert [a["retries"] for a in attempts] == [0, 1, 2]
    assert [a["holder"].split(":")[:2] for a in attempts] == [[result.id, str(n)] for n in range(3)]
    assert info(celery_env, task, key, "retry").holder is None


@pytest.mark.parametrize("how", ["fail", "ignore", "reject", "exhaust"])
def test_the_lock_is_released_when_the_task_is_done_for_good(
    celery_env: Any, worker: Any, key: str, how: str
) -> None:
    task = celery_env.app.work_queue_end
    result = task.apply_async((key, how), queue=worker.queue)
    if how in ("fail", "exhaust"):
        with pytest.raises(ValueError, match=r"on purpose|exhausted"):
            result.get(timeout=RESULT_TIMEOUT)
    else:
        eventually(lambda: events(celery_env, key, "attempt"), 60)
    eventually(lambda: info(celery_env, task, key, how).holder is None, 30)
    if how == "exhaust":
        assert [a["retries"] for a in events(celery_env, key, "attempt")] == [0, 1, 2]
    again = task.apply_async((key, how), queue=worker.queue)
    assert again.id != result.id  # queued anew, not a duplicate


def test_a_run_whose_queued_lock_is_gone_locks_as_in_run_scope(
    celery_env: Any, worker: Any, key: str
) -> None:
    task = celery_env.app.work_queue
    result = task.apply_async((key, 0.5), queue=worker.queue, countdown=1.5)
    assert celery_env.redsync.force_release(task.lock_name_for((key, 0.5), {})) >= 2
    assert result.get(timeout=RESULT_TIMEOUT) == key
    (start,) = events(celery_env, key, "start")
    assert start["holder"].startswith(f"{result.id}:0:")


def test_a_second_delivery_of_a_running_message_is_busy(
    celery_env: Any, worker: Any, key: str
) -> None:
    """The same message twice (as Redis redelivers after visibility_timeout): the copy finds
    the running attempt's value, not the queued one, and is skipped."""
    task = celery_env.app.work_queue
    first = task.apply_async((key, 3.0), queue=worker.queue)
    eventually(lambda: events(celery_env, key, "start"), 60)
    celery_env.app.app.send_task(task.name, (key, 3.0), task_id=first.id, queue=worker.queue)
    busy = json.loads(eventually(lambda: celery_env.app.journal.get(f"busy:{first.id}"), 60))
    assert busy["holder"] == first.id
    assert first.get(timeout=RESULT_TIMEOUT) == key
    assert len(events(celery_env, key, "start")) == 1


def test_a_task_revoked_before_it_ran_releases_its_queued_lock(
    celery_env: Any, worker: Any, key: str
) -> None:
    task = celery_env.app.work_queue
    result = task.apply_async((key, 0.1), queue=worker.queue, countdown=2)
    result.revoke()
    eventually(lambda: info(celery_env, task, key, 0.1).holder is None, 30)
    assert events(celery_env, key) == []
    assert "Released queued lock" in worker.log()


# --- lock_hold_after: the throttle ----------------------------------------------------------


def test_run_scope_throttle_keeps_the_lock_for_the_window(
    celery_env: Any, worker: Any, key: str
) -> None:
    task = celery_env.app.work_throttled  # lock_hold_after=3
    first = worker.send(task, key)
    assert first.get(timeout=RESULT_TIMEOUT) == key
    kept = info(celery_env, task, key)
    assert kept.holder.startswith(f"{first.id}:0:")  # not released, not extended
    assert 0 < kept.remaining <= 3
    second = worker.send(task, key)
    assert json.loads(eventually(lambda: celery_env.app.journal.get(f"busy:{second.id}"), 60))
    eventually(lambda: info(celery_env, task, key).holder is None, 3 + 5)
    assert worker.send(task, key).get(timeout=RESULT_TIMEOUT) == key
    assert len(events(celery_env, key, "start")) == 2


def test_queue_scope_throttle_returns_the_finished_task_within_the_window(
    celery_env: Any, worker: Any, key: str
) -> None:
    task = celery_env.app.work_queue_throttled  # lock_hold_after=3
    first = task.apply_async((key,), queue=worker.queue)
    assert first.get(timeout=RESULT_TIMEOUT) == key
    again = task.apply_async((key,), queue=worker.queue)
    assert again.id == first.id
    assert again.get(timeout=5) == key  # the finished run's result, nothing queued
    eventually(lambda: info(celery_env, task, key).holder is None, 3 + 5)
    assert task.apply_async((key,), queue=worker.queue).id != first.id


def test_a_failed_run_is_not_throttled(celery_env: Any, worker: Any, key: str) -> None:
    task = celery_env.app.work_throttled
    with pytest.raises(ValueError, match="on purpose"):
        worker.send(task, key, fail=True).get(timeout=RESULT_TIMEOUT)
    assert info(celery_env, task, key, fail=True).holder is None


def test_a_killed_child_lock_is_released_by_the_parent_in_queue_scope(
    celery_env: Any, worker: Any, key: str
) -> None:
    """The run's value after the take-over is "<id>:0:...", so the prefork parent's release
    of a dead child's lock works as in run scope."""
    task = celery_env.app.work_queue_crash  # lock_expiry=60
    result = task.apply_async((key, 60.0), queue=worker.queue)
    (start,) = eventually(lambda: events(celery_env, key, "start"), 60)
    os.kill(start["pid"], signal.SIGKILL)
    eventually(lambda: info(celery_env, task, key, 60.0).holder is None, 20)  # expiry is 60 s
    with pytest.raises(WorkerLostError):
        result.get(timeout=RESULT_TIMEOUT)
    assert f"[{result.id}]: its worker process ended" in worker.log()


def test_a_queued_lock_is_listed_by_its_task_id(celery_env: Any, key: str) -> None:
    """Sent to a queue no worker reads: the lock a queued task holds names that task."""
    task = celery_env.app.work_queue
    result = task.apply_async((key, 0.0), queue="nobody")
    name = task.lock_name_for((key, 0.0), {})
    (listed,) = celery_env.redsync.list_locks(name)
    assert (listed.verdict, listed.holder_task_id) == ("held", result.id)
    assert listed.holder_label == f"task {result.id}"
    celery_env.redsync.force_release(name)
