"""Server-rendered pages (Jinja2, autoescaped, no external assets, no JavaScript).

The pages take the same JSON the API answers (the scan view of PROTOCOL.md §5, an
organization's profile, blacklist listings), so a page never knows more than a client
of the API could. Chinese by default, English with `?lang=en`. Every value from the
ledger is free text written by someone else: autoescaping is on for every template,
and no template marks anything `|safe`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from ledger.statement_types import StatementType as T
from ledger.text import scrub

from api.regions import province

LANGS = ("zh", "en")

_TEXT: dict[str, dict[str, str]] = {
    "zh": {
        "site": "质量追溯账本", "title": "产品质量追溯",
        "ok": "正常：未发现召回或不合格记录",
        "recalled": "已召回：请勿食用或使用", "failed_check": "抽检不合格",
        "producer_blacklisted": "生产者已列入质量失信黑名单",
        "ok_detail": "本批次没有召回记录，也没有不合格的检验记录。",
        "recalled_detail": "本批次或其所用原料已被召回。", "failed_detail": "本批次有检验判定不合格。",
        "blacklisted_detail": "该生产者目前在质量失信黑名单上。",
        "producer": "生产者", "grade": "信用等级", "score": "信用分", "product": "产品",
        "lot": "批号", "produced": "生产日期", "expires": "保质期至", "standard": "执行标准",
        "category": "类别", "checks": "检验记录", "recalls": "召回记录", "origin": "原料来源",
        "verified": "已在账本中验证", "unverified": "账本尚未签发检查点", "entry": "条目",
        "tree": "账本共", "tree_unit": "条", "proof": "查看证明", "root": "根哈希",
        "upstream": "上游原料", "this_batch": "本批次", "recall_level": "%s 级召回",
        "switch": "English", "none": "无", "pass": "合格", "fail": "不合格",
        "supervisory": "监督抽查", "self": "企业自检", "third_party": "第三方检验",
        "production": "生产环节", "circulation": "流通环节", "lab": "检验机构",
        "report": "报告编号", "region": "地区", "uscc": "统一社会信用代码", "roles": "角色",
        "regulator": "监管部门", "distributor": "经销商", "retailer": "零售商",
        "blacklisted": "黑名单", "yes": "是", "no": "否", "listed": "已列入黑名单",
        "not_listed": "未列入黑名单", "awards": "荣誉", "valid_until": "有效期至",
        "explain": "信用分构成", "delta": "分值", "reason": "原因", "history": "信用分变化",
        "at": "时间", "cases": "投诉与案件", "case": "案件", "respondent": "被投诉方",
        "complainant": "投诉方", "open": "处理中", "resolved": "已处理",
        "substantiated": "属实", "unsubstantiated": "不属实", "withdrawn": "已撤回",
        "blacklist": "质量失信黑名单", "blacklist_now": "目前在黑名单上",
        "blacklist_history": "列入与移出记录", "since": "列入时间", "until": "截止",
        "basis": "依据", "added": "列入", "removed": "移出（信用修复）", "org": "企业",
        "action": "事项", "latest": "最近", "records": "条记录",
        "rule_start": "初始分", "rule_check": "抽检不合格", "rule_recall": "召回",
        "rule_case": "投诉属实", "rule_adjusted": "监管调整", "rule_award": "获得荣誉",
        "rule_clamp": "分值上下限（0–100）",
        "error": "出错了", "home": "返回", "credit": "企业信用", "nav_blacklist": "黑名单",
        "lowest_note": "列入黑名单的企业无论分数高低，一律评为最低等级。",
        "lines": "条", "next": "下一页", "start": "第一页",
    },
    "en": {
        "site": "Quality ledger", "title": "Product traceability",
        "ok": "OK: no recall or failed check on record",
        "recalled": "RECALLED: do not eat or use", "failed_check": "Failed a quality check",
        "producer_blacklisted": "Producer is on the quality blacklist",
        "ok_detail": "This batch has no recall and no failed check on record.",
        "recalled_detail": "This batch, or an ingredient it was made from, has been recalled.",
        "failed_detail": "A check of this batch found it below standard.",
        "blacklisted_detail": "Its producer is on the quality-dishonesty blacklist.",
        "producer": "Producer", "grade": "Credit grade", "score": "Credit score",
        "product": "Product", "lot": "Lot", "produced": "Produced", "expires": "Best before",
        "standard": "Standard", "category": "Category", "checks": "Checks", "recalls": "Recalls",
        "origin": "Origin", "verified": "Verified in the ledger",
        "unverified": "The ledger has not signed a checkpoint yet", "entry": "entry",
        "tree": "ledger of", "tree_unit": "entries", "proof": "see the proof",
        "root": "root hash", "upstream": "upstream ingredient", "this_batch": "this batch",
        "recall_level": "level %s recall", "switch": "中文", "none": "none", "pass": "pass",
        "fail": "FAIL", "supervisory": "supervisory spot check", "self": "own check",
        "third_party": "third-party check", "production": "production stage",
        "circulation": "circulation stage", "lab": "Lab", "report": "report",
        "region": "Region", "uscc": "USCC", "roles": "Roles", "regulator": "regulator",
        "distributor": "distributor", "retailer": "retailer", "blacklisted": "Blacklisted",
        "yes": "yes", "no": "no", "listed": "On the blacklist", "not_listed": "Not blacklisted",
        "awards": "Awards", "valid_until": "valid until", "explain": "What makes the score",
        "delta": "points", "reason": "reason", "history": "Score over time", "at": "at",
        "cases": "Complaints and cases", "case": "case", "respondent": "respondent",
        "complainant": "complainant", "open": "open", "resolved": "resolved",
        "substantiated": "substantiated", "unsubstantiated": "unsubstantiated",
        "withdrawn": "withdrawn", "blacklist": "Quality-dishonesty blacklist",
        "blacklist_now": "Listed now", "blacklist_history": "Listings and removals",
        "since": "since", "until": "until", "basis": "basis", "added": "listed",
        "removed": "removed (credit repaired)", "org": "Organization", "action": "what",
        "latest": "latest", "records": "records",
        "rule_start": "starting score", "rule_check": "failed check", "rule_recall": "recall",
        "rule_case": "substantiated complaint", "rule_adjusted": "regulator's adjustment",
        "rule_award": "award", "rule_clamp": "score bounds (0–100)",
        "error": "Something went wrong", "home": "back",
        "credit": "Enterprise credit", "nav_blacklist": "Blacklist",
        "lowest_note": "A blacklisted organization gets the lowest grade, whatever its score.",
        "lines": "lines", "next": "next page", "start": "first page",
    },
}
# Roles and categories that read the same in both languages stay as they are.
_TEXT["zh"].update({"producer_role": "生产者", "lab_role": "检验机构", "food": "食品",
                    "agricultural": "农产品", "aquatic": "水产品", "industrial": "工业产品",
                    "drug": "药品", "other": "其他"})
_TEXT["en"].update({"producer_role": "producer", "lab_role": "lab", "food": "food",
                    "agricultural": "agricultural product", "aquatic": "aquatic product",
                    "industrial": "industrial product", "drug": "drug", "other": "other"})
# The codes of EVENTS.md a page translates (roles, categories, check kinds and stages,
# verdicts, findings); anything else is shown as written.
_CODES = {
    "regulator": "regulator", "producer": "producer_role", "distributor": "distributor",
    "retailer": "retailer", "lab": "lab_role", **{c: c for c in (
        "food", "agricultural", "aquatic", "industrial", "drug", "other", "supervisory",
        "self", "third_party", "production", "circulation", "pass", "fail",
        "substantiated", "unsubstantiated", "withdrawn")},
}

_RULES = (("start", "rule_start"), ("check.failed", "rule_check"), ("recall", "rule_recall"),
          ("case.", "rule_case"), (T.CREDIT_ADJUSTED, "rule_adjusted"),
          ("award", "rule_award"), ("clamp", "rule_clamp"))


def language(value: str | None) -> str:
    """`?lang=` as asked, or Chinese: a wrong value is not worth an error page."""
    return value if value in LANGS else "zh"


def _day(value: str | None) -> str:
    """RFC 3339 UTC time → its date, the way labels print it."""
    return (value or "")[:10]


def _region(code: str, lang: str) -> str:
    name = province(code, lang)
    return f"{name} · {code}" if name else code


def _rule(rule: str, t: dict[str, str]) -> str:
    for prefix, key in _RULES:
        if rule.startswith(prefix):
            return t[key]
    return rule


def _word(value: str, t: dict[str, str]) -> str:
    """A code from the ledger in the page's language, when the page knows it."""
    key = _CODES.get(value)
    return t[key] if key else value


_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"], default_for_string=True, default=True),
    trim_blocks=True,
    lstrip_blocks=True,
    # Every value a page shows passes ledger.text.scrub first: free text recorded before
    # EVENTS.md's rule shows its overrides and noncharacters as U+FFFD, never raw.
    finalize=lambda value: value if isinstance(value, Markup) or not isinstance(value, str)
    else scrub(value),
)
_ENV.filters.update(day=_day)


def _render(template: str, lang: str, **values: Any) -> str:
    lang = language(lang)
    t = _TEXT[lang]
    return _ENV.get_template(template).render(
        t=t, lang=lang, other="en" if lang == "zh" else "zh",
        region=lambda code: _region(code, lang), rule=lambda r: _rule(r, t),
        word=lambda w: _word(w, t), **values,
    )


def render_scan(view: dict[str, Any], lang: str = "zh") -> str:
    """The scan page of one batch, from its scan view JSON."""
    return _render("scan.html", lang, v=view)


def render_org(org: dict[str, Any], cases: list[dict[str, Any]],
               listings: list[dict[str, Any]], lang: str = "zh",
               explain: dict[str, Any] | None = None) -> str:
    """An organization's credit page: its profile JSON (with `credit`, whose `explain` is
    one page of lines), the cases it opened or answers to (case view JSON), and its
    blacklist events. `explain` places the page: `first` and `last` (1-based), `total`,
    and the links `next` and `start` (the first page), None where there is none."""
    return _render("org.html", lang, o=org, c=org["credit"], cases=cases, listings=listings,
                   explain=explain)


def render_blacklist(current: list[dict[str, Any]], events: list[dict[str, Any]],
                     total: int, lang: str = "zh") -> str:
    """The blacklist page: who is listed now, and the latest listings and removals
    (`events`, newest first, each with the organization's `name`; `total` of all)."""
    return _render("blacklist.html", lang, current=current, events=events, total=total)


def render_error(status: int, title: str, detail: str, lang: str = "zh") -> str:
    """A small error page for a browser; the same problem an API client gets as JSON."""
    return _render("error.html", lang, status=status, problem_title=title, detail=detail)
