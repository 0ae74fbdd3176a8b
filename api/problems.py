"""RFC 9457 problem details: the one place where errors become HTTP answers.

Every error answer is `application/problem+json`::

    {"type": "https://qledger.example/problems/<kind>", "title": "...", "status": 422,
     "detail": "..."}

`type` is stable per kind of error; `title` is fixed per type; `detail` says what happened
this time. A rejected request changes nothing. Kinds and statuses:

400 `bad-json`, `bad-envelope`, `bad-base64`  Rejected: the body is not JSON, or not an
                                            envelope / an array of envelopes
409 `id-conflict`                           IdConflict: same statement id, other envelope
413 `payload-too-large`                     the body (over 1 MiB) or a payload is too large
413 `too-many-envelopes`                    a batch of more than 1,000
422 any other `Rejection` value             a format or ledger rule refused a well-formed
    (`bad-signature`, `unknown-key`, …)     envelope
400 `invalid-request`                       InvalidRequest; invalid path or query parameters
404 `not-found`                             NotFound; no such route
405 `method-not-allowed`                    wrong method on a route
400 `invalid-host`                          a Host header outside QLEDGER_ALLOWED_HOSTS
403 `export-too-large`                      a case's bundle beyond the server's bound
503 `storage`                               StorageError, the drivers' operational errors: the
                                            database cannot be used now. The detail is always
                                            "storage unavailable"; the cause (host, port,
                                            database, driver message) goes to the log only
503 `exports-busy`                          the export pool and its queue are full
                                            (with Retry-After; api/export_pool.py)
500 `verification-failed`                   VerificationError: the ledger's own data fails
500 `internal-error`                        anything else (no stack trace is sent)

A rejection inside a batch adds `"position"` (0-based place of the first bad envelope) and
`"errors": [{"position", "type", "detail"}, …]` naming every bad envelope known. Invalid
parameters add `"invalid-params": [{"name", "in", "reason"}, …]` (the RFC 9457 example).
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.errors import (
    InvalidRequest,
    LedgerError,
    NotFound,
    Rejected,
    Rejection,
    StorageError,
    VerificationError,
)

PROBLEM_BASE = "https://qledger.example/problems/"
MEDIA_TYPE = "application/problem+json"

INVALID_REQUEST = "invalid-request"
NOT_FOUND = "not-found"
STORAGE = "storage"
INTERNAL = "internal-error"
STORAGE_DETAIL = "storage unavailable"

log = logging.getLogger("qledger.api")
# What the drivers raise when the database is down, locked or too slow, if it reaches an
# answer unwrapped (psycopg_pool's PoolTimeout is a psycopg.OperationalError).
_OUTAGES = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError,
            sqlite3.OperationalError)

_BAD_REQUEST = frozenset({Rejection.BAD_JSON, Rejection.BAD_ENVELOPE, Rejection.BAD_BASE64})
_TOO_LARGE = frozenset({Rejection.PAYLOAD_TOO_LARGE, Rejection.TOO_MANY})
_CONFLICT = frozenset({Rejection.ID_CONFLICT})

_TITLES = {
    INVALID_REQUEST: "Invalid request",
    NOT_FOUND: "Not found",
    "method-not-allowed": "Method not allowed",
    STORAGE: "Storage unavailable",
    "verification-failed": "The ledger's own data does not verify",
    INTERNAL: "Internal error",
    Rejection.ID_CONFLICT.value: "Statement id recorded with different content",
}


def problem_type(kind: str) -> str:
    return PROBLEM_BASE + kind


_WORDS = {"json": "JSON", "id": "ID", "base64": "base64"}


def title(kind: str) -> str:
    """The fixed title of a kind: `insufficient-quantity` → "Insufficient quantity"."""
    if kind in _TITLES:
        return _TITLES[kind]
    words = [_WORDS.get(word, word) for word in kind.split("-")]
    return " ".join(words)[:1].upper() + " ".join(words)[1:]


def rejection_status(kind: Rejection) -> int:
    if kind in _BAD_REQUEST:
        return HTTPStatus.BAD_REQUEST
    if kind in _TOO_LARGE:
        return HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    if kind in _CONFLICT:
        return HTTPStatus.CONFLICT
    return HTTPStatus.UNPROCESSABLE_ENTITY


# ---- models, for the OpenAPI document --------------------------------------------------


class ProblemItem(BaseModel):
    position: int = Field(description="0-based place of the envelope in the batch")
    type: str
    detail: str


class InvalidParam(BaseModel):
    name: str
    reason: str
    in_: str = Field(alias="in", description="path, query, header or body")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(populate_by_name=True)

    type: str = Field(description="stable URI of the kind of problem")
    title: str
    status: int
    detail: str
    position: int | None = Field(None, description="batch rejections: the first bad envelope")
    errors: list[ProblemItem] | None = Field(
        None, description="batch rejections: every bad envelope known")
    invalid_params: list[InvalidParam] | None = Field(None, alias="invalid-params")


def example(kind: str, status: int, detail: str, **extra: Any) -> dict[str, Any]:
    return {"type": problem_type(kind), "title": title(kind), "status": status, "detail": detail,
            **extra}


def responses(*examples: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for problem answers, grouped by status, with examples."""
    out: dict[int | str, dict[str, Any]] = {}
    for ex in examples:
        entry = out.setdefault(ex["status"], {
            "model": Problem,
            "description": HTTPStatus(ex["status"]).phrase,
            "content": {MEDIA_TYPE: {"examples": {}}},
        })
        kind = ex["type"].removeprefix(PROBLEM_BASE)
        entry["content"][MEDIA_TYPE]["examples"][kind] = {"summary": ex["title"], "value": ex}
    return out


def fix_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Error answers are `application/problem+json`, and invalid parameters give 400: move
    the schema FastAPI puts under the route's own media type to the problem media type, and
    drop its default 422 "HTTPValidationError" answer. Every route may also answer with a
    problem its own documentation does not list (429 on the public routes, 503 when the
    database is down, 400 for a bad parameter): an OpenAPI `default` answer says so, so
    that clients and schemathesis know its shape."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            answers = operation.setdefault("responses", {})
            answers.setdefault("default", {
                "description": "A problem (RFC 9457)",
                "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            })
            default_422 = answers.get("422", {}).get("content", {}).get("application/json", {})
            if default_422.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                del answers["422"]
            for status, answer in answers.items():
                content = answer.get("content", {})
                if status[0] not in "45":
                    continue
                for media_type in [m for m in content if m != MEDIA_TYPE]:
                    content.setdefault(MEDIA_TYPE, {}).update(content.pop(media_type))
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema


# ---- answers -----------------------------------------------------------------------------


def problem(kind: str, status: int, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": problem_type(kind), "title": title(kind), "status": status, "detail": detail}
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


class RejectedBatch(Rejected):
    """A batch refused, naming every envelope known to be bad; `first` decides the answer."""

    def __init__(self, first: Rejected, others: Sequence[Rejected] = ()) -> None:
        super().__init__(first.kind, first.detail, position=first.position)
        self.errors = [first, *others]


# Refusals by kind, for /metrics (api/metrics.py); per worker process.
REFUSALS: Counter[str] = Counter()


def _rejected(e: Rejected) -> JSONResponse:
    REFUSALS[e.kind.value] += 1
    extra: dict[str, Any] = {}
    if e.position is not None:
        errors = e.errors if isinstance(e, RejectedBatch) else [e]
        extra["position"] = e.position
        extra["errors"] = [
            {"position": x.position, "type": problem_type(x.kind.value), "detail": x.detail}
            for x in errors
        ]
    return problem(e.kind.value, rejection_status(e.kind), str(e), **extra)


def answer(e: Exception) -> JSONResponse:
    """The problem answer for any exception: the whole mapping, in one function."""
    if isinstance(e, Rejected):
        return _rejected(e)
    if isinstance(e, InvalidRequest):
        return problem(INVALID_REQUEST, HTTPStatus.BAD_REQUEST, str(e))
    if isinstance(e, NotFound):
        return problem(NOT_FOUND, HTTPStatus.NOT_FOUND, str(e))
    if isinstance(e, (StorageError, *_OUTAGES)):
        # Anonymous clients learn that storage is unavailable, not where it lives nor
        # what its driver said: that is for the operator, in one line of the log.
        log.warning("storage unavailable: %s", str(e).replace("\n", " ") or type(e).__name__)
        return problem(STORAGE, HTTPStatus.SERVICE_UNAVAILABLE, STORAGE_DETAIL)
    if isinstance(e, VerificationError):
        return problem("verification-failed", HTTPStatus.INTERNAL_SERVER_ERROR, str(e))
    if isinstance(e, RequestValidationError):
        return _invalid_params(e)
    if isinstance(e, StarletteHTTPException):
        return _http(e)
    if isinstance(e, LedgerError):
        return problem(INTERNAL, HTTPStatus.INTERNAL_SERVER_ERROR, str(e))
    return problem(INTERNAL, HTTPStatus.INTERNAL_SERVER_ERROR,
                   "the server failed to answer; the error is in its log")


def _invalid_params(e: RequestValidationError) -> JSONResponse:
    params = []
    for error in e.errors():
        loc = [str(part) for part in error.get("loc", ())]
        where, name = (loc[0], ".".join(loc[1:])) if len(loc) > 1 else ("request", ".".join(loc))
        params.append({"name": name, "in": where, "reason": str(error.get("msg", "invalid"))})
    detail = "; ".join(f"{p['in']} parameter {p['name']}: {p['reason']}" for p in params)
    return problem(INVALID_REQUEST, HTTPStatus.BAD_REQUEST, detail or "invalid request",
                   **{"invalid-params": params})


def _http(e: StarletteHTTPException) -> JSONResponse:
    kinds = {404: NOT_FOUND, 405: "method-not-allowed"}
    status = HTTPStatus(e.status_code)
    kind = kinds.get(e.status_code) or status.phrase.lower().replace(" ", "-")
    detail = e.detail if isinstance(e.detail, str) and e.detail != status.phrase else (
        "no such route" if e.status_code == 404 else status.description or status.phrase)
    response = problem(kind, e.status_code, detail)
    for name, value in (e.headers or {}).items():  # e.g. Allow on a 405
        response.headers[name] = value
    return response


async def _handle(request: Request, e: Exception) -> JSONResponse:
    return answer(e)


def install(app: FastAPI) -> None:
    """Route every error through `answer`, and document errors as problems: the one
    customisation of the app's OpenAPI document (fix_openapi, made once, when the document
    is first asked for, after every route is included)."""
    for kind in (LedgerError, RequestValidationError, StarletteHTTPException, *_OUTAGES,
                 Exception):
        app.add_exception_handler(kind, _handle)
    original: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = fix_openapi(original())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
