"""The example Django site's admin, as its README has a user run it: ``migrate``,
``createsuperuser``, then the "Distributed locks" page and ``redsync ls`` / ``release
--pattern``; every step is ``manage.py`` in a subprocess, against three real redis-server nodes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SITE = Path(__file__).resolve().parents[2] / "example_projects" / "django_site"

OPEN_THE_PAGE = """
from django.test import Client
client = Client()
assert client.login(username="admin", password="pw-example")
page = client.get("/admin/redsync/lock/").content.decode()
print(page)
"""


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=SITE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_the_example_admin_lists_and_releases_the_sites_locks(redis_nodes, tmp_path):
    urls = [server.url for server in redis_nodes]
    env = {
        **os.environ,
        "REDSYNC_URLS": ",".join(urls),
        "PYTHONPATH": str(SITE.parents[1]),
        "DJANGO_DB": str(tmp_path / "db.sqlite3"),
        "DJANGO_SUPERUSER_PASSWORD": "pw-example",
    }
    manage(env, "migrate", "--verbosity", "0")
    manage(env, "createsuperuser", "--noinput", "--username", "admin", "--email", "a@example.com")
    for server in redis_nodes:
        client = server.client()
        client.set("django_site:order:42", "holder-s3cret", px=60_000)
        client.close()

    page = manage(env, "shell", "-c", OPEN_THE_PAGE).stdout
    assert "Distributed locks" in page
    assert '<th scope="row">order:42</th>' in page
    assert "s3cret" not in page

    listed = manage(env, "redsync", "ls").stdout
    assert listed.startswith("order:42: held, sha256:")
    released = manage(env, "redsync", "release", "--pattern", "order:*", "--force", "--yes")
    assert "Released 'order:42': deleted on 3 of 3 nodes." in released.stdout
    assert manage(env, "redsync", "ls").stdout == "0 lock(s) matching '*'\n"


@pytest.mark.parametrize(("answer", "deleted"), [("y\n", True), ("n\n", False)])
def test_release_pattern_asks_on_a_terminal(redis_nodes, answer, deleted):
    urls = [server.url for server in redis_nodes]
    clients = [server.client() for server in redis_nodes]
    for client in clients:
        client.set("django_site:report:daily", "holder-s3cret", px=60_000)
    env = {**os.environ, "REDSYNC_URLS": ",".join(urls), "PYTHONPATH": str(SITE.parents[1])}
    primary, secondary = os.openpty()
    try:
        os.write(primary, answer.encode())
        result = subprocess.run(
            [sys.executable, "manage.py", "redsync", "release", "--pattern", "report:*", "--force"],
            cwd=SITE,
            env=env,
            stdin=secondary,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(primary)
        os.close(secondary)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Delete these 1 lock(s) on every node? [y/N]" in result.stdout
    assert [client.exists("django_site:report:daily") for client in clients] == (
        [0, 0, 0] if deleted else [1, 1, 1]
    )
    for client in clients:
        client.close()
