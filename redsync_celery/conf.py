"""The one place that reads redsync's Celery settings and builds the process's ``Redsync``.

Settings (lowercase, in ``app.conf``; ``CELERY_REDSYNC_*`` under Django's ``CELERY`` namespace):

``redsync_urls``
    Node URLs, one independent Redis master each (3 or 5 for Redlock). When unset and the
    broker is Redis, the broker URL is used as the single node, with a one-time warning.
``redsync_client_options``
    Keyword arguments for the Redis clients (``socket_timeout``, ``ssl_cert_reqs``, ...).
``redsync_key_prefix``
    Prepended to every lock name to form the Redis key (default ``""``).
``redsync_options``
    Defaults for every lock, with core option names (``{"drift_factor": 0.02}``); the adapter's
    own defaults are ``expiry=30.0`` and ``auto_extend=True``.

``redsync_beat_lock_name``
    The lock beat processes campaign for with ``redsync_celery.beat``'s schedulers (default
    ``"celery-beat:" + app.main``).
``redsync_beat_lock_expiry``
    Seconds (default 30): how soon a standby beat takes over after the leader died.

``get_redsync(app)`` builds the ``Redsync`` lazily, once per process: a worker child forked by
the prefork pool builds its own (pid check). ``check_settings(app)`` runs at worker start so a
bad setting stops the worker with a message naming it.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from celery.exceptions import ImproperlyConfigured

from redsync_core import Redsync
from redsync_core.adapters import ADAPTER_DEFAULTS, SettingError, adapter_options, build_redsync

__all__ = [
    "ADAPTER_DEFAULTS",
    "BeatSettings",
    "Settings",
    "check_settings",
    "get_redsync",
    "get_settings",
    "read_beat_settings",
    "read_settings",
]

logger = logging.getLogger("redsync_celery")

_SETTING_NAMES = {  # the core's name for a rejected setting -> the Celery setting to fix
    "nodes": "redsync_urls",
    "client_options": "redsync_client_options",
    "key_prefix": "redsync_key_prefix",
    "options": "redsync_options",
}

_PER_RUN_OPTIONS = {  # SingletonTask sets these for every run
    "value": "the lock value starts with the task id, set per run",
    "gen_value_func": "the lock value starts with the task id, set per run",
    "on_lost": "connect to redsync_celery.signals.lock_lost instead",
    "tries": "use the task option lock_wait (0: one attempt)",
}
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


@dataclass(frozen=True)
class Settings:
    """The validated redsync settings of one Celery app."""

    urls: tuple[str, ...]
    client_options: Mapping[str, Any] = field(default_factory=dict)
    key_prefix: str = ""
    options: Mapping[str, Any] = field(default_factory=lambda: dict(ADAPTER_DEFAULTS))
    from_broker: bool = False


def _bad(setting: str, message: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(
        f"Invalid Celery setting {setting} (CELERY_{setting.upper()} under Django's CELERY "
        f"namespace): {message}"
    )


def _urls(app: Any) -> tuple[tuple[str, ...], bool]:
    urls = app.conf.get("redsync_urls")
    if urls is None:
        broker = app.conf.get("broker_url")
        if isinstance(broker, str) and broker.startswith(_REDIS_SCHEMES) and ";" not in broker:
            return (broker,), True
        raise _bad(
            "redsync_urls",
            "it is not set and the broker is not a single Redis URL. Set it to the URLs of "
            "independent Redis masters, e.g. app.conf.redsync_urls = ['redis://10.0.0.1:6379/0', "
            "'redis://10.0.0.2:6379/0', 'redis://10.0.0.3:6379/0'].",
        )
    if isinstance(urls, str):
        urls = [urls]
    if (
        not isinstance(urls, Sequence)
        or not urls
        or not all(isinstance(url, str) and url for url in urls)
    ):
        raise _bad(
            "redsync_urls",
            f"got {urls!r:.80}; expected a non-empty list of Redis URLs, one per independent master.",
        )
    return tuple(urls), False


def read_settings(app: Any) -> Settings:
    """Read and validate the redsync settings of ``app``.

    Raises:
        celery.exceptions.ImproperlyConfigured: a setting is missing or invalid (the message
            names it).
    """
    urls, from_broker = _urls(app)
    client_options = app.conf.get("redsync_client_options") or {}
    if not isinstance(client_options, Mapping):
        raise _bad(
            "redsync_client_options",
            f"got {client_options!r:.60}; expected a dict of Redis client keyword arguments.",
        )
    key_prefix = app.conf.get("redsync_key_prefix") or ""
    if not isinstance(key_prefix, str):
        raise _bad("redsync_key_prefix", f"got {key_prefix!r:.60}; expected a string.")
    user_options = app.conf.get("redsync_options") or {}
    if not isinstance(user_options, Mapping):
        raise _bad(
            "redsync_options",
            f"got {user_options!r:.60}; expected a dict of lock options, e.g. {{'expiry': 30.0}}.",
        )
    for option, instead in _PER_RUN_OPTIONS.items():
        if option in user_options:
            raise _bad("redsync_options", f"{option!r} cannot be set for every lock: {instead}.")
    try:
        options = adapter_options(user_options)
    except SettingError as exc:
        raise _bad("redsync_options", str(exc)) from None
    return Settings(urls, dict(client_options), key_prefix, options, from_broker)


def _build(app: Any) -> tuple[Redsync, Settings]:
    settings = read_settings(app)
    if settings.from_broker and app not in _warned:
        _warned.add(app)
        logger.warning(
            "redsync_urls is not set: using the broker as the only lock node. One node is not "
            "Redlock (a node failure loses or blocks every lock); fine for development, set "
            "redsync_urls to 3 or 5 independent Redis masters in production."
        )
    try:
        redsync = build_redsync(
            list(settings.urls),
            key_prefix=settings.key_prefix,
            client_options=settings.client_options,
            options=settings.options,
        )
    except SettingError as exc:
        raise _bad(_SETTING_NAMES[exc.setting], str(exc)) from None
    return redsync, settings


_lock = threading.Lock()
_cache: weakref.WeakKeyDictionary[Any, tuple[int, Redsync, Settings]] = weakref.WeakKeyDictionary()
_warned: weakref.WeakSet[Any] = weakref.WeakSet()


def get_redsync(app: Any) -> Redsync:
    """Return this process's ``Redsync`` for ``app``, built from its settings on first use.

    A process forked after the first use (prefork pool) builds its own; the parent's clients
    are never shared with a child.

    Raises:
        celery.exceptions.ImproperlyConfigured: a setting is missing or invalid.
    """
    return _cached(app)[1]


def get_settings(app: Any) -> Settings:
    """Return the validated settings behind ``get_redsync(app)`` (read once per process)."""
    return _cached(app)[2]


def _cached(app: Any) -> tuple[int, Redsync, Settings]:
    pid = os.getpid()
    cached = _cache.get(app)
    if cached is not None and cached[0] == pid:
        return cached
    with _lock:
        cached = _cache.get(app)
        if cached is None or cached[0] != pid:
            cached = _cache[app] = (pid, *_build(app))
        return cached


def check_settings(app: Any) -> None:
    """Validate ``app``'s settings now (at worker start) instead of at the first task.

    Raises:
        celery.exceptions.ImproperlyConfigured: a setting is missing or invalid.
    """
    get_redsync(app)


@dataclass(frozen=True)
class BeatSettings:
    """The leader-election settings of ``celery beat`` with a ``redsync_celery.beat`` scheduler."""

    lock_name: str
    lock_expiry: float


def read_beat_settings(app: Any) -> BeatSettings:
    """Read and validate ``redsync_beat_lock_name`` and ``redsync_beat_lock_expiry``.

    Raises:
        celery.exceptions.ImproperlyConfigured: a setting is invalid, or the lock name is unset
            and the app has no main module name to derive it from.
    """
    name = app.conf.get("redsync_beat_lock_name")
    if name is None:
        if not app.main or app.main == "__main__":
            raise _bad(
                "redsync_beat_lock_name",
                "it is not set and the app has no name to derive it from (Celery(main=None)). "
                "Name the app (Celery('proj')) or set it, e.g. 'celery-beat:proj'.",
            )
        name = f"celery-beat:{app.main}"
    if not isinstance(name, str) or not name:
        raise _bad("redsync_beat_lock_name", f"got {name!r:.60}; expected a non-empty string.")
    expiry = app.conf.get("redsync_beat_lock_expiry")
    if expiry is None:
        expiry = 30.0
    try:
        adapter_options({"expiry": expiry})
    except SettingError as exc:
        raise _bad("redsync_beat_lock_expiry", str(exc)) from None
    return BeatSettings(name, float(expiry))
