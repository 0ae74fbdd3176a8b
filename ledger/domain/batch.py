"""A product batch (GTIN-14 + lot): who holds how much of it, and where it went.

Conservation: quantity = sum(holdings) + in_transit + consumed, always.

Commands check, then trigger an event; each event's `apply` is the state change,
the same when the command runs and when the batch is rebuilt from stored events.
(Explicit event classes instead of the library's @event-decorated methods: these run
for every entry, and the decorators' argument handling cost more than the rules.)
"""

from __future__ import annotations

from uuid import UUID

from ledger.domain.base import Aggregate

from ledger.domain.ids import named
from ledger.errors import Rejected, Rejection


class Batch(Aggregate):
    @staticmethod
    def create_id(gtin: str, lot: str) -> UUID:
        return named("batch", gtin, lot)

    class Produced(Aggregate.Created):
        gtin: str
        lot: str
        producer: str
        quantity: int
        entry: int

    def __init__(self, gtin: str, lot: str, producer: str, quantity: int, entry: int) -> None:
        self.gtin = gtin
        self.lot = lot
        self.producer = producer
        self.quantity = quantity
        self.produced_entry = entry
        self.holdings: dict[str, int] = {producer: quantity}
        self.in_transit = 0
        self.consumed = 0

    @classmethod
    def produce(cls, gtin: str, lot: str, producer: str, quantity: int, entry: int) -> Batch:
        return cls._created(
            cls.Produced, cls.create_id(gtin, lot), gtin=gtin, lot=lot, producer=producer,
            quantity=quantity, entry=entry,
        )

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

    class Shipped(Aggregate.Event):
        sender: str
        quantity: int
        shipment: str
        entry: int

        def apply(self, batch: Batch) -> None:
            batch._take(self.sender, self.quantity)
            batch.in_transit += self.quantity

    def ship(self, sender: str, quantity: int, shipment: str, entry: int) -> None:
        self.check_holds(sender, quantity)
        self.trigger_event(
            self.Shipped, sender=sender, quantity=quantity, shipment=shipment, entry=entry
        )

    class Received(Aggregate.Event):
        receiver: str
        quantity: int
        shipment: str
        entry: int

        def apply(self, batch: Batch) -> None:
            batch.in_transit -= self.quantity
            batch.holdings[self.receiver] = batch.held_by(self.receiver) + self.quantity

    def receive(self, receiver: str, quantity: int, shipment: str, entry: int) -> None:
        self.trigger_event(
            self.Received, receiver=receiver, quantity=quantity, shipment=shipment, entry=entry
        )

    class Consumed(Aggregate.Event):
        holder: str
        quantity: int
        into: str
        entry: int

        def apply(self, batch: Batch) -> None:
            batch._take(self.holder, self.quantity)
            batch.consumed += self.quantity

    def consume(self, holder: str, quantity: int, into: str, entry: int) -> None:
        self.check_holds(holder, quantity)
        self.trigger_event(self.Consumed, holder=holder, quantity=quantity, into=into, entry=entry)
