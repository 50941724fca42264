"""Fencing tokens: where each node keeps its counter, and how a token is drawn from a quorum.

A fenced acquisition is the plain one plus one more fan-out:

1. ``FENCED_ACQUIRE`` on every node: ``SET key value NX PX ttl`` and, where that succeeded,
   read the node's counter (0 when it has none).
2. When a quorum answered OK within the validity, ``token = max(counters read) + 1``, and
   ``FENCE`` on every node: where the key still holds our value, raise the counter to
   ``token`` (never lower it).
3. The lock is taken, with that token, only if a quorum took the FENCE and validity is left
   after both fan-outs; otherwise the attempt failed and the key is released everywhere.

Why tokens then increase from holder to holder: the FENCE quorum of a holder A and the
FENCED_ACQUIRE quorum of a later holder B share a node. On that node A's value was there when
A's FENCE raised the counter; B's SET NX found the key free, so B came either after A's value
left (B reads a counter >= A's token: B's token is larger) or before A's value arrived, and
then B's own key had left that node before A set it: by expiry (with bounded drift, B's
validity was over, so B acquired before A) or by B's release (after B's acquisition). Counters
only grow and must survive restarts (persistence), which is why the contract holds under the
lock's own assumptions only. ``tests/model`` searches the states of a small
model that drives these very flows for a counterexample.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from .effects import NodeReply, Status, Tally, Waiter

__all__ = ["FENCE_SUFFIX", "Acquired", "fence_key", "next_token", "slot_mate"]

#: Appended to the lock key to name its counter (see ``fence_key``).
FENCE_SUFFIX = ":fence"


@dataclass(frozen=True, slots=True)
class Acquired:
    """Outcome of an acquisition: the monotonic time (ms) its validity ends, its fencing token
    (None without fencing), and the lock() call when it may still be queued on some node (a
    quorum handed the key over to it, not every node): the unlock takes it off there."""

    until_ms: int
    token: int | None = None
    queued: Waiter | None = None


def _hash_tag(key: str) -> str | None:
    """Return the key's Redis Cluster hash tag (the text in its first ``{...}``), if any."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    if end <= start + 1:
        return None
    return key[start + 1 : end]


def slot_mate(key: str, suffix: str) -> str | None:
    """Return the name of a key kept beside the lock ``key``, in the same cluster slot.

    The name starts with the lock key (so it lies under the key prefix and ACL key patterns
    cover it). A key with a hash tag keeps it (``a{t}<suffix>``); a key without braces becomes
    its own hash tag (``orders:42<suffix>{orders:42}``), which hashes like the key. None for a
    key with braces but no valid tag: no name with the suffix can share its slot.
    """
    if _hash_tag(key) is not None:
        return key + suffix
    if "{" in key or "}" in key:
        return None
    return f"{key}{suffix}{{{key}}}"


def fence_key(key: str) -> str:
    """Return the key of the fencing counter of the lock ``key``, in the same cluster slot.

    The counter name starts with the lock key (so it lies under the key prefix and ACL key
    patterns cover it). A key with a hash tag keeps it (``a{t}:fence``); a key without braces
    becomes its own hash tag (``orders:42:fence{orders:42}``), which hashes like the key. A
    key with braces but no valid tag gets the bare suffix: fine on a single Redis, but on a
    Redis Cluster node such a name needs a hash tag to be fenced.
    """
    mate = slot_mate(key, FENCE_SUFFIX)
    return key + FENCE_SUFFIX if mate is None else mate


def next_token(tally: Tally) -> int:
    """Return the token of a won FENCED_ACQUIRE: one more than the largest counter read.

    Only nodes that answered OK (the key was set there) report a counter.
    """
    return 1 + max(
        (
            r.counter or 0
            for r in tally.replies
            if isinstance(r, NodeReply) and r.status is Status.OK
        ),
        default=0,
    )
