"""Enterprise quality credit (信用分类管理, EVENTS.md "Credit"): score, grade, and why.

The score at a time `at` is the sum of the organization's credit lines recorded by
then, an award's line counting only while `at` is before its `valid_until`. Every line
names the entry that caused it and the rule and policy that priced it, so `explain`
adds up to the score. Corrections are already folded into the lines by the views: a
withdrawn statement has no line, a replaced one has the line of its replacement.

An organization can have thousands of lines (one per adjustment), so over HTTP the
explain is listed a page at a time (PROTOCOL.md §5, traceability.paging); the score is
still summed over every line, and the pages that follow one cursor explain the score
taken when the first page was.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ledger.errors import NotFound, Rejected
from ledger.timefmt import format_time, parse_time
from traceability import paging
from traceability.blacklist import _event as blacklist_event
from traceability.blacklist import in_force
from traceability.policy import SCORE_CEILING, SCORE_FLOOR, DEFAULT_POLICY, CreditPolicy, clamp_score
from traceability.sql import Tx
from traceability.views import Views

__all__ = ["DEFAULT_POLICY", "Award", "Credit", "CreditLine", "CreditPolicy", "ExplainCursor",
           "ExplainPage", "HistoryPoint", "credit", "explain"]


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
class ExplainCursor:
    """Where a page of `explain` lines ended: after the line of entry `after`, in the
    explain of the score taken at `at`. The time travels with the position so that the
    pages that follow explain that same score: an award that runs out, or a line
    recorded, between two pages would otherwise make the pages add up to neither score."""

    at: datetime
    after: int

    def to_text(self) -> str:
        # Microseconds: the time must come back as it went, or a line recorded in the
        # same second could count on one page and not on the next.
        at = self.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return paging.cursor_text({"at": at, "after": self.after})

    @classmethod
    def from_text(cls, text: str) -> ExplainCursor:
        """Raises InvalidRequest for text that is not a cursor of an explain list."""
        position = paging.cursor_position(text, {"at": str, "after": int})
        try:
            at = parse_time(str(position["at"]))
        except Rejected:
            at = None
        after = int(position["after"])
        if at is None or after < 0:
            raise paging.not_a_cursor()
        return cls(at, after)


@dataclass(frozen=True, slots=True)
class ExplainPage:
    """A run of a credit's explain lines, in order: `offset` lines come before it, `total`
    in all; `next` is where the following page starts (None on the last page)."""

    lines: tuple[CreditLine, ...]
    next: ExplainCursor | None
    offset: int
    total: int

    def to_json(self) -> dict[str, Any]:
        """The page as PROTOCOL.md lists answer: `{"items", "next"}`."""
        return {"items": [line.to_json() for line in self.lines],
                "next": None if self.next is None else self.next.to_text()}


@dataclass(frozen=True, slots=True)
class Credit:
    uscc: str
    at: datetime
    policy: str
    score: int
    grade: str
    blacklisted: bool
    awards: tuple[Award, ...]
    explain: tuple[CreditLine, ...]  # every line, the clamp line (if any) last
    history: tuple[HistoryPoint, ...]

    def explain_page(self, after: int | None = None,
                     limit: int = paging.DEFAULT_LIMIT) -> ExplainPage:
        """At most `limit` explain lines, those after the line of entry `after` (from the
        first line when None). Lines are in entry order and one organization has at most
        one line per entry, so an entry is a position no later page can repeat or skip;
        the clamp line, caused by no entry, comes last. Requires 1 <= limit <= 500
        (InvalidRequest otherwise)."""
        paging.check_limit(limit)
        rest = [line for line in self.explain
                if after is None or line.entry is None or line.entry > after]
        shown = tuple(rest[:limit])
        following = None
        last = shown[-1].entry if shown else None
        if len(rest) > limit and last is not None:  # only the last line has no entry
            following = ExplainCursor(self.at, last)
        return ExplainPage(shown, following, len(self.explain) - len(rest), len(self.explain))

    def to_json(self, page: ExplainPage | None = None) -> dict[str, Any]:
        """The credit with `page` as its `explain` and the page's `next` as `explain_next`;
        without a page, every line (and `explain_next` null)."""
        lines = self.explain if page is None else page.lines
        following = None if page is None or page.next is None else page.next.to_text()
        return {
            "score": self.score,
            "grade": self.grade,
            "blacklisted": self.blacklisted,
            "policy": self.policy,
            "awards": [a.to_json() for a in self.awards],
            "explain": [line.to_json() for line in lines],
            "explain_next": following,
            "history": [p.to_json() for p in self.history],
        }


def credit(views: Views, uscc: str, at: datetime | None = None) -> Credit:
    """The credit of `uscc` at `at` (default: the views' clock, i.e. now).

    Raises NotFound for an organization that is not registered."""
    when = at or views.clock()
    with views.reading() as tx:
        return credit_in(tx, views.policy, uscc, when)


def explain(views: Views, uscc: str, cursor: ExplainCursor | None = None,
            limit: int = paging.DEFAULT_LIMIT) -> ExplainPage:
    """One page of the explain of `uscc`'s credit: the first, taken now, or the one after
    `cursor`, of the score taken at the cursor's time. The score is always summed over
    every line; only the listing is cut. Raises NotFound, and InvalidRequest for a bad
    limit."""
    paging.check_limit(limit)
    taken = credit(views, uscc, None if cursor is None else cursor.at)
    return taken.explain_page(None if cursor is None else cursor.after, limit)


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
