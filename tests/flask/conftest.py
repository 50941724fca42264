"""Fixtures for the Flask adapter tests: apps built like an app factory would build them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from redsync_core.testing import RedisServer

AppFactory = Callable[..., Flask]


@pytest.fixture
def urls(redis_nodes: list[RedisServer]) -> list[str]:
    """The URLs of 3 real, empty, independent redis-server processes."""
    return [server.url for server in redis_nodes]


@pytest.fixture
def make_app() -> AppFactory:
    """Return ``make_app(**config)``: a fresh testing Flask app with that config."""
    counter = iter(range(1000))

    def make(**config: Any) -> Flask:
        app = Flask(f"app{next(counter)}")
        app.config.update(TESTING=True, **config)
        return app

    return make
