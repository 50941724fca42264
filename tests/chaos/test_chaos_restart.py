"""Node restarts without persistence: Redlock's known hole, and the two ways to close it.

The scenario is built deterministically on 5 nodes (quorum 3): a foreign key occupies nodes 3
and 4 for a moment, so holder A gets exactly nodes 0, 1 and 2. Once the foreign keys are gone,
node 0 loses A's key and a second client B tries nodes 0, 3 and 4.

- node 0 restarted empty at once: B gets a quorum while A's validity is still running (the
  hole, Kleppmann's counter-example; this test documents it, it does not hide it);
- node 0 kept down longer than the expiry before it restarts empty (antirez's delayed
  restart): B cannot take the lock until A's validity is over;
- node 0 running with ``appendonly yes`` + ``appendfsync always``: after a SIGKILL and restart
  the key is still there and B is refused.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from chaos_harness import now, restart_delay, restart_later

from redsync_core import LockTaken, Redsync
from redsync_core.testing import RedisServer

pytestmark = [pytest.mark.chaos]

NAME = "orders:42"


def hold_exactly_nodes_0_1_2(nodes: list[RedisServer], rs: Redsync, expiry: float) -> Any:
    """Lock NAME so that only nodes 0, 1, 2 hold A's value; return A's mutex."""
    for node in nodes[3:]:
        client = node.client()
        try:
            client.set(NAME, "someone-else", px=300)
        finally:
            client.close()
    a = rs.new_mutex(NAME, expiry=expiry, tries=1)
    a.lock()
    time.sleep(0.4)  # the foreign keys on nodes 3 and 4 expire
    for node in nodes[3:]:
        client = node.client()
        try:
            assert client.exists(NAME) == 0
        finally:
            client.close()
    return a


def test_restart_empty_while_held_lets_a_second_holder_in(redis_servers: Any) -> None:
    """The documented hole: do not restart a node empty while locks it voted for are valid."""
    nodes = redis_servers(5)
    with Redsync([n.url for n in nodes]) as rs:
        a = hold_exactly_nodes_0_1_2(nodes, rs, expiry=10.0)
        nodes[0].restart()  # empty, at once: A's vote on node 0 is forgotten
        # tries=3: the first attempt may find the connection to node 0 closed by the restart.
        b = rs.new_mutex(NAME, tries=3, retry_delay=0.01)
        b.lock()  # expected the known hole: B builds a quorum from nodes 0, 3, 4
        assert a.remaining > 5.0, "A still believes it holds the lock"
        assert a.held
        assert b.held  # two holders at once: what persistence or delayed restarts prevent
        b.unlock()
        a.unlock()


def test_delayed_restart_keeps_the_second_holder_out_until_the_validity_ends(
    redis_servers: Any,
) -> None:
    """B contends all along; node 0 comes back empty when the restart policy says so.

    As soon as node 0 is back, nodes 0, 3 and 4 make a quorum for B: only the restart delay
    keeps B out while A's validity runs (restarting at once lets B in, as the test above
    shows). Once A's keys expire, B gets in with or without node 0.
    """
    nodes = redis_servers(5)
    expiry = 1.5
    with Redsync([n.url for n in nodes]) as rs:
        a = hold_exactly_nodes_0_1_2(nodes, rs, expiry=expiry)
        a_until = now() + a.remaining
        nodes[0].kill()
        restarter, restarted = restart_later(nodes[0], expiry)
        b = rs.new_mutex(NAME, tries=1)
        acquired_at = None
        give_up = now() + restart_delay(expiry) + 10.0
        try:
            while now() < give_up:
                if b.try_lock():
                    acquired_at = now()
                    break
                time.sleep(0.02)
        finally:
            restarter.join(timeout=30)
        assert restarted, "node 0 was never restarted"
        assert acquired_at is not None, "B never got the lock once node 0 was back (no progress)"
        assert acquired_at >= a_until, (
            f"SAFETY VIOLATION: B acquired {a_until - acquired_at:.3f} s before A's validity ended"
        )
        assert b.unlock()


def test_fsync_persistence_keeps_the_key_through_a_crash(redis_servers: Any) -> None:
    durable = redis_servers(1, extra_args=["--appendonly", "yes", "--appendfsync", "always"])[0]
    others = redis_servers(4)
    nodes = [durable, *others]
    with Redsync([n.url for n in nodes]) as rs:
        a = hold_exactly_nodes_0_1_2(nodes, rs, expiry=10.0)
        durable.restart()  # SIGKILL, then start on the same data directory: the AOF is replayed
        client = durable.client()
        try:
            assert client.get(NAME) == a.value.encode()
        finally:
            client.close()
        b = rs.new_mutex(NAME, tries=3, retry_delay=0.01)
        with pytest.raises(LockTaken):
            b.lock()
        assert a.unlock()
