"""redsync_core: Redlock distributed locks on N independent Redis masters (a port of go-redsync).

The whole public surface is re-exported here; everything under ``redsync_core._*`` is private.
"""

from ._async import AsyncHold, AsyncMutex, AsyncRedsync
from ._base import LockInfo, LockListing, NodeHealth, NodeLock, PingReport
from ._exceptions import (
    ConfigurationError,
    LockError,
    LockLost,
    LockNotAcquired,
    LockTaken,
    LockTimeout,
    NodeError,
    QuorumUnreachable,
    RedsyncError,
)
from ._family_async import AsyncMultiMutex, AsyncSemaphore
from ._family_sync import MultiMutex, Semaphore
from ._naming import arguments_digest, render_lock_name
from ._options import MutexOptions
from ._sync import Hold, Mutex, Redsync

__version__ = "0.1.0.dev0"

__all__ = [
    "AsyncHold",
    "AsyncMultiMutex",
    "AsyncMutex",
    "AsyncRedsync",
    "AsyncSemaphore",
    "ConfigurationError",
    "Hold",
    "LockError",
    "LockInfo",
    "LockListing",
    "LockLost",
    "LockNotAcquired",
    "LockTaken",
    "LockTimeout",
    "MultiMutex",
    "Mutex",
    "MutexOptions",
    "NodeError",
    "NodeHealth",
    "NodeLock",
    "PingReport",
    "QuorumUnreachable",
    "Redsync",
    "RedsyncError",
    "Semaphore",
    "arguments_digest",
    "render_lock_name",
]
