"""redsync_celery: Celery tasks whose runs never overlap, on Redlock (``redsync_core``).

::

    from redsync_celery import SingletonTask

    app.conf.redsync_urls = ["redis://10.0.0.1:6379/0", "redis://10.0.0.2:6379/0",
                             "redis://10.0.0.3:6379/0"]

    @app.task(base=SingletonTask, lock_name="sync:{account_id}", lock_on_busy="skip")
    def sync_account(account_id): ...

Settings are read by ``redsync_celery.conf`` (checked when a worker starts), task options are
documented on ``SingletonTask`` (``lock_scope="queue"``: ``redsync_celery.queue``),
``redsync_celery.signals`` has ``lock_busy``/``lock_lost``, and ``redsync_celery.beat`` has
leader-elected beat schedulers.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.exceptions import ImproperlyConfigured
from celery.signals import worker_init

from redsync_core import ConfigurationError, LockLost, LockTaken

from .conf import check_settings, get_redsync
from .queue import DuplicateTask, check_plain_tasks
from .signals import lock_busy, lock_lost
from .task import SingletonRequest, SingletonTask

__all__ = [
    "ConfigurationError",
    "DuplicateTask",
    "LockLost",
    "LockTaken",
    "SingletonRequest",
    "SingletonTask",
    "check_plain_tasks",
    "get_redsync",
    "lock_busy",
    "lock_lost",
]

logger = logging.getLogger("redsync_celery")


def _check_at_worker_start(sender: Any = None, **_: Any) -> None:
    """Stop a worker whose app has singleton tasks but bad redsync settings (or singleton
    options on a task that is not a ``SingletonTask``), naming the setting or task.

    Celery logs and ignores exceptions raised by signal handlers, so a bad setting would only
    show at the first task; SystemExit ends the worker start instead.
    """
    app = getattr(sender, "app", None)
    if app is None or not any(isinstance(t, SingletonTask) for t in app.tasks.values()):
        return
    try:
        check_plain_tasks(app)
        check_settings(app)
    except (ConfigurationError, ImproperlyConfigured) as exc:
        logger.critical("redsync_celery: %s", exc)
        raise SystemExit(f"redsync_celery: {exc}") from None


worker_init.connect(_check_at_worker_start, weak=False)
