"""The sync API: ``Redsync`` and ``Mutex``, thin drivers of the flows in ``_algorithm``.

Kept line for line in the same order as ``_async.py``: ``scripts/check-twins`` (run by
``make lint``) fails when they drift; deliberate differences are marked ``# twin: sync-only``.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from . import _hooks as hooks
from ._algorithm import flows
from ._algorithm.effects import Answer, Effect, FanOut, Op, Sleep, Tally, Woke
from ._async import AsyncRedsync
from ._autoextend import Replies, sync_scheduler
from ._base import (
    LockInfo,
    LockListing,
    MutexBase,
    NodeHealth,
    PingReport,
    RedsyncBase,
    check_value,
    lock_listing,
    logger,
)
from ._exceptions import LockLost, LockNotAcquired, NodeError, QuorumUnreachable
from ._locked import F, locked, locked_limit, wait_options
from ._naming import LockName
from ._transport import sync as transport
from ._transport.build import build_sync_nodes
from ._transport.commands import prepare
from ._transport.listing import list_keys
from ._transport.notices import SyncNotices, new_waiter

__all__ = ["Hold", "Mutex", "Redsync"]

if TYPE_CHECKING:  # twin: sync-only
    from ._family_sync import MultiMutex, Semaphore

T = TypeVar("T")


class Redsync(RedsyncBase):
    """A set of independent Redis masters on which mutexes are held by a quorum.

    Args:
        nodes: URLs (``redis://``, ``rediss://``, ``unix://``, ``memory://NAME``) or clients
            (``redis.Redis``, ``redis.cluster.RedisCluster``, Sentinel ``master_for(...)``).
        key_prefix: prepended to every mutex name to form the Redis key.
        client_options: keyword arguments for the clients built from URLs.
        **defaults: default values for any ``new_mutex`` option.

    Raises:
        ConfigurationError: bad nodes, URL or option (nothing is sent to Redis).
    """

    def __init__(
        self,
        nodes: Sequence[Any],
        *,
        key_prefix: str = "",
        client_options: Mapping[str, Any] | None = None,
        **defaults: Any,
    ) -> None:
        super().__init__(nodes, key_prefix, client_options, defaults)
        self._nodes: list[transport.SyncNode] = build_sync_nodes(nodes, client_options)
        self._node_count = len(self._nodes)
        self._twin_lock = threading.Lock()  # threads asking for a twin at once share one
        self._notices = SyncNotices(self._nodes, lambda: self._clock())  # twin: sync-only
        # twin: sync-only
        self._async_twins: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncRedsync] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def addresses(self) -> tuple[str, ...]:
        """Each node's address without credentials, for messages and logs."""
        return tuple(node.address for node in self._nodes)

    def new_mutex(self, name: str, **options: Any) -> Mutex:
        """Return a mutex for ``name`` (see the option table in the README).

        Raises:
            ConfigurationError: an empty name or an invalid option.
        """
        return Mutex(self, name, **options)

    def new_semaphore(self, name: str, limit: int, **options: Any) -> Semaphore:
        """Return a semaphore ``name`` that admits at most ``limit`` holders at once.

        Takes the ``new_mutex`` options except ``value``.

        Raises:
            ConfigurationError: an empty name, a limit outside [1, 1024], or an invalid option.
        """
        from ._family_sync import Semaphore

        return Semaphore(self, name, limit, **options)

    def new_multi_mutex(self, names: Iterable[str], **options: Any) -> MultiMutex:
        """Return one lock over all of ``names`` (all or none, released together).

        Raises:
            ConfigurationError: no names, an empty name, or an invalid option.
        """
        from ._family_sync import MultiMutex

        return MultiMutex(self, names, **options)

    def hold(
        self, name: str, *, wait: float = 0.0, limit: int | None = None, **options: Any
    ) -> Hold:
        """Return a ``Hold`` of the lock ``name``, for adapters and other callers that
        must tell "busy" apart from errors raised by the code they protect.

        ``wait``: seconds to keep trying while another holder has it (0: one attempt).
        ``limit``: hold a permit of a semaphore admitting that many holders instead of a mutex.
        ``with rs.hold(name) as held:`` then ``if held.busy is not None: ...``.

        Raises:
            ConfigurationError: an invalid name, ``wait`` or option.
        """
        mutex_options, timeout = wait_options(wait, options)
        if limit is not None:
            return Hold(self.new_semaphore(name, limit, **mutex_options), timeout)
        return Hold(self.new_mutex(name, **mutex_options), timeout)

    def locked(
        self,
        name: LockName = None,
        *,
        wait: float = 0.0,
        limit: int | None = None,
        **options: Any,
    ) -> Callable[[F], F]:
        """Decorate a sync or ``async def`` function to run only while holding a lock.

        ``name``: None (``module.qualname``), a template filled from the call's arguments
        (``"invoice:{invoice_id}"``) or a callable taking the same arguments. ``wait``: seconds
        to keep retrying (0: one attempt). ``limit``: None (one call at a time), or let up to
        that many calls run at once, each holding a permit of a semaphore (``new_semaphore``).
        Functions of the other kind lock through the twin. An invalid ``wait``, ``limit`` or
        option raises ``ConfigurationError`` at decoration.

        Raises (from the decorated call):
            LockTaken: another holder has the lock, or every permit is held (``retry_after``
                says for how long).
            LockTimeout: ``wait`` > 0 ran out before the lock (or a permit) was free.
            QuorumUnreachable: node errors left fewer than a quorum able to answer.
            LockLost: auto-extension lost the lock while the function ran.
        """
        limit = locked_limit(limit, self._options(wait_options(wait, options)[0]))
        return locked(lambda: self, self.asyncio, name, wait, limit, options)  # twin: sync-only

    # twin: sync-only
    def asyncio(self) -> AsyncRedsync:
        """Return the asyncio twin for the running event loop (same URLs, prefix and options).

        Raises:
            ConfigurationError: the nodes are sync client objects, not URLs.
        """
        loop = asyncio.get_running_loop()
        with self._twin_lock:  # the loops of other threads add theirs; close() reads them all
            twin = self._async_twins.get(loop)
            if twin is None:
                nodes, kwargs = self._twin_arguments("redis.asyncio")
                twin = self._async_twins[loop] = AsyncRedsync(nodes, **kwargs)
        return twin

    def ping(self, timeout: float = 2.0) -> PingReport:
        """Ask every node for its version within ``timeout`` s; report latency and the quorum."""
        healths = [self._ping(node, timeout) for node in self._nodes]  # twin: sync-only
        return PingReport(tuple(healths), self.quorum)

    def _ping(self, node: transport.SyncNode, timeout: float) -> NodeHealth:
        started = time.perf_counter()
        try:
            version = node.ping(timeout)  # twin: sync-only
        except NodeError as exc:
            return NodeHealth(node.index, node.address, False, error=exc.reason)
        latency_ms = (time.perf_counter() - started) * 1000
        return NodeHealth(node.index, node.address, True, latency_ms, version)

    def inspect(self, name: str) -> LockInfo:
        """Read the lock ``name`` on every node: who holds it and for how long."""
        effect = self._probe(Op.INSPECT, name)
        tally = self._fan_out(effect)
        return self._lock_info(name, effect.key, self.addresses, tally, self.quorum)

    def list_locks(
        self, pattern: str = "*", *, page_size: int = 100, timeout: float = 10.0
    ) -> LockListing:
        """List the locks whose names match the glob ``pattern``, as seen on every node.

        SCANs the keys under the key prefix on all nodes at once, ``page_size`` keys a call,
        for at most ``timeout`` seconds. Returns one ``LockInfo`` per name, sorted, with the
        quorum verdict; ``.skipped`` counts keys that are not locks, ``.partial`` says a node
        failed or the time ran out before it was listed to the end.

        Raises:
            ConfigurationError: an empty pattern, or a page size or timeout out of range.
        """
        match, count, budget_ms = self._listing_arguments(pattern, page_size, timeout)
        scans = list_keys(self._nodes, match, count, budget_ms)
        return lock_listing(self.key_prefix, scans, self.quorum)

    def force_release(self, name: str) -> int:
        """Delete the lock ``name`` on every node whatever its holder; return how many had it.

        For operators clearing a stuck lock: the holder is not told and may still be working.
        """
        tally = self._fan_out(self._probe(Op.DELETE, name))
        return tally.ok

    def release_listed(self, info: LockInfo) -> int:
        """Delete a listed lock where it still holds the value listed; return on how many nodes.

        For clearing what ``list_locks`` showed an operator: a node where the lock changed
        hands since, or where the key is not a lock, keeps its key. The holder is not told.
        Never raises for node errors (a node that fails keeps its key until it expires).
        """
        deleted = 0
        for effect in self._release_effects(info):
            tally = self._fan_out(effect)
            deleted += tally.ok
        return deleted

    def _fan_out(self, effect: FanOut, order: Sequence[int] | None = None) -> Tally:
        started = self._clock()
        replies = transport.fan_out(self._nodes, effect, order)
        return self._tallied(replies, started)

    def _extend_many(self, effects: Sequence[FanOut]) -> list[Replies]:
        return transport.extend_many(self._nodes, effects)

    # twin: sync-only
    def _sleep(self, effect: Sleep) -> Answer:
        """Wait ``effect.ms``; with a key, wake early on a release notice for it (or for any
        of ``effect.keys``)."""
        if effect.key is None or effect.ms <= 0 or not self._notices.available:
            time.sleep(effect.ms / 1000)
            return None
        if effect.then is not None:
            prepare(effect.then)
        if effect.keys:
            woken = self._notices.wait_any(
                effect.keys, effect.since_ms, effect.ms, effect.nodes, effect.waiter
            )
            return Woke(self._clock()) if woken else None  # None: the whole delay passed
        woken = self._notices.wait(
            effect.key, effect.since_ms, effect.ms, effect.nodes, effect.waiter
        )
        if not woken:
            return None  # the whole delay passed
        named, granted = self._notices.named(effect.key, effect.waiter, effect.since_ms)
        return Woke(self._clock(), named, granted)

    # twin: sync-only
    def _settle(self) -> None:
        """A lock() call is about to try: the notices that came before it are no news to it."""
        self._notices.settle()

    # twin: sync-only
    def _left(self, key: str, waiter: object, won: bool) -> None:
        """A lock() call for ``key`` ended: the next waiter of the key may have the turn."""
        self._notices.leave(key, waiter, won)

    def close(self) -> None:
        """Close every connection this object and its twins opened, in any thread or loop,
        and the release notices' subscriber connections (the running loop's, for asyncio).

        Clients passed in as objects keep their pools. The object stays usable: it connects
        again when next used.
        """
        self._notices.close()  # twin: sync-only
        for node in self._nodes:
            node.close()
        with self._twin_lock:  # twin: sync-only
            twins = list(self._async_twins.values())
        for twin in twins:  # twin: sync-only
            twin._close_nowait()

    def __enter__(self) -> Redsync:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Mutex(MutexBase):
    """A distributed lock held on a quorum of a ``Redsync``'s nodes. Not thread-safe:
    use one Mutex per holder."""

    def __init__(self, redsync: Redsync, name: str, **options: Any) -> None:
        super().__init__(name, redsync.key_prefix, redsync._options(options), len(redsync._nodes))
        self._redsync = redsync

    def lock(self, *, timeout: float | None = None) -> None:
        """Take the lock, retrying up to ``tries`` times; ``timeout`` (s) bounds the whole call.

        Raises:
            LockError: this Mutex already holds the lock.
            LockTaken: the last attempt found a quorum held by another value.
            QuorumUnreachable: node errors left fewer than a quorum able to answer.
            LockTimeout: ``timeout`` passed before the lock was acquired.
            LockNotAcquired: the tries ran out otherwise.
        """
        self._acquire(self._options.tries, self._timeout_ms(timeout))

    def try_lock(self) -> bool:
        """Make one attempt; return False when another holder has it.

        Raises:
            LockError: this Mutex already holds the lock.
            QuorumUnreachable: node errors left fewer than a quorum able to answer.
        """
        value = self._begin_lock()
        flow = flows.try_acquire(
            self._options,
            self._target(value),
            fresh=self._draws_values,
            quiet=not hooks.listeners,  # a listener's LockEvent carries the error
        )
        try:
            acquired = self._drive(flow)
        except QuorumUnreachable:
            raise
        except LockNotAcquired:
            return False
        if acquired is None:
            return False
        self._hold(value, acquired)
        return True

    def _acquire(self, tries: int | None, timeout_ms: int | None) -> None:
        value = self._begin_lock()
        # This call as a waiter: its place in the key's queues, and its turns in this process.
        waiter = new_waiter(value) if self._options.wake_on_release and tries != 1 else None
        if waiter is not None:  # twin: sync-only
            self._redsync._settle()
        target = self._target(value)
        flow = flows.acquire_token(
            self._options,
            target,
            now_ms=self._clock(),
            tries=tries,
            timeout_ms=timeout_ms,
            randrange=self._rng.randrange,
            waiter=waiter,
            queue=self._queues,
            fresh=self._draws_values,
        )
        acquired = None
        try:
            acquired = self._drive(flow)
        except LockNotAcquired as exc:
            logger.debug("Could not lock %r: %s", self._name, type(exc).__name__)
            raise
        finally:
            if waiter is not None:  # a multi-mutex waited for each of its keys
                for key in target.keys or (target.key,):
                    self._redsync._left(key, waiter, won=acquired is not None)
        assert acquired is not None  # the flow returned
        self._hold(value, acquired)

    def _hold(self, value: str, acquired: flows.Acquired) -> None:
        """Hold the lock ``value`` won (``acquired``)."""
        self._start_holding(value, acquired.until_ms, acquired.token)
        self._queued = acquired.queued

    def _start_holding(self, value: str, until_ms: int, token: int | None = None) -> None:
        """Record an acquisition; start auto-extension when the options ask for it."""
        self._acquired(value, until_ms, token)
        if self._options.auto_extend:
            sync_scheduler().add(self._renewal(), self._redsync._extend_many)

    def unlock(self) -> bool:
        """Delete our value on every node; return True if a quorum deleted it.

        Returns False when the lock was no longer ours (expired, taken or lost) or nodes failed.
        Never raises for these.
        """
        lost, queued = self._lost, self._queued
        if not self._released():
            return False
        return self._drive(flows.release(self._options, self._target(), queued)) and not lost

    def extend(self, expiry: float | None = None) -> bool:
        """Reset the TTL to ``expiry`` seconds (default: the mutex's) on a quorum.

        Returns False, touching no key, once the local validity has run out (unless
        ``set_nx_on_extend``); never raises for lock state or node errors.
        """
        if not self._ours():
            return False
        outcome = self._drive(
            flows.extend(
                self._options,
                self._target(),
                ttl_ms=self._extend_ttl_ms(expiry),
                now_ms=self._clock(),
                until_ms=self._until_ms,
            )
        )
        if outcome.until_ms is None:
            return False
        self._until_ms = outcome.until_ms
        return True

    def take_over(self, value: str) -> bool:
        """Take the lock over from the holder of ``value`` (another process or object): replace
        that value with a new one of this mutex, with this mutex's expiry, in one step per node.

        On a quorum this mutex holds the lock as after ``lock()`` (auto-extended with
        ``auto_extend``) and ``value`` no longer does. Returns False, holding nothing, when a
        quorum did not hold ``value`` (it expired, was released or was taken over already).

        Raises:
            LockError: this Mutex already holds the lock.
            ConfigurationError: ``value`` is not a non-empty string.
        """
        replaces = check_value(value)
        mine = self._begin_lock()
        flow = flows.take_over(
            self._options, self._target(mine), replaces=replaces, now_ms=self._clock()
        )
        until_ms = self._drive(flow)
        if until_ms is None:
            return False
        self._start_holding(mine, until_ms)
        return True

    def release_after(self, seconds: float) -> bool:
        """Stop holding the lock but leave it to expire in ``seconds`` instead of deleting it:
        stop auto-extension, forget the held state and reset the TTL on a quorum. For a
        throttle window, or a hand-over to a later holder that knows the value (``take_over``).

        Returns True if a quorum took the new TTL; False when the lock was no longer ours (or
        was lost) or nodes failed. Never raises for these.

        Raises:
            ConfigurationError: ``seconds`` is not a valid expiry.
        """
        ttl_ms = self._extend_ttl_ms(seconds)
        lost = self._lost
        if not self._released():
            return False
        # An extension already in flight when auto-extension stops may land after this reset
        # and give the key the full expiry again: the window then ends later, never sooner.
        outcome = self._drive(
            flows.extend(
                self._options, self._target(), ttl_ms=ttl_ms, now_ms=self._clock(), until_ms=None
            )
        )
        return outcome.until_ms is not None and not lost

    def valid(self) -> bool:
        """Return True when a quorum of nodes holds our value (a GET on every node)."""
        if not self._ours():
            return False
        return self._drive(flows.check(self._options, self._target()))

    def _drive(self, flow: Generator[Effect, Answer, T]) -> T:
        if hooks.listeners:
            flow = hooks.observed(self, flow)
        reply: Answer = None
        while True:
            try:
                effect = flow.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if isinstance(effect, Sleep):
                reply = self._redsync._sleep(effect)
            else:
                reply = self._redsync._fan_out(effect, self._order)

    def __enter__(self) -> Mutex:
        self.lock()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lost = self._lost
        self.unlock()
        if lost and exc is None:
            raise LockLost(self._name, f"Lost lock {self._name!r} while the block ran.")


class Hold:
    """A lock taken for an adapter: "busy" is a result, not an exception.

    ``acquire()`` returns False when another holder has the lock, with ``busy`` set to why
    (``LockTaken``, ``LockTimeout``, ``LockNotAcquired``); ``QuorumUnreachable`` (nodes down)
    still raises, since it is an outage and not "busy". As a context manager it acquires on
    entry (check ``busy``) and, when it acquired, releases on exit, raising ``LockLost`` if
    auto-extension lost the lock while the block ran.
    """

    def __init__(self, mutex: Mutex, timeout: float | None) -> None:
        self.mutex = mutex
        self.busy: LockNotAcquired | None = None
        self.acquired = False
        self._timeout = timeout

    def acquire(self) -> bool:
        """Take the lock; return False (``busy`` set) when another holder has it.

        Raises:
            QuorumUnreachable: node errors left fewer than a quorum able to answer.
        """
        try:
            self.mutex.lock(timeout=self._timeout)
        except QuorumUnreachable:
            raise
        except LockNotAcquired as exc:
            self.busy = exc
            return False
        self.acquired = True
        return True

    def release(self) -> bool:
        """Unlock if acquired; return True if a quorum deleted our value (see ``unlock``)."""
        if not self.acquired:
            return False
        self.acquired = False
        return self.mutex.unlock()

    def __enter__(self) -> Hold:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.acquired:
            self.acquired = False
            self.mutex.__exit__(exc_type, exc, tb)
