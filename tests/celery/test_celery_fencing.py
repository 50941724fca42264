"""Fencing tokens for Celery runs: ``lock_fencing=True`` (or ``redsync_options``) gives
``self.request.lock.token``, larger on every run; eager mode against the real lock nodes."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery

from redsync_celery import SingletonTask
from redsync_core import ConfigurationError


def make_app(celery_env: Any, **conf: Any) -> Celery:
    app = Celery("fencing", broker="memory://", backend="cache+memory://")
    app.conf.update(
        task_always_eager=True,
        redsync_urls=celery_env.node_urls,
        redsync_key_prefix="fencing:",
        **conf,
    )
    return app


def test_lock_fencing_gives_every_run_a_larger_token(celery_env: Any, key: str) -> None:
    app = make_app(celery_env)

    @app.task(base=SingletonTask, bind=True, shared=False, name="f.run", lock_fencing=True)
    def run(self: Any, k: str) -> int:
        token: int = self.request.lock.token
        return token

    tokens = [run.delay(key).get() for _ in range(3)]
    assert all(isinstance(t, int) for t in tokens)
    assert tokens == sorted(set(tokens))


def test_redsync_options_turn_fencing_on_for_every_task(celery_env: Any, key: str) -> None:
    app = make_app(celery_env, redsync_options={"fencing": True})

    @app.task(base=SingletonTask, bind=True, shared=False, name="f.app")
    def fenced(self: Any, k: str) -> int | None:
        token: int | None = self.request.lock.token
        return token

    @app.task(base=SingletonTask, bind=True, shared=False, name="f.off", lock_fencing=False)
    def plain(self: Any, k: str) -> int | None:
        token: int | None = self.request.lock.token
        return token

    assert isinstance(fenced.delay(key).get(), int)
    assert plain.delay(key).get() is None


def test_a_bad_lock_fencing_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="lock_fencing"):

        class Bad(SingletonTask):  # type: ignore[misc]  # Celery's Task is untyped
            lock_fencing = "yes"


@pytest.mark.parametrize(
    "options", [{"lock_limit": 2}, {"lock_scope": "queue"}], ids=["limit", "queue-scope"]
)
def test_lock_fencing_is_refused_where_runs_draw_no_token(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match="lock_fencing"):
        type("Bad", (SingletonTask,), {"lock_fencing": True, **options})
