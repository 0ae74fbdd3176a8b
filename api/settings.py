"""Settings of the HTTP API, read from the environment when the app is built (never at import)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

MiB = 1 << 20
# Requests a worker runs at once on its thread pool. The routes are Python work under one
# interpreter lock, so threads beyond a few only take turns at it: on two cores, 40 (anyio's
# default) served 51 % of the floor's scans per second, 8 served 73 %, 4 served 81 %
# (BENCHMARKS.md, "HTTP"). A few, not one, so that a slow request does not hold up the rest.
DEFAULT_THREADS = 4
# Links when nothing is configured and the app is not run by `qledger serve`.
DEFAULT_LINK_BASE = "http://localhost"


@dataclass(frozen=True, slots=True)
class Settings:
    """What the HTTP API needs to know that the ledger does not.

    `db` is the ledger's database (a SQLite path or a `postgresql://` URL); None means the
    ledger's own default (`QLEDGER_DB`, else `./qledger.db`). `max_body_bytes` bounds every
    request body: no more than that is ever read (PROTOCOL.md §5: 413 beyond it).
    `resolver` (QLEDGER_RESOLVER) is the scheme and host that QR codes, labels, link sets
    and redirects point at; `link_base` says which is used when it is not set. It never
    comes from a request: a `Host: evil.example` would otherwise be printed into the
    QR code of a real batch (or a CDN's cached copy of its scan page).
    `allowed_hosts` (QLEDGER_ALLOWED_HOSTS, comma-separated; `.example.cn` for a domain
    and its subdomains, `*` for any): requests naming another host are refused (400).
    `listen_url` is the address `qledger serve` listens on (it sets QLEDGER_LISTEN_URL
    for its workers).
    `read_rate_per_minute` (QLEDGER_READ_RATE_PER_MINUTE) limits each client on the public
    read routes (429 with Retry-After beyond it).
    """

    db: str | None = None
    max_body_bytes: int = MiB
    resolver: str | None = None  # Digital Link host for QR codes; None: see `link_base`
    allowed_hosts: tuple[str, ...] = ()  # empty: any Host header is served
    listen_url: str | None = None
    read_rate_per_minute: int = 600  # per client address, public read routes; 0: no limit
    threads: int = DEFAULT_THREADS
    # Heavy exports (api/export_pool.py, traceability/export_cache.py): their own threads and
    # queue, the directory builds are kept in (None: a fresh temporary one per app; point
    # every worker at one to share), its bound, and the largest bundle served publicly.
    export_threads: int = 2
    export_queue: int = 8
    export_cache_dir: str | None = None
    export_cache_bytes: int = 1 << 30
    bundle_max_entries: int = 20_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        rate = env.get("QLEDGER_READ_RATE_PER_MINUTE", "")
        threads = env.get("QLEDGER_THREADS", "")
        export_threads = env.get("QLEDGER_EXPORT_THREADS", "")
        bundle_max = env.get("QLEDGER_BUNDLE_MAX_ENTRIES", "")
        return cls(
            db=env.get("QLEDGER_DB") or None,
            resolver=env.get("QLEDGER_RESOLVER") or None,
            allowed_hosts=tuple(
                h.strip().lower() for h in env.get("QLEDGER_ALLOWED_HOSTS", "").split(",")
                if h.strip()),
            listen_url=env.get("QLEDGER_LISTEN_URL") or None,
            read_rate_per_minute=int(rate) if rate.isdigit() else 600,
            threads=int(threads) if threads.isdigit() and int(threads) > 0 else DEFAULT_THREADS,
            export_threads=int(export_threads) if export_threads.isdigit()
            and int(export_threads) > 0 else 2,
            export_cache_dir=env.get("QLEDGER_EXPORT_CACHE") or None,
            bundle_max_entries=int(bundle_max) if bundle_max.isdigit() else 20_000,
        )

    @property
    def link_base(self) -> str:
        """The scheme and host of every link the server writes (no trailing `/`): the
        resolver if configured; else `https://` and the first named allowed host; else
        the address `serve` listens on; else `http://localhost`."""
        if self.resolver:
            return self.resolver.rstrip("/")
        named = [h for h in self.allowed_hosts if h != "*" and not h.startswith(".")]
        if named:
            return f"https://{named[0]}"
        return (self.listen_url or DEFAULT_LINK_BASE).rstrip("/")
