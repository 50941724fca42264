"""``distributed_lock``: run a view, a function or a block only while holding a lock.

Translation only: lock names come from the core's ``render_lock_name``, and every call or block
holds its lock through the core's ``Redsync.hold`` (its asyncio twin for ``async def`` and
``async with``), which reports "busy" apart from errors raised in the protected code. This
module decides what a busy call returns. The signals of ``redsync_django.signals`` come from
one listener of the core's lock events (``redsync_core.hooks``), for the locks whose
``mutex.origin`` is a call of this module.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from types import TracebackType
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse

from redsync_core import (
    AsyncHold,
    AsyncMutex,
    ConfigurationError,
    Hold,
    LockNotAcquired,
    Mutex,
    MutexOptions,
    hooks,
    render_lock_name,
)
from redsync_core.adapters import (
    OnBusy,
    check_limit,
    check_on_busy,
    free_in,
    retry_after_seconds,
    wait_options,
)

from . import signals
from .conf import get_config, get_redsync

__all__ = ["DistributedLock", "busy_response", "distributed_lock"]

logger = logging.getLogger("redsync.django")

F = TypeVar("F", bound=Callable[..., Any])
LockName = str | Callable[..., str] | None


def distributed_lock(
    name: LockName = None,
    *,
    wait: float = 0.0,
    on_busy: OnBusy = None,
    limit: int | None = None,
    **options: Any,
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
        limit: None (a mutex: one holder), or hold a permit of a semaphore that lets up to
            ``limit`` holders run the code at once (busy when all permits are held).
        **options: core mutex options (``expiry``, ``auto_extend``...) over ``REDSYNC["OPTIONS"]``.

    Raises:
        ConfigurationError: an invalid ``wait``, ``on_busy``, ``limit`` or option (at decoration
            time).
    """
    return DistributedLock(name, wait, on_busy, options, limit)


class DistributedLock:
    """What ``distributed_lock(...)`` returns: a decorator, and a ``with`` / ``async with``
    context manager yielding the held core mutex (check ``mutex.remaining`` before side
    effects). Safe to share between threads and tasks."""

    def __init__(
        self,
        name: LockName,
        wait: float,
        on_busy: OnBusy,
        options: Mapping[str, Any],
        limit: int | None = None,
    ) -> None:
        wait_options(wait, options)  # a bad wait or option fails at import, not at the first call
        check_on_busy(on_busy)
        MutexOptions.build(options)
        self.limit = None if limit is None else check_limit(limit)
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
                async with call.async_hold() as held:
                    if held.busy is not None:
                        result = call.busy(held.busy)
                        return await result if inspect.isawaitable(result) else result
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            call = _Call(self, _render(self.name, func, args, kwargs), args, kwargs)
            with call.hold() as held:
                if held.busy is not None:
                    return call.busy(held.busy)
                return func(*args, **kwargs)

        return sync_wrapper  # type: ignore[return-value]

    # --- context manager ------------------------------------------------------------------

    def __enter__(self) -> Mutex:
        call = self._block_call()
        held = call.hold()
        if not held.acquire():
            assert held.busy is not None  # set by a failed acquire()
            call.busy(held.busy)  # raises: a with-block cannot be skipped
        self._push(held)
        return held.mutex

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held = self._pop()
        assert isinstance(held, Hold)  # pushed by __enter__
        held.__exit__(exc_type, exc, tb)  # raises LockLost if auto-extension lost it

    async def __aenter__(self) -> AsyncMutex:
        call = self._block_call()
        held = call.async_hold()
        if not await held.acquire():
            assert held.busy is not None  # set by a failed acquire()
            call.busy(held.busy)  # raises: a with-block cannot be skipped
        self._push(held)
        return held.mutex

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held = self._pop()
        assert isinstance(held, AsyncHold)  # pushed by __aenter__
        await held.__aexit__(exc_type, exc, tb)

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
    def _push(self, held: Hold | AsyncHold) -> None:
        _entered.set((*_entered.get(), (self, held)))

    def _pop(self) -> Hold | AsyncHold:
        stack = _entered.get()
        for i in reversed(range(len(stack))):
            if stack[i][0] is self:
                _entered.set(stack[:i] + stack[i + 1 :])
                return stack[i][1]
        raise RuntimeError("distributed_lock: __exit__ without a matching __enter__")


_entered: ContextVar[tuple[tuple[DistributedLock, Hold | AsyncHold], ...]] = ContextVar(
    "redsync_django_entered", default=()
)


class _Call:
    """One decorated call or block: its lock name and busy answer; the ``origin`` of its
    mutex, by which ``_Signals`` knows the lock is ours."""

    def __init__(
        self, lock: DistributedLock, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self.lock = lock
        self.name = name
        self.args = args
        self.kwargs = kwargs

    def hold(self) -> Hold:
        """Return this call's lock, to be held through the process's core ``Redsync``."""
        held = get_redsync().hold(
            self.name, wait=self.lock.wait, limit=self.lock.limit, **self.lock.options
        )
        held.mutex.origin = self
        return held

    def async_hold(self) -> AsyncHold:
        """Return this call's lock, to be held through the asyncio twin of ``get_redsync()``."""
        held = (
            get_redsync()
            .asyncio()
            .hold(self.name, wait=self.lock.wait, limit=self.lock.limit, **self.lock.options)
        )
        held.mutex.origin = self
        return held

    def busy(self, exc: LockNotAcquired) -> Any:
        """Return what a busy call returns, or raise ``exc``; the body has not run."""
        on_busy = self.lock.on_busy
        if callable(on_busy):
            return on_busy(exc, *self.args, **self.kwargs)
        if on_busy == "skip":
            logger.warning("Skipped: lock %r is busy (%s).", self.name, free_in(exc.retry_after))
            return None
        if on_busy is None and self.args and isinstance(self.args[0], HttpRequest):
            return busy_response(exc)
        raise exc


class _Signals(hooks.Listener):
    """Sends the signals of ``redsync_django.signals`` for the locks of ``distributed_lock``.

    ``lock_busy`` is every outcome that ``Hold`` reports as busy (taken, timeout, gave up),
    not ``unreachable``, which raises. ``lock_released`` follows every release of a lock
    that was not lost, whatever the nodes answered; ``lock_lost`` comes before ``on_lost``.
    """

    def lock(self, event: hooks.LockEvent) -> None:
        if not isinstance(event.mutex.origin, _Call):
            return
        if event.outcome == "acquired":
            signals.lock_acquired.send(sender=DistributedLock, name=event.name)
        elif event.outcome != "unreachable":
            signals.lock_busy.send(sender=DistributedLock, name=event.name, exception=event.error)

    def unlock(self, event: hooks.UnlockEvent) -> None:
        if isinstance(event.mutex.origin, _Call) and not event.mutex.lost:
            signals.lock_released.send(sender=DistributedLock, name=event.name)

    def lost(self, event: hooks.LostEvent) -> None:
        if isinstance(event.mutex.origin, _Call):
            signals.lock_lost.send(sender=DistributedLock, name=event.name, mutex=event.mutex)


hooks.add_listener(_Signals())


def busy_response(exc: LockNotAcquired) -> HttpResponse:
    """Answer a request whose lock is busy: ``REDSYNC["BUSY_STATUS"]`` (409) with
    ``Retry-After`` = the holder's remaining TTL in whole seconds, rounded up, at least 1."""
    retry_after = retry_after_seconds(exc.retry_after)
    response = HttpResponse(
        f"Busy: another request is working on this; retry in {retry_after} s.\n",
        status=get_config().busy_status,
        content_type="text/plain; charset=utf-8",
    )
    response["Retry-After"] = str(retry_after)
    return response


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
