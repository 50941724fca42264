"""Leader election for ``celery beat``: run beat on several hosts, exactly one sends tasks.

::

    celery -A proj beat -S redsync_celery.beat:LeaderScheduler
    celery -A proj beat -S redsync_celery.beat:LeaderDatabaseScheduler   # django-celery-beat

Every beat process campaigns for one lock (``redsync_beat_lock_name``, default
``"celery-beat:" + app.main``), auto-extended while held. The holder, the leader, sends due
tasks. The others log at INFO that they stand by, and try again when the holder's TTL would run
out, so a standby takes over within ``redsync_beat_lock_expiry`` seconds (30) after the leader
died. Before every send the leader checks that it still holds the lock (local validity left, no
loss reported by auto-extension): a leader that lost it sends nothing more and campaigns again.

A fail-over (expiry 30 s, extensions every 10 s)::

    leader A    lock .. extend .. extend .. SIGKILL
    standby B   try: held (free in 29 s) ........ try: held (free in 22 s) ...... try: ok, leads
                                                               A's key expires ^

Ticks are sent at most once: a tick that falls due while no beat holds the lock (between the
leader's death and the take-over) is not sent by the new leader. ``LeaderScheduler`` keeps each
standby's own schedule file moving (a standby passes its due entries without sending them), so
the new leader does not send what the old one sent; ``LeaderDatabaseScheduler`` shares the
schedule through the database, which the leader writes after every send and a new leader reads
again when it takes over (a leader killed between a send and that write is the one case where
the new leader sends that tick again).
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import time
from typing import Any

from celery.beat import PersistentScheduler, ScheduleEntry, Scheduler

from redsync_core import LockNotAcquired, Mutex, QuorumUnreachable

from .conf import get_redsync, read_beat_settings

__all__ = ["LeaderDatabaseScheduler", "LeaderScheduler", "Leadership"]  # noqa: F822 - lazy

logger = logging.getLogger("redsync_celery.beat")

RETRY_JITTER = (0.02, 0.2)  # seconds added to a standby's wait (two standbys do not collide)


class Leadership:
    """The leader lock of one beat process: campaign for it, and say whether it is held."""

    def __init__(self, app: Any) -> None:
        settings = read_beat_settings(app)
        self.app = app
        self.lock_name = settings.lock_name
        self.expiry = settings.lock_expiry
        self._mutex: Mutex | None = None
        self._next_try = 0.0  # time.monotonic() of a standby's next try

    @property
    def leading(self) -> bool:
        """True while this process holds the lock with validity left and no loss reported."""
        mutex = self._mutex
        return mutex is not None and mutex.held and not mutex.lost

    def campaign(self) -> float | None:
        """Try to become the leader unless leading; return None when leading, else the seconds
        to wait before the next try (when the holder's TTL would run out)."""
        if self.leading:
            return None
        wait = self._next_try - time.monotonic()
        if wait > 0:  # a standby ticking through its schedule: not yet time to try again
            return wait
        if self._mutex is not None:
            logger.error(
                "beat: lost the leader lock %r; sending nothing until it is won again.",
                self.lock_name,
            )
            self._mutex = None
        mutex = get_redsync(self.app).new_mutex(
            self.lock_name,
            expiry=self.expiry,
            auto_extend=True,
            tries=1,
            gen_value_func=_beat_value,
        )
        retry = self.expiry / 3
        try:
            mutex.lock()
        except QuorumUnreachable as exc:
            logger.warning(
                "beat: standing by: cannot reach a quorum of lock nodes for %r (%s); "
                "retrying in %.1f s.",
                self.lock_name,
                exc,
                retry,
            )
            return self._wait(retry)
        except LockNotAcquired as exc:
            if exc.retry_after is not None:
                retry = min(exc.retry_after, self.expiry)
            logger.info(
                "beat: standing by: lock %r is held by another beat; retrying in %.1f s.",
                self.lock_name,
                retry,
            )
            return self._wait(retry)
        self._mutex = mutex
        logger.info(
            "beat: leading: holding lock %r (expiry %.1f s, auto-extended); sending due tasks.",
            self.lock_name,
            self.expiry,
        )
        return None

    def _wait(self, seconds: float) -> float:
        wait = seconds + random.uniform(*RETRY_JITTER)
        self._next_try = time.monotonic() + wait
        return wait

    def resign(self) -> None:
        """Release the lock if held, so a standby takes over at once."""
        mutex, self._mutex = self._mutex, None
        if mutex is not None and mutex.unlock():
            logger.info("beat: released the leader lock %r.", self.lock_name)

    def describe(self) -> str:
        """One line for ``celery beat``'s start-up banner."""
        return f"    . leader lock -> {self.lock_name!r} (expiry {self.expiry:g} s)"


def _beat_value() -> str:
    """A lock value that tells operators which beat leads (``Redsync.inspect(name).holder``)."""
    return f"beat:{socket.gethostname()}:{os.getpid()}:{secrets.token_urlsafe(12)}"


class Leading(Scheduler):  # type: ignore[misc]
    """What each leader scheduler adds to its Celery scheduler: a ``Leadership``, no send while
    standing by (checked before every send), the lock given up on close, a banner line.

    Put it first among the bases: ``class S(Leading, SomeScheduler)``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.leadership = Leadership(kwargs.get("app") or args[0])
        super().__init__(*args, **kwargs)

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        if not self.leadership.leading:  # checked before every send
            logger.debug("beat: not sending %s: standing by.", entry.name)
            return
        super().apply_entry(entry, producer=producer)
        self.sent(entry)

    def sent(self, entry: ScheduleEntry) -> None:
        """Called after the leader sent ``entry`` (a shared schedule records it here)."""

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.leadership.resign()

    @property
    def info(self) -> str:
        return f"{super().info}\n{self.leadership.describe()}"


class LeaderScheduler(Leading, PersistentScheduler):  # type: ignore[misc]
    """Celery's ``PersistentScheduler`` (a local schedule file) that sends only while leading.

    A standby passes its due entries without sending them, so its schedule file stays as
    current as the leader's, and after a take-over it does not send again what the leader sent.
    """

    def tick(self, *args: Any, **kwargs: Any) -> float:
        wait = self.leadership.campaign()
        interval = float(super().tick(*args, **kwargs))
        return interval if wait is None else min(interval, wait)


def __getattr__(name: str) -> Any:
    """Import ``LeaderDatabaseScheduler`` on first use: django-celery-beat is optional, and
    importing it needs Django's settings, which a Celery app configures when it loads."""
    if name == "LeaderDatabaseScheduler":
        try:
            from ._beat_django import LeaderDatabaseScheduler
        except ModuleNotFoundError as exc:
            if exc.name is None or not exc.name.startswith("django_celery_beat"):
                raise
            raise ImportError(
                "redsync_celery.beat.LeaderDatabaseScheduler needs django-celery-beat: "
                "pip install django-celery-beat (or use LeaderScheduler, with a schedule file "
                "per host)."
            ) from exc
        return LeaderDatabaseScheduler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
