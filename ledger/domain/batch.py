"""A product batch (GTIN-14 + lot): who holds how much of it, and where it went.

Conservation: quantity = sum(holdings) + in_transit + consumed, always.
"""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.domain.ids import named
from ledger.errors import Rejected, Rejection


class Batch(Aggregate):
    @staticmethod
    def create_id(gtin: str, lot: str) -> UUID:
        return named("batch", gtin, lot)

    @event("Produced")
    def __init__(self, gtin: str, lot: str, producer: str, quantity: int, entry: int) -> None:
        self.gtin = gtin
        self.lot = lot
        self.producer = producer
        self.quantity = quantity
        self.produced_entry = entry
        self.holdings: dict[str, int] = {producer: quantity}
        self.in_transit = 0
        self.consumed = 0

    def __str__(self) -> str:
        return f"batch {self.gtin}/{self.lot}"

    def held_by(self, org: str) -> int:
        return self.holdings.get(org, 0)

    def check_holds(self, org: str, quantity: int) -> None:
        held = self.held_by(org)
        if held == 0:
            raise Rejected(Rejection.NOT_HELD, f"{org} holds none of {self}")
        if quantity > held:
            raise Rejected(
                Rejection.INSUFFICIENT_QUANTITY,
                f"{org} holds {held} of {self}, fewer than the {quantity} asked for",
            )

    def _take(self, org: str, quantity: int) -> None:
        left = self.holdings[org] - quantity
        if left:
            self.holdings[org] = left
        else:
            del self.holdings[org]

    @event("Shipped")
    def ship(self, sender: str, quantity: int, shipment: str, entry: int) -> None:
        self.check_holds(sender, quantity)
        self._take(sender, quantity)
        self.in_transit += quantity

    @event("Received")
    def receive(self, receiver: str, quantity: int, shipment: str, entry: int) -> None:
        self.in_transit -= quantity
        self.holdings[receiver] = self.held_by(receiver) + quantity

    @event("Consumed")
    def consume(self, holder: str, quantity: int, into: str, entry: int) -> None:
        self.check_holds(holder, quantity)
        self._take(holder, quantity)
        self.consumed += quantity
