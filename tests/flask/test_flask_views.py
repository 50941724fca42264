"""Locked routes against real nodes: busy answers, Retry-After, async views, concurrency."""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any

import pytest
from flask import Flask, jsonify
from werkzeug.exceptions import Conflict

from redsync_core import ConfigurationError, LockTaken, Mutex
from redsync_flask import LockBusy, Redsync
from redsync_flask.extension import retry_after_seconds

WAIT = 20.0  # seconds a test waits for another thread; generous on a shared 2-core machine


@pytest.fixture
def redsync() -> Redsync:
    return Redsync()


@pytest.fixture
def app(make_app: Any, urls: list[str], redsync: Redsync) -> Flask:
    app: Flask = make_app(REDSYNC_URLS=urls, REDSYNC_KEY_PREFIX="test:")
    redsync.init_app(app)
    return app


def hold(app: Flask, name: str, expiry: float = 20.5) -> Mutex:
    """Take ``name`` on the app's nodes as another process would (no auto-extension)."""
    mutex: Mutex = app.extensions["redsync"].new_mutex(name, expiry=expiry, auto_extend=False)
    mutex.lock()
    return mutex


@pytest.mark.parametrize(
    ("seconds", "header"),
    [
        pytest.param(None, 1, id="unknown-is-1"),
        pytest.param(0.0, 1, id="zero-is-1"),
        pytest.param(0.2, 1, id="below-1-is-1"),
        pytest.param(3.0, 3, id="whole"),
        pytest.param(3.001, 4, id="rounded-up"),
    ],
)
def test_retry_after_is_whole_seconds_rounded_up_at_least_1(
    seconds: float | None, header: int
) -> None:
    assert retry_after_seconds(seconds) == header


def test_a_free_lock_runs_the_view_with_its_url_arguments(app: Flask, redsync: Redsync) -> None:
    calls: list[int] = []

    @app.post("/pay/<int:order_id>")
    @redsync.locked("pay:{order_id}")
    def pay(order_id: int) -> Any:
        calls.append(order_id)
        assert app.extensions["redsync"].inspect(f"pay:{order_id}").held  # held while it runs
        return jsonify(paid=order_id)

    response = app.test_client().post("/pay/42")

    assert response.status_code == 200
    assert response.json == {"paid": 42}
    assert calls == [42]
    assert not app.extensions["redsync"].inspect("pay:42").held  # released afterwards


def test_a_busy_view_answers_409_with_retry_after_and_never_runs(
    app: Flask, redsync: Redsync
) -> None:
    calls: list[int] = []

    @app.post("/pay/<int:order_id>")
    @redsync.locked("pay:{order_id}")
    def pay(order_id: int) -> str:
        calls.append(order_id)
        return "paid"

    holder = hold(app, "pay:7", expiry=20.5)
    try:
        busy = app.test_client().post("/pay/7")
        other = app.test_client().post("/pay/8")
    finally:
        holder.unlock()

    assert busy.status_code == 409
    assert 15 <= int(busy.headers["Retry-After"]) <= 21  # ceil of the holder's remaining TTL
    assert "pay:7" in busy.get_data(as_text=True)
    assert holder.value not in busy.get_data(as_text=True)  # never the holder's token
    assert other.status_code == 200
    assert calls == [8]
    assert app.test_client().post("/pay/7").status_code == 200  # free again


def test_the_busy_status_comes_from_config(make_app: Any, urls: list[str]) -> None:
    redsync = Redsync()
    app = make_app(REDSYNC_URLS=urls, REDSYNC_BUSY_STATUS=503)
    redsync.init_app(app)

    @app.get("/report")
    @redsync.locked("report")
    def report() -> str:
        return "done"

    holder = hold(app, "report", expiry=10.2)
    try:
        response = app.test_client().get("/report")
    finally:
        holder.unlock()
    assert response.status_code == 503
    (retry_after,) = response.headers.getlist("Retry-After")  # one header, not two
    assert 1 <= int(retry_after) <= 11


def test_error_handlers_can_reshape_the_busy_answer(app: Flask, redsync: Redsync) -> None:
    @app.errorhandler(LockBusy)
    def busy(exc: LockBusy) -> Any:
        assert isinstance(exc, Conflict)  # 409 handlers and Conflict handlers match too
        response = jsonify(error="busy", lock=exc.lock_name, retry_after=exc.retry_after)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response, exc.code

    @app.post("/sync")
    @redsync.locked("sync")
    def sync() -> str:
        return "synced"

    holder = hold(app, "sync")
    try:
        response = app.test_client().post("/sync")
    finally:
        holder.unlock()
    assert response.status_code == 409
    assert response.json is not None
    assert response.json["error"] == "busy"
    assert response.json["lock"] == "sync"
    assert response.headers["Retry-After"] == str(response.json["retry_after"])


def test_on_busy_may_return_a_custom_response(app: Flask, redsync: Redsync) -> None:
    seen: list[Any] = []

    def queued(exc: LockTaken, order_id: int) -> Any:
        seen.append((type(exc), order_id))
        return jsonify(status="queued"), 202

    @app.post("/ship/<int:order_id>")
    @redsync.locked("ship:{order_id}", on_busy=queued)
    def ship(order_id: int) -> str:
        raise AssertionError("the body must not run while the lock is busy")

    holder = hold(app, "ship:3")
    try:
        response = app.test_client().post("/ship/3")
    finally:
        holder.unlock()
    assert response.status_code == 202
    assert response.json == {"status": "queued"}
    assert seen == [(LockTaken, 3)]


def test_on_busy_raise_leaves_it_to_the_app(app: Flask, redsync: Redsync) -> None:
    @app.errorhandler(LockTaken)
    def taken(exc: LockTaken) -> Any:
        return f"taken: {exc.name}", 429

    @app.post("/import")
    @redsync.locked("import", on_busy="raise")
    def run_import() -> str:
        return "imported"

    holder = hold(app, "import")
    try:
        response = app.test_client().post("/import")
    finally:
        holder.unlock()
    assert (response.status_code, response.get_data(as_text=True)) == (429, "taken: import")


def test_wait_keeps_trying_until_the_holder_lets_go(app: Flask, redsync: Redsync) -> None:
    @app.post("/slow")
    @redsync.locked("slow", wait=WAIT)
    def slow() -> str:
        return "done"

    holder = hold(app, "slow", expiry=0.5)  # expires on its own while the request waits
    response = app.test_client().post("/slow")
    assert response.status_code == 200
    assert holder.unlock() is False  # it had expired


def test_the_lock_is_released_when_the_view_fails(app: Flask, redsync: Redsync) -> None:
    @app.post("/boom")
    @redsync.locked("boom")
    def boom() -> str:
        raise KeyError("boom")

    with pytest.raises(KeyError):  # TESTING propagates exceptions
        app.test_client().post("/boom")
    assert not app.extensions["redsync"].inspect("boom").held


def test_only_one_of_two_concurrent_requests_runs_the_body(app: Flask, redsync: Redsync) -> None:
    entered: list[str] = []
    loser_answered = threading.Event()

    @app.post("/checkout")
    @redsync.locked("checkout")
    def checkout() -> str:
        entered.append(threading.current_thread().name)
        loser_answered.wait(WAIT)  # keep holding until the other request has its answer
        return "done"

    results: queue.Queue[int] = queue.Queue()
    start = threading.Barrier(2)

    def request() -> None:
        client = app.test_client()
        start.wait(WAIT)
        results.put(client.post("/checkout").status_code)

    threads = [threading.Thread(target=request, name=f"req{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    first = results.get(timeout=WAIT)
    loser_answered.set()
    second = results.get(timeout=WAIT)
    for thread in threads:
        thread.join(WAIT)

    assert first == 409  # answered while the winner was still inside the body
    assert second == 200
    assert len(entered) == 1


def test_an_async_view_runs_under_the_lock(app: Flask, redsync: Redsync) -> None:
    calls: list[int] = []

    @app.get("/export/<int:report_id>")
    @redsync.locked("export:{report_id}")
    async def export(report_id: int) -> Any:
        await asyncio.sleep(0)
        assert app.extensions["redsync"].inspect(f"export:{report_id}").held
        calls.append(report_id)
        return jsonify(exported=report_id)

    response = app.test_client().get("/export/5")
    assert response.status_code == 200
    assert response.json == {"exported": 5}
    assert calls == [5]
    assert not app.extensions["redsync"].inspect("export:5").held


def test_a_busy_async_view_answers_409_and_never_runs(app: Flask, redsync: Redsync) -> None:
    calls: list[int] = []

    async def busy(exc: LockTaken, report_id: int) -> Any:  # on_busy may be async too
        await asyncio.sleep(0)
        return f"busy {report_id}", 409, {"Retry-After": "1"}

    @app.get("/export/<int:report_id>")
    @redsync.locked("export:{report_id}")
    async def export(report_id: int) -> str:
        calls.append(report_id)
        return "exported"

    @app.get("/async-on-busy/<int:report_id>")
    @redsync.locked("export:{report_id}", on_busy=busy)
    async def export_custom(report_id: int) -> str:
        calls.append(report_id)
        return "exported"

    holder = hold(app, "export:5")
    try:
        response = app.test_client().get("/export/5")
        custom = app.test_client().get("/async-on-busy/5")
    finally:
        holder.unlock()
    assert response.status_code == 409
    assert int(response.headers["Retry-After"]) >= 1
    assert (custom.status_code, custom.get_data(as_text=True)) == (409, "busy 5")
    assert calls == []


def test_the_body_may_call_other_locked_code(app: Flask, redsync: Redsync) -> None:
    """Nested locks work, and a busy inner lock is the body's error, not a busy route."""

    @redsync.locked("ledger:{account}")
    def post_to_ledger(account: str) -> str:
        return f"posted {account}"

    @app.post("/transfer/<account>")
    @redsync.locked("transfer:{account}")
    def transfer(account: str) -> str:
        try:
            return post_to_ledger(account)
        except LockTaken as exc:  # the core's error, as outside a request
            return f"ledger busy: {exc.name}", 503

    client = app.test_client()
    assert client.post("/transfer/acme").get_data(as_text=True) == "posted acme"

    holder = hold(app, "ledger:acme")
    try:
        response = client.post("/transfer/acme")
    finally:
        holder.unlock()
    assert (response.status_code, response.get_data(as_text=True)) == (
        503,
        "ledger busy: ledger:acme",
    )


def test_an_inner_lock_error_the_body_does_not_catch_is_not_a_busy_answer(
    app: Flask, redsync: Redsync
) -> None:
    @redsync.locked("inner")
    def inner() -> None:
        raise AssertionError("must not run")

    @app.post("/outer")
    @redsync.locked("outer")
    def outer() -> str:
        inner()
        return "unreachable"

    holder = hold(app, "inner")
    try:
        with pytest.raises(LockTaken):  # a 500 in production, with the real cause
            app.test_client().post("/outer")
    finally:
        holder.unlock()
    assert not app.extensions["redsync"].inspect("outer").held


def test_outside_a_request_a_busy_function_raises_or_skips(
    app: Flask, redsync: Redsync, caplog: pytest.LogCaptureFixture
) -> None:
    @redsync.locked("nightly")
    def nightly() -> str:
        return "ran"

    @redsync.locked("nightly", on_busy="skip")
    def nightly_or_skip() -> str:
        return "ran"

    with app.app_context():
        assert nightly() == "ran"
        holder = hold(app, "nightly")
        try:
            with pytest.raises(LockTaken):
                nightly()
            assert nightly_or_skip() is None
        finally:
            holder.unlock()
    assert "nightly" in caplog.text  # the skip is logged


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"wait": -1}, "Invalid wait=-1", id="negative-wait"),
        pytest.param({"on_busy": "ignore"}, "Invalid on_busy='ignore'", id="unknown-on-busy"),
        pytest.param({"ttl": 5}, "Unknown option 'ttl'", id="unknown-option"),
        pytest.param({"expiry": 0}, "Invalid option expiry=0", id="bad-option"),
    ],
)
def test_bad_decorator_arguments_fail_at_import_time(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Redsync().locked("x", **kwargs)
