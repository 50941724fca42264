"""The Celery example (example_projects/celery_app) runs as its README says: a real prefork
worker on throwaway Redis servers (one broker, three lock nodes), two real beat processes with
the leader scheduler, and eager mode in-process."""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from redsync_core import Redsync
from redsync_core.testing import RedisServerGroup

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "example_projects" / "celery_app"
sys.path.insert(0, str(REPO / "tests" / "celery"))  # the shared worker launcher
from rs_celery_beat import Beat  # noqa: E402
from rs_celery_workers import Worker, eventually  # noqa: E402

RESULT_TIMEOUT = 120.0  # seconds; the machine is shared and slow


@pytest.fixture(scope="module")
def servers(redis_server_binary: str) -> Iterator[RedisServerGroup]:
    group = RedisServerGroup(4, binary=redis_server_binary)
    group.start()
    try:
        yield group
    finally:
        # Celery < 5.7's AsyncResult.__del__ talks to the result backend: collect the results
        # left in reference cycles while it still runs, not during a later module's test.
        gc.collect()
        group.stop()


@pytest.fixture(scope="module")
def example_env(servers: RedisServerGroup) -> dict[str, str]:
    broker, *nodes = servers.servers
    return {
        "CELERY_BROKER_URL": broker.url.rsplit("/", 1)[0] + "/1",
        "REDSYNC_URLS": ",".join(node.url for node in nodes),
        "BILLING_BEAT_INTERVAL": "1",  # seconds: short, for the test
        "BILLING_BEAT_LOCK_EXPIRY": "3",
        "BILLING_DIGEST_WINDOW": "3",
    }


@pytest.fixture(scope="module")
def billing(example_env: dict[str, str]) -> Iterator[ModuleType]:
    """The example module, imported with the test servers' environment."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in example_env.items():
            patch.setenv(name, value)
        patch.syspath_prepend(str(EXAMPLE))
        sys.modules.pop("billing", None)
        module = importlib.import_module("billing")
        yield module
        sys.modules.pop("billing", None)


@pytest.fixture(scope="module")
def worker(billing: ModuleType, example_env: dict[str, str]) -> Iterator[Worker]:
    started = Worker(
        "billing",
        "prefork",
        3,
        "celery",
        env=example_env,
        pythonpath=[str(EXAMPLE)],
        cwd=str(EXAMPLE),
    )
    try:
        yield started.wait_ready()
    finally:
        started.stop()


def test_concurrent_deposits_lose_no_update(billing: ModuleType, worker: Worker) -> None:
    billing.ledger.delete("balance:alice")
    results = [billing.deposit.delay("alice", 1) for _ in range(12)]
    assert sorted(r.get(timeout=RESULT_TIMEOUT) for r in results) == list(range(1, 13))
    assert int(billing.ledger.get("balance:alice")) == 12


def test_a_duplicate_statement_is_skipped(billing: ModuleType, worker: Worker) -> None:
    task = billing.rebuild_statement
    before = int(billing.ledger.hget("busy", task.name) or 0)
    first = task.delay("bob", pages=3)
    eventually(lambda: "rebuild_statement[" + first.id + "] received" in worker.log(), 60)
    lock = Redsync(billing.app.conf.redsync_urls, key_prefix="billing:")
    eventually(lambda: lock.inspect(task.lock_name_for(("bob",), {})).holder, 60)
    second = task.delay("bob")
    eventually(lambda: int(billing.ledger.hget("busy", task.name) or 0) > before, 60)
    assert first.get(timeout=RESULT_TIMEOUT) == "statement of bob: 3 pages"
    assert f"Skipped task {task.name}[{second.id}]" in worker.log()
    assert f"held by task {first.id}" in worker.log()
    assert second.state == "PENDING"
    lock.close()


def test_a_duplicate_reminder_runs_after_the_first(billing: ModuleType, worker: Worker) -> None:
    billing.ledger.delete("reminders:carol")
    first = billing.send_reminder.delay("carol")
    second = billing.send_reminder.delay("carol")
    assert (
        first.get(timeout=RESULT_TIMEOUT) == second.get(timeout=RESULT_TIMEOUT) == "reminded carol"
    )
    assert int(billing.ledger.get("reminders:carol")) == 2


def test_a_duplicate_close_is_never_queued(billing: ModuleType, worker: Worker) -> None:
    billing.ledger.delete("closes:erin")
    first = billing.close_books.delay("erin")
    second = billing.close_books.delay("erin")
    assert second.id == first.id  # nothing was sent: the caller got the queued task
    assert second.get(timeout=RESULT_TIMEOUT) == "closed erin"
    assert int(billing.ledger.get("closes:erin")) == 1
    assert billing.close_books.delay("erin").id != first.id  # done: a new close is queued
    eventually(lambda: int(billing.ledger.get("closes:erin") or 0) == 2, RESULT_TIMEOUT)


def test_a_digest_is_sent_at_most_once_per_window(billing: ModuleType, worker: Worker) -> None:
    billing.ledger.delete("digests:frank")
    first = billing.send_digest.delay("frank")
    assert first.get(timeout=RESULT_TIMEOUT) == "digest for frank"
    within = billing.send_digest.delay("frank")  # the window is 3 s here
    assert within.id == first.id
    assert within.get(timeout=5) == "digest for frank"
    lock = Redsync(billing.app.conf.redsync_urls, key_prefix="billing:")
    eventually(lambda: lock.inspect("digest:frank").holder is None, 3 + 10)
    lock.close()
    after = billing.send_digest.delay("frank")
    assert after.id != first.id
    assert after.get(timeout=RESULT_TIMEOUT) == "digest for frank"
    assert int(billing.ledger.get("digests:frank")) == 2


def test_beat_on_two_hosts_sends_from_one_and_fails_over(
    billing: ModuleType, worker: Worker, example_env: dict[str, str]
) -> None:
    scheduler = "redsync_celery.beat:LeaderScheduler"
    beats = [
        Beat("billing", scheduler, env=example_env, pythonpath=[str(EXAMPLE)], cwd=str(EXAMPLE))
    ]
    try:
        leader = beats[0]
        leader.wait_for("beat: leading")
        beats.append(
            Beat("billing", scheduler, env=example_env, pythonpath=[str(EXAMPLE)], cwd=str(EXAMPLE))
        )
        standby = beats[1]
        standby.wait_for("beat: standing by")
        before = int(billing.ledger.get("interest_runs") or 0)
        eventually(lambda: int(billing.ledger.get("interest_runs") or 0) >= before + 2, 60)
        assert "Sending due task accrue-interest" not in standby.log()
        leader.kill()
        standby.wait_for("beat: leading", timeout=3 + 30)
        at_take_over = int(billing.ledger.get("interest_runs") or 0)
        eventually(lambda: int(billing.ledger.get("interest_runs") or 0) >= at_take_over + 2, 60)
        log = standby.log()
        assert "Sending due task accrue-interest" not in log[: log.index("beat: leading")]
    finally:
        for beat in beats:
            beat.cleanup()


def test_eager_mode_takes_the_same_locks(billing: ModuleType) -> None:
    """task_always_eager runs the task in this process, under the same lock as a worker."""
    billing.app.conf.task_always_eager = True
    lock = Redsync(billing.app.conf.redsync_urls, key_prefix="billing:")
    try:
        billing.ledger.delete("balance:dave")
        assert billing.deposit.delay("dave", 5).get() == 5
        task = billing.rebuild_statement
        with lock.new_mutex(task.lock_name_for(("dave",), {})):
            assert task.delay("dave", pages=0).state == "IGNORED"
        assert task.delay("dave", pages=0).get() == "statement of dave: 0 pages"
    finally:
        billing.app.conf.task_always_eager = False
        lock.close()
