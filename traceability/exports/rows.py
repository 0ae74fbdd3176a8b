"""The rows of a dispute case's spreadsheet: one per entry, each statement as signed, read
from the log itself; the views only supply names, regions, units and the batch a
shipment carried. The short summary of each row is in Chinese (the default) or English;
the column names are fixed identifiers in either case, so scripts can rely on them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal, TypeVar

from ledger.application import Ledger
from ledger.log_reads import StoredEntry
from ledger.envelope import Envelope
from ledger.errors import LedgerError, NotFound
from ledger.keys import key_id
from ledger.statement_types import StatementType as T
from ledger.statements import Statement, parse_statement
from traceability.cases import case_view
from traceability.evidence import case_entries
from traceability.views import Views

V = TypeVar("V")
Lang = Literal["en", "zh"]



@dataclass(frozen=True, slots=True)
class Row:
    """One entry of the case. `org` is the signer's organization, `counterparty` the other
    organization the statement names (receiver, sender, subject, respondent…)."""

    index: int
    recorded_at: str  # RFC 3339, as the ledger recorded it
    issued_at: str  # RFC 3339, as the signer wrote it
    type: str
    summary: str
    org: str
    org_name: str
    region: str
    gtin: str
    lot: str
    quantity: int | None
    unit: str
    counterparty: str
    verdict: str
    keyid: str

    def cells(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in COLUMNS)


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Row))
TIME_COLUMNS = ("recorded_at", "issued_at")


def case_rows(
    ledger: Ledger, views: Views, indexes: Sequence[int], lang: Lang = "zh"
) -> list[Row]:
    """One row per index, in the order given, summaries in `lang`. Raises NotFound for an
    index not in the log."""
    stored = _read_entries(ledger, indexes)
    read = [_Read.of(stored[i]) for i in indexes]
    context = _Context.load(views, read, lang if lang in _SAY else "zh")
    return [context.row(r) for r in read]


# ---- reading the log ---------------------------------------------------------------------


def _read_entries(ledger: Ledger, indexes: Sequence[int]) -> dict[int, StoredEntry]:
    """The entries, fetched one run of consecutive indexes at a time."""
    found: dict[int, StoredEntry] = {}
    wanted = sorted(set(indexes))
    start = 0
    while start < len(wanted):
        end = start
        while end + 1 < len(wanted) and wanted[end + 1] == wanted[end] + 1:
            end += 1
        for entry in ledger.entries(wanted[start], wanted[end] + 1):
            found[entry.index] = entry
        start = end + 1
    missing = [i for i in wanted if i not in found]
    if missing:
        raise NotFound(f"entry {missing[0]} does not exist (the log has {ledger.size()} entries)")
    return found


@dataclass(frozen=True, slots=True)
class _Read:
    index: int
    recorded_at: str
    issued_at: str
    keyids: str
    statement: Statement | None
    problem: str = ""

    @classmethod
    def of(cls, stored: StoredEntry) -> _Read:
        entry = json.loads(stored.text)
        try:
            envelope = Envelope.from_json(entry["envelope"])
            statement = parse_statement(envelope.statement)
        except (LedgerError, KeyError, TypeError, ValueError) as e:
            # Only a tampered log or an audit replica has such an entry; show it, do not fail.
            return cls(stored.index, str(entry.get("recorded_at", "")), "", "", None, str(e))
        return cls(stored.index, entry["recorded_at"], envelope.statement["issued_at"],
                   " ".join(s.keyid for s in envelope.signatures), statement)


# ---- what the views add: names, regions, units, shipments --------------------------------


@dataclass
class _Context:
    orgs: dict[str, tuple[str, str]]  # USCC -> (name, region)
    units: dict[tuple[str, str], str]  # (gtin, lot) -> unit
    shipments: dict[str, tuple[str, str, str]]  # shipment -> (gtin, lot, sender)
    lang: Lang

    @classmethod
    def load(cls, views: Views, read: Iterable[_Read], lang: Lang) -> _Context:
        statements = [s for r in read for s in _with_replacement(r.statement)]
        shipment_ids = {s.body["shipment"] for s in statements if s.type == T.BATCH_RECEIVED}
        with views.reading() as tx:
            shipments = {
                r["shipment"]: (r["gtin"], r["lot"], r["sender"])
                for sid in _chunks(sorted(shipment_ids))
                for r in tx.rows(
                    "SELECT shipment, gtin, lot, sender FROM v_shipments "
                    f"WHERE shipment IN ({_marks(sid)})", sid)
            }
            batches = {(s.body["gtin"], s.body["lot"]) for s in statements
                       if s.type in (T.BATCH_PRODUCED, T.BATCH_SHIPPED)}
            batches |= {(g, lot) for g, lot, _ in shipments.values()}
            units = {
                (r["gtin"], r["lot"]): r["unit"]
                for chunk in _chunks(sorted(batches))
                for r in tx.rows(
                    "SELECT gtin, lot, unit FROM v_batches WHERE "
                    + " OR ".join(["(gtin = ? AND lot = ?)"] * len(chunk)),
                    [v for key in chunk for v in key])
            }
            usccs = {s.by for s in statements} | {sender for *_, sender in shipments.values()}
            usccs |= {_counterparty(s) for s in statements}
            orgs = {
                r["uscc"]: (r["name"], r["region"])
                for chunk in _chunks(sorted(u for u in usccs if u))
                for r in tx.rows(
                    f"SELECT uscc, name, region FROM v_organizations WHERE uscc IN ({_marks(chunk)})",
                    chunk)
            }
        return cls(orgs, units, shipments, lang)

    def name(self, uscc: str) -> str:
        return self.orgs.get(uscc, ("", ""))[0] or uscc

    def row(self, read: _Read) -> Row:
        s = read.statement
        if s is None:
            return Row(read.index, read.recorded_at, read.issued_at, "unreadable",
                       f"entry cannot be read: {read.problem}", "", "", "", "", "", None, "", "",
                       "", read.keyids)
        what = self._what(s)
        name, region = self.orgs.get(s.by, ("", ""))
        return Row(read.index, read.recorded_at, read.issued_at, s.type, what.summary, s.by,
                   name, region, what.gtin, what.lot, what.quantity, what.unit,
                   what.counterparty, what.verdict, read.keyids)

    def say(self, what: str, /, **values: Any) -> str:
        return _SAY[self.lang][what].format(**values)

    def word(self, value: str) -> str:
        return _WORDS[self.lang].get(value, value)

    def _what(self, s: Statement) -> _What:
        """What the statement says, in the row's terms."""
        b = s.body
        t = s.type
        if t == T.BATCH_PRODUCED:
            return _What(self.say(t, quantity=b["quantity"], unit=b["unit"], product=b["product"],
                                  inputs=len(b["inputs"])),
                         b["gtin"], b["lot"], b["quantity"], b["unit"])
        if t == T.BATCH_SHIPPED:
            return _What(self.say(t, quantity=b["quantity"], to=self.name(b["to"]),
                                  shipment=b["shipment"]),
                         b["gtin"], b["lot"], b["quantity"],
                         self.units.get((b["gtin"], b["lot"]), ""), b["to"])
        if t == T.BATCH_RECEIVED:
            gtin, lot, sender = self.shipments.get(b["shipment"], ("", "", ""))
            return _What(self.say(t, quantity=b["quantity"], sender=self.name(sender),
                                  shipment=b["shipment"]),
                         gtin, lot, b["quantity"], self.units.get((gtin, lot), ""), sender)
        if t == T.CHECK_RECORDED:
            failed = "; ".join(self.say("item", **i) for i in b["items"] if i["verdict"] == "fail")
            summary = self.say(t, kind=self.word(b["kind"]), stage=self.word(b["stage"]),
                               report=b["report_no"], verdict=self.word(b["verdict"]))
            if failed:
                summary += self.say("failed", items=failed)
            return _What(summary, b["gtin"], b["lot"], counterparty=b["subject"],
                         verdict=b["verdict"])
        if t == T.RECALL_ISSUED:
            return _What(self.say(t, level=b["level"], reason=b["reason"]), b["gtin"],
                         " ".join(b["lots"]))
        if t == T.CASE_OPENED:
            return _What(self.say(t, case=b["case"], channel=b["channel"],
                                  respondent=self.name(b["respondent"]), summary=b["summary"]),
                         " ".join(r["gtin"] for r in b["batches"]),
                         " ".join(r["lot"] for r in b["batches"]), counterparty=b["respondent"])
        if t == T.CASE_EVIDENCE:
            return _What(self.say(t, case=b["case"], refs=", ".join(map(str, b["refs"])) or "-",
                                  note=b["note"]))
        if t == T.CASE_RESOLVED:
            return _What(self.say(t, case=b["case"], finding=self.word(b["finding"]),
                                  summary=b["summary"]), verdict=b["finding"])
        if t == T.CORRECTION:
            return self._correction(s)
        return _What(self._about_org(s), counterparty=_counterparty(s))

    def _correction(self, s: Statement) -> _What:
        replaced = None if s.replacement is None else self._what(s.replacement)
        summary = self.say(T.CORRECTION, corrects=s.body["corrects"], reason=s.body["reason"],
                           what=replaced.summary if replaced else self.say("withdrawn"))
        if replaced is None:
            return _What(summary)
        return _What(summary, replaced.gtin, replaced.lot, replaced.quantity, replaced.unit,
                     replaced.counterparty, replaced.verdict)

    def _about_org(self, s: Statement) -> str:
        """Summaries of the statements about organizations and their keys."""
        b = s.body
        t = s.type
        if t == T.ORG_REGISTERED:
            return self.say(t, name=b["name"], region=b["region"],
                            roles=", ".join(self.word(r) for r in b["roles"]))
        if t == T.KEY_REGISTERED:
            return self.say(t, key=key_id(b["public_key"])[:16], org=self.name(b["org"]))
        if t == T.KEY_REVOKED:
            return self.say(t, key=b["keyid"][:16], org=self.name(b["org"]), reason=b["reason"])
        if t == T.CREDIT_ADJUSTED:
            return self.say(t, delta=f"{b['delta']:+d}", basis=b["basis"], reason=b["reason"])
        if t in (T.BLACKLIST_ADDED, T.BLACKLIST_REMOVED):
            return self.say(t, basis=b.get("basis"), reason=b["reason"])
        if t == T.AWARD_GRANTED:
            return self.say(t, title=b["title"], until=f"{b['valid_until']:%Y-%m-%d}")
        return t


@dataclass(frozen=True, slots=True)
class _What:
    summary: str
    gtin: str = ""
    lot: str = ""
    quantity: int | None = None
    unit: str = ""
    counterparty: str = ""
    verdict: str = ""


# The short human summary of each type, in each language of the pages. Summaries start
# with a word of ours, never with the signer's text.
_SAY: dict[str, dict[str, str]] = {
    "en": {
        T.BATCH_PRODUCED: "produced {quantity} {unit} of {product} (input batches: {inputs})",
        T.BATCH_SHIPPED: "shipped {quantity} to {to} (shipment {shipment})",
        T.BATCH_RECEIVED: "received {quantity} from {sender} (shipment {shipment})",
        T.CHECK_RECORDED: "{kind} check, {stage} stage, report {report}: {verdict}",
        "failed": "; failed: {items}",
        "item": "{name} {value} (limit {limit} {unit})",
        T.RECALL_ISSUED: "level {level} recall: {reason}",
        T.CASE_OPENED: "case {case} opened ({channel}) against {respondent}: {summary}",
        T.CASE_EVIDENCE: "evidence for case {case} (entries {refs}): {note}",
        T.CASE_RESOLVED: "case {case} resolved, {finding}: {summary}",
        T.CORRECTION: "corrects entry {corrects} ({reason}): {what}",
        "withdrawn": "withdrawn",
        T.ORG_REGISTERED: "registered {name} ({roles}), region {region}",
        T.KEY_REGISTERED: "registered key {key}… of {org}",
        T.KEY_REVOKED: "revoked key {key}… of {org}: {reason}",
        T.CREDIT_ADJUSTED: "credit {delta} ({basis}): {reason}",
        T.BLACKLIST_ADDED: "blacklisted ({basis}): {reason}",
        T.BLACKLIST_REMOVED: "removed from the blacklist: {reason}",
        T.AWARD_GRANTED: "award: {title}, valid until {until}",
    },
    "zh": {
        T.BATCH_PRODUCED: "生产 {product} {quantity} {unit}（原料批次 {inputs} 个）",
        T.BATCH_SHIPPED: "发货 {quantity} 至 {to}（发货单 {shipment}）",
        T.BATCH_RECEIVED: "收到 {sender} 发来的 {quantity}（发货单 {shipment}）",
        T.CHECK_RECORDED: "{kind}，{stage}，报告 {report}：{verdict}",
        "failed": "；不合格项目：{items}",
        "item": "{name} {value}（限量 {limit} {unit}）",
        T.RECALL_ISSUED: "{level} 级召回：{reason}",
        T.CASE_OPENED: "案件 {case} 立案（{channel}），被投诉方 {respondent}：{summary}",
        T.CASE_EVIDENCE: "案件 {case} 提交证据（条目 {refs}）：{note}",
        T.CASE_RESOLVED: "案件 {case} 办结，{finding}：{summary}",
        T.CORRECTION: "更正条目 {corrects}（{reason}）：{what}",
        "withdrawn": "撤回",
        T.ORG_REGISTERED: "登记 {name}（{roles}），地区 {region}",
        T.KEY_REGISTERED: "登记 {org} 的密钥 {key}…",
        T.KEY_REVOKED: "吊销 {org} 的密钥 {key}…：{reason}",
        T.CREDIT_ADJUSTED: "信用分 {delta}（{basis}）：{reason}",
        T.BLACKLIST_ADDED: "列入质量失信黑名单（{basis}）：{reason}",
        T.BLACKLIST_REMOVED: "移出质量失信黑名单：{reason}",
        T.AWARD_GRANTED: "授予 {title}，有效期至 {until}",
    },
}

_WORDS: dict[str, dict[str, str]] = {
    "en": {"third_party": "third-party"},
    "zh": {"supervisory": "监督抽查", "self": "自检", "third_party": "第三方检验",
           "production": "生产环节", "circulation": "流通环节", "pass": "合格", "fail": "不合格",
           "substantiated": "属实", "unsubstantiated": "不属实", "withdrawn": "已撤回",
           "regulator": "监管部门", "producer": "生产者", "distributor": "经销商",
           "retailer": "零售商", "lab": "检验机构"},
}


def _counterparty(s: Statement | None) -> str:
    """The organization a statement is about, when it is not its signer's own batch."""
    if s is None:
        return ""
    b = s.body
    for name in ("uscc", "org", "to", "subject", "respondent"):
        if isinstance(b.get(name), str):
            return str(b[name])
    return _counterparty(s.replacement)


def _with_replacement(s: Statement | None) -> list[Statement]:
    return [] if s is None else [s, *_with_replacement(s.replacement)]


def _chunks(values: Sequence[V], size: int = 500) -> Iterable[list[V]]:
    for i in range(0, len(values), size):
        yield list(values[i:i + size])


def _marks(values: Sequence[str]) -> str:
    return ", ".join("?" * len(values))


def case_sheet(views: Views, case_id: str, lang: Lang = "zh",
               indexes: Sequence[int] | None = None) -> list[Row]:
    """The rows of every entry that touches the case (traceability.evidence), in log order:
    of `indexes`, when the caller has already selected them, else of a selection made now.
    Raises NotFound for a case that was never opened."""
    case_view(views, case_id)  # the case must exist whatever the selection does without it
    selected = case_entries(views, case_id) if indexes is None else indexes
    return case_rows(views.ledger, views, selected, lang)
