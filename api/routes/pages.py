"""Pages for people: an organization's credit and the blacklist, as HTML.

The JSON stays where PROTOCOL.md §5 puts it (`/v1/orgs/{uscc}`, `/v1/blacklist`); the
pages live at their own paths (`/orgs/{uscc}`, `/blacklist`) rather than behind content
negotiation, so a link always shows the same thing and a cache never mixes the two.
An error on a page is the same problem the API would give: a browser (asking for
text/html) gets it as a small HTML page with the problem's status, anyone else as
problem+json.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from api import problems
from api.pages import language, render_blacklist, render_error, render_org
from api.routes.read import ViewsDep
from ledger.errors import LedgerError, NotFound
from traceability import blacklist, cases, orgs
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


def _page(request: Request, lang: str | None, build: Callable[[str], str]) -> HTMLResponse:
    """`build(lang)` as a page; a ledger error as an HTML error page for a browser."""
    chosen = language(lang)
    try:
        return HTMLResponse(build(chosen))
    except LedgerError as e:
        if "text/html" not in request.headers.get("accept", ""):
            raise  # the app's problem handler answers with problem+json
        answer = problems.answer(e)
        body = json.loads(answer.body)
        page = render_error(answer.status_code, body["title"], body["detail"], chosen)
        return HTMLResponse(page, status_code=answer.status_code)


def _names(views: Views, usccs: set[str]) -> dict[str, str]:
    names = {}
    for uscc in usccs:
        try:
            names[uscc] = str(views.organization(uscc)["name"])
        except NotFound:  # listed before it was registered cannot happen, but keep the code
            names[uscc] = ""
    return names


@router.get("/orgs/{uscc}", response_class=HTMLResponse, summary="An organization's credit page",
            responses={**_HTML, **_ERRORS})
def org_page(uscc: str, request: Request, views: ViewsDep, lang: Lang = None) -> HTMLResponse:
    """Name, roles, region, score and grade, blacklist status, awards, every entry that
    moved the score (each linked to its inclusion proof), the score over time, its
    blacklist record and its complaint cases. JSON: `GET /v1/orgs/{uscc}`."""

    def build(chosen: str) -> str:
        profile = orgs.profile(views, uscc)
        case_views = [cases.case_view(views, case).to_json()
                      for case in cases.cases_of(views, profile.uscc)]
        listings = [e.to_json() for e in blacklist.history(views, profile.uscc)]
        return render_org(profile.to_json(), case_views, listings, chosen)

    return _page(request, lang, build)


@router.get("/blacklist", response_class=HTMLResponse, summary="The blacklist page",
            responses=_HTML)
def blacklist_page(request: Request, views: ViewsDep, lang: Lang = None) -> HTMLResponse:
    """Who is on the quality-dishonesty blacklist now, with reasons and dates, and the
    latest listings and removals (credit repair). JSON: `GET /v1/blacklist`."""

    def build(chosen: str) -> str:
        current = [listing.to_json() for listing in blacklist.current(views)]
        events = blacklist.history(views)
        latest = events[::-1][:HISTORY_SHOWN]
        names = _names(views, {e.org for e in latest})
        shown: list[dict[str, Any]] = [{**e.to_json(), "name": names[e.org]} for e in latest]
        return render_blacklist(current, shown, len(events), chosen)

    return _page(request, lang, build)
