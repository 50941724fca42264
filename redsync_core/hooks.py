"""Observe every lock of this process: subclass ``Listener`` and ``add_listener`` it.

::

    from redsync_core import hooks

    class Contention(hooks.Listener):
        def lock(self, event: hooks.LockEvent) -> None:
            if event.outcome != "acquired":
                print(f"{event.name}: {event.outcome} after {event.wait_s:.3f} s")

    hooks.add_listener(Contention())

Events: ``lock`` (a ``lock()`` / ``try_lock()`` call ended: outcome, wait, attempts),
``unlock`` (released or not, how long it was held), ``extend`` (manual or automatic, ok or
not), ``lost`` (auto-extension could not keep a lock) and ``node_error`` (a node failed to
answer; its address without password and a short kind). With no listener the core skips all
of it: the cost is one check of an empty tuple. ``redsync_core.otel`` and the Django and
Celery signals are listeners; an adapter recognises its own locks by ``mutex.origin``, which
it sets on the mutexes it builds.
"""

from __future__ import annotations

from ._hooks import (
    ExtendEvent,
    Listener,
    LockEvent,
    LostEvent,
    MutexEvent,
    NodeErrorEvent,
    Outcome,
    UnlockEvent,
    add_listener,
    remove_listener,
)

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
    "remove_listener",
]
