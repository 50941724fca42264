"""``LeaderDatabaseScheduler``: django-celery-beat's scheduler with leader election.

Imported by ``redsync_celery.beat`` on first use only (it needs django-celery-beat installed and
Django's settings configured).
"""

from __future__ import annotations

import logging
from typing import Any

from celery.beat import ScheduleEntry
from django_celery_beat.schedulers import DatabaseScheduler

from .beat import Leadership

__all__ = ["LeaderDatabaseScheduler"]

logger = logging.getLogger("redsync_celery.beat")


class LeaderDatabaseScheduler(DatabaseScheduler):  # type: ignore[misc]
    """django-celery-beat's ``DatabaseScheduler`` that sends only while leading.

    The schedule lives in the database, shared by every beat: the leader writes an entry's
    run time after each send, a standby does not tick (it writes nothing), and a new leader
    reads the whole schedule again before its first tick.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.leadership = Leadership(kwargs.get("app") or args[0])
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        was_leading = self.leadership.leading
        wait = self.leadership.campaign()
        if wait is not None:
            self.schedule_changed()  # keeps the change stamp current for the take-over
            return min(wait, float(self.max_interval))
        if not was_leading:
            # Stamp the schedule changed, so the next read (in tick) loads what the old
            # leader wrote instead of this process's copy from start-up.
            self.Changes.update_changed()
        return float(super().tick(*args, **kwargs))

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        if not self.leadership.leading:  # checked before every send
            logger.debug("beat: not sending %s: standing by.", entry.name)
            return
        super().apply_entry(entry, producer=producer)
        self.sync()  # a new leader must see this run time, not send the tick again

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.leadership.resign()

    @property
    def info(self) -> str:
        return f"{super().info}\n{self.leadership.describe()}"
