"""``distributed_lock`` on views: function, class-based (method_decorator) and async views.

Real redis-server nodes; "another process" is a lock the test holds with the core API.
"""

from __future__ import annotations

import threading

import django
import dl_testsite as site
import pytest
from django.test import AsyncClient, Client, override_settings

from redsync_core import LockTaken
from redsync_django.locks import busy_response

pytestmark = pytest.mark.urls("dl_testsite")


@pytest.fixture(autouse=True)
def _fresh_site():
    site.reset()
    yield
    site.RELEASE.set()  # never leave a blocked request thread behind


def test_function_view_runs_when_free_and_releases(rs):
    response = Client().post("/pay/42")
    assert response.status_code == 200
    assert response.content == b"paid 42"
    assert site.CALLS["pay"] == 1
    assert not rs.inspect("order:42").held


def test_busy_function_view_answers_409_with_retry_after_and_skips_body(hold):
    hold("order:42", expiry=7.5)
    response = Client().post("/pay/42")
    assert response.status_code == 409
    assert 5 <= int(response["Retry-After"]) <= 8  # ceil of the holder's remaining 7.5 s TTL
    assert site.CALLS["pay"] == 0


def test_template_uses_view_arguments_so_other_orders_are_free(hold):
    hold("order:42")
    assert Client().post("/pay/43").status_code == 200
    assert site.CALLS["pay"] == 1


def test_busy_status_comes_from_settings(redsync_settings, hold):
    hold("order:1")
    with override_settings(REDSYNC={**redsync_settings, "BUSY_STATUS": 423}):
        response = Client().post("/pay/1")
    assert response.status_code == 423
    assert site.CALLS["pay"] == 0


def test_class_based_view_through_method_decorator(hold):
    assert Client().post("/report/sales").content == b"rebuilt sales"
    hold("report:sales")
    response = Client().post("/report/sales")
    assert response.status_code == 409
    assert "Retry-After" in response
    assert site.CALLS["report"] == 1


def test_method_decorator_on_inherited_dispatch_names_the_view_class(hold):
    hold("dl_testsite.DefaultNameView.dispatch")
    assert Client().get("/default-name").status_code == 409
    assert site.CALLS["default-name"] == 0


async def test_async_view_under_asgi_client(rs):
    response = await AsyncClient().get("/feed/7")
    assert response.status_code == 200
    assert response.content == b"refreshed 7"
    rs.new_mutex("feed:7", auto_extend=False).lock()
    busy = await AsyncClient().get("/feed/7")
    assert busy.status_code == 409
    assert int(busy["Retry-After"]) >= 1
    assert site.CALLS["feed"] == 1
    rs.force_release("feed:7")


@pytest.mark.skipif(
    django.VERSION < (5, 0),
    reason="method_decorator keeps async methods async from Django 5.0 on (4.2 makes them sync)",
)
async def test_async_class_based_view_under_asgi_client(hold):
    assert (await AsyncClient().get("/async-cbv/3")).content == b"detail 3"
    hold("async-cbv:3")
    assert (await AsyncClient().get("/async-cbv/3")).status_code == 409
    assert site.CALLS["async-cbv"] == 1


def test_two_concurrent_requests_only_one_runs_the_body(rs):
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def request() -> None:
        client = Client()
        barrier.wait(30)
        statuses.append(client.get("/blocking").status_code)
        if statuses == [409]:
            site.RELEASE.set()  # the loser answered: let the winner finish

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [200, 409]
    assert site.CALLS["blocking"] == 1
    assert not rs.inspect("blocking").held


def test_on_busy_callable_supplies_the_response(hold):
    hold("custom")
    response = Client().get("/custom")
    assert response.status_code == 503
    assert response.content == b"custom busy {}"
    assert site.CALLS["custom"] == 0


def test_on_busy_raise_propagates_lock_taken_from_a_view(hold):
    hold("raising")
    with pytest.raises(LockTaken) as caught:
        Client(raise_request_exception=True).get("/raising")
    assert caught.value.name == "raising"
    assert site.CALLS["raising"] == 0


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [(None, "1"), (0.0, "1"), (0.2, "1"), (1.0, "1"), (2.01, "3"), (29.999, "30")],
)
def test_retry_after_is_whole_seconds_rounded_up_at_least_one(
    redsync_settings, retry_after, header
):
    response = busy_response(LockTaken("x", "busy", 1, retry_after))
    assert response["Retry-After"] == header
    assert response.status_code == 409
