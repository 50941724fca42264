"""HTTP routes: a locked payment (sync), a locked export (``async def``) and a render that
admits two requests at once (a semaphore)."""

from __future__ import annotations

import asyncio
from typing import Any

from flask import Blueprint, abort, jsonify

from redsync_flask import LockBusy

from .extensions import redsync
from .store import get_store

bp = Blueprint("invoices", __name__, url_prefix="/invoices")


@bp.post("/<int:invoice_id>/pay")
@redsync.locked("invoice:{invoice_id}")  # a double click or a retry cannot charge twice
def pay(invoice_id: int) -> Any:
    invoice = get_store().invoices.get(invoice_id) or abort(404)
    if invoice.paid:  # check-then-act: safe only because the lock is held
        return jsonify(invoice=invoice_id, status="already paid")
    invoice.charges += 1  # the call to the payment provider would go here
    invoice.paid = True
    return jsonify(invoice=invoice_id, status="paid", amount_cents=invoice.amount_cents)


@bp.post("/<int:invoice_id>/export")
@redsync.locked("export:{invoice_id}", expiry=60.0)
async def export(invoice_id: int) -> Any:
    invoice = get_store().invoices.get(invoice_id) or abort(404)
    await asyncio.sleep(0.01)  # rendering the PDF would be awaited here
    return jsonify(invoice=invoice.id, pdf=f"/exports/invoice-{invoice.id}.pdf")


@bp.post("/<int:invoice_id>/render")
@redsync.locked("render", limit=2)  # at most 2 PDF renderings at once, across every worker
def render(invoice_id: int) -> Any:
    invoice = get_store().invoices.get(invoice_id) or abort(404)
    return jsonify(invoice=invoice.id, rendered=True)


@bp.app_errorhandler(LockBusy)
def busy(exc: LockBusy) -> Any:
    """Answer busy locks in JSON, keeping the status and Retry-After the extension chose."""
    response = jsonify(error="busy", detail=exc.description, retry_after=exc.retry_after)
    response.status_code = exc.code or 409
    response.headers["Retry-After"] = str(exc.retry_after)
    return response
