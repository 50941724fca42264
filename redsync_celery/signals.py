"""Celery signals sent by ``SingletonTask``, so applications can observe lock contention.

Connect with ``@lock_busy.connect`` (optionally ``sender=my_task``); the sender is the task.

``lock_busy(sender=task, task_id, lock_name, holder, retry_after, action)``
    A run found its lock held and did not run. ``holder`` is the id of the task holding the
    lock (None when unknown), ``retry_after`` the holder's remaining TTL in seconds (or None),
    ``action`` the task's ``lock_on_busy`` (``"skip"``, ``"retry"`` or ``"raise"``).
    Also sent by ``apply_async`` of a ``lock_scope="queue"`` task that found its lock held,
    with ``action="duplicate"`` and ``task_id=None`` (nothing was sent).
``lock_lost(sender=task, task_id, lock_name)``
    Auto-extension could not keep the lock of a running task: another run may start. Sent from
    the core's extension thread, once; the task itself sees ``self.request.lock_lost``.
"""

from __future__ import annotations

from celery.utils.dispatch import Signal

__all__ = ["lock_busy", "lock_lost"]

lock_busy = Signal(
    name="redsync_lock_busy",
    providing_args={"task_id", "lock_name", "holder", "retry_after", "action"},
)
lock_lost = Signal(name="redsync_lock_lost", providing_args={"task_id", "lock_name"})
