"""Lock events for observers: one internal hook interface, free when nobody listens.

``listeners`` is a tuple, empty unless someone called ``add_listener``. Every place that
emits checks it first (``if _hooks.listeners: ...``), so with no listener an event costs one
attribute read and one truth test, and nothing here runs.

Each event has one source:

- ``lock``: the drivers' ``_drive`` wraps the acquire flow with ``observed``, once per
  ``lock()`` / ``try_lock()`` call, when the flow returns or raises.
- ``unlock`` and manual ``extend``: the same wrapper, around the release and extend flows.
- ``extend`` by auto-extension: the scheduler's shared ``_Plan.settle``.
- ``lost``: ``MutexBase._report_lost``, which reports what ``_mark_lost`` recorded (listeners
  first, then ``on_lost``).
- ``node_error``: every failed node reply of a fan-out (``RedsyncBase._tallied`` for the
  drivers, ``_Plan.finish`` for auto-extension).

The auto-extension scheduler hands its events back as reports (``extend_report``,
``node_errors_report``, ``_report_lost``), called with ``on_lost`` after the batch: never
under the scheduler's lock.

Listeners run inline, on the caller's thread or task (the auto-extension thread or task for
auto extensions and losses). An exception in a listener is logged and never reaches the lock
machinery: an observer must not change what a lock does.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ._algorithm.effects import Answer, Effect, FanOut, Op
from ._algorithm.flows import Extended
from ._exceptions import LockNotAcquired, LockTaken, LockTimeout, NodeError, QuorumUnreachable

if TYPE_CHECKING:
    from ._base import MutexBase

__all__ = [
    "ExtendEvent",
    "Listener",
    "LockEvent",
    "LostEvent",
    "MutexEvent",
    "NodeErrorEvent",
    "Outcome",
    "UnlockEvent",
    "add_listener",
    "emit_lost",
    "emit_node_errors",
    "extend_report",
    "listeners",
    "node_errors_report",
    "observed",
    "remove_listener",
]

logger = logging.getLogger("redsync")

T = TypeVar("T")
Flow = Generator[Effect, Answer, T]

#: How a ``lock()`` / ``try_lock()`` call ended.
Outcome = Literal["acquired", "taken", "unreachable", "timeout", "gave_up"]


@dataclass(frozen=True, slots=True)
class MutexEvent:
    """What every lock event carries: the mutex, its ``name`` and its Redis ``key``."""

    mutex: MutexBase

    @property
    def name(self) -> str:
        return self.mutex.name

    @property
    def key(self) -> str:
        return self.mutex.key


@dataclass(frozen=True, slots=True)
class LockEvent(MutexEvent):
    """A ``lock()`` or ``try_lock()`` call finished.

    ``wait_s``: seconds the call took; ``attempts``: acquire fan-outs sent; ``started_ns``:
    wall-clock start (``time.time_ns()``, for spans); ``error``: the exception the call raises
    (None when acquired). Sent when the flow decides, just before the mutex records the result.
    """

    outcome: Outcome
    wait_s: float
    attempts: int
    started_ns: int
    error: LockNotAcquired | None = None


@dataclass(frozen=True, slots=True)
class UnlockEvent(MutexEvent):
    """An ``unlock()`` sent its release: ``released`` is what it returns; ``held_s`` the
    seconds since the acquisition (None when unknown: a lock taken with ``value=`` or before
    the listener was added); ``duration_s`` the release itself."""

    released: bool
    held_s: float | None
    started_ns: int
    duration_s: float


@dataclass(frozen=True, slots=True)
class ExtendEvent(MutexEvent):
    """An extension finished: ``ok`` when a quorum extended it; ``auto`` when the
    auto-extension scheduler sent it (else a manual ``extend()``)."""

    ok: bool
    auto: bool
    started_ns: int
    duration_s: float


@dataclass(frozen=True, slots=True)
class LostEvent(MutexEvent):
    """Auto-extension could not keep the lock (sent once, before the mutex's ``on_lost``)."""

    reason: str


@dataclass(frozen=True, slots=True)
class NodeErrorEvent:
    """One node failed to answer a fan-out. ``address`` never holds a password; ``kind`` is
    short and stable (``"timeout"`` or the redis-py exception class, e.g.
    ``"ConnectionError"``), fit for a metric attribute."""

    error: NodeError
    kind: str

    @property
    def address(self) -> str:
        return self.error.address

    @property
    def node(self) -> int:
        return self.error.node


class Listener:
    """Receives lock events; subclass it and override the methods you need (each is a no-op).

    Methods run inline where the event happens: keep them quick, and never block or take
    locks in them. ``event.mutex.origin`` is whatever the code that built the mutex set there
    (an adapter marks its own locks that way); the core never reads it.
    """

    def lock(self, event: LockEvent) -> None:
        """A ``lock()`` / ``try_lock()`` call finished (acquired or not)."""

    def unlock(self, event: UnlockEvent) -> None:
        """An ``unlock()`` sent its release to the nodes."""

    def extend(self, event: ExtendEvent) -> None:
        """A manual or automatic extension finished."""

    def lost(self, event: LostEvent) -> None:
        """Auto-extension lost a lock."""

    def node_error(self, event: NodeErrorEvent) -> None:
        """A node failed to answer."""


listeners: tuple[Listener, ...] = ()
_registry_lock = threading.Lock()


def add_listener(listener: Listener) -> None:
    """Start sending lock events of this process to ``listener`` (no-op if already added).

    Raises:
        TypeError: ``listener`` is not a ``Listener``.
    """
    global listeners
    if not isinstance(listener, Listener):
        raise TypeError(
            f"add_listener() takes a redsync_core.hooks.Listener, got {type(listener).__name__}; "
            "subclass Listener and override the events you need."
        )
    with _registry_lock:
        if listener not in listeners:
            listeners = (*listeners, listener)


def remove_listener(listener: Listener) -> None:
    """Stop sending events to ``listener`` (no-op if it was not added)."""
    global listeners
    with _registry_lock:
        listeners = tuple(x for x in listeners if x is not listener)


def _emit(method: str, event: object) -> None:
    for listener in listeners:
        try:
            getattr(listener, method)(event)
        except Exception:  # an observer must never change what a lock does: log, go on
            logger.exception("redsync listener %r failed on a %s event", listener, method)


def _outcome(exc: LockNotAcquired) -> Outcome:
    if isinstance(exc, LockTaken):
        return "taken"
    if isinstance(exc, QuorumUnreachable):
        return "unreachable"
    if isinstance(exc, LockTimeout):
        return "timeout"
    return "gave_up"


def error_kind(error: NodeError) -> str:
    """Return a short, stable kind for ``error``: ``"timeout"``, or the exception class that
    the transport named at the start of its reason (``"ConnectionError"``), else ``"error"``."""
    reason = error.reason
    if reason.startswith("no reply"):
        return "timeout"
    head, sep, _ = reason.partition(":")
    return head if sep and head.isidentifier() else "error"


def emit_node_errors(replies: tuple[Any, ...]) -> None:
    """Send a ``node_error`` event for every ``NodeError`` among a fan-out's replies."""
    for reply in replies:
        if isinstance(reply, NodeError):
            _emit("node_error", NodeErrorEvent(reply, error_kind(reply)))


def node_errors_report(replies: tuple[Any, ...]) -> Callable[[], None]:
    """Return a call that sends ``emit_node_errors(replies)`` later."""
    return functools.partial(emit_node_errors, replies)


def emit_lost(mutex: MutexBase, reason: str) -> None:
    """Send the ``lost`` event of ``mutex``."""
    _emit("lost", LostEvent(mutex, reason))


def extend_report(mutex: MutexBase, ok: bool, elapsed_ms: int) -> Callable[[], None]:
    """Return a call that sends the ``extend`` event of an automatic extension that just
    ended after ``elapsed_ms`` (timed now, sent later)."""
    started_ns = time.time_ns() - elapsed_ms * 1_000_000
    event = ExtendEvent(mutex, ok, True, started_ns, elapsed_ms / 1000)
    return functools.partial(_emit, "extend", event)


#: Semaphores and multi-mutexes send these; listeners hear about them as lock, unlock, extend.
_OPERATION = {
    Op.ACQUIRE_ANY: Op.ACQUIRE,
    Op.ACQUIRE_ALL: Op.ACQUIRE,
    Op.RELEASE_ALL: Op.RELEASE,
    Op.EXTEND_ALL: Op.EXTEND,
}


def observed(mutex: MutexBase, flow: Flow[T]) -> Flow[T]:
    """Wrap a flow a driver runs for ``mutex``, and send its event when it ends.

    The first command a flow sends names the operation: ACQUIRE a ``lock``, RELEASE an
    ``unlock``, EXTEND a manual ``extend``; other flows (``valid()``) pass through. An extend
    flow that refuses without sending anything (validity used up) is a failed ``extend``.
    """
    started_ns = time.time_ns()
    started = time.perf_counter()
    try:
        first = next(flow)
    except StopIteration as done:
        if isinstance(done.value, Extended):
            _emit("extend", ExtendEvent(mutex, False, False, started_ns, 0.0))
        return done.value  # type: ignore[no-any-return]
    op = _OPERATION.get(first.op, first.op) if isinstance(first, FanOut) else None
    if op is Op.ACQUIRE:
        return (yield from _lock(mutex, flow, first, started_ns, started))
    reply = yield first
    result: T = yield from _rest(flow, reply)
    duration_s = time.perf_counter() - started
    if op is Op.RELEASE:
        held_since, mutex._held_since = mutex._held_since, None
        held_s = None if held_since is None else time.perf_counter() - held_since
        released = bool(result) and not mutex.lost
        _emit("unlock", UnlockEvent(mutex, released, held_s, started_ns, duration_s))
    elif op is Op.EXTEND:
        ok = isinstance(result, Extended) and result.until_ms is not None
        _emit("extend", ExtendEvent(mutex, ok, False, started_ns, duration_s))
    return result


def _rest(flow: Flow[T], reply: Answer) -> Flow[T]:
    """Forward the rest of ``flow`` after its first effect was answered with ``reply``."""
    while True:
        try:
            effect = flow.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        reply = yield effect


def _lock(
    mutex: MutexBase, flow: Flow[T], first: Effect, started_ns: int, started: float
) -> Flow[T]:
    attempts = 0
    effect = first
    try:
        while True:
            if (
                isinstance(effect, FanOut)
                and _OPERATION.get(effect.op, effect.op) is Op.ACQUIRE
                and not effect.early
            ):
                attempts += 1  # tries, as the errors count them (not early wake-up attempts)
            reply = yield effect
            try:
                effect = flow.send(reply)
            except StopIteration as done:
                result: T = done.value
                break
    except LockNotAcquired as exc:
        wait_s = time.perf_counter() - started
        _emit("lock", LockEvent(mutex, _outcome(exc), wait_s, attempts, started_ns, exc))
        raise
    now = time.perf_counter()
    mutex._held_since = now
    _emit("lock", LockEvent(mutex, "acquired", now - started, attempts, started_ns))
    return result
