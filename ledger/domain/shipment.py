"""A shipment of part of a batch from its holder to another organization.

Explicit event classes with their `apply`, as in ledger/domain/batch.py (why: there).
"""

from __future__ import annotations

from uuid import UUID

from ledger.domain.base import Aggregate

from ledger.domain.ids import named
from ledger.errors import Rejected, Rejection


class Shipment(Aggregate):
    @staticmethod
    def create_id(shipment: str) -> UUID:
        return named("shipment", shipment)

    class Dispatched(Aggregate.Created):
        shipment: str
        gtin: str
        lot: str
        sender: str
        receiver: str
        quantity: int
        entry: int

    def __init__(
        self, shipment: str, gtin: str, lot: str, sender: str, receiver: str, quantity: int,
        entry: int,
    ) -> None:
        self.shipment = shipment
        self.gtin = gtin
        self.lot = lot
        self.sender = sender
        self.receiver = receiver
        self.quantity = quantity
        self.shipped_entry = entry
        self.received_entry: int | None = None

    @classmethod
    def dispatch(
        cls, shipment: str, gtin: str, lot: str, sender: str, receiver: str, quantity: int,
        entry: int,
    ) -> Shipment:
        return cls._created(
            cls.Dispatched, cls.create_id(shipment), shipment=shipment, gtin=gtin, lot=lot,
            sender=sender, receiver=receiver, quantity=quantity, entry=entry,
        )

    def check_receivable(self, receiver: str, quantity: int) -> None:
        if receiver != self.receiver:
            raise Rejected(
                Rejection.WRONG_RECEIVER,
                f"shipment {self.shipment} is addressed to {self.receiver}, not {receiver}",
            )
        if self.received_entry is not None:
            raise Rejected(
                Rejection.ALREADY_RECEIVED,
                f"shipment {self.shipment} was received at entry {self.received_entry}",
            )
        # A short delivery is a dispute, not a receipt: recording it as received
        # in full or not at all keeps every batch's quantities conserved.
        if quantity != self.quantity:
            raise Rejected(
                Rejection.BAD_QUANTITY,
                f"shipment {self.shipment} carried {self.quantity}, not {quantity}; "
                "a short delivery is recorded as a case",
            )

    class Received(Aggregate.Event):
        receiver: str
        quantity: int
        entry: int

        def apply(self, shipment: Shipment) -> None:
            shipment.received_entry = self.entry

    def receive(self, receiver: str, quantity: int, entry: int) -> None:
        self.check_receivable(receiver, quantity)
        self.trigger_event(self.Received, receiver=receiver, quantity=quantity, entry=entry)
