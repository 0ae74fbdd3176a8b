"""The timeline of an evidence bundle (DISPUTES.md): one line per entry, derived from it alone.

A bundle's timeline is not signed by anyone, so the verifier derives it again from the
entries and requires it to be exactly this; the rule lives here, beside the verifier,
so both sides apply the same one. `at` is the statement's `issued_at` as signed (when
the organization says it happened; the ledger's own `recorded_at` stays in the entry),
and lines run in the order of `at`, then of index. Summaries are plain English built
from the statement's fields; identifiers stay as they are (USCC, GTIN, lot).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ledger.statement_types import StatementType as T
from ledger.timefmt import parse_time

Statement = dict[str, Any]


def _batch(s: Statement) -> str:
    return f"{s['gtin']}/{s['lot']}"


def _org_registered(s: Statement) -> str:
    return f"{s['by']} registers {s['uscc']} {s['name']} ({', '.join(s['roles'])})"


def _key_registered(s: Statement) -> str:
    return f"{s['by']} registers a signing key for {s['org']}"


def _key_revoked(s: Statement) -> str:
    return f"{s['by']} revokes key {s['keyid'][:16]}… of {s['org']}: {s['reason']}"


def _produced(s: Statement) -> str:
    made = f"{s['by']} produces {_batch(s)} {s['product']}, {s['quantity']} {s['unit']}"
    inputs = s["inputs"]
    return made + (f" from {', '.join(_batch(i) for i in inputs)}" if inputs else "")


def _shipped(s: Statement) -> str:
    return (f"{s['by']} ships {s['quantity']} of {_batch(s)} to {s['to']} "
            f"(shipment {s['shipment']})")


def _received(s: Statement) -> str:
    return f"{s['by']} receives {s['quantity']} of shipment {s['shipment']}"


def _check(s: Statement) -> str:
    return (f"{s['by']}: {s['kind']} check of {_batch(s)} at {s['subject']}, {s['stage']} "
            f"stage: {s['verdict']} (report {s['report_no']})")


def _recall(s: Statement) -> str:
    return (f"{s['by']} recalls {s['gtin']} lots {', '.join(s['lots'])} "
            f"(level {s['level']}): {s['reason']}")


def _credit(s: Statement) -> str:
    return f"{s['by']} adjusts the credit of {s['org']} by {s['delta']:+d}: {s['reason']}"


def _blacklisted(s: Statement) -> str:
    return f"{s['by']} puts {s['org']} on the blacklist: {s['reason']}"


def _unlisted(s: Statement) -> str:
    return f"{s['by']} takes {s['org']} off the blacklist: {s['reason']}"


def _award(s: Statement) -> str:
    return f"{s['by']} grants {s['org']} {s['title']}, valid until {s['valid_until']}"


def _opened(s: Statement) -> str:
    batches = ", ".join(_batch(b) for b in s["batches"]) or "no batch"
    return (f"{s['by']} opens case {s['case']} against {s['respondent']} "
            f"({s['channel']}) about {batches}: {s['summary']}")


def _evidence(s: Statement) -> str:
    refs = ", ".join(str(r) for r in s["refs"]) or "none"
    return f"{s['by']} adds evidence to case {s['case']} (entries {refs}): {s['note']}"


def _resolved(s: Statement) -> str:
    return f"{s['by']} resolves case {s['case']}: {s['finding']}: {s['summary']}"


def _correction(s: Statement) -> str:
    what = "withdraws" if s["replacement"] is None else "corrects"
    return f"{s['by']} {what} entry {s['corrects']}: {s['reason']}"


_SUMMARIES: dict[str, Callable[[Statement], str]] = {
    T.ORG_REGISTERED: _org_registered,
    T.KEY_REGISTERED: _key_registered,
    T.KEY_REVOKED: _key_revoked,
    T.BATCH_PRODUCED: _produced,
    T.BATCH_SHIPPED: _shipped,
    T.BATCH_RECEIVED: _received,
    T.CHECK_RECORDED: _check,
    T.RECALL_ISSUED: _recall,
    T.CREDIT_ADJUSTED: _credit,
    T.BLACKLIST_ADDED: _blacklisted,
    T.BLACKLIST_REMOVED: _unlisted,
    T.AWARD_GRANTED: _award,
    T.CASE_OPENED: _opened,
    T.CASE_EVIDENCE: _evidence,
    T.CASE_RESOLVED: _resolved,
    T.CORRECTION: _correction,
}


def summary(statement: Statement) -> str:
    """One line for a statement (its JSON object as signed, every field present)."""
    return _SUMMARIES[statement["type"]](statement)


def timeline(statements: Iterable[tuple[int, Statement]]) -> list[dict[str, Any]]:
    """[{at, index, type, summary}] for (index, statement) pairs, by time then index.

    Precondition: every statement passed the ledger's checks (statements.parse_statement):
    a missing field raises KeyError, an unknown type KeyError, a bad time Rejected.
    """
    lines = [
        {"at": s["issued_at"], "index": index, "type": s["type"], "summary": summary(s)}
        for index, s in statements
    ]
    lines.sort(key=lambda line: (parse_time(line["at"]), line["index"]))
    return lines
