"""How the sync transport keeps its connections: restarts, paused nodes, late replies."""

from __future__ import annotations

import time

from redsync_core import Redsync
from redsync_core.testing import RedisServer


def test_a_restarted_node_is_reconnected_without_losing_a_vote(
    redis_servers: object,
) -> None:
    (server,) = redis_servers(1)  # type: ignore[operator]
    assert isinstance(server, RedisServer)
    with Redsync([server.url], tries=1) as rs:
        mutex = rs.new_mutex("after-restart")
        assert mutex.try_lock()
        assert mutex.unlock()
        server.restart()  # the idle connection is now closed by the server
        assert mutex.try_lock()  # one node, one try: a stale connection would fail it
        assert mutex.unlock()


def test_a_paused_node_costs_one_deadline_then_fails_fast_until_it_answers(
    redis_nodes: list[RedisServer],
) -> None:
    with Redsync([s.url for s in redis_nodes], expiry=60.0, tries=1) as rs:  # 3 s deadline
        warm = rs.new_mutex("warm")
        assert warm.try_lock()  # connections are open
        assert warm.unlock()
        redis_nodes[0].pause()
        try:
            started = time.monotonic()
            first = rs.new_mutex("paused-1")
            assert first.try_lock()  # two of three answer
            assert time.monotonic() - started < 5.5  # one 3 s deadline; two would be 6 s
            started = time.monotonic()
            second = rs.new_mutex("paused-2")
            assert second.try_lock()
            assert second.unlock()
            # The paused node still owes a reply, so it is failed at once: no deadline spent
            # (a lock and an unlock would otherwise wait 6 s; one deadline is 3 s).
            assert time.monotonic() - started < 2.5
        finally:
            redis_nodes[0].resume()
        # Once it answers again, its late replies are dropped and it votes again.
        time.sleep(0.05)
        third = rs.new_mutex("paused-3")
        assert third.try_lock()
        assert rs.inspect("paused-3").nodes[0].holder == third.value
        assert third.unlock()
        assert first.unlock()
