"""A lock a running SingletonTask holds is listed with its task id (core and `redsync ls`)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from rs_celery_workers import eventually

RESULT_TIMEOUT = 90.0  # seconds; the machine is shared and slow


def started(celery_env: Any, key: str, task_id: str) -> None:
    """Wait until run ``task_id`` recorded its start in the test app's journal."""

    def probe() -> bool:
        events = celery_env.app.journal.lrange(f"journal:{key}", 0, -1)
        return any(
            event["id"] == task_id and event["event"] == "start"
            for event in map(json.loads, events)
        )

    eventually(probe, 60)


def test_a_running_task_is_listed_by_its_task_id(celery_env: Any, key: str) -> None:
    worker = celery_env.workers("prefork")[0]
    task = celery_env.app.work
    result = worker.send(task, key, 3.0)
    started(celery_env, key, result.id)
    name = task.lock_name_for((key, 3.0), {})
    listing = celery_env.redsync.list_locks(name)
    assert [(info.name, info.verdict, info.holder_task_id) for info in listing] == [
        (name, "held", result.id)
    ]
    value = listing[0].holder
    assert value is not None
    shown = subprocess.run(
        [sys.executable, "-m", "redsync_core.cli", "ls", name, "--key-prefix", "rsc:"]
        + [arg for url in celery_env.node_urls for arg in ("--url", url)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert f"task {result.id}" in shown.stdout
    assert value.rsplit(":", 1)[1] not in shown.stdout  # never the token
    assert result.get(timeout=RESULT_TIMEOUT) == key
    assert celery_env.redsync.list_locks(name) == []
