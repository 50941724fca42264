"""Hand-overs between holders: ``take_over(value)`` swaps another holder's value for ours in
one step per node, and ``release_after(seconds)`` lets go of a lock while leaving it to expire
later (sync and asyncio, on real redis-server nodes and on memory nodes)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from redsync_core import AsyncRedsync, ConfigurationError, LockError, Mutex, Redsync
from redsync_core.testing import RedisServer, memory_urls


@pytest.fixture(params=["redis", "memory"])
def urls(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    if request.param == "redis":
        nodes: list[RedisServer] = request.getfixturevalue("redis_nodes")
        yield [s.url for s in nodes]
    else:
        yield memory_urls(3)


def test_take_over_moves_the_lock_to_the_new_holder(urls: list[str]) -> None:
    with Redsync(urls) as rs:
        queued = rs.new_mutex("job", expiry=60.0)
        queued.lock()
        run = rs.new_mutex("job", expiry=5.0)
        assert run.take_over(queued.value or "") is True
        info = rs.inspect("job")
        assert info.holder == run.value != queued.value
        assert info.remaining is not None
        assert info.remaining <= 5.0  # the new holder's expiry, not the old one's
        assert run.held
        assert queued.unlock() is False  # the old value no longer holds it
        assert rs.inspect("job").holder == run.value
        assert run.unlock() is True
        assert rs.inspect("job").holder is None


def test_take_over_of_a_value_nobody_holds_leaves_the_lock_alone(urls: list[str]) -> None:
    with Redsync(urls) as rs:
        other = rs.new_mutex("job", expiry=60.0)
        other.lock()
        late = rs.new_mutex("job")
        assert late.take_over("expired-value") is False
        assert not late.held
        assert rs.inspect("job").holder == other.value
        assert late.take_over(other.value or "") is True  # the mutex is still usable
        late.unlock()


def test_only_one_of_two_contenders_takes_a_value_over(urls: list[str]) -> None:
    with Redsync(urls) as rs:
        queued = rs.new_mutex("job", expiry=60.0)
        queued.lock()
        first, second = rs.new_mutex("job"), rs.new_mutex("job")
        assert first.take_over(queued.value or "") is True
        assert second.take_over(queued.value or "") is False
        assert rs.inspect("job").holder == first.value
        first.unlock()


def test_take_over_refuses_a_held_mutex_and_a_bad_value(urls: list[str]) -> None:
    with Redsync(urls) as rs:
        mutex = rs.new_mutex("job")
        with pytest.raises(ConfigurationError, match="lock value"):
            mutex.take_over("")
        mutex.lock()
        with pytest.raises(LockError, match="already held"):
            mutex.take_over("anything")
        mutex.unlock()


def test_take_over_starts_auto_extension(urls: list[str]) -> None:
    with Redsync(urls) as rs:
        queued = rs.new_mutex("job", expiry=60.0)
        queued.lock()
        run = rs.new_mutex("job", expiry=0.6, auto_extend=True)
        assert run.take_over(queued.value or "")
        time.sleep(1.5)  # 2.5 expiries: only auto-extension keeps it
        assert rs.inspect("job").holder == run.value
        assert not run.lost
        assert run.unlock() is True


def test_release_after_stops_extension_and_keeps_the_key_for_the_window(
    urls: list[str],
) -> None:
    with Redsync(urls) as rs:
        mutex = rs.new_mutex("job", expiry=1.0, auto_extend=True)
        mutex.lock()
        assert mutex.release_after(0.5) is True
        assert not mutex.held
        info = rs.inspect("job")
        assert info.holder == mutex.value  # not deleted
        assert info.remaining is not None
        assert info.remaining <= 0.5
        time.sleep(1.2)  # an extension (every 1/3 s) would have kept it
        assert rs.inspect("job").holder is None
        assert mutex.unlock() is False


def test_release_after_can_hand_the_lock_to_a_later_take_over(urls: list[str]) -> None:
    with Redsync(urls) as rs:
        attempt = rs.new_mutex("job", expiry=1.0, auto_extend=True)
        attempt.lock()
        value = attempt.value or ""
        assert attempt.release_after(30.0) is True
        time.sleep(0.5)  # auto-extension stopped: no loss is reported when the value changes
        retry = rs.new_mutex("job", expiry=1.0)
        assert retry.take_over(value) is True
        time.sleep(0.6)
        assert not attempt.lost
        retry.unlock()


def test_release_after_of_a_lock_no_longer_ours_is_false(urls: list[str]) -> None:
    with Redsync(urls) as rs:
        mutex = rs.new_mutex("job", expiry=10.0)
        assert mutex.release_after(1.0) is False  # never locked
        mutex.lock()
        rs.force_release("job")
        assert mutex.release_after(1.0) is False
        with pytest.raises(ConfigurationError, match="expiry"):
            mutex.release_after(0)


def test_the_asyncio_twin_hands_over_the_same_way(urls: list[str]) -> None:
    async def scenario() -> None:
        async with AsyncRedsync(urls) as rs:
            queued = rs.new_mutex("job", expiry=60.0)
            await queued.lock()
            run = rs.new_mutex("job", expiry=1.0, auto_extend=True)
            assert await run.take_over(queued.value or "") is True
            assert await queued.unlock() is False
            assert (await rs.inspect("job")).holder == run.value
            assert await run.release_after(0.3) is True
            await asyncio.sleep(0.8)
            assert (await rs.inspect("job")).holder is None

    asyncio.run(scenario())


def _race(rs: Redsync, value: str) -> tuple[list[bool], list[Mutex]]:
    """Two mutexes take ``value`` over at the same moment (two threads, one barrier)."""
    contenders = [rs.new_mutex("job"), rs.new_mutex("job")]
    start = threading.Barrier(2)
    won = [False, False]

    def take(i: int) -> None:
        start.wait()
        won[i] = contenders[i].take_over(value)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return won, contenders


def test_concurrent_take_overs_of_one_value_have_one_winner(urls: list[str]) -> None:
    """Two threads take the same queued value over at the same moment, 20 times: exactly one
    wins each round, and the lock then holds the winner's value."""
    with Redsync(urls) as rs:
        for _ in range(20):
            queued = rs.new_mutex("job", expiry=60.0)
            queued.lock()
            won, contenders = _race(rs, queued.value or "")
            assert won.count(True) == 1, won
            winner = contenders[won.index(True)]
            assert rs.inspect("job").holder == winner.value
            winner.unlock()
