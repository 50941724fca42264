"""``LeaderDatabaseScheduler``: django-celery-beat's scheduler with leader election.

Imported by ``redsync_celery.beat`` on first use only (it needs django-celery-beat installed and
Django's settings configured).
"""

from __future__ import annotations

import logging
from typing import Any

from celery.beat import ScheduleEntry
from django_celery_beat.schedulers import DatabaseScheduler

from .beat import Leading

__all__ = ["LeaderDatabaseScheduler"]

logger = logging.getLogger("redsync_celery.beat")


class LeaderDatabaseScheduler(Leading, DatabaseScheduler):  # type: ignore[misc]
    """django-celery-beat's ``DatabaseScheduler`` that sends only while leading.

    The schedule lives in the database, shared by every beat: the leader writes an entry's
    run time after each send, a standby does not tick (it writes nothing), and a new leader
    reads the whole schedule again before its first tick.
    """

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

    def sent(self, entry: ScheduleEntry) -> None:
        self.sync()  # a new leader must see this run time, not send the tick again
