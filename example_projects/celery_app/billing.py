"""An example Celery app whose tasks never overlap: ``celery -A billing worker`` (see README.md).

- ``deposit``: a read-modify-write of a balance, unsafe without a lock (two concurrent runs
  would lose an update). Runs for the same account wait for each other (``lock_wait``).
- ``rebuild_statement``: a long job; a duplicate enqueued while one runs is skipped, with a
  WARNING naming the running task (``lock_on_busy="skip"``, the default).
- ``send_reminder``: a duplicate is retried once the running one is done (``"retry"``).
- ``close_books``: locked from the moment it is queued (``lock_scope="queue"``): a second
  ``delay`` while one is queued or running sends nothing and returns the first one's result.
- ``send_digest``: a throttle (``lock_hold_after``): at most one digest per account per window;
  a call within the window returns the last digest's result.
- ``accrue_interest``: sent by beat every ``BILLING_BEAT_INTERVAL`` seconds. Run beat on
  several hosts with ``-S redsync_celery.beat:LeaderScheduler``: one leads and sends, the others
  stand by and take over within ``redsync_beat_lock_expiry`` if it dies.

Configuration comes from the environment so the same file runs locally and in the tests:
``REDSYNC_URLS`` (comma separated lock nodes), ``CELERY_BROKER_URL``, ``LEDGER_URL``,
``BILLING_BEAT_INTERVAL`` (seconds, 60), ``BILLING_BEAT_LOCK_EXPIRY`` (seconds, 30),
``BILLING_DIGEST_WINDOW`` (seconds, 60).
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import Celery

from redsync_celery import SingletonTask
from redsync_celery.signals import lock_busy

BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/1")
LOCK_NODES = os.environ.get(
    "REDSYNC_URLS", "redis://127.0.0.1:6379/0,redis://127.0.0.1:6380/0,redis://127.0.0.1:6381/0"
)

app = Celery("billing", broker=BROKER_URL, backend=BROKER_URL)
app.conf.update(
    redsync_urls=LOCK_NODES.split(","),  # three independent Redis masters: a Redlock quorum of 2
    redsync_key_prefix="billing:",
    redsync_client_options={"socket_timeout": 0.5},
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,  # long singleton tasks: do not hoard messages
    # Beat on several hosts: the one holding this lock sends, the others stand by.
    redsync_beat_lock_name="celery-beat:billing",
    redsync_beat_lock_expiry=float(os.environ.get("BILLING_BEAT_LOCK_EXPIRY", "30")),
    beat_schedule={
        "accrue-interest": {
            "task": "billing.accrue_interest",
            "schedule": float(os.environ.get("BILLING_BEAT_INTERVAL", "60")),
        },
    },
)

# The resource the locks protect (here the broker's Redis; any database in real life).
ledger = redis.Redis.from_url(os.environ.get("LEDGER_URL", BROKER_URL))


@app.task(base=SingletonTask, lock_name="account:{account}", lock_wait=30)
def deposit(account: str, amount: int) -> int:
    """Add ``amount`` to the balance of ``account``; return the new balance."""
    balance = int(ledger.get(f"balance:{account}") or 0)
    time.sleep(0.05)  # widen the race window: without the lock, updates would be lost
    ledger.set(f"balance:{account}", balance + amount)
    return balance + amount


@app.task(base=SingletonTask, bind=True, lock_name=["account"])
def rebuild_statement(self: Any, account: str, pages: int = 3) -> str:
    """Rebuild an account's statement (slow). Duplicates are skipped while it runs."""
    for page in range(pages):
        if self.request.lock_lost:  # auto-extension failed: another run may have started
            raise RuntimeError(f"lost the statement lock of {account} at page {page}")
        time.sleep(1.0)
    ledger.incr(f"statements:{account}")
    return f"statement of {account}: {pages} pages"


@app.task(
    base=SingletonTask,
    lock_name="reminder:{account}",
    lock_on_busy="retry",
    lock_expiry=5,  # a retried duplicate waits the holder's remaining TTL: keep it short
    max_retries=10,
)
def send_reminder(account: str) -> str:
    """Send a payment reminder; a duplicate runs again after this one (never both at once)."""
    time.sleep(1.0)
    ledger.incr(f"reminders:{account}")
    return f"reminded {account}"


@app.task(base=SingletonTask, lock_name="close:{account}", lock_scope="queue", lock_expiry=10)
def close_books(account: str) -> str:
    """Close an account's books (slow). Locked from ``delay`` on: a duplicate is never queued,
    the caller gets the AsyncResult of the close already queued or running."""
    time.sleep(2.0)
    ledger.incr(f"closes:{account}")
    return f"closed {account}"


@app.task(
    base=SingletonTask,
    lock_name="digest:{account}",
    lock_scope="queue",
    lock_hold_after=float(os.environ.get("BILLING_DIGEST_WINDOW", "60")),
)
def send_digest(account: str) -> str:
    """Send an account digest, at most once per window (a throttle)."""
    ledger.incr(f"digests:{account}")
    return f"digest for {account}"


@app.task(base=SingletonTask, lock_name="interest")
def accrue_interest() -> int:
    """Periodic (beat): one run at a time, sent by the leading beat only."""
    return int(ledger.incr("interest_runs"))


@lock_busy.connect
def count_busy(sender: Any = None, **info: Any) -> None:
    """Observe contention: here a counter per task; in real life a metric."""
    ledger.hincrby("busy", sender.name, 1)


def main() -> None:
    """Enqueue 20 concurrent deposits of 1 and print the balance (a worker must be running)."""
    ledger.delete("balance:alice")
    results = [deposit.delay("alice", 1) for _ in range(20)]
    for result in results:
        result.get(timeout=120)
    print("balance of alice:", int(ledger.get("balance:alice") or 0), "(expected 20)")


if __name__ == "__main__":
    main()
