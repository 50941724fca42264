"""``distributed_lock`` on plain functions and as ``with`` / ``async with`` blocks."""

from __future__ import annotations

import logging
import threading

import pytest

from redsync_core import AsyncMutex, ConfigurationError, LockTaken, Mutex
from redsync_django import distributed_lock, get_redsync

CALLS: list[str] = []


@pytest.fixture(autouse=True)
def _clear():
    CALLS.clear()


@distributed_lock("invoice:{invoice_id}")
def send_invoice(invoice_id: int, copies: int = 1) -> str:
    CALLS.append(f"send {invoice_id}")
    return f"sent {invoice_id} x{copies}"


@distributed_lock()
def nightly() -> str:
    CALLS.append("nightly")
    return "ran"


@distributed_lock("sync:{account}", on_busy="skip")
def sync_account(account: str) -> str:
    CALLS.append(account)
    return "synced"


@distributed_lock("callable", on_busy=lambda exc, *args, **kwargs: ("busy", exc.name, args, kwargs))
def with_callable(a: int, *, b: int) -> str:
    CALLS.append("callable")
    return "ran"


@distributed_lock("async:{n}")
async def async_job(n: int) -> str:
    CALLS.append(f"async {n}")
    return f"async {n}"


async def _later(exc: LockTaken, n: int) -> str:
    return f"later {n}"


@distributed_lock("async-skip:{n}", on_busy=_later)
async def async_job_awaitable_on_busy(n: int) -> str:
    CALLS.append("never")
    return "ran"


def test_plain_function_runs_under_its_lock_and_releases(rs):
    assert send_invoice(7, copies=2) == "sent 7 x2"
    assert CALLS == ["send 7"]
    assert not rs.inspect("invoice:7").held


def test_busy_plain_function_raises_lock_taken_and_does_not_run(hold):
    hold("invoice:7", expiry=20.0)
    with pytest.raises(LockTaken) as caught:
        send_invoice(invoice_id=7)
    assert caught.value.name == "invoice:7"
    assert 15 <= caught.value.retry_after <= 20
    assert CALLS == []


def test_default_name_is_module_and_qualname(hold):
    hold(f"{__name__}.nightly")
    with pytest.raises(LockTaken):
        nightly()
    assert CALLS == []


def test_skip_returns_none_and_logs_a_warning(hold, caplog):
    hold("sync:acme")
    with caplog.at_level(logging.WARNING, logger="redsync.django"):
        assert sync_account("acme") is None
    assert CALLS == []
    assert "'sync:acme' is busy" in caplog.text
    assert sync_account("other") == "synced"


def test_on_busy_callable_gets_the_exception_and_the_call_arguments(hold):
    hold("callable")
    assert with_callable(1, b=2) == ("busy", "callable", (1,), {"b": 2})
    assert CALLS == []


def test_wait_retries_until_the_holder_lets_go(hold):
    holder = hold("invoice:9", expiry=0.5)
    waiting = distributed_lock("invoice:9", wait=20.0)(lambda: CALLS.append("waited") or "ok")
    assert waiting() == "ok"  # acquired once the 0.5 s TTL ran out
    assert CALLS == ["waited"]
    assert not holder.held


def test_options_reach_the_core_mutex(rs):
    with distributed_lock("opts", expiry=12.5, auto_extend=False) as mutex:
        assert isinstance(mutex, Mutex)
        assert mutex.options.expiry == 12.5
        assert 11 < rs.inspect("opts").remaining <= 12.5
    assert not rs.inspect("opts").held


def test_adapter_defaults_are_30s_expiry_auto_extended(rs):
    with distributed_lock("defaults") as mutex:
        assert mutex.options.expiry == 30.0
        assert mutex.options.auto_extend is True
        assert mutex.key == "test:defaults"


def test_with_block_holds_and_releases(rs):
    lock = distributed_lock("block")
    with lock as mutex:
        assert rs.inspect("block").holder == mutex.value
        with pytest.raises(LockTaken), distributed_lock("block"):  # even in the same thread
            CALLS.append("inner")
    assert CALLS == []
    assert not rs.inspect("block").held
    with lock:  # the same object can be entered again
        pass


def test_with_block_refuses_skip_and_templates(rs):
    with (
        pytest.raises(ConfigurationError, match="cannot skip"),
        distributed_lock("x", on_busy="skip"),
    ):
        pass
    with pytest.raises(ConfigurationError, match="lock name string"), distributed_lock():
        pass


async def test_async_function_and_async_with(rs):
    assert await async_job(1) == "async 1"
    async with distributed_lock("async:2") as mutex:
        assert isinstance(mutex, AsyncMutex)
        with pytest.raises(LockTaken):
            await async_job(2)
        info = await get_redsync().asyncio().inspect("async:2")
        assert info.holder == mutex.value
    assert CALLS == ["async 1"]
    assert not rs.inspect("async:2").held


async def test_async_on_busy_may_be_a_coroutine_function(hold):
    hold("async-skip:5")
    assert await async_job_awaitable_on_busy(5) == "later 5"
    assert CALLS == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"wait": -1}, "Invalid wait"),
        ({"on_busy": "ignore"}, "Invalid on_busy"),
        ({"expirry": 3}, "Unknown option 'expirry'"),
        ({"expiry": 0}, "Invalid option expiry"),
    ],
)
def test_bad_arguments_fail_at_decoration(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        distributed_lock("x", **kwargs)


def test_one_shared_object_serves_several_threads(rs):
    shared = distributed_lock("shared")
    entered, leave = threading.Event(), threading.Event()
    results: list[str] = []

    def holder() -> None:
        with shared:
            entered.set()
            leave.wait(60)
        results.append("holder released")

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert entered.wait(60)
        with pytest.raises(LockTaken), shared:
            results.append("never")
    finally:
        leave.set()
        thread.join(60)
    assert results == ["holder released"]
    assert not rs.inspect("shared").held
