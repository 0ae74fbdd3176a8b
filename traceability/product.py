"""The product view: what the ledger knows of one GTIN (GS1 Digital Link `/01/{gtin}`).

A GTIN names a trade item; its lots are the batches recorded under it. The product's
name and category are those of its latest lot (a brand owner may rename a product over
the years; the newest name is what is on the shelf now).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.errors import NotFound
from traceability.views import Views

MAX_LOTS = 1000  # the newest lots; `lot_count` says how many there are in all


@dataclass(frozen=True, slots=True)
class ProductLot:
    lot: str
    producer: str
    produced_at: str
    expires_at: str | None
    entry: int

    def to_json(self) -> dict[str, Any]:
        return {"lot": self.lot, "producer": self.producer, "produced_at": self.produced_at,
                "expires_at": self.expires_at, "entry": self.entry}


@dataclass(frozen=True, slots=True)
class ProductProducer:
    uscc: str
    name: str

    def to_json(self) -> dict[str, Any]:
        return {"uscc": self.uscc, "name": self.name}


@dataclass(frozen=True, slots=True)
class ProductView:
    gtin: str
    product: str
    category: str
    producers: tuple[ProductProducer, ...]
    lots: tuple[ProductLot, ...]  # newest first, at most MAX_LOTS
    lot_count: int

    def to_json(self) -> dict[str, Any]:
        return {"gtin": self.gtin, "product": self.product, "category": self.category,
                "producers": [p.to_json() for p in self.producers],
                "lot_count": self.lot_count, "lots": [lot.to_json() for lot in self.lots]}


def product(views: Views, gtin14: str, max_lots: int = MAX_LOTS) -> ProductView:
    """The product with GTIN-14 `gtin14` and its newest lots.

    Raises NotFound when no batch was ever recorded under the GTIN."""
    with views.reading() as tx:
        rows = tx.rows(
            "SELECT lot, producer, product, category, produced_at, expires_at, entry "
            "FROM v_batches WHERE gtin = ? ORDER BY produced_at DESC, entry DESC LIMIT ?",
            (gtin14, max_lots),
        )
        if not rows:
            raise NotFound(f"no batch of GTIN {gtin14} is recorded")
        count = int(tx.value("SELECT COUNT(*) FROM v_batches WHERE gtin = ?", (gtin14,)))
        producers = tuple(
            ProductProducer(r["uscc"], r["name"] or "")
            for r in tx.rows(
                "SELECT DISTINCT b.producer AS uscc, o.name FROM v_batches b "
                "LEFT JOIN v_organizations o ON o.uscc = b.producer WHERE b.gtin = ? "
                "ORDER BY b.producer",
                (gtin14,),
            )
        )
    lots = tuple(ProductLot(r["lot"], r["producer"], r["produced_at"], r["expires_at"], r["entry"])
                 for r in rows)
    newest = rows[0]
    return ProductView(gtin14, newest["product"], newest["category"], producers, lots, count)
