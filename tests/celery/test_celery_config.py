"""Settings, task options, lock names and eager mode: in this process (eager mode against the
session's real lock nodes), plus one worker that must refuse to start on a bad setting."""

from __future__ import annotations

import logging
import multiprocessing
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.exceptions import ImproperlyConfigured
from rs_celery_workers import PYTHONPATH

from redsync_celery import SingletonTask, get_redsync
from redsync_celery.conf import read_settings
from redsync_core import ConfigurationError, LockTaken


def make_app(**conf: Any) -> Celery:
    app = Celery("rsc_config", broker=conf.pop("broker_url", "memory://"), set_as_current=False)
    app.conf.update(conf)
    return app


# --- settings ----------------------------------------------------------------------------


def test_settings_are_read_with_adapter_defaults() -> None:
    app = make_app(
        redsync_urls=["redis://127.0.0.1:1/0", "redis://127.0.0.1:2/0", "redis://127.0.0.1:3/0"],
        redsync_client_options={"socket_timeout": 0.5},
        redsync_key_prefix="app:",
        redsync_options={"drift_factor": 0.02},
    )
    settings = read_settings(app)
    assert settings.urls == (
        "redis://127.0.0.1:1/0",
        "redis://127.0.0.1:2/0",
        "redis://127.0.0.1:3/0",
    )
    assert settings.options == {"expiry": 30.0, "auto_extend": True, "drift_factor": 0.02}
    assert settings.key_prefix == "app:"
    assert get_redsync(app).key_prefix == "app:"


ONE = ["redis://127.0.0.1:1/0"]


@pytest.mark.parametrize(
    ("conf", "setting", "named"),
    [
        pytest.param({}, "redsync_urls", "not set", id="no-urls-and-no-redis-broker"),
        pytest.param({"redsync_urls": []}, "redsync_urls", "non-empty", id="empty-urls"),
        pytest.param({"redsync_urls": [1, 2]}, "redsync_urls", "non-empty", id="not-strings"),
        pytest.param({"redsync_urls": ["http://x"]}, "redsync_urls", "http", id="bad-scheme"),
        pytest.param(
            {"redsync_urls": ONE, "redsync_client_options": ["x"]},
            "redsync_client_options",
            "dict",
            id="client-options-list",
        ),
        pytest.param(
            {"redsync_urls": ONE, "redsync_key_prefix": 3}, "redsync_key_prefix", "3", id="prefix"
        ),
        pytest.param(
            {"redsync_urls": ONE, "redsync_options": {"expiry": -1}},
            "redsync_options",
            "expiry=-1",
            id="negative-expiry",
        ),
        pytest.param(
            {"redsync_urls": ONE, "redsync_options": {"expiri": 1}},
            "redsync_options",
            "expiri",
            id="unknown-option",
        ),
        pytest.param(
            {"redsync_urls": ONE, "redsync_options": {"tries": 3}},
            "redsync_options",
            "lock_wait",
            id="tries-is-lock-wait",
        ),
        pytest.param(
            {"redsync_urls": ONE, "redsync_options": {"value": "v"}},
            "redsync_options",
            "'value'",
            id="fixed-value",
        ),
    ],
)
def test_bad_settings_name_the_setting(conf: dict[str, Any], setting: str, named: str) -> None:
    with pytest.raises(ImproperlyConfigured) as caught:
        get_redsync(make_app(**conf))
    message = str(caught.value)
    assert f"setting {setting} " in message
    assert f"CELERY_{setting.upper()}" in message  # the spelling under Django's namespace
    assert named in message


def test_a_redis_broker_is_the_fallback_node_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(broker_url="redis://127.0.0.1:1/3")
    with caplog.at_level(logging.WARNING, logger="redsync_celery"):
        first = get_redsync(app)
        assert get_redsync(app) is first
    assert first.nodes == ("redis://127.0.0.1:1/3",)
    warnings = [r for r in caplog.records if "redsync_urls is not set" in r.getMessage()]
    assert len(warnings) == 1
    assert "not Redlock" in warnings[0].getMessage()


def _child_redsync_id(app: Celery, queue: Any) -> None:
    queue.put(id(get_redsync(app)))


def test_each_process_builds_its_own_redsync() -> None:
    app = make_app(redsync_urls=["redis://127.0.0.1:1/0"])
    parent = get_redsync(app)
    assert get_redsync(app) is parent
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_redsync_id, args=(app, queue))
    child.start()
    child_id = queue.get(timeout=30)
    child.join(30)
    assert child.exitcode == 0
    assert child_id != id(parent)  # a new object, not the inherited one
    assert get_redsync(app) is parent


def test_a_worker_with_bad_settings_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "rsc_badapp.py").write_text(
        textwrap.dedent(
            """
            from celery import Celery
            from redsync_celery import SingletonTask

            app = Celery("rsc_badapp", broker="memory://")
            app.conf.redsync_urls = ["redis://127.0.0.1:1/0"]
            app.conf.redsync_options = {"expiry": 0}

            @app.task(base=SingletonTask)
            def job(): ...
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "rsc_badapp", "worker", "--pool", "solo"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode != 0
    assert "redsync_options" in done.stderr + done.stdout
    assert "expiry=0" in done.stderr + done.stdout


# --- task options and lock names ----------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        pytest.param({"lock_on_busy": "later"}, "lock_on_busy", id="busy-action"),
        pytest.param({"lock_expiry": 0}, "lock_expiry", id="zero-expiry"),
        pytest.param({"lock_expiry": "30"}, "lock_expiry", id="expiry-str"),
        pytest.param({"lock_wait": -1}, "lock_wait", id="negative-wait"),
        pytest.param({"lock_name": ""}, "lock_name", id="empty-name"),
        pytest.param({"lock_name": ["a b"]}, "lock_name", id="bad-argument-name"),
        pytest.param(
            {"lock_release_on_worker_lost": "yes"}, "lock_release_on_worker_lost", id="flag"
        ),
    ],
)
def test_bad_task_options_fail_when_the_task_is_created(
    options: dict[str, Any], named: str
) -> None:
    app = make_app(redsync_urls=["redis://127.0.0.1:1/0"])
    with pytest.raises(ConfigurationError, match=named):

        @app.task(base=SingletonTask, shared=False, lazy=False, name="bad", **options)
        def bad(a: int) -> None: ...


@pytest.fixture
def app() -> Celery:
    return make_app(redsync_urls=["redis://127.0.0.1:1/0"])


def test_default_name_is_the_same_for_positional_and_keyword_calls(app: Celery) -> None:
    @app.task(base=SingletonTask, shared=False, name="t.f")
    def f(a: int, b: int = 2, *, c: str = "x") -> None: ...

    name = f.lock_name_for((1, 2), {})
    assert name.startswith("t.f:")
    assert f.lock_name_for((1,), {"b": 2}) == name
    assert f.lock_name_for((), {"a": 1, "b": 2, "c": "x"}) == name
    assert f.lock_name_for((1,), {}) == name  # defaults applied
    assert f.lock_name_for((1, 3), {}) != name
    assert f.lock_name_for((1, 2), {"c": "y"}) != name


def test_bound_tasks_leave_the_task_out_of_the_name(app: Celery) -> None:
    @app.task(base=SingletonTask, bind=True, shared=False, name="t.bound")
    def bound(self: Any, a: int) -> None: ...

    assert bound.lock_name_for((1,), {}) == bound.lock_name_for((), {"a": 1})


def test_named_arguments_template_and_callable_names(app: Celery) -> None:
    @app.task(base=SingletonTask, shared=False, name="t.subset", lock_name=["account"])
    def subset(account: int, verbose: bool = False) -> None: ...

    @app.task(base=SingletonTask, shared=False, name="t.all", lock_name=[])
    def whole(account: int) -> None: ...

    @app.task(base=SingletonTask, shared=False, name="t.tpl", lock_name="sync:{account}")
    def template(account: int) -> None: ...

    @app.task(
        base=SingletonTask,
        shared=False,
        name="t.call",
        lock_name=lambda account, **_: f"tenant-{account % 2}",
    )
    def by_callable(account: int, verbose: bool = False) -> None: ...

    assert subset.lock_name_for((7, True), {}) == subset.lock_name_for((7,), {})
    assert subset.lock_name_for((7,), {}) != subset.lock_name_for((8,), {})
    assert whole.lock_name_for((7,), {}) == whole.lock_name_for((8,), {}) == "t.all"
    assert template.lock_name_for((), {"account": 7}) == "sync:7"
    assert by_callable.lock_name_for((7,), {"verbose": True}) == "tenant-1"


def test_a_bad_template_names_the_arguments(app: Celery) -> None:
    @app.task(base=SingletonTask, shared=False, name="t.badtpl", lock_name="sync:{acount}")
    def typo(account: int) -> None: ...

    with pytest.raises(ConfigurationError, match="account"):
        typo.lock_name_for((1,), {})


# --- eager mode ----------------------------------------------------------------------------


@pytest.fixture
def eager(celery_env: Any) -> Celery:
    """An app with task_always_eager: tasks run in this process, against the real lock nodes."""
    return make_app(
        task_always_eager=True, redsync_urls=celery_env.node_urls, redsync_key_prefix="eager:"
    )


def test_eager_runs_take_and_release_the_lock(eager: Celery, celery_env: Any, key: str) -> None:
    seen = []

    @eager.task(base=SingletonTask, bind=True, shared=False, name="e.run")
    def run(self: Any, k: str) -> str:
        seen.append(
            (
                self.request.id,
                self.request.lock.value,
                get_redsync(eager).inspect(self.lock_name_for((k,), {})).holder,
            )
        )
        return k

    result = run.delay(key)
    assert result.get() == key
    ((task_id, value, holder),) = seen
    assert value.startswith(f"{task_id}:0:")
    assert holder == value
    assert get_redsync(eager).inspect(run.lock_name_for((key,), {})).holder is None


def test_eager_runs_obey_lock_on_busy(eager: Celery, key: str) -> None:
    ran = []

    @eager.task(base=SingletonTask, shared=False, name="e.skip", lock_name="held:{k}")
    def skip(k: str) -> None:
        ran.append(k)

    @eager.task(
        base=SingletonTask, shared=False, name="e.raise", lock_name="held:{k}", lock_on_busy="raise"
    )
    def fail(k: str) -> None:
        ran.append(k)

    with get_redsync(eager).new_mutex(f"held:{key}"):
        skipped = skip.delay(key)
        failed = fail.delay(key)
    assert ran == []
    assert skipped.state == "IGNORED"
    assert failed.state == "FAILURE"
    assert isinstance(failed.result, LockTaken)
    skip.delay(key)
    assert ran == [key]


def test_direct_calls_run_without_a_lock(eager: Celery, key: str) -> None:
    @eager.task(base=SingletonTask, shared=False, name="e.direct", lock_name="held:{k}")
    def direct(k: str) -> str:
        return k

    with get_redsync(eager).new_mutex(f"held:{key}"):
        assert direct(key) == key
