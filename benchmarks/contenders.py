"""One small adapter per contender: connect, make one acquire attempt, release, close.

Standard library only at module level: this module is imported by ``runner.py`` inside peers'
virtualenvs, where ``redsync_core`` is absent. Each adapter imports its library in its
constructor, so a missing library fails that contender only.

Rules that keep the comparison fair:
- ``acquire()`` makes exactly one attempt and returns whether it got the lock, without sleeping
  (for peers whose "one try" still sleeps after a failure, the smallest delay they accept).
- The lock object is built once per measurement chunk and reused, as every library allows.
- Redis clients get a 1 s socket timeout where the library lets us set one.
- TTLs are passed in each library's own unit (ms, float s, or whole seconds).
"""

from __future__ import annotations

import base64
import importlib
import os
import random
import select
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from benchmarks.resp import RawConnection, RespError, encode, parse_url

__all__ = ["CONTENDERS", "RELEASE_SCRIPT", "AsyncContender", "Contender", "Spec", "SyncContender"]

SOCKET_TIMEOUT_S = 1.0

# The compare-and-delete script of redsync_core (redsync_core/_transport/scripts.py, RELEASE),
# copied verbatim so that the limit lines run the very same server-side work (same SHA1).
RELEASE_SCRIPT = """-- compare-and-delete, then a release notice that wakes the oldest queued waiter
-- KEYS[1]: the lock key; KEYS[2..3] (optional): its waiter queue and turn; ARGV[1]: our value
-- ARGV[2]: notice by 'p' PUBLISH, 's' SPUBLISH or '' none; ARGV[3]: the notice's payload
-- ARGV[4..5] (with KEYS[2]): '1' to wake the oldest queued waiter ('0': only when nobody is
--   queued), the woken one's turn in ms
-- ARGV[6..9] (optional): 'queue' and a waiter to queue again after the pop (its member, rank,
--   the queue's TTL in ms), or 'leave' and the member of the holder's lock() call, taken off
--   the queue first (it may still be queued where the key was not handed over to it)
-- returns 1: deleted our value; 0: no such key; <0: another value, -2 - PTTL
local function publish(mode, channel, payload)
  if mode == 'p' then return redis.pcall('PUBLISH', channel, payload) end
  if mode == 's' then return redis.pcall('SPUBLISH', channel, payload) end
  return 0
end
local function notice(key, queue, turn, mode, payload, wake, turn_ms, member, rank, ttl)
  if mode == '' then return end
  local channel = key
  local woken = payload
  if queue then
    if wake == '1' then
      for _ = 1, 3 do
        local popped = redis.pcall('ZPOPMIN', queue)
        if type(popped) ~= 'table' or #popped == 0 then break end
        local id, ms, value = string.match(popped[1], '^(%S+) (%d+) (.*)$')
        local inbox = string.match(popped[1], '^[^.]*')
        channel = key .. ':wake:' .. inbox .. string.sub(queue, #key + 6)
        if not id then
          redis.pcall('SET', turn, popped[1], 'PX', turn_ms)
          woken = payload .. ' ' .. popped[1]
          break
        end
        redis.call('SET', key, value, 'PX', ms)
        local proof = '+' .. string.sub(redis.sha1hex(value), 1, 12)
        local heard = publish(mode, channel, payload .. ' ' .. id .. ' ' .. proof)
        if type(heard) == 'number' and heard > 0 then
          mode = ''  -- handed over: no other notice
          break
        end
        redis.call('DEL', key)
        channel = key
      end
    else
      local waiting = redis.pcall('ZCARD', queue)
      if type(waiting) == 'number' and waiting > 0 then mode = '' end
    end
    if member then
      redis.pcall('ZADD', queue, 'NX', rank, member)
      redis.pcall('PEXPIRE', queue, ttl)
    end
  end
  publish(mode, channel, woken)
end
if ARGV[6] == 'leave' then redis.pcall('ZREM', KEYS[2], ARGV[7]) end
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('DEL', KEYS[1])
  local again = ARGV[6] == 'queue'
  notice(KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[3], ARGV[4], ARGV[5], again and ARGV[7],
    ARGV[8], ARGV[9])
  return 1
end
if not v then return 0 end
return -2 - redis.call('PTTL', KEYS[1])
"""


def _value() -> bytes:
    """A lock value like ours: 16 random bytes, base64."""
    return base64.b64encode(os.urandom(16))


class Contender:
    """What every adapter shares: its name and the lock it works on."""

    def __init__(self, urls: list[str], key: str, ttl_s: float) -> None:
        self.urls = urls
        self.key = key
        self.ttl_s = ttl_s
        self.ttl_ms = round(ttl_s * 1000)
        self.quorum = len(urls) // 2 + 1


class SyncContender(Contender):
    def acquire(self) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def lock(self) -> bool:
        """S3: take the lock as a user would, with the library's default waiting options;
        False when the library gave up (the caller then asks again)."""
        raise NotImplementedError

    def unlock(self) -> None:
        """S3: release what ``lock()`` took."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections (default: nothing to do)."""


class AsyncContender(Contender):
    """Its constructor imports the library; ``open()`` connects inside the running loop."""

    async def open(self) -> None:
        """Connect inside the running loop (default: nothing to do)."""

    async def acquire(self) -> bool:
        raise NotImplementedError

    async def release(self) -> None:
        raise NotImplementedError

    async def lock(self) -> bool:
        """S3: as ``SyncContender.lock``."""
        raise NotImplementedError

    async def unlock(self) -> None:
        """S3: release what ``lock()`` took."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release connections (default: nothing to do)."""


# -- the floor ---------------------------------------------------------------------------------


class Limit(SyncContender):
    """SET NX PX to all N, then EVALSHA compare-and-delete to all N, on raw sockets.

    Every request is written before any reply is read, in one thread: the cheapest way any
    client can do a Redlock acquire+release. The quorum is counted as Redlock requires.
    """

    pipelined: ClassVar[bool] = True

    def __init__(self, urls: list[str], key: str, ttl_s: float) -> None:
        super().__init__(urls, key, ttl_s)
        self.conns = [RawConnection(url, SOCKET_TIMEOUT_S) for url in urls]
        sha = b""
        for conn in self.conns:
            reply = conn.call("SCRIPT", "LOAD", RELEASE_SCRIPT)
            if not isinstance(reply, bytes):
                raise RuntimeError(f"SCRIPT LOAD failed: {reply!r}")
            sha = reply
        self.sha = sha
        self.value = b""

    def _fan_out(self, payload: bytes) -> list[Any]:
        if self.pipelined:
            for conn in self.conns:
                conn.send(payload)
            return [conn.read() for conn in self.conns]
        replies = []
        for conn in self.conns:
            conn.send(payload)
            replies.append(conn.read())
        return replies

    def acquire(self) -> bool:
        self.value = _value()
        payload = encode("SET", self.key, self.value, "NX", "PX", self.ttl_ms)
        ok = sum(1 for reply in self._fan_out(payload) if reply == b"OK")
        if ok >= self.quorum:
            return True
        self.release()
        return False

    def release(self) -> None:
        queue, turn = (f"{self.key}:{kind}{{{self.key}}}" for kind in ("wait", "turn"))
        payload = encode(  # waiter queue and turn as ours (no waiter here: an empty pop)
            "EVALSHA", self.sha, 3, self.key, queue, turn, self.value, "p", "0123456789ab", 1, 20
        )
        for reply in self._fan_out(payload):
            if isinstance(reply, RespError):
                raise reply

    def close(self) -> None:
        for conn in self.conns:
            conn.close()


class LimitSequential(Limit):
    """The same commands as ``limit``, one server after another (send, read, next server)."""

    pipelined = False


class LimitHandoff(Limit):
    """S3 only: our waiter-queue hand-over (our ACQUIRE and RELEASE scripts, our key, queue,
    turn and wake-channel names, our default tries and delays) on raw sockets in one thread.

    A ``lock()`` that finds the key held is queued by the ACQUIRE script; it then blocks in
    ``select`` on its own subscriber sockets (one per node, subscribed once) until a quorum of
    nodes handed the key over to it (or a notice names it, or the retry delay passes: then it
    tries again). What ``redsync_core`` adds on top of this line is the cost of the library
    (drivers, flows, notices, threads), not of the protocol.
    """

    def __init__(self, urls: list[str], key: str, ttl_s: float) -> None:
        super().__init__(urls, key, ttl_s)
        scripts = importlib.import_module("redsync_core._transport.scripts")
        queues = importlib.import_module("redsync_core._algorithm.queues")
        timing = importlib.import_module("redsync_core._algorithm.timing")
        options = importlib.import_module("redsync_core._options")
        self.tries = options.DEFAULT_TRIES
        self.delay_ms = timing.RANDOM_DELAY_RANGE_MS
        self.queue, self.turn = queues.queue_keys(key)
        self.member_of = queues.queue_member
        self.proof_of = queues.handover_proof
        self.acquire_sha = scripts.ACQUIRE.sha
        self.release_sha = scripts.RELEASE.sha
        for conn in self.conns:
            for script in (scripts.ACQUIRE, scripts.RELEASE):
                reply = conn.call("SCRIPT", "LOAD", script.source)
                if reply != script.sha.encode():
                    raise RuntimeError(f"SCRIPT LOAD failed: {reply!r}")
        self.inbox = os.urandom(6).hex()
        self.calls = 0
        self.waiter = self.member = self.handed = ""
        channel = queues.wake_channel(key, self.inbox)
        self.subs = [RawConnection(url, SOCKET_TIMEOUT_S) for url in urls]
        for sub in self.subs:
            if sub.call("SUBSCRIBE", channel) is None:
                raise RuntimeError(f"SUBSCRIBE {channel} failed")
        self.rng = random.Random()

    def lock(self) -> bool:
        self.value = _value()
        self.calls += 1
        self.waiter = f"{self.inbox}.{self.calls}"
        self.member = self.member_of(self.waiter, self.ttl_ms, self.value.decode())
        self.handed = f"{self.waiter} {self.proof_of(self.value.decode())}"
        rank = time.time_ns() // 1_000_000
        granted: set[int] | None = set()  # None once a clean-up may have voided a hand-over
        for attempt in range(self.tries):
            first = "0" if attempt == 0 else "1"
            payload = encode(
                "EVALSHA", self.acquire_sha, 3, self.key, self.queue, self.turn, self.value,
                self.ttl_ms, self.member, rank, first,
            )  # fmt: skip
            replies = self._fan_out(payload)
            if sum(1 for reply in replies if reply == 1) >= self.quorum:
                return True
            held = [conn for conn, reply in zip(self.conns, replies, strict=True) if reply == 1]
            for conn in held:  # give back what we took, staying queued (as ours does)
                conn.send(self._release("0", "queue", self.member, rank, self.ttl_ms))
                granted = None
            for conn in held:
                conn.read()
            if attempt + 1 < self.tries and self._wait(
                self.rng.randrange(*self.delay_ms) / 1000, granted
            ):
                return True
        return False

    def unlock(self) -> None:
        self._fan_out(self._release("1", "leave", self.member))

    def _release(self, wake: str, *then: str | int) -> bytes:
        return encode(
            "EVALSHA", self.release_sha, 3, self.key, self.queue, self.turn, self.value, "p",
            "0123456789ab", wake, 20, *then,
        )  # fmt: skip

    def _wait(self, delay_s: float, granted: set[int] | None) -> bool:
        """Block until a quorum handed the key over (True), or a notice names this waiter or
        ``delay_s`` passes (False)."""
        end = time.monotonic() + delay_s
        by_sock = {sub.sock: i for i, sub in enumerate(self.subs)}
        while (left := end - time.monotonic()) > 0:
            readable, _, _ = select.select(list(by_sock), [], [], left)
            for sock in readable:
                node = by_sock[sock]
                message = self.subs[node].read()  # [.., .., "<digest> <id>[ +<proof>]"]
                payload = message[-1] if isinstance(message, list) else None
                if not isinstance(payload, bytes):
                    continue
                _, _, named = payload.decode().partition(" ")
                if named == self.handed and granted is not None:
                    granted.add(node)
                    if len(granted) >= self.quorum:
                        return True
                elif named == self.waiter:
                    return False
        return False

    def close(self) -> None:
        super().close()
        for sub in self.subs:
            sub.close()


class NoLock(SyncContender):
    """Takes no lock at all: the S2 checker must flag it (a self-test of the referee)."""

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


# -- ours --------------------------------------------------------------------------------------


class Ours(SyncContender):
    """``redsync_core.Redsync`` / ``Mutex`` with ``tries=1`` (``try_lock`` / ``unlock``)."""

    def __init__(self, urls: list[str], key: str, ttl_s: float) -> None:
        super().__init__(urls, key, ttl_s)
        core = importlib.import_module("redsync_core")
        self.rs = core.Redsync(urls, client_options={"socket_timeout": SOCKET_TIMEOUT_S})
        self.mutex = self.rs.new_mutex(key, expiry=ttl_s, tries=1)
        self.waiting = self.rs.new_mutex(key, expiry=ttl_s)  # S3: every other option default
        self.gave_up = core.LockNotAcquired

    def acquire(self) -> bool:
        return bool(self.mutex.try_lock())

    def release(self) -> None:
        self.mutex.unlock()

    def lock(self) -> bool:
        try:
            self.waiting.lock()
        except self.gave_up:
            return False
        return True

    def unlock(self) -> None:
        self.waiting.unlock()

    def close(self) -> None:
        self.rs.close()


class OursSemaphore(Ours):
    """``redsync_core`` ``Semaphore`` with ``tries=1`` (``try_acquire`` / ``release``).

    Limit 1, so that S2 still checks mutual exclusion; with free permits the acquire script
    stops at the first free key whatever the limit, so S1 measures the same work for any limit.
    """

    def __init__(self, urls: list[str], key: str, ttl_s: float) -> None:
        super().__init__(urls, key, ttl_s)
        self.mutex = self.rs.new_semaphore(key, 1, expiry=ttl_s, tries=1)


class OursAsync(AsyncContender):
    """``redsync_core.AsyncRedsync`` / ``AsyncMutex`` with ``tries=1``."""

    def __init__(self, urls: list[str], key: str, ttl_s: float) -> None:
        super().__init__(urls, key, ttl_s)
        self.core = importlib.import_module("redsync_core")

    async def open(self) -> None:
        self.rs = self.core.AsyncRedsync(
            self.urls, client_options={"socket_timeout": SOCKET_TIMEOUT_S}
        )
        self.mutex = self.rs.new_mutex(self.key, expiry=self.ttl_s, tries=1)
        self.waiting = self.rs.new_mutex(self.key, expiry=self.ttl_s)

    async def acquire(self) -> bool:
        return bool(await self.mutex.try_lock())

    async def release(self) -> None:
        await self.mutex.unlock()

    async def lock(self) -> bool:
        try:
            await self.waiting.lock()
        except self.core.LockNotAcquired:
            return False
        return True

    async def unlock(self) -> None:
        await self.waiting.unlock()

    async def close(self) -> None:
        await self.rs.close()


class OursFenced(Ours):
    """``Ours`` with ``fencing=True``: every acquisition also draws a fencing token."""

    def __init__(self, urls: list[str], key: str, ttl_s: float) -> None:
        super().__init__(urls, key, ttl_s)
        self.mutex = self.rs.new_mutex(key, expiry=ttl_s, tries=1, fencing=True)


class OursFencedAsync(OursAsync):
    """``OursAsync`` with ``fencing=True``."""

    async def open(self) -> None:
        await super().open()
        self.mutex = self.rs.new_mutex(self.key, expiry=self.ttl_s, tries=1, fencing=True)


def _instrument() -> None:
    """Turn on ``redsync_core.otel`` with the OpenTelemetry SDK as a service would run it:
    spans through a batch processor (to an exporter that drops them: no I/O measured),
    metrics aggregated in memory."""
    otel = importlib.import_module("redsync_core.otel")
    sdk_trace = importlib.import_module("opentelemetry.sdk.trace")
    sdk_export = importlib.import_module("opentelemetry.sdk.trace.export")
    sdk_metrics = importlib.import_module("opentelemetry.sdk.metrics")
    sdk_metrics_export = importlib.import_module("opentelemetry.sdk.metrics.export")

    class Drop(sdk_export.SpanExporter):  # type: ignore[misc,name-defined]
        def export(self, spans: Any) -> Any:
            return sdk_export.SpanExportResult.SUCCESS

    tracer_provider = sdk_trace.TracerProvider()
    tracer_provider.add_span_processor(sdk_export.BatchSpanProcessor(Drop()))
    reader = sdk_metrics_export.InMemoryMetricReader()
    meter_provider = sdk_metrics.MeterProvider(metric_readers=[reader])
    otel.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)


class OursHooked(Ours):
    """``Ours`` with one ``redsync_core.hooks`` listener that does nothing: the cost of the
    hook interface itself, without OpenTelemetry."""

    def __init__(self, urls: list[str], key: str, ttl_s: float) -> None:
        hooks = importlib.import_module("redsync_core.hooks")
        hooks.add_listener(hooks.Listener())
        super().__init__(urls, key, ttl_s)


class OursOtel(Ours):
    """``Ours`` with ``redsync_core.otel`` instrumented (SDK, spans and metrics on)."""

    def __init__(self, urls: list[str], key: str, ttl_s: float) -> None:
        _instrument()
        super().__init__(urls, key, ttl_s)


class OursOtelAsync(OursAsync):
    """``OursAsync`` with ``redsync_core.otel`` instrumented."""

    def __init__(self, urls: list[str], key: str, ttl_s: float) -> None:
        _instrument()
        super().__init__(urls, key, ttl_s)


# -- peers -------------------------------------------------------------------------------------


def _redis_clients(urls: list[str]) -> list[Any]:
    redis = importlib.import_module("redis")
    return [redis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT_S) for url in urls]


class RedisPyLock(SyncContender):
    """``redis.lock.Lock`` on one server (not a Redlock)."""

    def __init__(self, urls: list[str], key: str, ttl_s: float) -> None:
        super().__init__(urls, key, ttl_s)
        (self.client,) = _redis_clients(urls)
        self.rlock = self.client.lock(key, timeout=ttl_s)

    def acquire(self) -> bool:
        return bool(self.rlock.acquire(blocking=False))

    def release(self) -> None:
        self.rlock.release()

    def close(self) -> None:
        self.client.close()


class Pottery(SyncContender):
    """``pottery.Redlock`` (a thread pool per call; key prefixed ``redlock:``)."""

    def __init__(self, urls: list[str], key: str, ttl_s: float) -> None:
        super().__init__(urls, key, ttl_s)
        pottery = importlib.import_module("pottery")
        self.clients = _redis_clients(urls)
        self.redlock = pottery.Redlock(key=key, masters=set(self.clients), auto_release_time=ttl_s)

    def acquire(self) -> bool:
        return bool(self.redlock.acquire(blocking=False))

    def release(self) -> None:
        self.redlock.release()

    def lock(self) -> bool:
        return bool(self.redlock.acquire())  # default: blocking, no timeout

    def unlock(self) -> None:
        self.redlock.release()

    def close(self) -> None:
        for client in self.clients:
            client.close()


class PotteryAsync(AsyncContender):
    """``pottery.AIORedlock`` on ``redis.asyncio`` clients."""

    def __init__(self, urls: list[str], key: str, ttl_s: float) -> None:
        super().__init__(urls, key, ttl_s)
        self.pottery = importlib.import_module("pottery")
        self.aioredis = importlib.import_module("redis.asyncio")

    async def open(self) -> None:
        self.clients = [
            self.aioredis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT_S) for url in self.urls
        ]
        self.redlock = self.pottery.AIORedlock(
            key=self.key, masters=set(self.clients), auto_release_time=self.ttl_s
        )

    async def acquire(self) -> bool:
        return bool(await self.redlock.acquire(blocking=False))

    async def release(self) -> None:
        await self.redlock.release()

    async def lock(self) -> bool:
        return bool(await self.redlock.acquire())

    async def unlock(self) -> None:
        await self.redlock.release()

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()


class RedlockNg(SyncContender):
    """``redlock.Redlock`` from redlock-ng (sequential; its own 0.1 s socket timeouts)."""

    def __init__(self, urls: list[str], key: str, ttl_s: float) -> None:
        super().__init__(urls, key, ttl_s)
        redlock = importlib.import_module("redlock")
        self.dlm = redlock.Redlock(urls, retry_count=0)  # 0 retries: exactly one attempt
        self.held: Any = None
        self.waiting = redlock.Redlock(urls)  # S3: its defaults

    def acquire(self) -> bool:
        self.held = self.dlm.acquire(self.key, ttl=self.ttl_ms)
        return self.held is not None

    def release(self) -> None:
        self.dlm.release(self.held)

    def lock(self) -> bool:
        self.held = self.waiting.acquire(self.key, ttl=self.ttl_ms)
        return self.held is not None

    def unlock(self) -> None:
        self.waiting.release(self.held)

    def close(self) -> None:
        for dlm in (self.dlm, self.waiting):
            for client in dlm.client.instances:
                client.close()


class RedlockNgAsync(AsyncContender):
    """``redlock.AsyncRedlock`` from redlock-ng (``asyncio.gather`` over the servers)."""

    def __init__(self, urls: list[str], key: str, ttl_s: float) -> None:
        super().__init__(urls, key, ttl_s)
        self.redlock = importlib.import_module("redlock")

    async def open(self) -> None:
        self.dlm = self.redlock.AsyncRedlock(self.urls, retry_count=0)
        self.waiting = self.redlock.AsyncRedlock(self.urls)
        self.held: Any = None

    async def acquire(self) -> bool:
        self.held = await self.dlm.acquire(self.key, ttl=self.ttl_ms)
        return self.held is not None

    async def release(self) -> None:
        await self.dlm.release(self.held)

    async def lock(self) -> bool:
        self.held = await self.waiting.acquire(self.key, ttl=self.ttl_ms)
        return self.held is not None

    async def unlock(self) -> None:
        await self.waiting.release(self.held)

    async def close(self) -> None:
        for dlm in (self.dlm, self.waiting):
            for client in dlm.client.instances:
                await client.aclose()


class RedlockPy(SyncContender):
    """``redlock.Redlock`` from redlock-py (SPSCommerce; sequential, EVAL by source).

    It silently turns ``retry_count=0`` and ``retry_delay=0`` into its defaults (3 tries, 0.2 s)
    and sleeps after the last failed try too, so one try is ``retry_count=1`` with a 1 µs delay.
    """

    def __init__(self, urls: list[str], key: str, ttl_s: float) -> None:
        super().__init__(urls, key, ttl_s)
        redlock = importlib.import_module("redlock")
        nodes = [
            {"host": host, "port": port, "socket_timeout": SOCKET_TIMEOUT_S}
            for host, port in map(parse_url, urls)
        ]
        self.dlm = redlock.Redlock(nodes, retry_count=1, retry_delay=1e-6)
        self.waiting = redlock.Redlock(nodes)  # S3: its defaults (3 tries, 0.2 s)
        self.held: Any = False

    def acquire(self) -> bool:
        self.held = self.dlm.lock(self.key, self.ttl_ms)
        return self.held is not False

    def release(self) -> None:
        self.dlm.unlock(self.held)

    def lock(self) -> bool:
        self.held = self.waiting.lock(self.key, self.ttl_ms)
        return self.held is not False

    def unlock(self) -> None:
        self.waiting.unlock(self.held)

    def close(self) -> None:
        for dlm in (self.dlm, self.waiting):
            for server in dlm.servers:
                server.close()


class Aioredlock(AsyncContender):
    """``aioredlock.Aioredlock`` (aioredis 1.3, not redis-py); ``retry_count=1`` is one try."""

    def __init__(self, urls: list[str], key: str, ttl_s: float) -> None:
        super().__init__(urls, key, ttl_s)
        self.mod = importlib.import_module("aioredlock")

    async def open(self) -> None:
        nodes = [{"host": host, "port": port} for host, port in map(parse_url, self.urls)]
        self.dlm = self.mod.Aioredlock(nodes, retry_count=1)
        self.waiting = self.mod.Aioredlock(nodes)  # S3: its defaults
        self.held: Any = None

    async def acquire(self) -> bool:
        try:
            self.held = await self.dlm.lock(self.key, lock_timeout=self.ttl_s)
        except self.mod.LockError:
            return False
        return True

    async def release(self) -> None:
        await self.dlm.unlock(self.held)

    async def lock(self) -> bool:
        try:
            self.held = await self.waiting.lock(self.key, lock_timeout=self.ttl_s)
        except self.mod.LockError:
            return False
        return True

    async def unlock(self) -> None:
        await self.waiting.unlock(self.held)

    async def close(self) -> None:
        await self.dlm.destroy()
        await self.waiting.destroy()


class PythonRedisLock(SyncContender):
    """``redis_lock.Lock`` from python-redis-lock (one server; whole-second expiry)."""

    def __init__(self, urls: list[str], key: str, ttl_s: float) -> None:
        super().__init__(urls, key, ttl_s)
        redis_lock = importlib.import_module("redis_lock")
        (self.client,) = _redis_clients(urls)
        self.rlock = redis_lock.Lock(self.client, key, expire=max(1, round(ttl_s)))

    def acquire(self) -> bool:
        return bool(self.rlock.acquire(blocking=False))

    def release(self) -> None:
        self.rlock.release()

    def close(self) -> None:
        self.client.close()


# -- the registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A contender as the harness sees it."""

    name: str
    adapter: type[Contender]
    kind: str  # "ours", "limit", "peer" or "selftest"
    env: str | None = None  # peer virtualenv under .venvs/, None: the benchmark's interpreter
    single_node: bool = False  # not a Redlock: measured at N=1 only
    s3_only: bool = False  # a floor of S3's hand-off: not measured in S1 and S2
    what: str = ""


CONTENDERS: dict[str, Spec] = {
    spec.name: spec
    for spec in (
        Spec("limit", Limit, "limit", what="raw sockets, all N written before any reply is read"),
        Spec("limit-sequential", LimitSequential, "limit", what="raw sockets, one node at a time"),
        Spec(
            "limit-handoff",
            LimitHandoff,
            "limit",
            s3_only=True,
            what="S3: our queue hand-off protocol on raw sockets, one thread",
        ),
        Spec("redsync_core", Ours, "ours", what="Redsync / Mutex (sync)"),
        Spec("redsync_core-async", OursAsync, "ours", what="AsyncRedsync / AsyncMutex"),
        Spec("redsync_core-hooked", OursHooked, "ours", what="Redsync / Mutex, a no-op listener"),
        Spec("redsync_core-otel", OursOtel, "ours", what="Redsync / Mutex, otel.instrument()"),
        Spec(
            "redsync_core-otel-async",
            OursOtelAsync,
            "ours",
            what="AsyncRedsync / AsyncMutex, otel.instrument()",
        ),
        Spec(
            "redsync_core-semaphore",
            OursSemaphore,
            "ours",
            what="Redsync / Semaphore (sync), limit 1",
        ),
        Spec("redsync_core-fenced", OursFenced, "ours", what="Mutex with fencing=True"),
        Spec(
            "redsync_core-fenced-async",
            OursFencedAsync,
            "ours",
            what="AsyncMutex with fencing=True",
        ),
        Spec("redis-py-lock", RedisPyLock, "peer", single_node=True, what="redis.lock.Lock"),
        Spec("pottery", Pottery, "peer", env="pottery", what="pottery.Redlock"),
        Spec("pottery-async", PotteryAsync, "peer", env="pottery", what="pottery.AIORedlock"),
        Spec("redlock-ng", RedlockNg, "peer", env="redlock-ng", what="redlock.Redlock"),
        Spec(
            "redlock-ng-async",
            RedlockNgAsync,
            "peer",
            env="redlock-ng",
            what="redlock.AsyncRedlock",
        ),
        Spec("redlock-py", RedlockPy, "peer", env="redlock-py", what="redlock.Redlock (SPS)"),
        Spec("aioredlock", Aioredlock, "peer", env="aioredlock", what="aioredlock.Aioredlock"),
        Spec(
            "python-redis-lock",
            PythonRedisLock,
            "peer",
            env="python-redis-lock",
            single_node=True,
            what="redis_lock.Lock",
        ),
        Spec("selftest-nolock", NoLock, "selftest", what="takes no lock: S2 must flag it"),
    )
}
