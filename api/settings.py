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
# Envelopes per minute that one client address, and one signing key, may submit. A
# signature costs about a tenth to a third of a millisecond of a core to check, so 6,000 a
# minute (100 a second) is a few percent of one core per flooding address or stolen key id;
# an organization submitting a backlog through `qledger submit --url` waits and goes on.
DEFAULT_WRITE_RATE = 6000
# Live streams (`/v1/feed/stream`) open at once, per client address and per worker. A
# follower needs one; a few more allow for several systems behind one address.
DEFAULT_STREAMS_PER_CLIENT = 8
DEFAULT_STREAMS = 500
# Seconds a client has to send its request's headers, and its body (1 MiB at most): a
# client that trickles them holds a connection, and is cut off (408 for a body).
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    """A count from the environment: digits, else the default (0 is allowed: no limit)."""
    value = env.get(name, "")
    return int(value) if value.isascii() and value.isdigit() else default


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A positive number of seconds from the environment, else the default."""
    try:
        value = float(env.get(name, ""))
    except ValueError:
        return default
    return value if 0 < value < float("inf") else default


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
    `write_rate_per_minute` (QLEDGER_WRITE_RATE_PER_MINUTE) limits the envelopes each client
    address, and each signing key, may submit (429 with Retry-After beyond it); 0: no limit.
    `streams_per_client` and `streams` (QLEDGER_STREAMS_PER_CLIENT, QLEDGER_STREAMS) cap the
    live streams open at once per address (429) and per worker (503); 0: no cap.
    `header_timeout` and `body_timeout` (QLEDGER_HEADER_TIMEOUT, QLEDGER_BODY_TIMEOUT) are the
    seconds a client has to send a request's headers (else the connection is closed) and its
    body (else 408).
    Each limit holds per worker process, as the read limit does.
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
    write_rate_per_minute: int = DEFAULT_WRITE_RATE  # envelopes, per address and per key
    streams_per_client: int = DEFAULT_STREAMS_PER_CLIENT
    streams: int = DEFAULT_STREAMS
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        threads = _count(env, "QLEDGER_THREADS", DEFAULT_THREADS)
        export_threads = _count(env, "QLEDGER_EXPORT_THREADS", 2)
        return cls(
            db=env.get("QLEDGER_DB") or None,
            resolver=env.get("QLEDGER_RESOLVER") or None,
            allowed_hosts=tuple(
                h.strip().lower() for h in env.get("QLEDGER_ALLOWED_HOSTS", "").split(",")
                if h.strip()),
            listen_url=env.get("QLEDGER_LISTEN_URL") or None,
            read_rate_per_minute=_count(env, "QLEDGER_READ_RATE_PER_MINUTE", 600),
            threads=threads if threads > 0 else DEFAULT_THREADS,
            export_threads=export_threads if export_threads > 0 else 2,
            export_cache_dir=env.get("QLEDGER_EXPORT_CACHE") or None,
            bundle_max_entries=_count(env, "QLEDGER_BUNDLE_MAX_ENTRIES", 20_000),
            write_rate_per_minute=_count(env, "QLEDGER_WRITE_RATE_PER_MINUTE", DEFAULT_WRITE_RATE),
            streams_per_client=_count(env, "QLEDGER_STREAMS_PER_CLIENT",
                                      DEFAULT_STREAMS_PER_CLIENT),
            streams=_count(env, "QLEDGER_STREAMS", DEFAULT_STREAMS),
            header_timeout=_seconds(env, "QLEDGER_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT),
            body_timeout=_seconds(env, "QLEDGER_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT),
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
