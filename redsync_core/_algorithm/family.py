"""Semaphores and multi-mutexes: the flows and decisions beyond a single key, sans I/O.

A semaphore of ``limit`` permits is ``limit`` independent Redlock keys (``<key>:0`` ...
``<key>:<limit - 1>``); a holder is admitted only when a quorum of nodes holds its value on
the **same** permit key. Counting holders per node instead is unsafe for ``limit >= 2`` (three
nodes, limit 2: holders admitted by nodes {1, 2}, {2, 3} and {1, 3} make three holders); with
one key per permit, two admitted holders of one permit would need two quorums that share no
node, so there are never more than ``limit`` holders. The argument is in ``docs/safety.md``.

A multi-mutex is one lock over several keys: each node takes every key or none, and a node
counts toward the quorum only when it holds all of them, so the Redlock flows of a single key
apply unchanged once their fan-outs address every key (``over_keys``).

Like the rest of ``_algorithm``: no sockets, no clock reads, no sleeping, no logging.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from .._exceptions import LockNotAcquired, LockTaken, LockTimeout, QuorumUnreachable
from .._options import MutexOptions
from .effects import Answer, Effect, FanOut, NodeReply, Op, Sleep, Status, Tally
from .flows import Retries, Target, _clean_up, _retry_after_s, _send, retry_schedule
from .timing import fanout_deadline_ms, quorum, validity_ms

__all__ = [
    "Permit",
    "acquire_permit",
    "combine_split",
    "multi_keys",
    "over_keys",
    "permit_keys",
    "permit_order",
    "try_permit",
    "winning_slot",
]

T = TypeVar("T")

#: The multi-key twin of each single-key operation of the mutex flows.
_ALL_OF = {
    Op.ACQUIRE: Op.ACQUIRE_ALL,
    Op.RELEASE: Op.RELEASE_ALL,
    Op.EXTEND: Op.EXTEND_ALL,
    Op.GET: Op.GET_ALL,
}


def permit_keys(key: str, limit: int) -> tuple[str, ...]:
    """Return the Redis keys of a semaphore's permits: ``<key>:0`` ... ``<key>:<limit - 1>``."""
    return tuple(f"{key}:{slot}" for slot in range(limit))


def permit_order(limit: int, start: int) -> tuple[int, ...]:
    """Return the permits in the order to try them: every one, from ``start`` on, wrapping.

    Each acquirer starts at a random permit, so acquirers racing for free permits mostly try
    different ones; every node gets the same order, so without contention they agree.
    """
    return tuple((start + i) % limit for i in range(limit))


def multi_keys(key_prefix: str, names: Sequence[str]) -> tuple[str, ...]:
    """Return the keys of a multi-mutex: prefixed, without duplicates, sorted.

    The stable (sorted) order means two multi-mutexes over overlapping names always meet the
    shared keys in the same order, on every node and on every Redis Cluster slot.
    """
    return tuple(sorted({key_prefix + name for name in names}))


def over_keys(
    flow: Generator[Effect, Answer, T], keys: tuple[str, ...]
) -> Generator[Effect, Answer, T]:
    """Run a single-key mutex flow over several keys: every fan-out addresses all of ``keys``.

    The nodes then answer OK only when every key holds our value (and take all keys or none),
    so the flow's quorum, validity and release-everywhere rules hold for the set as a whole.
    A wakeable sleep wakes on a release notice for any of the keys (a release of one of them
    may be the one the set waited for). With no ``keys`` the flow is returned as it is.
    """
    if not keys:
        return flow
    return _over_keys(flow, keys)


def _over_keys(
    flow: Generator[Effect, Answer, T], keys: tuple[str, ...]
) -> Generator[Effect, Answer, T]:
    reply: Answer = None
    while True:
        try:
            effect = flow.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        if isinstance(effect, FanOut) and effect.op in _ALL_OF:
            effect = effect._replace(op=_ALL_OF[effect.op], key=keys[0], keys=keys)
        elif isinstance(effect, Sleep) and effect.key is not None:
            effect = dataclasses.replace(effect, key=keys[0], keys=keys)  # any key may free it
        reply = yield effect


@dataclass(frozen=True, slots=True)
class Permit:
    """An acquired semaphore permit: which one, and the monotonic time (ms) its validity ends."""

    slot: int
    until_ms: int


def winning_slot(tally: Tally) -> tuple[int | None, int]:
    """Return the position (in the fan-out's keys) most nodes took, and how many took it.

    Ties go to the earlier position. ``(None, 0)`` when no node took a permit.
    """
    counts: dict[int, int] = {}
    for reply in tally.replies:
        if isinstance(reply, NodeReply) and reply.status is Status.OK and reply.slot is not None:
            counts[reply.slot] = counts.get(reply.slot, 0) + 1
    if not counts:
        return None, 0
    best = min(counts, key=lambda slot: (-counts[slot], slot))
    return best, counts[best]


def acquire_permit(
    opts: MutexOptions,
    target: Target,
    limit: int,
    *,
    now_ms: int,
    tries: int | None,
    timeout_ms: int | None,
    randrange: Callable[[int, int], int],
    waiter: object | None = None,
) -> Generator[Effect, Answer, Permit]:
    """Take one of ``limit`` permits on a quorum; return which one and its validity end.

    Each attempt asks every node, in one round trip, for the first permit that is free there
    (trying the permits in one shared, randomly rotated order). The attempt wins when a quorum
    of nodes gave the **same** permit within the validity; the other nodes' permits are then
    released. A failed attempt releases our value on every permit of every node that may hold
    it (not on those that answered that every permit holds another value), so no partial
    acquisition is left behind, and the retry policy is the mutex's: ``flows.retry_schedule``
    (``tries``, ``timeout``, ``wake_on_release``).

    With ``wake_on_release`` a delay ends early when a release notice for any permit arrives or
    when the replies say a quorum of nodes frees a permit; such an early attempt is no try, and
    when it loses the flow waits out the rest of the same delay. ``waiter`` is given with every
    wakeable sleep (the turns of this process, per permit).

    Raises:
        QuorumUnreachable: node errors left fewer than a quorum of nodes able to answer.
        LockTimeout: ``timeout_ms`` ran out before the tries did.
        LockTaken: the last attempt found every permit held on a quorum of nodes.
        LockNotAcquired: the tries ran out otherwise (permits split between acquirers, or the
            validity was used up).
    """
    need = quorum(target.nodes)
    keys = permit_keys(target.key, limit)
    node_deadline_ms = fanout_deadline_ms(opts.expiry_ms, opts.timeout_factor)
    retries = Retries(opts, now_ms, tries, timeout_ms, randrange)

    def attempt(
        now_ms: int, early: bool
    ) -> Generator[Effect, Answer, tuple[Tally, Permit | None, int]]:
        return _permit_attempt(
            opts,
            target,
            keys,
            randrange,
            retries.budget_ms(now_ms, node_deadline_ms),
            node_deadline_ms,
            early=early,
        )

    return (
        yield from retry_schedule(
            retries,
            target.nodes,
            attempt,
            lambda ms, since_ms, held: Sleep(ms, keys[0], since_ms, held, waiter, keys),
            unreachable=partial(_unreachable, target, need),
            gave_up=partial(_gave_up, target, limit, need, opts),
            timed_out=partial(_timed_out, target, limit, timeout_ms or 0),
        )
    )


def try_permit(
    opts: MutexOptions,
    target: Target,
    limit: int,
    *,
    randrange: Callable[[int, int], int],
    quiet: bool = True,
) -> Generator[Effect, Answer, Permit | None]:
    """Make one attempt, without retries or waiting (``try_acquire``); return the permit won,
    or None when the attempt lost (after releasing what it may hold).

    ``acquire_permit`` with one try, without its retry machinery and without building an error
    nobody reads (as ``flows.try_acquire`` for a mutex). ``quiet=False`` raises the error
    ``acquire_permit`` raises instead of returning None (a listener's ``LockEvent`` carries it).

    Raises:
        QuorumUnreachable: node errors left fewer than a quorum of nodes able to answer.
        LockNotAcquired: (only with ``quiet=False``) the attempt lost, as ``acquire_permit``.
    """
    need = quorum(target.nodes)
    node_deadline_ms = fanout_deadline_ms(opts.expiry_ms, opts.timeout_factor)
    keys = permit_keys(target.key, limit)
    tally, permit, _ = yield from _permit_attempt(
        opts, target, keys, randrange, node_deadline_ms, node_deadline_ms
    )
    if permit is not None:
        return permit
    if len(tally.errors) > target.nodes - need:
        raise _unreachable(target, need, tally, 1)
    if not quiet:
        raise _gave_up(target, limit, need, opts, tally, 1)
    return None


def _permit_attempt(
    opts: MutexOptions,
    target: Target,
    keys: tuple[str, ...],
    randrange: Callable[[int, int], int],
    deadline_ms: int | None,
    node_deadline_ms: int | None,
    *,
    early: bool = False,
) -> Generator[Effect, Answer, tuple[Tally, Permit | None, int]]:
    """Make one attempt on the permits ``keys`` (its fan-out within ``deadline_ms``); return
    its tally, the permit won (or None) and the time after it (after the release of a lost
    attempt: none is sent when every node was full)."""
    need = quorum(target.nodes)
    ttl_ms = opts.expiry_ms
    order = permit_order(len(keys), randrange(0, len(keys)))
    ordered = tuple(keys[slot] for slot in order)
    tally = _send(
        (
            yield FanOut(
                Op.ACQUIRE_ANY,
                ordered[0],
                target.value,
                ttl_ms=ttl_ms,
                deadline_ms=deadline_ms,
                keys=ordered,
                early=early,
            )
        )
    )
    position, count = winning_slot(tally)
    valid_ms = validity_ms(ttl_ms, tally.elapsed_ms, opts.drift_factor)
    if position is not None and count >= need and valid_ms > 0:
        if count < tally.ok:  # some nodes gave us another permit: give those back
            others = tuple(key for key in keys if key != ordered[position])
            yield FanOut(
                Op.RELEASE_ALL,
                others[0],
                target.value,
                deadline_ms=node_deadline_ms,
                keys=others,
            )
        return tally, Permit(order[position], tally.finished_ms + valid_ms), tally.finished_ms
    # Every permit, on every node that may hold our value on one (a full node cannot).
    after_ms = yield from _over_keys(_clean_up(target, tally, node_deadline_ms), keys)
    return tally, None, after_ms


# --- several keys on one node of a Redis Cluster ---------------------------------------------


def combine_split(
    effect: FanOut, slot_of: Callable[[str], int]
) -> Generator[FanOut, NodeReply, NodeReply]:
    """Carry out a multi-key ``effect`` on one cluster node whose keys live in several slots.

    Yields one command per group of keys sharing a slot (in key order) and receives its reply;
    returns the reply the whole command would have given. ACQUIRE_ANY stops at the first group
    that gave a permit; ACQUIRE_ALL gives back the groups it took when a later one is taken
    (all or none on this node, though not atomically); the others report the worst reply
    (another holder before missing before ours).
    """
    groups: dict[int, list[str]] = {}
    for key in effect.keys:
        groups.setdefault(slot_of(key), []).append(key)
    parts = [effect._replace(key=keys[0], keys=tuple(keys)) for keys in groups.values()]
    if effect.op is Op.ACQUIRE_ANY:
        ttls: list[int] = []
        for part in parts:
            reply = yield part
            if reply.status is Status.OK and reply.slot is not None:
                return NodeReply(Status.OK, slot=effect.keys.index(part.keys[reply.slot]))
            if reply.ttl_ms is not None:
                ttls.append(reply.ttl_ms)
        return NodeReply(Status.TAKEN, min(ttls) if ttls else None)
    if effect.op is Op.ACQUIRE_ALL:
        taken: list[FanOut] = []
        for part in parts:
            reply = yield part
            if reply.status is not Status.OK:
                for done in taken:
                    yield done._replace(op=Op.RELEASE_ALL)
                return reply
            taken.append(part)
        return NodeReply(Status.OK)
    worst = NodeReply(Status.OK)
    rank = {Status.OK: 0, Status.MISSING: 1, Status.TAKEN: 2}
    for part in parts:
        reply = yield part
        if rank[reply.status] > rank[worst.status]:
            worst = reply
    return worst


# --- error messages -------------------------------------------------------------------------


def _permits(limit: int) -> str:
    return f"{limit} permit{'s' if limit != 1 else ''}"


def _unreachable(target: Target, need: int, tally: Tally, attempt: int) -> QuorumUnreachable:
    errors = tally.errors
    message = (
        f"Could not acquire semaphore {target.name!r}: {len(errors)} of {target.nodes} nodes "
        f"failed ({'; '.join(str(e) for e in errors)}), so at most {target.nodes - len(errors)} "
        f"could agree and {need} are needed (attempt {attempt}). Check that the Redis nodes are "
        "up and reachable; our value was released on every node that answered."
    )
    return QuorumUnreachable(target.name, message, attempt, None, errors)


def _gave_up(
    target: Target, limit: int, need: int, opts: MutexOptions, tally: Tally, attempt: int
) -> LockNotAcquired:
    attempts = f"after {attempt} attempt{'s' if attempt != 1 else ''}"
    retry_after = _retry_after_s(tally, target.nodes)
    if len(tally.taken) >= need:
        when = "" if retry_after is None else f" (one frees in about {retry_after:.3g} s)"
        message = (
            f"Could not acquire semaphore {target.name!r} {attempts}: all {_permits(limit)} "
            f"are held on {len(tally.taken)} of {target.nodes} nodes{when}. Wait longer "
            "(tries=, timeout=), raise the limit, or skip the work with try_acquire()."
        )
        return LockTaken(target.name, message, attempt, retry_after, tally.taken)
    position, count = winning_slot(tally)
    if position is not None and count >= need:
        valid_ms = validity_ms(opts.expiry_ms, tally.elapsed_ms, opts.drift_factor)
        message = (
            f"Could not acquire semaphore {target.name!r} {attempts}: a quorum gave a permit "
            f"but the fan-out took {tally.elapsed_ms} ms, leaving no validity ({valid_ms} ms). "
            "Raise expiry= or check the latency to the Redis nodes."
        )
    else:
        message = (
            f"Could not acquire semaphore {target.name!r} {attempts}: no permit of "
            f"{_permits(limit)} was given by {need} of {target.nodes} nodes (best: {count}; "
            f"{len(tally.taken)} nodes full, {len(tally.errors)} failed). Other acquirers hold "
            "permits on some nodes; retry later or wait longer (tries=, timeout=)."
        )
    return LockNotAcquired(target.name, message, attempt, retry_after)


def _timed_out(
    target: Target, limit: int, timeout_ms: int, tally: Tally, attempt: int
) -> LockTimeout:
    message = (
        f"Could not acquire semaphore {target.name!r} within timeout={timeout_ms / 1000:.3g} s: "
        f"{attempt} attempt{'s' if attempt != 1 else ''}; the last one found all "
        f"{_permits(limit)} held on {len(tally.taken)} of {target.nodes} nodes "
        f"({len(tally.errors)} failed). Wait longer or skip the work with try_acquire()."
    )
    return LockTimeout(target.name, message, attempt, _retry_after_s(tally, target.nodes))
