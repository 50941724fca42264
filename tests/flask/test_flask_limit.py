"""``redsync.locked(..., limit=N)``: up to N requests run a view at once; the next gets 409."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from redsync_core import ConfigurationError
from redsync_flask import Redsync


@pytest.fixture
def redsync() -> Redsync:
    return Redsync()


@pytest.fixture
def app(make_app: Any, urls: list[str], redsync: Redsync) -> Flask:
    app: Flask = make_app(REDSYNC_URLS=urls, REDSYNC_KEY_PREFIX="test:")
    redsync.init_app(app)
    return app


def test_a_view_admits_limit_requests_then_answers_busy(app: Flask, redsync: Redsync) -> None:
    calls: list[int] = []

    @app.post("/render/<int:n>")
    @redsync.locked("render", limit=2)
    def render(n: int) -> str:
        calls.append(n)
        return "rendered"

    core = app.extensions["redsync"]
    first = core.new_semaphore("render", 2, expiry=20)
    first.acquire()
    assert app.test_client().post("/render/1").status_code == 200  # one permit left
    second = core.new_semaphore("render", 2, expiry=20)
    second.acquire()
    busy = app.test_client().post("/render/2")
    assert busy.status_code == 409
    assert 15 <= int(busy.headers["Retry-After"]) <= 21
    assert calls == [1]
    first.release()
    second.release()
    assert app.test_client().post("/render/3").status_code == 200
    assert calls == [1, 3]


def test_an_invalid_limit_fails_at_decoration(redsync: Redsync) -> None:
    with pytest.raises(ConfigurationError, match="limit"):
        redsync.locked("bad", limit=-1)
