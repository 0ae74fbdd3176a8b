"""Dispute cases for investigators (DISPUTES.md): the case page, and the case's entries as a
spreadsheet (CSV, XLSX) and its batches as a picture (SVG). The evidence bundle
(`/v1/cases/{id}/bundle`) is served elsewhere; the page links to it.

Case ids may hold '/' (PROTOCOL tokens allow it): links send it as `%2F`, and the id is
still a path parameter that runs up to the file name, so older links with a bare '/'
keep working. An unknown case is a 404: an HTML page for a browser, the
RFC 9457 problem for anything else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from api import problems
from api.case_exports import CaseExports, exports_of, refusal, stream
from api.export_pool import ExportsBusy
from api.deps import ViewsDep
from ledger.errors import NotFound
from ledger.statement_types import FACTS
from traceability import exports, picture
from traceability.cases import case_view
from traceability.evidence import Selection
from traceability.export_cache import ExportRefused
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
        "entries": "条记录", "previous": "上一页", "next": "下一页",
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
        "previous": "previous page", "next": "next page",
    },
}

# What each statement type is called on the page.
_TYPES: dict[str, dict[str, str]] = {
    "zh": {kind: facts.label_zh for kind, facts in FACTS.items()}, "en": {}}


def _render(lang: str, **values: Any) -> str:
    lang = lang if lang in _TEXT else "zh"
    return _ENV.get_template("case.html").render(
        t=_TEXT[lang], types=_TYPES[lang], lang=lang, other="en" if lang == "zh" else "zh",
        **values)

Lang = Annotated[Literal["zh", "en"], Query(description="language of the labels")]
_FILE_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def case_links(case_id: str) -> dict[str, str]:
    # One path segment, its `/` encoded (api/rawpath.py): `/v1/cases/A%2FB/bundle`.
    base = f"/v1/cases/{quote(case_id, safe='')}"
    return {"csv": f"{base}/entries.csv", "xlsx": f"{base}/entries.xlsx",
            "svg": f"{base}/trace.svg", "bundle": f"{base}/bundle"}


ExportsDep = Annotated[CaseExports, Depends(exports_of)]
Page = Annotated[int, Query(ge=1, description="page of the timeline, from 1")]


def _page_build(views: Views, case_id: str, lang: Lang, page_size: int,
                selection: Selection) -> dict[str, bytes]:
    """The case page's data, built once per basis of the case: the case, its parties'
    names, the picture, and the timeline (of `selection`) cut into pages of `page_size`
    rows, one file each."""
    case = case_view(views, case_id)
    rows = exports.case_sheet(views, case_id, lang, selection.indexes)
    # The picture is drawn from the views as they stand: should the case change after
    # the selection, its new basis makes the next request build again.
    svg = picture.render_svg(picture.case_picture(views, case_id), lang)
    names = {r.org: r.org_name for r in rows if r.org in (case.respondent, case.opened_by)}
    names.update({r["uscc"]: r["name"] for r in _names(views, [case.respondent, case.opened_by])})
    # The timeline runs in the order things happened, as their signers date them; the
    # spreadsheet keeps log order.
    timeline = sorted(rows, key=lambda r: (r.issued_at, r.index))
    pages = [timeline[i:i + page_size] for i in range(0, len(timeline), page_size)] or [[]]
    files = {
        "page.json": _json({"case": case.to_json(), "names": names, "entries": len(rows),
                            "pages": len(pages)}),
        "trace.svg": svg.encode("utf-8"),
    }
    for number, part in enumerate(pages, start=1):
        files[f"timeline-{number}.json"] = _json([asdict(r) for r in part])
    return files


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@router.get("/cases/{case_id:segments}", summary="The case page (HTML)", response_class=HTMLResponse,
            responses={200: {"content": {"text/html": {"example": "<!doctype html>…"}}},
                       **_UNKNOWN})
async def case_page(case_id: str, request: Request, views: ViewsDep, exports_: ExportsDep,
                    lang: Lang = "zh", page: Page = 1) -> Response:
    """The case, one page of the timeline of every entry that touches it (`page`, from 1;
    links to the pages before and after), the picture of its batches (on the first page),
    and the downloads. An unknown case: a 404 HTML page when the client accepts HTML (a
    browser), else the problem; a page past the last: the not-found problem."""
    try:
        key, (meta_file,) = await exports_.open(
            views, "page", case_id, lang, ["page.json"],
            lambda selection: _page_build(views, case_id, lang, exports_.page_size, selection))
    except NotFound as e:
        if "text/html" not in request.headers.get("accept", ""):
            raise
        return HTMLResponse(_render(lang, missing=str(e), case_id=case_id), status_code=404)
    except (ExportsBusy, ExportRefused) as e:
        return refusal(e)

    def render() -> str:
        with meta_file:
            meta = json.load(meta_file)
        pages = meta["pages"]
        if page > pages:
            raise NotFound(f"case {case_id} has {pages} page(s) of timeline; there is no "
                           f"page {page}")
        files = exports_.cache.lookup(key, f"timeline-{page}.json"), (
            exports_.cache.lookup(key, "trace.svg") if page == 1 else None)
        if files[0] is None:
            raise NotFound(f"page {page} of case {case_id} is gone; load the page again")
        with files[0]:
            timeline = [exports.Row(**r) for r in json.load(files[0])]
        svg = ""
        if files[1] is not None:
            with files[1]:
                svg = files[1].read().decode("utf-8")
        base = f"/cases/{quote(case_id, safe='')}?lang={lang}"
        return _render(lang, case_id=case_id, c=meta["case"], timeline=timeline,
                       svg=Markup(svg), links=case_links(case_id), names=meta["names"],
                       lang_query=f"?lang={lang}", total=meta["entries"], page=page,
                       pages=pages, first=(page - 1) * exports_.page_size,
                       previous=f"{base}&page={page - 1}" if page > 1 else None,
                       next=f"{base}&page={page + 1}" if page < pages else None)

    return HTMLResponse(await anyio.to_thread.run_sync(render))


def _names(views: Views, usccs: list[str]) -> list[dict[str, Any]]:
    with views.reading() as tx:
        return tx.rows("SELECT uscc, name FROM v_organizations WHERE uscc IN (?, ?)", usccs)


async def _export(views: Views, exports_: CaseExports, what: str, case_id: str, lang: str,
                  name: str, media_type: str,
                  build: Callable[[Selection], dict[str, bytes]]) -> Response:
    """The export's file streamed as a download, built on the export pool on a miss."""
    try:
        _, (file,) = await exports_.open(views, what, case_id, lang, [name], build)
    except (ExportsBusy, ExportRefused) as e:
        return refusal(e)
    filename = f"case-{_FILE_SAFE.sub('_', case_id)}-{name}"
    return stream(file, media_type,
                  {"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/v1/cases/{case_id:segments}/entries.csv", summary="The case's entries as CSV",
            response_class=Response,
            responses={200: {"content": {"text/csv": {"example": "index,recorded_at,…"}}},
                       **_UNKNOWN})
async def case_csv(case_id: str, views: ViewsDep, exports_: ExportsDep,
                   lang: Lang = "zh") -> Response:
    """One row per entry that touches the case (RFC 4180, UTF-8 with a byte order mark);
    the summaries in `lang`, the column names always the same."""
    return await _export(views, exports_, "csv", case_id, lang, "entries.csv",
                         exports.CSV_MEDIA_TYPE, lambda s: {"entries.csv": exports.to_csv_bytes(
                             exports.case_sheet(views, case_id, lang, s.indexes))})


@router.get("/v1/cases/{case_id:segments}/entries.xlsx", summary="The case's entries as XLSX",
            response_class=Response,
            responses={200: {"content": {exports.XLSX_MEDIA_TYPE: {"example": "(XLSX bytes)"}}},
                       **_UNKNOWN})
async def case_xlsx(case_id: str, views: ViewsDep, exports_: ExportsDep,
                    lang: Lang = "zh") -> Response:
    """The same rows as a sortable sheet: header frozen, autofilter, times as date-times."""
    return await _export(views, exports_, "xlsx", case_id, lang, "entries.xlsx",
                         exports.XLSX_MEDIA_TYPE, lambda s: {"entries.xlsx": exports.to_xlsx(
                             exports.case_sheet(views, case_id, lang, s.indexes))})


@router.get("/v1/cases/{case_id:segments}/trace.svg", summary="The case's batches as a picture",
            response_class=Response,
            responses={200: {"content": {picture.SVG_MEDIA_TYPE: {"example": "<svg …>"}}},
                       **_UNKNOWN})
async def case_svg(case_id: str, views: ViewsDep, exports_: ExportsDep,
                   lang: Lang = "zh") -> Response:
    """Organizations as swim lanes, time left to right, failed checks and recalls marked
    (the picture the case page shows, from the same build)."""
    return await _export(views, exports_, "page", case_id, lang, "trace.svg",
                         picture.SVG_MEDIA_TYPE,
                         lambda s: _page_build(views, case_id, lang, exports_.page_size, s))
