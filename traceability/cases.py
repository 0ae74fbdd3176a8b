"""Dispute cases (投诉登记、受理、调查、处理; EVENTS.md case.*, DISPUTES.md): the case record.

The case's own statements (opened, evidence, resolved, and corrections of any of them)
and the batches it names. The evidence bundle, with the whole upstream and downstream
of those batches and their proofs, is built from this by the bundle module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.errors import NotFound
from traceability.trace import BatchRef
from traceability.views import Views


@dataclass(frozen=True, slots=True)
class CaseStatement:
    entry: int
    type: str
    by: str
    recorded_at: str

    def to_json(self) -> dict[str, Any]:
        return {"entry": self.entry, "type": self.type, "by": self.by,
                "recorded_at": self.recorded_at}


@dataclass(frozen=True, slots=True)
class CaseView:
    case: str
    respondent: str
    opened_by: str
    status: str  # "open" or "resolved"
    finding: str | None
    summary: str
    channel: str
    opened_entry: int
    resolved_entry: int | None
    statements: tuple[CaseStatement, ...]
    batches: tuple[BatchRef, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case, "respondent": self.respondent, "opened_by": self.opened_by,
            "status": self.status, "finding": self.finding, "summary": self.summary,
            "channel": self.channel, "opened_entry": self.opened_entry,
            "resolved_entry": self.resolved_entry,
            "statements": [s.to_json() for s in self.statements],
            "batches": [b.to_json() for b in self.batches],
        }


def case_view(views: Views, case_id: str) -> CaseView:
    """Raises NotFound for a case that was never opened."""
    with views.reading() as tx:
        c = tx.row("SELECT * FROM v_cases WHERE case_id = ?", (case_id,))
        if c is None:
            raise NotFound(f"case {case_id} was never opened")
        statements = tuple(
            CaseStatement(r["entry"], r["type"], r["signer"], r["recorded_at"])
            for r in tx.rows(
                "SELECT e.entry, e.type, e.signer, e.recorded_at FROM v_case_entries c "
                "JOIN v_entries e ON e.entry = c.entry WHERE c.case_id = ? ORDER BY e.entry",
                (case_id,),
            )
        )
        batches = tuple(
            BatchRef(r["gtin"], r["lot"])
            for r in tx.rows(
                "SELECT gtin, lot FROM v_case_batches WHERE case_id = ? ORDER BY gtin, lot",
                (case_id,),
            )
        )
    return CaseView(c["case_id"], c["respondent"], c["opened_by"], c["status"], c["finding"],
                    c["summary"], c["channel"], c["opened_entry"], c["resolved_entry"],
                    statements, batches)


def cases_of(views: Views, org: str) -> list[str]:
    """The cases an organization opened or answers to, in the order they were opened."""
    with views.reading() as tx:
        rows = tx.rows(
            "SELECT case_id FROM v_cases WHERE respondent = ? OR opened_by = ? "
            "ORDER BY opened_entry",
            (org, org),
        )
    return [r["case_id"] for r in rows]


def check_opened(views: Views, case_id: str) -> None:
    """Raises NotFound for a case that was never opened: one indexed lookup, so an export
    of an unknown case is refused before it costs a build."""
    with views.reading() as tx:
        if tx.row("SELECT 1 AS found FROM v_cases WHERE case_id = ?", (case_id,)) is None:
            raise NotFound(f"case {case_id} was never opened")
