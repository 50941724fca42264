"""``lock_limit = N``: up to N runs of a task overlap, the next one is busy (eager mode, real
lock nodes); a bad ``lock_limit`` fails when the task is created."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery

from redsync_celery import SingletonTask, get_redsync
from redsync_core import ConfigurationError, Semaphore


def make_app(**conf: Any) -> Celery:
    app = Celery("rsc_limit", broker="memory://", set_as_current=False)
    app.conf.update(conf)
    return app


@pytest.mark.parametrize(
    "limit",
    [pytest.param(0, id="zero"), pytest.param(2.5, id="float"), pytest.param("2", id="str")],
)
def test_a_bad_lock_limit_fails_when_the_task_is_created(limit: object) -> None:
    app = make_app(redsync_urls=["redis://127.0.0.1:1/0"])
    with pytest.raises(ConfigurationError, match="lock_limit"):

        @app.task(base=SingletonTask, shared=False, lazy=False, name="bad", lock_limit=limit)
        def bad() -> None: ...


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"lock_scope": "queue"}, id="queue-scope"),
        pytest.param({"lock_hold_after": 5}, id="throttle"),
    ],
)
def test_a_limit_with_queue_scope_or_a_throttle_is_refused(options: dict[str, Any]) -> None:
    app = make_app(redsync_urls=["redis://127.0.0.1:1/0"])
    with pytest.raises(ConfigurationError, match=r"lock_limit=2 for task 'both'"):

        @app.task(
            base=SingletonTask, shared=False, lazy=False, name="both", lock_limit=2, **options
        )
        def both() -> None: ...


def test_runs_overlap_up_to_the_limit(celery_env: Any, key: str) -> None:
    app = make_app(
        task_always_eager=True, redsync_urls=celery_env.node_urls, redsync_key_prefix="limit:"
    )
    ran: list[tuple[str, bool]] = []

    @app.task(
        base=SingletonTask,
        bind=True,
        shared=False,
        name="l.run",
        lock_name="pool:{k}",
        lock_limit=2,
    )
    def run(self: Any, k: str) -> None:
        ran.append((k, isinstance(self.request.lock, Semaphore)))

    rs = get_redsync(app)
    first = rs.new_semaphore(f"pool:{key}", 2)
    first.acquire()
    assert run.delay(key).state == "SUCCESS"  # one permit of two is free
    assert ran == [(key, True)]
    second = rs.new_semaphore(f"pool:{key}", 2)
    second.acquire()
    assert run.delay(key).state == "IGNORED"  # both permits held: skipped
    assert len(ran) == 1
    first.release()
    second.release()
    assert run.delay(key).state == "SUCCESS"
    assert len(ran) == 2
