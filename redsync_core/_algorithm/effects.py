"""Effects the flows yield (what to do) and the replies they receive (what happened)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .._exceptions import NodeError

__all__ = [
    "Batch",
    "Effect",
    "FanOut",
    "KeyState",
    "NodeReply",
    "Op",
    "ScanPage",
    "Sleep",
    "Status",
    "Tally",
]


class Op(enum.Enum):
    """The command a fan-out sends to every node."""

    ACQUIRE = "acquire"  # SET key value NX PX ttl
    RELEASE = "release"  # compare-and-delete script
    EXTEND = "extend"  # compare-and-PEXPIRE script (optionally SET NX when missing)
    GET = "get"  # GET key, compared with value
    INSPECT = "inspect"  # GET and PTTL of the key, for status tools
    DELETE = "delete"  # DEL key whatever its value: forced release by an operator
    SCAN = "scan"  # one SCAN page of the keys matching ``key`` (a pattern), for lock listings


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


@dataclass(frozen=True, slots=True)
class NodeReply:
    """One node's answer.

    ``ttl_ms`` is the holder's remaining TTL when known; ``holder`` is the value found (INSPECT);
    ``page`` is what a SCAN found.
    """

    status: Status
    ttl_ms: int | None = None
    holder: str | None = None
    page: ScanPage | None = None


OK = NodeReply(Status.OK)
MISSING = NodeReply(Status.MISSING)
TAKEN = NodeReply(Status.TAKEN)


@dataclass(frozen=True, slots=True)
class FanOut:
    """Send one command to every node at once and wait at most ``deadline_ms`` for the replies.

    With ``stop_at`` set (fail fast), the transport may return as soon as ``stop_at`` nodes
    answered OK or ``stop_at`` nodes answered TAKEN; unanswered nodes are then ``None``.
    A SCAN reads ``count`` keys matching the pattern ``key`` from ``cursor`` on.
    """

    op: Op
    key: str
    value: str
    ttl_ms: int = 0
    deadline_ms: int | None = None
    set_nx: bool = False
    stop_at: int | None = None
    cursor: int = 0
    count: int = 0


@dataclass(frozen=True, slots=True)
class Batch:
    """Several EXTEND fan-outs sent as one round trip per node (auto-extension of many locks)."""

    effects: tuple[FanOut, ...]
    deadline_ms: int | None = None
    stop_at: None = None


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait before the next attempt."""

    ms: int


Effect = FanOut | Sleep


@dataclass(frozen=True, slots=True)
class Tally:
    """The replies of one fan-out, in node order, with the driver's clock readings around it."""

    replies: tuple[NodeReply | NodeError | None, ...]
    started_ms: int
    finished_ms: int

    @property
    def elapsed_ms(self) -> int:
        return self.finished_ms - self.started_ms

    @property
    def ok(self) -> int:
        return sum(1 for r in self.replies if isinstance(r, NodeReply) and r.status is Status.OK)

    @property
    def taken(self) -> tuple[int, ...]:
        return tuple(
            i
            for i, r in enumerate(self.replies)
            if isinstance(r, NodeReply) and r.status is Status.TAKEN
        )

    @property
    def errors(self) -> tuple[NodeError, ...]:
        return tuple(r for r in self.replies if isinstance(r, NodeError))

    @property
    def not_ours(self) -> int:
        """Count nodes that answered that our value is not there (taken or missing)."""
        return sum(
            1 for r in self.replies if isinstance(r, NodeReply) and r.status is not Status.OK
        )
