"""The Flask extension: per-app core ``Redsync`` objects and the locked-route decorator.

Translation only: locks are held through the core's ``Redsync.hold`` (one attempt or ``wait``
seconds, auto-extension, "busy" told apart from errors of the view); this module picks the
current app's core object and turns "busy" into an HTTP answer. As Flask's extension guide
asks, the extension object holds no app and no per-app state: ``init_app`` keeps everything in
``app.extensions``, so one instance serves app factories and several apps in one process.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from flask import Flask, current_app, g, has_app_context, has_request_context
from werkzeug.exceptions import HTTPException, default_exceptions

from redsync_core import LockNotAcquired, Mutex, MutexOptions, render_lock_name
from redsync_core import Redsync as CoreRedsync
from redsync_core.adapters import (
    OnBusy,
    check_limit,
    check_on_busy,
    retry_after_seconds,
    wait_options,
)

from .cli import redsync_cli
from .conf import AppConfig, read_config

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["LockBusy", "Redsync", "retry_after_seconds"]

logger = logging.getLogger("redsync.flask")

F = TypeVar("F", bound=Callable[..., Any])

_IN_VIEW = "_redsync_in_view"  # g attribute: a locked view is running in this request

#: ``app.extensions`` key of what ``init_app`` keeps for the adapter beside the core
#: ``Redsync`` (``app.extensions["redsync"]``): the app's config and the registering instance.
STATE_KEY = "redsync_flask"


@dataclass(frozen=True)
class _AppState:
    """The adapter's per-app state, stored in ``app.extensions[STATE_KEY]``."""

    extension: Redsync
    config: AppConfig


class LockBusy(HTTPException):
    """A locked route found its lock held by another request; the body did not run.

    Answers ``REDSYNC_BUSY_STATUS`` (409 Conflict by default) with ``Retry-After``. Change the
    body with ``@app.errorhandler(LockBusy)`` (any status) or ``@app.errorhandler(409)``; the
    exception carries ``lock_name`` and ``retry_after`` (whole seconds, at least 1), and the
    core ``LockNotAcquired`` as ``__cause__``.
    """

    code: int | None = None  # per status in the subclasses from ``for_status``

    def __init__(self, lock_name: str, retry_after: int) -> None:
        super().__init__(
            description=f"Another request is working on this resource (lock {lock_name!r}). "
            f"Retry in {retry_after} s."
        )
        self.lock_name = lock_name
        self.retry_after = retry_after

    @staticmethod
    @functools.cache
    def for_status(status: int) -> type[LockBusy]:
        """Return the ``LockBusy`` class answering ``status`` (also a Werkzeug ``Conflict``
        for 409, ``Locked`` for 423...), so status-keyed error handlers find it too."""
        base = default_exceptions.get(status, HTTPException)
        return cast(type[LockBusy], type(f"LockBusy{status}", (LockBusy, base), {"code": status}))

    def get_headers(
        self, environ: WSGIEnvironment | None = None, scope: dict[str, Any] | None = None
    ) -> list[tuple[str, str]]:
        headers = super().get_headers(environ, scope)  # 429/503 bases add their own Retry-After
        return [
            *(h for h in headers if h[0] != "Retry-After"),
            ("Retry-After", str(self.retry_after)),
        ]


class Redsync:
    """Redlock locks for Flask apps, configured from ``REDSYNC_*`` keys.

    ``Redsync(app)`` or ``redsync = Redsync()`` then ``redsync.init_app(app)`` in the app
    factory. Per-app state lives in the app, never on this object: ``app.extensions["redsync"]``
    is the app's core ``redsync_core.Redsync``, and ``app.extensions["redsync_flask"]`` holds
    the rest of its config. So one instance serves several apps.
    """

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read ``app``'s ``REDSYNC_*`` config once, register the core ``Redsync`` as
        ``app.extensions["redsync"]`` (the rest of the config beside it) and add the
        ``flask redsync`` CLI group.

        Keys: ``REDSYNC_URLS`` (required), ``REDSYNC_CLIENT_OPTIONS``, ``REDSYNC_KEY_PREFIX``,
        ``REDSYNC_OPTIONS``, ``REDSYNC_BUSY_STATUS``; later changes to them are not seen.

        Raises:
            ConfigurationError: a key is missing or invalid (the message names it and the fix).
            RuntimeError: ``app`` already has a redsync extension.
        """
        if "redsync" in app.extensions:
            raise RuntimeError(
                f"A redsync extension is already registered on app {app.name!r}; call "
                "init_app(app) once per app and import that Redsync instance elsewhere."
            )
        config = read_config(app.config)
        app.extensions[STATE_KEY] = _AppState(self, config)
        app.extensions["redsync"] = config.redsync
        app.cli.add_command(redsync_cli)

    def get_redsync(self, app: Flask | None = None) -> CoreRedsync:
        """Return the core ``Redsync`` of ``app`` (default: the current app).

        Raises:
            RuntimeError: no app context, or the app was not registered with this instance.
        """
        return self._config(app).redsync

    def new_mutex(self, name: str, **options: Any) -> Mutex:
        """Return a core ``Mutex`` on the current app's nodes (``REDSYNC_OPTIONS`` as defaults).

        Requires an app context. Raises ``ConfigurationError`` for an empty name or bad option.
        """
        return self.get_redsync().new_mutex(name, **options)

    def locked(
        self,
        name: str | Callable[..., str] | None = None,
        *,
        wait: float = 0.0,
        on_busy: OnBusy = None,
        limit: int | None = None,
        **options: Any,
    ) -> Callable[[F], F]:
        """Decorate a view (sync or ``async def``) or a function to run only under a lock.

        ``name``: None (``module.qualname``), a template filled from the arguments (URL
        variables for a view: ``"pay:{order_id}"``) or a callable taking them. ``wait``:
        seconds to keep trying (0: one attempt). ``options``: core lock options, on top of
        ``REDSYNC_OPTIONS``. ``limit``: let up to that many calls run at once (a semaphore
        permit) instead of one. Uses the current app's nodes, so it needs an app context.

        When the lock is busy the body does not run, and:

        - ``on_busy=None``: in a request, the outermost locked call (the view) answers
          ``REDSYNC_BUSY_STATUS`` with ``Retry-After`` by raising ``LockBusy``; outside a
          request, or nested in a locked call, the core's ``LockNotAcquired`` (``LockTaken``,
          ``LockTimeout``) is raised.
        - ``on_busy="raise"``: the core's ``LockNotAcquired`` is raised.
        - ``on_busy="skip"``: returns None and logs a WARNING (for jobs, not views).
        - ``on_busy=callable``: returns ``on_busy(exc, *args, **kwargs)`` (e.g. a response).

        ``QuorumUnreachable`` (nodes down) is always raised: that is an outage, not "busy".
        """
        wait_options(wait, options)  # bad arguments fail at import, not at the first request
        check_on_busy(on_busy)
        MutexOptions.build(options)
        if limit is not None:
            check_limit(limit)

        def decorate(func: F) -> F:
            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                config = self._config(None)
                lock_name = render_lock_name(name, func, args, kwargs)
                view = has_request_context() and not g.get(_IN_VIEW, False)
                if view:
                    setattr(g, _IN_VIEW, True)
                try:
                    with config.redsync.hold(lock_name, wait=wait, limit=limit, **options) as held:
                        if held.busy is not None:
                            status = config.busy_status if view else None
                            return _busy(held.busy, on_busy, status, args, kwargs)
                        return current_app.ensure_sync(func)(*args, **kwargs)
                finally:
                    if view:
                        g.pop(_IN_VIEW, None)

            return cast(F, wrapper)

        return decorate

    def _config(self, app: Flask | None) -> AppConfig:
        if app is None:
            if not has_app_context():
                raise RuntimeError(
                    "Working outside of an application context: redsync needs the current app. "
                    "Use `with app.app_context():` (views and `flask` commands have one)."
                )
            app = current_app._get_current_object()  # type: ignore[attr-defined]
        state = app.extensions.get(STATE_KEY)
        if not isinstance(state, _AppState) or state.extension is not self:
            raise RuntimeError(
                f"The Flask app {app.name!r} is not registered with this redsync_flask.Redsync "
                "instance. Call redsync.init_app(app) in the app factory, or use the instance "
                "that did."
            )
        return state.config


def _busy(
    exc: LockNotAcquired,
    on_busy: OnBusy,
    busy_status: int | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Answer a busy lock: ``busy_status`` is set when the call is a request's view."""
    if on_busy == "skip":
        logger.warning("Skipped: %s", exc)
        return None
    if callable(on_busy):
        return current_app.ensure_sync(on_busy)(exc, *args, **kwargs)
    if on_busy == "raise" or busy_status is None:
        raise exc
    busy = LockBusy.for_status(busy_status)(exc.name, retry_after_seconds(exc.retry_after))
    raise busy from exc
