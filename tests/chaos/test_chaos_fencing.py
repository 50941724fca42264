"""Fenced locks under contention and pauses, with a referee that refuses old tokens.

The referee is a separate redis-server playing the protected resource: a write carries the
writer's token and is refused when the referee has already taken a larger one. Checked:

- contention soak: worker processes (sync and asyncio) take the same fenced lock over and over
  and write twice while holding it, while a lock node is paused and resumed; a write by a
  holder whose validity was still left after the referee answered is never refused (zero
  rejections of a live holder), and the tokens the referee took only ever grow;
- a holder is frozen (SIGSTOP) past its expiry; another holder takes the lock and writes; when
  the frozen one wakes, its write with the old token is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from typing import Any

import pytest
from chaos_harness import pause_process, resume_process

from redsync_core import AsyncRedsync, LockNotAcquired, Redsync
from redsync_core.testing import RedisServer

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

NAME = "chaos:fenced"
_CONTEXT = multiprocessing.get_context("fork")

# The referee's write: accept a token not lower than the largest taken so far.
REFEREE = """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local token = tonumber(ARGV[1])
if token < last then return 0 end
redis.call('SET', KEYS[1], token)
redis.call('RPUSH', KEYS[2], token)
return 1
"""


def referee_write(client: Any, token: int) -> bool:
    return bool(client.eval(REFEREE, 2, "resource:fence", "resource:log", token))


def _sync_worker(urls: list[str], referee_url: str, until: float, out: Any) -> None:
    import redis

    stats = {"writes": 0, "live_rejected": 0, "stale_rejected": 0, "tokens": []}
    referee = redis.Redis.from_url(referee_url)
    with Redsync(urls) as rs:
        while time.monotonic() < until:
            m = rs.new_mutex(NAME, fencing=True, expiry=0.5, tries=None, retry_delay=0.01)
            try:
                m.lock(timeout=max(0.05, until - time.monotonic()))
            except LockNotAcquired:  # timed out, or nodes failing: try again
                continue
            stats["tokens"].append(m.token)
            for _ in range(2):
                accepted = referee_write(referee, m.token)
                stats["writes"] += 1
                if not accepted:
                    key = "live_rejected" if m.remaining > 0 else "stale_rejected"
                    stats[key] += 1
                time.sleep(0.002)
            m.unlock()
    referee.close()
    out.put(stats)


def _async_worker(urls: list[str], referee_url: str, until: float, out: Any) -> None:
    import redis

    stats = {"writes": 0, "live_rejected": 0, "stale_rejected": 0, "tokens": []}
    referee = redis.Redis.from_url(referee_url)

    async def main() -> None:
        async with AsyncRedsync(urls) as ars:
            while time.monotonic() < until:
                m = ars.new_mutex(NAME, fencing=True, expiry=0.5, tries=None, retry_delay=0.01)
                try:
                    await m.lock(timeout=max(0.05, until - time.monotonic()))
                except LockNotAcquired:  # timed out, or nodes failing: try again
                    continue
                stats["tokens"].append(m.token)
                for _ in range(2):
                    accepted = referee_write(referee, m.token)  # a blocking call: fine here
                    stats["writes"] += 1
                    if not accepted:
                        key = "live_rejected" if m.remaining > 0 else "stale_rejected"
                        stats[key] += 1
                    await asyncio.sleep(0.002)
                await m.unlock()

    asyncio.run(main())
    referee.close()
    out.put(stats)


def test_contention_soak_never_rejects_a_live_holder(
    redis_servers: Any, redis_nodes: list[RedisServer]
) -> None:
    (referee_server,) = redis_servers(1)
    urls = [s.url for s in redis_nodes]
    out = _CONTEXT.Queue()
    until = time.monotonic() + 4.0
    procs = [
        _CONTEXT.Process(target=target, args=(urls, referee_server.url, until, out))
        for target in (_sync_worker, _sync_worker, _async_worker, _async_worker)
    ]
    for p in procs:
        p.start()
    try:
        time.sleep(1.0)
        redis_nodes[0].pause()  # one node stops answering for a while: a quorum remains
        time.sleep(1.0)
        redis_nodes[0].resume()
        results = [out.get(timeout=30) for _ in procs]
    finally:
        redis_nodes[0].resume()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
    with referee_server.client() as referee:
        taken = [int(t) for t in referee.lrange("resource:log", 0, -1)]
    tokens = [t for r in results for t in r["tokens"]]
    assert sum(r["writes"] for r in results) > 40  # the soak did contend
    assert len(tokens) == len(set(tokens))  # every holder had its own token
    assert sum(r["live_rejected"] for r in results) == 0
    assert taken == sorted(taken)  # the referee's tokens only grew
    assert len(taken) == sum(r["writes"] for r in results) - sum(
        r["stale_rejected"] for r in results
    )


def _frozen_holder(urls: list[str], referee_url: str, ready: Any, out: Any) -> None:
    import redis

    referee = redis.Redis.from_url(referee_url)
    with Redsync(urls) as rs:
        m = rs.new_mutex(NAME, fencing=True, expiry=0.3)
        m.lock()
        first = referee_write(referee, m.token)
        ready.set()  # the test freezes this process here, past the expiry
        time.sleep(0.05)
        second = referee_write(referee, m.token)  # after SIGCONT: a stale write
        out.put((m.token, first, second, m.remaining))
    referee.close()


def test_a_holder_woken_after_sigstop_has_its_write_refused(
    redis_servers: Any, redis_nodes: list[RedisServer]
) -> None:
    (referee_server,) = redis_servers(1)
    urls = [s.url for s in redis_nodes]
    ready, out = _CONTEXT.Event(), _CONTEXT.Queue()
    holder = _CONTEXT.Process(target=_frozen_holder, args=(urls, referee_server.url, ready, out))
    holder.start()
    try:
        assert ready.wait(10)
        assert holder.pid is not None
        pause_process(holder.pid)
        with Redsync(urls) as rs, referee_server.client() as referee:
            m = rs.new_mutex(NAME, fencing=True, expiry=5, tries=None, retry_delay=0.02)
            m.lock(timeout=5)  # free once the frozen holder's key expired
            assert referee_write(referee, m.token)
            resume_process(holder.pid)
            old_token, first, second, remaining = out.get(timeout=10)
            m.unlock()
            last = int(referee.get("resource:fence"))
    finally:
        if holder.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                resume_process(holder.pid)
        holder.join(timeout=10)
    assert first
    assert m.token is not None
    assert m.token > old_token
    assert not second  # the stale write is refused
    assert remaining == 0  # and the woken holder's own clock says its lease is over
    assert last == m.token
