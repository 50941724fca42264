"""Django signals for observing locks taken by ``redsync_django`` (metrics, audit logs).

Every signal is sent with ``sender=DistributedLock`` and the keyword ``name`` (the lock name,
without ``KEY_PREFIX``). Receivers run inline: on the request thread, on the event loop for
``async`` views, and on the core's auto-extension thread or task for ``lock_lost``, so keep
them quick and non-blocking.

- ``lock_acquired``: the lock is held; the protected code is about to run.
- ``lock_busy``: another holder has it; also ``exception`` (the core's ``LockNotAcquired``,
  with ``retry_after`` in seconds or None). The protected code does not run.
- ``lock_released``: the protected code finished and the lock was released.
- ``lock_lost``: auto-extension could not keep the lock while the code ran; also ``mutex``.
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = ["lock_acquired", "lock_busy", "lock_lost", "lock_released"]

lock_acquired = Signal()
lock_busy = Signal()
lock_released = Signal()
lock_lost = Signal()
