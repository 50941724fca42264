"""The "Distributed locks" admin page in a real headless browser (Debian's chromium, driven by
Playwright with the system browser; ``playwright install`` is never needed).

The test logs in through the admin's login form, reads the page's visible text, releases a lock
through the confirmation step, checks on the Redis nodes that it is gone, and saves screenshots
under its tmp_path (``admin-locks.png``, ``admin-locks-confirm.png``, ``admin-locks-dark.png``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.urls("dl_adminsite"),
    pytest.mark.slow,
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VALUES = {
    "test:orders:1": "value-one-s3cret",
    "test:orders:2": "9b1d-task:2:t0ken-s3cret",
    "test:nightly-report": "value-three-s3cret",
}


@pytest.fixture
def site_url(operator: None) -> Iterator[str]:
    """Serve the site (and its static files) on a free loopback port in a thread.

    The server thread shares the test's database connection, as Django's LiveServerTestCase
    does for in-memory SQLite, so it sees the user the test created.
    """
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.db import connections
    from django.test.testcases import LiveServerThread

    connection = connections["default"]
    connection.inc_thread_sharing()
    server = LiveServerThread(
        "127.0.0.1", StaticFilesHandler, connections_override={"default": connection}, port=0
    )
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    yield f"http://127.0.0.1:{server.port}"
    server.terminate()
    connection.dec_thread_sharing()


@pytest.fixture
def browser() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium (the project set-up does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def nodes(redsync_settings: Any, redis_nodes: Any) -> Iterator[list[Any]]:
    clients = [server.client() for server in redis_nodes]
    for client in clients:
        for key, value in VALUES.items():
            client.set(key, value, px=60_000)
    yield clients
    for client in clients:
        client.close()


@pytest.fixture
def operator(database: None) -> None:
    """A staff user with both permissions; created before the browser starts (Playwright runs
    an event loop in this thread, where Django refuses database calls)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user("operator", password="pw-browser", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="redsync", codename__in=["view_lock", "release_lock"]
        )
    )


@pytest.mark.usefixtures("operator")
def test_an_operator_lists_and_releases_a_lock_in_a_browser(
    site_url: str, nodes: list[Any], browser: Any, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 560}, color_scheme="light")
    page.goto(f"{site_url}/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "pw-browser")
    page.click("input[type=submit]")
    page.get_by_role("link", name="Distributed locks").click()
    page.wait_for_url(f"{site_url}/admin/redsync/lock/")

    text = page.inner_text("body")
    assert "Distributed locks" in text
    rows = [row.inner_text() for row in page.query_selector_all("#result_list tbody tr")]
    assert [row.split("\t")[1] for row in rows] == ["nightly-report", "orders:1", "orders:2"]
    assert "task 9b1d-task" in rows[2]
    assert all("held" in row and "3 of 3" in row for row in rows)
    assert "s3cret" not in page.content()
    page.screenshot(path=tmp_path / "admin-locks.png")

    page.check("input[name=name][value='orders:1']")
    page.click("text=Release selected locks…")
    assert "Are you sure you want to force-release these locks?" in page.inner_text("body")
    assert [c.exists("test:orders:1") for c in nodes] == [1, 1, 1]  # asked, not done
    page.screenshot(path=tmp_path / "admin-locks-confirm.png")
    page.click("input[value='Yes, release them']")
    page.wait_for_url(f"{site_url}/admin/redsync/lock/")

    assert "Released 1 lock(s): orders:1." in page.inner_text("body")
    assert [c.exists("test:orders:1") for c in nodes] == [0, 0, 0]
    assert [c.exists("test:orders:2", "test:nightly-report") for c in nodes] == [2, 2, 2]
    remaining = page.query_selector_all("#result_list tbody th")
    assert [cell.inner_text() for cell in remaining] == ["nightly-report", "orders:2"]

    # The admin's dark theme applies to the page as to any admin page.
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    dark_page = page.context.browser.new_page(color_scheme="dark")
    dark_page.context.add_cookies(page.context.cookies())
    dark_page.goto(f"{site_url}/admin/redsync/lock/")
    dark = dark_page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert light != dark
    dark_page.screenshot(path=tmp_path / "admin-locks-dark.png")
