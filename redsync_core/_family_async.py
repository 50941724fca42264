"""The asyncio lock family beyond the mutex: ``AsyncSemaphore`` and ``AsyncMultiMutex``.

Both subclass the mutex and are driven by the flows of ``_algorithm.family``: a semaphore acquires
a permit (one Redlock key of ``limit``) and then extends and releases that key like a mutex; a
multi-mutex runs the mutex flows over all of its keys at once. Kept line for line in the same
order as ``_family_sync.py``.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from . import _hooks as hooks
from ._algorithm import family
from ._algorithm.effects import Answer, Effect
from ._algorithm.flows import Target
from ._async import AsyncMutex
from ._base import logger
from ._exceptions import LockNotAcquired, QuorumUnreachable
from ._family import check_limit, check_names, check_permit_options

if TYPE_CHECKING:
    from ._async import AsyncRedsync

__all__ = ["AsyncMultiMutex", "AsyncSemaphore"]

T = TypeVar("T")


class AsyncSemaphore(AsyncMutex):
    """A distributed semaphore: at most ``limit`` holders at once, on a quorum of nodes.

    Each permit is its own Redlock key (``<key>:0`` ... ``<key>:<limit - 1>``); a holder owns
    one of them on a quorum. Not thread-safe: use one AsyncSemaphore object per holder. ``lock``,
    ``try_lock`` and ``unlock`` are the same as ``acquire``, ``try_acquire`` and ``release``.
    """

    def __init__(self, redsync: AsyncRedsync, name: str, limit: int, **options: Any) -> None:
        super().__init__(redsync, name, **options)
        check_permit_options(self._options)
        self._limit = check_limit(limit)
        self._base_key = self._key
        self._permit: int | None = None

    @property
    def limit(self) -> int:
        """How many holders the semaphore admits at once."""
        return self._limit

    @property
    def permit(self) -> int | None:
        """The permit held (``0`` ... ``limit - 1``) while held, else None."""
        return self._permit if self.held else None

    async def acquire(self, *, timeout: float | None = None) -> None:
        """Take a permit, retrying up to ``tries`` times; ``timeout`` (s) bounds the whole call.

        Raises:
            LockError: this AsyncSemaphore object already holds a permit.
            LockTaken: the last attempt found every permit held on a quorum.
            QuorumUnreachable: node errors left fewer than a quorum able to answer.
            LockTimeout: ``timeout`` passed before a permit was free.
            LockNotAcquired: the tries ran out otherwise.
        """
        await self.lock(timeout=timeout)

    async def try_acquire(self) -> bool:
        """Make one attempt; return False when every permit is held.

        Raises:
            LockError: this AsyncSemaphore object already holds a permit.
            QuorumUnreachable: node errors left fewer than a quorum able to answer.
        """
        return await self.try_lock()

    async def try_lock(self) -> bool:
        """Make one attempt; return False when every permit is held (``try_acquire``).

        Raises:
            LockError: this Semaphore object already holds a permit.
            QuorumUnreachable: node errors left fewer than a quorum able to answer.
        """
        value = self._begin_lock()
        flow = family.try_permit(
            self._options,
            Target(self._name, self._base_key, value, self._node_count),
            self._limit,
            randrange=self._rng.randrange,
            quiet=not hooks.listeners,  # a listener's LockEvent carries the error
        )
        try:
            permit = await self._drive(flow)
        except QuorumUnreachable:
            raise
        except LockNotAcquired:
            return False
        if permit is None:
            return False
        self._hold_permit(value, permit)
        return True

    async def release(self) -> bool:
        """Give the permit back; return True if a quorum deleted our value (see ``unlock``)."""
        return await self.unlock()

    async def _acquire(self, tries: int | None, timeout_ms: int | None) -> None:
        value = self._begin_lock()
        # A token of this call for the turns among the waiters of each permit (notices).
        waiter = object() if self._options.wake_on_release and tries != 1 else None
        flow = family.acquire_permit(
            self._options,
            Target(self._name, self._base_key, value, self._node_count),
            self._limit,
            now_ms=self._clock(),
            tries=tries,
            timeout_ms=timeout_ms,
            randrange=self._rng.randrange,
            waiter=waiter,
        )
        keys = family.permit_keys(self._base_key, self._limit)
        permit = None
        try:
            permit = await self._drive(flow)
        except LockNotAcquired as exc:
            logger.debug("Could not acquire %r: %s", self._name, type(exc).__name__)
            raise
        finally:
            if waiter is not None:  # it waited for each permit and took at most one
                for slot, key in enumerate(keys):
                    won = permit is not None and permit.slot == slot
                    self._redsync._left(key, waiter, won=won)
        self._hold_permit(value, permit)

    def _hold_permit(self, value: str, permit: family.Permit) -> None:
        """Hold the permit ``value`` won."""
        self._permit = permit.slot
        self._key = family.permit_keys(self._base_key, self._limit)[permit.slot]
        self._start_holding(value, permit.until_ms)

    async def __aenter__(self) -> AsyncSemaphore:
        await self.lock()
        return self


class AsyncMultiMutex(AsyncMutex):
    """One lock over several names: all of them or none, released together.

    The keys are taken in one sorted order, all at once on each node (one round trip per node
    where the keys allow it), so two multi-mutexes over overlapping names never deadlock.
    """

    _queues = False  # its attempts are multi-key scripts: its waiters are not queued

    def __init__(self, redsync: AsyncRedsync, names: Iterable[str], **options: Any) -> None:
        unique = check_names(names)
        super().__init__(redsync, ",".join(unique), **options)
        self._names = unique
        self._keys = family.multi_keys(redsync.key_prefix, unique)
        self._key = self._keys[0]

    @property
    def names(self) -> tuple[str, ...]:
        """The names, without duplicates, sorted (without the key prefix)."""
        return self._names

    @property
    def keys(self) -> tuple[str, ...]:
        """The Redis keys, in the order they are taken."""
        return self._keys

    def _target(self, value: str | None = None) -> Target:
        target = super()._target(value)
        return Target(target.name, target.key, target.value, target.nodes, self._keys)

    async def _drive(self, flow: Generator[Effect, Answer, T]) -> T:
        return await super()._drive(family.over_keys(flow, self._keys))

    async def __aenter__(self) -> AsyncMultiMutex:
        await self.lock()
        return self
