"""Fixtures for the Celery adapter: one dedicated Redis server as broker, result backend and
journal, three independent lock nodes, and one real worker per pool type for the session."""

from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from rs_celery_workers import Worker

from redsync_core import Redsync
from redsync_core.testing import RedisServerGroup

HERE = Path(__file__).parent
POOLS = {  # pool type -> (concurrency, worker processes)
    "prefork": (3, 1),
    "threads": (3, 1),
    "solo": (1, 2),  # solo runs one task per process: two processes make duplicates meet
    "gevent": (3, 1),
    "eventlet": (3, 1),
}


class CeleryEnv:
    """The servers, the test app (imported here too, to send tasks) and lazy workers."""

    def __init__(self, group: RedisServerGroup) -> None:
        broker, *nodes = group.servers
        self.broker = broker
        self.node_urls = [node.url for node in nodes]
        self.env = {
            "RSC_REDIS": broker.url.rsplit("/", 1)[0],
            "RSC_NODES": ",".join(self.node_urls),
        }
        os.environ.update(self.env)
        self.app: ModuleType = importlib.import_module("rs_celery_testapp")
        self.redsync = Redsync(self.node_urls, key_prefix="rsc:")
        self._workers: dict[str, list[Worker]] = {}

    def workers(self, pool: str) -> list[Worker]:
        if pool not in self._workers:
            concurrency, count = POOLS[pool]
            started = [
                Worker(
                    "rs_celery_testapp",
                    pool,
                    concurrency,
                    f"q-{pool}",
                    env={**self.env, "RSC_QUEUE": f"q-{pool}"},
                    pythonpath=[str(HERE)],
                )
                for _ in range(count)
            ]
            self._workers[pool] = started
            for worker in started:
                worker.wait_ready()
        return self._workers[pool]

    def holder(self, task: Any, *args: Any, **kwargs: Any) -> str | None:
        """Return the lock value held for ``task(*args, **kwargs)`` (None when free)."""
        return self.redsync.inspect(task.lock_name_for(args, kwargs)).holder

    def close(self) -> None:
        for workers in self._workers.values():
            for worker in workers:
                worker.stop()
        self.redsync.close()


@pytest.fixture(scope="session")
def celery_env(redis_server_binary: str) -> Iterator[CeleryEnv]:
    group = RedisServerGroup(4, binary=redis_server_binary)
    group.start()
    env = None
    try:
        env = CeleryEnv(group)
        yield env
    finally:
        if env is not None:
            env.close()
        group.stop()


@pytest.fixture
def key() -> str:
    """A lock key argument no other test uses."""
    return uuid.uuid4().hex[:12]
