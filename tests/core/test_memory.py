"""``memory://NAME`` nodes: the same semantics as Redis for our commands, in process."""

from __future__ import annotations

import asyncio
import time

import pytest
from scenarios import QUORUMS

from redsync_core import AsyncRedsync, LockNotAcquired, LockTaken, Redsync
from redsync_core.testing import memory_urls


@pytest.mark.parametrize(("n", "need"), QUORUMS)
def test_quorum_of_n_memory_nodes(n: int, need: int) -> None:
    nodes = memory_urls(n)
    with Redsync(nodes) as rs:
        assert rs.quorum == need
        # Another holder on the first n - need nodes leaves exactly a quorum free: we lock.
        blocker = None
        if n > need:
            blocker = Redsync(nodes[: n - need]).new_mutex("q", expiry=5)
            blocker.lock()
        m = rs.new_mutex("q", expiry=5, tries=1)
        m.lock()
        assert m.held
        assert [node.holder for node in rs.inspect("q").nodes][n - need :] == [m.value] * need
        assert m.unlock()
        if blocker is not None:
            assert blocker.unlock()


@pytest.mark.parametrize(("n", "need"), QUORUMS)
def test_one_node_too_many_held_fails_for_n_memory_nodes(n: int, need: int) -> None:
    nodes = memory_urls(n)
    held = n - need + 1
    with Redsync(nodes[:held]) as other, Redsync(nodes) as rs:
        blocker = other.new_mutex("q", expiry=5)
        blocker.lock()
        m = rs.new_mutex("q", expiry=5, tries=1, gen_value_func=lambda: "ours")
        with pytest.raises(LockNotAcquired) as caught:
            m.lock()
        assert isinstance(caught.value, LockTaken) == (held >= need)
        assert not m.held
        # No partial acquisition: no node keeps our value; the other holder is untouched.
        holders = [node.holder for node in rs.inspect("q").nodes]
        assert holders == [blocker.value] * held + [None] * (n - held)
        assert blocker.valid()
        assert blocker.unlock()


def test_memory_nodes_are_shared_by_name_within_the_process() -> None:
    nodes = memory_urls(3)
    with Redsync(nodes) as a, Redsync(nodes) as b:
        first = a.new_mutex("shared", expiry=5)
        first.lock()
        with pytest.raises(LockTaken) as caught:
            b.new_mutex("shared", expiry=5, tries=1).lock()
        assert caught.value.nodes == (0, 1, 2)
        assert 4.0 < (caught.value.retry_after or 0) <= 5.0
        assert first.unlock()
    with Redsync(memory_urls(3)) as fresh:
        other = fresh.new_mutex("shared", expiry=5, tries=1)
        other.lock()  # different names: different stores
        assert other.unlock()


def test_memory_keys_expire() -> None:
    with Redsync(memory_urls(3)) as rs:
        first = rs.new_mutex("exp", expiry=0.2)
        first.lock()
        time.sleep(0.35)
        assert not first.held
        assert first.extend() is False
        info = rs.inspect("exp")
        assert not info.held
        second = rs.new_mutex("exp", expiry=5, tries=1)
        second.lock()
        assert first.unlock() is False
        assert second.valid()
        assert second.unlock()


def test_memory_extend_and_set_nx_on_extend() -> None:
    with Redsync(memory_urls(3)) as rs:
        m = rs.new_mutex("ext", expiry=1)
        m.lock()
        assert m.extend(5.0)
        info = rs.inspect("ext")
        assert info.holder == m.value
        assert info.remaining is not None
        assert 4.0 < info.remaining <= 5.0
        assert m.unlock()

        nx = rs.new_mutex("nx", expiry=0.2, set_nx_on_extend=True)
        nx.lock()
        time.sleep(0.35)
        assert rs.inspect("nx").holder is None
        assert nx.extend(5.0) is True
        assert rs.inspect("nx").holder == nx.value
        assert nx.unlock()


def test_memory_force_release_and_inspect() -> None:
    with Redsync(memory_urls(3)) as rs:
        m = rs.new_mutex("ops", expiry=5)
        m.lock()
        info = rs.inspect("ops")
        assert info.held
        assert [node.holder for node in info.nodes] == [m.value] * 3
        assert rs.force_release("ops") == 3
        assert not rs.inspect("ops").held
        assert m.unlock() is False


async def test_async_memory_nodes_share_stores_with_sync_ones() -> None:
    nodes = memory_urls(3)
    async with AsyncRedsync(nodes) as ars:
        with Redsync(nodes) as rs:
            m = ars.new_mutex("twins", expiry=0.3)
            await m.lock()
            assert rs.new_mutex("twins", tries=1).try_lock() is False
            await asyncio.sleep(0.45)
            assert not m.held
            assert await m.extend() is False
            taker = rs.new_mutex("twins", expiry=5, tries=1)
            taker.lock()
            assert await m.unlock() is False
            assert taker.valid()
            assert taker.unlock()


async def test_async_memory_contention() -> None:
    nodes = memory_urls(5)
    async with AsyncRedsync(nodes) as ars:
        assert ars.quorum == 3
        first = ars.new_mutex("c", expiry=5)
        await first.lock()
        second = ars.new_mutex("c", expiry=5, tries=2, retry_delay=0.01)
        with pytest.raises(LockTaken) as caught:
            await second.lock()
        assert caught.value.attempts == 2
        assert await second.try_lock() is False
        assert await first.unlock()
        assert await second.try_lock() is True
        assert await second.unlock()
