"""Views and commands the redsync_django tests drive (``pytest.mark.urls("dl_testsite")``)."""

from __future__ import annotations

import asyncio
import collections
import threading

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils.decorators import method_decorator
from django.views import View

from redsync_django import distributed_lock
from redsync_django.management import LockedCommand

CALLS: collections.Counter[str] = collections.Counter()
ENTERED = threading.Event()  # set by a blocking body once it holds its lock
RELEASE = threading.Event()  # set by the test to let that body finish
WAIT = 60.0


def reset() -> None:
    CALLS.clear()
    ENTERED.clear()
    RELEASE.clear()


@distributed_lock("order:{order_id}")
def pay(request: HttpRequest, order_id: int) -> HttpResponse:
    CALLS["pay"] += 1
    return HttpResponse(f"paid {order_id}")


@distributed_lock("blocking")
def blocking(request: HttpRequest) -> HttpResponse:
    CALLS["blocking"] += 1
    ENTERED.set()
    RELEASE.wait(WAIT)
    return HttpResponse("done")


@method_decorator(distributed_lock(), name="dispatch")
class DefaultNameView(View):
    """Locked through the inherited ``View.dispatch``: the default name is this class's."""

    def get(self, request: HttpRequest) -> HttpResponse:
        CALLS["default-name"] += 1
        return HttpResponse("ok")


@method_decorator(distributed_lock("report:{kind}"), name="post")
class ReportView(View):
    def post(self, request: HttpRequest, kind: str) -> HttpResponse:
        CALLS["report"] += 1
        return HttpResponse(f"rebuilt {kind}")


@distributed_lock("feed:{feed_id}")
async def feed(request: HttpRequest, feed_id: int) -> HttpResponse:
    CALLS["feed"] += 1
    await asyncio.sleep(0)
    return HttpResponse(f"refreshed {feed_id}")


@method_decorator(distributed_lock("async-cbv:{pk}"), name="get")
class AsyncDetailView(View):
    async def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        CALLS["async-cbv"] += 1
        return HttpResponse(f"detail {pk}")


def _later(exc: Exception, request: HttpRequest, **kwargs: object) -> HttpResponse:
    return HttpResponse(f"custom busy {kwargs}", status=503)


@distributed_lock("custom", on_busy=_later)
def custom(request: HttpRequest) -> HttpResponse:
    CALLS["custom"] += 1
    return HttpResponse("ok")


@distributed_lock("raising", on_busy="raise")
def raising(request: HttpRequest) -> HttpResponse:
    CALLS["raising"] += 1
    return HttpResponse("ok")


urlpatterns = [
    path("pay/<int:order_id>", pay),
    path("blocking", blocking),
    path("default-name", DefaultNameView.as_view()),
    path("report/<slug:kind>", ReportView.as_view()),
    path("feed/<int:feed_id>", feed),
    path("async-cbv/<int:pk>", AsyncDetailView.as_view()),
    path("custom", custom),
    path("raising", raising),
]


class BlockingCommand(LockedCommand):
    """Holds its lock until RELEASE is set."""

    lock_name = "manage:blocking"

    def handle(self, *args: object, **options: object) -> None:
        CALLS["command"] += 1
        ENTERED.set()
        RELEASE.wait(WAIT)
        self.stdout.write("finished")


class QuickCommand(LockedCommand):
    lock_expiry = 5.0

    def handle(self, *args: object, **options: object) -> None:
        CALLS["quick"] += 1
        self.stdout.write("quick done")
