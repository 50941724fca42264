"""Bad queue-scope and throttle options are refused when the task class is created (or when
a worker starts, for options on a task that is not a singleton); what apply_async does when
no lock node answers, and when the app has no result backend (in this process)."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery

from redsync_celery import DuplicateTask, SingletonTask, check_plain_tasks, get_redsync
from redsync_core import ConfigurationError, QuorumUnreachable
from redsync_core.testing import free_port, memory_urls


def make_app(urls: list[str], **conf: Any) -> Celery:
    app = Celery("rsc_queue_config", broker="memory://", set_as_current=False)
    app.conf.update(redsync_urls=urls, **conf)
    return app


@pytest.mark.parametrize(
    ("options", "named"),
    [
        pytest.param({"lock_scope": "enqueue"}, "lock_scope='enqueue'", id="unknown-scope"),
        pytest.param({"lock_on_duplicate": "skip"}, "lock_on_duplicate", id="unknown-duplicate"),
        pytest.param({"lock_queue_expiry": 0}, "lock_queue_expiry=0", id="zero-queue-expiry"),
        pytest.param({"lock_queue_expiry": -5}, "lock_queue_expiry", id="negative-queue-expiry"),
        pytest.param({"lock_hold_after": -1}, "lock_hold_after=-1", id="negative-hold-after"),
        pytest.param({"lock_hold_after": "60"}, "lock_hold_after", id="string-hold-after"),
        pytest.param({"lock_hold_after": True}, "lock_hold_after", id="bool-hold-after"),
        pytest.param({"lock_hold_after": 1e9}, "lock_hold_after", id="hold-after-too-long"),
        pytest.param({"lock_queue_expiry": 1e9}, "lock_queue_expiry", id="queue-expiry-too-long"),
    ],
)
def test_bad_options_are_refused_at_class_creation(options: dict[str, Any], named: str) -> None:
    app = make_app(memory_urls(3))
    with pytest.raises(ConfigurationError, match=named) as caught:

        @app.task(base=SingletonTask, name="proj.bad", shared=False, lazy=False, **options)
        def bad() -> None: ...

    assert "'proj.bad'" in str(caught.value)


def test_singleton_options_on_a_plain_task_are_refused_at_worker_start() -> None:
    app = make_app(memory_urls(3))

    @app.task(name="proj.plain", lock_hold_after=60, lock_scope="queue", shared=False)
    def plain() -> None: ...

    with pytest.raises(ConfigurationError, match=r"'proj.plain'.*lock_hold_after, lock_scope"):
        check_plain_tasks(app)


def test_apply_async_while_no_lock_node_answers_sends_nothing() -> None:
    app = make_app([f"redis://127.0.0.1:{free_port()}/0" for _ in range(3)])
    app.conf.redsync_client_options = {"socket_connect_timeout": 0.2}

    @app.task(base=SingletonTask, name="proj.q", lock_scope="queue", shared=False)
    def q(n: int) -> int:
        return n

    with pytest.raises(QuorumUnreachable, match="Could not lock"):
        app.tasks["proj.q"].apply_async((1,))
    with app.connection_for_write() as conn:
        assert conn.default_channel.queue_declare("celery", passive=False).message_count == 0


def test_without_a_result_backend_a_duplicate_still_gets_the_holders_id() -> None:
    app = make_app(memory_urls(3))  # no result_backend: Celery's DisabledBackend

    @app.task(base=SingletonTask, name="proj.nb", lock_scope="queue", shared=False)
    def nb(n: int) -> int:
        return n

    task = app.tasks["proj.nb"]
    first = task.delay(1)
    duplicate = task.delay(1)
    assert duplicate.id == first.id
    with pytest.raises(NotImplementedError, match="No result backend"):
        duplicate.get(timeout=1)


def test_raise_mode_duplicate_is_a_lock_taken_with_the_holder_id() -> None:
    app = make_app(memory_urls(3))

    @app.task(
        base=SingletonTask, name="proj.r", lock_scope="queue", lock_on_duplicate="raise",
        shared=False,
    )  # fmt: skip
    def r(n: int) -> int:
        return n

    task = app.tasks["proj.r"]
    first = task.delay(1)
    assert task.delay(2).id != first.id  # other arguments, other lock
    with pytest.raises(DuplicateTask) as caught:
        task.delay(n=1)
    assert caught.value.task_id == first.id


def test_eager_mode_locks_at_apply_async_and_the_run_takes_it_over() -> None:
    app = make_app(memory_urls(3), task_always_eager=True)
    seen: list[str | None] = []

    @app.task(base=SingletonTask, bind=True, name="proj.e", lock_scope="queue", shared=False)
    def e(self: Any, n: int) -> int:
        seen.append(self.request.lock.value)
        return n

    task = app.tasks["proj.e"]
    result = task.delay(3)
    assert result.get() == 3
    assert seen[0] is not None
    assert seen[0].startswith(f"{result.id}:0:")
    assert get_redsync(app).inspect(task.lock_name_for((3,), {})).holder is None


def test_a_lock_held_by_something_else_than_a_task_raises_even_in_return_mode() -> None:
    app = make_app(memory_urls(3))

    @app.task(base=SingletonTask, name="proj.f", lock_scope="queue", lock_name="f", shared=False)
    def f() -> None: ...

    by_hand = get_redsync(app).new_mutex("f", expiry=30.0, value="maintenance:window")
    by_hand.lock()
    with pytest.raises(DuplicateTask, match="a holder that is not a task") as caught:
        app.tasks["proj.f"].delay()
    assert caught.value.task_id is None
    by_hand.unlock()
    assert app.tasks["proj.f"].delay().id  # free again: queued
