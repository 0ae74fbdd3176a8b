"""Label sheets over HTTP: `/v1/labels/{gtin}/{lot}.pdf|.svg` (traceability/labels.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api import problems
from api.deps import ViewsDep, path_gtin, path_lot
from ledger.errors import InvalidRequest
from traceability import labels, scan

router = APIRouter(prefix="/v1", tags=["read"])


@router.get(
    "/labels/{gtin:segment}/{name:segment}",
    summary="A printable A4 label sheet for a production run (`{lot}.pdf` or `{lot}.svg`)",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {"example": "(PDF bytes)"},
                                 "image/svg+xml": {"example": "<svg …>"}}},
               **problems.responses(problems.example(
                   "invalid-request", 400,
                   "an SVG sheet is one A4 page of at most 24 labels, not 100; ask for the PDF, "
                   "or for one page at a time with serial_from"))},
)
async def label_sheet(
    gtin: str, name: str, request: Request, views: ViewsDep,
    count: Annotated[int, Query(ge=1, le=labels.MAX_LABELS,
                                description="how many labels")] = labels.PER_PAGE,
    serial_from: Annotated[str | None, Query(
        min_length=1, max_length=20,
        description="first serial (digits); labels then carry /21/<serial>, counting up")] = None,
) -> Response:
    """Labels of 64.7 × 35.1 mm, 3 × 8 on A4, each with the QR code of the batch's Digital
    Link URI (with `/21/<serial>` when serials are asked for), and the product, GTIN, lot and
    serial as text. The PDF has as many pages as needed; the SVG is one page (≤ 24 labels)."""
    lot, dot, kind = name.rpartition(".")
    if not dot or kind not in ("pdf", "svg"):
        raise InvalidRequest("ask for {lot}.pdf or {lot}.svg")
    gtin14, lot = path_gtin(gtin), path_lot(lot)
    product = scan.scan(views, gtin14, lot).batch.product  # 404 for a batch not recorded
    resolver = request.app.state.link_base  # configured, never the Host header
    sheet = labels.run_labels(resolver, gtin14, lot, product, count, serial_from)
    if kind == "svg":
        return Response(labels.sheet_svg(sheet), media_type="image/svg+xml")
    # Up to 1,000 codes and 42 pages: off the event loop.
    pdf = await run_in_threadpool(labels.sheet_pdf, sheet)
    return Response(pdf, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="labels-{gtin14}.pdf"'})
