"""Prometheus metrics at /metrics (text exposition format 0.0.4), hand-written because
the few series needed do not justify another dependency.

Series: qledger_log_size (entries in the log, read from the database at each scrape,
so every worker agrees), qledger_rejections_total by problem type, and
qledger_request_seconds by route template. Counters are per worker process; a
Prometheus server adds them up across workers.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import REFUSALS

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count: Counter[tuple[str, str]] = Counter()
        self._sum: dict[tuple[str, str], float] = {}
        self._buckets: Counter[tuple[str, str, float]] = Counter()

    def observe(self, method: str, route: str, seconds: float) -> None:
        key = (method, route)
        with self._lock:
            self._count[key] += 1
            self._sum[key] = self._sum.get(key, 0.0) + seconds
            for bound in BUCKETS:
                if seconds <= bound:
                    self._buckets[(method, route, bound)] += 1

    def render(self, log_size: int) -> str:
        lines = [
            "# HELP qledger_log_size Entries in the log.",
            "# TYPE qledger_log_size gauge",
            f"qledger_log_size {log_size}",
            "# HELP qledger_rejections_total Requests refused, by problem type.",
            "# TYPE qledger_rejections_total counter",
        ]
        with self._lock:
            for kind, n in sorted(REFUSALS.items()):
                lines.append(f'qledger_rejections_total{{reason="{kind}"}} {n}')
            lines += ["# HELP qledger_request_seconds Request latency by route.",
                      "# TYPE qledger_request_seconds histogram"]
            for (method, route), n in sorted(self._count.items()):
                labels = f'method="{method}",route="{route}"'
                for bound in BUCKETS:
                    lines.append(f'qledger_request_seconds_bucket{{{labels},le="{bound}"}} '
                                 f"{self._buckets[(method, route, bound)]}")
                lines.append(f'qledger_request_seconds_bucket{{{labels},le="+Inf"}} {n}')
                lines.append(f"qledger_request_seconds_sum{{{labels}}} {self._sum[(method, route)]:.6f}")
                lines.append(f"qledger_request_seconds_count{{{labels}}} {n}")
        return "\n".join(lines) + "\n"


class TimedRoutes:
    """Pure ASGI middleware observing each HTTP request's latency under its route template:
    from the request to the start of its answer (a feed stream is timed to its first
    byte, not to its end).

    Not `app.middleware("http")`: Starlette's BaseHTTPMiddleware runs the app in a task
    of its own and streams the answer back through memory channels, which cost the scan
    route more than its queries. A request whose app raises is not observed (the error
    middleware answers it)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        answered = 0.0

        async def timed(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = time.perf_counter()
            await send(message)

        await self.app(scope, receive, timed)
        if answered:
            # The route template, never the raw path: one series per route, not per
            # GTIN, and without its convertors (`{lot}`, not `{lot:segment}`). The router
            # writes the matched route into this same scope.
            name = getattr(scope.get("route"), "path_format", "unmatched")
            self.metrics.observe(scope["method"], name, answered - began)


router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics",
            responses={200: {"content": {"text/plain": {"example": "qledger_log_size 57\n"}}}})
def prometheus(request: Request) -> PlainTextResponse:
    metrics: Metrics = request.app.state.metrics
    text = metrics.render(request.app.state.ledger.size())
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
