"""Per-client rate limit on the public read routes: a token bucket per client address.

Scanning and credit lookups are public and cheap to ask for, so one client must not be
able to starve the others. Writes are signed and bounded by the rules, so they are not
limited here. Buckets live in each worker process (a limit of N per minute is N per
worker); the table of clients is bounded so that spoofed addresses cannot exhaust memory.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from api import problems

# The public read routes: what anyone may ask without being an organization of the ledger.
# Label sheets and case exports are the heaviest answers, so they count too.
PUBLIC_PREFIXES = (
    "/01/", "/v1/batches/", "/v1/products/", "/v1/orgs/", "/v1/blacklist", "/v1/qr/",
    "/v1/labels/", "/v1/cases/", "/orgs/", "/blacklist", "/cases/",
)
MAX_CLIENTS = 100_000


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(max(1, per_minute))
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait_for(self, client: str) -> float:
        """0 if the request may go ahead (and take a token), else seconds to wait."""
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[client] = (tokens - 1 if wait == 0 else tokens, now)
            if len(self._buckets) > MAX_CLIENTS:
                self._buckets.popitem(last=False)
        return wait


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
            peer = scope.get("client")
            client = peer[0] if peer else "unknown"
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
