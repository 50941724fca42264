"""The hook interface: every lock event reaches listeners once, sync and asyncio alike.

Each test runs against ``Redsync`` and ``AsyncRedsync`` (the ``api`` fixture) over real
redis-server nodes; ``settle`` awaits what the asyncio API returns and passes sync results on.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from redsync_core import (
    AsyncRedsync,
    LockNotAcquired,
    LockTaken,
    LockTimeout,
    QuorumUnreachable,
    Redsync,
    hooks,
)
from redsync_core import _hooks as hooks_internal
from redsync_core.testing import RedisServer, free_port

FOREIGN = "someone-else"


async def settle(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def eventually(predicate: Any, seconds: float = 10.0) -> bool:
    for _ in range(round(seconds / 0.05)):
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


class Recorder(hooks.Listener):
    """Keeps every event as (kind, event), from any thread."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.lost_seen = threading.Event()

    def lock(self, event: hooks.LockEvent) -> None:
        self.events.append(("lock", event))

    def unlock(self, event: hooks.UnlockEvent) -> None:
        self.events.append(("unlock", event))

    def extend(self, event: hooks.ExtendEvent) -> None:
        self.events.append(("extend", event))

    def lost(self, event: hooks.LostEvent) -> None:
        self.events.append(("lost", event))
        self.lost_seen.set()

    def node_error(self, event: hooks.NodeErrorEvent) -> None:
        self.events.append(("node_error", event))

    def of(self, kind: str) -> list[Any]:
        return [event for k, event in self.events if k == kind]

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events if k != "node_error"]


@pytest.fixture
def recorder() -> Any:
    listener = Recorder()
    hooks.add_listener(listener)
    yield listener
    hooks.remove_listener(listener)


@pytest.fixture(params=["sync", "asyncio"])
def api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make(api: str, urls: list[str], **defaults: Any) -> Redsync | AsyncRedsync:
    kind = Redsync if api == "sync" else AsyncRedsync
    return kind(urls, client_options={"socket_connect_timeout": 0.5}, **defaults)


@pytest.fixture
async def rsx(api: str, redis_nodes: list[RedisServer]) -> AsyncIterator[Any]:
    redsync = make(api, [s.url for s in redis_nodes])
    yield redsync
    await settle(redsync.close())


def occupy(server: RedisServer, key: str) -> None:
    client = server.client()
    try:
        client.set(key, FOREIGN, px=10_000)
    finally:
        client.close()


def refused_url() -> str:
    """A loopback URL where nothing listens: connecting is refused at once."""
    return f"redis://127.0.0.1:{free_port()}/0"


# --- lock and unlock ------------------------------------------------------------------------


async def test_lock_then_unlock_sends_one_event_each(rsx: Any, recorder: Recorder) -> None:
    before = time.time_ns()
    mutex = rsx.new_mutex("hooks:one")
    await settle(mutex.lock())
    assert await settle(mutex.valid())  # valid() is no event
    await asyncio.sleep(0.05)
    assert await settle(mutex.unlock())
    assert recorder.kinds() == ["lock", "unlock"]
    [locked] = recorder.of("lock")
    assert (locked.mutex, locked.name, locked.key) == (mutex, "hooks:one", "hooks:one")
    assert (locked.outcome, locked.attempts, locked.error) == ("acquired", 1, None)
    assert 0 < locked.wait_s < 5
    assert before <= locked.started_ns <= time.time_ns()
    [unlocked] = recorder.of("unlock")
    assert unlocked.released is True
    assert 0.05 <= unlocked.held_s < 5
    assert unlocked.duration_s >= 0


async def test_a_held_lock_is_taken_after_one_attempt(
    rsx: Any, redis_nodes: list[RedisServer], recorder: Recorder
) -> None:
    for server in redis_nodes[:2]:
        occupy(server, "hooks:taken")
    assert not await settle(rsx.new_mutex("hooks:taken").try_lock())
    [event] = recorder.of("lock")
    assert (event.outcome, event.attempts) == ("taken", 1)
    assert isinstance(event.error, LockTaken)
    assert recorder.of("unlock") == []  # nothing was acquired, nothing released


async def test_timeout_counts_every_attempt(
    rsx: Any, redis_nodes: list[RedisServer], recorder: Recorder
) -> None:
    for server in redis_nodes:
        occupy(server, "hooks:timeout")
    mutex = rsx.new_mutex("hooks:timeout", tries=None, retry_delay=0.05)
    with pytest.raises(LockTimeout) as caught:
        await settle(mutex.lock(timeout=0.4))
    [event] = recorder.of("lock")
    assert event.outcome == "timeout"
    assert event.error is caught.value
    assert event.attempts == caught.value.attempts >= 3
    assert 0.3 <= event.wait_s < 5


async def test_no_quorum_either_way_gives_up(
    api: str, redis_nodes: list[RedisServer], recorder: Recorder
) -> None:
    occupy(redis_nodes[0], "hooks:gave-up")  # 1 taken, 1 refused, 1 ok: no quorum either way
    rs = make(api, [redis_nodes[0].url, refused_url(), redis_nodes[1].url])
    try:
        with pytest.raises(LockNotAcquired) as caught:
            await settle(rs.new_mutex("hooks:gave-up", tries=1).lock())
    finally:
        await settle(rs.close())
    assert type(caught.value) is LockNotAcquired
    [event] = recorder.of("lock")
    assert (event.outcome, event.attempts) == ("gave_up", 1)


async def test_unreachable_nodes_send_node_errors_without_passwords(
    api: str, redis_nodes: list[RedisServer], recorder: Recorder
) -> None:
    down = [refused_url().replace("redis://", "redis://user:s3cret@") for _ in range(2)]
    rs = make(api, [redis_nodes[0].url, *down])
    try:
        with pytest.raises(QuorumUnreachable):
            await settle(rs.new_mutex("hooks:down").lock())
    finally:
        await settle(rs.close())
    [event] = recorder.of("lock")
    assert (event.outcome, event.attempts) == ("unreachable", 1)
    errors = recorder.of("node_error")
    # the acquire and the release that follows it both fail on the two refused nodes
    assert sorted(e.node for e in errors) == [1, 1, 2, 2]
    for error in errors:
        assert error.kind == "ConnectionError"
        assert "s3cret" not in error.address
        assert error.address.startswith("redis://127.0.0.1:")


# --- extend and lost ------------------------------------------------------------------------


async def test_manual_extend_ok_and_refused(rsx: Any, recorder: Recorder) -> None:
    mutex = rsx.new_mutex("hooks:extend", expiry=0.3)
    await settle(mutex.lock())
    assert await settle(mutex.extend())
    await asyncio.sleep(0.35)  # the local validity runs out: extend refuses without a round trip
    assert not await settle(mutex.extend())
    extends = recorder.of("extend")
    assert [(e.ok, e.auto) for e in extends] == [(True, False), (False, False)]
    assert extends[1].duration_s == 0.0


async def test_auto_extension_sends_auto_extend_events(rsx: Any, recorder: Recorder) -> None:
    mutex = rsx.new_mutex("hooks:auto", expiry=0.6, auto_extend=True)
    await settle(mutex.lock())
    await asyncio.sleep(1.0)  # about four extensions, every expiry / 3
    assert await settle(mutex.unlock())
    extends = recorder.of("extend")
    assert len(extends) >= 2
    assert all(e.ok and e.auto and e.mutex is mutex for e in extends)
    assert recorder.kinds()[0] == "lock"
    assert recorder.kinds()[-1] == "unlock"


async def test_lost_is_sent_once_before_on_lost(
    api: str, redis_nodes: list[RedisServer], recorder: Recorder
) -> None:
    rs = make(api, [s.url for s in redis_nodes])
    order: list[str] = []
    mutex = rs.new_mutex(
        "hooks:lost",
        expiry=0.6,
        auto_extend=True,
        on_lost=lambda m: order.append(f"on_lost:{len(recorder.of('lost'))}"),
    )
    try:
        await settle(mutex.lock())
        assert await settle(rs.force_release("hooks:lost")) == 3
        assert await eventually(lambda: mutex.lost)
        await asyncio.sleep(0.3)
        assert not await settle(mutex.unlock())
    finally:
        await settle(rs.close())
    [lost] = recorder.of("lost")
    assert lost.mutex is mutex
    assert lost.name == "hooks:lost"
    assert "no longer holds our value" in lost.reason
    assert order == ["on_lost:1"]  # the listener saw it first
    [unlocked] = recorder.of("unlock")
    assert unlocked.released is False
    assert recorder.of("extend")[-1].ok is False


# --- the registry ---------------------------------------------------------------------------


async def test_a_failing_listener_is_logged_and_changes_nothing(
    rsx: Any, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(hooks.Listener):
        def lock(self, event: hooks.LockEvent) -> None:
            raise RuntimeError("observer bug")

    broken = Broken()
    hooks.add_listener(broken)
    try:
        mutex = rsx.new_mutex("hooks:broken")
        with caplog.at_level(logging.ERROR, logger="redsync"):
            await settle(mutex.lock())
        assert mutex.held
        assert await settle(mutex.unlock())
    finally:
        hooks.remove_listener(broken)
    assert "failed on a lock event" in caplog.text
    assert "observer bug" in caplog.text
    assert recorder.kinds() == ["lock", "unlock"]  # the other listener still heard both


@pytest.fixture
def no_listeners() -> Any:
    """Take every listener of the process away (the adapters' too), and give them back."""
    present = hooks_internal.listeners
    for listener in present:
        hooks.remove_listener(listener)
    yield
    for listener in present:
        hooks.add_listener(listener)


@pytest.mark.usefixtures("no_listeners")
async def test_removed_listener_hears_nothing_and_no_listener_costs_no_wrapper(
    rsx: Any,
) -> None:
    listener = Recorder()
    hooks.add_listener(listener)
    hooks.add_listener(listener)  # once only
    assert hooks_internal.listeners.count(listener) == 1
    hooks.remove_listener(listener)
    assert hooks_internal.listeners == ()
    mutex = rsx.new_mutex("hooks:quiet")
    await settle(mutex.lock())
    # With nobody listening the flows run unwrapped: nothing records the acquisition time.
    assert mutex._held_since is None
    await settle(mutex.unlock())
    assert listener.events == []


def test_only_listeners_can_be_added() -> None:
    with pytest.raises(TypeError, match="subclass Listener"):
        hooks.add_listener(object())  # type: ignore[arg-type]
    hooks.remove_listener(Recorder())  # not added: no error


def test_origin_is_free_for_adapters() -> None:
    with Redsync(["memory://hooks-origin"]) as rs:
        mutex = rs.new_mutex("x")
        assert mutex.origin is None
        mutex.origin = marker = object()
        assert rs.hold("x").mutex.origin is None
        assert mutex.origin is marker


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        pytest.param("ConnectionError: Error 111 connecting", "ConnectionError", id="exception"),
        pytest.param("no reply within the 400 ms deadline", "timeout", id="deadline"),
        pytest.param("server closed: reset", "error", id="not-a-class-name"),
    ],
)
def test_error_kind_is_short_and_stable(reason: str, kind: str) -> None:
    from redsync_core import NodeError

    assert hooks_internal.error_kind(NodeError(0, "redis://h:1", reason)) == kind


# --- semaphores and multi-mutexes -----------------------------------------------------------


async def test_semaphores_and_multi_mutexes_send_lock_and_unlock_events(
    rsx: Any, recorder: Recorder
) -> None:
    sem = rsx.new_semaphore("hooked-sem", 2)
    multi = rsx.new_multi_mutex(["hooked-a", "hooked-b"])
    for lock in (sem, multi):
        await settle(lock.lock())
        await settle(lock.unlock())
    assert recorder.kinds() == ["lock", "unlock", "lock", "unlock"]
    locks = recorder.of("lock")
    assert [event.mutex for event in locks] == [sem, multi]
    assert all(event.outcome == "acquired" and event.attempts == 1 for event in locks)
    assert all(event.released for event in recorder.of("unlock"))


async def test_a_full_semaphore_is_taken_after_one_attempt(rsx: Any, recorder: Recorder) -> None:
    holder = rsx.new_semaphore("hooks:sem-full", 1)
    assert await settle(holder.try_lock())
    full = rsx.new_semaphore("hooks:sem-full", 1)
    assert not await settle(full.try_lock())
    first, event = recorder.of("lock")
    assert (first.mutex, first.outcome) == (holder, "acquired")
    assert (event.mutex, event.outcome, event.attempts) == (full, "taken", 1)
    assert isinstance(event.error, LockTaken)
    assert "all 1 permit are held" in str(event.error)
    await settle(holder.unlock())
