"""Lock names for decorated calls: templates, callables, and digests of bound arguments.

Public through ``render_lock_name`` and ``arguments_digest`` so that every adapter renders
keys the same way: a call ``f(1, 2)`` and ``f(1, b=2)`` always give the same name.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._exceptions import ConfigurationError

__all__ = ["LockName", "arguments_digest", "bind_arguments", "render_lock_name"]

LockName = str | Callable[..., str] | None
"""How a decorated call names its lock: None, a format template, or a callable."""


def bind_arguments(
    func: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """Bind a call's arguments to ``func``'s parameters, with defaults applied.

    Raises:
        TypeError: the arguments do not fit the signature (as the call itself would).
    """
    bound = inspect.signature(func).bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def render_lock_name(
    name: LockName,
    func: Callable[..., Any],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
) -> str:
    """Return the lock name for one call of ``func``.

    ``name`` is None (``module.qualname`` of ``func``), a ``str.format`` template filled from
    the bound arguments with defaults applied (``"invoice:{invoice_id}"``, ``"{user.pk}"``), or
    a callable taking the same arguments as ``func``.

    Raises:
        ConfigurationError: the template names an unknown argument or the name is empty.
    """
    if name is None:
        rendered: object = f"{func.__module__}.{func.__qualname__}"
    elif callable(name):
        rendered = name(*args, **kwargs)
    elif "{" not in name:
        rendered = name
    else:
        arguments = bind_arguments(func, args, kwargs)
        try:
            rendered = name.format_map(arguments)
        except (KeyError, AttributeError, IndexError) as exc:
            raise ConfigurationError(
                f"Invalid lock name template {name!r}: {exc!r} is not available; the template may "
                f"use the arguments of {func.__qualname__}: {', '.join(arguments) or '(none)'}."
            ) from None
    if not isinstance(rendered, str) or not rendered:
        raise ConfigurationError(
            f"Invalid lock name {rendered!r:.60} for {func.__qualname__}: expected a non-empty string."
        )
    return rendered


def arguments_digest(
    func: Callable[..., Any],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    names: Sequence[str] | None = None,
) -> str:
    """Return a stable 16-hex-digit digest of a call's bound arguments (defaults applied).

    Positional and keyword spellings of the same call give the same digest; ``names``
    restricts it to those parameters. Values are encoded as sorted JSON (``repr`` for values
    JSON cannot encode), so equal arguments digest equally across processes. A ``self``
    parameter is left out.

    Raises:
        ConfigurationError: ``names`` lists a parameter ``func`` does not have.
    """
    arguments = bind_arguments(func, args, kwargs)
    arguments.pop("self", None)  # an instance's repr differs between processes
    if names is not None:
        unknown = [n for n in names if n not in arguments]
        if unknown:
            raise ConfigurationError(
                f"Invalid lock argument names {unknown}: {func.__qualname__} has "
                f"{', '.join(arguments) or 'no parameters'}."
            )
        arguments = {n: arguments[n] for n in names}
    encoded = json.dumps(arguments, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()[:16]
