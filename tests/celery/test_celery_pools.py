"""Duplicates of a running singleton task never overlap, whatever the pool: prefork with
three children, threads, two solo worker processes and gevent (real workers, real Redis)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rs_celery_workers import eventually

RESULT_TIMEOUT = 90.0  # seconds; the machine is shared and slow


@pytest.fixture(scope="module", params=["prefork", "threads", "solo", "gevent", "eventlet"])
def pool(request: pytest.FixtureRequest, celery_env: Any) -> str:
    celery_env.workers(request.param)
    return str(request.param)


def runs(celery_env: Any, key: str) -> dict[str, dict[str, Any]]:
    """Return each run recorded for ``key``: {task id: {"start": t, "end": t, ...}}."""
    found: dict[str, dict[str, Any]] = {}
    for raw in celery_env.app.journal.lrange(f"journal:{key}", 0, -1):
        event = json.loads(raw)
        found.setdefault(event["id"], {})[event["event"]] = event["t"]
    return found


def overlapping(found: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """Return the pairs of runs whose [start, end] intervals intersect."""
    spans = sorted((run["start"], run["end"], task_id) for task_id, run in found.items())
    return [(a[2], b[2]) for i, a in enumerate(spans) for b in spans[i + 1 :] if b[0] < a[1]]


def send(celery_env: Any, pool: str, task: Any, *args: Any, **kwargs: Any) -> Any:
    worker = celery_env.workers(pool)[0]
    return worker.send(task, *args, **kwargs)


def test_duplicates_run_one_at_a_time(celery_env: Any, pool: str, key: str) -> None:
    """Four copies that wait for the lock all run, and no two runs overlap."""
    task = celery_env.app.work_wait
    results = [send(celery_env, pool, task, key, 0.8) for _ in range(4)]
    assert [r.get(timeout=RESULT_TIMEOUT) for r in results] == [key] * 4
    found = runs(celery_env, key)
    assert len(found) == 4
    assert overlapping(found) == []
    assert celery_env.holder(task, key, 0.8) is None


def test_different_arguments_run_concurrently(celery_env: Any, pool: str, key: str) -> None:
    """Runs with different lock names are not serialised: some of them overlap."""
    task = celery_env.app.work_wait
    keys = [f"{key}-{i}" for i in range(3)]
    results = [send(celery_env, pool, task, k, 3.0) for k in keys]
    assert [r.get(timeout=RESULT_TIMEOUT) for r in results] == keys
    spans = {}
    for k in keys:
        (run,) = runs(celery_env, k).values()
        spans[k] = run
    merged = {f"{k}": run for k, run in spans.items()}
    assert overlapping(merged), merged


def test_busy_duplicate_is_skipped(celery_env: Any, pool: str, key: str) -> None:
    """A keyword call of a running positional call shares its lock, is skipped (no result
    stored) and names the holder in the lock_busy signal."""
    task = celery_env.app.work
    first = send(celery_env, pool, task, key, 4.0)
    holder = eventually(lambda: celery_env.holder(task, key, 4.0), 60)
    assert holder.startswith(f"{first.id}:0:")
    second = send(celery_env, pool, task, seconds=4.0, key=key)
    busy = json.loads(eventually(lambda: celery_env.app.journal.get(f"busy:{second.id}"), 60))
    assert busy["holder"] == first.id
    assert busy["action"] == "skip"
    assert busy["lock_name"] == task.lock_name_for((key, 4.0), {})
    assert 0 < busy["retry_after"] <= 30
    assert first.get(timeout=RESULT_TIMEOUT) == key
    assert list(runs(celery_env, key)) == [first.id]
    assert second.state == "PENDING"  # Ignore: nothing stored
    assert celery_env.holder(task, key, 4.0) is None
