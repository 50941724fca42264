"""``distributed_lock``: run a view, a function or a block only while holding a lock.

Translation only: lock names come from the core's ``render_lock_name``, decorated calls lock
through the core's ``Redsync.locked`` (its asyncio twin for ``async def``), ``with`` blocks
through a core mutex. This module decides what a busy call returns and turns lock events into
the signals of ``redsync_django.signals``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from types import TracebackType
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse

from redsync_core import (
    AsyncMutex,
    ConfigurationError,
    LockNotAcquired,
    Mutex,
    MutexOptions,
    QuorumUnreachable,
    render_lock_name,
)

from . import signals
from .conf import get_config, get_redsync

__all__ = ["DistributedLock", "busy_response", "distributed_lock"]

logger = logging.getLogger("redsync.django")

F = TypeVar("F", bound=Callable[..., Any])
OnBusy = str | Callable[..., Any] | None
LockName = str | Callable[..., str] | None


def distributed_lock(
    name: LockName = None, *, wait: float = 0.0, on_busy: OnBusy = None, **options: Any
) -> DistributedLock:
    """Return a decorator and context manager that holds the lock ``name`` around the code.

    Args:
        name: None (``module.qualname``, or the view class for ``method_decorator``), a
            template filled from the call's arguments (``"invoice:{pk}"``,
            ``"import:{request.user.pk}"``) or a callable taking the same arguments. A
            ``with`` block needs a plain string.
        wait: seconds to keep trying when another holder has the lock (0: one attempt).
        on_busy: None (a view answers ``BUSY_STATUS`` with ``Retry-After``; anything else
            raises), ``"raise"`` (``LockTaken``), ``"skip"`` (return None, log a WARNING), or a
            callable ``(exc, *args, **kwargs)`` whose result is returned (awaited if it is
            awaitable in an ``async def``). A ``with`` block always raises.
        **options: core mutex options (``expiry``, ``auto_extend``...) over ``REDSYNC["OPTIONS"]``.

    Raises:
        ConfigurationError: an invalid ``wait``, ``on_busy`` or option (at decoration time).
    """
    return DistributedLock(name, wait, on_busy, options)


class DistributedLock:
    """What ``distributed_lock(...)`` returns: a decorator, and a ``with`` / ``async with``
    context manager yielding the held core mutex (check ``mutex.remaining`` before side
    effects). Safe to share between threads and tasks."""

    def __init__(
        self, name: LockName, wait: float, on_busy: OnBusy, options: Mapping[str, Any]
    ) -> None:
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not wait >= 0:
            raise ConfigurationError(f"Invalid wait={wait!r}: expected a number of seconds >= 0.")
        if not (on_busy in (None, "raise", "skip") or callable(on_busy)):
            raise ConfigurationError(
                f"Invalid on_busy={on_busy!r}: expected 'raise', 'skip', None or a callable "
                "(exc, *args, **kwargs) returning the result."
            )
        MutexOptions.build(options)  # a misspelt option fails at import, not at the first call
        self.name = name
        self.wait = wait
        self.on_busy = on_busy
        self.options = dict(options)

    # --- decorator ------------------------------------------------------------------------

    def __call__(self, func: F) -> F:
        if iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                call = _Call(self, _render(self.name, func, args, kwargs), args, kwargs)

                @functools.wraps(func)
                async def body(*a: Any, **kw: Any) -> Any:
                    call.acquired()
                    return await func(*a, **kw)

                try:
                    return await call.locked(body)(*args, **kwargs)
                except LockNotAcquired as exc:
                    if call.began or isinstance(exc, QuorumUnreachable):
                        raise
                    result = call.busy(exc)
                    return await result if inspect.isawaitable(result) else result
                finally:
                    call.finished()

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            call = _Call(self, _render(self.name, func, args, kwargs), args, kwargs)

            @functools.wraps(func)
            def body(*a: Any, **kw: Any) -> Any:
                call.acquired()
                return func(*a, **kw)

            try:
                return call.locked(body)(*args, **kwargs)
            except LockNotAcquired as exc:
                if call.began or isinstance(exc, QuorumUnreachable):
                    raise
                return call.busy(exc)
            finally:
                call.finished()

        return sync_wrapper  # type: ignore[return-value]

    # --- context manager ------------------------------------------------------------------

    def __enter__(self) -> Mutex:
        call = self._block_call()
        mutex = get_redsync().new_mutex(call.name, **call.options(tries=self._tries()))
        try:
            mutex.lock(timeout=self.wait or None)
        except LockNotAcquired as exc:
            if not isinstance(exc, QuorumUnreachable):
                call.busy(exc)
            raise
        self._push(call, mutex)
        return mutex

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        call, mutex = self._pop()
        try:
            assert isinstance(mutex, Mutex)  # pushed by __enter__
            mutex.__exit__(exc_type, exc, tb)  # raises LockLost if auto-extension lost it
        finally:
            call.finished()

    async def __aenter__(self) -> AsyncMutex:
        call = self._block_call()
        ars = get_redsync().asyncio()
        mutex = ars.new_mutex(call.name, **call.options(tries=self._tries()))
        try:
            await mutex.lock(timeout=self.wait or None)
        except LockNotAcquired as exc:
            if not isinstance(exc, QuorumUnreachable):
                call.busy(exc)
            raise
        self._push(call, mutex)
        return mutex

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        call, mutex = self._pop()
        try:
            assert isinstance(mutex, AsyncMutex)  # pushed by __aenter__
            await mutex.__aexit__(exc_type, exc, tb)
        finally:
            call.finished()

    def _tries(self) -> int | None:
        # As the core's ``locked``: wait=0 is one attempt, a positive wait retries until it ends.
        return 1 if self.wait == 0 else None

    def _block_call(self) -> _Call:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigurationError(
                f"A with-block needs a lock name string, got name={self.name!r}; templates and "
                "callables need the arguments of a decorated function."
            )
        if self.on_busy not in (None, "raise"):
            raise ConfigurationError(
                f"on_busy={self.on_busy!r} cannot skip a with-block; catch LockNotAcquired "
                "around it, or decorate a function instead."
            )
        return _Call(self, self.name, (), {})

    # Entered blocks, per thread and per asyncio task, so one instance can be shared.
    def _push(self, call: _Call, mutex: Mutex | AsyncMutex) -> None:
        call.acquired()
        _entered.set((*_entered.get(), (self, call, mutex)))

    def _pop(self) -> tuple[_Call, Mutex | AsyncMutex]:
        stack = _entered.get()
        for i in reversed(range(len(stack))):
            if stack[i][0] is self:
                _entered.set(stack[:i] + stack[i + 1 :])
                return stack[i][1], stack[i][2]
        raise RuntimeError("distributed_lock: __exit__ without a matching __enter__")


_entered: ContextVar[tuple[tuple[DistributedLock, _Call, Mutex | AsyncMutex], ...]] = ContextVar(
    "redsync_django_entered", default=()
)


class _Call:
    """One decorated call or block: its lock name, and its lock events sent as signals."""

    def __init__(
        self, lock: DistributedLock, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self.lock = lock
        self.name = name
        self.args = args
        self.kwargs = kwargs
        self.began = False
        self.lost = False

    def options(self, **extra: Any) -> dict[str, Any]:
        """The mutex options, with ``on_lost`` chained to send ``lock_lost`` first."""
        user_on_lost = self.lock.options.get("on_lost", get_config().options.get("on_lost"))

        def on_lost(mutex: Any) -> None:
            self.lost = True
            signals.lock_lost.send(sender=DistributedLock, name=self.name, mutex=mutex)
            if user_on_lost is not None:
                user_on_lost(mutex)

        return {**extra, **self.lock.options, "on_lost": on_lost}

    def locked(self, body: F) -> F:
        """Wrap ``body`` with the core's ``locked`` decorator (which picks sync or asyncio)."""
        name = self.name
        rs = get_redsync()
        return rs.locked(lambda *a, **kw: name, wait=self.lock.wait, **self.options())(body)

    def acquired(self) -> None:
        self.began = True
        signals.lock_acquired.send(sender=DistributedLock, name=self.name)

    def finished(self) -> None:
        if self.began and not self.lost:
            signals.lock_released.send(sender=DistributedLock, name=self.name)

    def busy(self, exc: LockNotAcquired) -> Any:
        """Return what a busy call returns, or raise ``exc``; the body has not run."""
        signals.lock_busy.send(sender=DistributedLock, name=self.name, exception=exc)
        on_busy = self.lock.on_busy
        if callable(on_busy):
            return on_busy(exc, *self.args, **self.kwargs)
        if on_busy == "skip":
            logger.warning("Skipped: lock %r is busy (%s).", self.name, _free_in(exc))
            return None
        if on_busy is None and self.args and isinstance(self.args[0], HttpRequest):
            return busy_response(exc)
        raise exc


def busy_response(exc: LockNotAcquired) -> HttpResponse:
    """Answer a request whose lock is busy: ``REDSYNC["BUSY_STATUS"]`` (409) with
    ``Retry-After`` = the holder's remaining TTL in whole seconds, rounded up, at least 1."""
    retry_after = max(1, math.ceil(exc.retry_after or 0))
    response = HttpResponse(
        f"Busy: another request is working on this; retry in {retry_after} s.\n",
        status=get_config().busy_status,
        content_type="text/plain; charset=utf-8",
    )
    response["Retry-After"] = str(retry_after)
    return response


def _free_in(exc: LockNotAcquired) -> str:
    if exc.retry_after is None:
        return "holder's TTL unknown"
    return f"free in about {math.ceil(exc.retry_after)} s"


def _render(name: LockName, func: Callable[..., Any], args: Any, kwargs: Any) -> str:
    """Render the lock name of one call.

    ``method_decorator`` hands the decorator a ``partial`` of the bound method whose
    ``__wrapped__`` is the class's function (with ``self``) as first defined, e.g.
    ``View.dispatch``: name the concrete view class, and bind templates to the bound method.
    """
    if isinstance(func, functools.partial) and inspect.ismethod(func.func):
        method = func.func
        if name is None:
            view = type(method.__self__)
            return f"{view.__module__}.{view.__qualname__}.{method.__name__}"
        func = method
    return render_lock_name(name, func, args, kwargs)
