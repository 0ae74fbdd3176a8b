"""Who may sign what, and what each statement does to the aggregates (EVENTS.md).

Each rule checks a statement against the state before it and, if it holds, changes
the aggregates through their commands. Signatures have been checked already; the
signer's organization is `ctx.signer`.

A correction's replacement is held to the rule of its type too, "as if it had been
issued instead of the original" (EVENTS.md "Corrections"): the rule runs with
`ctx.replacing` set to the corrected entry, checks everything a plain statement would
be checked for, and stops before the effects, which the original had already (the
fields behind them are fixed: statement_types.FACTS).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.domain.batch import Batch
from ledger.domain.case import Case
from ledger.domain.key import Key
from ledger.domain.organization import Organization
from ledger.domain.shipment import Shipment
from ledger.errors import Rejected, Rejection
from ledger.keys import check_prime_order, encode_public_key, key_id
from ledger.statement_types import FACTS, StatementType as T
from ledger.statements import Statement
from ledger.unit_of_work import UnitOfWork


@dataclass
class Context:
    uow: UnitOfWork
    statement: Statement
    signer: Organization
    index: int
    now: datetime
    read_statement: Callable[[int], Statement]
    # The entry a correction replaces, when this statement is that correction's
    # replacement: checked as if issued instead, never applied again.
    replacing: int | None = None

    @property
    def by(self) -> str:
        return self.statement.by

    @property
    def body(self) -> dict[str, Any]:
        return self.statement.body

    def org(self, uscc: str, field: str) -> Organization:
        org = self.uow.get(Organization, Organization.create_id(uscc))
        if org is None:
            raise Rejected(Rejection.UNKNOWN_ORG, f"{field}: organization {uscc} is not registered")
        return org

    def batch(self, gtin: str, lot: str, field: str) -> Batch:
        batch = self.uow.get(Batch, Batch.create_id(gtin, lot))
        if batch is None:
            raise Rejected(Rejection.UNKNOWN_BATCH, f"{field}: batch {gtin}/{lot} is not recorded")
        return batch

    def case(self, case_id: str) -> Case:
        case = self.uow.get(Case, Case.create_id(case_id))
        if case is None:
            raise Rejected(Rejection.UNKNOWN_CASE, f"case {case_id} was never opened")
        return case

    def regulator_only(self) -> None:
        self.signer.check_role("regulator", doing=self.statement.type)

    def check_authority_over(self, org: Organization, doing: str) -> None:
        """EVENTS.md "Roles": authority runs down from the root, never sideways or up.
        An organization manages its own keys; the root regulator those of every other
        regulator; any regulator those of organizations that are not regulators. Only the
        root manages the root's keys."""
        if org.uscc == self.by:
            return
        if org.is_root:
            raise Rejected(
                Rejection.ROLE_FORBIDDEN,
                f"{self.by} may not sign {doing}: only the root regulator {org.uscc} "
                "manages its own keys",
            )
        if org.has_role("regulator"):
            if not self.signer.is_root:
                raise Rejected(
                    Rejection.ROLE_FORBIDDEN,
                    f"{self.by} may not sign {doing}: {org.uscc} is a regulator, whose keys "
                    "only the root regulator or the regulator itself manages",
                )
            return
        self.signer.check_role("regulator", doing=doing)

    def check_refs(self, refs: list[int], field: str = "refs") -> None:
        for i, ref in enumerate(refs):
            if ref >= self.index:
                raise Rejected(
                    Rejection.UNKNOWN_ENTRY,
                    f"{field}[{i}]: entry {ref} does not exist before this one ({self.index})",
                )


def org_registered(ctx: Context) -> None:
    ctx.regulator_only()
    b = ctx.body
    if "regulator" in b["roles"] and not ctx.signer.is_root:
        raise Rejected(
            Rejection.ROLE_FORBIDDEN,
            f"{ctx.by} may not register {b['uscc']} as a regulator: only the root "
            "regulator registers regulators",
        )
    if ctx.replacing is not None:
        return
    if ctx.uow.get(Organization, Organization.create_id(b["uscc"])) is not None:
        raise Rejected(Rejection.DUPLICATE_ORG, f"organization {b['uscc']} is already registered")
    ctx.uow.add(Organization.register(b["uscc"], b["name"], b["roles"], b["region"], entry=ctx.index))


def key_registered(ctx: Context) -> None:
    b = ctx.body
    # An organization adds its own keys with a key it already has; anyone else
    # registering keys for it must have authority over it (a lab may not, say).
    ctx.check_authority_over(ctx.org(b["org"], "org"), f"{T.KEY_REGISTERED} for {b['org']}")
    check_prime_order(b["public_key"], "public_key")
    if ctx.replacing is not None:
        return
    new_id = key_id(b["public_key"])
    if ctx.uow.get(Key, Key.create_id(new_id)) is not None:
        raise Rejected(Rejection.DUPLICATE_KEY, f"key {new_id} is already registered")
    ctx.uow.add(
        Key.register(
            new_id, b["org"], encode_public_key(b["public_key"]), b["valid_from"], entry=ctx.index
        )
    )


def key_revoked(ctx: Context) -> None:
    b = ctx.body
    ctx.check_authority_over(ctx.org(b["org"], "org"), f"{T.KEY_REVOKED} for {b['org']}")
    key = ctx.uow.get(Key, Key.create_id(b["keyid"]))
    if key is None or key.org != b["org"]:
        raise Rejected(Rejection.UNKNOWN_KEY, f"keyid: {b['keyid']} is not a key of {b['org']}")
    if ctx.replacing is not None:
        return
    key.revoke(b["revoked_at"], entry=ctx.index)


def batch_produced(ctx: Context) -> None:
    ctx.signer.check_role("producer", doing=T.BATCH_PRODUCED)
    b = ctx.body
    if ctx.replacing is not None:
        return
    if ctx.uow.get(Batch, Batch.create_id(b["gtin"], b["lot"])) is not None:
        raise Rejected(
            Rejection.DUPLICATE_BATCH, f"batch {b['gtin']}/{b['lot']} was recorded before"
        )
    into = f"{b['gtin']}/{b['lot']}"
    for i, used in enumerate(b["inputs"]):
        field = f"inputs[{i}]"
        source = ctx.batch(used["gtin"], used["lot"], field)
        try:
            source.consume(ctx.by, used["quantity"], into=into, entry=ctx.index)
        except Rejected as e:
            raise Rejected(e.kind, f"{field}: {e.detail}") from None
    ctx.uow.add(Batch.produce(b["gtin"], b["lot"], ctx.by, b["quantity"], entry=ctx.index))


def batch_shipped(ctx: Context) -> None:
    b = ctx.body
    batch = ctx.batch(b["gtin"], b["lot"], "gtin/lot")
    ctx.org(b["to"], "to")
    if b["to"] == ctx.by:
        raise Rejected(Rejection.BAD_FIELDS, "to: an organization does not ship to itself")
    if ctx.replacing is not None:
        return
    if ctx.uow.get(Shipment, Shipment.create_id(b["shipment"])) is not None:
        raise Rejected(
            Rejection.DUPLICATE_SHIPMENT, f"shipment {b['shipment']} was recorded before"
        )
    batch.ship(ctx.by, b["quantity"], b["shipment"], entry=ctx.index)
    ctx.uow.add(
        Shipment.dispatch(
            b["shipment"], b["gtin"], b["lot"], ctx.by, b["to"], b["quantity"], entry=ctx.index
        )
    )


def batch_received(ctx: Context) -> None:
    b = ctx.body
    shipment = ctx.uow.get(Shipment, Shipment.create_id(b["shipment"]))
    if shipment is None:
        raise Rejected(Rejection.UNKNOWN_SHIPMENT, f"shipment {b['shipment']} was never shipped")
    if ctx.replacing is not None:
        return
    shipment.receive(ctx.by, b["quantity"], entry=ctx.index)
    batch = ctx.batch(shipment.gtin, shipment.lot, "shipment")
    batch.receive(ctx.by, b["quantity"], b["shipment"], entry=ctx.index)


def check_recorded(ctx: Context) -> None:
    b = ctx.body
    ctx.batch(b["gtin"], b["lot"], "gtin/lot")
    ctx.org(b["subject"], "subject")
    if ctx.signer.has_role("lab") or ctx.signer.has_role("regulator"):
        return
    if b["kind"] == "self" and b["subject"] == ctx.by:
        return
    raise Rejected(
        Rejection.ROLE_FORBIDDEN,
        f"{ctx.by} may record only self checks on itself; a {b['kind']} check is "
        "signed by a lab or a regulator",
    )


def recall_issued(ctx: Context) -> None:
    b = ctx.body
    regulator = ctx.signer.has_role("regulator")
    for i, lot in enumerate(b["lots"]):
        batch = ctx.batch(b["gtin"], lot, f"lots[{i}]")
        if not regulator and batch.producer != ctx.by:
            raise Rejected(
                Rejection.ROLE_FORBIDDEN,
                f"lots[{i}]: {batch} was produced by {batch.producer}; only its producer "
                "or a regulator recalls it",
            )


def credit_adjusted(ctx: Context) -> None:
    ctx.regulator_only()
    ctx.org(ctx.body["org"], "org")
    ctx.check_refs(ctx.body["refs"])


def blacklist_added(ctx: Context) -> None:
    ctx.regulator_only()
    ctx.check_refs(ctx.body["refs"])
    org = ctx.org(ctx.body["org"], "org")
    if ctx.replacing is None:
        org.blacklist(entry=ctx.index, at=ctx.now, until=ctx.body["until"])


def blacklist_removed(ctx: Context) -> None:
    ctx.regulator_only()
    ctx.check_refs(ctx.body["refs"])
    org = ctx.org(ctx.body["org"], "org")
    if ctx.replacing is None:
        org.delist(entry=ctx.index, at=ctx.now)


def award_granted(ctx: Context) -> None:
    ctx.regulator_only()
    ctx.org(ctx.body["org"], "org")


def case_opened(ctx: Context) -> None:
    # Any registered organization may complain; persons complain through a regulator.
    b = ctx.body
    ctx.org(b["respondent"], "respondent")
    for i, ref in enumerate(b["batches"]):
        ctx.batch(ref["gtin"], ref["lot"], f"batches[{i}]")
    if ctx.replacing is not None:
        return
    if ctx.uow.get(Case, Case.create_id(b["case"])) is not None:
        raise Rejected(Rejection.DUPLICATE_CASE, f"case {b['case']} was opened before")
    ctx.uow.add(Case.open(b["case"], ctx.by, b["respondent"], entry=ctx.index))


# The most entries a case's evidence statements may cite in all (DISPUTES.md bundles):
# two full statements (1,000 refs each). With the registrations of their signers (a few
# entries per signer at most) that stays well under the largest bundle the server
# publishes (20,000 entries), so citations alone never make a case's bundle too large
# to serve, nor a copy of the whole log.
MAX_CASE_CITATIONS = 2000


def case_evidence(ctx: Context) -> None:
    case = ctx.case(ctx.body["case"])
    case.check_open()
    if not (ctx.signer.has_role("regulator") or ctx.signer.has_role("lab") or case.is_party(ctx.by)):
        raise Rejected(
            Rejection.NOT_A_PARTY,
            f"{ctx.by} is neither a party to case {case.case}, a lab nor a regulator",
        )
    refs = ctx.body["refs"]
    ctx.check_refs(refs)
    # Every cited entry goes into the case's public bundle, with its chain of trust: the
    # total is bounded, so that no party can grow a case into a copy of the whole log. A
    # correction's replacement cites anew (its refs join the original's in the bundle).
    if case.cited + len(refs) > MAX_CASE_CITATIONS:
        raise Rejected(
            Rejection.CASE_CITES_TOO_MUCH,
            f"refs: case {case.case} cites {case.cited} entries already; {len(refs)} more "
            f"would pass the bound of {MAX_CASE_CITATIONS} per case",
        )
    case.cite(len(refs))


def case_resolved(ctx: Context) -> None:
    ctx.regulator_only()
    ctx.check_refs(ctx.body["refs"])
    case = ctx.case(ctx.body["case"])
    if ctx.replacing is None:
        case.resolve(ctx.body["finding"], entry=ctx.index)


def may_withdraw(kind: str) -> bool:
    """Whether a statement of this type may be withdrawn (a correction with a null
    replacement): only where the write side acted on nothing (statement_types.FACTS)."""
    return FACTS[kind].may_withdraw


def correction(ctx: Context) -> None:
    b = ctx.body
    ctx.check_refs([b["corrects"]], "corrects")
    old = ctx.read_statement(b["corrects"])
    if old.by != ctx.by and not ctx.signer.has_role("regulator"):
        raise Rejected(
            Rejection.ROLE_FORBIDDEN,
            f"entry {b['corrects']} was signed by {old.by}; only it or a regulator corrects it",
        )
    _check_replacement(ctx, b["corrects"], old, ctx.statement.replacement, "replacement")


def _check_replacement(
    ctx: Context, corrected: int, old: Statement, new: Statement | None, where: str
) -> None:
    """A replacement keeps the corrected statement's type, id, by and fixed fields, and
    passes its type's rule as if it had been issued instead of the original, by the same
    signer, against the ledger as it stands now. Correcting a correction is checked all
    the way down: its own replacement is held to the statement the corrected correction
    corrects, so no depth of nesting escapes the rule."""
    if new is None:
        if not may_withdraw(old.type):
            raise Rejected(
                Rejection.BAD_CORRECTION,
                f"{where}: a {old.type} statement cannot be withdrawn; record a new "
                "statement that undoes it",
            )
        return
    if (new.type, new.id, new.by) != (old.type, old.id, old.by):
        raise Rejected(
            Rejection.BAD_CORRECTION,
            f"{where} must keep the corrected statement's type, id and by "
            f"({old.type}, {old.id}, {old.by})",
        )
    for name in FACTS[old.type].fixed:
        if new.body.get(name) != old.body.get(name):
            raise Rejected(
                Rejection.BAD_CORRECTION,
                f"{where}.{name}: a correction may not change {name} of a {old.type}",
            )
    if old.type == T.CORRECTION:
        target = old.body["corrects"]
        _check_replacement(ctx, target, ctx.read_statement(target), new.replacement,
                           f"{where}.replacement")
        return
    signer = ctx.signer if new.by == ctx.by else ctx.org(new.by, f"{where}.by")
    as_if = Context(ctx.uow, new, signer, ctx.index, ctx.now, ctx.read_statement,
                    replacing=corrected)
    try:
        RULES[new.type](as_if)
    except Rejected as e:
        raise Rejected(e.kind, f"{where}: {e.detail}") from None


RULES: dict[str, Callable[[Context], None]] = {  # by StatementType
    T.ORG_REGISTERED: org_registered,
    T.KEY_REGISTERED: key_registered,
    T.KEY_REVOKED: key_revoked,
    T.BATCH_PRODUCED: batch_produced,
    T.BATCH_SHIPPED: batch_shipped,
    T.BATCH_RECEIVED: batch_received,
    T.CHECK_RECORDED: check_recorded,
    T.RECALL_ISSUED: recall_issued,
    T.CREDIT_ADJUSTED: credit_adjusted,
    T.BLACKLIST_ADDED: blacklist_added,
    T.BLACKLIST_REMOVED: blacklist_removed,
    T.AWARD_GRANTED: award_granted,
    T.CASE_OPENED: case_opened,
    T.CASE_EVIDENCE: case_evidence,
    T.CASE_RESOLVED: case_resolved,
    T.CORRECTION: correction,
}


def may_refuse_after_a_change(s: Statement) -> bool:
    """Whether the rule may change one aggregate and then refuse on another: a batch
    made of several inputs consumes them one by one. The writer discards a refused
    batch; a replay that keeps its state in memory must undo such a change."""
    return s.type == T.BATCH_PRODUCED and len(s.body["inputs"]) > 1
