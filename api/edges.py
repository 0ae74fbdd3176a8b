"""The server's edges (PROTOCOL.md §5): security headers, CORS, HEAD and the Host header.

One pure ASGI step in front of everything else, the error middleware included, so that
every answer (a 500 and a 429 too) carries the same headers:

- `X-Content-Type-Options: nosniff`, `Referrer-Policy`, `X-Frame-Options: DENY` and a
  Content-Security-Policy that allows nothing from another host (the pages have one
  inline style sheet and no script), on every answer: a JSON or SVG answer opened in a
  browser gets the same locked-down document as a page;
- `Access-Control-Allow-Origin: *` on the public reads (every method but POST), so that
  browser apps of banks and buyers can call them, and a CORS preflight for a GET or
  HEAD answered here; a POST gets no CORS header, so a browser page of another origin
  cannot read what a write answered;
- `HEAD` on every GET route: run as the GET, answered with its status and headers and
  no body;
- with an allowed-hosts list (QLEDGER_ALLOWED_HOSTS), a request naming another host in
  its `Host` header is refused (400), as Django's ALLOWED_HOSTS does. The host never
  reaches a link in any case (api.settings: the resolver is configured).
"""

from __future__ import annotations

from collections.abc import Iterable

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import problems

Headers = list[tuple[bytes, bytes]]

# Nothing from another host: the pages' one inline style sheet (and style attributes of
# the inline SVG case picture), images from this server (QR codes) or inline, no script,
# no frames, no forms posting elsewhere.
PAGE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# FastAPI's /docs and /redoc load Swagger UI and ReDoc from jsDelivr and start them with
# an inline script: until they are served from here, these two pages alone may load
# scripts and styles from that one CDN (and ReDoc's fonts from Google Fonts).
DOCS_CSP = ("default-src 'none'; script-src 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
            "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
            "https://cdn.jsdelivr.net; connect-src 'self'; worker-src blob:; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'")
DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})


def _encode(pairs: Iterable[tuple[str, str]]) -> Headers:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in pairs]


def _security(csp: str) -> Headers:
    return _encode([
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        ("Content-Security-Policy", csp),
    ])


_CORS = _encode([
    ("Access-Control-Allow-Origin", "*"),
    # Scripts may read these of a cross-origin answer only when named.
    ("Access-Control-Expose-Headers", "ETag, Link, Location, Retry-After"),
])
_PREFLIGHT = _encode([
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "GET, HEAD"),
    ("Access-Control-Allow-Headers", "Accept, Accept-Language, If-None-Match, Cache-Control"),
    ("Access-Control-Max-Age", "86400"),
])
_READS = frozenset({"GET", "HEAD"})
_DISCONNECT: Message = {"type": "http.disconnect"}


def host_of(scope: Scope) -> str | None:
    """The host named by the request's Host header, lowercased, without its port."""
    for key, value in scope["headers"]:
        if key == b"host":
            host = value.decode("latin-1").strip().lower()
            if host.startswith("["):  # an IPv6 literal: [::1]:8000
                return host[: host.find("]") + 1] if "]" in host else host
            return host.rsplit(":", 1)[0] if ":" in host else host
    return None


def host_allowed(host: str | None, allowed: frozenset[str]) -> bool:
    """`allowed` holds names, `.example.cn` for a domain and its subdomains, or `*`."""
    if "*" in allowed:
        return True
    if not host:
        return False
    if host in allowed:
        return True
    return any(name.startswith(".") and (host.endswith(name) or host == name[1:])
               for name in allowed)


class Edges:
    """Pure ASGI middleware adding the headers above in one list extension per answer.
    `allowed_hosts` empty: any Host header is served."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        page, docs = _security(PAGE_CSP), _security(DOCS_CSP)
        self._read, self._write = page + _CORS, page
        self._docs = docs + _CORS
        self._preflight = _PREFLIGHT + page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        extra = self._read if method in _READS else self._write
        if scope["path"] in DOCS_PATHS:
            extra = self._docs

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        if self.allowed_hosts and not host_allowed(host_of(scope), self.allowed_hosts):
            refusal = problems.problem(
                "invalid-host", 400,
                "the Host header names a host this server does not answer for")
            await refusal(scope, receive, send_with_headers)
            return
        if method == "OPTIONS" and _preflight_for_read(scope):
            await send({"type": "http.response.start", "status": 204,
                        "headers": self._preflight})
            await send({"type": "http.response.body", "body": b""})
            return
        if method == "HEAD":
            await self._head(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    async def _head(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The GET's answer without its body. The status and headers go out as soon as
        they come, and the app is then told the client left: a stream (the warnings'
        server-sent events) would otherwise run on with no one to read it."""
        # ASGI 2.3 makes a streaming answer listen for the disconnect below; 2.4 would
        # have it wait for a failed send instead, which is logged as an error.
        asgi = {**scope.get("asgi", {}), "spec_version": "2.3"}
        inner = {**scope, "method": "GET", "asgi": asgi}
        answered = anyio.Event()
        asked = False

        async def receive_head() -> Message:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await answered.wait()
            return _DISCONNECT

        async def send_head(message: Message) -> None:
            if answered.is_set():
                return  # the body, dropped
            if message["type"] == "http.response.start":
                await send(message)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                answered.set()

        await self.app(inner, receive_head, send_head)


def _preflight_for_read(scope: Scope) -> bool:
    for key, value in scope["headers"]:
        if key == b"access-control-request-method":
            return value.strip().upper() in (b"GET", b"HEAD")
    return False
