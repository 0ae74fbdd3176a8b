"""Pages for people: an organization's credit and the blacklist, as HTML.

The JSON stays where PROTOCOL.md §5 puts it (`/v1/orgs/{uscc}`, `/v1/blacklist`); the
pages live at their own paths (`/orgs/{uscc}`, `/blacklist`) rather than behind content
negotiation, so a link always shows the same thing and a cache never mixes the two.
An error on a page is the same problem the API would give (api/problems.py maps it, in
one place): a browser, asking for text/html, gets it as a small HTML page with the
problem's status and headers; anyone else gets the problem+json.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, Response

from api import problems
from api.pages import language, render_blacklist, render_error, render_org
from api.deps import PAGING_PROBLEMS, Cursor, Limit, ViewsDep, explain_cursor
from ledger.errors import NotFound
from traceability import blacklist, cases, orgs, paging
from traceability.views import Views

router = APIRouter(tags=["pages"])

# The blacklist page shows this many of the latest listings and removals.
HISTORY_SHOWN = 200

Lang = Annotated[str | None, Query(description="`zh` (default) or `en`")]

_HTML = {200: {"content": {"text/html": {"example": "<!doctype html>…"}}}}
_ERRORS = problems.responses(
    problems.example(problems.INVALID_REQUEST, 400, "USCC 91350100MA2Y00002X: bad check digit"),
    problems.example(problems.NOT_FOUND, 404, "organization 91350100MA2Y00002L is not registered"),
)


# Paths of pages people open in a browser (the scan page is the Digital Link route).
PAGE_PREFIXES = ("/01/", "/orgs/", "/blacklist")

Handler = Callable[[Request, Exception], Awaitable[Response]]


def _for_browsers(handler: Handler) -> Handler:
    async def answer(request: Request, e: Exception) -> Response:
        response = await handler(request, e)
        if (response.media_type != problems.MEDIA_TYPE
                or not request.url.path.startswith(PAGE_PREFIXES)
                or "text/html" not in request.headers.get("accept", "")):
            return response
        problem = json.loads(bytes(response.body))
        page = render_error(response.status_code, problem["title"], problem["detail"],
                            language(request.query_params.get("lang")))
        html = HTMLResponse(page, status_code=response.status_code)
        for name, value in response.headers.items():
            if name.lower() not in ("content-type", "content-length"):
                html.headers[name] = value  # e.g. Allow on a 405
        return html

    return answer


def install_error_pages(app: FastAPI) -> None:
    """Call after problems.install: every problem answer on a page path, asked for by a
    browser, becomes an HTML error page with the same status."""
    for kind, handler in list(app.exception_handlers.items()):
        app.exception_handlers[kind] = _for_browsers(handler)


def _names(views: Views, usccs: set[str]) -> dict[str, str]:
    names = {}
    for uscc in usccs:
        try:
            names[uscc] = str(views.organization(uscc)["name"])
        except NotFound:  # the ledger lists only registered organizations; show the code
            names[uscc] = ""
    return names


@router.get("/orgs/{uscc:segment}", response_class=HTMLResponse,
            summary="An organization's credit page",
            responses={**_HTML, **_ERRORS, **PAGING_PROBLEMS})
def org_page(uscc: str, views: ViewsDep, lang: Lang = None, cursor: Cursor = None,
             limit: Limit = paging.DEFAULT_LIMIT) -> HTMLResponse:
    """Name, roles, region, score and grade, blacklist status, awards, the entries that
    moved the score a page at a time (each linked to its inclusion proof; `cursor` and
    `limit` as for `/v1/orgs/{uscc}/explain`, whose cursors it takes; the page links to
    the next), the score over time, its blacklist record and its complaint cases. A page
    after the first shows the credit as it was taken for the first, which its lines
    explain. JSON: `GET /v1/orgs/{uscc}`."""
    position = explain_cursor(cursor)
    profile = orgs.profile(views, uscc, None if position is None else position.at)
    page = profile.credit.explain_page(None if position is None else position.after, limit)
    case_views = [cases.case_view(views, case).to_json()
                  for case in cases.cases_of(views, profile.uscc)]
    listings = [e.to_json() for e in blacklist.history(views, profile.uscc)]
    base = f"/orgs/{profile.uscc}?lang={language(lang)}"
    if limit != paging.DEFAULT_LIMIT:
        base += f"&limit={limit}"
    following = None if page.next is None else f"{base}&cursor={page.next.to_text()}"
    return HTMLResponse(render_org(
        profile.to_json(page), case_views, listings, language(lang),
        explain={"first": page.offset + 1, "last": page.offset + len(page.lines),
                 "total": page.total, "next": following,
                 "start": base if position is not None else None}))


@router.get("/blacklist", response_class=HTMLResponse, summary="The blacklist page",
            responses=_HTML)
def blacklist_page(views: ViewsDep, lang: Lang = None) -> HTMLResponse:
    """Who is on the quality-dishonesty blacklist now, with reasons and dates, and the
    latest listings and removals (credit repair). JSON: `GET /v1/blacklist`."""
    current = [listing.to_json() for listing in blacklist.current(views)]
    events = blacklist.history(views)
    latest = events[::-1][:HISTORY_SHOWN]
    names = _names(views, {e.org for e in latest})
    shown: list[dict[str, Any]] = [{**e.to_json(), "name": names[e.org]} for e in latest]
    return HTMLResponse(render_blacklist(current, shown, len(events), language(lang)))
