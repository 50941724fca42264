"""The demo's protected resource: a counter updated unsafely, plus honest bookkeeping.

The counter is read, then written back +1 a little later; only mutual exclusion keeps every
update. The bookkeeping (``note``) is atomic, so it counts every update whatever the lock does.
"""

from __future__ import annotations

import threading
from typing import Protocol

__all__ = ["MemoryReferee", "RedisReferee", "Referee"]


class Referee(Protocol):
    """The protected resource: a counter updated unsafely, plus honest bookkeeping."""

    def read(self) -> int: ...

    def write(self, value: int) -> None: ...

    def note(self, worker: int) -> None:
        """Count one update atomically and record its worker as the last holder."""

    def snapshot(self) -> tuple[int, int, str]:
        """Return (updates counted, counter, last holder)."""

    def close(self) -> None: ...


class RedisReferee:
    """The counter on its own redis-server, which is not one of the lock's nodes."""

    def __init__(self, url: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=10.0, decode_responses=True)

    def read(self) -> int:
        return int(self._client.get("counter") or 0)

    def write(self, value: int) -> None:
        self._client.set("counter", value)

    def note(self, worker: int) -> None:
        pipe = self._client.pipeline(transaction=False)
        pipe.incr("updates")
        pipe.set("holder", f"w{worker}")
        pipe.execute()

    def snapshot(self) -> tuple[int, int, str]:
        updates, counter, holder = self._client.mget("updates", "counter", "holder")
        return int(updates or 0), int(counter or 0), str(holder or "-")

    def close(self) -> None:
        self._client.close()


class MemoryReferee:
    """The counter in this process, for worker threads (no redis-server installed)."""

    def __init__(self) -> None:
        self._counter = 0
        self._updates = 0
        self._holder = "-"
        self._lock = threading.Lock()

    def read(self) -> int:
        return self._counter

    def write(self, value: int) -> None:
        self._counter = value

    def note(self, worker: int) -> None:
        with self._lock:
            self._updates += 1
            self._holder = f"w{worker}"

    def snapshot(self) -> tuple[int, int, str]:
        with self._lock:
            return self._updates, self._counter, self._holder

    def close(self) -> None:
        """Nothing to release."""
