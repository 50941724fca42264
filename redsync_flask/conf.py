"""Read a Flask app's ``REDSYNC_*`` config: the one place that knows those key names.

``read_config(app.config)`` validates every key once, builds the app's core ``Redsync`` and
re-raises the core's ``ConfigurationError`` in terms of the Flask keys, so a bad setting fails
at ``init_app`` with the key to fix rather than at the first request.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redsync_core import ConfigurationError
from redsync_core import Redsync as CoreRedsync
from redsync_core.adapters import ADAPTER_DEFAULTS, SettingError, build_redsync, node_count_warning

__all__ = ["ADAPTER_DEFAULTS", "KEYS", "AppConfig", "read_config"]

logger = logging.getLogger("redsync.flask")

URLS = "REDSYNC_URLS"
CLIENT_OPTIONS = "REDSYNC_CLIENT_OPTIONS"
KEY_PREFIX = "REDSYNC_KEY_PREFIX"
OPTIONS = "REDSYNC_OPTIONS"
BUSY_STATUS = "REDSYNC_BUSY_STATUS"
KEYS = (URLS, CLIENT_OPTIONS, KEY_PREFIX, OPTIONS, BUSY_STATUS)

#: Which key to name when the core rejects a setting.
_SETTING_KEYS = {
    "nodes": URLS,
    "client_options": CLIENT_OPTIONS,
    "key_prefix": KEY_PREFIX,
    "options": OPTIONS,
}
DEFAULT_BUSY_STATUS = 409

_URLS_EXAMPLE = "['redis://10.0.0.1:6379/0', 'redis://10.0.0.2:6379/0', 'redis://10.0.0.3:6379/0']"


@dataclass(frozen=True)
class AppConfig:
    """What ``init_app`` keeps for one app: its core ``Redsync`` and the busy HTTP status."""

    redsync: CoreRedsync
    busy_status: int


def read_config(config: Mapping[str, Any]) -> AppConfig:
    """Validate the ``REDSYNC_*`` keys of ``config`` and build the app's core ``Redsync``.

    Keys: ``REDSYNC_URLS`` (required: a list of node URLs or clients, or one string of
    comma-separated URLs), ``REDSYNC_CLIENT_OPTIONS`` ({}), ``REDSYNC_KEY_PREFIX`` (""),
    ``REDSYNC_OPTIONS`` (core option names; ``expiry=30.0, auto_extend=True`` by default) and
    ``REDSYNC_BUSY_STATUS`` (409). Nothing is sent to Redis.

    Raises:
        ConfigurationError: a key is missing or invalid; the message names the key and the fix.
    """
    _warn_unknown_keys(config)
    urls = _urls(config.get(URLS))
    client_options = _mapping(
        config, CLIENT_OPTIONS, "redis client keyword arguments, e.g. {'socket_timeout': 0.5}"
    )
    options = _mapping(config, OPTIONS, "lock options, e.g. {'expiry': 30.0, 'auto_extend': True}")
    key_prefix = config.get(KEY_PREFIX, "")
    busy_status = config.get(BUSY_STATUS, DEFAULT_BUSY_STATUS)
    if (
        isinstance(busy_status, bool)
        or not isinstance(busy_status, int)
        or not 400 <= busy_status <= 599
    ):
        raise ConfigurationError(
            f"Invalid {BUSY_STATUS}={busy_status!r:.40}: expected an HTTP error status from 400 "
            "to 599 as an int (409 Conflict by default; 423 or 503 also fit). "
            f"Fix app.config[{BUSY_STATUS!r}]."
        )
    try:
        redsync = build_redsync(
            urls, key_prefix=key_prefix, client_options=client_options, options=options
        )
    except SettingError as exc:
        key = _SETTING_KEYS[exc.setting]
        raise ConfigurationError(f"Invalid {key}: {exc} Fix app.config[{key!r}].") from None
    weakness = node_count_warning(len(redsync.addresses))
    if weakness is not None:
        logger.warning("%s has %s", URLS, weakness)
    return AppConfig(redsync, busy_status)


def _urls(value: object) -> list[Any]:
    """Return the node list of ``REDSYNC_URLS`` (a list, or one comma-separated string)."""
    if value is None:
        raise ConfigurationError(
            f"{URLS} is not set. Set app.config[{URLS!r}] before init_app(app) to the URLs of "
            f"3 (or 5) independent Redis masters, e.g. {_URLS_EXAMPLE}."
        )
    if isinstance(value, str):
        value = [url.strip() for url in value.split(",") if url.strip()]
    if not isinstance(value, Sequence) or isinstance(value, bytes):
        raise ConfigurationError(
            f"Invalid {URLS}: got {type(value).__name__}, expected a list of node URLs "
            f"(or one comma-separated string), e.g. {_URLS_EXAMPLE}. Fix app.config[{URLS!r}]."
        )
    if not value:
        raise ConfigurationError(
            f"{URLS} is empty. Set app.config[{URLS!r}] to the URLs of 3 (or 5) independent "
            f"Redis masters, e.g. {_URLS_EXAMPLE}."
        )
    return list(value)


def _mapping(config: Mapping[str, Any], key: str, expected: str) -> dict[str, Any]:
    value = config.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigurationError(
            f"Invalid {key}: got {type(value).__name__}, expected a dict of {expected}. "
            f"Fix app.config[{key!r}]."
        )
    return dict(value)


def _warn_unknown_keys(config: Mapping[str, Any]) -> None:
    for key in config:
        if isinstance(key, str) and key.startswith("REDSYNC_") and key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(KEYS)}."
            logger.warning("Ignoring unknown config key %s%s", key, hint)
