"""The HTTP API (PROTOCOL.md §5): an app factory over one `Ledger`.

`create_app()` with no arguments opens the ledger named by QLEDGER_DB, which is what
`uvicorn --factory api.app:create_app` and `qledger serve --workers N` call in each worker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from starlette.types import ASGIApp

from api import edges, metrics, problems, ratelimit, rawpath, timeouts
from api.case_exports import CaseExports
from api.routes import casepages, cases, entries, feed, health, labels, log, pages, read, resolver
from api.settings import Settings
from ledger.application import Ledger
from traceability.views import Views

# The resolver first: the scan of a Digital Link is the busiest request, and routers are
# matched in this order (no other router's paths overlap the resolver's).
ROUTERS = (resolver.router, entries.router, feed.router, log.router, read.router, labels.router,
           health.router, metrics.router, cases.router)
# Pages for people (HTML); the scan page itself is the Digital Link route in `resolver`.
PAGE_ROUTERS = (pages.router,)

DESCRIPTION = """\
The quality ledger's HTTP API (PROTOCOL.md §5). Organizations submit signed statements as
DSSE envelopes; the ledger appends them to one log and proves, with RFC 9162 proofs and
signed C2SP checkpoints, that it never rewrites it.

Errors are RFC 9457 `application/problem+json` with a stable `type` URI per kind.
"""


def create_app(ledger: Ledger | None = None, settings: Settings | None = None) -> FastAPI:
    """The API over `ledger`, or over the ledger in `settings.db` (default: from the
    environment), which the app then closes on shutdown."""
    settings = settings if settings is not None else Settings.from_env()
    owned = ledger is None
    the_ledger = ledger if ledger is not None else Ledger(settings.db)

    # One set of views per worker process, updated after this process's own writes
    # and caught up at the start of every read (other workers' writes).
    views = Views.open(the_ledger, fresh_reads=True)
    views.attach(the_ledger)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The pool that runs the plain `def` routes, per worker process (its event loop).
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        yield
        app.state.case_exports.cache.close()
        views.close()
        if owned:
            the_ledger.close()

    app = FastAPI(title="qledger", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.ledger = the_ledger
    app.state.settings = settings
    app.state.link_base = settings.link_base  # computed once: the scan route writes links
    app.state.views = views
    # Heavy case exports: kept until the case changes (traceability/case_basis.py), built
    # on a pool of their own (api/export_pool.py).
    app.state.case_exports = CaseExports.from_settings(settings)
    problems.install(app)
    pages.install_error_pages(app)  # problems as HTML pages for browsers on page paths
    app.state.metrics = metrics.Metrics()
    # Before the router: an encoded `/` in an identifier stays in its path segment.
    app.add_middleware(rawpath.RawPathRouting)
    # The last added runs first: a request refused for its rate is not timed.
    app.add_middleware(metrics.TimedRoutes, metrics=app.state.metrics)
    if settings.read_rate_per_minute > 0:
        app.add_middleware(ratelimit.PublicReadLimit,
                           limiter=ratelimit.RateLimiter(settings.read_rate_per_minute))
    # None: writes are not limited (benchmarks loading the server from one address).
    app.state.write_limits = (ratelimit.WriteLimits(settings.write_rate_per_minute)
                              if settings.write_rate_per_minute > 0 else None)
    if app.state.write_limits is not None:
        app.add_middleware(ratelimit.WriteLimit, limits=app.state.write_limits)
    app.add_exception_handler(ratelimit.RateLimited, ratelimit.answer_rate_limited)
    app.add_middleware(ratelimit.StreamLimit, per_client=settings.streams_per_client,
                       total=settings.streams)
    # Outermost: a client still sending its body is cut off whatever the route.
    app.add_middleware(timeouts.BodyDeadline, seconds=settings.body_timeout)
    for router in ROUTERS:
        app.include_router(router)
    for router in PAGE_ROUTERS:
        app.include_router(router)
    # Dispute cases: the case page and its spreadsheet and picture downloads.
    app.include_router(casepages.router)
    _outermost(app, lambda inner: edges.Edges(inner, settings.allowed_hosts))
    return app


def _outermost(app: FastAPI, wrap: Callable[[ASGIApp], ASGIApp]) -> None:
    """Put `wrap` around the whole middleware stack, outside Starlette's error middleware:
    a middleware added with `add_middleware` runs inside it, so the 500 answer for an
    unexpected error would go out without the edges' headers."""
    build = app.build_middleware_stack

    def build_wrapped() -> ASGIApp:
        return wrap(build())

    app.build_middleware_stack = build_wrapped  # type: ignore[method-assign]
