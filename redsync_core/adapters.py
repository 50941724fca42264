"""The rules every framework adapter shares: defaults, argument checks and busy arithmetic.

A framework adapter (Django, Celery, Flask) reads its framework's settings and builds one core
``Redsync`` with ``build_redsync``. Every adapter, the ``redsync`` command included, takes
locks with ``Redsync.hold`` (which tells "busy" apart from errors raised in the protected
code) and turns a busy lock into its answer with ``retry_after_seconds`` and ``free_in``.
Nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from ._exceptions import ConfigurationError
from ._family import check_limit
from ._locked import check_wait, wait_options
from ._options import MutexOptions
from ._sync import Redsync

__all__ = [
    "ADAPTER_DEFAULTS",
    "ON_BUSY_CHOICES",
    "OnBusy",
    "SettingError",
    "adapter_options",
    "build_redsync",
    "check_limit",
    "check_on_busy",
    "check_wait",
    "free_in",
    "node_count_warning",
    "retry_after_seconds",
    "wait_options",
]

#: Lock options of every adapter unless its settings say otherwise: a 30 s lease, short
#: enough to free a dead host's lock soon, kept alive while the protected code runs.
ADAPTER_DEFAULTS: Mapping[str, Any] = MappingProxyType({"expiry": 30.0, "auto_extend": True})

#: What a decorated call may do when the lock is busy (besides a callable).
ON_BUSY_CHOICES = (None, "raise", "skip")

#: ``on_busy``: one of ``ON_BUSY_CHOICES``, or a callable ``(exc, *args, **kwargs)``.
OnBusy = Callable[..., Any] | str | None


class SettingError(ConfigurationError):
    """An adapter setting is invalid; ``setting`` says which, in core terms.

    ``setting`` is one of ``"nodes"``, ``"client_options"``, ``"key_prefix"``, ``"options"``,
    so that each adapter can name its own key (``REDSYNC_URLS``, ``redsync_urls``...).
    """

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.setting, str(self)))


def adapter_options(options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return ``ADAPTER_DEFAULTS`` overlaid with ``options``, validated.

    Raises:
        SettingError: ``setting="options"``; an unknown option or an invalid value.
    """
    merged = {**ADAPTER_DEFAULTS, **(options or {})}
    try:
        MutexOptions.build(merged)
    except ConfigurationError as exc:
        raise SettingError("options", str(exc)) from None
    return merged


def build_redsync(
    nodes: Sequence[Any],
    *,
    key_prefix: str = "",
    client_options: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Redsync:
    """Build an adapter's core ``Redsync``: ``ADAPTER_DEFAULTS`` under ``options``.

    Builds clients only; nothing is sent to Redis.

    Raises:
        SettingError: naming the setting to blame (``"options"``, ``"key_prefix"``,
            ``"nodes"`` when the nodes alone are rejected, else ``"client_options"``).
    """
    merged = adapter_options(options)
    if not isinstance(key_prefix, str):
        raise SettingError(
            "key_prefix",
            f"got {type(key_prefix).__name__}, expected a string such as 'myapp:' (may be empty).",
        )
    try:
        return Redsync(nodes, key_prefix=key_prefix, client_options=client_options, **merged)
    except ConfigurationError as exc:
        failure = exc
    try:  # which setting is to blame: the nodes alone, or the client options?
        Redsync(nodes).close()
    except ConfigurationError as exc:
        raise SettingError("nodes", str(exc)) from None
    raise SettingError("client_options", str(failure)) from None


def node_count_warning(count: int) -> str | None:
    """Return why ``count`` nodes is a weak Redlock set-up, or None for an odd count >= 3."""
    if count == 1:
        return (
            "a single node: that is a plain Redis lock, not Redlock, and it fails with that "
            "node. Fine for development; use 3 or 5 independent Redis masters in production."
        )
    if count % 2 == 0:
        return (
            f"{count} nodes: a quorum needs {count // 2 + 1}, so it tolerates no more failures "
            f"than {count - 1} nodes would. Use an odd number of independent masters "
            f"({count - 1} or {count + 1})."
        )
    return None


def check_on_busy(on_busy: object) -> None:
    """Accept ``None``, ``"raise"``, ``"skip"`` or a callable ``(exc, *args, **kwargs)``.

    Raises:
        ConfigurationError: anything else.
    """
    if not (callable(on_busy) or on_busy in ON_BUSY_CHOICES):
        raise ConfigurationError(
            f"Invalid on_busy={on_busy!r:.40}: expected None (the framework's busy answer), "
            "'raise', 'skip' or a callable (exc, *args, **kwargs) returning the result."
        )


def retry_after_seconds(seconds: float | None) -> int:
    """Return a ``Retry-After`` value: ``seconds`` rounded up to whole seconds, at least 1
    (1 when the holder's remaining time is unknown)."""
    if seconds is None:
        return 1
    return max(1, math.ceil(seconds))


def free_in(seconds: float | None) -> str:
    """Describe when a busy lock may be free, from ``LockNotAcquired.retry_after`` (s)."""
    if seconds is None:
        return "when it will be free is unknown"
    return f"free in about {math.ceil(seconds)} s"
