"""Identifiers holding `/` in one path segment (PROTOCOL.md §5: a lot's `/` is `%2F` in a
path; GS1 Digital Link URI syntax percent-encodes it the same way; RFC 3986 §2.2).

An ASGI server decodes the path before the router sees it (`scope["path"]`), so the
Digital Link `/01/…/10/A1%2F21%2F7` of lot `A1/21/7` would route as lot `A1` with
serial `7`. Routing here works on the raw path instead, in two steps:

1. `RawPathRouting` (ASGI middleware) rewrites `scope["path"]` from `scope["raw_path"]`
   with every `/` and `%` the client percent-encoded left encoded (`%2F`, `%25`), and
   every other escape decoded as before. An encoded slash then stays inside its
   segment, and a `%` in the path is always the start of one of those two escapes.
2. The `segment` (one path segment) and `segments` (one or more) convertors, which every
   route parameter uses (`/01/{gtin:segment}/10/{lot:segment}`), decode those two
   escapes: each value is decoded exactly once, so `%252F` is the three characters `%2F`.

A request without `%` in its path (nearly every scan) passes through untouched.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from starlette.convertors import Convertor, register_url_convertor
from starlette.types import ASGIApp, Receive, Scope, Send

# A `%` with two hex digits, or a `%` that escapes nothing (which stands for itself).
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})?")
_KEPT = {0x25: b"%25", 0x2F: b"%2F"}


def _keep_or_decode(match: re.Match[bytes]) -> bytes:
    digits = match.group(1)
    if digits is None:
        return b"%25"
    byte = int(digits, 16)
    return _KEPT.get(byte) or bytes((byte,))


def routing_path(raw_path: bytes, path: str, root_path: str = "") -> str:
    """The path the router should see for a request whose raw path is `raw_path` (and
    whose decoded path is `path`): `raw_path` decoded, except that `/` and `%` stay `%2F`
    and `%25` where the client encoded them, and a bare `%` becomes `%25`.

    The raw path is the truth (a server's decoded path may be decoded twice, as
    Starlette's test client does with `%252F`); only a `root_path` that the server put in
    front of `path` and not of `raw_path` is taken from `path`."""
    kept = _ESCAPE.sub(_keep_or_decode, raw_path).decode("utf-8", "replace")
    if root_path and path.startswith(root_path) and not kept.startswith(root_path):
        return root_path + kept
    return kept


class RawPathRouting:
    """Pure ASGI middleware: see the module docstring. Add it so that it runs before the
    router (any position among the app's middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # In place, as the router writes the matched route into this same scope:
            # middleware outside this one (metrics) reads it there.
            raw = scope.get("raw_path")
            if raw is None:
                # ASGI makes raw_path optional: without it, no encoded slash can be told
                # from a plain one, but a `%` must still read as itself.
                if "%" in scope["path"]:
                    scope["path"] = scope["path"].replace("%", "%25")
            elif b"%" in raw:
                scope["path"] = routing_path(raw, scope["path"], scope.get("root_path", ""))
        await self.app(scope, receive, send)


class Segment(Convertor[str]):
    """One path segment, `%2F` and `%25` decoded (RawPathRouting left only those)."""

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return unquote(value) if "%" in value else value

    def to_string(self, value: str) -> str:
        return quote(value, safe="")


class Segments(Segment):
    """One or more path segments, as Starlette's `path` convertor, each `%2F` and `%25`
    decoded: for a value that may arrive with its `/` encoded or not."""

    regex = ".+"


def register() -> None:
    """Make `{name:segment}` and `{name:segments}` known to Starlette's route compiler; call
    before any route using them is declared (api/routes/__init__.py does)."""
    register_url_convertor("segment", Segment())
    register_url_convertor("segments", Segments())
