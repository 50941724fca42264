"""example_projects/flask_app (invoicer), driven by Flask's test client and CLI runner."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from flask import Flask

from redsync_core import Mutex
from redsync_core.testing import RedisServer

EXAMPLE = Path(__file__).resolve().parents[2] / "example_projects" / "flask_app"
sys.path.insert(0, str(EXAMPLE))

import invoicer  # noqa: E402  (the example is a project, not an installed package)
from invoicer.jobs import reconcile  # noqa: E402


@pytest.fixture
def app(redis_nodes: list[RedisServer]) -> Flask:
    return invoicer.create_app({"TESTING": True, "REDSYNC_URLS": [s.url for s in redis_nodes]})


def hold(app: Flask, name: str) -> Mutex:
    """Take ``name`` as another worker would."""
    mutex: Mutex = app.extensions["redsync"].new_mutex(name, expiry=20.0, auto_extend=False)
    mutex.lock()
    return mutex


def test_the_factory_registers_the_extension_with_the_example_config(app: Flask) -> None:
    core = app.extensions["redsync"]
    assert core.key_prefix == "invoicer:"
    assert len(core.addresses) == 3
    assert all(url.startswith("redis://127.0.0.1:") for url in core.addresses)


def test_paying_an_invoice_charges_it_once(app: Flask) -> None:
    client = app.test_client()

    first = client.post("/invoices/1/pay")
    second = client.post("/invoices/1/pay")

    assert (first.status_code, first.json) == (
        200,
        {"invoice": 1, "status": "paid", "amount_cents": 1000},
    )
    assert second.json == {"invoice": 1, "status": "already paid"}
    assert app.extensions["invoicer"].invoices[1].charges == 1
    assert client.post("/invoices/99/pay").status_code == 404


def test_a_busy_payment_answers_json_409_with_retry_after(
    app: Flask, redis_nodes: list[RedisServer]
) -> None:
    holder = hold(app, "invoice:2")
    try:
        assert redis_nodes[0].client().exists("invoicer:invoice:2") == 1  # the key has the prefix
        response = app.test_client().post("/invoices/2/pay")
    finally:
        holder.unlock()

    assert response.status_code == 409
    assert response.json is not None
    assert response.json["error"] == "busy"
    assert 1 <= int(response.headers["Retry-After"]) <= 20
    assert response.json["retry_after"] == int(response.headers["Retry-After"])
    assert app.extensions["invoicer"].invoices[2].charges == 0  # the body never ran
    assert app.test_client().post("/invoices/2/pay").json["status"] == "paid"


def test_the_async_export_route(app: Flask) -> None:
    client = app.test_client()
    assert client.post("/invoices/3/export").json == {
        "invoice": 3,
        "pdf": "/exports/invoice-3.pdf",
    }

    holder = hold(app, "export:3")
    try:
        busy = client.post("/invoices/3/export")
    finally:
        holder.unlock()
    assert busy.status_code == 409
    assert "Retry-After" in busy.headers


def test_the_render_route_admits_two_requests_at_once(app: Flask) -> None:
    core = app.extensions["redsync"]
    first = core.new_semaphore("render", 2, expiry=20.0)
    first.acquire()
    assert app.test_client().post("/invoices/1/render").status_code == 200  # a permit is free
    second = core.new_semaphore("render", 2, expiry=20.0)
    second.acquire()
    try:
        assert app.test_client().post("/invoices/1/render").status_code == 409
    finally:
        first.release()
        second.release()


def test_the_scheduled_job_runs_once_across_workers(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    app.test_client().post("/invoices/4/pay")
    with app.app_context():
        assert reconcile() == 1

        holder = hold(app, "jobs:reconcile")  # another worker is running it
        try:
            with caplog.at_level(logging.WARNING, logger="redsync.flask"):
                assert reconcile() is None
        finally:
            holder.unlock()
    assert "jobs:reconcile" in caplog.text


def test_the_reconcile_command(app: Flask) -> None:
    runner = app.test_cli_runner()
    app.test_client().post("/invoices/5/pay")

    assert runner.invoke(args=["reconcile"]).output == "reconciled 1 paid invoices\n"

    holder = hold(app, "jobs:reconcile")
    try:
        result = runner.invoke(args=["reconcile"])
    finally:
        holder.unlock()
    assert result.exit_code == 0
    assert result.output == "another worker is reconciling; skipped\n"


def test_the_redsync_commands(app: Flask) -> None:
    runner = app.test_cli_runner()

    ping = runner.invoke(args=["redsync", "ping"])
    assert ping.exit_code == 0, ping.output
    assert "quorum: 3 of 3 nodes answered, 2 needed: ok" in ping.output

    holder = hold(app, "invoice:1")
    status = runner.invoke(args=["redsync", "status", "invoice:1"])
    assert "(key 'invoicer:invoice:1'): held by" in status.output

    release = runner.invoke(args=["redsync", "release", "invoice:1", "--force"])
    assert "deleted on 3 of 3 nodes" in release.output
    assert holder.unlock() is False
    assert app.test_client().post("/invoices/1/pay").status_code == 200


def test_the_readme_names_what_the_example_has() -> None:
    readme = (EXAMPLE / "README.md").read_text()
    for needle in ("redis-server --port", "flask --app invoicer run", "reconcile", "redsync ping"):
        assert needle in readme
