"""Dispute cases for investigators (DISPUTES.md): the case page, and the case's entries as a
spreadsheet (CSV, XLSX) and its batches as a picture (SVG). The evidence bundle
(`/v1/cases/{id}/bundle`) is served elsewhere; the page links to it.

Case ids may hold '/' (PROTOCOL tokens allow it): links send it as `%2F`, and the id is
still a path parameter that runs up to the file name, so older links with a bare '/'
keep working. An unknown case is a 404: an HTML page for a browser, the
RFC 9457 problem for anything else.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from api import problems
from api.routes.read import ViewsDep
from ledger.errors import NotFound
from traceability import exports, picture
from traceability.cases import case_view
from traceability.views import Views

router = APIRouter(tags=["cases"])

_UNKNOWN = problems.responses(problems.example(
    problems.NOT_FOUND, 404, "case FJ-12315-2026-9999 was never opened"))

# The page is autoescaped like the scan page; only the SVG, escaped as it was drawn, goes in
# as markup.
_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent.parent / "templates"),
    autoescape=select_autoescape(["html"]),
)
# A value as one path segment: Jinja's `urlencode` keeps `/`, which would split a lot.
_ENV.filters["segment"] = lambda value: quote(str(value), safe="")

_TEXT = {
    "zh": {
        "title": "投诉案件", "switch": "English", "respondent": "被投诉方", "opened_by": "立案方",
        "channel": "渠道", "status": "状态", "open": "调查中", "resolved": "已办结",
        "finding": "结论", "substantiated": "属实", "unsubstantiated": "不属实",
        "withdrawn": "已撤回", "summary": "案情", "batches": "涉及批次", "timeline": "时间线",
        "picture": "追溯图", "downloads": "下载", "csv": "表格（CSV）", "xlsx": "表格（Excel）",
        "svg": "追溯图（SVG）", "bundle": "证据包（JSON，可离线验证）", "entry": "条目",
        "issued": "声明时间", "recorded": "记账时间", "missing": "未找到该案件", "none": "无",
        "entries": "条记录",
    },
    "en": {
        "title": "Complaint case", "switch": "中文", "respondent": "Respondent",
        "opened_by": "Opened by", "channel": "Channel", "status": "Status", "open": "open",
        "resolved": "resolved", "finding": "Finding", "substantiated": "substantiated",
        "unsubstantiated": "unsubstantiated", "withdrawn": "withdrawn", "summary": "Summary",
        "batches": "Batches named", "timeline": "Timeline", "picture": "Trace picture",
        "downloads": "Downloads", "csv": "Spreadsheet (CSV)", "xlsx": "Spreadsheet (Excel)",
        "svg": "Picture (SVG)", "bundle": "Evidence bundle (JSON, verifiable offline)",
        "entry": "entry", "issued": "issued", "recorded": "recorded",
        "missing": "No such case", "none": "none", "entries": "entries",
    },
}

# What each statement type is called on the page.
_TYPES = {
    "zh": {"org.registered": "登记组织", "key.registered": "登记密钥", "key.revoked": "吊销密钥",
           "batch.produced": "生产", "batch.shipped": "发货", "batch.received": "收货",
           "check.recorded": "检验", "recall.issued": "召回", "credit.adjusted": "信用调整",
           "blacklist.added": "列入黑名单", "blacklist.removed": "移出黑名单",
           "award.granted": "授予荣誉", "case.opened": "立案", "case.evidence": "证据",
           "case.resolved": "办结", "correction": "更正"},
    "en": {},
}


def _render(lang: str, **values: Any) -> str:
    lang = lang if lang in _TEXT else "zh"
    return _ENV.get_template("case.html").render(
        t=_TEXT[lang], types=_TYPES[lang], lang=lang, other="en" if lang == "zh" else "zh",
        **values)

Lang = Annotated[Literal["zh", "en"], Query(description="language of the labels")]
_FILE_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def _download(body: bytes | str, media_type: str, case_id: str, name: str) -> Response:
    filename = f"case-{_FILE_SAFE.sub('_', case_id)}-{name}"
    return Response(body, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def case_links(case_id: str) -> dict[str, str]:
    # One path segment, its `/` encoded (api/rawpath.py): `/v1/cases/A%2FB/bundle`.
    base = f"/v1/cases/{quote(case_id, safe='')}"
    return {"csv": f"{base}/entries.csv", "xlsx": f"{base}/entries.xlsx",
            "svg": f"{base}/trace.svg", "bundle": f"{base}/bundle"}


@router.get("/cases/{case_id:segments}", summary="The case page (HTML)",
            response_class=HTMLResponse,
            responses={200: {"content": {"text/html": {"example": "<!doctype html>…"}}},
                       **_UNKNOWN})
def case_page(case_id: str, request: Request, views: ViewsDep, lang: Lang = "zh") -> Response:
    """The case, the timeline of every entry that touches it, the picture of its batches,
    and the downloads. An unknown case: a 404 HTML page when the client accepts HTML (a
    browser), else the problem."""
    try:
        case = case_view(views, case_id)
    except NotFound as e:
        if "text/html" not in request.headers.get("accept", ""):
            raise
        return HTMLResponse(_render(lang, missing=str(e), case_id=case_id), status_code=404)
    rows = exports.case_sheet(views, case_id, lang)
    svg = picture.render_svg(picture.case_picture(views, case_id), lang)
    names = {r.org: r.org_name for r in rows}
    names.update({r["uscc"]: r["name"] for r in _names(views, [case.respondent, case.opened_by])})
    # The timeline runs in the order things happened, as their signers date them; the
    # spreadsheet keeps log order.
    timeline = sorted(rows, key=lambda r: (r.issued_at, r.index))
    return HTMLResponse(_render(lang, case_id=case_id, c=case.to_json(), timeline=timeline,
                                svg=Markup(svg), links=case_links(case_id), names=names,
                                lang_query=f"?lang={lang}"))


def _names(views: Views, usccs: list[str]) -> list[dict[str, Any]]:
    with views.reading() as tx:
        return tx.rows("SELECT uscc, name FROM v_organizations WHERE uscc IN (?, ?)", usccs)


@router.get("/v1/cases/{case_id:segments}/entries.csv", summary="The case's entries as CSV",
            response_class=Response,
            responses={200: {"content": {"text/csv": {"example": "index,recorded_at,…"}}},
                       **_UNKNOWN})
def case_csv(case_id: str, views: ViewsDep, lang: Lang = "zh") -> Response:
    """One row per entry that touches the case (RFC 4180, UTF-8 with a byte order mark);
    the summaries in `lang`, the column names always the same."""
    return _download(exports.to_csv_bytes(exports.case_sheet(views, case_id, lang)),
                     exports.CSV_MEDIA_TYPE, case_id, "entries.csv")


@router.get("/v1/cases/{case_id:segments}/entries.xlsx", summary="The case's entries as XLSX",
            response_class=Response,
            responses={200: {"content": {exports.XLSX_MEDIA_TYPE: {"example": "(XLSX bytes)"}}},
                       **_UNKNOWN})
def case_xlsx(case_id: str, views: ViewsDep, lang: Lang = "zh") -> Response:
    """The same rows as a sortable sheet: header frozen, autofilter, times as date-times."""
    return _download(exports.to_xlsx(exports.case_sheet(views, case_id, lang)),
                     exports.XLSX_MEDIA_TYPE, case_id, "entries.xlsx")


@router.get("/v1/cases/{case_id:segments}/trace.svg", summary="The case's batches as a picture",
            response_class=Response,
            responses={200: {"content": {picture.SVG_MEDIA_TYPE: {"example": "<svg …>"}}},
                       **_UNKNOWN})
def case_svg(case_id: str, views: ViewsDep, lang: Lang = "zh") -> Response:
    """Organizations as swim lanes, time left to right, failed checks and recalls marked."""
    svg = picture.render_svg(picture.case_picture(views, case_id), lang)
    return _download(svg, picture.SVG_MEDIA_TYPE, case_id, "trace.svg")
