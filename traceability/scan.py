"""The scan view (PROTOCOL.md §5, "Scan view"): what a shopper's phone shows for a batch.

Status is the worst that applies, in the order recalled > failed_check >
producer_blacklisted > ok. A recall of any batch upstream flags every product made
from it (`"upstream": true`). The checkpoint is the ledger's latest signed tree head,
so an app can ask for inclusion proofs of the entries the view names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from ledger.errors import NotFound
from ledger.log.checkpoint import parse_checkpoint
from traceability.credit import credit_in
from traceability.standing import standing_at
from traceability.trace import batch_key, reach_sql
from traceability.views import Views


@dataclass(frozen=True, slots=True)
class ScanBatch:
    gtin: str
    lot: str
    product: str
    category: str
    produced_at: str
    expires_at: str | None
    standard: str
    entry: int

    def to_json(self) -> dict[str, Any]:
        return {"gtin": self.gtin, "lot": self.lot, "product": self.product,
                "category": self.category, "produced_at": self.produced_at,
                "expires_at": self.expires_at, "standard": self.standard, "entry": self.entry}


@dataclass(frozen=True, slots=True)
class ScanProducer:
    uscc: str
    name: str
    grade: str
    score: int
    blacklisted: bool

    def to_json(self) -> dict[str, Any]:
        return {"uscc": self.uscc, "name": self.name, "grade": self.grade, "score": self.score,
                "blacklisted": self.blacklisted}


@dataclass(frozen=True, slots=True)
class ScanCheck:
    verdict: str
    kind: str
    stage: str
    report_no: str
    lab: str  # the signer of the check
    entry: int

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "kind": self.kind, "stage": self.stage,
                "report_no": self.report_no, "lab": self.lab, "entry": self.entry}


@dataclass(frozen=True, slots=True)
class ScanRecall:
    gtin: str
    lot: str
    level: int
    reason: str
    upstream: bool
    entry: int

    def to_json(self) -> dict[str, Any]:
        return {"gtin": self.gtin, "lot": self.lot, "level": self.level, "reason": self.reason,
                "upstream": self.upstream, "entry": self.entry}


@dataclass(frozen=True, slots=True)
class Origin:
    uscc: str
    name: str
    region: str

    def to_json(self) -> dict[str, Any]:
        return {"uscc": self.uscc, "name": self.name, "region": self.region}


@dataclass(frozen=True, slots=True)
class CheckpointRef:
    tree_size: int
    root_hash: bytes

    def to_json(self) -> dict[str, Any]:
        return {"tree_size": self.tree_size, "root_hash": self.root_hash.hex()}


@dataclass(frozen=True, slots=True)
class ScanView:
    batch: ScanBatch
    producer: ScanProducer
    status: str
    checks: tuple[ScanCheck, ...]
    recalls: tuple[ScanRecall, ...]
    origin: tuple[Origin, ...]
    checkpoint: CheckpointRef | None

    def to_json(self) -> dict[str, Any]:
        return {
            "batch": self.batch.to_json(),
            "producer": self.producer.to_json(),
            "status": self.status,
            "checks": [c.to_json() for c in self.checks],
            "recalls": [r.to_json() for r in self.recalls],
            "origin": [o.to_json() for o in self.origin],
            "checkpoint": self.checkpoint.to_json() if self.checkpoint else None,
        }


# The ledger's latest signed checkpoint (Ledger.checkpoint), read from its table in the
# same database, as a column of the batch's row: in the view's own snapshot, so a tree
# head that covers every entry the view was built from, and no statement of its own.
_LATEST_NOTE = "(SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1)"


def scan(views: Views, gtin: str, lot: str, at: datetime | None = None) -> ScanView:
    """The scan view of batch (gtin, lot), credit and blacklist as at `at` (default now).

    Raises InvalidRequest for a bad GTIN or lot, NotFound for an unrecorded batch."""
    key = batch_key(gtin, lot)
    up = reach_sql("up")
    with views.reading() as tx:
        found = tx.row(
            "SELECT b.*, o.uscc AS registered, o.name AS producer_name, s.timeline, "
            + _LATEST_NOTE + " AS checkpoint_note "
            "FROM v_batches b LEFT JOIN v_organizations o ON o.uscc = b.producer "
            "LEFT JOIN v_standing s ON s.org = b.producer WHERE b.gtin = ? AND b.lot = ?",
            key,
        )
        if found is None:
            raise NotFound(f"batch {key[0]}/{key[1]} is not recorded")
        checks = tuple(
            ScanCheck(r["verdict"], r["kind"], r["stage"], r["report_no"], r["lab"], r["entry"])
            for r in tx.rows(
                "SELECT verdict, kind, stage, report_no, lab, entry FROM v_checks "
                "WHERE gtin = ? AND lot = ? AND withdrawn = 0 ORDER BY entry",
                key,
            )
        )
        # Its recalls and its origins, both over the batches upstream of it: one
        # statement, so the reach is walked once (and PostgreSQL is asked once).
        # Recalls (part 0) in entry order; origins (part 1), the producers of the batches
        # at the start of its chains (its own producer when it was made from nothing
        # recorded), in USCC order.
        upstream = tx.tuples(
            up + "SELECT 0, c.entry, c.gtin, c.lot, c.level, c.reason, "
            "NULL, NULL, NULL FROM reach r "
            "JOIN v_recalls c ON c.gtin = r.gtin AND c.lot = r.lot "
            "UNION ALL SELECT DISTINCT 1, CAST(NULL AS INTEGER), CAST(NULL AS TEXT), "
            "CAST(NULL AS TEXT), CAST(NULL AS INTEGER), CAST(NULL AS TEXT), "
            "o.uscc, o.name, o.region FROM reach r "
            "JOIN v_batches b ON b.gtin = r.gtin AND b.lot = r.lot "
            "JOIN v_organizations o ON o.uscc = b.producer "
            "WHERE NOT EXISTS (SELECT 1 FROM v_inputs i "
            "WHERE i.output_gtin = b.gtin AND i.output_lot = b.lot) "
            "ORDER BY 1, 2, 3, 4, 7",
            key,
        )
        recalls = tuple(
            ScanRecall(r[2], r[3], r[4], r[5], (r[2], r[3]) != key, r[1])
            for r in upstream if r[0] == 0
        )
        origin = tuple(Origin(r[6], r[7], r[8]) for r in upstream if r[0] == 1)
        # The standing the projector keeps answers now and later; the past, an
        # unregistered producer (NotFound) or no timeline takes the long way, in the
        # same snapshot.
        when = at or views.clock()
        kept = standing_at(found["timeline"], when) if found["registered"] else None
        if kept is None:
            full = credit_in(tx, views.policy, found["producer"], when)
            kept = (full.score, full.blacklisted)
    score, listed = kept
    note = found["checkpoint_note"]
    checkpoint = None if note is None else _checkpoint_ref(note)
    producer = ScanProducer(found["producer"], found["producer_name"] or "",
                            views.policy.grade(score, listed), score, listed)
    if recalls:
        status = "recalled"
    elif any(c.verdict == "fail" for c in checks):
        status = "failed_check"
    elif producer.blacklisted:
        status = "producer_blacklisted"
    else:
        status = "ok"
    batch = ScanBatch(found["gtin"], found["lot"], found["product"], found["category"],
                      found["produced_at"], found["expires_at"], found["standard"], found["entry"])
    return ScanView(batch, producer, status, checks, recalls, origin, checkpoint)


@lru_cache(maxsize=8)
def _checkpoint_ref(note: str) -> CheckpointRef:
    # The latest checkpoint changes only when entries are appended, and parsing its
    # signed note cost a scan a fifth of its time: parse each text once.
    cp = parse_checkpoint(note)
    return CheckpointRef(cp.size, cp.root_hash)
