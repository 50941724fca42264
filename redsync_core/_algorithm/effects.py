"""Effects the flows yield (what to do) and the replies they receive (what happened)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

from .._exceptions import NodeError

__all__ = [
    "Answer",
    "Batch",
    "Effect",
    "FanOut",
    "KeyState",
    "NodeKeys",
    "NodeReply",
    "Op",
    "ScanPage",
    "Sleep",
    "Status",
    "Tally",
    "Waiter",
    "Woke",
    "glob_escape",
]


class Op(enum.Enum):
    """The command a fan-out sends to every node."""

    ACQUIRE = "acquire"  # set-if-free (SET NX PX; the holder's PTTL when taken): script or plain
    RELEASE = "release"  # compare-and-delete script (publishes a release notice)
    EXTEND = "extend"  # compare-and-PEXPIRE script (optionally SET NX when missing)
    GET = "get"  # GET key, compared with value
    INSPECT = "inspect"  # GET and PTTL of the key, for status tools
    DELETE = "delete"  # DEL key whatever its value (forced release; publishes a notice)
    SCAN = "scan"  # one SCAN page of the keys matching ``key`` (a pattern), for lock listings
    # Several keys at once (``FanOut.keys``): semaphore permits and multi-mutexes.
    ACQUIRE_ANY = "acquire_any"  # SET NX the first free key in order; the reply says which
    ACQUIRE_ALL = "acquire_all"  # SET NX PX every key, or none when one is taken
    RELEASE_ALL = "release_all"  # compare-and-delete every key (a notice for each deleted)
    EXTEND_ALL = "extend_all"  # compare-and-PEXPIRE every key
    GET_ALL = "get_all"  # compare every key with the value
    SWAP = "swap"  # compare-and-set script: replace ``replaces`` with our value, reset the TTL
    FENCED_ACQUIRE = "fenced_acquire"  # SET NX PX, then read the fencing counter where it was set
    FENCE = "fence"  # raise the fencing counter to ``token`` where the key still holds our value
    LEAVE = "leave"  # take ``waiter`` off the key's waiter queue (it gave up, or won)

    # Members are singletons, equal only to themselves: hashed by identity, in C (Enum's own
    # __hash__ is a Python call, and the transport looks an Op up in a set for every reply).
    __hash__ = object.__hash__


class Status(enum.Enum):
    """What one node answered, decoded by the transport."""

    OK = "ok"  # set / deleted / extended / holds our value
    TAKEN = "taken"  # the key holds another value
    MISSING = "missing"  # the key does not exist


@dataclass(frozen=True, slots=True)
class KeyState:
    """A key found by a SCAN page: its Redis type, its value when a string, its TTL (ms)."""

    key: str
    kind: str  # the TYPE reply: "string", "hash"..., "none" when it went after SCAN saw it
    value: str | None = None
    ttl_ms: int | None = None  # None: no expiry


@dataclass(frozen=True, slots=True)
class ScanPage:
    """One node's SCAN page: the next cursor (0: the node has been listed) and the keys."""

    cursor: int
    keys: tuple[KeyState, ...]


def glob_escape(text: str) -> str:
    """Escape ``text`` so that a Redis glob (SCAN MATCH) matches it literally."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


@dataclass
class NodeKeys:
    """What one node listed: its keys, and whether the listing is complete or why not.

    Filled in page by page by the transport's listing; read by the shared front end.
    """

    index: int
    address: str
    keys: list[KeyState] = field(default_factory=list)
    cursor: int | None = 0  # None once the node is done (listed, failed or cut short)
    error: str | None = None  # why the node was not listed to the end


@dataclass(frozen=True, slots=True)
class NodeReply:
    """One node's answer.

    ``ttl_ms`` is the holder's remaining TTL when known; ``holder`` is the value found (INSPECT);
    ``page`` is what a SCAN found; ``counter`` is the node's fencing counter (FENCED_ACQUIRE).
    ``slot`` is the position in ``FanOut.keys`` of the key taken (ACQUIRE_ANY).
    """

    status: Status
    ttl_ms: int | None = None
    holder: str | None = None
    page: ScanPage | None = None
    slot: int | None = None
    counter: int | None = None


OK = NodeReply(Status.OK)
_OK, _TAKEN = Status.OK, Status.TAKEN
MISSING = NodeReply(Status.MISSING)
TAKEN = NodeReply(Status.TAKEN)


@dataclass(frozen=True, slots=True, eq=False)
class Waiter:
    """A waiting ``lock()`` call: its id in the key's waiter queue on each node, its rank there
    (its wall clock in ms when it began: older waiters first, across processes), and the proof
    that a hand-over notice is for its value (``queues.handover_proof``).

    Each call is its own waiter: equal and hashed by identity (the turns key dicts on it, once
    per notice)."""

    id: str
    rank: int
    proof: str = ""


class FanOut(NamedTuple):
    """Send one command to every node at once and wait at most ``deadline_ms`` for the replies.

    With ``stop_at`` set (fail fast), the transport may return as soon as ``stop_at`` nodes
    answered OK or ``stop_at`` nodes answered TAKEN; unanswered nodes are then ``None``.
    With ``only`` set, the command goes to those node indexes only; the others stay ``None``.
    A SCAN reads ``page_size`` keys matching the pattern ``key`` from ``cursor`` on.
    The ``*_ALL`` and ``ACQUIRE_ANY`` operations work on ``keys`` (``key`` is the first of them).
    A FENCE raises the fencing counter to ``token``.
    An ACQUIRE with ``waiter`` queues it on the nodes that find the key held (so that a release
    there wakes the oldest waiter, see ``scripts.RELEASE``) and, with ``queued`` (an earlier
    attempt may have queued it), takes it off the queue where the key is set. A RELEASE wakes
    the oldest queued waiter, or with ``wake`` False (a clean-up that may have lost to a
    holder) nobody; with ``waiter`` (a clean-up) it queues that waiter again, ``ttl_ms`` long,
    and with ``waiter`` and ``queued`` (an unlock) it takes the waiter off the queue first.
    A LEAVE takes ``waiter`` off the queue and, with ``wake``, hands its turn on (see
    ``scripts.LEAVE``).
    ``fresh`` (ACQUIRE): no node can hold ``value`` yet (drawn for this ``lock()`` call, and
    this is its first attempt), so no key is ours to re-arm: without a ``waiter`` the attempt
    goes as plain ``SET NX PX`` and ``PTTL`` instead of the acquire script (see
    ``_transport.commands``). A value the caller chose (``value=``, ``gen_value_func``) or
    sent before (a later attempt: a reply may have been lost) is never fresh.

    A tuple: every attempt and release makes one (a frozen dataclass took three times as long
    to build, one ``object.__setattr__`` per field); ``_replace`` derives another.
    """

    op: Op
    key: str
    value: str
    ttl_ms: int = 0
    deadline_ms: int | None = None
    set_nx: bool = False
    stop_at: int | None = None
    only: frozenset[int] | None = None
    early: bool = False  # an ACQUIRE brought forward by a wake-up: not counted as a try
    cursor: int = 0
    page_size: int = 0
    keys: tuple[str, ...] = ()
    replaces: str = ""  # SWAP only: the value taken over
    token: int = 0
    waiter: Waiter | None = None
    queued: bool = False
    wake: bool = True
    fresh: bool = False


@dataclass(frozen=True, slots=True)
class Batch:
    """Several EXTEND fan-outs sent as one round trip per node (auto-extension of many locks)."""

    effects: tuple[FanOut, ...]
    deadline_ms: int | None = None
    stop_at: None = None
    only: None = None


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``ms`` before the next attempt.

    With ``key`` set the wait may end early: the driver also wakes on a release notice for that
    key received after ``since_ms`` (its own clock) from one of ``nodes`` (the nodes the last
    attempt found held; None: any; empty: only a notice naming ``waiter``), and then answers
    with ``Woke``. The answer None means the full ``ms`` passed. ``waiter``: a token of the
    waiting ``lock()`` call, the same for all its sleeps; a notice then wakes one such waiter
    of the key per process (the oldest), not all.
    With ``keys`` set (semaphore permits, multi-mutexes; ``key`` is the first of them) a notice
    for any of them ends the wait, and the turns are taken per key.
    ``then``: the release that the unlock after a hand-over in this wait will send; the driver
    may make its command ready while it waits (``commands.prepare``), off the path of the next
    hand-off.
    """

    ms: int
    key: str | None = None
    since_ms: int = 0
    nodes: frozenset[int] | None = None
    waiter: object | None = None
    keys: tuple[str, ...] = ()
    then: FanOut | None = None


@dataclass(frozen=True, slots=True)
class Woke:
    """The answer to a ``Sleep`` cut short by a notice: the driver's clock when it ended,
    whether the notice named the waiter (a release woke it alone, off the key's queue), and the
    nodes that have handed the key over to it (set it to its value) in this ``lock()`` call."""

    now_ms: int
    named: bool = False
    granted: frozenset[int] = frozenset()


Effect = FanOut | Sleep


class Tally(NamedTuple):
    """The replies of one fan-out, in node order, with the driver's clock readings around it.
    (A tuple, like ``FanOut``: every fan-out makes one.)"""

    replies: tuple[NodeReply | NodeError | None, ...]
    started_ms: int
    finished_ms: int

    @property
    def elapsed_ms(self) -> int:
        return self.finished_ms - self.started_ms

    # Plain loops, not generator expressions: every attempt reads these (half the cost).

    @property
    def ok(self) -> int:
        count = 0
        for r in self.replies:
            if isinstance(r, NodeReply) and r.status is _OK:
                count += 1
        return count

    @property
    def taken(self) -> tuple[int, ...]:
        taken = []
        for i, r in enumerate(self.replies):
            if isinstance(r, NodeReply) and r.status is _TAKEN:
                taken.append(i)
        return tuple(taken)

    @property
    def errors(self) -> tuple[NodeError, ...]:
        errors = []
        for r in self.replies:
            if isinstance(r, NodeError):
                errors.append(r)
        return tuple(errors)

    @property
    def not_ours(self) -> int:
        """Count nodes that answered that our value is not there (taken or missing)."""
        return sum(
            1 for r in self.replies if isinstance(r, NodeReply) and r.status is not Status.OK
        )


Answer = Tally | Woke | None
"""What a driver sends back into a flow: a Tally for a FanOut; Woke (or None) for a Sleep."""
