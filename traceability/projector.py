"""Applying one log entry to the view tables (EVENTS.md, statement by statement).

Every handler writes rows keyed by the entry it applies, and is safe to run again for
the same entry: that is how a correction works. A correction finds the entry it
finally corrects (through corrections of corrections), takes away what that entry
contributed, and applies the statement now in force in its place, under the original
entry's index and recording time, marked `corrected_by`. A withdrawn statement
contributes nothing, except that a withdrawn check stays listed, flagged.
"""

from __future__ import annotations

import json
from base64 import b64decode
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.errors import LedgerError
from ledger.log.entry_format import written_parts
from ledger.rules import may_withdraw
from ledger.statement_types import CASE_STEPS, FACTS, StatementType as T
from ledger.statements import Statement, parse_statement
from ledger.timefmt import format_time
from traceability.policy import CreditPolicy
from traceability.sql import Tx
from traceability.standing import refresh_many as refresh_standing

ReadStatement = Callable[[int], "Statement | None"]


def text_time(at: datetime | None) -> str | None:
    """A statement's time as RFC 3339 text, in whole seconds unless it had a fraction."""
    if at is None:
        return None
    if at.microsecond:
        return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return format_time(at)


def may_replace(old: Statement, new: Statement | None) -> bool:
    """The ledger's rule for a correction (ledger.rules.correction), as a predicate."""
    fixed = FACTS[old.type].fixed if old.type in FACTS else ()
    if new is None:
        return may_withdraw(old.type)
    return (new.type, new.id, new.by) == (old.type, old.id, old.by) and all(
        new.body.get(name) == old.body.get(name) for name in fixed
    )


@dataclass(frozen=True, slots=True)
class Parsed:
    """A log entry read for the views: its statement, or why it could not be read."""

    index: int
    recorded_at: str
    statement: Statement | None
    problem: str | None = None


def parse_entry(index: int, text: str, *, trusted: bool = False) -> Parsed:
    """Read an entry's text (JCS of {envelope, recorded_at}); never raises for bad content.

    Only the statement is read, not the envelope around it: the ledger checked the
    envelope's form, canonical spelling and signatures when it recorded the entry,
    and `qledger audit` checks them again. Checking them here too was half the cost
    of building the views from the log. `trusted` goes one step further for an entry
    the ledger recorded as verified: its statement's fields are not checked again
    either (parse_statement's trusted read), which was most of what was left."""
    try:
        fields = written_parts(text) if trusted else None
        if fields is not None:
            return parse_written(index, *fields)
        entry = json.loads(text)
        obj = json.loads(b64decode(entry["envelope"]["payload"], validate=True))
        recorded_at = str(entry["recorded_at"])
        return Parsed(index, recorded_at, parse_statement(obj, trusted=trusted))
    except (LedgerError, ValueError, KeyError, TypeError, AttributeError) as e:
        return _unreadable(index, e)


def parse_written(index: int, payload: str, recorded_at: str) -> Parsed:
    """`parse_entry` of a verified entry in the form the ledger writes it, given its
    payload (base64) and recording time as read from that form (entry_format.written_parts)."""
    try:
        # The payload of a verified entry is canonical JSON, so UTF-8: decoding it
        # as the envelope reader does halves json.loads' time on bytes (its
        # encoding detection, then a slow decode for any non-ASCII text).
        obj = json.loads(b64decode(payload, validate=True).decode("utf-8"))
        return Parsed(index, recorded_at, parse_statement(obj, trusted=True))
    except (LedgerError, ValueError, KeyError, TypeError, AttributeError) as e:
        return _unreadable(index, e)


def _unreadable(index: int, e: Exception) -> Parsed:
    return Parsed(index, "", None, f"{type(e).__name__}: {e}"[:500])


@dataclass(frozen=True, slots=True)
class Source:
    """Where a statement's effects are filed: its entry, and the correction in force."""

    index: int
    recorded_at: str
    corrected_by: int | None = None


# Tables whose rows belong to exactly one entry and are re-made when it is corrected.
_OWNED_BY_ENTRY = ("v_credit_lines", "v_recalls", "v_blacklist", "v_awards",
                   "v_case_batches", "v_case_entries")


class Projector:
    def __init__(
        self, tx: Tx, policy: CreditPolicy, read_statement: ReadStatement, *,
        standing_per_chunk: bool = False,
    ) -> None:
        self.tx = tx
        self.policy = policy
        self.read_statement = read_statement
        # Organizations whose credit lines or listings the current entry changed: their
        # standing (traceability.standing) is written again once the entry is applied,
        # or with `standing_per_chunk`, once for the chunk when `finish` is called. The
        # same rows result: a standing is a function of the organization's lines and
        # listings, which only an entry that touches it changes, and nothing the
        # projector does reads v_standing.
        self._touched: set[str] = set()
        self._standing_per_chunk = standing_per_chunk

    def entry(self, parsed: Parsed) -> None:
        s = parsed.statement
        if s is None:
            self.tx.execute(
                "INSERT INTO v_skipped (entry, problem) VALUES (?, ?) "
                "ON CONFLICT (entry) DO NOTHING",
                (parsed.index, parsed.problem or "unreadable"),
            )
            return
        self.tx.execute(
            "INSERT INTO v_entries (entry, type, signer, recorded_at, statement_id) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (entry) DO NOTHING",
            (parsed.index, s.type, s.by, parsed.recorded_at, s.id),
        )
        if s.type == T.CORRECTION:
            self.correction(s, Source(parsed.index, parsed.recorded_at))
        else:
            self.apply(s, Source(parsed.index, parsed.recorded_at))
        if not self._standing_per_chunk:
            self.finish()

    def finish(self) -> None:
        """Write the standing of the organizations touched since the last call."""
        refresh_standing(self.tx, sorted(self._touched))
        self._touched.clear()

    def apply(self, s: Statement, at: Source) -> None:
        handler = _HANDLERS.get(s.type)
        if handler is not None:  # key registrations and revocations have no view
            handler(self, s, at)

    # ---- corrections ---------------------------------------------------------

    def correction(self, s: Statement, at: Source) -> None:
        target = s.body["corrects"]
        self.tx.execute(
            "INSERT INTO v_corrections (correcting, corrected, withdrawn, reason) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (correcting) DO NOTHING",
            (at.index, target, int(s.replacement is None), s.body["reason"]),
        )
        root = self._root(target)
        if root is None:
            return
        original = self.read_statement(root)
        found = self.tx.row("SELECT recorded_at FROM v_entries WHERE entry = ?", (root,))
        if original is None or found is None:
            return
        self.retract(root)
        now, corrected_by = self.effective(root)
        source = Source(root, found["recorded_at"], corrected_by)
        if now is None:
            self.withdraw(original, source)
        else:
            self.apply(now, source)
        # The correction belongs to the record of the case it touches, before and after.
        for version in (original, now):
            if version is not None and version.type in CASE_STEPS:
                self._case_entry(version.body["case"], at.index)

    def _root(self, index: int) -> int | None:
        """The entry that is not itself a correction at the end of a chain of corrections."""
        while True:
            kind = self.tx.value("SELECT type FROM v_entries WHERE entry = ?", (index,))
            if kind != T.CORRECTION:
                return index if kind is not None else None
            s = self.read_statement(index)
            if s is None:
                return None
            index = s.body["corrects"]  # fixed by the rules: a correction keeps its target

    def effective(self, index: int) -> tuple[Statement | None, int | None]:
        """The statement in force for an entry (None when withdrawn), and the latest
        correction that put it in force (None when the entry stands as signed).

        The latest correction naming the entry wins, as it stands after its own
        corrections, if its replacement passes the ledger's rule for a correction
        against the entry. The ledger applies that rule to a correction of a correction
        only one level deep, so here it is applied at every level: a correction that
        fails it is not in force.
        """
        original = self.read_statement(index)
        if original is None:
            return None, None
        for r in self.tx.rows(
            "SELECT correcting FROM v_corrections WHERE corrected = ? ORDER BY correcting DESC",
            (index,),
        ):
            correction, changed_by = self.effective(r["correcting"])
            if correction is not None and correction.type == T.CORRECTION and may_replace(
                original, correction.replacement
            ):
                return correction.replacement, max(r["correcting"], changed_by or 0)
        return original, None

    def retract(self, index: int) -> None:
        """Take away what an entry contributed to the tables it alone writes to."""
        self._touched.update(r["org"] for r in self.tx.rows(
            "SELECT org FROM v_credit_lines WHERE entry = ? "
            "UNION SELECT org FROM v_blacklist WHERE entry = ?", (index, index)))
        for table in _OWNED_BY_ENTRY:
            self.tx.execute(f"DELETE FROM {table} WHERE entry = ?", (index,))
        self.tx.execute(
            "UPDATE v_cases SET status = 'open', finding = NULL, resolved_entry = NULL "
            "WHERE resolved_entry = ?",
            (index,),
        )

    def withdraw(self, original: Statement, at: Source) -> None:
        if original.type == T.CHECK_RECORDED:
            self.tx.execute(
                "UPDATE v_checks SET withdrawn = 1, corrected_by = ? WHERE entry = ?",
                (at.corrected_by, at.index),
            )
        elif original.type == T.CASE_EVIDENCE:
            # Withdrawn evidence stays on the case's record, beside its withdrawal.
            self._case_entry(original.body["case"], at.index)

    # ---- credit --------------------------------------------------------------

    def _line(
        self, at: Source, org: str, delta: int, rule: str, reason: str,
        valid_until: str | None = None,
    ) -> None:
        if not delta:
            return
        if at.corrected_by is not None:
            reason += f" (as corrected by entry {at.corrected_by})"
        self._touched.add(org)
        self.tx.execute(
            "INSERT INTO v_credit_lines "
            "(entry, org, delta, reason, rule, policy, recorded_at, valid_until) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (entry, org) DO NOTHING",
            (at.index, org, delta, reason, rule, self.policy.name, at.recorded_at, valid_until),
        )

    # ---- statements ----------------------------------------------------------

    def org_registered(self, s: Statement, at: Source) -> None:
        b = s.body
        self.tx.execute(
            "INSERT INTO v_organizations (uscc, name, roles, region, legacy_code, entry) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (uscc) DO UPDATE SET "
            "name = excluded.name, region = excluded.region, legacy_code = excluded.legacy_code",
            (b["uscc"], b["name"], json.dumps(b["roles"]), b["region"], b["legacy_code"], at.index),
        )
        self._line(at, b["uscc"], self.policy.start, "start", "registered: starting score")
        if at.corrected_by is not None:
            self.tx.execute("UPDATE v_checks SET region = ? WHERE subject = ?",
                            (b["region"], b["uscc"]))

    def batch_produced(self, s: Statement, at: Source) -> None:
        b = s.body
        self.tx.execute(
            "INSERT INTO v_batches (gtin, lot, producer, product, category, unit, quantity, "
            "produced_at, expires_at, standard, entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (gtin, lot) DO UPDATE SET product = excluded.product, "
            "category = excluded.category, unit = excluded.unit, "
            "produced_at = excluded.produced_at, expires_at = excluded.expires_at, "
            "standard = excluded.standard",
            (b["gtin"], b["lot"], s.by, b["product"], b["category"], b["unit"], b["quantity"],
             text_time(b["produced_at"]), text_time(b["expires_at"]), b["standard"], at.index),
        )
        self.tx.executemany(
            "INSERT INTO v_inputs (entry, seq, input_gtin, input_lot, output_gtin, output_lot, "
            "quantity) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (entry, seq) DO NOTHING",
            [(at.index, seq, i["gtin"], i["lot"], b["gtin"], b["lot"], i["quantity"])
             for seq, i in enumerate(b["inputs"])],
        )
        if at.corrected_by is not None:
            self.tx.execute("UPDATE v_checks SET category = ? WHERE gtin = ? AND lot = ?",
                            (b["category"], b["gtin"], b["lot"]))

    def batch_shipped(self, s: Statement, at: Source) -> None:
        b = s.body
        self.tx.execute(
            "INSERT INTO v_shipments (shipment, gtin, lot, sender, receiver, quantity, entry) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (shipment) DO NOTHING",
            (b["shipment"], b["gtin"], b["lot"], s.by, b["to"], b["quantity"], at.index),
        )

    def batch_received(self, s: Statement, at: Source) -> None:
        self.tx.execute(
            "UPDATE v_shipments SET received_quantity = ?, received_entry = ? WHERE shipment = ?",
            (s.body["quantity"], at.index, s.body["shipment"]),
        )

    def check_recorded(self, s: Statement, at: Source) -> None:
        b = s.body
        category = self.tx.value(
            "SELECT category FROM v_batches WHERE gtin = ? AND lot = ?", (b["gtin"], b["lot"])
        )
        region = self.tx.value(
            "SELECT region FROM v_organizations WHERE uscc = ?", (b["subject"],)
        )
        self.tx.execute(
            "INSERT INTO v_checks (entry, gtin, lot, subject, lab, kind, stage, verdict, "
            "report_no, standard, sampled_at, category, region, withdrawn, corrected_by) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?) "
            "ON CONFLICT (entry) DO UPDATE SET gtin = excluded.gtin, lot = excluded.lot, "
            "subject = excluded.subject, "
            "kind = excluded.kind, stage = excluded.stage, verdict = excluded.verdict, "
            "report_no = excluded.report_no, standard = excluded.standard, "
            "sampled_at = excluded.sampled_at, category = excluded.category, "
            "region = excluded.region, withdrawn = 0, corrected_by = excluded.corrected_by",
            (at.index, b["gtin"], b["lot"], b["subject"], s.by, b["kind"], b["stage"],
             b["verdict"], b["report_no"], b["standard"], text_time(b["sampled_at"]),
             category, region, at.corrected_by),
        )
        points = self.policy.check_points(b["kind"], b["stage"], b["verdict"])
        self._line(
            at, b["subject"], points, f"check.failed.{b['stage']}",
            f"failed {b['kind']} check at the {b['stage']} stage, report {b['report_no']}, "
            f"batch {b['gtin']}/{b['lot']}",
        )

    def recall_issued(self, s: Statement, at: Source) -> None:
        b = s.body
        self.tx.executemany(
            "INSERT INTO v_recalls (entry, gtin, lot, level, reason, signer, corrected_by) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (entry, lot) DO NOTHING",
            [(at.index, b["gtin"], lot, b["level"], b["reason"], s.by, at.corrected_by)
             for lot in b["lots"]],
        )
        # The recall is charged once to each producer of the recalled lots.
        producers = sorted({
            p for lot in b["lots"]
            if (p := self.tx.value("SELECT producer FROM v_batches WHERE gtin = ? AND lot = ?",
                                   (b["gtin"], lot))) is not None
        })
        for producer in producers:
            self._line(
                at, producer, self.policy.recall_points(b["level"]), f"recall.level{b['level']}",
                f"level {b['level']} recall of {b['gtin']} lots {', '.join(b['lots'])}: "
                f"{b['reason']}",
            )

    def credit_adjusted(self, s: Statement, at: Source) -> None:
        b = s.body
        self._line(at, b["org"], b["delta"], T.CREDIT_ADJUSTED, f"{b['reason']} ({b['basis']})")

    def blacklist_added(self, s: Statement, at: Source) -> None:
        b = s.body
        self._touched.add(b["org"])
        self.tx.execute(
            "INSERT INTO v_blacklist (entry, org, action, reason, basis, refs, until, recorded_at) "
            "VALUES (?, ?, 'added', ?, ?, ?, ?, ?) ON CONFLICT (entry) DO NOTHING",
            (at.index, b["org"], b["reason"], b["basis"], json.dumps(b["refs"]),
             text_time(b["until"]), at.recorded_at),
        )

    def blacklist_removed(self, s: Statement, at: Source) -> None:
        b = s.body
        self._touched.add(b["org"])
        self.tx.execute(
            "INSERT INTO v_blacklist (entry, org, action, reason, basis, refs, until, recorded_at) "
            "VALUES (?, ?, 'removed', ?, NULL, ?, NULL, ?) ON CONFLICT (entry) DO NOTHING",
            (at.index, b["org"], b["reason"], json.dumps(b["refs"]), at.recorded_at),
        )

    def award_granted(self, s: Statement, at: Source) -> None:
        b = s.body
        valid_until = text_time(b["valid_until"])
        self.tx.execute(
            "INSERT INTO v_awards (entry, org, title, valid_until, recorded_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (entry) DO NOTHING",
            (at.index, b["org"], b["title"], valid_until, at.recorded_at),
        )
        self._line(at, b["org"], self.policy.award, T.AWARD_GRANTED,
                   f"{b['title']}, valid until {valid_until}", valid_until)

    def case_opened(self, s: Statement, at: Source) -> None:
        b = s.body
        self.tx.execute(
            "INSERT INTO v_cases (case_id, respondent, opened_by, opened_entry, summary, channel, "
            "status) VALUES (?, ?, ?, ?, ?, ?, 'open') ON CONFLICT (case_id) DO UPDATE SET "
            "summary = excluded.summary, channel = excluded.channel",
            (b["case"], b["respondent"], s.by, at.index, b["summary"], b["channel"]),
        )
        self._case_entry(b["case"], at.index)
        self.tx.executemany(
            "INSERT INTO v_case_batches (case_id, gtin, lot, entry) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (case_id, gtin, lot) DO NOTHING",
            [(b["case"], ref["gtin"], ref["lot"], at.index) for ref in b["batches"]],
        )

    def case_evidence(self, s: Statement, at: Source) -> None:
        self._case_entry(s.body["case"], at.index)

    def case_resolved(self, s: Statement, at: Source) -> None:
        b = s.body
        self.tx.execute(
            "UPDATE v_cases SET status = 'resolved', finding = ?, resolved_entry = ? "
            "WHERE case_id = ?",
            (b["finding"], at.index, b["case"]),
        )
        self._case_entry(b["case"], at.index)
        respondent = self.tx.value(
            "SELECT respondent FROM v_cases WHERE case_id = ?", (b["case"],)
        )
        if respondent is not None:
            self._line(at, respondent, self.policy.case_points(b["finding"]), "case.substantiated",
                       f"case {b['case']} resolved {b['finding']} against it")

    def _case_entry(self, case: str, index: int) -> None:
        self.tx.execute(
            "INSERT INTO v_case_entries (case_id, entry) VALUES (?, ?) "
            "ON CONFLICT (case_id, entry) DO NOTHING",
            (case, index),
        )


def lookups(parsed: Parsed) -> list[tuple[str, Any]]:
    """The rows (table, primary key) that applying the entry reads by their key, as
    the handlers above do: a rebuild reads those of a chunk's entries in one query
    per table (WriteBehind.read_ahead). One missed here is read when asked for."""
    s = parsed.statement
    if s is None:
        return []
    b = s.body
    if s.type == T.CHECK_RECORDED:
        return [("v_batches", (b["gtin"], b["lot"])), ("v_organizations", b["subject"])]
    if s.type == T.RECALL_ISSUED:
        return [("v_batches", (b["gtin"], lot)) for lot in b["lots"]]
    if s.type == T.CASE_RESOLVED:
        return [("v_cases", b["case"])]
    return []


_HANDLERS: dict[str, Callable[[Projector, Statement, Source], None]] = {
    T.ORG_REGISTERED: Projector.org_registered,
    T.BATCH_PRODUCED: Projector.batch_produced,
    T.BATCH_SHIPPED: Projector.batch_shipped,
    T.BATCH_RECEIVED: Projector.batch_received,
    T.CHECK_RECORDED: Projector.check_recorded,
    T.RECALL_ISSUED: Projector.recall_issued,
    T.CREDIT_ADJUSTED: Projector.credit_adjusted,
    T.BLACKLIST_ADDED: Projector.blacklist_added,
    T.BLACKLIST_REMOVED: Projector.blacklist_removed,
    T.AWARD_GRANTED: Projector.award_granted,
    T.CASE_OPENED: Projector.case_opened,
    T.CASE_EVIDENCE: Projector.case_evidence,
    T.CASE_RESOLVED: Projector.case_resolved,
}
