"""What an evidence bundle holds (DISPUTES.md): exactly the entries that touch a case or a batch.

For a case: its own statements (opened, evidence, resolved) and the entries they cite
in `refs`. For the batches it names (or the one batch asked about): their whole
upstream and downstream, that is the `batch.produced` of every batch in the up and
the down trace, the shipments and receipts of those batches, their checks and their
recalls. Then the credit changes (`credit.adjusted`, `award.granted`,
`blacklist.added`/`removed`) of the organizations involved: the case's respondent and
complainant and everyone who produced, shipped or received a batch of the traces.
Then every correction of any of these. Last, the chain of trust: the `org.registered`,
`key.registered` and `key.revoked` entries of every key that signed any entry so far,
and of the organizations owning them, repeated until the registrations' own signers are
in, which ends at the root regulator's entries 0 and 1.

The content is selected with SQL over the view tables; the signing keys are read from
the entries themselves (no view keeps them), so the selection reads the entries it
selects, and hands them on to the bundle that needs them anyway.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.envelope import Envelope
from ledger.errors import LedgerError, NotFound
from ledger.log_reads import KeyHistory, StoredEntry
from ledger.statement_types import CASE_STEPS, StatementType as T
from ledger.statements import Statement, parse_statement
from traceability.sql import Tx
from traceability.trace import batch_key
from traceability.views import Views

__all__ = ["Selection", "batch_entries", "batch_selection", "case_entries", "case_selection"]

# The batches reachable up and down from the roots, roots included, as `reach(gtin, lot)`.
# `{roots}` is a SELECT of (gtin, lot) rows. UNION visits each batch once.
_REACH = """WITH RECURSIVE roots(gtin, lot) AS ({roots}),
    up(gtin, lot) AS (
        SELECT gtin, lot FROM roots
        UNION
        SELECT i.input_gtin, i.input_lot FROM v_inputs i
        JOIN up r ON i.output_gtin = r.gtin AND i.output_lot = r.lot),
    down(gtin, lot) AS (
        SELECT gtin, lot FROM roots
        UNION
        SELECT i.output_gtin, i.output_lot FROM v_inputs i
        JOIN down r ON i.input_gtin = r.gtin AND i.input_lot = r.lot),
    reach(gtin, lot) AS (SELECT gtin, lot FROM up UNION SELECT gtin, lot FROM down) """

_CASE_ROOTS = "SELECT gtin, lot FROM v_case_batches WHERE case_id = ?"
_BATCH_ROOT = "SELECT CAST(? AS TEXT), CAST(? AS TEXT)"

# Statement types a correction may withdraw whose rows then leave the views: found by
# reading the withdrawn statement, since no view row names its batch or organization.
_WITHDRAWABLE = (T.RECALL_ISSUED, T.CREDIT_ADJUSTED, T.AWARD_GRANTED)

# Signatures sit outside the (base64) payload, so in an entry's JCS text every
# `"keyid":"…"` is a signature's: a pattern finds them without parsing the JSON.
KEYID_PATTERN = _KEYID = re.compile(r'"keyid":"([0-9a-f]{64})"')

_CHUNK = 5000  # values per VALUES-list query, well inside SQLite's parameter limit
# Joins with a VALUES list are written `FROM list CROSS JOIN table WHERE …`: SQLite then
# looks each value up in the table's index instead of choosing to scan the table, and
# PostgreSQL reads it as the plain join it is.


@dataclass(frozen=True, slots=True)
class Selection:
    """The entries of a bundle, read, and the keys that signed them."""

    indexes: list[int]  # sorted
    entries: dict[int, StoredEntry]
    keys: dict[str, KeyHistory]  # every key that signs a selected entry


def case_entries(views: Views, case_id: str) -> list[int]:
    """The sorted log indexes of the entries that touch case `case_id`. Raises NotFound."""
    return case_selection(views, case_id).indexes


def batch_entries(views: Views, gtin: str, lot: str) -> list[int]:
    """The sorted log indexes of the entries that touch batch (gtin, lot): its trace up and
    down with what touches those batches. Raises InvalidRequest, NotFound."""
    return batch_selection(views, gtin, lot).indexes


def case_selection(views: Views, case_id: str) -> Selection:
    with views.reading() as tx:
        case = tx.row("SELECT respondent, opened_by FROM v_cases WHERE case_id = ?", (case_id,))
        if case is None:
            raise NotFound(f"case {case_id} was never opened")
        own = {r["entry"] for r in tx.rows(
            "SELECT entry FROM v_case_entries WHERE case_id = ?", (case_id,))}
        content = _content(tx, _CASE_ROOTS, (case_id,), {case["respondent"], case["opened_by"]})
    # The entries the case's statements cite are part of its record.
    own_entries = views.ledger.entries_at(own)
    cited = {ref for e in own_entries if (s := _statement(e)) is not None for ref in _refs(s)}
    return _close(views, content.indexes(views) | own | cited, {e.index: e for e in own_entries})


def batch_selection(views: Views, gtin: str, lot: str) -> Selection:
    key = batch_key(gtin, lot)
    with views.reading() as tx:
        if tx.row("SELECT entry FROM v_batches WHERE gtin = ? AND lot = ?", key) is None:
            raise NotFound(f"batch {key[0]}/{key[1]} is not recorded")
        content = _content(tx, _BATCH_ROOT, key, set())
    return _close(views, content.indexes(views), {})


@dataclass(frozen=True, slots=True)
class Content:
    entries: set[int]
    batches: set[tuple[str, str]]
    orgs: set[str]
    withdrawn: list[int]  # withdrawn recalls and credit changes anywhere: candidates

    def indexes(self, views: Views) -> set[int]:
        return self.entries | _named(views, self.withdrawn, self.batches, self.orgs)


def _content(tx: Tx, roots: str, params: Sequence[str], parties: set[str]) -> Content:
    """The batches' entries, checks, recalls, the credit changes of everyone involved."""
    reach = _REACH.format(roots=roots)
    found: set[int] = set()
    orgs = set(parties)
    for r in tx.rows(reach + "SELECT b.entry, b.producer FROM reach r "
                     "CROSS JOIN v_batches b WHERE b.gtin = r.gtin AND b.lot = r.lot", params):
        found.add(r["entry"])
        orgs.add(r["producer"])
    for r in tx.rows(reach + "SELECT s.entry, s.received_entry, s.sender, s.receiver "
                     "FROM reach r CROSS JOIN v_shipments s WHERE s.gtin = r.gtin AND s.lot = r.lot",
                     params):
        found.add(r["entry"])
        if r["received_entry"] is not None:
            found.add(r["received_entry"])
        orgs.update((r["sender"], r["receiver"]))
    batches = {(r["gtin"], r["lot"]) for r in tx.rows(reach + "SELECT gtin, lot FROM reach",
                                                        params)}
    found.update(r["entry"] for r in tx.rows(
        reach + "SELECT c.entry FROM reach r CROSS JOIN v_checks c "
        "WHERE c.gtin = r.gtin AND c.lot = r.lot "
        "UNION SELECT x.entry FROM reach r CROSS JOIN v_recalls x "
        "WHERE x.gtin = r.gtin AND x.lot = r.lot",
        params))
    for part in _chunks(sorted(orgs)):
        values = _values(part)
        found.update(r["entry"] for r in tx.rows(
            f"WITH o(org) AS (VALUES {values}) "
            "SELECT l.entry FROM o CROSS JOIN v_credit_lines l "
            "WHERE l.org = o.org AND l.rule = ? "
            "UNION SELECT a.entry FROM o CROSS JOIN v_awards a WHERE a.org = o.org "
            "UNION SELECT b.entry FROM o CROSS JOIN v_blacklist b WHERE b.org = o.org",
            [*part, T.CREDIT_ADJUSTED.value]))
    return Content(found, batches, orgs, _withdrawn(tx))


def _withdrawn(tx: Tx) -> list[int]:
    """Withdrawn recalls and credit changes: candidates, to be matched by their statements."""
    return [r["corrected"] for r in tx.rows(
        "SELECT DISTINCT c.corrected FROM v_corrections c "
        "JOIN v_entries e ON e.entry = c.corrected WHERE c.withdrawn = 1 AND e.type IN ("
        + ",".join("?" for _ in _WITHDRAWABLE) + ")", _WITHDRAWABLE)]


def _named(views: Views, candidates: list[int], batches: set[tuple[str, str]],
           orgs: set[str]) -> set[int]:
    """The candidates whose statement names one of the batches or organizations."""
    out: set[int] = set()
    for entry in views.ledger.entries_at(candidates) if candidates else []:
        s = _statement(entry)
        if s is None:
            continue
        b = s.body
        if (s.type == T.RECALL_ISSUED and any((b["gtin"], lot) in batches for lot in b["lots"])
                or s.type != T.RECALL_ISSUED and b.get("org") in orgs):
            out.add(entry.index)
    return out


def _close(views: Views, selected: set[int], read: dict[int, StoredEntry]) -> Selection:
    """Add corrections and the chain of trust until nothing new comes in; read every entry."""
    ledger = views.ledger
    selected = set(selected) | {0, 1}
    entries = dict(read)
    keys: dict[str, KeyHistory] = {}
    new = set(selected)
    while new:
        with views.reading() as tx:
            new |= _corrections(tx, new)
        selected |= new
        entries.update((e.index, e) for e in ledger.entries_at(new - entries.keys()))
        keyids = {k for i in new if i in entries for k in _KEYID.findall(entries[i].text)}
        found = ledger.key_history(keyids - keys.keys())
        keys.update(found)
        registrations = {
            i for h in found.values() for i in (h.registered_entry, *h.revoked_entries)}
        with views.reading() as tx:
            registrations |= _org_entries(tx, {h.org for h in found.values()})
        new = registrations - selected
    indexes = sorted(i for i in selected if i in entries)
    return Selection(indexes, {i: entries[i] for i in indexes}, keys)


def _corrections(tx: Tx, indexes: set[int]) -> set[int]:
    """Every correction of these entries, and of those corrections, to any depth."""
    out: set[int] = set()
    frontier = sorted(indexes)
    while frontier:
        found: set[int] = set()
        for part in _chunks(frontier):
            found.update(r["correcting"] for r in tx.rows(
                f"WITH t(entry) AS (VALUES {_values(part)}) "
                "SELECT c.correcting FROM t CROSS JOIN v_corrections c "
                "WHERE c.corrected = t.entry", part))
        frontier = sorted(found - out - indexes)
        out |= found
    return out


def _org_entries(tx: Tx, orgs: set[str]) -> set[int]:
    out: set[int] = set()
    for part in _chunks(sorted(orgs)):
        out.update(r["entry"] for r in tx.rows(
            f"WITH o(org) AS (VALUES {_values(part)}) "
            "SELECT g.entry FROM o CROSS JOIN v_organizations g WHERE g.uscc = o.org", part))
    return out


def _statement(entry: StoredEntry) -> Statement | None:
    try:
        return parse_statement(Envelope.from_json(entry.to_json()["envelope"]).statement)
    except LedgerError:
        return None


def _refs(s: Statement) -> list[int]:
    """The entries a case statement (or a correction's replacement of one) cites."""
    version = s.replacement if s.type == T.CORRECTION else s
    if version is None or version.type not in CASE_STEPS:
        return []
    return list(version.body.get("refs", []))


def _chunks(values: Sequence[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield list(values[start : start + _CHUNK])


def _values(part: Sequence[Any]) -> str:
    return ",".join("(?)" for _ in part)
