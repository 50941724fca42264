"""The asyncio API (AsyncRedsync / AsyncMutex) against real redis-server nodes.

The same scenarios as ``test_api_sync.py``, awaited.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest
from scenarios import (
    FOREIGN,
    HELD_SUBSETS,
    HeldSubset,
    check_held_subset_outcome,
    hold_foreign,
    pttls_on,
    values_on,
)

from redsync_core import (
    AsyncRedsync,
    LockError,
    LockNotAcquired,
    LockTaken,
    LockTimeout,
    QuorumUnreachable,
)
from redsync_core.testing import RedisServer


def urls(servers: list[RedisServer]) -> list[str]:
    return [server.url for server in servers]


# --- the basic contract ------------------------------------------------------------------------


async def test_lock_stores_the_value_on_every_node_and_unlock_deletes_it(
    ars: AsyncRedsync, redis_nodes: list[RedisServer]
) -> None:
    m = ars.new_mutex("orders:42", expiry=5)
    assert m.value is None
    assert not m.held
    assert m.until is None
    assert m.remaining == 0.0

    await m.lock()

    assert m.held
    assert isinstance(m.value, str)
    assert values_on(redis_nodes, "orders:42") == [m.value] * 3
    assert all(4000 < ttl <= 5000 for ttl in pttls_on(redis_nodes, "orders:42"))
    assert 4.0 < m.remaining <= 5.0
    assert await m.valid()

    assert await m.unlock() is True
    assert values_on(redis_nodes, "orders:42") == [None] * 3
    assert not m.held
    assert m.remaining == 0.0
    assert m.until is None
    assert await m.unlock() is False


async def test_until_is_an_aware_utc_datetime_matching_remaining(ars: AsyncRedsync) -> None:
    m = ars.new_mutex("until", expiry=5)
    await m.lock()
    try:
        until = m.until
        assert until is not None
        assert until.utcoffset() == dt.timedelta(0)
        left = (until - dt.datetime.now(dt.timezone.utc)).total_seconds()
        assert abs(left - m.remaining) < 0.5
    finally:
        await m.unlock()


async def test_key_prefix_forms_the_key(redis_nodes: list[RedisServer]) -> None:
    async with AsyncRedsync(urls(redis_nodes), key_prefix="app:") as ars:
        m = ars.new_mutex("job")
        assert (m.name, m.key) == ("job", "app:job")
        await m.lock()
        assert values_on(redis_nodes, "app:job") == [m.value] * 3
        assert await m.unlock()


async def test_context_manager_locks_and_unlocks(
    ars: AsyncRedsync, redis_nodes: list[RedisServer]
) -> None:
    async with ars.new_mutex("ctx", expiry=5) as m:
        assert m.held
        assert values_on(redis_nodes, "ctx") == [m.value] * 3
    assert not m.held
    assert values_on(redis_nodes, "ctx") == [None] * 3


async def test_locking_a_held_mutex_raises_a_plain_lock_error_and_keeps_it(
    ars: AsyncRedsync,
) -> None:
    m = ars.new_mutex("twice", expiry=5)
    await m.lock()
    value = m.value
    with pytest.raises(LockError) as caught:
        await m.lock()
    assert not isinstance(caught.value, LockNotAcquired)
    with pytest.raises(LockError):
        await m.try_lock()
    assert m.held
    assert m.value == value
    assert await m.valid()
    assert await m.unlock()


# --- contention --------------------------------------------------------------------------------


async def test_two_mutexes_contend_for_one_key(
    ars: AsyncRedsync, redis_nodes: list[RedisServer]
) -> None:
    first = ars.new_mutex("contended", expiry=5)
    second = ars.new_mutex("contended", expiry=5, tries=1)
    await first.lock()

    with pytest.raises(LockTaken) as caught:
        await second.lock()

    error = caught.value
    assert error.nodes == (0, 1, 2)
    assert error.attempts == 1
    assert error.retry_after is not None
    assert 3.5 < error.retry_after <= 5.0
    assert values_on(redis_nodes, "contended") == [first.value] * 3
    assert await second.try_lock() is False
    assert await first.unlock()
    assert await second.try_lock() is True
    assert await second.unlock()


@pytest.mark.parametrize("case", HELD_SUBSETS)
async def test_one_attempt_against_nodes_held_by_another_value(
    case: HeldSubset, redis_servers: object
) -> None:
    servers = redis_servers(case.n)  # type: ignore[operator]
    hold_foreign(servers, "subset", case.held)
    async with AsyncRedsync(urls(servers)) as ars:
        m = ars.new_mutex("subset", expiry=10, tries=1)
        error: LockNotAcquired | None = None
        try:
            await m.lock()
        except LockNotAcquired as exc:
            error = exc
        assert m.held == case.acquires
        check_held_subset_outcome(case, servers, "subset", m.value if m.held else None, error)
        if m.held:
            assert await m.unlock()
            assert values_on(servers, "subset") == [
                FOREIGN if i in case.held else None for i in range(case.n)
            ]


# --- node faults -------------------------------------------------------------------------------


async def test_a_killed_minority_does_not_stop_locking(
    ars: AsyncRedsync, redis_nodes: list[RedisServer]
) -> None:
    redis_nodes[0].kill()
    m = ars.new_mutex("minority", expiry=5)
    await m.lock()
    assert values_on(redis_nodes[1:], "minority") == [m.value] * 2
    assert await m.extend()
    assert await m.valid()
    assert await m.unlock()


async def test_a_killed_majority_raises_quorum_unreachable_fast(
    ars: AsyncRedsync, redis_nodes: list[RedisServer]
) -> None:
    redis_nodes[0].kill()
    redis_nodes[2].kill()
    m = ars.new_mutex("majority", expiry=5, tries=32, retry_delay=0.5)
    started = time.monotonic()
    with pytest.raises(QuorumUnreachable) as caught:
        await m.lock()
    assert time.monotonic() - started < 5.0  # no retries: the budget of 32 tries is 15.5 s
    assert sorted(e.node for e in caught.value.errors) == [0, 2]
    assert caught.value.attempts == 1
    assert not m.held


async def test_try_lock_raises_quorum_unreachable_when_nodes_are_down(
    ars: AsyncRedsync, redis_nodes: list[RedisServer]
) -> None:
    redis_nodes[1].kill()
    redis_nodes[2].kill()
    m = ars.new_mutex("down", expiry=5)
    with pytest.raises(QuorumUnreachable):
        await m.try_lock()
    assert await m.unlock() is False
    assert await m.extend() is False


async def test_a_paused_node_is_bounded_by_the_deadline(
    ars: AsyncRedsync, redis_nodes: list[RedisServer]
) -> None:
    redis_nodes[2].pause()
    try:
        m = ars.new_mutex("paused", expiry=2, tries=1, timeout_factor=0.25)
        started = time.monotonic()
        await m.lock()
        assert time.monotonic() - started < 5.0  # one 500 ms deadline; none would hang
        assert values_on(redis_nodes[:2], "paused") == [m.value] * 2
    finally:
        redis_nodes[2].resume()


async def test_unlock_and_extend_reach_quorum_while_a_node_is_paused(
    ars: AsyncRedsync, redis_nodes: list[RedisServer]
) -> None:
    m = ars.new_mutex("paused-release", expiry=2, tries=1, timeout_factor=0.25)
    redis_nodes[2].pause()
    try:
        await m.lock()
        started = time.monotonic()
        extended = await m.extend()
        released = await m.unlock()
        assert time.monotonic() - started < 5.0  # two 500 ms deadlines; none would hang
        assert values_on(redis_nodes[:2], "paused-release") == [None, None]
        assert extended is True
        assert released is True
    finally:
        redis_nodes[2].resume()


async def test_stalled_nodes_cost_one_deadline_not_one_each(redis_servers: object) -> None:
    servers = redis_servers(7)  # type: ignore[operator]
    for server in servers[4:]:
        server.pause()
    try:
        async with AsyncRedsync(urls(servers)) as ars:
            m = ars.new_mutex("stalled", expiry=40, tries=1)
            started = time.monotonic()
            await m.lock()
            elapsed = time.monotonic() - started
            assert m.held
            # One deadline per stalled node would be 6 s: 5 s leaves room for a busy CPU.
            assert elapsed < 5.0, f"one fan-out took {elapsed:.2f} s for a 2 s deadline"
    finally:
        for server in servers[4:]:
            server.resume()


async def test_fail_fast_does_not_wait_for_a_paused_node(
    ars: AsyncRedsync, redis_nodes: list[RedisServer]
) -> None:
    assert await ars.new_mutex("warm-up").try_lock()  # connections exist before the pause
    m = ars.new_mutex("fast", expiry=100, fail_fast=True, tries=1)  # deadline: 5 s
    redis_nodes[2].pause()
    try:
        started = time.monotonic()
        await m.lock()
        assert time.monotonic() - started < 3.0  # a quorum agreed: no wait for node 2
        assert values_on(redis_nodes[:2], "fast") == [m.value] * 2
        assert await m.unlock() is True
        assert values_on(redis_nodes[:2], "fast") == [None] * 2
    finally:
        redis_nodes[2].resume()


async def test_a_node_restarted_empty_does_not_break_unlock(
    ars: AsyncRedsync, redis_nodes: list[RedisServer]
) -> None:
    m = ars.new_mutex("restart", expiry=5)
    await m.lock()
    redis_nodes[1].restart()
    assert values_on(redis_nodes, "restart") == [m.value, None, m.value]
    assert await m.unlock() is True
    assert values_on(redis_nodes, "restart") == [None] * 3


# --- expiry, unlock and extend -----------------------------------------------------------------
# Short expiries get timeout_factor=0.5: the default (5 %) would leave a fan-out 10-15 ms, less
# than a cold connection needs on a loaded machine; these tests are about expiry, not deadlines.


async def test_unlock_after_expiry_is_false_and_spares_the_next_holder(
    ars: AsyncRedsync, redis_nodes: list[RedisServer]
) -> None:
    first = ars.new_mutex("expired", expiry=0.3, timeout_factor=0.5)
    await first.lock()
    await asyncio.sleep(0.5)
    assert not first.held
    second = ars.new_mutex("expired", expiry=5)
    await second.lock()

    assert await first.unlock() is False
    assert await first.extend() is False
    assert await second.valid()
    assert values_on(redis_nodes, "expired") == [second.value] * 3
    assert await second.unlock()


async def test_extend_raises_the_ttl_and_moves_until(
    ars: AsyncRedsync, redis_nodes: list[RedisServer]
) -> None:
    m = ars.new_mutex("extend", expiry=1, timeout_factor=0.5)  # 500 ms per fan-out
    await m.lock()
    until = m.until
    assert until is not None
    await asyncio.sleep(0.2)
    assert await m.extend(5.0) is True
    assert all(4000 < ttl <= 5000 for ttl in pttls_on(redis_nodes, "extend"))
    assert m.until is not None
    assert m.until > until + dt.timedelta(seconds=3)
    assert 4.0 < m.remaining <= 5.0
    assert await m.unlock()


async def test_extend_refuses_after_expiry_and_creates_no_key(
    ars: AsyncRedsync, redis_nodes: list[RedisServer]
) -> None:
    m = ars.new_mutex("late", expiry=0.2, timeout_factor=0.5)
    await m.lock()
    await asyncio.sleep(0.4)
    assert await m.extend() is False
    assert values_on(redis_nodes, "late") == [None] * 3


async def test_set_nx_on_extend_recreates_an_expired_lock(
    ars: AsyncRedsync, redis_nodes: list[RedisServer]
) -> None:
    m = ars.new_mutex("renew", expiry=0.2, set_nx_on_extend=True, timeout_factor=0.5)
    await m.lock()
    await asyncio.sleep(0.4)
    assert values_on(redis_nodes, "renew") == [None] * 3
    assert await m.extend(5.0) is True
    assert m.held
    assert values_on(redis_nodes, "renew") == [m.value] * 3
    assert await m.unlock()


async def test_value_handoff_extends_and_unlocks(redis_nodes: list[RedisServer]) -> None:
    async with AsyncRedsync(urls(redis_nodes)) as ars1, AsyncRedsync(urls(redis_nodes)) as ars2:
        first = ars1.new_mutex("handoff", expiry=1)
        await first.lock()
        other = ars2.new_mutex("handoff", value=first.value, expiry=1)
        assert await other.valid()
        assert await other.unlock() is True
        assert values_on(redis_nodes, "handoff") == [None] * 3

        await first.unlock()
        await first.lock()
        other = ars2.new_mutex("handoff", value=first.value, expiry=5)
        assert await other.extend() is True
        assert all(4000 < ttl <= 5000 for ttl in pttls_on(redis_nodes, "handoff"))
        assert await other.unlock() is True


# --- retry policy ------------------------------------------------------------------------------


async def test_tries_bounds_the_attempts(ars: AsyncRedsync) -> None:
    holder = ars.new_mutex("tries", expiry=5)
    await holder.lock()
    m = ars.new_mutex("tries", expiry=5, tries=3, retry_delay=0.01)
    with pytest.raises(LockTaken) as caught:
        await m.lock()
    assert caught.value.attempts == 3
    await holder.unlock()


async def test_fixed_retry_delay_spaces_the_attempts(ars: AsyncRedsync) -> None:
    holder = ars.new_mutex("delay", expiry=5)
    await holder.lock()
    m = ars.new_mutex("delay", expiry=5, tries=4, retry_delay=0.2)
    started = time.monotonic()
    with pytest.raises(LockTaken):
        await m.lock()
    assert 0.55 <= time.monotonic() - started < 3.0
    await holder.unlock()


async def test_retry_delay_func_is_called_with_the_attempt_number(ars: AsyncRedsync) -> None:
    holder = ars.new_mutex("func", expiry=5)
    await holder.lock()
    calls: list[int] = []

    def delay(attempt: int) -> float:
        calls.append(attempt)
        return 0.01

    m = ars.new_mutex("func", expiry=5, tries=4, retry_delay=5.0, retry_delay_func=delay)
    started = time.monotonic()
    with pytest.raises(LockTaken):
        await m.lock()
    assert calls == [1, 2, 3]
    assert time.monotonic() - started < 3.0
    await holder.unlock()


async def test_unlimited_tries_stop_at_the_timeout(ars: AsyncRedsync) -> None:
    holder = ars.new_mutex("timeout", expiry=5)
    await holder.lock()
    m = ars.new_mutex("timeout", expiry=5, tries=None, retry_delay=0.05)
    started = time.monotonic()
    with pytest.raises(LockTimeout) as caught:
        await m.lock(timeout=0.5)
    assert 0.4 <= time.monotonic() - started < 3.0  # 0.5 s + one deadline
    assert caught.value.attempts > 1
    assert not m.held
    await holder.unlock()


# --- scripts, shuffling, clocks ------------------------------------------------------------------


async def test_extend_and_unlock_survive_script_flush(
    ars: AsyncRedsync, redis_nodes: list[RedisServer]
) -> None:
    m = ars.new_mutex("noscript", expiry=5)
    await m.lock()
    assert await m.extend()
    for server in redis_nodes:
        client = server.client()
        client.script_flush()
        client.close()
    assert await m.extend(4.0) is True
    assert all(3000 < ttl <= 4000 for ttl in pttls_on(redis_nodes, "noscript"))
    for server in redis_nodes:
        client = server.client()
        client.script_flush()
        client.close()
    assert await m.unlock() is True
    assert values_on(redis_nodes, "noscript") == [None] * 3


async def test_shuffle_pools_never_mutates_shared_state(ars: AsyncRedsync) -> None:
    nodes, addresses = ars.nodes, ars.addresses
    mutexes = [ars.new_mutex(f"shuffle:{i}", expiry=5, shuffle_pools=True) for i in range(8)]
    for m in mutexes:
        await m.lock()
    assert (ars.nodes, ars.addresses) == (nodes, addresses)
    assert all([await m.valid() for m in mutexes])
    assert all([await m.unlock() for m in mutexes])
    assert (ars.nodes, ars.addresses) == (nodes, addresses)


async def test_wall_clock_jumps_do_not_change_validity(
    ars: AsyncRedsync, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_time, real_time_ns = time.time, time.time_ns
    m = ars.new_mutex("clock", expiry=5)
    await m.lock()
    before = m.remaining
    for jump in (3600, -3600):
        monkeypatch.setattr(time, "time", lambda jump=jump: real_time() + jump)
        monkeypatch.setattr(time, "time_ns", lambda jump=jump: real_time_ns() + jump * 10**9)
        assert m.held
        assert before - 1.0 < m.remaining <= before
        assert await m.extend() is True
        assert 4.0 < m.remaining <= 5.0
        before = m.remaining
    monkeypatch.undo()
    assert await m.unlock()


# --- tasks -------------------------------------------------------------------------------------


async def test_tasks_lose_no_update_under_the_lock(redis_servers: object) -> None:
    *nodes, referee = redis_servers(4)  # type: ignore[operator]
    tasks, rounds = 20, 3
    inside = 0
    overlaps = 0
    client = referee.async_client()
    try:
        async with AsyncRedsync(urls(nodes)) as ars:

            async def work() -> None:
                nonlocal inside, overlaps
                for _ in range(rounds):
                    m = ars.new_mutex("counter", expiry=5, tries=None, retry_delay=0.005)
                    await m.lock(timeout=30)
                    try:
                        inside += 1
                        overlaps += inside > 1
                        n = int(await client.get("n") or 0)
                        await asyncio.sleep(0.001)
                        await client.set("n", n + 1)
                        inside -= 1
                    finally:
                        await m.unlock()

            await asyncio.wait_for(asyncio.gather(*(work() for _ in range(tasks))), 60)
        assert overlaps == 0
        assert int(await client.get("n") or 0) == tasks * rounds
    finally:
        await client.aclose()
