"""The beat settings: defaults derived from the app's name, and bad values named."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import pytest
from celery import Celery
from celery.exceptions import ImproperlyConfigured

import redsync_celery.beat
from redsync_celery.beat import LeaderScheduler, Leadership
from redsync_celery.conf import read_beat_settings


def make_app(main: str | None = "proj", **conf: Any) -> Celery:
    app = Celery(main, broker="memory://", set_as_current=False)
    app.conf.update(redsync_urls=["memory://beat-a", "memory://beat-b", "memory://beat-c"], **conf)
    return app


def test_defaults_name_the_lock_after_the_app() -> None:
    settings = read_beat_settings(make_app())
    assert (settings.lock_name, settings.lock_expiry) == ("celery-beat:proj", 30.0)


def test_settings_override_the_defaults() -> None:
    app = make_app(redsync_beat_lock_name="beat:eu", redsync_beat_lock_expiry=12)
    settings = read_beat_settings(app)
    assert (settings.lock_name, settings.lock_expiry) == ("beat:eu", 12.0)


@pytest.mark.parametrize(
    ("main", "conf", "setting"),
    [
        pytest.param(None, {}, "redsync_beat_lock_name", id="unnamed-app"),
        pytest.param("proj", {"redsync_beat_lock_name": ""}, "redsync_beat_lock_name", id="empty"),
        pytest.param(
            "proj", {"redsync_beat_lock_expiry": 0}, "redsync_beat_lock_expiry", id="zero"
        ),
        pytest.param(
            "proj", {"redsync_beat_lock_expiry": "30"}, "redsync_beat_lock_expiry", id="string"
        ),
    ],
)
def test_bad_settings_are_named(main: str | None, conf: dict[str, Any], setting: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=setting):
        read_beat_settings(make_app(main, **conf))


def test_one_leader_at_a_time_in_one_process() -> None:
    """Two campaigns on the same nodes: the first leads, the second stands by with a wait no
    longer than the expiry, and leads once the first resigned and its wait is over."""
    app = make_app(redsync_beat_lock_expiry=1)
    first, second = Leadership(app), Leadership(app)
    assert first.campaign() is None
    assert first.leading
    wait = second.campaign()
    assert wait is not None
    assert 0 < wait <= 1 + 0.2
    assert not second.leading
    first.resign()
    time.sleep(wait)
    assert second.campaign() is None
    assert second.leading
    second.resign()


def test_the_banner_names_the_lock(tmp_path: Any) -> None:
    app = make_app()
    scheduler = LeaderScheduler(app=app, schedule_filename=str(tmp_path / "s"), lazy=True)
    assert "'celery-beat:proj'" in scheduler.info


def test_the_database_scheduler_without_django_celery_beat_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "django_celery_beat", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "redsync_celery._beat_django", raising=False)
    with pytest.raises(ImportError, match="pip install django-celery-beat"):
        redsync_celery.beat.LeaderDatabaseScheduler  # noqa: B018 - the lookup is the test


def test_a_standby_tries_again_only_when_the_holder_may_be_gone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Beat ticks a standby often (each due entry it passes); it must not ask the nodes and
    log each time, only when its wait is over."""
    app = make_app(redsync_beat_lock_expiry=5)
    leader, standby = Leadership(app), Leadership(app)
    assert leader.campaign() is None
    with caplog.at_level(logging.INFO, logger="redsync_celery.beat"):
        first = standby.campaign()
        second = standby.campaign()
    assert first is not None
    assert second is not None
    assert 0 < second <= first
    assert sum("standing by" in r.getMessage() for r in caplog.records) == 1
    leader.resign()
