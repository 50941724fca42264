"""The S3 floor line (``limit-handoff``) runs our hand-off: queued, then woken by a release."""

from __future__ import annotations

import threading

from benchmarks.contenders import LimitHandoff
from redsync_core._transport.scripts import ACQUIRE, RELEASE
from redsync_core.testing import RedisServer


def test_a_queued_waiter_is_woken_by_the_release(redis_nodes: list[RedisServer]) -> None:
    urls = [node.url for node in redis_nodes]
    holder = LimitHandoff(urls, "bench:handoff", 10.0)
    waiter = LimitHandoff(urls, "bench:handoff", 10.0)
    waiter.tries, waiter.delay_ms = 2, (60_000, 60_001)  # no second try within the test
    try:
        assert (holder.acquire_sha, holder.release_sha) == (ACQUIRE.sha, RELEASE.sha)
        assert holder.lock()
        got: list[bool] = []
        thread = threading.Thread(target=lambda: got.append(waiter.lock()), daemon=True)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # it waits while the key is held
        assert not got
        holder.unlock()
        thread.join(20)  # woken by the notice, or it sleeps 60 s and this fails
        assert got == [True]
        assert not holder.acquire()  # the waiter holds it now
    finally:
        waiter.unlock()
        holder.close()
        waiter.close()
