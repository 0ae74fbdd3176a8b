"""The GS1 Digital Link resolver (GS1 Digital Link URI syntax; GS1-Conformant Resolver).

`/01/{gtin}` the product and its lots; `/01/{gtin}/10/{lot}` the scan view of a batch;
`/01/{gtin}/10/{lot}/21/{serial}` one item of a batch (the ledger records batches, so it
is the batch's scan view, with the serial echoed). Every one of them:

- answers a GTIN-8/12/13 with 301 to the canonical GTIN-14 URI (query string kept), and a
  bad check digit (or lot, or serial) with a 400 problem;
- negotiates: HTML for a browser, JSON for `Accept: application/json`, the RFC 9264 link
  set for `Accept: application/linkset+json` or `?linkType=all`;
- redirects (307) `?linkType=gs1:pip` (or any link type, by CURIE or full URI) to that
  link; a link type this URI has none of redirects to the default link, as the resolver
  standard has resolvers do when the request names nothing better;
- names its link set in a `Link: <…?linkType=all>; rel="linkset"` header.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from api.pages import render_scan
from api.product_page import render_product
from api.deps import ViewsDep, path_gtin, path_lot, views_of
from api.routes.read import SCAN_EXAMPLE
from traceability import product, qr, scan
from traceability.linkset import MEDIA_TYPE as LINKSET, LinkSet, batch_links, link_type_name
from traceability.linkset import product_links

router = APIRouter(tags=["resolver"])

_LINK_TYPE = ("`all` for the link set; a GS1 link type (`gs1:pip`, `gs1:traceability`, …) "
              "to be redirected to that link")
# The resolver's parameters are read from the request (`request.path_params`, and
# `?linkType=`, any string, by `_link_type`), not declared as FastAPI parameters: their
# validation, for values that are plain strings anyway and checked by the identifier
# rules, cost a scan a tenth of its time. So they are documented here, as FastAPI
# documented them when they were declared.
_LINK_TYPE_QUERY = {
    "description": _LINK_TYPE, "in": "query", "name": "linkType", "required": False,
    "schema": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": _LINK_TYPE,
               "title": "Linktype"},
}


def _parameters(*path: str) -> dict[str, Any]:
    """`openapi_extra` documenting the path parameters `path` and `?linkType=`."""
    return {"parameters": [
        *({"name": name, "in": "path", "required": True,
           "schema": {"type": "string", "title": name.title()}} for name in path),
        _LINK_TYPE_QUERY,
    ]}


def _link_type(request: Request) -> str | None:
    # The last `linkType` when repeated, as a declared `str | None` parameter reads it.
    return request.query_params.get("linkType")


PRODUCT_EXAMPLE = {
    "gtin": "06920023000105", "product": "全麦吐司 400g", "category": "food",
    "producers": [{"uscc": "91350102MA2Y00004P", "name": "福州麦香烘焙食品有限公司"}],
    "lot_count": 1,
    "lots": [{"lot": "BR20261028-B", "producer": "91350102MA2Y00004P",
              "produced_at": "2026-10-28T09:00:00Z", "expires_at": "2026-11-04T09:00:00Z",
              "entry": 33}],
}
LINKSET_EXAMPLE = {"linkset": [{
    "anchor": "https://id.example.cn/01/06920023000105/10/BR20261028-B",
    "https://gs1.org/voc/defaultLink": [{
        "href": "https://id.example.cn/01/06920023000105/10/BR20261028-B",
        "title": "全麦吐司 400g · BR20261028-B", "type": "text/html", "hreflang": ["zh", "en"]}],
    "https://gs1.org/voc/pip": [{
        "href": "https://id.example.cn/v1/batches/06920023000105/BR20261028-B",
        "title": "全麦吐司 400g · BR20261028-B", "type": "application/json"}],
}]}


# JSONResponse.render calls json.dumps with arguments that are not its defaults, which
# builds a new JSONEncoder for every response; one encoder with the same arguments gives
# the same bytes.
_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None,
                           separators=(",", ":")).encode


class _JSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return _ENCODE(content).encode("utf-8")


def _responses(json_example: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"content": {"application/json": {"example": json_example},
                          "text/html": {"example": "<!doctype html>…"},
                          LINKSET: {"example": LINKSET_EXAMPLE}}},
        301: {"description": "GTIN-8/12/13: moved to the canonical GTIN-14 URI"},
        307: {"description": "`?linkType=…`: the link of that type"},
    }


def _base(request: Request) -> str:
    """The scheme and host of links (`Settings.link_base`): configured, never the
    request's Host header, which anyone can set."""
    base: str = request.app.state.link_base
    return base


def _moved(path: str, request: Request) -> RedirectResponse:
    query = request.url.query
    return RedirectResponse(path + (f"?{query}" if query else ""), status_code=301)


def _wants(request: Request, media_type: str) -> bool:
    accept = request.headers.get("accept", "")
    return media_type in accept and "text/html" not in accept


def _negotiate(request: Request, link_type: str | None, anchor: str,
               links: Callable[[], LinkSet], as_json: Any, as_html: Any) -> Response:
    """The answer a resolver gives for `anchor`; `links` makes its link set, `as_json` and
    `as_html` its other representations (each called only when chosen: a scan for JSON
    or HTML needs only the anchor, for the Link header)."""
    if link_type is not None and link_type_name(link_type) not in ("all", "linkset"):
        return RedirectResponse(links().target(link_type_name(link_type)).href,
                                status_code=307)
    if link_type is not None or _wants(request, LINKSET):
        answer: Response = _JSONResponse(links().to_json(), media_type=LINKSET)
    elif _wants(request, "application/json"):
        answer = _JSONResponse(as_json())
    else:
        answer = HTMLResponse(as_html())
    answer.headers["Link"] = f'<{anchor}?linkType=all>; rel="linkset"; type="{LINKSET}"'
    answer.headers["Vary"] = "Accept"
    return answer


def _lang(request: Request) -> str:
    return request.query_params.get("lang", "zh")


@router.get("/01/{gtin:segment}", summary="GS1 Digital Link: a product and its lots",
            responses=_responses(PRODUCT_EXAMPLE), openapi_extra=_parameters("gtin"))
def resolve_product(request: Request) -> Response:
    """The product named by the GTIN: its name, category, producers and newest lots, each
    lot linking to its scan page."""
    gtin = request.path_params["gtin"]
    canonical = path_gtin(gtin)
    if canonical != gtin:
        return _moved(f"/01/{canonical}", request)
    view = product.product(views_of(request), canonical)
    base = _base(request)
    anchor = f"{base}/01/{canonical}"
    data = view.to_json()
    hrefs = [qr.batch_path(canonical, lot.lot) for lot in view.lots]
    return _negotiate(request, _link_type(request), anchor, lambda: product_links(base, anchor, view),
                      lambda: data,
                      lambda: render_product(data, hrefs, _lang(request)))


def _resolve_batch(gtin: str, lot: str, serial: str | None, request: Request,
                   link_type: str | None) -> Response:
    canonical, lot = path_gtin(gtin), path_lot(lot)
    if serial is not None:
        serial = qr.validate_serial(serial)
    if canonical != gtin:
        return _moved(qr.batch_path(canonical, lot, serial), request)
    view = scan.scan(views_of(request), canonical, lot)
    base = _base(request)
    anchor = base + qr.batch_path(canonical, lot, serial)
    data = view.to_json()
    if serial is not None:
        data["serial"] = serial
    return _negotiate(request, link_type, anchor, lambda: batch_links(base, anchor, view),
                      lambda: data,
                      lambda: render_scan(data, lang=_lang(request)))


@router.get("/01/{gtin:segment}/10/{lot:segment}",
            summary="GS1 Digital Link: the scan view of a batch",
            responses=_responses(SCAN_EXAMPLE), openapi_extra=_parameters("gtin", "lot"))
def resolve_batch(request: Request) -> Response:
    """What a shopper sees after scanning: HTML for a browser, the scan view JSON for
    `Accept: application/json`, the link set for `Accept: application/linkset+json`."""
    path = request.path_params
    return _resolve_batch(path["gtin"], path["lot"], None, request, _link_type(request))


@router.get("/01/{gtin:segment}/10/{lot:segment}/21/{serial:segment}",
            summary="GS1 Digital Link: one serialised item of a batch",
            responses=_responses({**SCAN_EXAMPLE, "serial": "000123"}),
            openapi_extra=_parameters("gtin", "lot", "serial"))
def resolve_item(request: Request) -> Response:
    """The scan view of the item's batch (the ledger records batches, not items), with
    the serial (GS1 AI 21, 1 to 20 characters of GS1 character set 82) echoed in JSON."""
    path = request.path_params
    return _resolve_batch(path["gtin"], path["lot"], path["serial"], request,
                          _link_type(request))


@router.get("/v1/batches/{gtin:segment}/{lot:segment}", summary="The scan view of a batch, as JSON",
            response_model=dict[str, Any],
            responses={200: {"content": {"application/json": {"example": SCAN_EXAMPLE}}}})
def batch_view(gtin: str, lot: str, views: ViewsDep) -> Response:
    """The resolver's `gs1:pip` and `gs1:recallStatus` link: the scan view without content
    negotiation (PROTOCOL.md §5, "Scan view")."""
    # A JSONResponse of the view's JSON (the bytes FastAPI would send for the dict), and
    # `response_model` for the OpenAPI schema: no validation and re-encoding of a dict
    # that is already JSON.
    return _JSONResponse(scan.scan(views, path_gtin(gtin), path_lot(lot)).to_json())


@router.get("/v1/products/{gtin:segment}", summary="A product and its lots, as JSON",
            response_model=dict[str, Any],
            responses={200: {"content": {"application/json": {"example": PRODUCT_EXAMPLE}}}})
def product_view(gtin: str, views: ViewsDep) -> Response:
    """The `gs1:pip` link of `/01/{gtin}`: name, category, producers, newest lots."""
    return _JSONResponse(product.product(views, path_gtin(gtin)).to_json())  # as batch_view
