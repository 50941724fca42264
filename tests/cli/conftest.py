"""Fixtures for the `redsync` command tests (real redis-server nodes from redsync_core.testing)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from redsync_core import Redsync
from redsync_core.testing import RedisServer


@pytest.fixture
def urls(redis_nodes: list[RedisServer]) -> list[str]:
    return [server.url for server in redis_nodes]


@pytest.fixture
def rs(urls: list[str]) -> Iterator[Redsync]:
    with Redsync(urls) as redsync_:
        yield redsync_


@pytest.fixture
def child_script(tmp_path: Path) -> Callable[..., list[str]]:
    """Build a command (python -c) that marks its start and waits for a `finish` file.

    ``exit_code``: its exit status; ``trap``: signals it handles by exiting with 10 + signum;
    ``where``: the directory of its `started` (holding its pid) and `finish` files. It also ends
    when its parent (the `redsync run` under test) is gone: a failed test that killed the
    wrapper leaves no command behind.
    """

    def build(exit_code: int = 0, trap: Sequence[int] = (), where: Path = tmp_path) -> list[str]:
        code = f"""
import os, signal, sys, time
for s in {[int(s) for s in trap]!r}:
    signal.signal(s, lambda signum, frame: sys.exit(10 + signum))
with open({str(where / "pid")!r}, "w") as f:
    f.write(str(os.getpid()))
os.rename({str(where / "pid")!r}, {str(where / "started")!r})
parent = os.getppid()
while not os.path.exists({str(where / "finish")!r}) and os.getppid() == parent:
    time.sleep(0.02)
sys.exit({exit_code})
"""
        return [sys.executable, "-c", code]

    return build
