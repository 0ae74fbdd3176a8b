"""FastAPI dependencies shared by the routes: the ledger, the views, the settings, the
bounded request body, the paging parameters of lists, and identifiers in paths."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from api import problems
from api.body import read_body
from api.settings import Settings
from ledger.application import Ledger
from ledger.errors import InvalidRequest, Rejected
from ledger.identifiers import normalize_gtin, validate_lot, validate_uscc
from traceability import paging
from traceability.credit import ExplainCursor
from traceability.views import Views


def get_ledger(request: Request) -> Ledger:
    ledger: Ledger = request.app.state.ledger
    return ledger


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


LedgerDep = Annotated[Ledger, Depends(get_ledger)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def request_body(request: Request, settings: SettingsDep) -> bytes:
    """The raw body, at most `settings.max_body_bytes` (413 problem beyond)."""
    return await read_body(request, settings.max_body_bytes)


BodyDep = Annotated[bytes, Depends(request_body)]


def views_of(request: Request) -> Views:
    """The worker's views, whose every read catches up first (`fresh_reads`)."""
    views: Views = request.app.state.views
    return views


async def get_views(request: Request) -> Views:
    # `async`: nothing to wait for, so no trip through the thread pool of its own.
    return views_of(request)


ViewsDep = Annotated[Views, Depends(get_views)]


# The paging parameters of every list (PROTOCOL.md §5; traceability.paging).
Cursor = Annotated[str | None, Query(
    max_length=paging.MAX_CURSOR_CHARS,
    description="`next` of the page before, as given; leave it out for the first page")]
Limit = Annotated[int, Query(ge=1, le=paging.MAX_LIMIT, description="most items to return")]
PAGING_PROBLEMS = problems.responses(problems.example(
    problems.INVALID_REQUEST, 400, "cursor: not a cursor of this list (take `next` from the "
    "page before, or leave the cursor out for the first page)"))


def explain_cursor(text: str | None) -> ExplainCursor | None:
    """The position a page of explain lines starts after; None for the first page."""
    return None if text is None else ExplainCursor.from_text(text)


# Path parameters, checked as the write side checks them; a bad one is a 400 problem.
def path_uscc(value: str) -> str:
    try:
        return validate_uscc(value)
    except Rejected as e:
        raise InvalidRequest(e.detail) from None


def path_gtin(value: str) -> str:
    try:
        return normalize_gtin(value)
    except Rejected as e:
        raise InvalidRequest(e.detail) from None


def path_lot(value: str) -> str:
    try:
        return validate_lot(value)
    except Rejected as e:
        raise InvalidRequest(e.detail) from None
