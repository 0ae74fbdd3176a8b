"""Enterprise quality credit (信用分类管理, EVENTS.md "Credit"): score, grade, and why.

The score at a time `at` is the sum of the organization's credit lines recorded by
then, an award's line counting only while `at` is before its `valid_until`. Every line
names the entry that caused it and the rule and policy that priced it, so `explain`
adds up to the score. Corrections are already folded into the lines by the views: a
withdrawn statement has no line, a replaced one has the line of its replacement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.errors import NotFound
from ledger.timefmt import format_time, parse_time
from traceability.blacklist import _event as blacklist_event
from traceability.blacklist import in_force
from traceability.policy import SCORE_CEILING, SCORE_FLOOR, DEFAULT_POLICY, CreditPolicy, clamp_score
from traceability.sql import Tx
from traceability.views import Views

__all__ = ["DEFAULT_POLICY", "Award", "Credit", "CreditLine", "CreditPolicy", "HistoryPoint",
           "credit"]


@dataclass(frozen=True, slots=True)
class CreditLine:
    entry: int | None  # None only on the clamp line, which no entry causes
    delta: int
    reason: str
    rule: str
    policy: str
    recorded_at: str
    valid_until: str | None = None

    def counts_at(self, at: datetime) -> bool:
        return parse_time(self.recorded_at) <= at and (
            self.valid_until is None or at < parse_time(self.valid_until)
        )

    def to_json(self) -> dict[str, Any]:
        return {"entry": self.entry, "delta": self.delta, "reason": self.reason,
                "rule": self.rule}


@dataclass(frozen=True, slots=True)
class Award:
    title: str
    valid_until: str
    entry: int

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "valid_until": self.valid_until, "entry": self.entry}


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """The score just after `entry` changed it at time `at` (an award's line also
    changes it once more, when the award runs out)."""

    at: str
    entry: int
    delta: int
    score: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "entry": self.entry, "delta": self.delta, "score": self.score,
                "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Credit:
    uscc: str
    at: datetime
    policy: str
    score: int
    grade: str
    blacklisted: bool
    awards: tuple[Award, ...]
    explain: tuple[CreditLine, ...]
    history: tuple[HistoryPoint, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "grade": self.grade,
            "blacklisted": self.blacklisted,
            "policy": self.policy,
            "awards": [a.to_json() for a in self.awards],
            "explain": [line.to_json() for line in self.explain],
            "history": [p.to_json() for p in self.history],
        }


def credit(views: Views, uscc: str, at: datetime | None = None) -> Credit:
    """The credit of `uscc` at `at` (default: the views' clock, i.e. now).

    Raises NotFound for an organization that is not registered."""
    when = at or views.clock()
    with views.reading() as tx:
        return credit_in(tx, views.policy, uscc, when)


def credit_in(tx: Tx, policy: CreditPolicy, uscc: str, when: datetime) -> Credit:
    """`credit` inside a reading transaction: the scan view asks it in its own."""
    if tx.row("SELECT uscc FROM v_organizations WHERE uscc = ?", (uscc,)) is None:
        raise NotFound(f"organization {uscc} is not registered")
    lines = [
        CreditLine(r["entry"], r["delta"], r["reason"], r["rule"], r["policy"],
                   r["recorded_at"], r["valid_until"])
        for r in tx.rows(
            "SELECT entry, delta, reason, rule, policy, recorded_at, valid_until "
            "FROM v_credit_lines WHERE org = ? ORDER BY entry", (uscc,)
        )
    ]
    awards = [
        Award(r["title"], r["valid_until"], r["entry"])
        for r in tx.rows(
            "SELECT title, valid_until, entry, recorded_at FROM v_awards WHERE org = ? "
            "ORDER BY entry", (uscc,)
        )
        if parse_time(r["recorded_at"]) <= when < parse_time(r["valid_until"])
    ]
    listings = tx.rows("SELECT * FROM v_blacklist WHERE org = ? ORDER BY entry", (uscc,))
    blacklisted = uscc in in_force(map(blacklist_event, listings), when)
    explain = tuple(line for line in lines if line.counts_at(when))
    total = sum(line.delta for line in explain)
    score = clamp_score(total)
    if score != total:
        bound = "at most" if total > SCORE_CEILING else "at least"
        explain += (CreditLine(
            None, score - total, f"the score is {bound} {score} ({SCORE_FLOOR}…{SCORE_CEILING}); "
            f"the lines add up to {total}", "clamp", policy.name, format_time(when)),)
    return Credit(
        uscc, when, policy.name, score, policy.grade(score, blacklisted),
        blacklisted, tuple(awards), explain, _history(lines, when),
    )


def _history(lines: list[CreditLine], at: datetime) -> tuple[HistoryPoint, ...]:
    changes: list[tuple[datetime, int, int, str, str]] = []
    for line in lines:
        recorded = parse_time(line.recorded_at)
        ends = parse_time(line.valid_until) if line.valid_until is not None else None
        if recorded > at or (ends is not None and ends <= recorded):
            continue  # not yet recorded at `at`, or an award that ran out before it was granted
        changes.append((recorded, line.entry, line.delta, line.recorded_at, line.reason))
        if ends is not None and ends <= at:
            changes.append((ends, line.entry, -line.delta, str(line.valid_until),
                            f"ran out: {line.reason}"))
    points, total = [], 0
    for _, entry, delta, when, reason in sorted(changes, key=lambda c: (c[0], c[1])):
        total += delta
        points.append(HistoryPoint(when, entry, delta, clamp_score(total), reason))
    return tuple(points)
