"""Slow clients: a deadline for a request's headers and one for its body.

uvicorn bounds the wait between two requests on a connection (`timeout_keep_alive`) but
not the time a client takes to send a request: a client that opens connections and
trickles its headers a byte at a time (slowloris), or its body, holds each one for as long
as it likes. Neither httptools nor h11 offers a deadline for the headers, so the
connection protocol below (uvicorn's own, httptools) sets one, and a small ASGI step bounds
the time to receive the body (408 beyond it, RFC 9110 §15.5.9).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api import problems
from api.settings import Settings

# Bytes of request line and headers allowed: far above any real client's few hundred,
# and bounding what a client streaming headers can make the server hold.
MAX_HEADER_BYTES = 64 * 1024


@functools.cache
def _header_timeout() -> float:
    # Read once per worker process, when its first connection is made (never at import).
    return Settings.from_env().header_timeout


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing the connection of a client that has not sent
    a complete request line and headers within `header_timeout` seconds of connecting or
    of the request's first byte, or that sends more than MAX_HEADER_BYTES of them.

    Passed to uvicorn as `http=`, by name, so each worker process of `--workers N` makes
    its own. `header_timeout` None: QLEDGER_HEADER_TIMEOUT (api/settings.py)."""

    header_timeout: float | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a client that connects and sends nothing is also cut off

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
            self._disarm()
            body = (b'{"type":"' + problems.problem_type("headers-too-large").encode()
                    + b'","title":"Headers too large","status":431,"detail":"the request line '
                    b'and headers are larger than ' + str(MAX_HEADER_BYTES).encode()
                    + b' bytes"}')
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: " + problems.MEDIA_TYPE.encode() + b"\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n"
                b"connection: close\r\n\r\n" + body)
            self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        seconds = self.header_timeout if self.header_timeout is not None else _header_timeout()
        self._header_timer = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        # Nothing is answered: the client has not finished asking, and the bytes it sent
        # so far may not even be HTTP.
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


class BodyTimedOut(Exception):
    """The client did not send the whole body in time."""


class BodyDeadline:
    """Pure ASGI middleware: a request's body must arrive within `seconds` of the request
    (its headers); a client still sending it then is answered 408 and disconnected.

    Only the body is timed: once it is complete, `receive` (which a streamed answer waits
    on for hours, to learn of a disconnect) passes through untouched."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        body_done = False
        started = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimedOut from None
            body_done = message["type"] != "http.request" or not message.get("more_body")
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, timed_receive, watched_send)
        except BodyTimedOut:
            if started:  # an answer already under way cannot become a 408: just end it
                return
            answer = problems.problem(
                "request-timeout", 408,
                f"the request body did not arrive within {self.seconds:g} s")
            answer.headers["Connection"] = "close"
            await answer(scope, receive, send)
