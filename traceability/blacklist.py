"""The quality-dishonesty blacklist (质量失信"黑名单", EVENTS.md): who is on it, since when, why.

An organization is listed at a time `at` when its latest blacklist statement recorded
by then is `blacklist.added` and that listing has no `until`, or an `until` after `at`.
The write side keeps a listing until it is removed; the public view also honours the
end date the regulator gave.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.timefmt import parse_time
from traceability.sql import Row
from traceability.views import Views


@dataclass(frozen=True, slots=True)
class BlacklistEvent:
    """One blacklist.added or blacklist.removed statement, as now in force."""

    org: str
    action: str  # "added" or "removed"
    reason: str
    basis: str | None
    refs: tuple[int, ...]
    until: str | None
    entry: int
    recorded_at: str

    def to_json(self) -> dict[str, Any]:
        return {"org": self.org, "action": self.action, "reason": self.reason,
                "basis": self.basis, "refs": list(self.refs), "until": self.until,
                "entry": self.entry, "recorded_at": self.recorded_at}


@dataclass(frozen=True, slots=True)
class Listing:
    """An organization on the blacklist: the listing that put it there."""

    org: str
    name: str
    reason: str
    basis: str | None
    since: str  # recorded_at of the listing entry
    until: str | None
    entry: int

    def to_json(self) -> dict[str, Any]:
        return {"org": self.org, "name": self.name, "reason": self.reason, "basis": self.basis,
                "since": self.since, "until": self.until, "entry": self.entry}


def _event(r: Row) -> BlacklistEvent:
    return BlacklistEvent(r["org"], r["action"], r["reason"], r["basis"],
                          tuple(json.loads(r["refs"])), r["until"], r["entry"], r["recorded_at"])


def in_force(events: Iterable[BlacklistEvent], at: datetime) -> dict[str, BlacklistEvent]:
    """The listing in force at `at` for each listed organization (events in entry order)."""
    latest: dict[str, BlacklistEvent] = {}
    for e in events:
        if parse_time(e.recorded_at) <= at:
            latest[e.org] = e
    return {
        org: e for org, e in latest.items()
        if e.action == "added" and (e.until is None or parse_time(e.until) > at)
    }


def history(views: Views, org: str | None = None) -> list[BlacklistEvent]:
    """Every listing and delisting, in log order; of one organization if given."""
    with views.reading() as tx:
        if org is None:
            rows = tx.rows("SELECT * FROM v_blacklist ORDER BY entry")
        else:
            rows = tx.rows("SELECT * FROM v_blacklist WHERE org = ? ORDER BY entry", (org,))
    return [_event(r) for r in rows]


def is_listed(views: Views, org: str, at: datetime | None = None) -> bool:
    return org in in_force(history(views, org), at or views.clock())


def current(views: Views, at: datetime | None = None) -> list[Listing]:
    """The organizations on the blacklist at `at` (default: now), by date of listing."""
    when = at or views.clock()
    with views.reading() as tx:
        rows = tx.rows(
            "SELECT k.*, o.name FROM v_blacklist k "
            "LEFT JOIN v_organizations o ON o.uscc = k.org ORDER BY k.entry"
        )
    names = {r["org"]: r["name"] or "" for r in rows}
    listed = in_force((_event(r) for r in rows), when)
    return sorted(
        (Listing(e.org, names[e.org], e.reason, e.basis, e.recorded_at, e.until, e.entry)
         for e in listed.values()),
        key=lambda item: item.entry,
    )
