"""The Redlock flows: acquire, extend, release and check, as generators of effects.

Each flow yields a ``FanOut`` or a ``Sleep``, receives a ``Tally`` (or None after a sleep), and
returns its outcome or raises a ``LockError``. The drivers in ``_sync.py`` and ``_async.py``
forward effects to the transport and replies back; they make no decision of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

from .._exceptions import (
    LockNotAcquired,
    LockTaken,
    LockTimeout,
    NodeError,
    QuorumUnreachable,
)
from .._options import MutexOptions
from .effects import Effect, FanOut, NodeReply, Op, Sleep, Status, Tally
from .timing import fanout_deadline_ms, quorum, retry_delay_ms, validity_ms

__all__ = [
    "Extended",
    "Target",
    "acquire",
    "check",
    "extend",
    "release",
    "retry_after_ms",
    "take_over",
]


@dataclass(frozen=True, slots=True)
class Target:
    """What a flow works on: the mutex name (for messages), its Redis key and value, N nodes."""

    name: str
    key: str
    value: str
    nodes: int


@dataclass(frozen=True, slots=True)
class Extended:
    """Outcome of an extension: the new validity end, or None; ``gone`` when a quorum said
    that our value is no longer there (the lock is lost for sure, not just unreachable)."""

    until_ms: int | None
    gone: bool = False


def _send(tally: Tally | None) -> Tally:
    # A FanOut is always answered with a Tally; None only ever answers a Sleep.
    if tally is None:  # pragma: no cover - a driver bug
        raise RuntimeError("driver answered a FanOut with None")
    return tally


def acquire(
    opts: MutexOptions,
    target: Target,
    *,
    now_ms: int,
    tries: int | None,
    timeout_ms: int | None,
    randrange: Callable[[int, int], int],
) -> Generator[Effect, Tally | None, int]:
    """Try to take the lock on a quorum; return the monotonic time (ms) its validity ends.

    Makes up to ``tries`` attempts (None: unlimited), sleeping the retry delay between them, and
    never runs past ``timeout_ms`` from ``now_ms``. After every failed attempt the key is
    released on all nodes, so no partial acquisition is left behind.

    Raises:
        QuorumUnreachable: node errors left fewer than a quorum of nodes able to answer.
        LockTimeout: ``timeout_ms`` ran out before the tries did.
        LockTaken: the last attempt found a quorum holding another value.
        LockNotAcquired: the tries ran out otherwise (e.g. the validity was used up).
    """
    need = quorum(target.nodes)
    ttl_ms = opts.expiry_ms
    node_deadline_ms = fanout_deadline_ms(ttl_ms, opts.timeout_factor)
    give_up_ms = None if timeout_ms is None else now_ms + timeout_ms
    attempt = 0
    while True:
        attempt += 1
        deadline_ms = node_deadline_ms
        if give_up_ms is not None:
            left_ms = max(1, give_up_ms - now_ms)
            deadline_ms = left_ms if deadline_ms is None else min(deadline_ms, left_ms)
        tally = _send(
            (
                yield FanOut(
                    Op.ACQUIRE,
                    target.key,
                    target.value,
                    ttl_ms=ttl_ms,
                    deadline_ms=deadline_ms,
                    stop_at=need if opts.fail_fast else None,
                )
            )
        )
        valid_ms = validity_ms(ttl_ms, tally.elapsed_ms, opts.drift_factor)
        if tally.ok >= need and valid_ms > 0:
            return tally.finished_ms + valid_ms

        # Step 5 of the algorithm: release on every node, not only those we think we hold.
        released = _send(
            (yield FanOut(Op.RELEASE, target.key, target.value, deadline_ms=node_deadline_ms))
        )
        now_ms = released.finished_ms
        if len(tally.errors) > target.nodes - need:
            raise _unreachable(target, tally, need, attempt)
        if tries is not None and attempt >= tries:
            raise _gave_up(target, tally, released, need, attempt, ttl_ms, valid_ms)
        delay_ms = retry_delay_ms(
            attempt,
            fixed_s=opts.retry_delay,
            func=opts.retry_delay_func,
            randrange=randrange,
        )
        if give_up_ms is not None and now_ms + delay_ms >= give_up_ms:
            raise _timed_out(target, tally, released, need, attempt, timeout_ms or 0)
        yield Sleep(delay_ms)
        now_ms += delay_ms


def extend(
    opts: MutexOptions,
    target: Target,
    *,
    ttl_ms: int,
    now_ms: int,
    until_ms: int | None,
) -> Generator[Effect, Tally | None, Extended]:
    """Reset the TTL of our value on a quorum; return the new validity end (or None).

    Refuses, touching no key, once the local validity has run out (``until_ms`` passed), unless
    ``set_nx_on_extend`` lets it re-create missing keys. With no local validity at all
    (``until_ms`` None: a value handed over with ``value=``) the nodes decide.
    """
    if not opts.set_nx_on_extend and until_ms is not None and now_ms >= until_ms:
        return Extended(None)
    need = quorum(target.nodes)
    tally = _send(
        (
            yield FanOut(
                Op.EXTEND,
                target.key,
                target.value,
                ttl_ms=ttl_ms,
                deadline_ms=fanout_deadline_ms(ttl_ms, opts.timeout_factor),
                set_nx=opts.set_nx_on_extend,
            )
        )
    )
    valid_ms = validity_ms(ttl_ms, tally.elapsed_ms, opts.drift_factor)
    if tally.ok >= need and valid_ms > 0:
        return Extended(tally.finished_ms + valid_ms)
    return Extended(None, gone=tally.not_ours > target.nodes - need)


def take_over(
    opts: MutexOptions,
    target: Target,
    *,
    replaces: str,
    now_ms: int,
) -> Generator[Effect, Tally | None, int | None]:
    """Replace the value ``replaces`` with ours on a quorum in one step per node; return the
    monotonic time (ms) our validity ends, or None.

    One attempt. On failure our value is released on every node, as after a failed acquire;
    nodes where the swap went through no longer hold ``replaces`` either (a quorum did not hold
    it, so its holder had lost the lock already, unless nodes failed).
    """
    need = quorum(target.nodes)
    ttl_ms = opts.expiry_ms
    deadline_ms = fanout_deadline_ms(ttl_ms, opts.timeout_factor)
    tally = _send(
        (
            yield FanOut(
                Op.SWAP,
                target.key,
                target.value,
                ttl_ms=ttl_ms,
                deadline_ms=deadline_ms,
                replaces=replaces,
            )
        )
    )
    valid_ms = validity_ms(ttl_ms, tally.elapsed_ms, opts.drift_factor)
    if tally.ok >= need and valid_ms > 0:
        return tally.finished_ms + valid_ms
    _send((yield FanOut(Op.RELEASE, target.key, target.value, deadline_ms=deadline_ms)))
    return None


def release(opts: MutexOptions, target: Target) -> Generator[Effect, Tally | None, bool]:
    """Compare-and-delete our value on every node; return True when a quorum deleted it."""
    tally = _send(
        (
            yield FanOut(
                Op.RELEASE,
                target.key,
                target.value,
                deadline_ms=fanout_deadline_ms(opts.expiry_ms, opts.timeout_factor),
            )
        )
    )
    return tally.ok >= quorum(target.nodes)


def check(opts: MutexOptions, target: Target) -> Generator[Effect, Tally | None, bool]:
    """GET the key on every node; return True when a quorum holds our value."""
    tally = _send(
        (
            yield FanOut(
                Op.GET,
                target.key,
                target.value,
                deadline_ms=fanout_deadline_ms(opts.expiry_ms, opts.timeout_factor),
            )
        )
    )
    return tally.ok >= quorum(target.nodes)


def retry_after_ms(tally: Tally, nodes: int) -> int | None:
    """Return when enough of the holder's keys expire for a quorum to be free (ms), if known."""
    free = sum(  # nodes that failed are not free: they may still hold the key
        1 for r in tally.replies if isinstance(r, NodeReply) and r.status is not Status.TAKEN
    )
    missing = quorum(nodes) - free
    if missing <= 0:
        return 0
    ttls = sorted(
        r.ttl_ms
        for r in tally.replies
        if isinstance(r, NodeReply) and r.status is Status.TAKEN and r.ttl_ms is not None
    )
    if len(ttls) < missing:
        return None
    return ttls[missing - 1]


# --- error messages -------------------------------------------------------------------------


def _agreed(tally: Tally, need: int, nodes: int) -> str:
    return f"{tally.ok} of {nodes} nodes agreed, {need} needed"


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.3g} s"


def _retry_after_s(released: Tally, nodes: int) -> float | None:
    ms = retry_after_ms(released, nodes)
    return None if ms is None else ms / 1000


def _describe_errors(errors: tuple[NodeError, ...]) -> str:
    return "; ".join(str(e) for e in errors)


def _unreachable(target: Target, tally: Tally, need: int, attempt: int) -> QuorumUnreachable:
    errors = tally.errors
    message = (
        f"Could not lock {target.name!r}: {len(errors)} of {target.nodes} nodes failed "
        f"({_describe_errors(errors)}), so at most {target.nodes - len(errors)} could agree and "
        f"{need} are needed (attempt {attempt}). Check that the Redis nodes are up and reachable; "
        "the key was released on every node that answered."
    )
    return QuorumUnreachable(target.name, message, attempt, None, errors)


def _gave_up(
    target: Target,
    tally: Tally,
    released: Tally,
    need: int,
    attempt: int,
    ttl_ms: int,
    valid_ms: int,
) -> LockNotAcquired:
    attempts = f"after {attempt} attempt{'s' if attempt != 1 else ''}"
    retry_after = _retry_after_s(released, target.nodes)
    if len(tally.taken) >= need:
        when = "" if retry_after is None else f" (free in about {retry_after:.3g} s)"
        message = (
            f"Could not lock {target.name!r}: {_agreed(tally, need, target.nodes)}, {attempts}; "
            f"{len(tally.taken)} nodes hold it for another holder{when}. "
            "Wait longer (tries=, timeout=) or skip the work with try_lock()."
        )
        return LockTaken(target.name, message, attempt, retry_after, tally.taken)
    if tally.ok >= need:
        message = (
            f"Could not lock {target.name!r} {attempts}: a quorum agreed but the fan-out took "
            f"{tally.elapsed_ms} ms of the {ttl_ms} ms expiry, leaving no validity "
            f"({valid_ms} ms). Raise expiry= or check the latency to the Redis nodes."
        )
    else:
        failed = f", {len(tally.errors)} failed ({_describe_errors(tally.errors)})"
        message = (
            f"Could not lock {target.name!r}: {_agreed(tally, need, target.nodes)} {attempts} "
            f"({len(tally.taken)} held by another holder{failed if tally.errors else ''}). "
            "Another holder may have it on some nodes; retry later or wait longer (tries=)."
        )
    return LockNotAcquired(target.name, message, attempt, retry_after)


def _timed_out(
    target: Target,
    tally: Tally,
    released: Tally,
    need: int,
    attempt: int,
    timeout_ms: int,
) -> LockTimeout:
    message = (
        f"Could not lock {target.name!r} within timeout={_seconds(timeout_ms)}: {attempt} "
        f"attempt{'s' if attempt != 1 else ''}, the last one: {_agreed(tally, need, target.nodes)} "
        f"({len(tally.taken)} held by another holder, {len(tally.errors)} failed). "
        "Another holder has it; wait longer or skip the work with try_lock()."
    )
    return LockTimeout(target.name, message, attempt, _retry_after_s(released, target.nodes))
