"""The one reader of ``settings.REDSYNC``: validate it and build the process's core ``Redsync``.

Every setting is read and validated here and nowhere else (the system checks only quote key
names in their messages). The ``Redsync`` is built on first use in each process (a gunicorn
``--preload`` fork builds its own) and dropped when ``override_settings`` changes ``REDSYNC``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from redsync_core import Redsync, adapters
from redsync_core.adapters import ADAPTER_DEFAULTS, SettingError, adapter_options

__all__ = ["ADAPTER_DEFAULTS", "Config", "SettingsError", "get_config", "get_redsync", "reset"]

SETTING = "REDSYNC"
KEYS = ("URLS", "CLIENT_OPTIONS", "KEY_PREFIX", "OPTIONS", "BUSY_STATUS")
EXAMPLE = (
    'REDSYNC = {"URLS": ["redis://10.0.0.1:6379/0", "redis://10.0.0.2:6379/0", '
    '"redis://10.0.0.3:6379/0"]}'
)


class SettingsError(ImproperlyConfigured):
    """``settings.REDSYNC`` is invalid; ``check_id`` is the system check that reports it."""

    def __init__(self, check_id: str, message: str, hint: str) -> None:
        super().__init__(f"{message} {hint}")
        self.check_id = check_id
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Config:
    """``settings.REDSYNC``, validated; ``options`` are the adapter defaults plus ``OPTIONS``."""

    urls: tuple[str, ...]
    client_options: Mapping[str, Any]
    key_prefix: str
    options: Mapping[str, Any]
    busy_status: int


def _key(name: str) -> str:
    return f'settings.{SETTING}["{name}"]'


def read_config() -> Config:
    """Read and validate ``settings.REDSYNC`` (no network I/O).

    Raises:
        SettingsError: with ``check_id`` redsync.E001 (missing or not a dict), redsync.E002
            (no or invalid ``URLS``) or redsync.E003 (invalid option).
    """
    raw = getattr(settings, SETTING, None)
    if not isinstance(raw, dict):
        got = "missing" if raw is None else f"a {type(raw).__name__}"
        raise SettingsError("redsync.E001", f"settings.{SETTING} is {got}.", f"Set {EXAMPLE}.")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise SettingsError(
            "redsync.E003",
            f"Unknown key {unknown[0]!r} in settings.{SETTING}.",
            f"Accepted keys: {', '.join(KEYS)}.",
        )
    urls = raw.get("URLS")
    if (
        not isinstance(urls, (list, tuple))
        or not urls
        or not all(isinstance(url, str) and url for url in urls)
    ):
        raise SettingsError(
            "redsync.E002",
            f"{_key('URLS')} is {urls!r:.60}: expected a non-empty list of Redis URL strings.",
            f"Give one URL per independent Redis master (3 or 5), e.g. {EXAMPLE}.",
        )
    client_options = _typed(raw, "CLIENT_OPTIONS", dict, {}, "a dict of redis client arguments")
    key_prefix = _typed(raw, "KEY_PREFIX", str, "", "a string")
    options = _typed(raw, "OPTIONS", dict, {}, "a dict of core mutex options")
    busy_status = _typed(raw, "BUSY_STATUS", int, 409, "an HTTP status code")
    if not 400 <= busy_status <= 599 or isinstance(busy_status, bool):
        raise _invalid("BUSY_STATUS", busy_status, "an HTTP error status in 400-599 (e.g. 409)")
    try:
        merged = adapter_options(options)
    except SettingError as exc:
        raise SettingsError("redsync.E003", f"{_key('OPTIONS')}: {exc}", _OPTIONS_HINT) from None
    return Config(tuple(urls), client_options, key_prefix, merged, busy_status)


_OPTIONS_HINT = "OPTIONS takes the core's new_mutex options, e.g. {'expiry': 30.0}."


def _typed(raw: Mapping[str, Any], name: str, kind: type, default: Any, expected: str) -> Any:
    value = raw.get(name, default)
    if not isinstance(value, kind):
        raise _invalid(name, value, expected)
    return value


def _invalid(name: str, value: object, expected: str) -> SettingsError:
    return SettingsError("redsync.E003", f"{_key(name)} is {value!r:.60}: expected {expected}.", "")


def build_redsync(config: Config) -> Redsync:
    """Build a core ``Redsync`` from validated settings (clients only; no network I/O).

    Raises:
        SettingsError: redsync.E002 for a URL the client rejects, redsync.E003 for
            ``CLIENT_OPTIONS`` the client rejects.
    """
    try:
        return adapters.build_redsync(
            list(config.urls),
            key_prefix=config.key_prefix,
            client_options=config.client_options,
            options=config.options,
        )
    except SettingError as exc:
        if exc.setting == "nodes":
            raise SettingsError("redsync.E002", f"{_key('URLS')}: {exc}", "") from None
        raise SettingsError("redsync.E003", f"{_key('CLIENT_OPTIONS')}: {exc}", "") from None


@dataclass(frozen=True)
class _State:
    pid: int
    config: Config
    redsync: Redsync


_lock = threading.Lock()
_state: _State | None = None


def _current() -> _State:
    global _state
    state = _state
    if state is None or state.pid != os.getpid():  # first use, or a forked child
        with _lock:
            state = _state
            if state is None or state.pid != os.getpid():
                config = read_config()
                state = _state = _State(os.getpid(), config, build_redsync(config))
    return state


def get_redsync() -> Redsync:
    """Return this process's core ``Redsync``, built from ``settings.REDSYNC`` on first use.

    Raises:
        SettingsError: ``settings.REDSYNC`` is invalid (an ``ImproperlyConfigured``).
    """
    return _current().redsync


def get_config() -> Config:
    """Return the validated settings behind ``get_redsync()``."""
    return _current().config


def reset() -> None:
    """Forget the process's ``Redsync`` (closing its connections); the next use rebuilds it."""
    global _state
    with _lock:
        state, _state = _state, None
    if state is not None and state.pid == os.getpid():
        state.redsync.close()


@receiver(setting_changed)
def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING:
        reset()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at fork time


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
