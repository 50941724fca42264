"""Auto-extension against real nodes: locks stay held while work runs, and say so when lost."""

from __future__ import annotations

import ast
import asyncio
import functools
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from polling import reset_stats

from redsync_core import AsyncRedsync, LockLost, Redsync, _autoextend
from redsync_core._algorithm.flows import Target
from redsync_core._autoextend import sync_scheduler
from redsync_core._clock import monotonic_ms
from redsync_core._options import MutexOptions
from redsync_core._transport import sync as sync_transport
from redsync_core._transport.build import build_sync_nodes
from redsync_core.testing import RedisServer, wait_child


def urls(servers: list[RedisServer]) -> list[str]:
    return [s.url for s in servers]


def pttls(servers: list[RedisServer], key: str) -> list[int]:
    result = []
    for server in servers:
        client = server.client()
        try:
            result.append(int(client.pttl(key)))
        finally:
            client.close()
    return result


def wait_until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def test_a_short_lock_stays_held_for_four_times_its_expiry(redis_nodes: list[RedisServer]) -> None:
    with Redsync(urls(redis_nodes)) as rs:
        mutex = rs.new_mutex("report", expiry=1.0, auto_extend=True)
        rival = rs.new_mutex("report", tries=1)
        mutex.lock()
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            assert all(ttl > 0 for ttl in pttls(redis_nodes, "report"))
            assert not rival.try_lock()
            assert mutex.held
            time.sleep(0.2)
        assert mutex.unlock()
        assert pttls(redis_nodes, "report") == [-2, -2, -2]  # gone right after unlock
        assert rival.try_lock()
        rival.unlock()


def test_losing_a_majority_marks_the_lock_lost_once(
    redis_nodes: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    lost: list[Any] = []
    with Redsync(urls(redis_nodes)) as rs:
        mutex = rs.new_mutex("payroll", expiry=1.0, auto_extend=True, on_lost=lost.append)
        caplog.set_level(logging.DEBUG, logger="redsync")
        with pytest.raises(LockLost, match="payroll"), mutex:  # noqa: PT012 - the scenario
            redis_nodes[0].kill()
            redis_nodes[1].kill()
            killed = time.monotonic()
            assert wait_until(lambda: mutex.lost, timeout=6.0)
            assert time.monotonic() - killed < 3.0  # within a few expiries of 1 s, not never
            time.sleep(0.5)  # the scheduler must not report it twice
        assert lost == [mutex]
        assert mutex.unlock() is False
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "payroll" in errors[0].getMessage()
    assert mutex.value is not None
    assert all(mutex.value not in r.getMessage() for r in caplog.records)


def test_a_thousand_locks_share_one_thread_and_all_survive(
    redis_nodes: list[RedisServer],
) -> None:
    threads_before = threading.active_count()
    with Redsync(urls(redis_nodes)) as rs:
        mutexes = [rs.new_mutex(f"bulk:{i}", expiry=1.5, auto_extend=True) for i in range(1000)]
        for mutex in mutexes:
            mutex.lock()
        assert threading.active_count() <= threads_before + 1
        time.sleep(4.5)  # three expiries
        assert not any(m.lost for m in mutexes)
        assert all(m.held for m in mutexes)
        client = redis_nodes[0].client()
        try:
            assert client.dbsize() == 1000
            assert min(int(client.pttl(f"bulk:{i}")) for i in range(0, 1000, 97)) > 0
        finally:
            client.close()
        assert all(m.unlock() for m in mutexes)
        assert threading.active_count() <= threads_before + 1


async def test_async_locks_are_extended_on_the_running_loop(
    redis_nodes: list[RedisServer],
) -> None:
    threads_before = threading.active_count()
    async with AsyncRedsync(urls(redis_nodes)) as rs:
        mutexes = [rs.new_mutex(f"abulk:{i}", expiry=1.0, auto_extend=True) for i in range(200)]
        for mutex in mutexes:
            await mutex.lock()
        rival = rs.new_mutex("abulk:0")
        for _ in range(6):
            await asyncio.sleep(0.5)
            assert not await rival.try_lock()
        assert threading.active_count() == threads_before  # no thread at all
        assert not any(m.lost for m in mutexes)
        assert all([await m.unlock() for m in mutexes])


async def test_async_loss_is_reported_and_raised(redis_nodes: list[RedisServer]) -> None:
    lost: list[Any] = []
    async with AsyncRedsync(urls(redis_nodes)) as rs:
        mutex = rs.new_mutex("aloss", expiry=1.0, auto_extend=True, on_lost=lost.append)
        with pytest.raises(LockLost):  # noqa: PT012 - the body is the scenario
            async with mutex:
                redis_nodes[0].kill()
                redis_nodes[2].kill()
                for _ in range(300):  # up to 6 s: a few expiries of 1 s
                    if mutex.lost:
                        break
                    await asyncio.sleep(0.02)
                assert mutex.lost
        assert lost == [mutex]


def test_a_forked_child_never_touches_the_parents_lock(redis_nodes: list[RedisServer]) -> None:
    with Redsync(urls(redis_nodes)) as rs:
        parent_lock = rs.new_mutex("shared", expiry=1.0, auto_extend=True)
        parent_lock.lock()
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status, never raise
            status = 0
            try:
                if parent_lock.held or parent_lock.unlock() or parent_lock.extend():
                    status = 10  # the child must not see or touch the parent's lock
                own = rs.new_mutex("child-only", expiry=1.0, auto_extend=True)
                own.lock()
                time.sleep(1.2)  # the child's own scheduler keeps its own lock alive
                if not own.valid() or not own.unlock():
                    status = 11
            except BaseException:  # any failure becomes a status
                status = 12
            os._exit(status)
        assert wait_child(pid, timeout=60) == 0
        time.sleep(1.2)  # longer than the expiry: only the parent extends it
        assert parent_lock.valid()
        assert parent_lock.unlock()


def extension_calls(servers: list[RedisServer]) -> list[int]:
    """Count the script calls (EVALSHA and EVAL) each node ran since its stats were reset."""
    counts = []
    for server in servers:
        client = server.client()
        try:
            stats = client.info("commandstats")
            counts.append(
                sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("evalsha", "eval"))
            )
        finally:
            client.close()
    return counts


def test_extensions_due_together_go_out_as_one_call_per_node(
    redis_nodes: list[RedisServer],
) -> None:
    with Redsync(urls(redis_nodes)) as rs:
        mutexes = [rs.new_mutex(f"batch:{i}", expiry=0.9, auto_extend=True) for i in range(40)]
        for mutex in mutexes:
            mutex.lock()
        reset_stats(redis_nodes)
        time.sleep(1.6)  # about five extensions of every lock
        calls = extension_calls(redis_nodes)
        assert not any(m.lost for m in mutexes)
        # One call per lock and extension would be about 200 per node.
        assert all(0 < n <= 40 for n in calls), calls
        assert all(m.unlock() for m in mutexes)


async def test_async_extensions_due_together_go_out_as_one_call_per_node(
    redis_nodes: list[RedisServer],
) -> None:
    async with AsyncRedsync(urls(redis_nodes)) as rs:
        mutexes = [rs.new_mutex(f"abatch:{i}", expiry=0.9, auto_extend=True) for i in range(40)]
        for mutex in mutexes:
            await mutex.lock()
        reset_stats(redis_nodes)
        await asyncio.sleep(1.6)
        calls = extension_calls(redis_nodes)
        assert not any(m.lost for m in mutexes)
        assert all(0 < n <= 40 for n in calls), calls
        assert all([await m.unlock() for m in mutexes])


class HandHeld:
    """A lock set by hand, renewed through nothing but the ``Renewable`` protocol."""

    def __init__(self, key: str, value: str, expiry_ms: int, nodes: int) -> None:
        self.options = MutexOptions.build({"expiry": expiry_ms / 1000})
        self.live = True
        self.until_ms: int | None = monotonic_ms() + expiry_ms // 2
        self.hold_end_ms: int | None = None
        self._target = Target(key, key, value, nodes)
        self.extensions = 0
        self.reasons: list[str] = []

    def target(self) -> Target:
        return self._target

    def extended(self, until_ms: int) -> None:
        self.until_ms = until_ms
        self.extensions += 1

    def extend_report(self, ok: bool, elapsed_ms: int) -> None:
        return None  # nobody listens to a lock set by hand

    def lost(self, reason: str) -> None:
        self.reasons.append(reason)


def test_the_scheduler_renews_any_renewable_through_the_fan_out_it_is_given(
    redis_nodes: list[RedisServer],
) -> None:
    nodes = build_sync_nodes(urls(redis_nodes))
    clients = [server.client() for server in redis_nodes]
    try:
        for client in clients:
            client.set("by-hand", "v1", px=1000)
        held = HandHeld("by-hand", "v1", 1000, len(nodes))
        sync_scheduler().add(held, functools.partial(sync_transport.extend_many, nodes))
        time.sleep(2.5)
        assert held.extensions >= 5
        assert held.reasons == []
        assert all(int(client.pttl("by-hand")) > 0 for client in clients)
        clients[0].delete("by-hand")
        clients[1].delete("by-hand")  # a quorum no longer holds it
        assert wait_until(lambda: held.reasons, timeout=2.0)
        assert held.reasons == ["a quorum of nodes no longer holds our value"]
        held.live = False
    finally:
        for client in clients:
            client.close()
        for node in nodes:
            node.close()


def test_the_scheduler_imports_no_driver_no_transport_and_no_redis() -> None:
    tree = ast.parse(Path(_autoextend.__file__).read_text(encoding="utf-8"))
    modules = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    modules += [
        a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names
    ]
    tops = {module.split(".")[0] for module in modules}
    assert tops.isdisjoint({"_sync", "_async", "_transport", "redis"}), sorted(tops)
