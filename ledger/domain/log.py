"""The append-only log: entry i is event version i+1 of one stream (PROTOCOL.md §3).

The log is never replayed as an aggregate: its state is its size, read from its last
event. Optimistic concurrency on (LOG_ID, version) is what keeps indexes gap-free
when several processes append: two writers claiming the same index cannot both commit.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import get_topic

from ledger.domain.base import make_event
from ledger.domain.ids import LEDGER_ID, LOG_ID


# The statement id of an entry the audit put in the log without applying it (a stand-in
# for one that failed): readers must check such an entry in full, not trust it.
UNVERIFIED = "unverified-"


class Appended(Aggregate.Event):
    """Entry `index` of the log: its exact JCS bytes (ASCII) and its leaf hash (hex)."""

    index: int
    entry: str
    leaf_hash: str
    statement_id: str


# The topic the log's events are stored under: what readers of the log select.
APPENDED_TOPIC = get_topic(Appended)


def appended(index: int, entry: str, leaf_hash: str, statement_id: str, at: datetime) -> Appended:
    # One per entry: built as the aggregates' events are (ledger/domain/base.py), with the
    # attributes in the order of the dataclass fields, which is the order they are stored
    # in. The dataclass __init__ would only add a check that LOG_ID is a UUID.
    event: Appended = make_event(Appended, {
        "originator_id": LOG_ID, "originator_version": index + 1, "timestamp": at,
        "index": index, "entry": entry, "leaf_hash": leaf_hash, "statement_id": statement_id,
    })
    return event


class LedgerConfig(Aggregate):
    """What a ledger is created with: its origin, log key and root regulator."""

    @staticmethod
    def create_id() -> UUID:
        return LEDGER_ID

    @event("Created")
    def __init__(self, origin: str, log_key: str, root_org: str) -> None:
        self.origin = origin
        self.log_key = log_key  # verifier key string, PROTOCOL.md §4
        self.root_org = root_org
