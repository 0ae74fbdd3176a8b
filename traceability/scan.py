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
from traceability.sql import Tx
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


_INT, _TEXT = "CAST(NULL AS INTEGER)", "CAST(NULL AS TEXT)"


def _texts(n: int) -> str:
    return ", ".join([_TEXT] * n)


@lru_cache(maxsize=8)  # one text per ledger's log table: built once, not every scan
def _scan_sql(log_horizon: str) -> str:
    """Everything a scan shows, in one statement: one snapshot without a transaction
    around it, and one round trip (it was four statements between BEGIN and ROLLBACK:
    six round trips on PostgreSQL). Rows of (part, entry, number, text × 12), in part
    order:

    0. the recalls of the batch and of every batch upstream of it, in entry order:
       (0, entry, level, gtin, lot, reason);
    1. its origins, the producers of the batches at the start of its chains (its own
       producer when it was made from nothing recorded), in USCC order:
       (1, -, -, uscc, name, region);
    2. its checks, in entry order: (2, entry, -, verdict, kind, stage, report_no, lab);
    3. always one row: the log's horizon (`Views.holds`), with the batch, its producer's
       registration and standing, and the ledger's latest signed checkpoint, read in
       the same snapshot, so a tree head that covers every entry the view was built
       from (NULLs for a batch not recorded): (3, entry, horizon, gtin, lot, product,
       category, produced_at, expires_at, standard, producer, registered, name,
       timeline, checkpoint note).

    The parameters are (gtin, lot) three times: the reach, the checks, the batch."""
    return (
        reach_sql("up")
        + "SELECT 0, c.entry, c.level, c.gtin, c.lot, c.reason, " + _texts(9)
        + " FROM reach r JOIN v_recalls c ON c.gtin = r.gtin AND c.lot = r.lot "
        "UNION ALL SELECT DISTINCT 1, " + _INT + ", " + _INT + ", o.uscc, o.name, o.region, "
        + _texts(9) + " FROM reach r "
        "JOIN v_batches b ON b.gtin = r.gtin AND b.lot = r.lot "
        "JOIN v_organizations o ON o.uscc = b.producer "
        "WHERE NOT EXISTS (SELECT 1 FROM v_inputs i "
        "WHERE i.output_gtin = b.gtin AND i.output_lot = b.lot) "
        "UNION ALL SELECT 2, k.entry, " + _INT + ", k.verdict, k.kind, k.stage, k.report_no, "
        "k.lab, " + _texts(7) + " FROM v_checks k "
        "WHERE k.gtin = ? AND k.lot = ? AND k.withdrawn = 0 "
        "UNION ALL SELECT 3, b.entry, h.horizon, b.gtin, b.lot, b.product, b.category, "
        "b.produced_at, b.expires_at, b.standard, b.producer, o.uscc, o.name, s.timeline, "
        "(SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1) "
        "FROM (SELECT " + log_horizon + " AS horizon) h "
        "LEFT JOIN v_batches b ON b.gtin = ? AND b.lot = ? "
        "LEFT JOIN v_organizations o ON o.uscc = b.producer "
        "LEFT JOIN v_standing s ON s.org = b.producer "
        "ORDER BY 1, 2, 4, 5"
    )


def scan(views: Views, gtin: str, lot: str, at: datetime | None = None) -> ScanView:
    """The scan view of batch (gtin, lot), credit and blacklist as at `at` (default now).

    Raises InvalidRequest for a bad GTIN or lot, NotFound for an unrecorded batch."""
    key = batch_key(gtin, lot)
    sql, params = _scan_sql(views.log_horizon), key * 3
    when = at or views.clock()
    rows = views.statement(sql, params)
    # Entries the views have not taken in yet (a reading snapshot catches up first), or
    # the past, an unregistered producer or no timeline: the long way, in one snapshot.
    view = _scan_view(views, key, rows, when, None) if views.holds(rows[-1][2]) else None
    if view is None:
        with views.reading() as tx:
            view = _scan_view(views, key, tx.tuples(sql, params), when, tx)
    assert view is not None  # with a snapshot to work out credit in, there is an answer
    return view


def _scan_view(views: Views, key: tuple[str, str], rows: list[tuple[Any, ...]],
               when: datetime, tx: Tx | None) -> ScanView | None:
    """The view from the statement's rows; with no `tx` to compute credit in, None
    when the standing the projector keeps cannot answer for `when`."""
    found = rows[-1]
    (_, entry, _, gtin, lot, product, category, produced_at, expires_at, standard,
     producer, registered, name, timeline, note) = found
    if gtin is None:
        raise NotFound(f"batch {key[0]}/{key[1]} is not recorded")
    # The standing the projector keeps answers now and later.
    kept = standing_at(timeline, when) if registered else None
    if kept is None:
        if tx is None:
            return None
        full = credit_in(tx, views.policy, producer, when)
        kept = (full.score, full.blacklisted)
    score, listed = kept
    recalls = tuple(ScanRecall(r[3], r[4], r[2], r[5], (r[3], r[4]) != key, r[1])
                    for r in rows if r[0] == 0)
    origin = tuple(Origin(r[3], r[4], r[5]) for r in rows if r[0] == 1)
    checks = tuple(ScanCheck(r[3], r[4], r[5], r[6], r[7], r[1]) for r in rows if r[0] == 2)
    producer_view = ScanProducer(producer, name or "", views.policy.grade(score, listed),
                                 score, listed)
    if recalls:
        status = "recalled"
    elif any(c.verdict == "fail" for c in checks):
        status = "failed_check"
    elif producer_view.blacklisted:
        status = "producer_blacklisted"
    else:
        status = "ok"
    batch = ScanBatch(gtin, lot, product, category, produced_at, expires_at, standard, entry)
    checkpoint = None if note is None else _checkpoint_ref(note)
    return ScanView(batch, producer_view, status, checks, recalls, origin, checkpoint)


@lru_cache(maxsize=8)
def _checkpoint_ref(note: str) -> CheckpointRef:
    # The latest checkpoint changes only when entries are appended, and parsing its
    # signed note cost a scan a fifth of its time: parse each text once.
    cp = parse_checkpoint(note)
    return CheckpointRef(cp.size, cp.root_hash)
