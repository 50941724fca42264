"""The keys and channels that queue a lock's waiters beside its key (names only, no I/O).

A waiting ``lock()`` queues itself in a sorted set beside the lock key, in the key's cluster
slot; a release pops the oldest waiter, notes it in the turn key and wakes it on its process's
wake channel (see ``_transport.scripts.RELEASE`` and ``_transport.notices``).
"""

from __future__ import annotations

import functools
import hashlib

from .fencing import slot_mate

__all__ = [
    "PROOF_DIGITS",
    "TURN_SUFFIX",
    "WAIT_SUFFIX",
    "WAKE_INFIX",
    "handover_proof",
    "is_waiter_key",
    "queue_keys",
    "queue_member",
    "wait_key",
    "wake_channel",
]

#: Appended to the lock key to name its waiter queue (see ``wait_key``).
WAIT_SUFFIX = ":wait"
#: Appended to the lock key to name the key that holds the id of the waiter a release woke.
TURN_SUFFIX = ":turn"
#: Between the lock key and a process's inbox in the name of its wake channel.
WAKE_INFIX = ":wake:"
#: Hex digits of the SHA1 of the value handed over that end a hand-over notice.
PROOF_DIGITS = 12


def wait_key(key: str) -> str | None:
    """Return the key of the waiter queue of the lock ``key`` (a sorted set in its cluster
    slot: ``<key>:wait{<key>}``, or ``<key>:wait`` when the key has a hash tag), or None for a
    key with braces but no hash tag (its waiters are not queued)."""
    return slot_mate(key, WAIT_SUFFIX)


def wake_channel(key: str, inbox: str) -> str | None:
    """Return the channel on which a release of ``key`` wakes a queued waiter of the process
    with ``inbox`` (``<key>:wake:<inbox>``, in the key's slot like ``wait_key``), or None."""
    return slot_mate(key, WAKE_INFIX + inbox)


@functools.lru_cache(maxsize=4096)  # built for every node of every release: keys repeat
def queue_keys(key: str) -> tuple[str, str] | None:
    """The waiter queue and the turn key of the lock ``key`` (see ``wait_key``)."""
    queue, turn = slot_mate(key, WAIT_SUFFIX), slot_mate(key, TURN_SUFFIX)
    return None if queue is None or turn is None else (queue, turn)


def queue_member(waiter_id: str, ttl_ms: int, value: str) -> str:
    """Return a waiter's member in the queue: ``<id> <ttl_ms> <value>``. A release that pops it
    hands the key over (sets it to ``value`` for ``ttl_ms``), see ``_transport.scripts``."""
    return f"{waiter_id} {ttl_ms} {value}"


def handover_proof(value: str) -> str:
    """Return what a hand-over notice for ``value`` ends with: ``+`` and the first hex digits of
    the value's SHA1, as the release script writes them (``redis.sha1hex``). A waiter counts a
    notice only with its own value's proof: one that names it by mistake (or by forgery,
    without its value) wakes it at most."""
    digest = hashlib.sha1(value.encode("utf-8", "surrogateescape"), usedforsecurity=False)
    return "+" + digest.hexdigest()[:PROOF_DIGITS]


def is_waiter_key(key: str) -> bool:
    """True when ``key`` names the waiter queue or the turn key of some lock (not a lock)."""
    for suffix in (WAIT_SUFFIX, TURN_SUFFIX):
        tagged = key.endswith(suffix)
        lock = key[: -len(suffix)] if tagged else key.rpartition(suffix + "{")[0]
        if lock and slot_mate(lock, suffix) == key:
            return True
    return False
