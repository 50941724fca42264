"""The error tree of redsync_core.

::

    RedsyncError
    ├── ConfigurationError(ValueError)   bad option, URL or setting
    ├── NodeError                        one node failed: .node (index), .address (password redacted)
    └── LockError                        .name
        ├── LockNotAcquired              lock() gave up: .attempts, .retry_after
        │   ├── LockTaken                a quorum holds another value: .nodes
        │   ├── QuorumUnreachable        node errors made a quorum impossible: .errors
        │   └── LockTimeout              lock(timeout=...) ran out first
        └── LockLost                     an auto-extended lock could not be kept

Every exception holds only strings, numbers and tuples (of node indexes, or of ``NodeError``
objects, which hold strings and numbers), and rebuilds itself from ``self.args`` so it survives
``pickle`` (Celery pickles task exceptions). Messages say what happened, the likely cause and
what to do. Lock values and passwords never appear in them.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "LockError",
    "LockLost",
    "LockNotAcquired",
    "LockTaken",
    "LockTimeout",
    "NodeError",
    "QuorumUnreachable",
    "RedsyncError",
]


class RedsyncError(Exception):
    """Base class of every error raised by redsync_core."""


class ConfigurationError(RedsyncError, ValueError):
    """An option, URL or setting is invalid; raised before anything is sent to Redis."""


class NodeError(RedsyncError):
    """One node failed to answer (connection refused, timeout, protocol or server error)."""

    def __init__(self, node: int, address: str, reason: str) -> None:
        super().__init__(node, address, reason)
        self.node = node
        self.address = address
        self.reason = reason

    def __str__(self) -> str:
        return f"node {self.node} ({self.address}): {self.reason}"


class LockError(RedsyncError):
    """A lock operation failed; ``name`` is the mutex name (without the key prefix)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(name, message)
        self.name = name
        self.message = message

    def __str__(self) -> str:
        return self.message


class LockNotAcquired(LockError):
    """``lock()`` gave up; ``retry_after`` is a hint in seconds (or None when unknown)."""

    def __init__(
        self, name: str, message: str, attempts: int = 0, retry_after: float | None = None
    ) -> None:
        RedsyncError.__init__(self, name, message, attempts, retry_after)
        self.name = name
        self.message = message
        self.attempts = attempts
        self.retry_after = retry_after


class LockTaken(LockNotAcquired):
    """A quorum of nodes holds the lock with another value; ``nodes`` lists their indexes."""

    def __init__(
        self,
        name: str,
        message: str,
        attempts: int = 0,
        retry_after: float | None = None,
        nodes: tuple[int, ...] = (),
    ) -> None:
        RedsyncError.__init__(self, name, message, attempts, retry_after, nodes)
        self.name = name
        self.message = message
        self.attempts = attempts
        self.retry_after = retry_after
        self.nodes = tuple(nodes)


class QuorumUnreachable(LockNotAcquired):
    """Node errors left fewer than a quorum of nodes able to answer; ``errors`` says which."""

    def __init__(
        self,
        name: str,
        message: str,
        attempts: int = 0,
        retry_after: float | None = None,
        errors: tuple[NodeError, ...] = (),
    ) -> None:
        RedsyncError.__init__(self, name, message, attempts, retry_after, errors)
        self.name = name
        self.message = message
        self.attempts = attempts
        self.retry_after = retry_after
        self.errors = tuple(errors)


class LockTimeout(LockNotAcquired):
    """``lock(timeout=...)`` ran out before the lock was acquired."""


class LockLost(LockError):
    """An auto-extended lock could not be kept: its validity ran out or another holder took it."""
