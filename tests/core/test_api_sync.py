"""The sync API (Redsync / Mutex) against real redis-server nodes.

``test_api_async.py`` runs the same scenarios against AsyncRedsync / AsyncMutex.
"""

from __future__ import annotations

import datetime as dt
import threading
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
    LockError,
    LockNotAcquired,
    LockTaken,
    LockTimeout,
    QuorumUnreachable,
    Redsync,
)
from redsync_core.testing import RedisServer


def urls(servers: list[RedisServer]) -> list[str]:
    return [server.url for server in servers]


# --- the basic contract ------------------------------------------------------------------------


def test_lock_stores_the_value_on_every_node_and_unlock_deletes_it(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    m = rs.new_mutex("orders:42", expiry=5)
    assert m.value is None
    assert not m.held
    assert m.until is None
    assert m.remaining == 0.0

    m.lock()

    assert m.held
    assert isinstance(m.value, str)
    assert values_on(redis_nodes, "orders:42") == [m.value] * 3
    assert all(4000 < ttl <= 5000 for ttl in pttls_on(redis_nodes, "orders:42"))
    assert 4.0 < m.remaining <= 5.0
    assert m.valid()

    assert m.unlock() is True
    assert values_on(redis_nodes, "orders:42") == [None] * 3
    assert not m.held
    assert m.remaining == 0.0
    assert m.until is None
    assert m.unlock() is False  # nothing left to delete


def test_until_is_an_aware_utc_datetime_matching_remaining(rs: Redsync) -> None:
    m = rs.new_mutex("until", expiry=5)
    m.lock()
    try:
        until = m.until
        assert until is not None
        assert until.tzinfo is not None
        assert until.utcoffset() == dt.timedelta(0)
        left = (until - dt.datetime.now(dt.timezone.utc)).total_seconds()
        assert abs(left - m.remaining) < 0.5
    finally:
        m.unlock()


def test_key_prefix_forms_the_key(redis_nodes: list[RedisServer]) -> None:
    with Redsync(urls(redis_nodes), key_prefix="app:") as rs:
        m = rs.new_mutex("job")
        assert m.name == "job"
        assert m.key == "app:job"
        m.lock()
        assert values_on(redis_nodes, "app:job") == [m.value] * 3
        assert values_on(redis_nodes, "job") == [None] * 3
        assert m.unlock()


def test_context_manager_locks_and_unlocks(rs: Redsync, redis_nodes: list[RedisServer]) -> None:
    with rs.new_mutex("ctx", expiry=5) as m:
        assert m.held
        assert values_on(redis_nodes, "ctx") == [m.value] * 3
    assert not m.held
    assert values_on(redis_nodes, "ctx") == [None] * 3


def test_locking_a_held_mutex_raises_a_plain_lock_error_and_keeps_it(rs: Redsync) -> None:
    m = rs.new_mutex("twice", expiry=5)
    m.lock()
    value = m.value
    with pytest.raises(LockError) as caught:
        m.lock()
    assert not isinstance(caught.value, LockNotAcquired)
    assert caught.value.name == "twice"
    with pytest.raises(LockError):
        m.try_lock()
    assert m.held
    assert m.value == value
    assert m.valid()
    assert m.unlock()


def test_a_new_lock_gets_a_new_value(rs: Redsync) -> None:
    m = rs.new_mutex("values", expiry=5)
    m.lock()
    first = m.value
    assert m.unlock()
    m.lock()
    assert m.value != first
    assert m.unlock()


# --- contention --------------------------------------------------------------------------------


def test_two_mutexes_contend_for_one_key(rs: Redsync, redis_nodes: list[RedisServer]) -> None:
    first = rs.new_mutex("contended", expiry=5)
    second = rs.new_mutex("contended", expiry=5, tries=1)
    first.lock()

    with pytest.raises(LockTaken) as caught:
        second.lock()

    error = caught.value
    assert error.name == "contended"
    assert error.nodes == (0, 1, 2)
    assert error.attempts == 1
    assert error.retry_after is not None
    assert 3.5 < error.retry_after <= 5.0  # the holder's remaining TTL
    assert not second.held
    assert values_on(redis_nodes, "contended") == [first.value] * 3
    assert second.try_lock() is False
    assert first.unlock()
    assert second.try_lock() is True
    assert second.unlock()


@pytest.mark.parametrize("case", HELD_SUBSETS)
def test_one_attempt_against_nodes_held_by_another_value(
    case: HeldSubset, redis_servers: object
) -> None:
    servers = redis_servers(case.n)  # type: ignore[operator]
    hold_foreign(servers, "subset", case.held)
    with Redsync(urls(servers)) as rs:
        m = rs.new_mutex("subset", expiry=10, tries=1)
        error: LockNotAcquired | None = None
        try:
            m.lock()
        except LockNotAcquired as exc:
            error = exc
        assert m.held == case.acquires
        check_held_subset_outcome(case, servers, "subset", m.value if m.held else None, error)
        if m.held:
            assert m.unlock()
            assert values_on(servers, "subset") == [
                FOREIGN if i in case.held else None for i in range(case.n)
            ]


# --- node faults -------------------------------------------------------------------------------


def test_a_killed_minority_does_not_stop_locking(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    redis_nodes[0].kill()
    m = rs.new_mutex("minority", expiry=5)
    m.lock()
    assert m.held
    assert values_on(redis_nodes[1:], "minority") == [m.value] * 2
    assert m.extend()
    assert m.valid()
    assert m.unlock()


def test_a_killed_majority_raises_quorum_unreachable_fast(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    redis_nodes[0].kill()
    redis_nodes[2].kill()
    m = rs.new_mutex("majority", expiry=5, tries=32, retry_delay=0.5)  # budget: 15.5 s
    started = time.monotonic()
    with pytest.raises(QuorumUnreachable) as caught:
        m.lock()
    assert time.monotonic() - started < 5.0  # no retries: the budget of 32 tries is 15.5 s
    error = caught.value
    assert sorted(e.node for e in error.errors) == [0, 2]
    assert error.attempts == 1
    assert values_on(redis_nodes[1:2], "majority") == [None]  # released on the live node
    assert not m.held


def test_try_lock_raises_quorum_unreachable_when_nodes_are_down(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    redis_nodes[1].kill()
    redis_nodes[2].kill()
    m = rs.new_mutex("down", expiry=5)
    with pytest.raises(QuorumUnreachable):
        m.try_lock()
    assert m.unlock() is False
    assert m.extend() is False


def test_a_paused_node_is_bounded_by_the_deadline(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    # expiry=2 and timeout_factor=0.25: each fan-out waits at most 500 ms for a node (100 ms
    # was too short for a first connection on a busy CI machine).
    redis_nodes[2].pause()
    try:
        m = rs.new_mutex("paused", expiry=2, tries=1, timeout_factor=0.25)
        started = time.monotonic()
        m.lock()
        assert time.monotonic() - started < 5.0  # one 500 ms deadline; none would hang
        assert m.held
        assert values_on(redis_nodes[:2], "paused") == [m.value] * 2
    finally:
        redis_nodes[2].resume()


def test_unlock_and_extend_reach_quorum_while_a_node_is_paused(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    # Fresh nodes have no script cached: release/extend go EVALSHA -> NOSCRIPT -> EVAL.
    m = rs.new_mutex("paused-release", expiry=2, tries=1, timeout_factor=0.25)
    redis_nodes[2].pause()
    try:
        m.lock()
        started = time.monotonic()
        extended = m.extend()
        released = m.unlock()
        assert time.monotonic() - started < 5.0  # two 500 ms deadlines; none would hang
        assert values_on(redis_nodes[:2], "paused-release") == [None, None]
        assert extended is True
        assert released is True
    finally:
        redis_nodes[2].resume()


def test_stalled_nodes_cost_one_deadline_not_one_each(redis_servers: object) -> None:
    servers = redis_servers(7)  # type: ignore[operator]
    # expiry=40: deadline 2 s. Three stalled nodes of 7 still leave a quorum of 4.
    for server in servers[4:]:
        server.pause()
    try:
        with Redsync(urls(servers)) as rs:
            m = rs.new_mutex("stalled", expiry=40, tries=1)
            started = time.monotonic()
            m.lock()
            elapsed = time.monotonic() - started
            assert m.held
            # One deadline per stalled node would be 6 s: 5 s leaves room for a busy CPU.
            assert elapsed < 5.0, f"one fan-out took {elapsed:.2f} s for a 2 s deadline"
    finally:
        for server in servers[4:]:
            server.resume()


def test_fail_fast_does_not_wait_for_a_paused_node(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    assert rs.new_mutex("warm-up").try_lock()  # connections exist before the pause
    m = rs.new_mutex("fast", expiry=100, fail_fast=True, tries=1)  # deadline: 5 s
    redis_nodes[2].pause()
    try:
        started = time.monotonic()
        m.lock()
        assert time.monotonic() - started < 3.0  # a quorum agreed: no wait for node 2
        assert values_on(redis_nodes[:2], "fast") == [m.value] * 2
        assert m.unlock() is True
        assert values_on(redis_nodes[:2], "fast") == [None] * 2
    finally:
        redis_nodes[2].resume()


def test_a_node_restarted_empty_does_not_break_unlock(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    m = rs.new_mutex("restart", expiry=5)
    m.lock()
    redis_nodes[1].restart()
    assert values_on(redis_nodes, "restart") == [m.value, None, m.value]
    assert m.unlock() is True
    assert values_on(redis_nodes, "restart") == [None] * 3


# --- expiry, unlock and extend -----------------------------------------------------------------
# Short expiries get timeout_factor=0.5: the default (5 %) would leave a fan-out 10-15 ms, less
# than a cold connection needs on a loaded machine; these tests are about expiry, not deadlines.


def test_unlock_after_expiry_is_false_and_spares_the_next_holder(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    first = rs.new_mutex("expired", expiry=0.3, timeout_factor=0.5)
    first.lock()
    time.sleep(0.5)
    assert not first.held
    assert first.remaining == 0.0
    second = rs.new_mutex("expired", expiry=5)
    second.lock()

    assert first.unlock() is False
    assert first.extend() is False
    assert second.valid()
    assert second.held
    assert values_on(redis_nodes, "expired") == [second.value] * 3
    assert second.unlock()


def test_extend_raises_the_ttl_and_moves_until(rs: Redsync, redis_nodes: list[RedisServer]) -> None:
    m = rs.new_mutex("extend", expiry=1, timeout_factor=0.5)  # 500 ms per fan-out
    m.lock()
    until = m.until
    assert until is not None
    time.sleep(0.2)
    assert m.extend(5.0) is True
    assert all(4000 < ttl <= 5000 for ttl in pttls_on(redis_nodes, "extend"))
    assert m.until is not None
    assert m.until > until + dt.timedelta(seconds=3)
    assert 4.0 < m.remaining <= 5.0
    assert m.extend() is True  # back to the mutex's expiry
    assert all(0 < ttl <= 1000 for ttl in pttls_on(redis_nodes, "extend"))
    assert m.unlock()


def test_extend_refuses_after_expiry_and_creates_no_key(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    m = rs.new_mutex("late", expiry=0.2, timeout_factor=0.5)
    m.lock()
    time.sleep(0.4)
    assert m.extend() is False
    assert values_on(redis_nodes, "late") == [None] * 3
    assert not m.held


def test_set_nx_on_extend_recreates_an_expired_lock(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    m = rs.new_mutex("renew", expiry=0.2, set_nx_on_extend=True, timeout_factor=0.5)
    m.lock()
    time.sleep(0.4)
    assert values_on(redis_nodes, "renew") == [None] * 3
    assert m.extend(5.0) is True
    assert m.held
    assert values_on(redis_nodes, "renew") == [m.value] * 3
    assert m.unlock()


def test_value_handoff_extends_and_unlocks(redis_nodes: list[RedisServer]) -> None:
    with Redsync(urls(redis_nodes)) as rs1, Redsync(urls(redis_nodes)) as rs2:
        first = rs1.new_mutex("handoff", expiry=1)
        first.lock()
        assert first.value is not None
        other = rs2.new_mutex("handoff", value=first.value, expiry=1)
        assert other.value == first.value
        assert other.valid()

        unlocked_before = values_on(redis_nodes, "handoff")
        assert other.unlock() is True
        assert values_on(redis_nodes, "handoff") == [None] * 3
        assert unlocked_before == [first.value] * 3

        first.unlock()
        first.lock()
        other = rs2.new_mutex("handoff", value=first.value, expiry=5)
        assert other.extend() is True
        assert all(4000 < ttl <= 5000 for ttl in pttls_on(redis_nodes, "handoff"))
        assert other.unlock() is True


# --- retry policy ------------------------------------------------------------------------------


def test_tries_bounds_the_attempts(rs: Redsync) -> None:
    holder = rs.new_mutex("tries", expiry=5)
    holder.lock()
    m = rs.new_mutex("tries", expiry=5, tries=3, retry_delay=0.01)
    with pytest.raises(LockTaken) as caught:
        m.lock()
    assert caught.value.attempts == 3
    holder.unlock()


def test_fixed_retry_delay_spaces_the_attempts(rs: Redsync) -> None:
    holder = rs.new_mutex("delay", expiry=5)
    holder.lock()
    m = rs.new_mutex("delay", expiry=5, tries=4, retry_delay=0.2)
    started = time.monotonic()
    with pytest.raises(LockTaken):
        m.lock()
    elapsed = time.monotonic() - started
    assert 0.55 <= elapsed < 3.0  # 3 delays of 0.2 s between 4 attempts
    holder.unlock()


def test_retry_delay_func_is_called_with_the_attempt_number(rs: Redsync) -> None:
    holder = rs.new_mutex("func", expiry=5)
    holder.lock()
    calls: list[int] = []

    def delay(attempt: int) -> float:
        calls.append(attempt)
        return 0.01

    m = rs.new_mutex("func", expiry=5, tries=4, retry_delay=5.0, retry_delay_func=delay)
    started = time.monotonic()
    with pytest.raises(LockTaken):
        m.lock()
    assert calls == [1, 2, 3]
    assert time.monotonic() - started < 3.0  # the func overrides retry_delay=5
    holder.unlock()


def test_unlimited_tries_stop_at_the_timeout(rs: Redsync) -> None:
    holder = rs.new_mutex("timeout", expiry=5)
    holder.lock()
    m = rs.new_mutex("timeout", expiry=5, tries=None, retry_delay=0.05)
    started = time.monotonic()
    with pytest.raises(LockTimeout) as caught:
        m.lock(timeout=0.5)
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 3.0  # timeout 0.5 s + one deadline; without it: 5 s, then locked
    assert caught.value.attempts > 1
    assert caught.value.retry_after is not None
    assert not m.held
    holder.unlock()


def test_the_lock_is_taken_as_soon_as_the_holder_lets_go(rs: Redsync) -> None:
    holder = rs.new_mutex("wait", expiry=0.4, timeout_factor=0.5)
    holder.lock()
    m = rs.new_mutex("wait", expiry=5, tries=None, retry_delay=0.05)
    m.lock(timeout=3.0)  # the holder's key expires after 0.4 s
    assert m.held
    assert m.unlock()


# --- scripts, shuffling, clocks ------------------------------------------------------------------


def test_extend_and_unlock_survive_script_flush(
    rs: Redsync, redis_nodes: list[RedisServer]
) -> None:
    m = rs.new_mutex("noscript", expiry=5)
    m.lock()
    assert m.extend()  # caches the script
    for server in redis_nodes:
        client = server.client()
        client.script_flush()
        client.close()
    assert m.extend(4.0) is True
    assert all(3000 < ttl <= 4000 for ttl in pttls_on(redis_nodes, "noscript"))
    for server in redis_nodes:
        client = server.client()
        client.script_flush()
        client.close()
    assert m.unlock() is True
    assert values_on(redis_nodes, "noscript") == [None] * 3


def test_shuffle_pools_never_mutates_shared_state(rs: Redsync) -> None:
    nodes, addresses = rs.nodes, rs.addresses
    mutexes = [rs.new_mutex(f"shuffle:{i}", expiry=5, shuffle_pools=True) for i in range(8)]
    for m in mutexes:
        m.lock()
    assert rs.nodes == nodes
    assert rs.addresses == addresses
    plain = rs.new_mutex("shuffle:plain", expiry=5)
    plain.lock()
    assert all(m.valid() for m in mutexes)
    assert all(m.unlock() for m in [*mutexes, plain])
    assert rs.nodes == nodes
    assert rs.addresses == addresses


def test_wall_clock_jumps_do_not_change_validity(
    rs: Redsync, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Validity runs on the monotonic clock: a wall clock (time.time) jumping an hour either way
    # must change neither `held` nor `remaining` nor what extend() decides.
    real_time, real_time_ns = time.time, time.time_ns
    m = rs.new_mutex("clock", expiry=5)
    m.lock()
    before = m.remaining
    for jump in (3600, -3600):
        monkeypatch.setattr(time, "time", lambda jump=jump: real_time() + jump)
        monkeypatch.setattr(time, "time_ns", lambda jump=jump: real_time_ns() + jump * 10**9)
        assert m.held
        assert before - 1.0 < m.remaining <= before
        assert m.extend() is True
        assert 4.0 < m.remaining <= 5.0
        before = m.remaining
    monkeypatch.undo()
    assert m.unlock()


# --- threads -----------------------------------------------------------------------------------


def test_threads_lose_no_update_under_the_lock(redis_servers: object) -> None:
    *nodes, referee = redis_servers(4)  # type: ignore[operator]
    threads, rounds = 8, 5
    inside = 0
    overlaps = 0
    guard = threading.Lock()
    errors: list[BaseException] = []

    with Redsync(urls(nodes)) as rs:

        def work() -> None:
            nonlocal inside, overlaps
            client = referee.client()
            try:
                for _ in range(rounds):
                    m = rs.new_mutex("counter", expiry=5, tries=None, retry_delay=0.005)
                    m.lock(timeout=30)
                    try:
                        with guard:
                            inside += 1
                            overlaps += inside > 1
                        n = int(client.get("n") or 0)
                        time.sleep(0.001)
                        client.set("n", n + 1)
                        with guard:
                            inside -= 1
                    finally:
                        m.unlock()
            except BaseException as exc:
                errors.append(exc)
            finally:
                client.close()

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join(60)

    assert errors == []
    assert overlaps == 0
    client = referee.client()
    try:
        assert int(client.get("n") or 0) == threads * rounds
    finally:
        client.close()
