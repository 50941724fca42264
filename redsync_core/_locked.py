"""The ``locked`` decorator: run a sync or ``async def`` function while holding a lock.

One decorator for both kinds of function: a sync function is locked through a ``Redsync``,
a coroutine function through an ``AsyncRedsync`` (so the event loop never blocks). Each
``Redsync`` reaches its asyncio twin and vice versa through the two getters.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ._exceptions import ConfigurationError
from ._naming import LockName, render_lock_name

if TYPE_CHECKING:
    from ._async import AsyncRedsync
    from ._sync import Redsync

__all__ = ["locked"]

F = TypeVar("F", bound=Callable[..., Any])


def mutex_options(wait: float, options: Mapping[str, Any]) -> tuple[dict[str, Any], float | None]:
    """Return the mutex options and the ``lock(timeout=)`` for a decorator's ``wait`` (s).

    ``wait=0`` is one attempt; a positive ``wait`` retries until it runs out.

    Raises:
        ConfigurationError: ``wait`` is not a number of seconds >= 0.
    """
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not wait >= 0:
        raise ConfigurationError(f"Invalid wait={wait!r}: expected a number of seconds >= 0.")
    merged = dict(options)
    if wait == 0:
        merged.setdefault("tries", 1)
        return merged, None
    merged.setdefault("tries", None)
    return merged, float(wait)


def locked(
    get_sync: Callable[[], Redsync],
    get_async: Callable[[], AsyncRedsync],
    name: LockName,
    wait: float,
    options: Mapping[str, Any],
) -> Callable[[F], F]:
    """Build the decorator behind ``Redsync.locked`` and ``AsyncRedsync.locked``."""
    mutex_kwargs, timeout = mutex_options(wait, options)

    def decorate(func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                lock_name = render_lock_name(name, func, args, kwargs)
                mutex = get_async().new_mutex(lock_name, **mutex_kwargs)
                await mutex.lock(timeout=timeout)
                try:
                    return await func(*args, **kwargs)
                finally:
                    await mutex.__aexit__(*sys.exc_info())

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            lock_name = render_lock_name(name, func, args, kwargs)
            mutex = get_sync().new_mutex(lock_name, **mutex_kwargs)
            mutex.lock(timeout=timeout)
            try:
                return func(*args, **kwargs)
            finally:
                mutex.__exit__(*sys.exc_info())

        return sync_wrapper  # type: ignore[return-value]

    return decorate
