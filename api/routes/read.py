"""The read side over HTTP (PROTOCOL.md §5): trace graph, organization credit, blacklist,
QR codes (the Digital Link resolver is api/routes/resolver.py). Every read first catches
the views up with the log, so a reader sees what any worker has committed
(read-your-writes across processes)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.deps import (
    PAGING_PROBLEMS,
    Cursor,
    Limit,
    ViewsDep,
    explain_cursor,
    path_gtin,
    path_lot,
    path_uscc,
)
from ledger.errors import InvalidRequest
from traceability import blacklist, credit, orgs, paging, qr, trace

router = APIRouter(tags=["read"])

_BATCH = {"gtin": "06920023000105", "lot": "BR20261028-B"}
SCAN_EXAMPLE = {
    "batch": {**_BATCH, "product": "全麦吐司 400g", "category": "food",
              "produced_at": "2026-10-28T09:00:00Z", "expires_at": "2026-11-04T09:00:00Z",
              "standard": "GB 7099-2015", "entry": 33},
    "producer": {"uscc": "91350102MA2Y00004P", "name": "福州麦香烘焙食品有限公司", "grade": "A",
                 "score": 95, "blacklisted": False},
    "status": "recalled",
    "checks": [],
    "recalls": [{"gtin": "06920002000102", "lot": "FL20261025-2", "level": 2,
                 "reason": "监督抽查铅含量超标，主动召回", "upstream": True, "entry": 50}],
    "origin": [{"uscc": "93350181MA2Y00001M", "name": "福清市禾丰粮食种植专业合作社",
                "region": "350181"}],
    "checkpoint": {"tree_size": 57, "root_hash": "3f5a…"},
}
TRACE_EXAMPLE = {
    "root": _BATCH, "direction": "up",
    "nodes": [{**_BATCH, "org": "91350102MA2Y00004P", "product": "全麦吐司 400g", "entry": 33}],
    "edges": [{"from": {"gtin": "06920002000102", "lot": "FL20261025-2"}, "to": _BATCH,
               "quantity": 80, "entry": 33}],
    "shipments": [{**_BATCH, "from": "91350102MA2Y00004P", "to": "91350100MA2Y00005X",
                   "quantity": 2500, "entry": 36, "received_entry": 37}],
    "organizations": ["91350100MA2Y00005X", "91350102MA2Y00004P"],
}
_LINE = {"entry": 30, "delta": -10, "reason": "failed supervisory check",
         "rule": "check.failed.production"}
_CURSOR = "eyJhZnRlciI6MzAsImF0IjoiMjAyNi0xMS0zMFQxMDowMDowMC4wMDAwMDBaIn0"
ORG_EXAMPLE = {
    "uscc": "91350100MA2Y00002L", "name": "福州金穗面粉有限公司", "roles": ["producer"],
    "region": "350100", "credit": {"score": 82, "grade": "B", "blacklisted": False,
                                   "explain": [_LINE], "explain_next": None},
}
EXPLAIN_EXAMPLE = {"items": [_LINE], "next": _CURSOR}
BLACKLIST_EXAMPLE = {"blacklist": [{"org": "92350104MA2Y000091", "name": "福州仓山某食品加工坊",
                                    "reason": "生产销售不合格食品且拒不整改", "since": "2026-11-20T09:00:00Z",
                                    "until": None, "entry": 55}]}


def _example(example: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    return {200: {"content": {"application/json": {"example": example}}}}


@router.get("/v1/batches/{gtin:segment}/{lot:segment}/trace", summary="The trace graph of a batch",
            responses=_example(TRACE_EXAMPLE))
def trace_batch(
    gtin: str, lot: str, views: ViewsDep,
    direction: Annotated[Literal["up", "down"], Query()] = "up",
) -> dict[str, Any]:
    """`up`: everything the batch was made from, to any depth; `down`: everything made
    from it and every organization that received any of it (the reach of a recall)."""
    return trace.trace(views, path_gtin(gtin), path_lot(lot), direction).to_json()


@router.get("/v1/orgs/{uscc:segment}", summary="An organization and its quality credit",
            responses=_example(ORG_EXAMPLE))
def organization(uscc: str, views: ViewsDep) -> dict[str, Any]:
    """Score, grade, blacklist status, and `explain`: the entries that moved the score, a
    first page of them (50); `explain_next` is the cursor of the rest at
    `/v1/orgs/{uscc}/explain` (null when there is no more)."""
    profile = orgs.profile(views, path_uscc(uscc))
    return profile.to_json(profile.credit.explain_page())


@router.get("/v1/orgs/{uscc:segment}/explain",
            summary="Every line of an organization's credit explain, a page at a time",
            responses={**_example(EXPLAIN_EXAMPLE), **PAGING_PROBLEMS})
def organization_explain(uscc: str, views: ViewsDep, cursor: Cursor = None,
                         limit: Limit = paging.DEFAULT_LIMIT) -> dict[str, Any]:
    """The lines in entry order, the clamp line (if the score is clamped) last; `next` is
    the cursor of the following page, null on the last. The pages that follow one cursor
    explain the score taken when the first page was, so their deltas add up to it."""
    return credit.explain(views, path_uscc(uscc), explain_cursor(cursor), limit).to_json()


@router.get("/v1/blacklist", summary="Organizations on the quality-dishonesty blacklist",
            responses=_example(BLACKLIST_EXAMPLE))
def current_blacklist(views: ViewsDep) -> dict[str, Any]:
    return {"blacklist": [listing.to_json() for listing in blacklist.current(views)]}


@router.get(
    "/v1/qr/{gtin:segment}/{name:segment}",
    summary="The QR code of a batch's Digital Link URI (`{lot}.svg` or `{lot}.png`)",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {"example": "<svg …>"},
                                 "image/png": {"example": "(PNG bytes)"}}}},
)
def batch_qr(gtin: str, name: str, request: Request) -> Response:
    """A QR code holding `https://<resolver>/01/<GTIN-14>/10/<lot>`; the resolver is
    configured (QLEDGER_RESOLVER, else api.settings.Settings.link_base)."""
    lot, dot, kind = name.rpartition(".")
    if not dot or kind not in ("svg", "png"):
        raise InvalidRequest("ask for {lot}.svg or {lot}.png")
    resolver = request.app.state.link_base  # configured, never the Host header
    uri = qr.digital_link(resolver, path_gtin(gtin), path_lot(lot))
    if kind == "svg":
        return Response(qr.qr_svg(uri), media_type="image/svg+xml")
    return Response(qr.qr_png(uri), media_type="image/png")
