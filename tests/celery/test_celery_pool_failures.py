"""How each pool ends a run that fails, is cut short or loses its lock, and what becomes of the
lock: prefork (3 children), threads, solo (two processes), gevent and eventlet (real workers,
real Redis).

prefork has child processes, so its parent can release the lock of a child that died (see
test_celery_behaviour). The other pools run the task in the worker process itself: their own
path is the task's ``finally`` (exceptions, a hard time limit raised into a gevent greenlet, a
green thread killed by ``revoke(terminate=True)``), and the lock's expiry when the whole worker
process dies.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from rs_celery_workers import Worker, eventually

RESULT_TIMEOUT = 90.0  # seconds; the machine is shared and slow
HERE = Path(__file__).parent

#: Pools that enforce a hard time limit, and pools that honour revoke(terminate=True).
HARD_LIMITS = {"prefork", "gevent"}
TERMINATING = {"prefork", "gevent", "eventlet"}


@pytest.fixture(scope="module", params=["prefork", "threads", "solo", "gevent", "eventlet"])
def pool(request: pytest.FixtureRequest, celery_env: Any) -> str:
    celery_env.workers(request.param)
    return str(request.param)


def send(celery_env: Any, pool: str, task: Any, *args: Any, **kwargs: Any) -> Any:
    return celery_env.workers(pool)[0].send(task, *args, **kwargs)


def events(celery_env: Any, key: str, kind: str) -> list[dict[str, Any]]:
    found = [json.loads(raw) for raw in celery_env.app.journal.lrange(f"journal:{key}", 0, -1)]
    return [e for e in found if e["event"] == kind]


def test_an_exception_releases_the_lock(celery_env: Any, pool: str, key: str) -> None:
    task = celery_env.app.work
    with pytest.raises(ValueError, match="failing on purpose"):
        send(celery_env, pool, task, key, 0.2, fail=True).get(timeout=RESULT_TIMEOUT)
    assert celery_env.holder(task, key, 0.2, fail=True) is None


def test_a_lost_lock_is_reported_to_the_running_task(celery_env: Any, pool: str, key: str) -> None:
    task = celery_env.app.work_short  # lock_expiry=1
    result = send(celery_env, pool, task, key, 3.0)
    eventually(lambda: events(celery_env, key, "start"), 60)
    assert celery_env.redsync.force_release(task.lock_name_for((key, 3.0), {})) >= 2
    assert eventually(lambda: celery_env.app.journal.get(f"lost:{result.id}"), 30)
    assert result.get(timeout=RESULT_TIMEOUT) == key
    (end,) = events(celery_env, key, "end")
    assert end["lock_lost"] is True


def test_a_hard_time_limit_frees_the_lock(celery_env: Any, pool: str, key: str) -> None:
    """prefork and gevent cut the run short (TimeLimitExceeded) and the lock is freed at
    once; threads, solo and eventlet do not enforce it: the run ends normally, and releases."""
    task = celery_env.app.work_hard_limit  # time_limit=2, lock_expiry=60
    result = send(celery_env, pool, task, key, 4.0)
    if pool in HARD_LIMITS:
        with pytest.raises(TimeLimitExceeded):
            result.get(timeout=RESULT_TIMEOUT)
        assert events(celery_env, key, "end") == []
    else:
        assert result.get(timeout=RESULT_TIMEOUT) == key
    eventually(lambda: celery_env.holder(task, key, 4.0) is None, 20)  # expiry is 60 s


def test_a_soft_time_limit_ends_the_body_and_frees_the_lock(
    celery_env: Any, pool: str, key: str
) -> None:
    """Only prefork raises SoftTimeLimitExceeded in the body; the other pools ignore it."""
    task = celery_env.app.work_soft_limit  # soft_time_limit=1, lock_expiry=60
    result = send(celery_env, pool, task, key, 2.5)
    if pool == "prefork":
        with pytest.raises(SoftTimeLimitExceeded):
            result.get(timeout=RESULT_TIMEOUT)
    else:
        assert result.get(timeout=RESULT_TIMEOUT) == key
    assert celery_env.holder(task, key, 2.5) is None


def test_revoke_terminate_frees_the_lock(celery_env: Any, pool: str, key: str) -> None:
    """prefork (SIGTERM -> SystemExit in the child), gevent and eventlet (the green thread is
    killed) end the run inside its ``finally``; threads and solo cannot terminate a running
    task, so it runs to its end and releases then."""
    task = celery_env.app.work_crash  # lock_expiry=60
    result = send(celery_env, pool, task, key, 4.0)
    eventually(lambda: events(celery_env, key, "start"), 60)
    result.revoke(terminate=True, signal="SIGTERM")
    eventually(lambda: celery_env.holder(task, key, 4.0) is None, 30)  # expiry is 60 s
    if pool in TERMINATING:
        eventually(lambda: result.state == "REVOKED", 30)
        assert events(celery_env, key, "end") == []
    else:
        # The body runs to its end; whether the result then reads SUCCESS or REVOKED depends
        # on when the worker saw the revoke, so the test looks at the body itself.
        eventually(lambda: events(celery_env, key, "end"), 30)


@pytest.fixture
def lone_worker(celery_env: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A worker of its own (the test kills it), with the pool given by the test's param."""
    pool = request.param
    queue = f"lone-{pool}-{os.getpid()}"
    worker = Worker(
        "rs_celery_testapp",
        pool,
        2 if pool != "solo" else 1,
        queue,
        env={**celery_env.env, "RSC_QUEUE": queue},
        pythonpath=[str(HERE)],
    )
    try:
        yield worker.wait_ready()
    finally:
        worker.stop()


@pytest.mark.parametrize("lone_worker", ["threads", "solo", "gevent", "eventlet"], indirect=True)
def test_a_killed_worker_process_leaves_the_lock_to_expire(
    celery_env: Any, lone_worker: Any, key: str
) -> None:
    """No parent process survives to release it: the lock frees itself lock_expiry seconds
    after the last extension, not later."""
    task = celery_env.app.work_crash_ttl  # lock_expiry=4
    result = lone_worker.send(task, key, 60.0)
    (start,) = eventually(lambda: events(celery_env, key, "start"), 60)
    assert start["pid"] == lone_worker.pid  # the task ran in the worker process itself
    os.kill(lone_worker.pid, signal.SIGKILL)
    lone_worker.proc.wait(10)
    assert celery_env.holder(task, key, 60.0) == start["holder"]
    eventually(lambda: celery_env.holder(task, key, 60.0) is None, 4 + 6)
    assert result.state in ("STARTED", "PENDING")  # nobody is left to record an outcome
