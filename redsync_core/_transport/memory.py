"""``memory://NAME`` nodes: an in-process key store with Redis's semantics for our commands.

For unit tests and demos. Stores with the same NAME are shared inside one process (so two
``Redsync`` objects contend), never between processes. Keys expire on the monotonic clock.
"""

from __future__ import annotations

import re
import threading

from .._algorithm.effects import MISSING, OK, FanOut, KeyState, NodeReply, Op, ScanPage, Status
from .._algorithm.fencing import fence_key
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
            if effect.keys:
                return self._apply_keys(effect, now)
            entry = self._live(key, now)
            if effect.op is Op.ACQUIRE:
                if entry is not None and entry[0] != value:
                    return self._foreign(entry, now)
                self._data[key] = (value, now + effect.ttl_ms)
                return OK
            if effect.op is Op.FENCED_ACQUIRE:
                if entry is not None and entry[0] != value:
                    return self._foreign(entry, now)
                self._data[key] = (value, now + effect.ttl_ms)
                return NodeReply(Status.OK, counter=self._counter(key, now))
            if effect.op is Op.INSPECT:
                if entry is None:
                    return MISSING
                ttl = None if entry[1] is None else entry[1] - now
                status = Status.OK if entry[0] == value else Status.TAKEN
                return NodeReply(status, ttl, entry[0])
            if effect.op is Op.DELETE:
                return OK if self._data.pop(key, None) is not None else MISSING
            if effect.op is Op.LEAVE:
                return OK  # no waiter queues here (no notices either)
            if effect.op is Op.SCAN:
                return NodeReply(Status.OK, page=self._scan(effect, now))
            if effect.op is Op.SWAP and entry is not None and entry[0] == effect.replaces:
                self._data[key] = (value, now + effect.ttl_ms)
                return OK
            if entry is None:
                if effect.op is Op.EXTEND and effect.set_nx:
                    self._data[key] = (value, now + effect.ttl_ms)
                    return OK
                return MISSING
            if entry[0] != value:
                return self._foreign(entry, now)
            if effect.op is Op.RELEASE:
                del self._data[key]
            elif effect.op in (Op.EXTEND, Op.SWAP):
                self._data[key] = (value, now + effect.ttl_ms)
            elif effect.op is Op.FENCE and self._counter(key, now) < effect.token:
                self._data[fence_key(key)] = (str(effect.token), None)
            return OK

    def _counter(self, key: str, now_ms: int) -> int:
        """Return the fencing counter of the lock ``key`` (0 when it has none)."""
        entry = self._live(fence_key(key), now_ms)
        return 0 if entry is None else int(entry[0])

    def _scan(self, effect: FanOut, now_ms: int) -> ScanPage:
        """Return ``effect.page_size`` keys matching the pattern from ``effect.cursor`` on.

        The cursor is a position in the sorted keys: like Redis, a key present for the whole
        scan is listed once; one added or removed meanwhile may or may not be.
        """
        match = glob_regex(effect.key).fullmatch
        keys = sorted(k for k in self._data if match(k) and self._live(k, now_ms))
        end = effect.cursor + effect.page_size
        page = []
        for key in keys[effect.cursor : end]:
            value, expires = self._data[key]
            page.append(
                KeyState(key, "string", value, None if expires is None else expires - now_ms)
            )
        return ScanPage(end if end < len(keys) else 0, tuple(page))

    def _apply_keys(self, effect: FanOut, now: int) -> NodeReply:
        """Carry out a command on several keys, as the scripts in ``scripts.py`` do."""
        value, ttl_ms = effect.value, effect.ttl_ms
        entries = [self._live(key, now) for key in effect.keys]
        foreign = [(i, e) for i, e in enumerate(entries) if e is not None and e[0] != value]
        if effect.op is Op.ACQUIRE_ANY:
            usable = [i for i, entry in enumerate(entries) if entry is None or entry[0] == value]
            if not usable:
                ttls = [e[1] - now for _, e in foreign if e[1] is not None]
                return NodeReply(Status.TAKEN, min(ttls) if ttls else None)
            slot = usable[0]
            self._data[effect.keys[slot]] = (value, now + ttl_ms)
            return NodeReply(Status.OK, slot=slot)
        if effect.op is Op.ACQUIRE_ALL:
            if foreign:
                expiries = [e[1] for _, e in foreign]
                if None in expiries:
                    return NodeReply(Status.TAKEN)
                return NodeReply(Status.TAKEN, max(e for e in expiries if e is not None) - now)
            for key in effect.keys:
                self._data[key] = (value, now + ttl_ms)
            return OK
        missing = False
        for key, entry in zip(effect.keys, entries, strict=True):
            if entry is None:
                if effect.op is Op.EXTEND_ALL and effect.set_nx:
                    self._data[key] = (value, now + ttl_ms)
                else:
                    missing = True
            elif entry[0] == value:
                if effect.op is Op.RELEASE_ALL:
                    del self._data[key]
                elif effect.op is Op.EXTEND_ALL:
                    self._data[key] = (value, now + ttl_ms)
        if foreign:
            return self._foreign(foreign[-1][1], now)
        return MISSING if missing else OK

    def clear(self) -> None:
        """Forget every key."""
        with self._lock:
            self._data.clear()


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Redis glob (``*``, ``?``, ``[abc]``, ``[^a-z]``, ``\\`` escapes) to a regex."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        i += 1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "\\" and i < len(pattern):
            out.append(re.escape(pattern[i]))
            i += 1
        elif char == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i:end]
            negate = body.startswith("^")
            members = "".join("-" if c == "-" else re.escape(c) for c in body[negate:])
            out.append(f"[{'^' if negate else ''}{members}]")
            i = end + 1
        else:
            out.append(re.escape(char))
    return re.compile("".join(out), re.DOTALL)


_stores: dict[str, MemoryStore] = {}
_stores_lock = threading.Lock()


def memory_store(name: str) -> MemoryStore:
    """Return the process-wide store called ``name``, creating it on first use."""
    with _stores_lock:
        store = _stores.get(name)
        if store is None:
            store = _stores[name] = MemoryStore(name)
        return store
