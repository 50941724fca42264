"""invoicer: a small Flask app whose payments, exports and nightly job run under Redlock locks.

Run it with ``flask --app invoicer run`` (see README.md for the three Redis nodes it expects).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from . import jobs, views
from .extensions import redsync
from .store import Store

DEFAULT_NODES = [
    "redis://127.0.0.1:6379/0",
    "redis://127.0.0.1:6380/0",
    "redis://127.0.0.1:6381/0",
]


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: config (defaults, then FLASK_* environment, then ``test_config``)."""
    app = Flask(__name__)
    app.config.from_mapping(
        REDSYNC_URLS=DEFAULT_NODES,
        REDSYNC_KEY_PREFIX="invoicer:",
        REDSYNC_CLIENT_OPTIONS={"socket_timeout": 0.5, "socket_connect_timeout": 0.5},
        REDSYNC_OPTIONS={"expiry": 30.0, "auto_extend": True},
    )
    app.config.from_prefixed_env()  # e.g. FLASK_REDSYNC_URLS="redis://a:6379/0,redis://b:6379/0,..."
    if test_config is not None:
        app.config.update(test_config)

    redsync.init_app(app)  # reads REDSYNC_*, adds `flask redsync ping|status|release`
    app.extensions["invoicer"] = Store.with_demo_invoices()
    app.register_blueprint(views.bp)
    jobs.init_app(app)
    return app
