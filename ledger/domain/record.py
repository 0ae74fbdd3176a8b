"""The receipt of one recorded statement, keyed by the statement's `id` (idempotency)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import get_topic


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


_TOPIC = get_topic(StatementRecord)


def recorded(
    statement_id: str, digest: str, index: int, recorded_at: str, leaf_hash: str, by: str,
    type: str, at: datetime,
) -> Aggregate.Event:
    """The record's creation event, made directly: one is made for every entry, and the
    aggregate itself is never needed by the writer that creates it."""
    return StatementRecord.Recorded(  # type: ignore[attr-defined,no-any-return]
        originator_id=StatementRecord.create_id(statement_id),
        originator_version=1,
        timestamp=at,
        originator_topic=_TOPIC,
        statement_id=statement_id,
        digest=digest,
        index=index,
        recorded_at=recorded_at,
        leaf_hash=leaf_hash,
        by=by,
        type=type,
    )
