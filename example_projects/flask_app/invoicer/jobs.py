"""A scheduled job that must run once per tick across every worker and host.

``reconcile()`` needs an app context: run it from cron with ``flask --app invoicer reconcile``
on every host, or from APScheduler inside ``with app.app_context():``. Whoever takes the lock
first runs it; the others log a warning and skip.
"""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import with_appcontext

from .extensions import redsync
from .store import get_store


@redsync.locked("jobs:reconcile", on_busy="skip", expiry=60.0)
def reconcile() -> int:
    """Count the paid invoices into the ledger; return how many were reconciled."""
    store = get_store()
    store.reconciled = sum(1 for invoice in store.invoices.values() if invoice.paid)
    return store.reconciled


@click.command("reconcile")
@with_appcontext
def reconcile_command() -> None:
    """Run the reconciliation job unless another worker is running it."""
    done = reconcile()
    if done is None:
        click.echo("another worker is reconciling; skipped")
    else:
        click.echo(f"reconciled {done} paid invoices")


def init_app(app: Flask) -> None:
    app.cli.add_command(reconcile_command)
