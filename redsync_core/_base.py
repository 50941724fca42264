"""What the sync and asyncio APIs share: mutex state, value generation, status reports.

Nothing here does I/O or waits; ``_sync.py`` and ``_async.py`` add the driving.
"""

from __future__ import annotations

import binascii
import datetime as dt
import functools
import hashlib
import logging
import random
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import _hooks as hooks
from ._algorithm.effects import (
    FanOut,
    KeyState,
    NodeKeys,
    NodeReply,
    Op,
    Tally,
    Waiter,
    glob_escape,
)
from ._algorithm.flows import Target
from ._algorithm.queues import is_waiter_key
from ._algorithm.timing import quorum
from ._clock import Clock, monotonic_ms
from ._exceptions import ConfigurationError, LockError, NodeError
from ._options import MAX_EXPIRY, MutexOptions, is_text
from ._process import pid

__all__ = [
    "LockInfo",
    "LockListing",
    "MutexBase",
    "NodeHealth",
    "NodeLock",
    "PingReport",
    "RedsyncBase",
]

logger = logging.getLogger("redsync")

#: Each node's failures are logged at WARNING at most this often (the rest at no level).
NODE_WARNING_INTERVAL_MS = 10_000


# Retry jitter and shuffle_pools order only (never values: those come from `secrets`); seeding
# one generator per mutex would cost more than a lock.
_shared_rng = random.Random()


def fingerprint(value: str) -> str:
    """Return a short digest that tells lock values apart without revealing them."""
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def default_value() -> str:
    """Return a fresh lock value: 16 bytes from ``secrets``, base64 (24 characters)."""
    return binascii.b2a_base64(secrets.token_bytes(16), newline=False).decode()  # b64encode


@dataclass(frozen=True)
class NodeHealth:
    """One node's answer to a ping: reachable or not, latency (ms) and server version."""

    index: int
    address: str
    ok: bool
    latency_ms: float | None = None
    version: str | None = None  # redis_version ("7.2.4"); a Valkey server's "valkey 8.1.0"
    error: str | None = None

    @property
    def server(self) -> str:
        """The server and its version, for display: ``redis 7.2.4``, ``valkey 8.1.0``."""
        version = self.version or "?"
        return f"redis {version}" if version[:1].isdigit() or version == "?" else version


@dataclass(frozen=True)
class PingReport:
    """Every node's health and the quorum verdict."""

    nodes: tuple[NodeHealth, ...]
    quorum: int

    @property
    def reachable(self) -> int:
        return sum(1 for n in self.nodes if n.ok)

    @property
    def ok(self) -> bool:
        """True when a quorum of nodes answered."""
        return self.reachable >= self.quorum


@dataclass(frozen=True)
class NodeLock:
    """What one node holds for a lock: the holder's value and remaining TTL, or an error."""

    index: int
    address: str
    holder: str | None = field(default=None, repr=False)
    remaining: float | None = None
    error: str | None = None

    @property
    def holder_digest(self) -> str | None:
        """A short fingerprint of the holder's value (``sha256:1a2b3c4d``), or None when free.

        Show this, never ``holder``: a value lets anyone release or extend the lock.
        """
        return None if self.holder is None else fingerprint(self.holder)

    def __repr__(self) -> str:
        # A value lets anyone release the lock: reprs show a fingerprint only.
        return (
            f"NodeLock(index={self.index}, address={self.address!r}, "
            f"holder={self.holder_digest!r}, "
            f"remaining={self.remaining!r}, error={self.error!r})"
        )


@dataclass(frozen=True)
class LockInfo:
    """A lock as seen on every node, for operators (``redsync status``)."""

    name: str
    key: str
    nodes: tuple[NodeLock, ...]
    quorum: int

    @property
    def holder(self) -> str | None:
        """The value a quorum of nodes holds, or None when no holder has a quorum."""
        counts: dict[str, int] = {}
        for node in self.nodes:
            if node.holder is not None:
                counts[node.holder] = counts.get(node.holder, 0) + 1
        for value, count in counts.items():
            if count >= self.quorum:
                return value
        return None

    @property
    def held(self) -> bool:
        """True when a quorum of nodes holds the same value."""
        return self.holder is not None

    @property
    def verdict(self) -> str:
        """``"held"``, ``"free"``, or ``"unknown"`` when the nodes that did not answer could
        still complete a quorum for some holder."""
        if self.holder is not None:
            return "held"
        counts: dict[str, int] = {}
        for node in self.nodes:
            if node.holder is not None:
                counts[node.holder] = counts.get(node.holder, 0) + 1
        silent = sum(1 for node in self.nodes if node.error is not None)
        return "unknown" if max(counts.values(), default=0) + silent >= self.quorum else "free"

    @property
    def remaining(self) -> float | None:
        """Seconds until the holder no longer has a quorum (None when free or no expiry)."""
        holder = self.holder
        if holder is None:
            return None
        ttls = sorted(
            (n.remaining for n in self.nodes if n.holder == holder and n.remaining is not None),
            reverse=True,
        )
        return ttls[self.quorum - 1] if len(ttls) >= self.quorum else None

    @property
    def holder_digest(self) -> str | None:
        """A short fingerprint of the quorum holder's value (``sha256:1a2b3c4d``), or None.

        Safe to show: it tells holders apart, while the value itself would let anyone who
        reads it release or extend the lock.
        """
        holder = self.holder
        return None if holder is None else fingerprint(holder)

    @property
    def holder_task_id(self) -> str | None:
        """The task id in a quorum holder's value shaped ``<task id>:<attempt>:<token>``.

        That is how ``redsync_celery.SingletonTask`` writes its values (``q<attempt>`` while a
        task holds its lock from the queue), so a lock a Celery task holds names the task; the
        token after the second ``:`` is never returned. None for any other value, or when no
        holder has a quorum.
        """
        parts = (self.holder or "").split(":", 2)
        if len(parts) == 3 and parts[0] and parts[1].removeprefix("q").isdigit() and parts[2]:
            return parts[0]
        return None

    @property
    def holder_label(self) -> str | None:
        """How to show the quorum holder: ``"task <id>"`` for a Celery task, else its digest.

        None when no holder has a quorum. Never the value.
        """
        task_id = self.holder_task_id
        return f"task {task_id}" if task_id is not None else self.holder_digest

    @property
    def held_on(self) -> int:
        """On how many nodes the quorum holder's value is (any value's, when none has a quorum)."""
        holder = self.holder
        return sum(
            1
            for node in self.nodes
            if node.holder is not None and (holder is None or node.holder == holder)
        )

    def as_dict(self) -> dict[str, Any]:
        """Return the lock as JSON-ready data; holders appear as fingerprints, never values."""
        return {
            "name": self.name,
            "key": self.key,
            "verdict": self.verdict,
            "holder": self.holder_digest,
            "holder_task_id": self.holder_task_id,
            "remaining": self.remaining,
            "held_on": self.held_on,
            "quorum": self.quorum,
            "nodes": [
                {
                    "index": node.index,
                    "address": node.address,
                    "holder": node.holder_digest,
                    "remaining": node.remaining,
                    "error": node.error,
                }
                for node in self.nodes
            ],
        }


class LockListing(list[LockInfo]):
    """What ``list_locks`` found: a list of ``LockInfo`` sorted by name, and what it left out.

    Attributes:
        skipped: how many keys matched but are not locks (not a string of at most 1 KiB with
            an expiry); they are never shown as locks and never deleted. The locks' waiter
            queues and turn keys (beside the keys) are left out of the count.
        partial: True when a node could not be listed to the end (it failed, or the time budget
            ran out): a lock may be missing, and verdicts may say ``"unknown"``.
        incomplete: ``(address, reason)`` of each node not listed to the end.
    """

    def __init__(
        self,
        locks: Sequence[LockInfo] = (),
        *,
        skipped: int = 0,
        incomplete: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(locks)
        self.skipped = skipped
        self.incomplete = tuple(incomplete)

    @property
    def partial(self) -> bool:
        """True when a node was not listed to the end (see ``incomplete``)."""
        return bool(self.incomplete)

    def as_dict(self) -> dict[str, Any]:
        """Return the listing as JSON-ready data (``LockInfo.as_dict`` for each lock)."""
        return {
            "locks": [info.as_dict() for info in self],
            "skipped": self.skipped,
            "partial": self.partial,
            "incomplete": [
                {"address": address, "reason": reason} for address, reason in self.incomplete
            ],
        }

    def __repr__(self) -> str:
        return (
            f"LockListing({list.__repr__(self)}, skipped={self.skipped}, "
            f"incomplete={self.incomplete!r})"
        )


def lock_listing(prefix: str, scans: Sequence[NodeKeys], need: int) -> LockListing:
    """Group what every node listed into one ``LockInfo`` per lock, sorted by name.

    A key is a lock on a node when it is a string of at most 1 KiB with an expiry there (locks
    are always set with one); anything else under the prefix but the locks' waiter queues and
    turn keys is counted in ``skipped``. A node that was listed to the end and did not list a key does not
    hold it; one cut short cannot tell (an error).
    """
    found: dict[str, dict[int, KeyState]] = {}
    skipped: set[str] = set()
    for position, scan in enumerate(scans):
        for state in scan.keys:
            if state.kind == "none" or not state.key.startswith(prefix):
                continue  # gone since SCAN saw it (expired or released)
            if state.kind in ("zset", "string") and is_waiter_key(state.key):
                continue  # the waiters of a lock (they come and go with contention)
            if state.kind != "string" or state.value is None or state.ttl_ms is None:
                skipped.add(state.key)
            else:
                found.setdefault(state.key, {})[position] = state
    locks = []
    for key in sorted(found):
        nodes = []
        for position, scan in enumerate(scans):
            held = found[key].get(position)
            if held is not None:
                remaining = None if held.ttl_ms is None else held.ttl_ms / 1000
                nodes.append(NodeLock(scan.index, scan.address, held.value, remaining))
            elif scan.error is not None:
                nodes.append(NodeLock(scan.index, scan.address, error=scan.error))
            else:
                nodes.append(NodeLock(scan.index, scan.address))
        locks.append(LockInfo(key[len(prefix) :], key, tuple(nodes), need))
    incomplete = [(scan.address, scan.error) for scan in scans if scan.error is not None]
    return LockListing(locks, skipped=len(skipped), incomplete=incomplete)


def check_name(name: object) -> str:
    """Return ``name`` if it is a non-empty string.

    Raises:
        ConfigurationError: otherwise.
    """
    if not is_text(name):
        raise ConfigurationError(
            f"Invalid mutex name {name!r:.60}: expected a non-empty string of valid Unicode, "
            "e.g. 'orders:42'."
        )
    assert isinstance(name, str)
    return name


def check_value(value: object) -> str:
    """Return ``value`` (a lock value handed over by its holder) if it is a non-empty string.

    Raises:
        ConfigurationError: otherwise.
    """
    if not is_text(value):
        raise ConfigurationError(
            f"Invalid lock value {value!r:.40}: expected the non-empty string its holder has "
            "(Mutex.value)."
        )
    assert isinstance(value, str)
    return value


class RedsyncBase:
    """Options and node-independent behaviour of ``Redsync`` and ``AsyncRedsync``."""

    _node_count: int

    def __init__(
        self,
        nodes: Sequence[Any],
        key_prefix: str,
        client_options: Mapping[str, Any] | None,
        defaults: Mapping[str, Any],
    ) -> None:
        if not isinstance(key_prefix, str) or (key_prefix and not is_text(key_prefix)):
            raise ConfigurationError(
                f"Invalid option key_prefix={key_prefix!r:.60}: expected a string of valid Unicode "
                "(may be empty)."
            )
        self.key_prefix = key_prefix
        self._specs = tuple(nodes) if isinstance(nodes, Sequence) else nodes
        self._client_options = client_options
        self._clock: Clock = monotonic_ms
        self._warned_ms: dict[int, int] = {}
        self._defaults = dict(defaults)
        MutexOptions.build(self._defaults)  # fail at construction, not at the first lock

    @property
    def nodes(self) -> tuple[Any, ...]:
        """The nodes as given (read-only)."""
        return tuple(self._specs)

    def _twin_arguments(self, twin: str) -> tuple[list[str], dict[str, Any]]:
        """Return what builds the sync/asyncio twin of this object (same URLs and options).

        Raises:
            ConfigurationError: the nodes are client objects, which cannot change kind.
        """
        if not all(isinstance(spec, str) for spec in self._specs):
            raise ConfigurationError(
                f"Cannot build the {twin} twin of a {type(self).__name__} made from client "
                f"objects; give node URLs, or create a {twin} object with {twin} clients."
            )
        kwargs = dict(self._defaults)
        kwargs.update(key_prefix=self.key_prefix, client_options=self._client_options)
        return list(self._specs), kwargs

    @property
    def quorum(self) -> int:
        """How many nodes must agree: ``len(nodes) // 2 + 1``."""
        return quorum(self._node_count)

    def _tallied(self, replies: tuple[NodeReply | NodeError | None, ...], started_ms: int) -> Tally:
        """Wrap a fan-out's replies with its timing; log node errors (rate-limited)."""
        now = self._clock()
        for reply in replies:
            if isinstance(reply, NodeError):
                last = self._warned_ms.get(reply.node)
                if last is None or now - last >= NODE_WARNING_INTERVAL_MS:
                    self._warned_ms[reply.node] = now
                    logger.warning("Redis node failed: %s", reply)
        if hooks.listeners:
            hooks.emit_node_errors(replies)
        return Tally(replies, started_ms, now)

    def _options(self, options: Mapping[str, Any]) -> MutexOptions:
        return MutexOptions.build(self._defaults, options)

    def _listing_arguments(
        self, pattern: str, page_size: int, timeout: float
    ) -> tuple[str, int, int]:
        """Return the SCAN pattern, page size and budget (ms) of a ``list_locks`` call.

        Raises:
            ConfigurationError: an empty pattern, a page size outside [1, 10000] or a timeout
                that is not a positive number of seconds.
        """
        if not is_text(pattern):
            raise ConfigurationError(
                f"Invalid pattern={pattern!r:.60}: expected a non-empty glob such as '*' or "
                "'orders:*' (matched against lock names, without the key prefix)."
            )
        if (
            isinstance(page_size, bool)
            or not isinstance(page_size, int)
            or not 0 < page_size <= 10_000
        ):
            raise ConfigurationError(
                f"Invalid page_size={page_size!r}: expected a whole number of keys in [1, 10000]."
            )
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 < timeout <= MAX_EXPIRY
        ):
            raise ConfigurationError(
                f"Invalid timeout={timeout!r}: expected seconds in (0, {MAX_EXPIRY:.0f}]."
            )
        return glob_escape(self.key_prefix) + pattern, page_size, round(timeout * 1000)

    @staticmethod
    def _release_effects(info: LockInfo) -> list[FanOut]:
        """Return one compare-and-delete per value the listing saw for ``info`` (in any order)."""
        values = {node.holder for node in info.nodes if node.holder is not None}
        return [FanOut(Op.RELEASE, info.key, value, deadline_ms=2000) for value in sorted(values)]

    def _probe(self, op: Op, name: str, value: str = "") -> FanOut:
        check_name(name)
        return FanOut(op, self.key_prefix + name, value, deadline_ms=2000)

    @staticmethod
    def _lock_info(
        name: str, key: str, addresses: Sequence[str], tally: Tally, need: int
    ) -> LockInfo:
        nodes = []
        for i, reply in enumerate(tally.replies):
            if isinstance(reply, NodeReply):
                remaining = None if reply.ttl_ms is None else reply.ttl_ms / 1000
                nodes.append(NodeLock(i, addresses[i], reply.holder, remaining))
            else:
                nodes.append(NodeLock(i, addresses[i], error=_reason(reply)))
        return LockInfo(name, key, tuple(nodes), need)


def _reason(reply: NodeError | None) -> str:
    return "no reply" if reply is None else reply.reason


class MutexBase:
    """State shared by ``Mutex`` and ``AsyncMutex``: name, value, validity, loss."""

    _origin: object = None
    _queues = True  # a waiting lock() queues itself beside the key (not a multi-mutex's)
    _held_since: float | None = None  # perf_counter() at acquisition, while a listener listens

    def __init__(
        self,
        name: str,
        key_prefix: str,
        options: MutexOptions,
        node_count: int,
    ) -> None:
        self._name = check_name(name)
        self._key = key_prefix + name
        self._options = options
        self._node_count = node_count
        self._clock: Clock = monotonic_ms
        self._rng = _shared_rng
        self._value: str | None = options.value
        self._token: int | None = None
        # The lock() call that took the lock, while it may still be queued on some node.
        self._queued: Waiter | None = None
        self._until_ms: int | None = None
        self._lost = False
        self._owner_pid = 0
        self._renewal_generation = 0
        self._hold_end_ms: int | None = None  # acquired + max_hold: auto-extension stops there
        self._order: tuple[int, ...] | None = None
        if options.shuffle_pools:
            # A shuffled copy per mutex: the shared node list is never mutated.
            self._order = tuple(self._rng.sample(range(node_count), node_count))

    def __repr__(self) -> str:
        state = "held" if self.held else "lost" if self._lost else "free"
        return f"<{type(self).__name__} {self._name!r} {state}>"

    @property
    def name(self) -> str:
        """The name as given (without the key prefix)."""
        return self._name

    @property
    def key(self) -> str:
        """The Redis key: the Redsync's key prefix plus the name."""
        return self._key

    @property
    def options(self) -> MutexOptions:
        """The validated options of this mutex."""
        return self._options

    @property
    def value(self) -> str | None:
        """The current lock value (None before the first lock unless ``value=`` was given)."""
        return self._value

    @property
    def token(self) -> int | None:
        """The fencing token of the last successful ``lock()``/``try_lock()`` (``fencing=True``).

        Tokens strictly increase from one holder of the name to the next (under the lock's
        own assumptions); pass it with every write to the protected resource and let the
        resource refuse a token lower than one it has seen. None without fencing.
        """
        return self._token

    @property
    def held(self) -> bool:
        """True while this mutex holds the lock and its local validity has not run out."""
        return (
            self._until_ms is not None
            and self._owner_pid == pid()
            and self._clock() < self._until_ms
        )

    @property
    def until(self) -> dt.datetime | None:
        """When the validity ends (aware UTC datetime), or None when not held."""
        if self._until_ms is None:
            return None
        left_ms = self._until_ms - self._clock()
        return dt.datetime.now(dt.timezone.utc) + dt.timedelta(milliseconds=left_ms)

    @property
    def remaining(self) -> float:
        """Seconds of validity left (monotonic clock), 0.0 when not held."""
        if self._until_ms is None:
            return 0.0
        return max(0, self._until_ms - self._clock()) / 1000

    @property
    def lost(self) -> bool:
        """True after auto-extension failed to keep the lock."""
        return self._lost

    @property
    def origin(self) -> object:
        """Who took this lock, for listeners of ``redsync_core.hooks`` (None unless set).

        Any object the code that built the mutex sets; adapters mark their locks with it.
        The core never reads it.
        """
        return self._origin

    @origin.setter
    def origin(self, value: object) -> None:
        self._origin = value

    # --- used by the drivers --------------------------------------------------------------

    def _target(self, value: str | None = None) -> Target:
        return Target(self._name, self._key, value or self._value or "", self._node_count)

    @property
    def _draws_values(self) -> bool:
        """True when ``_begin_lock`` draws every value at random (neither ``value=`` nor
        ``gen_value_func``): no node can hold it before its call's first attempt."""
        options = self._options
        return options.value is None and options.gen_value_func is None

    def _begin_lock(self) -> str:
        """Return the value for a new acquisition; refuse when this mutex already holds."""
        if self.held:
            raise LockError(
                self._name,
                f"Mutex {self._name!r} is already held by this object; unlock() it first, or "
                "create one Mutex per holder (a Mutex is not re-entrant).",
            )
        options = self._options
        if options.value is not None:
            return options.value
        if options.gen_value_func is not None:
            value = options.gen_value_func()
            if not is_text(value):
                raise ConfigurationError(
                    f"Invalid gen_value_func result {value!r:.40}: expected a non-empty string."
                )
            return value
        return default_value()

    def _acquired(self, value: str, until_ms: int, token: int | None = None) -> None:
        self._value = value
        self._token = token
        self._until_ms = until_ms
        self._lost = False
        self._owner_pid = pid()
        self._renewal_generation += 1
        max_hold_ms = self._options.max_hold_ms
        self._hold_end_ms = None if max_hold_ms is None else self._clock() + max_hold_ms

    def _released(self) -> bool:
        """Forget the held state and stop auto-extension; return False in a forked child,
        which must never release or extend its parent's lock."""
        self._until_ms = None
        self._queued = None
        self._renewal_generation += 1
        return self._value is not None and self._owner_pid in (0, pid())

    def _ours(self) -> bool:
        """True when this process may touch the lock (not a child that inherited it)."""
        return self._value is not None and self._owner_pid in (0, pid())

    def _timeout_ms(self, timeout: float | None) -> int | None:
        if timeout is None:
            return None
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 <= timeout <= MAX_EXPIRY
        ):
            raise ConfigurationError(
                f"Invalid timeout={timeout!r}: expected a number of seconds in "
                f"[0, {MAX_EXPIRY:.0f}], or None for no limit."
            )
        return round(timeout * 1000)

    def _extend_ttl_ms(self, expiry: float | None) -> int:
        if expiry is None:
            return self._options.expiry_ms
        return MutexOptions.build({"expiry": expiry}).expiry_ms

    def _renewal(self) -> Renewal:
        """Return this acquisition as the auto-extension scheduler renews it."""
        return Renewal(self)

    def _mark_lost(self, reason: str) -> bool:
        """Record the loss; return True the first time (the caller then reports it)."""
        if self._lost:
            return False
        self._lost = True
        self._until_ms = None
        logger.error("Lost lock %r: %s", self._name, reason)
        return True

    def _report_lost(self, reason: str) -> object:
        """Report a loss marked by ``_mark_lost``: listeners first, then ``on_lost`` (its
        result is returned, to be awaited when it is a coroutine)."""
        if hooks.listeners:
            hooks.emit_lost(self, reason)
        on_lost = self._options.on_lost
        return None if on_lost is None else on_lost(self)


class Renewal:
    """One acquisition of a mutex, as the auto-extension scheduler sees it (its ``Renewable``).

    It stops being ``live`` when the mutex is released or acquired again, so a late extension
    never touches a later acquisition.
    """

    __slots__ = ("_generation", "_mutex")

    def __init__(self, mutex: MutexBase) -> None:
        self._mutex = mutex
        self._generation = mutex._renewal_generation

    @property
    def options(self) -> MutexOptions:
        return self._mutex.options

    @property
    def live(self) -> bool:
        return self._generation == self._mutex._renewal_generation

    @property
    def until_ms(self) -> int | None:
        return self._mutex._until_ms

    @property
    def hold_end_ms(self) -> int | None:
        return self._mutex._hold_end_ms

    def target(self) -> Target:
        return self._mutex._target()

    def extended(self, until_ms: int) -> None:
        self._mutex._until_ms = until_ms

    def extend_report(self, ok: bool, elapsed_ms: int) -> Callable[[], object] | None:
        """Return the listeners' event of one extension, to be called outside the scheduler's
        lock (None when nobody listens)."""
        if not hooks.listeners:
            return None
        return hooks.extend_report(self._mutex, ok, elapsed_ms)

    def lost(self, reason: str) -> Callable[[], object] | None:
        """Mark the mutex lost; the first time, return the report to call (listeners, then
        ``on_lost``)."""
        mutex = self._mutex
        if not mutex._mark_lost(reason):
            return None
        return functools.partial(mutex._report_lost, reason)
