"""The aggregates a statement's rules will read, known before the rules run, so that a
whole batch can load them in one query (UnitOfWork.prefetch)."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

from ledger.domain.batch import Batch
from ledger.domain.case import Case
from ledger.domain.key import Key
from ledger.domain.organization import Organization
from ledger.domain.shipment import Shipment
from ledger.envelope import Envelope
from ledger.keys import key_id
from ledger.statement_types import StatementType as T
from ledger.statements import Statement

_ORG_FIELDS = ("uscc", "org", "to", "subject", "respondent")


def references(envelope: Envelope, s: Statement) -> Iterator[UUID]:
    """Ids the rules may look up; a superset is harmless, a miss only costs a query."""
    yield Organization.create_id(s.by)
    for sig in envelope.signatures:
        yield Key.create_id(sig.keyid)
    b = s.body
    for name in _ORG_FIELDS:
        if isinstance(b.get(name), str):
            yield Organization.create_id(b[name])
    if "gtin" in b and "lot" in b:
        yield Batch.create_id(b["gtin"], b["lot"])
    for lot in b.get("lots") or ():
        yield Batch.create_id(b["gtin"], lot)
    for ref in [*(b.get("inputs") or ()), *(b.get("batches") or ())]:
        yield Batch.create_id(ref["gtin"], ref["lot"])
    if isinstance(b.get("shipment"), str):
        yield Shipment.create_id(b["shipment"])
    if isinstance(b.get("case"), str):
        yield Case.create_id(b["case"])
    if s.type == T.KEY_REGISTERED:
        yield Key.create_id(key_id(b["public_key"]))
    elif s.type == T.KEY_REVOKED:
        yield Key.create_id(b["keyid"])
