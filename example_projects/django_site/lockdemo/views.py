"""Three views, each run by at most one request at a time per resource, across every
process and host that shares the same Redis nodes. A second request while one runs gets
409 Conflict with a Retry-After header, and the view body does not run."""

import asyncio
import time

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.http import require_POST

from redsync_django import distributed_lock


@require_POST
@distributed_lock("order:{order_id}", expiry=10.0)
def pay_order(request: HttpRequest, order_id: int) -> JsonResponse:
    """Charge an order: one payment per order at a time (function view)."""
    time.sleep(settings.DEMO_WORK_SECONDS)
    return JsonResponse({"order": order_id, "paid": True})


@method_decorator(distributed_lock("report:{kind}"), name="post")
class RebuildReportView(View):
    """Rebuild one kind of report (class-based view, locked through method_decorator)."""

    def post(self, request: HttpRequest, kind: str) -> JsonResponse:
        time.sleep(settings.DEMO_WORK_SECONDS)
        return JsonResponse({"report": kind, "rebuilt": True})


@distributed_lock("feed:{feed_id}")
async def refresh_feed(request: HttpRequest, feed_id: int) -> JsonResponse:
    """Refresh a feed (async view: the lock is taken with the asyncio API, never blocking)."""
    await asyncio.sleep(settings.DEMO_WORK_SECONDS)
    return JsonResponse({"feed": feed_id, "refreshed": True})
