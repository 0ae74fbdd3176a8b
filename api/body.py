"""Request bodies as bytes, bounded, and JSON arrays split into their items' exact text.

Envelopes reach `Envelope.from_json` as the client sent them, so its strict parsing (no
duplicate keys, one byte form) is the only parsing that decides anything.
"""

from __future__ import annotations

import json

from starlette.requests import ClientDisconnect, Request

from ledger.canonical import nesting_depth
from ledger.errors import InvalidRequest, Rejected, Rejection

_WHITESPACE = " \t\n\r"  # RFC 8259 §2
MAX_BATCH_DEPTH = 9  # an envelope's MAX_ENVELOPE_DEPTH, inside the array
_SCANNER = json.JSONDecoder()  # finds where each item ends; from_json parses it for real


def too_large(limit: int) -> Rejected:
    return Rejected(Rejection.PAYLOAD_TOO_LARGE,
                    f"the request body is larger than {limit} bytes; split it into smaller batches")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed `limit` bytes: from
    Content-Length before reading anything, else while streaming, never reading past it."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isascii() or not declared.isdigit():
            raise InvalidRequest(f"Content-Length {declared!r} is not a byte count")
        if int(declared) > limit:
            raise too_large(limit)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large(limit)
    except ClientDisconnect:
        # A client that drops its upload is nothing the operator must read a traceback
        # about (Starlette logs one for any exception without a handler of its own): it
        # becomes a refusal like any other, answered to no one, and nothing is recorded.
        raise InvalidRequest("the client closed the connection before its whole body") from None
    return bytes(body)


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WHITESPACE:
        i += 1
    return i


def split_json_array(body: bytes) -> list[str]:
    """The text of each item of a JSON array, in order.

    Raises Rejected(BAD_JSON) for text that is not UTF-8 or not JSON (with `position` when an
    item is at fault) and Rejected(BAD_ENVELOPE) for JSON that is not an array.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Rejected(Rejection.BAD_JSON,
                       f"the batch is not UTF-8: invalid byte at offset {e.start}") from None
    # A batch nests four levels (array, envelope, signatures, signature): deeper text is
    # refused before the recursive scanner would climb 100,000 levels of it.
    if nesting_depth(text, MAX_BATCH_DEPTH) > MAX_BATCH_DEPTH:
        raise Rejected(Rejection.BAD_JSON, "the batch JSON nests too deeply")
    i = _skip(text, 0)
    if not text.startswith("[", i):
        try:
            json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            raise Rejected(Rejection.BAD_JSON, "the batch is not valid JSON") from None
        raise Rejected(Rejection.BAD_ENVELOPE, "a batch is a JSON array of envelopes")
    items: list[str] = []
    i = _skip(text, i + 1)
    if text.startswith("]", i):
        i += 1
    else:
        while True:
            position = len(items)
            try:
                _, end = _SCANNER.raw_decode(text, i)
            except json.JSONDecodeError as e:
                raise Rejected(Rejection.BAD_JSON, f"not valid JSON: {e.msg} at line {e.lineno} "
                               f"column {e.colno}", position=position) from None
            except RecursionError:
                raise Rejected(Rejection.BAD_JSON, "the JSON nests too deeply",
                               position=position) from None
            items.append(text[i:end])
            i = _skip(text, end)
            if text.startswith(",", i):
                i = _skip(text, i + 1)
                continue
            if text.startswith("]", i):
                i += 1
                break
            raise Rejected(Rejection.BAD_JSON, "not valid JSON: expected ',' or ']' after it",
                           position=position)
    if _skip(text, i) != len(text):
        raise Rejected(Rejection.BAD_JSON, "the batch is not valid JSON: text after the array")
    return items
