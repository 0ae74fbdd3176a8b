"""A shipment of part of a batch from its holder to another organization."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.domain.ids import named
from ledger.errors import Rejected, Rejection


class Shipment(Aggregate):
    @staticmethod
    def create_id(shipment: str) -> UUID:
        return named("shipment", shipment)

    @event("Dispatched")
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

    @event("Received")
    def receive(self, receiver: str, quantity: int, entry: int) -> None:
        self.check_receivable(receiver, quantity)
        self.received_entry = entry
