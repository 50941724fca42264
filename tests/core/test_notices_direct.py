"""Sync release notices read by the waiting thread itself, with real redis-server nodes.

A waiting thread polls the subscriber sockets while it sleeps, so a notice wakes the thread
that acts on it, without a hop through the reader thread (two threads, one GIL). The reader
thread reads when nobody waits, opens the connections, and reads for every waiter when the
connections cannot be read without waiting (no hiredis, TLS). These tests say which thread
read a notice, and that the wake-ups are the same whoever read it.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from polling import eventually

from redsync_core import Redsync
from redsync_core._transport import commands
from redsync_core._transport import notices as notices_module
from redsync_core._transport.notices import SyncNotices, _Sub, new_waiter
from redsync_core.testing import RedisServer

#: Waiting threads read for themselves only on plain sockets read with hiredis >= 2.1 (the main
#: suite); with an older hiredis (the floors of the matrix) the reader thread reads for them.
direct_reads = pytest.mark.skipif(
    commands.new_reader(ValueError) is None, reason="hiredis (with notEnoughData) is not installed"
)

LONG_MS = 5_000  # no waiter here wakes at its timeout while a test runs, unless it says so
SHORT_MS = 300  # a wait that must end at its timeout: nothing it may hear comes


def publish(servers: Sequence[RedisServer], channel: str, payload: str) -> None:
    for server in servers:
        client = server.client()
        client.publish(channel, payload)
        client.close()


@pytest.fixture
def rs(redis_nodes: list[RedisServer]) -> Iterator[Redsync]:
    with Redsync([server.url for server in redis_nodes]) as redsync:
        yield redsync


@pytest.fixture
def readers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(thread name, channel) of every notice heard, in order."""
    heard: list[tuple[str, str]] = []
    hear = SyncNotices._hear

    def recording(self: SyncNotices, events: Sequence[tuple[str, int | None, object]]) -> None:
        heard.extend((threading.current_thread().name, channel) for channel, _, _ in events)
        hear(self, events)

    monkeypatch.setattr(SyncNotices, "_hear", recording)
    return heard


class Sleeper:
    """A thread that waits for notices of ``key`` (its first wait subscribes the key)."""

    def __init__(self, rs: Redsync, key: str, name: str) -> None:
        self.notices: SyncNotices = rs._notices
        self.clock = rs._clock
        self.key = key
        self.results: list[bool] = []
        self.thread = threading.Thread(target=self._run, name=name)
        self.subscribed = threading.Event()
        self.go = threading.Event()

    def _run(self) -> None:
        waiter = new_waiter("a-value")
        self.notices.wait(self.key, self.clock(), LONG_MS, None, waiter)  # the confirmation
        self.notices.leave(self.key, waiter, won=False)
        subscribed_ms = self.clock()
        while self.clock() <= subscribed_ms:  # the confirmation is no news to the next wait
            time.sleep(0.001)
        self.subscribed.set()
        self.go.wait(10)
        waiter = new_waiter("a-value")
        self.results.append(self.notices.wait(self.key, self.clock(), LONG_MS, None, waiter))
        self.notices.leave(self.key, waiter, won=True)

    def start(self) -> Sleeper:
        self.thread.start()
        assert self.subscribed.wait(10)
        return self

    def sleep(self) -> None:
        """Let it wait again; return once it polls the subscriber sockets or sleeps."""
        self.go.set()
        assert eventually(self._asleep)

    def _asleep(self) -> bool:
        with self.notices._lock:
            waited = self.notices._keys.get(self.key)
            return waited is not None and bool(waited.asleep)

    def polls(self) -> bool:
        return self.notices._poller == self.thread.ident


def woken_once(sleeper: Sleeper, servers: Sequence[RedisServer]) -> None:
    """Start ``sleeper``, let it poll, wake it with a notice and let its thread end."""
    sleeper.start().sleep()
    assert eventually(sleeper.polls)
    publish(servers[:1], sleeper.key, "first")
    sleeper.thread.join(LONG_MS / 1000)
    assert sleeper.results == [True]


@direct_reads
def test_a_waiting_thread_reads_the_notice_that_wakes_it(
    rs: Redsync, redis_nodes: list[RedisServer], readers: list[tuple[str, str]]
) -> None:
    sleeper = Sleeper(rs, "direct:one", "sleeper").start()
    sleeper.sleep()
    assert eventually(sleeper.polls)  # the reader thread handed the sockets over
    readers.clear()
    publish(redis_nodes[:1], "direct:one", "a-release")
    sleeper.thread.join(LONG_MS / 1000)
    assert sleeper.results == [True]
    assert readers[0] == ("sleeper", "direct:one")


@direct_reads
def test_the_reader_thread_reads_again_once_nobody_waits(
    rs: Redsync, redis_nodes: list[RedisServer], readers: list[tuple[str, str]]
) -> None:
    """A notice that came while nobody waited is read by the reader thread once no thread
    waited for ``HANDBACK_S``: it is no news to a later wait (read only then, it would look new
    and wake that wait for nothing)."""
    woken_once(Sleeper(rs, "direct:back", "sleeper"), redis_nodes)
    readers.clear()
    publish(redis_nodes, "direct:back", "second")  # nobody waits
    assert eventually(lambda: len(readers) == len(redis_nodes))
    assert {name for name, _ in readers} == {"redsync-notices"}
    since = rs._clock() + 1  # the notices came before
    while rs._clock() < since:
        time.sleep(0.001)
    assert not rs._notices.wait("direct:back", since, SHORT_MS, None, new_waiter("a-value"))


@direct_reads
def test_the_thread_that_polls_wakes_the_others(
    rs: Redsync, redis_nodes: list[RedisServer], readers: list[tuple[str, str]]
) -> None:
    first = Sleeper(rs, "direct:first", "first").start()
    first.sleep()
    assert eventually(first.polls)
    second = Sleeper(rs, "direct:second", "second").start()  # subscribes another key
    second.sleep()
    readers.clear()
    publish(redis_nodes[:1], "direct:second", "a-release")
    second.thread.join(LONG_MS / 1000)
    assert second.results == [True]
    assert first.thread.is_alive()  # no news for it
    assert readers[0] == ("first", "direct:second")  # read by the thread that polls
    publish(redis_nodes[:1], "direct:first", "another")
    first.thread.join(LONG_MS / 1000)
    assert first.results == [True]


def test_without_hiredis_the_reader_thread_reads_for_the_waiters(
    rs: Redsync,
    redis_nodes: list[RedisServer],
    readers: list[tuple[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """redis-py waits for the rest of a reply that began to arrive: no waiting thread reads
    a connection read through it."""
    monkeypatch.setattr(notices_module, "new_reader", lambda reply_error: None)
    sleeper = Sleeper(rs, "direct:redis-py", "sleeper").start()
    sleeper.sleep()
    readers.clear()
    publish(redis_nodes[:1], "direct:redis-py", "a-release")
    sleeper.thread.join(LONG_MS / 1000)
    assert sleeper.results == [True]
    assert readers[0] == ("redsync-notices", "direct:redis-py")


@direct_reads
def test_a_bug_in_a_waiting_threads_round_costs_only_the_direct_path(
    rs: Redsync,
    redis_nodes: list[RedisServer],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    changes = SyncNotices._changes

    def broken(self: SyncNotices, now: float) -> tuple[set[str], set[str]]:
        if threading.current_thread().name != "redsync-notices":
            raise RuntimeError("a bug")
        return changes(self, now)

    sleeper = Sleeper(rs, "direct:bug", "sleeper").start()
    monkeypatch.setattr(SyncNotices, "_changes", broken)
    with caplog.at_level(logging.ERROR, logger="redsync"):
        sleeper.sleep()
        assert eventually(lambda: not sleeper.polls() and rs._notices._poller is not None)
        publish(redis_nodes[:1], "direct:bug", "a-release")
        sleeper.thread.join(LONG_MS / 1000)
    assert sleeper.results == [True]  # woken through the reader thread
    assert "Release notices failed in a waiting thread" in caplog.text


@direct_reads
def test_one_read_takes_every_message_that_arrived(redis_nodes: list[RedisServer]) -> None:
    server = redis_nodes[0]
    with Redsync([server.url]) as rs:
        node: Any = rs._nodes[0]
        sub = _Sub(node.client.connection_pool, False, 0, server.url)
        sub.connect()
        try:
            assert sub.reader is not None  # hiredis, a plain socket
            sub.send(True, "direct:burst")
            sock = sub.conn._sock
            assert eventually(lambda: _peek(sock).count(b"subscribe\r\n") == 2)
            for payload in ("one", "two", "three"):
                publish([server], "direct:burst", payload)
            assert eventually(lambda: _peek(sock).count(b"message\r\n") == 3)
            replies = sub.replies(bytearray(notices_module.READ_SIZE))
        finally:
            sub.drop()
    confirmations = [r for r in replies if r[0] == b"subscribe"]
    messages = [r[2] for r in replies if r[0] == b"message"]
    assert len(confirmations) == 2  # the key's channel and this process's wake channel
    assert messages == [b"one", b"two", b"three"]


def _peek(sock: socket.socket) -> bytes:
    try:
        return bytes(sock.recv(65536, socket.MSG_PEEK))
    except BlockingIOError:
        return b""


@direct_reads
def test_the_next_lock_call_reads_what_came_while_nobody_polled(
    rs: Redsync,
    redis_nodes: list[RedisServer],
    readers: list[tuple[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The last waiting thread to stop leaves the sockets for the next one (no thread switch
    to the reader thread and back); a lock() call reads what came meanwhile before it tries,
    so that it is no news to its wait."""
    monkeypatch.setattr(notices_module, "HANDBACK_S", 5.0)
    woken_once(Sleeper(rs, "direct:handback", "sleeper"), redis_nodes)
    readers.clear()
    publish(redis_nodes, "direct:handback", "second")  # nobody waits
    time.sleep(0.3)
    assert readers == []  # left for the next waiting thread
    rs._settle()  # what a lock() call does before its first attempt
    assert readers == [("MainThread", "direct:handback")] * len(redis_nodes)
    since = rs._clock() + 1
    while rs._clock() < since:
        time.sleep(0.001)
    assert not rs._notices.wait("direct:handback", since, SHORT_MS, None, new_waiter("a-value"))


@direct_reads
def test_a_waiting_thread_that_stops_polling_leaves_the_others_served(
    rs: Redsync, redis_nodes: list[RedisServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader thread takes the sockets over at once for those still waiting."""
    monkeypatch.setattr(notices_module, "HANDBACK_S", 5.0)
    monkeypatch.setattr(notices_module, "LINGER_S", 40.0)  # no round of its own meanwhile
    first = Sleeper(rs, "direct:leaves", "first").start()
    first.sleep()
    assert eventually(first.polls)
    second = Sleeper(rs, "direct:stays", "second").start()
    second.sleep()
    publish(redis_nodes[:1], "direct:leaves", "a-release")
    first.thread.join(LONG_MS / 1000)
    assert first.results == [True]
    started = time.monotonic()
    publish(redis_nodes[:1], "direct:stays", "another")
    second.thread.join(LONG_MS / 1000)
    assert second.results == [True]
    assert time.monotonic() - started < 2.0  # read at once, not at its 5 s timeout
