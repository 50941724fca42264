"""``distributed_lock(..., limit=N)``: up to N calls run the code at once, the next is busy."""

from __future__ import annotations

import threading

import pytest

from redsync_core import ConfigurationError, LockTaken, Semaphore
from redsync_django import distributed_lock

INSIDE: list[int] = []


@distributed_lock("export", limit=2, on_busy="raise")
def export(n: int, entered: threading.Barrier, leave: threading.Event) -> int:
    INSIDE.append(n)
    entered.wait(timeout=10)
    leave.wait(timeout=10)
    return n


def test_two_calls_run_at_once_and_the_third_is_busy(redsync_settings: dict) -> None:
    entered = threading.Barrier(3)
    leave = threading.Event()
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda n=n: results.append(export(n, entered, leave)))
        for n in range(2)
    ]
    for thread in threads:
        thread.start()
    entered.wait(timeout=10)  # both calls are inside at once
    with pytest.raises(LockTaken):
        export(3, entered, leave)
    leave.set()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(results) == [0, 1]
    assert sorted(INSIDE) == [0, 1]
    with distributed_lock("export", limit=2) as permit:  # free again
        assert isinstance(permit, Semaphore)
        assert permit.held


async def test_async_block_holds_a_permit(redsync_settings: dict) -> None:
    async with distributed_lock("aexport", limit=1) as first:
        assert first.held
        with pytest.raises(LockTaken):
            async with distributed_lock("aexport", limit=1):
                pass


def test_an_invalid_limit_fails_at_decoration() -> None:
    with pytest.raises(ConfigurationError, match="limit"):
        distributed_lock("bad", limit=0)
