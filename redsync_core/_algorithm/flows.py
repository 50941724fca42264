"""The Redlock flows: acquire, extend, release and check, as generators of effects.

Each flow yields a ``FanOut`` or a ``Sleep``, receives a ``Tally`` (``Woke`` or None after a sleep), and
returns its outcome or raises a ``LockError``. The drivers in ``_sync.py`` and ``_async.py``
forward effects to the transport and replies back; they make no decision of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple, TypeVar

from .._exceptions import (
    LockNotAcquired,
    LockTaken,
    LockTimeout,
    NodeError,
    QuorumUnreachable,
)
from .._options import MutexOptions
from .effects import Answer, Effect, FanOut, NodeReply, Op, Sleep, Status, Tally, Waiter, Woke
from .fencing import Acquired, next_token
from .timing import fanout_deadline_ms, quorum, retry_delay_ms, validity_ms

__all__ = [
    "Acquired",
    "Extended",
    "Retries",
    "Target",
    "acquire",
    "acquire_token",
    "check",
    "extend",
    "release",
    "retry_after_ms",
    "retry_schedule",
    "take_over",
    "try_acquire",
    "wake_at_ms",
]


class Target(NamedTuple):
    """What a flow works on: the mutex name (for messages), its Redis key and value, N nodes.

    ``keys``: every key of a multi-mutex (its fan-outs go through ``family.over_keys``). (A
    tuple, like ``FanOut``: every lock() and unlock() makes one.)
    """

    name: str
    key: str
    value: str
    nodes: int
    keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Extended:
    """Outcome of an extension: the new validity end, or None; ``gone`` when a quorum said
    that our value is no longer there (the lock is lost for sure, not just unreachable)."""

    until_ms: int | None
    gone: bool = False


class Retries(NamedTuple):
    """The retry policy of one acquire call: ``opts``' delays and wake-ups, up to ``tries``
    attempts (None: unlimited), never past ``timeout_ms`` (None: no limit) after ``begun_ms``;
    ``randrange`` draws the delays' jitter. (A tuple: one is made on every lock() call.)"""

    opts: MutexOptions
    begun_ms: int
    tries: int | None
    timeout_ms: int | None
    randrange: Callable[[int, int], int]

    @property
    def give_up_ms(self) -> int | None:
        """When the call gives up (monotonic ms), or None without a timeout."""
        return None if self.timeout_ms is None else self.begun_ms + self.timeout_ms

    def budget_ms(self, now_ms: int, node_deadline_ms: int | None) -> int | None:
        """Return the deadline of a fan-out sent at ``now_ms``: the nodes' own
        (``node_deadline_ms``), within what is left of the timeout (at least 1 ms)."""
        give_up_ms = self.give_up_ms
        if give_up_ms is None:
            return node_deadline_ms
        left_ms = max(1, give_up_ms - now_ms)
        return left_ms if node_deadline_ms is None else min(node_deadline_ms, left_ms)


R = TypeVar("R")

#: Builds the error an acquire flow raises from its last tally and the number of tries made.
GiveUp = Callable[[Tally, int], LockNotAcquired]

#: A waiter holds a lock handed over to it without an attempt only when it has waited at most
#: this fraction of the expiry since its first attempt: then at least the rest of the expiry is
#: left; a later hand-over costs one attempt, which re-arms the TTL of the keys.
HANDED_OVER_WITHIN = 0.1

#: A waiter woken early within this many ms of calling lock() waits YOUNG_DEFER_MS before
#: trying, so that the waiters woken by the same notice who waited longer go first.
YOUNG_MS = 5
YOUNG_DEFER_MS = 1


def _send(tally: Answer) -> Tally:
    # A FanOut is always answered with a Tally; None or Woke only ever answer a Sleep.
    if not isinstance(tally, Tally):  # pragma: no cover - a driver bug
        raise RuntimeError(f"driver answered a FanOut with {tally!r}")
    return tally


def acquire(
    opts: MutexOptions,
    target: Target,
    *,
    now_ms: int,
    tries: int | None,
    timeout_ms: int | None,
    randrange: Callable[[int, int], int],
    waiter: Waiter | None = None,
    fresh: bool = False,
) -> Generator[Effect, Answer, int]:
    """Try to take the lock on a quorum; return the monotonic time (ms) its validity ends.

    ``acquire_token`` without the token; raises the same errors.
    """
    acquired = yield from acquire_token(
        opts,
        target,
        now_ms=now_ms,
        tries=tries,
        timeout_ms=timeout_ms,
        randrange=randrange,
        waiter=waiter,
        fresh=fresh,
    )
    return acquired.until_ms


def acquire_token(
    opts: MutexOptions,
    target: Target,
    *,
    now_ms: int,
    tries: int | None,
    timeout_ms: int | None,
    randrange: Callable[[int, int], int],
    waiter: Waiter | None = None,
    queue: bool = True,
    fresh: bool = False,
) -> Generator[Effect, Answer, Acquired]:
    """Try to take the lock on a quorum; return when its validity ends, and its token.

    With ``opts.fencing`` an attempt that won a quorum draws a fencing token and raises the
    counters (one more fan-out, see ``fencing``); the attempt succeeds only if a quorum took
    the token within the validity, which runs from the start of the attempt.

    The attempts follow ``retry_schedule`` (``tries``, ``timeout_ms``, ``wake_on_release``).
    After every failed attempt the key is released on every node that may hold our value, so
    no partial acquisition is left behind.

    ``waiter`` (this call, given back by the driver when the call ends) goes with every attempt
    and wakeable sleep: its attempts queue it on the nodes that find the key held (not fenced
    ones), a release there wakes the oldest queued waiter across processes, and it leaves the
    queues when it wins or gives up (not on node errors: the queues expire). Within one process
    a notice wakes only the oldest waiter of the key, which passes the turn on when it sleeps
    again or ends. ``queue=False`` keeps the turns but queues nothing (a multi-mutex: its
    attempts are multi-key scripts, which have no queues).

    ``fresh``: the caller drew ``target.value`` for this call (no node can hold it yet). The
    first attempt then says so (``FanOut.fresh``: without a waiter it needs no script); later
    ones do not, since a reply lost on the way may have left our value on a node.

    Raises:
        QuorumUnreachable: node errors left fewer than a quorum of nodes able to answer.
        LockTimeout: ``timeout_ms`` ran out before the tries did.
        LockTaken: the last attempt found a quorum holding another value.
        LockNotAcquired: the tries ran out otherwise (e.g. the validity was used up).
    """
    need = quorum(target.nodes)
    ttl_ms = opts.expiry_ms
    node_deadline_ms = fanout_deadline_ms(ttl_ms, opts.timeout_factor)
    retries = Retries(opts, now_ms, tries, timeout_ms, randrange)
    queued = False  # an attempt failed: the waiter may be queued on some node
    # Fenced attempts (FENCED_ACQUIRE) and those of a multi-mutex (``queue=False``) queue
    # nobody: their waiters are woken as without queues.
    in_queue = waiter if queue and not opts.fencing else None
    # Hand-over: a node sets the key to our value when a release there pops us off its queue,
    # never before it queued us, so never before our first attempt began (``first_ms``); a
    # key handed over lives ``ttl_ms`` from then at least. Only our own clean-up deletes our
    # value from a node: a hand-over heard from a node that a clean-up released may be void,
    # and only attempts count there (``released``: those nodes).
    first_ms: int | None = None
    released: frozenset[int] = _NONE
    unsent = fresh  # no attempt went out yet: no node can hold our value

    def attempt(
        now_ms: int, early: bool
    ) -> Generator[Effect, Answer, tuple[Tally, Acquired | None, int]]:
        """Make one attempt; return the tally it is judged on, the acquisition (or None) and
        the time after it (after the release of a lost attempt)."""
        nonlocal queued, first_ms, released, unsent
        effect = _attempt_effect(
            opts,
            target,
            retries.budget_ms(now_ms, node_deadline_ms),
            early=early,
            waiter=in_queue,
            queued=queued,
            fresh=unsent,
        )
        unsent = False
        tally, won, after_ms = yield from _attempt(
            opts, target, effect, node_deadline_ms, retries, in_queue
        )
        if first_ms is None:
            first_ms = tally.started_ms
        if won is None:
            queued = in_queue is not None
            if in_queue is not None:  # only a queued waiter is handed the lock over
                released |= _maybe_ours(tally)
        return tally, won, after_ms

    def handed_over(woke: Woke) -> Acquired | None:
        """Hold the lock without an attempt when a quorum of nodes handed it over to us (and
        soon enough that most of its TTL is left); None: make an attempt instead."""
        granted = woke.granted - released
        if first_ms is None or len(granted) < need:
            return None
        waited_ms = woke.now_ms - first_ms
        valid_ms = validity_ms(ttl_ms, waited_ms, opts.drift_factor)
        if waited_ms > ttl_ms * HANDED_OVER_WITHIN or valid_ms <= 0:
            return None  # an attempt re-arms the keys that hold our value
        # No LEAVE here: where the key was not handed over (yet) the unlock takes us off the
        # queue (``release(waiter=)``), without a round trip now.
        handed = len(granted) < target.nodes
        return Acquired(woke.now_ms + valid_ms, None, in_queue if handed else None)

    def sleep(ms: int, since_ms: int, held: frozenset[int] | None) -> Sleep:
        # A hand-over is won on a quorum, mostly before every node handed over: the unlock
        # then also takes the waiter off the queues there (``release(waiter=)``).
        then = None if in_queue is None else _release_effect(opts, target, in_queue)
        return Sleep(ms, target.key, since_ms, held, waiter, then=then)

    try:
        return (
            yield from retry_schedule(
                retries,
                target.nodes,
                attempt,
                sleep,
                unreachable=partial(_unreachable, target, need),
                gave_up=partial(_gave_up, target, need, opts),
                timed_out=partial(_timed_out, target, need, timeout_ms or 0),
                handed_over=handed_over if in_queue is not None else None,
            )
        )
    except QuorumUnreachable:
        raise  # node errors: the queues expire
    except LockNotAcquired:
        if in_queue is not None:  # gave up on tries or time
            yield from _leave(target, in_queue, node_deadline_ms, ttl_ms)
        raise


def try_acquire(
    opts: MutexOptions, target: Target, *, fresh: bool = False, quiet: bool = True
) -> Generator[Effect, Answer, Acquired | None]:
    """Make one attempt, without retries or waiting (``try_lock``); return the acquisition, or
    None when the attempt lost (after releasing what it may hold).

    ``acquire_token`` with one try, without its retry machinery and without building an error
    nobody reads: a contended try is the hottest path of a busy lock. ``quiet=False`` raises
    the error ``acquire_token`` raises instead of returning None (a listener's ``LockEvent``
    carries it). ``fresh`` as for ``acquire_token``.

    Raises:
        QuorumUnreachable: node errors left fewer than a quorum of nodes able to answer.
        LockNotAcquired: (only with ``quiet=False``) the attempt lost, as ``acquire_token``.
    """
    need = quorum(target.nodes)
    node_deadline_ms = fanout_deadline_ms(opts.expiry_ms, opts.timeout_factor)
    effect = _attempt_effect(opts, target, node_deadline_ms, fresh=fresh)
    tally, won, _ = yield from _attempt(opts, target, effect, node_deadline_ms)
    if won is not None:
        return won
    if len(tally.errors) > target.nodes - need:
        raise _unreachable(target, need, tally, 1)
    if not quiet:
        raise _gave_up(target, need, opts, tally, 1)
    return None


def _attempt_effect(
    opts: MutexOptions,
    target: Target,
    deadline_ms: int | None,
    *,
    early: bool = False,
    waiter: Waiter | None = None,
    queued: bool = False,
    fresh: bool = False,
) -> FanOut:
    """Return the fan-out of one acquire attempt (``FanOut`` says what each flag means)."""
    return FanOut(
        Op.FENCED_ACQUIRE if opts.fencing else Op.ACQUIRE,
        target.key,
        target.value,
        ttl_ms=opts.expiry_ms,
        deadline_ms=deadline_ms,
        stop_at=quorum(target.nodes) if opts.fail_fast else None,
        early=early,
        waiter=waiter,
        queued=queued,
        fresh=fresh,
    )


def _attempt(
    opts: MutexOptions,
    target: Target,
    effect: FanOut,
    node_deadline_ms: int | None,
    retries: Retries | None = None,
    waiter: Waiter | None = None,
) -> Generator[Effect, Answer, tuple[Tally, Acquired | None, int]]:
    """Send one acquire attempt (``effect``); return the tally it is judged on, the
    acquisition (None: it lost) and the time after it.

    With ``opts.fencing`` a win on a quorum draws a fencing token and raises the counters (one
    more fan-out, within what ``retries`` leaves of the timeout); the attempt is judged on those
    replies, its validity running from the start of the attempt. A win takes the queued
    ``waiter`` off the nodes that did not take part; a loss releases the key where it may hold
    our value (``_clean_up``).
    """
    need = quorum(target.nodes)
    ttl_ms = effect.ttl_ms
    tally = _send((yield effect))
    valid_ms = validity_ms(ttl_ms, tally.elapsed_ms, opts.drift_factor)
    token = None
    if opts.fencing and tally.ok >= need and valid_ms > 0:
        token = next_token(tally)
        fence = effect._replace(
            op=Op.FENCE,
            ttl_ms=0,
            deadline_ms=node_deadline_ms
            if retries is None
            else retries.budget_ms(tally.finished_ms, node_deadline_ms),
            early=False,
            token=token,
            fresh=False,
        )
        fenced = _send((yield fence))
        # Judged on the FENCE replies (TAKEN: another value there), validity on both.
        tally = Tally(fenced.replies, tally.started_ms, fenced.finished_ms)
        valid_ms = validity_ms(ttl_ms, tally.elapsed_ms, opts.drift_factor)
    if tally.ok >= need and valid_ms > 0:
        if waiter is not None:
            yield from _leave(target, waiter, node_deadline_ms, ttl_ms, tally.taken)
        return tally, Acquired(tally.finished_ms + valid_ms, token), tally.finished_ms
    after_ms = yield from _clean_up(target, tally, node_deadline_ms, waiter, ttl_ms)
    return tally, None, after_ms


def retry_schedule(
    retries: Retries,
    nodes: int,
    attempt: Callable[[int, bool], Generator[Effect, Answer, tuple[Tally, R | None, int]]],
    wait: Callable[[int, int, frozenset[int] | None], Sleep],
    *,
    unreachable: GiveUp,
    gave_up: GiveUp,
    timed_out: GiveUp,
    handed_over: Callable[[Woke], R | None] | None = None,
) -> Generator[Effect, Answer, R]:
    """Make ``attempt``s on ``nodes`` nodes until one wins; return what it won.

    The retry schedule of every acquire flow (a mutex's, a semaphore's). ``attempt(now_ms,
    early)`` makes one attempt (``early``: on a wake-up) and returns its tally, what it won
    (None: it lost, and released what it may hold) and the time after it. Makes up to
    ``retries.tries`` attempts (None: unlimited), waiting the retry delay between them, and
    never runs past ``retries.timeout_ms`` from ``retries.begun_ms``.

    With ``wake_on_release`` a delay ends early when a release notice for the flow's key (or
    any of its keys) arrives or when the failed attempt's replies say a quorum of the holder's
    keys has expired; the flow then tries at once (a waiter that called lock() less than
    ``YOUNG_MS`` ago first gives older waiters a ``YOUNG_DEFER_MS`` head start, unless the
    notice named it: then it is the oldest queued waiter; a notice naming it during the head
    start ends it, and a hand-over then wins without an attempt). Such an early attempt does
    not count as a try: if another waiter wins it, the flow waits out the rest of the same
    delay. The schedule (``tries`` delays, the longest wait) is the same with and without it.
    ``wait(ms, since_ms, nodes)`` builds these wakeable sleeps (with the flow's key or keys
    and waiter).
    ``handed_over(woke)``, given a wake-up on which nodes handed the key over, returns what the
    flow won without an attempt, or None to make one.

    Raises:
        LockNotAcquired: the error that ``unreachable`` (node errors left fewer than a quorum
            able to answer), ``timed_out`` (the timeout ran out before the tries did) or
            ``gave_up`` (the tries ran out) built from the last tally and the tries made.
    """
    opts, tries, give_up_ms = retries.opts, retries.tries, retries.give_up_ms
    need = quorum(nodes)
    now_ms = retries.begun_ms
    made = 0
    while True:
        made += 1
        tally, won, now_ms = yield from attempt(now_ms, False)
        if won is not None:
            return won
        if len(tally.errors) > nodes - need:
            raise unreachable(tally, made)
        if tries is not None and made >= tries:
            raise gave_up(tally, made)
        delay_ms = retry_delay_ms(
            made, fixed_s=opts.retry_delay, func=opts.retry_delay_func, randrange=retries.randrange
        )
        if give_up_ms is not None and now_ms + delay_ms >= give_up_ms:
            raise timed_out(tally, made)
        resume_ms = now_ms + delay_ms
        if not opts.wake_on_release or delay_ms <= 0:
            yield Sleep(delay_ms)
            now_ms = resume_ms
            continue
        # Wait out this delay, trying early whenever the lock may have become free.
        while True:
            wake_ms = wake_at_ms(tally, nodes, resume_ms)
            held = frozenset(tally.taken) or None  # news: a notice from one of these
            woke = yield wait(max(0, wake_ms - now_ms), tally.started_ms, held)
            now_ms = woke.now_ms if isinstance(woke, Woke) else max(now_ms, wake_ms)
            won = _handed(handed_over, woke)
            if won is not None:
                return won
            if now_ms >= resume_ms:
                break
            young = now_ms - retries.begun_ms < YOUNG_MS and now_ms + YOUNG_DEFER_MS < resume_ms
            if young and isinstance(woke, Woke) and not woke.named:
                # Older waiters first: a waiter that just arrived lets those woken by the
                # same notice who waited longer try before it (no queue, only a head start).
                # Only a notice naming it ends the head start early (news from no node): the
                # release that woke it may be handing the key over to it on the other nodes.
                woke = yield wait(YOUNG_DEFER_MS, tally.started_ms, _NONE)
                now_ms = woke.now_ms if isinstance(woke, Woke) else now_ms + YOUNG_DEFER_MS
                won = _handed(handed_over, woke)
                if won is not None:
                    return won
            tally, won, now_ms = yield from attempt(now_ms, True)
            if won is not None:
                return won
            # Lost to another waiter (or nodes failed): the scheduled attempt decides.
            if give_up_ms is not None and now_ms >= give_up_ms:
                raise timed_out(tally, made)


def _handed(handed_over: Callable[[Woke], R | None] | None, woke: Answer) -> R | None:
    """What a wake-up on which nodes handed the key over wins without an attempt (or None)."""
    if handed_over is None or not isinstance(woke, Woke) or not woke.granted:
        return None
    return handed_over(woke)


def _clean_up(
    target: Target,
    tally: Tally,
    deadline_ms: int | None,
    waiter: Waiter | None = None,
    ttl_ms: int = 0,
) -> Generator[Effect, Answer, int]:
    """Release a failed attempt's key where it may hold our value; return the time after.

    Step 5 of the algorithm. A node that answered TAKEN holds another value (the acquire
    script re-arms a key that already holds ours and answers OK), so it cannot hold ours and
    is skipped; nodes that answered OK, failed or were not waited for are released. When every
    node said TAKEN, nothing is sent: a contended try costs one round trip.

    A ``waiter`` is queued again where it is released (its attempt queued it where it found the
    key held), so that every node's queue names it. The release wakes the oldest other queued
    waiter only when fewer than a quorum of nodes were held by others: then nobody won the
    attempt and the lock is free. Otherwise another holder probably has it and its release will
    wake the next waiter.
    """
    mine = _maybe_ours(tally)
    if not mine:
        return tally.finished_ms
    only = None if len(mine) == target.nodes else mine
    release = FanOut(
        Op.RELEASE,
        target.key,
        target.value,
        ttl_ms=ttl_ms,
        deadline_ms=deadline_ms,
        only=only,
        waiter=waiter,
        wake=len(tally.taken) < quorum(target.nodes),
    )
    released = _send((yield release))
    return released.finished_ms


_NONE: frozenset[int] = frozenset()


def _maybe_ours(tally: Tally) -> frozenset[int]:
    """The nodes that may hold our value after an attempt: all but those that answered TAKEN
    (the acquire script re-arms a key that already holds ours and answers OK)."""
    mine = [
        i
        for i, reply in enumerate(tally.replies)
        if not (isinstance(reply, NodeReply) and reply.status is Status.TAKEN)
    ]
    return frozenset(mine) if mine else _NONE  # a list first: cheaper than a generator


def _leave(
    target: Target,
    waiter: Waiter | None,
    deadline_ms: int | None,
    ttl_ms: int,
    won_held: tuple[int, ...] | None = None,
) -> Generator[Effect, Answer, None]:
    """Take a waiter off the key's queues: on every node when it gives up (its failed attempts
    queued it; a key handed over to it since is released; where a release had just woken it,
    the next waiter is woken instead), or, when it won on a quorum, on the nodes that did not
    take part in the win (it may be queued there). No release then wakes it in vain."""
    if waiter is None or won_held == ():
        return
    only = None if won_held is None else frozenset(won_held)
    leave = FanOut(
        Op.LEAVE,
        target.key,
        target.value,
        ttl_ms=ttl_ms,
        deadline_ms=deadline_ms,
        only=only,
        waiter=waiter,
        wake=won_held is None,
    )
    _send((yield leave))


def wake_at_ms(tally: Tally, nodes: int, resume_ms: int) -> int:
    """Return when to try again at the latest: the end of the delay (``resume_ms``), or
    earlier when the attempt's replies say a quorum of the holder's keys expires before."""
    after_ms = retry_after_ms(tally, nodes)
    if after_ms is None or after_ms <= 0:
        return resume_ms  # unknown, or free already (then only the delay spaces the tries)
    return min(resume_ms, tally.finished_ms + after_ms + 1)


def extend(
    opts: MutexOptions,
    target: Target,
    *,
    ttl_ms: int,
    now_ms: int,
    until_ms: int | None,
) -> Generator[Effect, Answer, Extended]:
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
) -> Generator[Effect, Answer, int | None]:
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


def release(
    opts: MutexOptions, target: Target, waiter: Waiter | None = None
) -> Generator[Effect, Answer, bool]:
    """Compare-and-delete our value on every node; return True when a quorum deleted it.

    ``waiter``: the lock() call that took the lock, when it may still be queued on some node
    (a quorum handed the key over to it, not every node): it leaves the queues there too."""
    tally = _send((yield _release_effect(opts, target, waiter)))
    return tally.ok >= quorum(target.nodes)


def _release_effect(opts: MutexOptions, target: Target, waiter: Waiter | None) -> FanOut:
    """The fan-out of ``release`` (also made while a waiter sleeps: ``Sleep.then``)."""
    return FanOut(
        Op.RELEASE,
        target.key,
        target.value,
        ttl_ms=opts.expiry_ms,
        deadline_ms=fanout_deadline_ms(opts.expiry_ms, opts.timeout_factor),
        waiter=waiter,
        queued=waiter is not None,
    )


def check(opts: MutexOptions, target: Target) -> Generator[Effect, Answer, bool]:
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


def _retry_after_s(tally: Tally, nodes: int) -> float | None:
    ms = retry_after_ms(tally, nodes)
    return None if ms is None else ms / 1000


def _counted(tally: Tally, nodes: int) -> tuple[tuple[int, ...], int, float | None]:
    """Return ``tally.taken``, ``tally.ok`` and ``_retry_after_s`` in one pass over the
    replies (a ``lock()`` with ``tries=1`` builds its LockTaken on every contended try)."""
    taken: list[int] = []
    ok = free = 0
    ttls: list[int] = []
    for i, reply in enumerate(tally.replies):
        if isinstance(reply, NodeReply):
            if reply.status is Status.TAKEN:
                taken.append(i)
                if reply.ttl_ms is not None:
                    ttls.append(reply.ttl_ms)
            else:
                free += 1
                ok += reply.status is Status.OK
    missing = quorum(nodes) - free
    if missing <= 0:
        return tuple(taken), ok, 0.0
    if len(ttls) < missing:
        return tuple(taken), ok, None
    ttls.sort()
    return tuple(taken), ok, ttls[missing - 1] / 1000


def _describe_errors(errors: tuple[NodeError, ...]) -> str:
    return "; ".join(str(e) for e in errors)


def _unreachable(target: Target, need: int, tally: Tally, attempt: int) -> QuorumUnreachable:
    errors = tally.errors
    message = (
        f"Could not lock {target.name!r}: {len(errors)} of {target.nodes} nodes failed "
        f"({_describe_errors(errors)}), so at most {target.nodes - len(errors)} could agree and "
        f"{need} are needed (attempt {attempt}). Check that the Redis nodes are up and reachable; "
        "the key was released on every node that might hold it."
    )
    return QuorumUnreachable(target.name, message, attempt, None, errors)


def _gave_up(
    target: Target, need: int, opts: MutexOptions, tally: Tally, attempt: int
) -> LockNotAcquired:
    attempts = f"after {attempt} attempt{'s' if attempt != 1 else ''}"
    taken, ok, retry_after = _counted(tally, target.nodes)
    if len(taken) >= need:
        when = "" if retry_after is None else f" (free in about {retry_after:.3g} s)"
        message = (
            f"Could not lock {target.name!r}: {ok} of {target.nodes} nodes agreed, {need} "
            f"needed, {attempts}; "
            f"{len(taken)} nodes hold it for another holder{when}. "
            "Wait longer (tries=, timeout=) or skip the work with try_lock()."
        )
        return LockTaken(target.name, message, attempt, retry_after, taken)
    if ok >= need:
        ttl_ms = opts.expiry_ms
        valid_ms = validity_ms(ttl_ms, tally.elapsed_ms, opts.drift_factor)
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
    target: Target, need: int, timeout_ms: int, tally: Tally, attempt: int
) -> LockTimeout:
    message = (
        f"Could not lock {target.name!r} within timeout={_seconds(timeout_ms)}: {attempt} "
        f"attempt{'s' if attempt != 1 else ''}, the last one: {_agreed(tally, need, target.nodes)} "
        f"({len(tally.taken)} held by another holder, {len(tally.errors)} failed). "
        "Another holder has it; wait longer or skip the work with try_lock()."
    )
    return LockTimeout(target.name, message, attempt, _retry_after_s(tally, target.nodes))
