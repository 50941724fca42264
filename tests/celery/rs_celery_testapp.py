"""The Celery app the worker processes of tests/celery run (``celery -A rs_celery_testapp``).

Configured from the environment by the session fixture: ``RSC_REDIS`` is the dedicated
broker server (db 0 broker, db 1 results, db 2 journal), ``RSC_NODES`` the lock nodes.
Each task writes ``start``/``end`` events (monotonic clock, shared by the processes of one
machine) to the journal, so the tests can check that runs never overlap.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import redis
from celery import Celery
from celery.exceptions import Ignore, Reject, Retry

from redsync_celery import SingletonTask
from redsync_celery.signals import lock_busy, lock_lost

REDIS = os.environ["RSC_REDIS"]
app = Celery("rs_celery_testapp", broker=f"{REDIS}/0", backend=f"{REDIS}/1")
app.conf.update(
    redsync_urls=os.environ["RSC_NODES"].split(","),
    redsync_key_prefix="rsc:",
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    task_default_queue=os.environ.get("RSC_QUEUE", "celery"),
)
journal = redis.Redis.from_url(f"{REDIS}/2")


def note(key: str, **event: Any) -> None:
    journal.rpush(f"journal:{key}", json.dumps(event))


def body(task: Any, key: str, seconds: float, fail: bool) -> str:
    request = task.request
    note(
        key,
        event="start",
        id=request.id,
        t=time.monotonic(),
        pid=os.getpid(),
        retries=request.retries,
        holder=request.lock.value,
    )
    time.sleep(seconds)
    note(key, event="end", id=request.id, t=time.monotonic(), lock_lost=request.lock_lost)
    if fail:
        raise ValueError(f"failing on purpose: {key}")
    return key


@app.task(base=SingletonTask, bind=True)
def work(self: Any, key: str, seconds: float = 1.0, fail: bool = False) -> str:
    return body(self, key, seconds, fail)


@app.task(base=SingletonTask, bind=True, lock_wait=60)
def work_wait(self: Any, key: str, seconds: float = 1.0, fail: bool = False) -> str:
    return body(self, key, seconds, fail)


@app.task(base=SingletonTask, bind=True, lock_on_busy="retry", lock_expiry=3, max_retries=30)
def work_retry(self: Any, key: str, seconds: float = 1.0, fail: bool = False) -> str:
    return body(self, key, seconds, fail)


@app.task(base=SingletonTask, bind=True, lock_on_busy="raise")
def work_raise(self: Any, key: str, seconds: float = 1.0, fail: bool = False) -> str:
    return body(self, key, seconds, fail)


@app.task(base=SingletonTask, bind=True, lock_expiry=1)
def work_short(self: Any, key: str, seconds: float = 1.0, fail: bool = False) -> str:
    return body(self, key, seconds, fail)


@app.task(base=SingletonTask, bind=True, lock_name="self-retry:{key}", max_retries=3)
def work_self_retry(self: Any, key: str, times: int = 2) -> int:
    """Retries itself ``times`` times; each attempt publishes its retry (countdown=0) and then
    keeps its lock one more second, so the retry always finds the lock of its own attempt."""
    note(
        key,
        event="attempt",
        id=self.request.id,
        retries=self.request.retries,
        holder=self.request.lock.value,
    )
    if self.request.retries < times:
        self.retry(countdown=0, throw=False)
        time.sleep(1.0)
        raise Retry("retry published")
    return int(self.request.retries)


@app.task(base=SingletonTask, bind=True, lock_expiry=60)
def work_crash(self: Any, key: str, seconds: float = 1.0, fail: bool = False) -> str:
    return body(self, key, seconds, fail)


@app.task(base=SingletonTask, bind=True, lock_expiry=4, lock_release_on_worker_lost=False)
def work_crash_ttl(self: Any, key: str, seconds: float = 1.0, fail: bool = False) -> str:
    return body(self, key, seconds, fail)


@app.task(base=SingletonTask, bind=True, lock_expiry=60, time_limit=2)
def work_hard_limit(self: Any, key: str, seconds: float = 1.0, fail: bool = False) -> str:
    return body(self, key, seconds, fail)


@app.task(base=SingletonTask, bind=True, lock_expiry=60, time_limit=2)
def work_hard_limit_stubborn(self: Any, key: str, seconds: float = 1.0, fail: bool = False) -> str:
    """Ignores SIGTERM, as a task stuck in C code would: only SIGKILL ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return body(self, key, seconds, fail)


@lock_busy.connect
def _record_busy(sender: Any = None, **info: Any) -> None:
    event = json.dumps({k: v for k, v in info.items() if k != "signal"})
    if info["action"] == "duplicate":  # sent by apply_async in the caller: no task id yet
        journal.rpush(f"duplicate:{info['lock_name']}", event)
    else:
        journal.set(f"busy:{info['task_id']}", event)


@lock_lost.connect
def _record_lost(sender: Any = None, **info: Any) -> None:
    journal.set(f"lost:{info['task_id']}", info["lock_name"])


# --- lock_scope="queue" and lock_hold_after ------------------------------------------------


@app.task(base=SingletonTask, bind=True, lock_scope="queue", lock_expiry=5)
def work_queue(self: Any, key: str, seconds: float = 1.0, fail: bool = False) -> str:
    return body(self, key, seconds, fail)


@app.task(base=SingletonTask, bind=True, lock_scope="queue", lock_on_duplicate="raise")
def work_queue_raise(self: Any, key: str, seconds: float = 1.0, fail: bool = False) -> str:
    return body(self, key, seconds, fail)


@app.task(base=SingletonTask, bind=True, lock_scope="queue", lock_expiry=5, max_retries=2)
def work_queue_end(self: Any, key: str, how: str = "ok") -> str:
    """Ends as ``how`` says: ok, fail, ignore, reject, retry (retries twice, countdown 1 s,
    then succeeds) or exhaust (retries until max_retries runs out)."""
    note(key, event="attempt", id=self.request.id, retries=self.request.retries,
         holder=self.request.lock.value)  # fmt: skip
    if how == "fail":
        raise ValueError(f"failing on purpose: {key}")
    if how == "ignore":
        raise Ignore()
    if how == "reject":
        raise Reject("rejecting on purpose", requeue=False)
    if how == "retry" and self.request.retries < 2:
        raise self.retry(countdown=1)
    if how == "exhaust":
        raise self.retry(countdown=0.5, exc=ValueError(f"retries exhausted: {key}"))
    return key


@app.task(base=SingletonTask, bind=True, lock_hold_after=3)
def work_throttled(self: Any, key: str, seconds: float = 0.2, fail: bool = False) -> str:
    return body(self, key, seconds, fail)


@app.task(base=SingletonTask, bind=True, lock_scope="queue", lock_hold_after=3)
def work_queue_throttled(self: Any, key: str, seconds: float = 0.2, fail: bool = False) -> str:
    return body(self, key, seconds, fail)


@app.task(base=SingletonTask, bind=True, lock_expiry=60, soft_time_limit=1)
def work_soft_limit(self: Any, key: str, seconds: float = 1.0, fail: bool = False) -> str:
    return body(self, key, seconds, fail)


@app.task(base=SingletonTask, bind=True, lock_scope="queue", lock_expiry=60)
def work_queue_crash(self: Any, key: str, seconds: float = 1.0, fail: bool = False) -> str:
    return body(self, key, seconds, fail)
