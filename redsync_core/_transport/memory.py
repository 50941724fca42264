"""``memory://NAME`` nodes: an in-process key store with Redis's semantics for our commands.

For unit tests and demos. Stores with the same NAME are shared inside one process (so two
``Redsync`` objects contend), never between processes. Keys expire on the monotonic clock.
"""

from __future__ import annotations

import threading

from .._algorithm.effects import MISSING, OK, FanOut, NodeReply, Op, Status
from .._clock import monotonic_ms

__all__ = ["MemoryStore", "memory_store"]


class MemoryStore:
    """A thread-safe dict of ``key -> (value, expires_at_ms)`` acting as one Redis node."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._data: dict[str, tuple[str, int | None]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str, now_ms: int) -> tuple[str, int | None] | None:
        entry = self._data.get(key)
        if entry is not None and entry[1] is not None and entry[1] <= now_ms:
            del self._data[key]
            return None
        return entry

    def _foreign(self, entry: tuple[str, int | None], now_ms: int) -> NodeReply:
        expires = entry[1]
        return NodeReply(Status.TAKEN, None if expires is None else expires - now_ms)

    def apply(self, effect: FanOut) -> NodeReply:
        """Carry out one fan-out command on this store, atomically."""
        key, value = effect.key, effect.value
        with self._lock:
            now = monotonic_ms()
            entry = self._live(key, now)
            if effect.op is Op.ACQUIRE:
                if entry is not None and entry[0] != value:
                    return self._foreign(entry, now)
                self._data[key] = (value, now + effect.ttl_ms)
                return OK
            if effect.op is Op.INSPECT:
                if entry is None:
                    return MISSING
                ttl = None if entry[1] is None else entry[1] - now
                status = Status.OK if entry[0] == value else Status.TAKEN
                return NodeReply(status, ttl, entry[0])
            if effect.op is Op.DELETE:
                return OK if self._data.pop(key, None) is not None else MISSING
            if entry is None:
                if effect.op is Op.EXTEND and effect.set_nx:
                    self._data[key] = (value, now + effect.ttl_ms)
                    return OK
                return MISSING
            if entry[0] != value:
                return self._foreign(entry, now)
            if effect.op is Op.RELEASE:
                del self._data[key]
            elif effect.op is Op.EXTEND:
                self._data[key] = (value, now + effect.ttl_ms)
            return OK

    def clear(self) -> None:
        """Forget every key."""
        with self._lock:
            self._data.clear()


_stores: dict[str, MemoryStore] = {}
_stores_lock = threading.Lock()


def memory_store(name: str) -> MemoryStore:
    """Return the process-wide store called ``name``, creating it on first use."""
    with _stores_lock:
        store = _stores.get(name)
        if store is None:
            store = _stores[name] = MemoryStore(name)
        return store
