"""The receipt of one recorded statement, keyed by the statement's `id` (idempotency)."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event


class StatementRecord(Aggregate):
    @staticmethod
    def create_id(statement_id: str) -> UUID:
        return UUID(statement_id)

    @event("Recorded")
    def __init__(
        self, statement_id: str, digest: str, index: int, recorded_at: str, leaf_hash: str,
        by: str, type: str,
    ) -> None:
        self.statement_id = statement_id
        self.digest = digest  # SHA-256 of the canonical envelope, hex
        self.index = index
        self.recorded_at = recorded_at
        self.leaf_hash = leaf_hash
        self.by = by
        self.type = type
