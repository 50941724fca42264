"""No partial acquisition is left behind: after a failed attempt the key is released wherever
our value may be.

Another holder's value sits on some of five real redis-server nodes, chosen by Hypothesis.
When it sits on a quorum (3 or more), our attempt fails after the free nodes said yes; those
nodes must not keep our value (it would block everyone else until its TTL ran out), the other
holder's keys must stay untouched (the release is a compare-and-delete), and the release must
have been sent to every node that said yes (a node that answered "held by another value" cannot
hold ours and is skipped). When the other holder has fewer than a quorum, the lock is ours on
exactly the free nodes. A first attempt with a fresh value is a plain SET NX PX (and PTTL); the
later attempts and the releases are scripts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from redsync_core import AsyncRedsync, LockTaken, Redsync
from redsync_core.testing import RedisServer

NAME = "orders:42"
FOREIGN = b"another-holder"
EXAMPLES = settings(
    derandomize=True,
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HOLDERS = st.sets(st.integers(0, 4))  # the nodes where another holder has the key


def _prepare(nodes: list[RedisServer], holders: set[int]) -> None:
    """Empty every node, let another holder in on ``holders``, and reset the command counters."""
    for i, node in enumerate(nodes):
        client = node.client()
        try:
            client.flushall()
            if i in holders:
                client.set(NAME, FOREIGN, px=60_000)
            client.config_resetstat()
        finally:
            client.close()


def _ran(stat: dict[str, Any]) -> int:
    # An EVALSHA answered NOSCRIPT (the first call on a node) counts as a failed call.
    return int(stat.get("calls", 0)) - int(stat.get("failed_calls", 0))


def _state(nodes: list[RedisServer]) -> tuple[list[bytes | None], list[int], list[int]]:
    """Return what each node stores under NAME, and how many scripts and SETs (plain or run by
    a script: Redis counts both) it ran since _prepare."""
    values, scripts, sets = [], [], []
    for node in nodes:
        client = node.client()
        try:
            values.append(client.get(NAME))
            stats = client.info("commandstats")
            scripts.append(sum(_ran(stats.get(f"cmdstat_{c}", {})) for c in ("eval", "evalsha")))
            sets.append(_ran(stats.get("cmdstat_set", {})))
        finally:
            client.close()
    return values, scripts, sets


def _check(nodes: list[RedisServer], holders: set[int], value: str | None, failed: bool) -> None:
    values, scripts, sets = _state(nodes)
    if not failed:
        assert len(holders) < 3
        assert value is not None
        assert values == [FOREIGN if i in holders else value.encode() for i in range(5)]
        return
    assert len(holders) >= 3, "the lock was refused while a quorum of nodes was free"
    # The nodes that said yes no longer hold our value; the other holder's keys are untouched.
    assert values == [FOREIGN if i in holders else None for i in range(5)], (
        "a failed attempt left our value behind"
    )
    # Every node was asked (one SET NX PX, and no acquire script: a plain one); the release
    # script went to the nodes that said yes, not to those held by another value (they
    # answered TAKEN: they cannot hold ours).
    assert sets == [1] * 5, f"plain acquisitions per node: {sets}"
    expected = [0 if i in holders else 1 for i in range(5)]
    assert scripts == expected, f"scripts run per node: {scripts}"


@EXAMPLES
@given(holders=HOLDERS)
@example(holders={2, 3, 4})  # a failure: nodes 0 and 1 said yes
@example(holders={0, 1, 2, 3, 4})
@example(holders=set())
def test_a_failed_attempt_leaves_nothing_behind(
    redis_nodes5: list[RedisServer], holders: set[int]
) -> None:
    _prepare(redis_nodes5, holders)
    with Redsync([n.url for n in redis_nodes5], tries=1) as rs:
        mutex = rs.new_mutex(NAME)
        failed = False
        try:
            mutex.lock()
        except LockTaken:
            failed = True
        _check(redis_nodes5, holders, mutex.value, failed)
        if not failed:
            assert mutex.unlock()


@EXAMPLES
@given(holders=HOLDERS)
@example(holders={2, 3, 4})  # a failure: nodes 0 and 1 said yes
@example(holders={0, 1, 2, 3, 4})
@example(holders=set())
def test_asyncio_a_failed_attempt_leaves_nothing_behind(
    redis_nodes5: list[RedisServer], holders: set[int]
) -> None:
    _prepare(redis_nodes5, holders)

    async def main() -> tuple[Any, bool]:
        async with AsyncRedsync([n.url for n in redis_nodes5], tries=1) as ars:
            mutex = ars.new_mutex(NAME)
            try:
                await mutex.lock()
            except LockTaken:
                return mutex, True
            _check(redis_nodes5, holders, mutex.value, False)
            assert await mutex.unlock()
            return mutex, False

    mutex, failed = asyncio.run(main())
    if failed:
        _check(redis_nodes5, holders, mutex.value, True)


@pytest.mark.parametrize("tries", [2, 4])
def test_every_failed_attempt_is_released_before_the_next(
    redis_nodes5: list[RedisServer], tries: int
) -> None:
    """With retries, each failed attempt is cleaned up before the next: one release script per
    attempt on the nodes that said yes, none on those held by another value (they cannot hold
    ours); every node is asked once per attempt: a plain SET NX PX first (a fresh value), then
    the acquire script (a lost reply may have left our value there: the script re-arms it)."""
    _prepare(redis_nodes5, {2, 3, 4})
    urls = [n.url for n in redis_nodes5]
    # Without wake-ups every attempt is a scheduled try (a wake-up may add an early attempt).
    options = {"tries": tries, "retry_delay": 0.01, "wake_on_release": False}
    with Redsync(urls, **options) as rs, pytest.raises(LockTaken) as caught:
        rs.new_mutex(NAME).lock()
    assert caught.value.attempts == tries
    values, scripts, sets = _state(redis_nodes5)
    assert values == [None, None, FOREIGN, FOREIGN, FOREIGN]
    assert sets == [tries] * 5  # one per attempt: plain, then in the script
    assert scripts == [2 * tries - 1] * 2 + [tries - 1] * 3
