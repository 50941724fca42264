"""An example Celery app whose tasks never overlap: ``celery -A billing worker`` (see README.md).

- ``deposit``: a read-modify-write of a balance, unsafe without a lock (two concurrent runs
  would lose an update). Runs for the same account wait for each other (``lock_wait``).
- ``rebuild_statement``: a long job; a duplicate enqueued while one runs is skipped, with a
  WARNING naming the running task (``lock_on_busy="skip"``, the default).
- ``send_reminder``: a duplicate is retried once the running one is done (``"retry"``).

Configuration comes from the environment so the same file runs locally and in the tests:
``REDSYNC_URLS`` (comma separated lock nodes), ``CELERY_BROKER_URL``, ``LEDGER_URL``.
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
