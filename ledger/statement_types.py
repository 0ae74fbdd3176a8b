"""The statement types of EVENTS.md, and what is fixed about each, in one table.

Every module that treats types differently (the field checks in statements.py, the
rules, the timeline, the projector, the exports and the pages) names a type by its
`StatementType` member and reads the per-type facts from `FACTS`; the type's spelling
on the wire appears here and nowhere else. A new type is added here first: the tests in
tests/test_statement_types.py then say which of those modules still lack it.

`StatementType` is a `str` enum, so a member equals, hashes and serialises as its wire
name: a parsed statement's `type` (a plain string) finds the member's entries in every
table keyed by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class StatementType(StrEnum):
    ORG_REGISTERED = "org.registered"
    KEY_REGISTERED = "key.registered"
    KEY_REVOKED = "key.revoked"
    BATCH_PRODUCED = "batch.produced"
    BATCH_SHIPPED = "batch.shipped"
    BATCH_RECEIVED = "batch.received"
    CHECK_RECORDED = "check.recorded"
    RECALL_ISSUED = "recall.issued"
    CREDIT_ADJUSTED = "credit.adjusted"
    BLACKLIST_ADDED = "blacklist.added"
    BLACKLIST_REMOVED = "blacklist.removed"
    AWARD_GRANTED = "award.granted"
    CASE_OPENED = "case.opened"
    CASE_EVIDENCE = "case.evidence"
    CASE_RESOLVED = "case.resolved"
    CORRECTION = "correction"


T = StatementType

# The steps of a complaint case (EVENTS.md "Complaints"): each body names its `case`.
CASE_STEPS = frozenset(kind for kind in StatementType if kind.startswith("case."))


@dataclass(frozen=True)
class TypeFacts:
    """What does not change about a type.

    `label_zh`: what the type is called on Chinese pages (English pages show its name).
    `subject`: EVENTS.md "Corrections", what a statement is about; a correction may not
    move it onto another batch, organization, key or case.
    `acted_on`: beyond the subject, what the write side acted on (quantities moved,
    roles and keys trusted, a key's validity, a case's parties), or None where it acted
    on nothing. A replacement cannot change these, since the aggregates already hold
    their effects, and a statement with effects cannot be withdrawn: such a mistake is
    undone by a statement of its own (a shipment back, a key revocation, a delisting).
    This is stricter than EVENTS.md's table, which names only the subject; a plain
    statement could not undo these effects either."""

    label_zh: str
    subject: tuple[str, ...]
    acted_on: tuple[str, ...] | None = None

    @property
    def fixed(self) -> tuple[str, ...]:
        """The fields a correction's replacement must keep."""
        return self.subject + (self.acted_on or ())

    @property
    def may_withdraw(self) -> bool:
        """Whether a correction with a null replacement may withdraw a statement of this
        type: only where the write side acted on nothing."""
        return self.acted_on is None


FACTS: dict[str, TypeFacts] = {  # by StatementType: a member is its wire name
    T.ORG_REGISTERED: TypeFacts("登记组织", ("uscc",), ("roles",)),
    T.KEY_REGISTERED: TypeFacts("登记密钥", ("org", "public_key"), ("valid_from",)),
    T.KEY_REVOKED: TypeFacts("吊销密钥", ("org", "keyid"), ("revoked_at",)),
    T.BATCH_PRODUCED: TypeFacts("生产", ("gtin", "lot"), ("quantity", "inputs")),
    T.BATCH_SHIPPED: TypeFacts("发货", ("gtin", "lot", "shipment", "to"), ("quantity",)),
    T.BATCH_RECEIVED: TypeFacts("收货", ("shipment",), ("quantity",)),
    T.CHECK_RECORDED: TypeFacts("检验", ("gtin", "lot", "subject", "kind")),
    T.RECALL_ISSUED: TypeFacts("召回", ("gtin",)),
    T.CREDIT_ADJUSTED: TypeFacts("信用调整", ("org",)),
    T.BLACKLIST_ADDED: TypeFacts("列入黑名单", ("org",), ("until",)),
    T.BLACKLIST_REMOVED: TypeFacts("移出黑名单", ("org",), ()),
    T.AWARD_GRANTED: TypeFacts("授予荣誉", ("org",)),
    T.CASE_OPENED: TypeFacts("立案", ("case",), ("respondent",)),
    T.CASE_EVIDENCE: TypeFacts("证据", ("case",)),
    T.CASE_RESOLVED: TypeFacts("办结", ("case",), ()),
    T.CORRECTION: TypeFacts("更正", ("corrects",)),
}

