"""The Celery app of the beat tests (``celery -A rs_celery_beatapp beat -S ...``).

A task falls due at every whole second of the wall clock; its argument is that second, taken
when beat sends it. Every send is recorded by the beat process itself (``after_task_publish``):
pid, tick second and monotonic time, in the journal list ``beat:<lock name>``. No worker runs
the task: the tests look at what beat sent, not at what ran.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from typing import Any

import redis
from celery import Celery
from celery.beat import BeatLazyFunc
from celery.schedules import schedstate, schedule
from celery.signals import after_task_publish

REDIS = os.environ["RSC_REDIS"]
LOCK = os.environ["RSC_BEAT_LOCK"]
DJANGO_DB = os.environ.get("RSC_BEAT_DJANGO_DB")  # set: django-celery-beat on this SQLite file
if DJANGO_DB:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django_celery_beat"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DJANGO_DB}},
        USE_TZ=True,
        TIME_ZONE="UTC",
    )
    django.setup()

app = Celery("rs_celery_beatapp", broker=f"{REDIS}/4")
journal = redis.Redis.from_url(f"{REDIS}/2")


class every_second(schedule):
    """Due once per grid slot of ``period`` whole seconds of the wall clock (so a tick has an
    identity: its slot number)."""

    def __init__(self, period: int = 1) -> None:
        super().__init__(run_every=float(period))
        self.period = period

    def is_due(self, last_run_at: datetime) -> schedstate:
        now = time.time()
        due = int(now // self.period) > int(last_run_at.timestamp() // self.period)
        return schedstate(due, self.period - now % self.period + 0.001)

    def __reduce__(self) -> tuple[type, tuple[int]]:
        return self.__class__, (self.period,)


PERIOD = int(os.environ.get("RSC_BEAT_PERIOD", "1"))


def tick_second() -> int:
    """The grid slot of now: the identity of the tick being sent."""
    return int(time.time() // PERIOD)


app.conf.update(
    redsync_urls=os.environ["RSC_NODES"].split(","),
    redsync_key_prefix="rsc:",
    redsync_beat_lock_name=LOCK,
    redsync_beat_lock_expiry=float(os.environ["RSC_BEAT_EXPIRY"]),
    broker_connection_retry_on_startup=True,
    beat_max_loop_interval=1.0,
    timezone="UTC",
    beat_schedule={
        # The database stores plain intervals and JSON arguments: there, beat's send time
        # (recorded below) names the tick.
        "tick": {"task": "rs_celery_beatapp.tick", "schedule": schedule(run_every=float(PERIOD)),
                 "args": (0,)}
        if DJANGO_DB
        else {"task": "rs_celery_beatapp.tick", "schedule": every_second(PERIOD),
              "args": (BeatLazyFunc(tick_second),)},
    },
)  # fmt: skip


@app.task
def tick(second: int) -> int:
    return second


@after_task_publish.connect
def _record_send(sender: Any = None, body: Any = None, **_: Any) -> None:
    if sender != "rs_celery_beatapp.tick":
        return
    second = body[0][0] or tick_second()
    journal.rpush(
        f"beat:{LOCK}", json.dumps({"pid": os.getpid(), "tick": second, "t": time.monotonic()})
    )
