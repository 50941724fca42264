"""The "Distributed locks" admin page through Django's test client, against real nodes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

pytestmark = [pytest.mark.urls("dl_adminsite"), pytest.mark.usefixtures("database")]

VALUES = {
    "test:orders:1": "value-one-s3cret",
    "test:orders:2": "8a4e-task:1:t0ken-s3cret",
    "test:reports": "value-three-s3cret",
}
RELEASE = "/admin/redsync/lock/release/"


@pytest.fixture
def clients(redsync_settings: Any, redis_nodes: Any) -> Any:
    clients = [server.client() for server in redis_nodes]
    for client in clients:
        for key, value in VALUES.items():
            client.set(key, value, px=30_000)
        client.hset("test:config", "not", "a lock")
    yield clients
    for client in clients:
        client.close()


def staff(*permissions: str) -> Client:
    """A client logged in as a staff user with these permissions of the ``redsync`` app."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission  # importable once Django is set up

    user = get_user_model().objects.create_user("op", password="pw", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="redsync", codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


def names(page: str) -> list[str]:
    """The lock names in the rows of the listing table."""
    return re.findall(r'<th scope="row">([^<]*)</th>', page)


def seen(page: str) -> list[str]:
    """What the confirmation page shows of each holder (its hidden ``seen`` inputs)."""
    return re.findall(r'name="seen" value="([^"]*)"', page)


def log_entries() -> list[Any]:
    from django.contrib.admin.models import LogEntry

    return list(LogEntry.objects.order_by("object_id"))


def test_a_staff_user_without_view_lock_gets_403_and_no_index_entry(clients: Any) -> None:
    client = staff()
    assert client.get("/admin/redsync/lock/").status_code == 403
    assert "Distributed locks" not in client.get("/admin/").content.decode()


def test_view_lock_lists_every_lock_without_values_or_release(clients: Any) -> None:
    client = staff("view_lock")
    index = client.get("/admin/").content.decode()
    assert "Distributed locks" in index
    assert 'href="/admin/redsync/lock/"' in index
    response = client.get("/admin/redsync/lock/")
    assert response.status_code == 200
    page = response.content.decode()
    assert names(page) == ["orders:1", "orders:2", "reports"]
    assert "task 8a4e-task" in page
    assert "sha256:" in page
    assert "3 of 3" in page
    assert "1 key under the prefix is not a lock" in page
    assert "s3cret" not in page
    assert 'name="name"' not in page  # no checkboxes
    assert "Release selected" not in page


def test_the_page_is_built_on_the_admin_templates(clients: Any) -> None:
    page = staff("view_lock").get("/admin/redsync/lock/").content.decode()
    assert "admin/css/base.css" in page  # the admin's stylesheet, with its dark theme
    assert 'id="site-name"' in page  # the header of admin/base_site.html
    assert '<a href="/admin/">Home</a>' in page  # breadcrumbs


def test_the_pattern_filters_the_listing(clients: Any) -> None:
    response = staff("view_lock").get("/admin/redsync/lock/", {"q": "orders:*"})
    assert names(response.content.decode()) == ["orders:1", "orders:2"]


def test_release_needs_release_lock(clients: Any) -> None:
    client = staff("view_lock")
    response = client.post(RELEASE, {"name": ["orders:1"], "seen": ["-"], "confirm": "yes"})
    assert response.status_code == 403
    assert [c.exists("test:orders:1") for c in clients] == [1, 1, 1]


def test_release_asks_then_deletes_and_logs(clients: Any) -> None:
    from django.contrib.admin.models import DELETION

    client = staff("view_lock", "release_lock")
    page = client.get("/admin/redsync/lock/").content.decode()
    assert 'name="name" value="orders:1"' in page
    assert client.get(RELEASE).status_code == 405
    asked = client.post(RELEASE, {"name": ["orders:1", "orders:2"]})
    assert asked.status_code == 200
    question = asked.content.decode()
    assert "Are you sure you want to force-release these locks?" in question
    assert "s3cret" not in question
    assert [c.exists(*VALUES) for c in clients] == [3, 3, 3]  # nothing deleted yet
    done = client.post(
        RELEASE,
        {"name": ["orders:1", "orders:2"], "seen": seen(question), "confirm": "yes"},
        follow=True,
    )
    assert done.redirect_chain == [("/admin/redsync/lock/", 302)]
    assert "Released 2 lock(s): orders:1, orders:2." in done.content.decode()
    assert [c.exists(*VALUES) for c in clients] == [1, 1, 1]  # "reports" is left
    assert [c.exists("test:config") for c in clients] == [1, 1, 1]
    entries = log_entries()
    assert [(e.object_id, e.action_flag) for e in entries] == [
        ("orders:1", DELETION),
        ("orders:2", DELETION),
    ]
    assert "deleted on 3 of 3 nodes" in entries[0].change_message
    assert "task 8a4e-task" in entries[1].change_message
    assert "s3cret" not in " ".join(e.change_message for e in entries)


def test_a_lock_that_changed_hands_after_confirmation_is_kept(clients: Any) -> None:
    client = staff("view_lock", "release_lock")
    confirmed = seen(client.post(RELEASE, {"name": ["reports"]}).content.decode())
    for c in clients:
        c.set("test:reports", "a-new-holder", px=30_000)
    done = client.post(
        RELEASE, {"name": ["reports"], "seen": confirmed, "confirm": "yes"}, follow=True
    )
    assert "Kept reports: the holder changed since you confirmed." in done.content.decode()
    assert [c.get("test:reports") for c in clients] == [b"a-new-holder"] * 3
    assert log_entries() == []


def test_release_without_a_csrf_token_is_refused(clients: Any) -> None:
    from django.contrib.auth import get_user_model

    staff("view_lock", "release_lock")
    client = Client(enforce_csrf_checks=True)
    client.force_login(get_user_model().objects.get(username="op"))
    response = client.post(RELEASE, {"name": ["orders:1"], "seen": ["-"], "confirm": "yes"})
    assert response.status_code == 403
    assert [c.exists("test:orders:1") for c in clients] == [1, 1, 1]


def test_a_custom_admin_site_serves_the_page_under_its_own_urls(clients: Any) -> None:
    client = staff("view_lock", "release_lock")
    index = client.get("/ops/").content.decode()
    assert 'href="/ops/redsync/lock/"' in index
    page = client.get("/ops/redsync/lock/").content.decode()
    assert 'action="/ops/redsync/lock/release/"' in page
    assert '<a href="/ops/">Home</a>' in page  # breadcrumbs stay on this site
    asked = client.post("/ops/redsync/lock/release/", {"name": ["reports"]})
    done = client.post(
        "/ops/redsync/lock/release/",
        {"name": ["reports"], "seen": seen(asked.content.decode()), "confirm": "yes"},
    )
    assert done.status_code == 302
    assert done["Location"] == "/ops/redsync/lock/"
    assert [c.exists("test:reports") for c in clients] == [0, 0, 0]


def test_nodes_that_cannot_be_listed_are_named_and_verdicts_say_unknown(
    clients: Any, redis_nodes: Any
) -> None:
    redis_nodes[0].kill()
    redis_nodes[1].kill()
    page = staff("view_lock").get("/admin/redsync/lock/").content.decode()
    assert page.count("was not listed to the end") == 2
    assert redis_nodes[0].url in page
    assert names(page) == ["orders:1", "orders:2", "reports"]
    assert page.count("<td>unknown</td>") == 3


def test_lock_names_are_escaped(clients: Any) -> None:
    for c in clients:
        c.set("test:<script>alert(1)</script>", "v", px=30_000)
    page = staff("view_lock", "release_lock").get("/admin/redsync/lock/").content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
