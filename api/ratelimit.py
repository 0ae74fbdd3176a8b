"""Limits per client: token buckets on the public reads and on the writes, and a cap on
live streams.

Scanning and credit lookups are public and cheap to ask for, so one client must not be
able to starve the others. Writes cost a signature check per envelope, which anyone can
ask for with garbage signatures under a real key id: they are counted in envelopes, per
client address and per signing key, and a client over its allowance is refused before its
body is read. A stream holds a connection for hours, so they are counted while open.
Buckets and counts live in each worker process (a limit of N per minute is N per worker);
the table of clients is bounded so that spoofed addresses cannot exhaust memory.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api import problems

# The public read routes: what anyone may ask without being an organization of the ledger.
# Label sheets and case exports are the heaviest answers, so they count too.
PUBLIC_PREFIXES = (
    "/01/", "/v1/batches/", "/v1/products/", "/v1/orgs/", "/v1/blacklist", "/v1/qr/",
    "/v1/labels/", "/v1/cases/", "/orgs/", "/blacklist", "/cases/",
)
# The write routes: POST only. Limited as they cost a signature check per envelope.
WRITE_PATHS = frozenset({"/v1/entries", "/v1/entries/batch"})
MAX_CLIENTS = 100_000
# How long a client refused a stream is asked to wait: a stream ends when its client
# leaves, which the server notices within a keep-alive.
STREAM_RETRY_SECONDS = 15


class RateLimiter:
    """A token bucket per client: `per_minute` tokens a minute, holding at most `burst`
    (default: a minute's worth)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic,
                 burst: int | None = None) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(max(1, per_minute if burst is None else burst))
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait_for(self, client: str, cost: float = 1) -> float:
        """0 if a request costing `cost` tokens may go ahead (and takes them), else the
        seconds to wait. A request needs its cost in tokens, or a full bucket when it costs
        more than the bucket holds: then it pays the whole cost, into debt, so that a
        1,000-envelope batch is served however small the bucket, and then waited for.
        `cost` 0 asks whether a request of one token would go ahead, without taking it."""
        need = min(max(cost, 1), self.burst)
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            wait = 0.0 if tokens >= need else (need - tokens) / self.rate
            self._buckets[client] = (tokens - cost if wait == 0 else tokens, now)
            if len(self._buckets) > MAX_CLIENTS:
                self._buckets.popitem(last=False)
        return wait


class RateLimited(Exception):
    """Refused for its rate: answered 429 with Retry-After (whole seconds, at least 1)."""

    def __init__(self, wait: float, detail: str) -> None:
        super().__init__(detail)
        self.retry_after = max(1, math.ceil(wait))
        self.detail = detail


def too_many(e: RateLimited) -> JSONResponse:
    answer = problems.problem("rate-limited", 429, e.detail)
    answer.headers["Retry-After"] = str(e.retry_after)
    return answer


async def answer_rate_limited(request: Request, e: Exception) -> Response:
    """The exception handler for RateLimited raised by a route or the ledger's `admit`."""
    if not isinstance(e, RateLimited):  # registered for RateLimited only
        raise e
    return too_many(e)


def client_of(scope: Scope) -> str:
    peer = scope.get("client")
    return str(peer[0]) if peer else "unknown"


class WriteLimits:
    """Envelopes per minute per client address and per signing key. The address is
    charged for each envelope of a request once the body is split (`charge_client`); each
    key for the envelopes it signs once every key of the batch is known to be
    registered, before any signature is checked (`admit_keys`, given to Ledger.append)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        # Ten seconds' worth at once: a full batch may start at any time, and a flood of
        # them gets one through every ten seconds, not a minute's worth at once.
        burst = max(1, per_minute // 6)
        self.by_client = RateLimiter(per_minute, clock, burst)
        self.by_key = RateLimiter(per_minute, clock, burst)

    def check_client(self, client: str) -> None:
        """Raises RateLimited when `client` has used its allowance: nothing of its request
        need be read."""
        self.charge_client(client, 0)

    def charge_client(self, client: str, envelopes: int) -> None:
        wait = self.by_client.wait_for(client, envelopes)
        if wait > 0:
            raise RateLimited(wait, f"too many envelopes from {client}; try again in "
                                    f"{max(1, math.ceil(wait))} s")

    def admit_keys(self, signed: Mapping[str, int]) -> None:
        """`signed`: how many of the batch's envelopes each key id signs."""
        for keyid, envelopes in signed.items():
            wait = self.by_key.wait_for(keyid, envelopes)
            if wait > 0:
                raise RateLimited(wait, f"too many envelopes signed by key {keyid}; try again "
                                        f"in {max(1, math.ceil(wait))} s")


class PublicReadLimit:
    """Pure ASGI middleware: a GET on a public read route beyond the client's allowance is
    answered 429 with Retry-After, without reaching the app. (Not BaseHTTPMiddleware,
    whose task and channels per request cost more than the routes it guards.)"""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["method"] == "GET"
                and scope["path"].startswith(PUBLIC_PREFIXES)):
            client = client_of(scope)
            wait = self.limiter.wait_for(client)
            if wait > 0:
                retry = max(1, int(wait + 0.999))
                answer = problems.problem(
                    "rate-limited", 429,
                    f"too many requests from {client}; try again in {retry} s",
                )
                answer.headers["Retry-After"] = str(retry)
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


class WriteLimit:
    """Pure ASGI middleware: a POST to a write route from a client that has used its
    allowance is answered 429 with Retry-After before its body is read. (The route charges
    the envelopes once the body is split: WriteLimits.charge_client.)"""

    def __init__(self, app: ASGIApp, limits: WriteLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in WRITE_PATHS:
            try:
                self.limits.check_client(client_of(scope))
            except RateLimited as e:
                answer = too_many(e)
                # The body is not wanted: closing the connection after the answer spares
                # the server reading (and throwing away) the rest of a large upload.
                answer.headers["Connection"] = "close"
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


class StreamLimit:
    """Pure ASGI middleware: at most `per_client` live streams (GET on a path ending in
    `/stream`: Server-Sent Events) per client address (429 beyond) and `total` per worker
    (503 beyond), counted from the request until the answer ends; 0: no cap."""

    def __init__(self, app: ASGIApp, per_client: int, total: int) -> None:
        self.app = app
        self.per_client = per_client
        self.total = total
        self.open: Counter[str] = Counter()  # live streams per client (event loop only)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (scope["type"] == "http" and scope["method"] == "GET"
                and scope["path"].endswith("/stream")):
            await self.app(scope, receive, send)
            return
        client = client_of(scope)
        if self.total and self.open.total() >= self.total:
            answer = problems.problem(
                "too-many-streams", 503,
                f"this server holds its most live streams ({self.total}); try again later")
        elif self.per_client and self.open[client] >= self.per_client:
            answer = problems.problem(
                "too-many-streams", 429,
                f"{client} holds {self.per_client} live streams already, the most allowed; "
                "close one first")
        else:
            self.open[client] += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self.open[client] -= 1
                if not self.open[client]:
                    del self.open[client]
            return
        answer.headers["Retry-After"] = str(STREAM_RETRY_SECONDS)
        await answer(scope, receive, send)
