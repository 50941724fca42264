"""The ``locked`` decorator and the lock naming helpers shared by the adapters."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from redsync_core import (
    AsyncRedsync,
    ConfigurationError,
    LockTaken,
    Redsync,
    arguments_digest,
    render_lock_name,
)
from redsync_core.testing import RedisServer


@dataclass
class User:
    pk: int


def charge(invoice_id: int, amount: int = 10, *, user: User | None = None) -> None:
    """A function whose calls are named."""


@pytest.mark.parametrize(
    ("template", "args", "kwargs", "expected"),
    [
        pytest.param("fixed", (1,), {}, "fixed", id="no-placeholders"),
        pytest.param("inv:{invoice_id}", (7,), {}, "inv:7", id="positional"),
        pytest.param("inv:{invoice_id}", (), {"invoice_id": 7}, "inv:7", id="keyword"),
        pytest.param("{invoice_id}:{amount}", (7,), {}, "7:10", id="default-applied"),
        pytest.param("u:{user.pk}", (7,), {"user": User(3)}, "u:3", id="attribute"),
    ],
)
def test_templates_are_filled_from_bound_arguments(
    template: str, args: tuple[Any, ...], kwargs: dict[str, Any], expected: str
) -> None:
    assert render_lock_name(template, charge, args, kwargs) == expected


def test_default_name_and_callable_name() -> None:
    assert render_lock_name(None, charge, (1,), {}) == f"{__name__}.charge"
    assert render_lock_name(lambda invoice_id, **_: f"c{invoice_id}", charge, (4,), {}) == "c4"


def test_a_template_naming_an_unknown_argument_says_which_exist() -> None:
    with pytest.raises(ConfigurationError, match=r"invoice_id, amount, user"):
        render_lock_name("inv:{nope}", charge, (1,), {})


def test_digest_is_the_same_for_positional_and_keyword_calls() -> None:
    a = arguments_digest(charge, (1, 10), {})
    assert a == arguments_digest(charge, (1,), {"amount": 10})
    assert a == arguments_digest(charge, (), {"invoice_id": 1})
    assert a != arguments_digest(charge, (2,), {})
    assert arguments_digest(charge, (1, 5), {}, names=["invoice_id"]) == arguments_digest(
        charge, (1, 99), {}, names=["invoice_id"]
    )
    with pytest.raises(ConfigurationError, match="missing"):
        arguments_digest(charge, (1,), {}, names=["missing"])


def test_decorated_function_runs_under_the_lock_and_busy_raises(
    redis_nodes: list[RedisServer],
) -> None:
    with Redsync([s.url for s in redis_nodes], key_prefix="app:") as rs:
        inside = threading.Event()
        release = threading.Event()

        @rs.locked("job:{job_id}", expiry=5.0)
        def job(job_id: int, note: str = "") -> str:
            if job_id == 1:
                inside.set()
                release.wait(5)
            return f"done {job_id}"

        results: list[str] = []
        worker = threading.Thread(target=lambda: results.append(job(1)))
        worker.start()
        assert inside.wait(5)
        with pytest.raises(LockTaken) as caught:
            job(job_id=1)  # keyword call, same key as job(1)
        assert caught.value.retry_after is not None
        assert 0 < caught.value.retry_after <= 5.0
        assert job(2) == "done 2"  # another key is free
        release.set()
        worker.join(5)
        assert results == ["done 1"]
        assert rs.inspect("job:1").held is False


async def test_async_function_locks_through_the_asyncio_twin(
    redis_nodes: list[RedisServer],
) -> None:
    rs = Redsync([s.url for s in redis_nodes])
    entered = asyncio.Event()
    release = asyncio.Event()

    @rs.locked("ajob:{n}")
    async def ajob(n: int) -> int:
        entered.set()
        await release.wait()
        return n

    first = asyncio.create_task(ajob(1))
    await entered.wait()
    with pytest.raises(LockTaken):
        await ajob(n=1)
    assert rs.inspect("ajob:1").held
    release.set()
    assert await first == 1
    assert not rs.inspect("ajob:1").held, "the lock outlived the call"
    assert await ajob(1) == 1
    await rs.asyncio().close()
    rs.close()


async def test_async_redsync_decorates_sync_functions_too(redis_nodes: list[RedisServer]) -> None:
    ars = AsyncRedsync([s.url for s in redis_nodes], key_prefix="app:")
    observer = Redsync([s.url for s in redis_nodes], key_prefix="app:")
    seen: list[Any] = []

    @ars.locked("sync-from-async:{n}", wait=1.0, expiry=5.0)
    def plain(n: int) -> str:
        seen.append(observer.inspect(f"sync-from-async:{n}"))
        with pytest.raises(LockTaken):  # the same call elsewhere is refused meanwhile
            observer.new_mutex(f"sync-from-async:{n}", tries=1).lock()
        return "ok"

    assert await asyncio.to_thread(plain, 7) == "ok"
    [inside] = seen
    assert inside.held, "the function ran without the lock"
    assert inside.key == "app:sync-from-async:7"
    assert 0 < (inside.remaining or 0) <= 5.0
    assert not observer.inspect("sync-from-async:7").held, "the lock outlived the call"
    observer.close()
    await ars.close()


def test_decorator_options_are_validated_at_decoration(redis_nodes: list[RedisServer]) -> None:
    with Redsync([s.url for s in redis_nodes]) as rs:
        with pytest.raises(ConfigurationError, match="expiry"):
            rs.locked("x", expiry=-1)
        with pytest.raises(ConfigurationError, match="wait"):
            rs.locked("x", wait=-2)
