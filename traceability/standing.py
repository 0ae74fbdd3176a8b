"""An organization's standing (score and blacklisting) kept ready for the scan view.

The scan view shows the producer's score, grade and blacklisting on every request;
computing them from the credit lines each time was most of its cost. The projector
keeps, per organization, the standing's *timeline* from the last fact recorded about
it onward: after that time only the clock moves it, when an award or a listing runs
out, so the timeline names every such moment. A question at a time before the
timeline's start (the past) is answered the long way, by traceability.credit.

The rules are the same as traceability.credit's and traceability.blacklist's (a line
counts from its recording until its `valid_until`; the latest listing statement
recorded by then decides, with its `until`); tests/test_views_properties.py checks the
two agree after random histories. Kept in this module, not imported from those, because
they import the views, which import the projector that writes this table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from ledger.timefmt import parse_time
from traceability.policy import clamp_score
from traceability.sql import Tx

Segment = tuple[str, int, bool]  # (from when, score, blacklisted)


def timeline(lines: Sequence[tuple[int, str, str | None]],
             listings: Sequence[tuple[str, str | None, str]]) -> list[Segment]:
    """The standing from the latest recording onward: `lines` are (delta, recorded_at,
    valid_until), `listings` (action, until, recorded_at) in entry order."""
    times = [t for _, t, _ in lines] + [t for _, _, t in listings]
    start = max(times, key=parse_time)
    t0 = parse_time(start)
    moments = {start: t0}
    for when in [u for _, _, u in lines] + [u for _, u, _ in listings]:
        if when is not None and (t := parse_time(when)) > t0:
            moments[when] = t
    segments: list[Segment] = []
    for text, at in sorted(moments.items(), key=lambda m: m[1]):
        state = (_score(lines, at), _listed(listings, at))
        if not segments or segments[-1][1:] != state:
            segments.append((text, *state))
    return segments


def _score(lines: Sequence[tuple[int, str, str | None]], at: datetime) -> int:
    return clamp_score(sum(delta for delta, recorded, until in lines
                           if parse_time(recorded) <= at and (until is None or at < parse_time(until))))


def _listed(listings: Sequence[tuple[str, str | None, str]], at: datetime) -> bool:
    latest = None
    for action, until, recorded in listings:
        if parse_time(recorded) <= at:
            latest = (action, until)
    return latest is not None and latest[0] == "added" and (
        latest[1] is None or parse_time(latest[1]) > at)


# Organizations whose lines and listings one query reads, when refreshing many.
_PER_QUERY = 500


def refresh(tx: Tx, org: str) -> None:
    """Write `org`'s timeline again from its credit lines and listings (projector side)."""
    refresh_many(tx, [org])


def refresh_many(tx: Tx, orgs: Sequence[str]) -> None:
    """`refresh` for each of `orgs`, their lines and listings read a few hundred at a
    time. Lines in entry order, as listings: a timeline's texts for one moment given
    in two spellings then come out the same however the database finds the rows."""
    for start in range(0, len(orgs), _PER_QUERY):
        part = list(orgs[start:start + _PER_QUERY])
        marks = ", ".join("?" * len(part))
        lines: dict[str, list[tuple[int, str, str | None]]] = {}
        for org, delta, recorded_at, valid_until in tx.tuples(
            "SELECT org, delta, recorded_at, valid_until FROM v_credit_lines "
            f"WHERE org IN ({marks}) ORDER BY entry", part):
            lines.setdefault(org, []).append((delta, recorded_at, valid_until))
        listings: dict[str, list[tuple[str, str | None, str]]] = {}
        for org, action, until, recorded_at in tx.tuples(
            "SELECT org, action, until, recorded_at FROM v_blacklist "
            f"WHERE org IN ({marks}) ORDER BY entry", part):
            listings.setdefault(org, []).append((action, until, recorded_at))
        for org in part:
            _write(tx, org, lines.get(org, []), listings.get(org, []))


def _write(tx: Tx, org: str, lines: Sequence[tuple[int, str, str | None]],
           listings: Sequence[tuple[str, str | None, str]]) -> None:
    if not lines and not listings:
        tx.execute("DELETE FROM v_standing WHERE org = ?", (org,))
        return
    text = json.dumps([[s, score, int(listed)] for s, score, listed in timeline(lines, listings)],
                      separators=(",", ":"))
    tx.execute(
        "INSERT INTO v_standing (org, timeline) VALUES (?, ?) "
        "ON CONFLICT (org) DO UPDATE SET timeline = excluded.timeline",
        (org, text),
    )


def standing_at(text: str | None, at: datetime) -> tuple[int, bool] | None:
    """(score, blacklisted) at `at` from a stored timeline, or None when it does not
    say (no timeline, or `at` before its start)."""
    if text is None:
        return None
    found = None
    for when, score, listed in _parsed(text):
        if when > at:
            break
        found = (score, listed)
    return found


@lru_cache(maxsize=4096)
def _parsed(text: str) -> tuple[tuple[datetime, int, bool], ...]:
    # A timeline's text says the same forever (a new fact writes a new text), and the
    # scan view reads its producer's on every request: parse each text once.
    return tuple((parse_time(when), score, bool(listed)) for when, score, listed in json.loads(text))
