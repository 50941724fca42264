"""The ``locked`` decorator: run a sync or ``async def`` function while holding a lock.

One decorator for both kinds of function: a sync function is locked through a ``Redsync``,
a coroutine function through an ``AsyncRedsync`` (so the event loop never blocks). Each
``Redsync`` reaches its asyncio twin and vice versa through the two getters. With a ``limit``
the lock is a permit of a semaphore, so up to ``limit`` calls run at once.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ._exceptions import ConfigurationError
from ._family import check_limit, check_permit_options
from ._naming import LockName, render_lock_name

if TYPE_CHECKING:
    from ._async import AsyncRedsync
    from ._options import MutexOptions
    from ._sync import Redsync

__all__ = ["check_wait", "locked", "locked_limit", "wait_options"]

F = TypeVar("F", bound=Callable[..., Any])


def check_wait(wait: object, option: str = "wait") -> float:
    """Return ``wait`` (seconds to keep trying a busy lock) as a float.

    Raises:
        ConfigurationError: ``wait`` is not a number of seconds >= 0 (the message names
            ``option``).
    """
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not wait >= 0:
        raise ConfigurationError(
            f"Invalid {option}={wait!r:.40}: expected a number of seconds >= 0 (0: one attempt)."
        )
    return float(wait)


def wait_options(wait: object, options: Mapping[str, Any]) -> tuple[dict[str, Any], float | None]:
    """Return the mutex options and the ``lock(timeout=)`` (s) that give ``wait`` its meaning.

    ``wait=0`` is one attempt (``tries=1``); a positive ``wait`` retries until it runs out
    (``tries=None``, ``timeout=wait``). An explicit ``tries`` in ``options`` wins.

    Raises:
        ConfigurationError: ``wait`` is not a number of seconds >= 0.
    """
    seconds = check_wait(wait)
    merged = dict(options)
    if seconds == 0:
        merged.setdefault("tries", 1)
        return merged, None
    merged.setdefault("tries", None)
    return merged, seconds


def locked_limit(limit: object, options: MutexOptions) -> int | None:
    """Return the ``limit`` of a ``locked`` decorator: None (a mutex) or a semaphore's limit.

    Raises:
        ConfigurationError: ``limit`` is neither None nor an integer in [1, MAX_LIMIT], or
            ``options`` fix a ``value`` (which every permit holder would share) or ask
            for ``fencing`` (permits draw no tokens).
    """
    if limit is None:
        return None
    checked = check_limit(limit)
    check_permit_options(options)
    return checked


def locked(
    get_sync: Callable[[], Redsync],
    get_async: Callable[[], AsyncRedsync],
    name: LockName,
    wait: float,
    limit: int | None,
    options: Mapping[str, Any],
) -> Callable[[F], F]:
    """Build the decorator behind ``Redsync.locked`` and ``AsyncRedsync.locked``.

    ``limit``: None holds a mutex around each call; a number holds a permit of a semaphore
    admitting that many holders (checked by ``locked_limit``).
    """
    mutex_kwargs, timeout = wait_options(wait, options)

    def decorate(func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                lock_name = render_lock_name(name, func, args, kwargs)
                ars = get_async()
                mutex = (
                    ars.new_mutex(lock_name, **mutex_kwargs)
                    if limit is None
                    else ars.new_semaphore(lock_name, limit, **mutex_kwargs)
                )
                await mutex.lock(timeout=timeout)
                try:
                    return await func(*args, **kwargs)
                finally:
                    await mutex.__aexit__(*sys.exc_info())

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            lock_name = render_lock_name(name, func, args, kwargs)
            rs = get_sync()
            mutex = (
                rs.new_mutex(lock_name, **mutex_kwargs)
                if limit is None
                else rs.new_semaphore(lock_name, limit, **mutex_kwargs)
            )
            mutex.lock(timeout=timeout)
            try:
                return func(*args, **kwargs)
            finally:
                mutex.__exit__(*sys.exc_info())

        return sync_wrapper  # type: ignore[return-value]

    return decorate
