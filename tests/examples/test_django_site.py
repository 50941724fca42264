"""The example Django site (example_projects/django_site), driven as a user would drive it:
test client, ASGI client, ``call_command`` and ``manage.py`` in a subprocess, against three
real redis-server nodes."""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import django
import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import AsyncClient, Client, override_settings

from redsync_core.testing import child_process

SITE = Path(__file__).resolve().parents[2] / "example_projects" / "django_site"
if str(SITE) not in sys.path:
    sys.path.insert(0, str(SITE))

from redsync_django import get_redsync  # noqa: E402 (needs SITE on sys.path)

pytestmark = pytest.mark.urls("django_site.urls")


@pytest.fixture(scope="module", autouse=True)
def _django_configured():
    """As tests/django/conftest.py: the site's own settings, configured when tests start."""
    if not settings.configured:
        from django_site import settings as site_settings

        names = [name for name in dir(site_settings) if name.isupper()]
        settings.configure(**{name: getattr(site_settings, name) for name in names})
        django.setup()


@pytest.fixture
def urls(redis_nodes):
    return [server.url for server in redis_nodes]


@pytest.fixture
def rs(urls):
    from django_site import settings as site_settings

    with override_settings(REDSYNC={**site_settings.REDSYNC, "URLS": urls}):
        yield get_redsync()


@pytest.fixture
def hold(rs):
    held = []

    def _hold(name, expiry=30.0):
        mutex = rs.new_mutex(name, expiry=expiry, auto_extend=False)
        mutex.lock()
        held.append(mutex)
        return mutex

    yield _hold
    for mutex in held:
        mutex.unlock()


def manage(urls, *args, timeout=120):
    """Run ``manage.py`` in the example directory with REDSYNC_URLS set; return the process."""
    env = {**os.environ, "REDSYNC_URLS": ",".join(urls), "PYTHONPATH": str(SITE.parents[1])}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=SITE,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_settings_read_three_nodes_from_redsync_urls(monkeypatch):
    from django_site import settings as site_settings

    monkeypatch.setenv(
        "REDSYNC_URLS", "redis://10.0.0.1:6379/0,redis://10.0.0.2:6379/0,redis://10.0.0.3:6379/0"
    )
    try:
        reloaded = importlib.reload(site_settings)
        assert reloaded.REDSYNC["URLS"] == [
            "redis://10.0.0.1:6379/0",
            "redis://10.0.0.2:6379/0",
            "redis://10.0.0.3:6379/0",
        ]
        assert reloaded.REDSYNC["OPTIONS"] == {"expiry": 30.0, "auto_extend": True}
    finally:
        monkeypatch.delenv("REDSYNC_URLS")
        importlib.reload(site_settings)


def test_function_view_pays_and_answers_409_while_another_holds_the_order(hold):
    client = Client()
    assert client.post("/orders/42/pay").json() == {"order": 42, "paid": True}
    assert client.get("/orders/42/pay").status_code == 405  # require_POST runs before the lock
    hold("order:42", expiry=9.0)
    busy = client.post("/orders/42/pay")
    assert busy.status_code == 409
    assert 1 <= int(busy["Retry-After"]) <= 9
    assert client.post("/orders/43/pay").status_code == 200


def test_class_based_view(hold):
    client = Client()
    assert client.post("/reports/sales/rebuild").json() == {"report": "sales", "rebuilt": True}
    hold("report:sales")
    assert client.post("/reports/sales/rebuild").status_code == 409
    assert client.post("/reports/stock/rebuild").status_code == 200


async def test_async_view_under_the_asgi_client(hold):
    client = AsyncClient()
    assert (await client.get("/feeds/5/refresh")).json() == {"feed": 5, "refreshed": True}
    hold("feed:5")
    busy = await client.get("/feeds/5/refresh")
    assert busy.status_code == 409
    assert int(busy["Retry-After"]) >= 1


def test_keys_carry_the_site_prefix(rs, redis_nodes):
    holder = rs.new_mutex("order:7", auto_extend=False)
    holder.lock()
    assert redis_nodes[0].client().exists("django_site:order:7") == 1
    holder.unlock()


def test_locked_command_with_call_command(hold):
    out, err = io.StringIO(), io.StringIO()
    call_command("rebuild_search_index", seconds=0, stdout=out, stderr=err)
    assert (out.getvalue(), err.getvalue()) == ("Search index rebuilt.\n", "")
    hold("manage:rebuild_search_index")
    out, err = io.StringIO(), io.StringIO()
    call_command("rebuild_search_index", seconds=0, stdout=out, stderr=err)
    assert out.getvalue() == ""
    assert "lock 'manage:rebuild_search_index' is held by another run" in err.getvalue()


def test_manage_py_busy_prints_one_line_and_exits_0(urls, hold):
    hold("manage:rebuild_search_index")
    done = manage(urls, "rebuild_search_index", "--seconds", "0")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "'manage:rebuild_search_index' is held by another run" in done.stderr


@pytest.mark.slow
def test_manage_py_run_twice_at_once_one_runs_one_is_skipped(urls, rs):
    first = child_process(
        [sys.executable, "manage.py", "rebuild_search_index", "--seconds", "15"],
        cwd=SITE,
        env={**os.environ, "REDSYNC_URLS": ",".join(urls), "PYTHONPATH": str(SITE.parents[1])},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not rs.inspect("manage:rebuild_search_index").held:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first run never took its lock"
            time.sleep(0.1)
        second = manage(urls, "rebuild_search_index", "--seconds", "0")
        assert first.poll() is None, "the first run ended too early to overlap"
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=60)
    assert (second.returncode, second.stdout) == (0, "")
    assert "is held by another run" in second.stderr
    assert (first.returncode, out, err) == (0, "Search index rebuilt.\n", "")
    assert not rs.inspect("manage:rebuild_search_index").held


def test_manage_py_check_and_redsync_ping(urls):
    check = manage(urls, "check")
    assert check.returncode == 0, check.stderr
    ping = manage(urls, "redsync", "ping")
    assert ping.returncode == 0, ping.stderr
    assert "quorum ok: 3 of 3 nodes answered" in ping.stdout


def test_manage_py_check_deploy_fails_without_a_quorum(urls, redis_nodes):
    for server in redis_nodes[:2]:
        server.kill()
    assert manage(urls, "check").returncode == 0  # default checks do not touch the network
    deploy = manage(urls, "check", "--deploy", "--tag", "redsync")
    assert deploy.returncode == 1
    assert "redsync.E004" in deploy.stderr


def test_wsgi_and_asgi_entry_points_load(urls):
    code = "import django_site.asgi, django_site.wsgi; print('loaded')"
    env = {**os.environ, "REDSYNC_URLS": ",".join(urls), "PYTHONPATH": str(SITE.parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=SITE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "loaded\n"), done.stderr
