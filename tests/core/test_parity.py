"""The sync and asyncio twins: same public names, same signatures, same outcomes.

Documented differences only: ``Redsync.asyncio()`` vs ``AsyncRedsync.sync()``,
``__enter__``/``__exit__`` vs ``__aenter__``/``__aexit__``, and awaitable I/O methods.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest

from redsync_core import (
    AsyncMultiMutex,
    AsyncMutex,
    AsyncRedsync,
    AsyncSemaphore,
    LockTaken,
    MultiMutex,
    Mutex,
    Redsync,
    Semaphore,
)
from redsync_core.testing import memory_urls

PAIRS = [
    pytest.param(Redsync, AsyncRedsync, id="Redsync-AsyncRedsync"),
    pytest.param(Mutex, AsyncMutex, id="Mutex-AsyncMutex"),
    pytest.param(Semaphore, AsyncSemaphore, id="Semaphore-AsyncSemaphore"),
    pytest.param(MultiMutex, AsyncMultiMutex, id="MultiMutex-AsyncMultiMutex"),
]

ONLY_SYNC = {Redsync: {"asyncio"}, Mutex: set(), Semaphore: set(), MultiMutex: set()}
ONLY_ASYNC = {
    AsyncRedsync: {"sync"},
    AsyncMutex: set(),
    AsyncSemaphore: set(),
    AsyncMultiMutex: set(),
}
CONTEXT = {"__enter__": "__aenter__", "__exit__": "__aexit__"}

MUTEX_AWAITABLE = {"lock", "try_lock", "unlock", "extend", "valid", "take_over", "release_after"}
AWAITABLE = {
    AsyncRedsync: {"ping", "inspect", "force_release", "list_locks", "release_listed", "close"},
    AsyncMutex: MUTEX_AWAITABLE,
    AsyncSemaphore: MUTEX_AWAITABLE | {"acquire", "try_acquire", "release"},
    AsyncMultiMutex: MUTEX_AWAITABLE,
}


def public_names(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def normalize(annotation: object) -> str:
    """Make the twins' annotations comparable: AsyncMutex -> Mutex, AsyncHold -> Hold..."""
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return re.sub(r"\bAsync(Mutex|Redsync|Hold|Semaphore|MultiMutex)\b", r"\1", text)


def shape(func: Any) -> tuple[Any, ...]:
    signature = inspect.signature(func)
    params = tuple(
        (p.name, p.kind, repr(p.default), normalize(p.annotation))
        for p in signature.parameters.values()
    )
    return params, normalize(signature.return_annotation)


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS)
def test_the_twins_have_the_same_public_names(sync_cls: type, async_cls: type) -> None:
    assert (
        public_names(sync_cls) - ONLY_SYNC[sync_cls]
        == public_names(async_cls) - ONLY_ASYNC[async_cls]
    )
    for name in ONLY_SYNC[sync_cls]:
        assert name in public_names(sync_cls)
    for name in ONLY_ASYNC[async_cls]:
        assert name in public_names(async_cls)


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS)
def test_the_twins_have_the_same_signatures(sync_cls: type, async_cls: type) -> None:
    names = public_names(sync_cls) - ONLY_SYNC[sync_cls]
    checked = 0
    for name in sorted(names | {"__init__"}):
        sync_attr = inspect.getattr_static(sync_cls, name)
        async_attr = inspect.getattr_static(async_cls, name)
        if isinstance(sync_attr, property):
            assert isinstance(async_attr, property), name
            assert shape(sync_attr.fget) == shape(async_attr.fget), name
        else:
            assert callable(sync_attr), name
            assert callable(async_attr), name
            assert shape(sync_attr) == shape(async_attr), name
            assert not inspect.iscoroutinefunction(sync_attr), name
            assert inspect.iscoroutinefunction(async_attr) == (name in AWAITABLE[async_cls]), name
        checked += 1
    assert checked >= 8


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS)
def test_context_managers_match(sync_cls: type, async_cls: type) -> None:
    for sync_name, async_name in CONTEXT.items():
        assert shape(getattr(sync_cls, sync_name)) == shape(getattr(async_cls, async_name))
        assert inspect.iscoroutinefunction(getattr(async_cls, async_name))
        assert not hasattr(async_cls, sync_name)


def test_twin_constructors_differ_only_in_the_redsync_kind() -> None:
    assert shape(Redsync.__init__) == shape(AsyncRedsync.__init__)
    assert inspect.signature(Redsync.asyncio).return_annotation == "AsyncRedsync"
    assert inspect.signature(AsyncRedsync.sync).return_annotation == "Redsync"


async def test_asyncio_and_sync_twins_share_urls_prefix_and_options() -> None:
    nodes = memory_urls(3)
    with Redsync(nodes, key_prefix="p:", expiry=3.0, tries=4) as rs:
        ars = rs.asyncio()
        assert isinstance(ars, AsyncRedsync)
        assert rs.asyncio() is ars
        assert ars.addresses == rs.addresses
        assert ars.key_prefix == "p:"
        assert ars.quorum == rs.quorum
        m = ars.new_mutex("job")
        assert (m.key, m.options.expiry, m.options.tries) == ("p:job", 3.0, 4)
        back = ars.sync()
        assert isinstance(back, Redsync)
        assert back.new_mutex("job").options == rs.new_mutex("job").options
        # Same stores: the twins contend with each other.
        await m.lock()
        assert rs.new_mutex("job", tries=1).try_lock() is False
        assert await m.unlock()
        await ars.close()


# --- one scenario, both drivers: the same observable outcomes ------------------------------------

SCENARIO = [
    ("a", "lock"),
    ("b", "try_lock"),
    ("a", "valid"),
    ("a", "extend"),
    ("b", "lock"),
    ("a", "unlock"),
    ("a", "unlock"),
    ("b", "try_lock"),
    ("a", "extend"),
    ("b", "valid"),
    ("b", "unlock"),
]


def _outcome(result: object, error: BaseException | None, mutexes: dict[str, Any]) -> tuple:
    kind = None if error is None else type(error).__name__
    return (result, kind, tuple(m.held for m in mutexes.values()))


def run_sync(nodes: list[str]) -> list[tuple]:
    with Redsync(nodes, expiry=5, tries=1) as rs:
        mutexes = {"a": rs.new_mutex("job"), "b": rs.new_mutex("job")}
        outcomes = []
        for who, op in SCENARIO:
            result, error = None, None
            try:
                result = getattr(mutexes[who], op)()
            except LockTaken as exc:
                error = exc
            outcomes.append(_outcome(result, error, mutexes))
        return outcomes


async def run_async(nodes: list[str]) -> list[tuple]:
    async with AsyncRedsync(nodes, expiry=5, tries=1) as ars:
        mutexes = {"a": ars.new_mutex("job"), "b": ars.new_mutex("job")}
        outcomes = []
        for who, op in SCENARIO:
            result, error = None, None
            try:
                result = await getattr(mutexes[who], op)()
            except LockTaken as exc:
                error = exc
            outcomes.append(_outcome(result, error, mutexes))
        return outcomes


async def test_the_same_scenario_has_the_same_outcomes(redis_nodes: list[Any]) -> None:
    urls = [server.url for server in redis_nodes]
    sync_outcomes = run_sync(urls)
    async_outcomes = await run_async(urls)
    memory_outcomes = run_sync(memory_urls(3))
    assert sync_outcomes == async_outcomes == memory_outcomes
    assert sync_outcomes[:3] == [
        (None, None, (True, False)),
        (False, None, (True, False)),
        (True, None, (True, False)),
    ]
    assert sync_outcomes[4] == (None, "LockTaken", (True, False))
    assert sync_outcomes[-1] == (True, None, (False, False))
