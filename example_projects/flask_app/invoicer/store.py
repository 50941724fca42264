"""An in-process stand-in for the app's database (one per app)."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app


@dataclass
class Invoice:
    id: int
    amount_cents: int
    paid: bool = False
    charges: int = 0  # how many times the payment provider was called (must stay <= 1)


@dataclass
class Store:
    invoices: dict[int, Invoice] = field(default_factory=dict)
    reconciled: int = 0

    @classmethod
    def with_demo_invoices(cls) -> Store:
        return cls({i: Invoice(i, 1000 * i) for i in range(1, 6)})


def get_store() -> Store:
    """Return the current app's store."""
    store: Store = current_app.extensions["invoicer"]
    return store
