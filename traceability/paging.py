"""Paged lists (PROTOCOL.md §5, "Finding, listing, statistics and warnings"): an opaque
`cursor` and a `limit` (default 50, at most 500), answered as `{"items", "next"}`.

A cursor is the position a page ended at, written by the server and read back only by
it: the RFC 8785 (JCS) bytes of a small JSON object of named strings and integers, in
unpadded base64url (RFC 4648 §5), so it travels in a query string unescaped. Clients
must treat it as opaque; the server reads back only cursors of the shape the list
wrote, and any other text is an `InvalidRequest` (400), never an error of its own.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping

from ledger.canonical import canonical_bytes
from ledger.errors import InvalidRequest

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
# Far more than any position needs; a longer text is refused before it is decoded.
MAX_CURSOR_CHARS = 200

_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
Position = Mapping[str, str | int]


def check_limit(limit: int) -> None:
    """Raises InvalidRequest unless 1 <= limit <= MAX_LIMIT."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be from 1 to {MAX_LIMIT}, not {limit}")


def not_a_cursor() -> InvalidRequest:
    """The refusal of a cursor this list did not write (or no longer reads)."""
    return InvalidRequest("cursor: not a cursor of this list (take `next` from the page "
                          "before, or leave the cursor out for the first page)")


def cursor_text(position: Position) -> str:
    """The cursor of a position: base64url of its JCS bytes, without padding."""
    return base64.urlsafe_b64encode(canonical_bytes(dict(position))).rstrip(b"=").decode("ascii")


def cursor_position(text: str, shape: Mapping[str, type[str | int]]) -> dict[str, str | int]:
    """The position a cursor holds, which must have exactly the fields of `shape`, each of
    its type. Raises InvalidRequest for any text that is not such a cursor."""
    refused = not_a_cursor()
    if len(text) > MAX_CURSOR_CHARS or not _BASE64URL.fullmatch(text):
        raise refused
    try:
        position = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):  # not base64, not UTF-8 or not JSON
        raise refused from None
    if not isinstance(position, dict) or position.keys() != shape.keys():
        raise refused
    for name, kind in shape.items():
        # bool is an int to Python, never to a cursor.
        if type(position[name]) is not kind:
            raise refused
    return position
