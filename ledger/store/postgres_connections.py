"""How the ledger's PostgreSQL connections are made, and how long any wait on them lasts.

Every wait is bounded by QLEDGER_STORAGE_TIMEOUT (ledger.store.timeouts): connecting, a
connection from the pool, and an answer on an open connection (BoundedConnection), so an
outage answers "storage unavailable" in seconds. The pools of the ledger and of the views
get their connections from BoundedPostgresFactory; anything else that needs a connection
of its own (a schema to create, the views check) takes one from Database.connect.
"""

from __future__ import annotations

import time
from typing import Any, NoReturn, TypeVar

import psycopg
from eventsourcing.postgres import PostgresFactory
from psycopg import ConnectionInfo
from psycopg.abc import PQGen
from psycopg.conninfo import make_conninfo

# Private: what psycopg's Connection.wait raises at its deadline (3.3 and on: see
# pyproject.toml). BoundedConnection.wait catches it and never lets it out.
from psycopg.errors import _WaitTimeout

from ledger.store.timeouts import DEFAULT_STORAGE_TIMEOUT, storage_timeout

RV = TypeVar("RV")


class ServerSilent(psycopg.OperationalError):
    """A PostgreSQL server answered neither a wait on an open connection within the storage
    timeout nor a new connection within as long again. An OperationalError, as any outage
    the driver reports: the edges answer "storage unavailable", and the code that takes a
    LedgerError for bad data (a missing entry, an incomplete tree) does not take it so."""


# Servers found silent, by (host, port): until when a wait on any connection to them fails
# at once. The library retries an OperationalError ten times, each time on another pooled
# connection to the same server: without this each would wait the bound and probe again.
_SILENT: dict[tuple[str, int], float] = {}


class BoundedConnection(psycopg.Connection[Any]):
    """A PostgreSQL connection none of whose waits for the server lasts without bound.

    Only the client's own clock can end a wait on a server that hangs. A server paused
    (SIGSTOP), or a proxy that accepts and never answers, still has a kernel that
    acknowledges every byte and answers every keepalive probe, so TCP keepalives and
    tcp_user_timeout never fire (they end waits on a host that vanished: see
    BoundedPostgresFactory); statement_timeout is a timer the server runs, and a hung
    server runs nothing. So every wait gets psycopg's own deadline, the storage timeout.

    A deadline alone would also cut work that is merely slow: a writer queued behind
    another's lock (QLEDGER_LOCK_TIMEOUT is longer on purpose), an index built after a
    rebuild. So at the deadline the server is asked, on a connection of its own, for
    `SELECT 1` within the same bound: a server that answers is busy and the wait goes
    on; one that does not is hung: the connection is dropped and ServerSilent raised,
    within twice the storage timeout. For as long again, waits on that server fail at
    once (see _SILENT)."""

    def wait(self, gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        if timeout is not None:  # a caller's own bound (psycopg's notifies, cancel)
            return super().wait(gen, interval, timeout)
        seconds = storage_timeout()
        if _SILENT:
            self._check_not_found_silent(seconds)
        while True:
            try:
                # psycopg resumes the same generator after a timeout (it does so itself
                # after an interrupt), so a busy server's answer is still read whole.
                return super().wait(gen, interval, seconds)
            except _WaitTimeout:
                if not _server_answers(self.info, seconds):
                    self._give_up(seconds)

    def _server(self) -> tuple[str, int]:
        return self.info.host, self.info.port

    def _give_up(self, seconds: int) -> NoReturn:
        host, port = self._server()
        _SILENT[host, port] = time.monotonic() + seconds + max(2, seconds)
        self.pgconn.finish()  # mid-statement: of no use to anyone now
        raise ServerSilent(f"PostgreSQL at {host}:{port} did not answer within {seconds} s, "
                           f"nor a new connection within {seconds} s more") from None

    def _check_not_found_silent(self, seconds: int) -> None:
        """Raises ServerSilent, before anything is sent, while this connection's server is
        remembered as silent; forgets it once that time is over."""
        server = self._server()
        left = _SILENT.get(server, 0.0) - time.monotonic()
        if left <= 0:
            _SILENT.pop(server, None)
            return
        raise ServerSilent(f"PostgreSQL at {server[0]}:{server[1]} did not answer within "
                           f"{seconds} s a moment ago: not waited for again for {left:.1f} s")


class _Probe(psycopg.Connection[Any]):
    """The connection that asks a silent server whether it is alive: every wait of its own
    ends at the storage timeout, with no probe of its own."""

    def wait(self, gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        return super().wait(gen, interval, storage_timeout() if timeout is None else timeout)


def _server_answers(info: ConnectionInfo, seconds: int) -> bool:
    """Whether the server of `info` answers a new connection's `SELECT 1`, connecting and
    answering within `seconds` each. Only silence is taken for a hang: a refusal (too
    many clients, say) is an answer, and the wait it was asked for goes on."""
    params: dict[str, str | int] = {**info.get_parameters(), "password": info.password,
                                    "connect_timeout": max(2, seconds)}  # libpq's least
    conninfo = make_conninfo("", **params)
    try:
        probe = _Probe.connect(conninfo, autocommit=True)
    except psycopg.errors.ConnectionTimeout:
        return False
    except psycopg.Error:
        return True
    try:
        probe.execute("SELECT 1")
    except _WaitTimeout:
        return False
    except psycopg.Error:
        return True
    finally:
        probe.close()  # not `with`: its exit would roll back, another wait on a hung server
    return True


class BoundedPostgresFactory(PostgresFactory):
    """The library's PostgreSQL factory, with its connections' waits bounded.

    The library gives its pool a wait (POSTGRES_CONNECT_TIMEOUT) but opens connections
    with libpq's defaults: no connect timeout (psycopg then waits 130 s) and no keepalive,
    so a server that went away held a read until the kernel gave up on the socket. Its
    connections are BoundedConnections, for a server that is there and does not answer."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        seconds = int(self.env.get("POSTGRES_CONNECT_TIMEOUT") or DEFAULT_STORAGE_TIMEOUT)
        pool = self.datastore.pool
        pool.connection_class = BoundedConnection
        pool.kwargs.update({  # type: ignore[union-attr]
            "connect_timeout": max(2, seconds),  # libpq's least
            # A server that stops acknowledging (host down, network cut): sent data
            # unacknowledged for this long closes the connection, an idle one is probed.
            "tcp_user_timeout": seconds * 1000,
            "keepalives": 1, "keepalives_idle": max(1, seconds), "keepalives_interval": 1,
            "keepalives_count": 3,
        })
