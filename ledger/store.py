"""Storage: the eventsourcing library's SQLite and PostgreSQL recorders, plus the Merkle nodes.

The nodes of the RFC 9162 tree are written by the same recorder, in the same
transaction as the events of the entries they cover, so no crash can leave log and
tree disagreeing. A node (level, index) is the root of the perfect subtree over leaves
[index·2^level, (index+1)·2^level); level 0 holds the leaf hashes.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar
from uuid import UUID
from urllib.parse import unquote, urlsplit

import psycopg
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresFactory
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import get_topic
from psycopg import ConnectionInfo
from psycopg.abc import PQGen
from psycopg.conninfo import make_conninfo
# Private, and what psycopg's Connection.wait raises at its deadline (3.3 and on: see
# pyproject.toml). It is an OperationalError, so nothing else may catch it first.
from psycopg.errors import _WaitTimeout
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from ledger.errors import LedgerError, StorageError

Coord = tuple[int, int]
NewNode = tuple[int, int, bytes]
# A recorded statement, by its `id` (16 bytes): index, envelope digest, recorded_at,
# leaf hash. What idempotency needs, written in the append's transaction.
StatementRow = tuple[bytes, int, bytes, str, bytes]
RV = TypeVar("RV")


class Recorded(NamedTuple):
    """A stored event as a reader of the log's notifications needs it: id and state."""

    id: int
    state: bytes

DEFAULT_DB = "qledger.db"
# How long any one wait for the database may last, in seconds (QLEDGER_STORAGE_TIMEOUT):
# a connection, a connection from the pool, an answer on a connection whose server went
# away. An outage then answers "storage unavailable" in seconds, not in minutes.
DEFAULT_STORAGE_TIMEOUT = 5
# How long a writer waits for another's lock (QLEDGER_LOCK_TIMEOUT): writers queue behind
# a long batch on purpose, so longer than a wait for a server that does not answer.
DEFAULT_LOCK_TIMEOUT = 30


def _seconds(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() and int(value) > 0 else default


def storage_timeout() -> int:
    return _seconds("QLEDGER_STORAGE_TIMEOUT", DEFAULT_STORAGE_TIMEOUT)


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
    on; one that does not is hung, the connection is dropped and StorageError raised. A
    hung server is thus given up on within twice the storage timeout."""

    def wait(self, gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        if timeout is not None:  # a caller's own bound (psycopg's notifies, cancel)
            return super().wait(gen, interval, timeout)
        seconds = storage_timeout()
        while True:
            try:
                # psycopg resumes the same generator after a timeout (it does so itself
                # after an interrupt), so a busy server's answer is still read whole.
                return super().wait(gen, interval, seconds)
            except _WaitTimeout:
                if not _server_answers(self.info, seconds):
                    # StorageError, not psycopg's OperationalError: the library retries
                    # an OperationalError ten times, each on another pooled connection
                    # to the same hung server, each waiting the bound again.
                    hung = StorageError(
                        f"PostgreSQL at {self.info.host}:{self.info.port} did not answer "
                        f"within {seconds} s, nor a new connection within {seconds} s more")
                    self.pgconn.finish()  # mid-statement: of no use to anyone now
                    raise hung from None


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


def connect(url: str) -> psycopg.Connection[Any]:
    """A connection of its own (autocommit) to the PostgreSQL server of `url`, outside the
    pools, with the pools' bounds: connecting and every wait on it (BoundedConnection)."""
    try:
        return BoundedConnection.connect(
            url.split("?", 1)[0], autocommit=True, connect_timeout=max(2, storage_timeout()))
    except psycopg.Error as e:
        raise StorageError(f"cannot reach PostgreSQL at {Database(url).describe()}: {e}") from None


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


class TreeNodesMissing(LedgerError):
    """The tree table lacks nodes the log says exist: the database was tampered with."""


class _UpperNodes:
    """The upper levels of the tree, kept in memory once read.

    A stored node is the hash of a perfect subtree: once written it never changes. An
    inclusion or consistency proof needs one node per level, and the nodes of the
    upper levels are the same for nearly every proof, so only the lower levels cost
    lookups in the database. Level 0 (the leaves, which `audit` compares with what it
    recomputes) is never kept; and the memory is bounded.

    The upper levels are read whole, highest first, by the first call: a cache filled
    only by misses took thousands of proofs to warm, and until then a proof of a
    million-entry log on PostgreSQL read twenty nodes, not six (p99 3.6 ms, not 0.8).
    """

    _FROM_LEVEL = 6  # 1/64 of the leaves: the nodes every proof of a region shares
    _MAX_NODES = 1 << 16  # about 8 MB at most

    _upper: dict[Coord, bytes] | None = None

    def _read_nodes(self, coords: Sequence[Coord]) -> dict[Coord, bytes]:
        raise NotImplementedError

    def _read_upper_levels(self, from_level: int, limit: int) -> dict[Coord, bytes]:
        """Up to `limit` stored nodes of levels ≥ `from_level`, the highest levels first."""
        raise NotImplementedError

    def get_nodes(self, coords: Sequence[Coord]) -> Mapping[Coord, bytes]:
        if not coords:
            return {}
        if self._upper is None:
            self._upper = self._read_upper_levels(self._FROM_LEVEL, self._MAX_NODES)
        upper = self._upper
        found = {c: upper[c] for c in coords if c in upper}
        missing = [c for c in coords if c not in found]
        if missing:
            read = self._read_nodes(missing)
            found.update(read)
            if len(upper) < self._MAX_NODES:
                upper.update((c, h) for c, h in read.items() if c[0] >= self._FROM_LEVEL)
        return _complete(coords, found)

    def forget_cached_nodes(self) -> None:
        self._upper = None

    def refresh_statistics(self) -> None:
        """Bring the query planner's statistics of the ledger's tables up to date (see
        Ledger: done as the log doubles). Nothing to do by default."""

    def analyse_log_once(self) -> None:
        """Gather statistics of the log's table if it has none, before reading all of
        it in order (a rebuild of the views). Nothing to do by default."""


class SQLiteLedgerRecorder(_UpperNodes, SQLiteApplicationRecorder):
    """The library's SQLite application recorder, with the Merkle nodes beside the events."""

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS merkle_nodes ("
            "level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, "
            "PRIMARY KEY (level, idx)) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS checkpoints ("
            "size INTEGER PRIMARY KEY, note TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS statements ("
            "id BLOB PRIMARY KEY, idx INTEGER NOT NULL, digest BLOB NOT NULL, "
            "recorded_at TEXT NOT NULL, leaf_hash BLOB NOT NULL) WITHOUT ROWID",
        ]

    def _insert_events(self, c: Any, stored_events: Sequence[Any], **kwargs: Any) -> Any:
        # The library inserts row by row to learn each rowid; one executemany is
        # faster, and inside the write transaction SQLite gives consecutive rowids
        # after the current maximum (the table has no AUTOINCREMENT and rows are never
        # deleted), so the notification ids are the last n rowids.
        if not stored_events:
            return []
        # Blobs are bound as bytearray (see _blob).
        c.executemany(
            self.insert_events_statement,
            [
                (e.originator_id.hex if isinstance(e.originator_id, UUID) else e.originator_id,
                 e.originator_version, e.topic, _blob(e.state))
                for e in stored_events
            ],
        )
        c.execute("SELECT last_insert_rowid()")
        last = c.fetchone()[0]
        ids = list(range(last - len(stored_events) + 1, last + 1))
        nodes: Sequence[NewNode] = kwargs.get("merkle_nodes", ())
        if nodes:
            c.executemany(
                "INSERT INTO merkle_nodes VALUES (?,?,?)",
                [(level, idx, _blob(h)) for level, idx, h in nodes],
            )
        checkpoint: tuple[int, str] | None = kwargs.get("checkpoint")
        if checkpoint:
            c.execute("INSERT INTO checkpoints VALUES (?,?)", checkpoint)
        statements: Sequence[StatementRow] = kwargs.get("statements", ())
        if statements:
            # A statement id recorded by another writer meanwhile fails the primary
            # key: an IntegrityError, which the library raises as a record conflict.
            c.executemany(
                "INSERT INTO statements VALUES (?,?,?,?,?)",
                [(_blob(i), idx, _blob(d), at, _blob(leaf)) for i, idx, d, at, leaf in statements],
            )
        return ids

    def find_statements(self, ids: Sequence[bytes]) -> dict[bytes, StatementRow]:
        """The recorded statements among `ids`, in one query per 30,000."""
        out: dict[bytes, StatementRow] = {}
        for start in range(0, len(ids), 30000):
            part = ids[start : start + 30000]
            with self.datastore.transaction(commit=False) as c:
                c.execute(
                    f"SELECT * FROM statements WHERE id IN ({','.join('?' * len(part))})",
                    [_blob(i) for i in part],
                )
                for row in c.fetchall():
                    out[bytes(row[0])] = (bytes(row[0]), row[1], bytes(row[2]), row[3], bytes(row[4]))
        return out

    def select_states(self, start: int, limit: int, stop: int, topic: str) -> list[Recorded]:
        """The notification id and stored state of the events of `topic` with
        start < id <= stop, in id order, at most `limit`: what a rebuild of the views
        reads, without the library's Notification objects (their originator UUIDs were
        a tenth of its time)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT rowid, state FROM {self.events_table_name} "
                "WHERE rowid > ? AND rowid <= ? AND topic = ? ORDER BY rowid LIMIT ?",
                (start, stop, topic, limit),
            )
            return [Recorded(row[0], row[1]) for row in c.fetchall()]

    def latest_checkpoint(self) -> tuple[int, str] | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
            row = c.fetchone()
        return (row[0], row[1]) if row else None

    def checkpoint_at(self, size: int) -> str | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT note FROM checkpoints WHERE size = ?", (size,))
            row = c.fetchone()
        return row[0] if row else None

    def _read_upper_levels(self, from_level: int, limit: int) -> dict[Coord, bytes]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT level, idx, hash FROM merkle_nodes WHERE level >= ? "
                "ORDER BY level DESC, idx LIMIT ?", (from_level, limit))
            return {(row[0], row[1]): bytes(row[2]) for row in c.fetchall()}

    def _read_nodes(self, coords: Sequence[Coord]) -> dict[Coord, bytes]:
        placeholders = ",".join("(?,?)" for _ in coords)
        params = [v for coord in coords for v in coord]
        with self.datastore.transaction(commit=False) as c:
            # A join on a VALUES list lets SQLite look each node up by primary key;
            # a row-value IN (...) would scan the table.
            c.execute(
                f"WITH w(l, i) AS (VALUES {placeholders}) SELECT n.level, n.idx, n.hash "
                "FROM w JOIN merkle_nodes n ON n.level = w.l AND n.idx = w.i",
                params,
            )
            return {(row[0], row[1]): bytes(row[2]) for row in c.fetchall()}

    def select_events_after(self, pairs: Sequence[tuple[UUID, int]]) -> list[StoredEvent]:
        """Events of many aggregates in one query: those of each id after its version."""
        out: list[StoredEvent] = []
        # SQLite allows 32,766 parameters per statement.
        for start in range(0, len(pairs), 10000):
            part = pairs[start : start + 10000]
            values = ",".join("(?,?)" for _ in part)
            params = [v for uid, version in part for v in (uid.hex, version)]
            with self.datastore.transaction(commit=False) as c:
                c.execute(
                    f"WITH w(id, v) AS (VALUES {values}) "
                    f"SELECT e.* FROM w JOIN {self.events_table_name} e "
                    "ON e.originator_id = w.id AND e.originator_version > w.v "
                    "ORDER BY e.originator_id, e.originator_version",
                    params,
                )
                out.extend(_stored_events(c.fetchall()))
        return out

    def select_versions(self, originator_id: UUID, versions: Sequence[int]) -> list[StoredEvent]:
        """The events of one aggregate at the given versions (the log's entries at some
        indexes), in one query per 30,000, each found by primary key, in version order."""
        out: list[StoredEvent] = []
        for start in range(0, len(versions), 30000):
            part = versions[start : start + 30000]
            values = ",".join("(?)" for _ in part)
            with self.datastore.transaction(commit=False) as c:
                # CROSS JOIN makes SQLite look each version up by primary key; with a
                # plain JOIN it walks the whole stream of the id (the log: every entry)
                # and scans the list for each, minutes at a million entries.
                c.execute(
                    f"WITH w(v) AS (VALUES {values}) "
                    f"SELECT e.* FROM w CROSS JOIN {self.events_table_name} e "
                    "ON e.originator_id = ? AND e.originator_version = w.v",
                    [*part, originator_id.hex],
                )
                out.extend(_stored_events(c.fetchall()))
        out.sort(key=lambda e: e.originator_version)
        return out

    def nodes_completed_in(self, start: int, stop: int) -> dict[Coord, bytes]:
        """Every stored node whose last leaf is one of start ≤ i < stop: what appending
        those leaves wrote (for `audit`, read from the table, never from a cache)."""
        ranges = _completed_ranges(start, stop)
        if not ranges:
            return {}
        where = " OR ".join("(level = ? AND idx BETWEEN ? AND ?)" for _ in ranges)
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT level, idx, hash FROM merkle_nodes WHERE {where}",
                      [v for r in ranges for v in r])
            return {(row[0], row[1]): bytes(row[2]) for row in c.fetchall()}

    def nodes_beyond(self, size: int, limit: int) -> list[Coord]:
        """Stored nodes that no leaf of a log of `size` entries completes (at most `limit`)."""
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT level, idx FROM merkle_nodes WHERE level < 0 OR level > 62 "
                      "OR idx < 0 OR ((idx + 1) << level) > ? ORDER BY level, idx LIMIT ?",
                      (size, limit))
            return [(row[0], row[1]) for row in c.fetchall()]

    def count_statements(self) -> int:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT COUNT(*) FROM statements")
            return int(c.fetchone()[0])

    def statement_rows_after(self, after: bytes, limit: int) -> list[StatementRow]:
        """The statements table's rows with id > `after`, in id order, at most `limit`."""
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT * FROM statements WHERE id > ? ORDER BY id LIMIT ?",
                      (_blob(after), limit))
            return [(bytes(r[0]), r[1], bytes(r[2]), r[3], bytes(r[4])) for r in c.fetchall()]

    def aggregate_events_after(self, after: tuple[Any, int], skip: Sequence[UUID],
                               limit: int) -> list[tuple[Any, int, str, bytes]]:
        """Stored events after (originator id, version) in that order, those of the
        `skip` streams left out, at most `limit`: every aggregate's events, read through,
        as (originator id as stored, version, topic, state); the id as stored (hex text
        here) is what `after` takes. An id is made a UUID once per stream, by the caller,
        not once per event."""
        marks = ",".join("?" for _ in skip)
        first = after[0].hex if isinstance(after[0], UUID) else after[0]
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT originator_id, originator_version, topic, state FROM "
                f"{self.events_table_name} WHERE (originator_id, originator_version)"
                f" > (?, ?) AND originator_id NOT IN ({marks}) "
                "ORDER BY originator_id, originator_version LIMIT ?",
                [first, after[1], *(u.hex for u in skip), limit])
            return [tuple(row) for row in c.fetchall()]  # type: ignore[misc]

    def drop_nodes_from(self, size: int) -> None:
        """Used by tests that play an attacker."""
        self.forget_cached_nodes()
        with self.datastore.transaction(commit=True) as c:
            c.execute("DELETE FROM merkle_nodes WHERE (idx + 1) << level > ?", (size,))


class PostgresLedgerRecorder(_UpperNodes, PostgresApplicationRecorder):
    """The library's PostgreSQL application recorder, with the Merkle nodes beside the events."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        schema = Identifier(self.datastore.schema)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.merkle_nodes ("
                "level smallint NOT NULL, idx bigint NOT NULL, hash bytea NOT NULL, "
                "PRIMARY KEY (level, idx))"
            ).format(schema=schema)
        )
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.checkpoints ("
                "size bigint PRIMARY KEY, note text NOT NULL)"
            ).format(schema=schema)
        )
        self._insert_checkpoint = SQL(
            "INSERT INTO {schema}.checkpoints (size, note) VALUES (%s, %s)"
        ).format(schema=schema)
        self._latest_checkpoint = SQL(
            "SELECT size, note FROM {schema}.checkpoints ORDER BY size DESC LIMIT 1"
        ).format(schema=schema)
        self._checkpoint_at = SQL("SELECT note FROM {schema}.checkpoints WHERE size = %s").format(
            schema=schema
        )
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.statements ("
                "id bytea PRIMARY KEY, idx bigint NOT NULL, digest bytea NOT NULL, "
                "recorded_at text NOT NULL, leaf_hash bytea NOT NULL)"
            ).format(schema=schema)
        )
        self._insert_statements = SQL(
            "INSERT INTO {schema}.statements (id, idx, digest, recorded_at, leaf_hash) "
            "SELECT * FROM unnest(%b::bytea[], %b::bigint[], %b::bytea[], %b::text[], %b::bytea[])"
        ).format(schema=schema)
        self._find_statements = SQL(
            "SELECT id, idx, digest, recorded_at, leaf_hash FROM {schema}.statements "
            "WHERE id = ANY(%b::bytea[])"
        ).format(schema=schema)
        self._insert_nodes = SQL(
            "INSERT INTO {schema}.merkle_nodes (level, idx, hash) "
            "SELECT * FROM unnest(%b::smallint[], %b::bigint[], %b::bytea[])"
        ).format(schema=schema)
        self._select_upper_levels = SQL(
            "SELECT level, idx, hash FROM {schema}.merkle_nodes WHERE level >= %s "
            "ORDER BY level DESC, idx LIMIT %s"
        ).format(schema=schema)
        self._select_nodes = SQL(
            "SELECT n.level, n.idx, n.hash FROM unnest(%s::smallint[], %s::bigint[]) AS w(l, i) "
            "CROSS JOIN LATERAL (SELECT level, idx, hash FROM {schema}.merkle_nodes x "
            "WHERE x.level = w.l AND x.idx = w.i OFFSET 0) n"
        ).format(schema=schema)
        # A primary-key range scan per level (see nodes_completed_in).
        self._select_completed = SQL(
            "SELECT n.level, n.idx, n.hash FROM unnest(%s::smallint[], %s::bigint[], "
            "%s::bigint[]) AS w(l, a, b) CROSS JOIN LATERAL (SELECT level, idx, hash FROM "
            "{schema}.merkle_nodes x WHERE x.level = w.l AND x.idx BETWEEN w.a AND w.b "
            "OFFSET 0) n"
        ).format(schema=schema)
        self._insert_arrays = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(schema=schema, table=Identifier(self.events_table_name))
        # One primary-key range scan per id. Without OFFSET 0 the planner flattens the
        # LATERAL into a merge join over the whole primary key once the log's own
        # stream (a million versions of one id) dominates the statistics: seconds, not
        # milliseconds, at a million entries.
        self._select_after = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state "
            "FROM unnest(%b::uuid[], %b::bigint[]) AS w(id, v) "
            "CROSS JOIN LATERAL (SELECT originator_id, originator_version, topic, state "
            "FROM {schema}.{table} x WHERE x.originator_id = w.id AND x.originator_version > w.v "
            "OFFSET 0) e "
            "ORDER BY e.originator_id, e.originator_version"
        ).format(schema=schema, table=Identifier(self.events_table_name))

        self._select_states = SQL(
            "SELECT notification_id, state FROM {schema}.{table} WHERE notification_id > %s "
            "AND notification_id <= %s AND topic = %s ORDER BY notification_id LIMIT %s"
        ).format(schema=schema, table=Identifier(self.events_table_name))
        self._select_versions = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state "
            "FROM unnest(%s::bigint[]) AS w(v) "
            "CROSS JOIN LATERAL (SELECT originator_id, originator_version, topic, state "
            "FROM {schema}.{table} x WHERE x.originator_id = %s AND x.originator_version = w.v "
            "OFFSET 0) e ORDER BY e.originator_version"
        ).format(schema=schema, table=Identifier(self.events_table_name))

    def _insert_stored_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        # The library sends events as an array of a composite type, which psycopg
        # dumps as text in Python: over half the cost of recording an entry. Four
        # arrays of plain types are dumped in binary (%b: with %s psycopg escapes text
        # and bytea arrays element by element in Python); the statement is otherwise
        # the library's (same lock, same NOTIFY, rows returned in insertion order).
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self._insert_arrays,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            ),
            prepare=True,
        )

    def _fetch_ids_after_insert_events(
        self, curs: Any, stored_events: Sequence[Any], **kwargs: Any
    ) -> Sequence[int] | None:
        # This runs after the library has taken its table lock and inserted the
        # events, inside the same transaction: the nodes commit or roll back with them.
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        nodes: Sequence[NewNode] = kwargs.get("merkle_nodes", ())
        if nodes:
            with curs.connection.cursor() as nodes_curs:
                nodes_curs.execute(
                    self._insert_nodes,
                    ([n[0] for n in nodes], [n[1] for n in nodes], [n[2] for n in nodes]),
                    prepare=True,
                )
        checkpoint: tuple[int, str] | None = kwargs.get("checkpoint")
        if checkpoint:
            with curs.connection.cursor() as cp_curs:
                cp_curs.execute(self._insert_checkpoint, checkpoint, prepare=True)
        statements: Sequence[StatementRow] = kwargs.get("statements", ())
        if statements:
            with curs.connection.cursor() as st_curs:
                st_curs.execute(
                    self._insert_statements, [list(c) for c in zip(*statements)], prepare=True
                )
        return ids

    def select_states(self, start: int, limit: int, stop: int, topic: str) -> list[Recorded]:
        """As SQLiteLedgerRecorder.select_states."""
        # Results in binary: as text the server writes each state in hex and the
        # client decodes it again, for a thousand bytes an entry; and as tuples.
        with self.datastore.get_connection() as conn, conn.cursor(
                binary=True, row_factory=tuple_row) as curs:
            curs.execute(self._select_states, (start, stop, topic, limit))
            return [Recorded(*row) for row in curs.fetchall()]

    def find_statements(self, ids: Sequence[bytes]) -> dict[bytes, StatementRow]:
        """The recorded statements among `ids`, in one query."""
        if not ids:
            return {}
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            _without_jit(conn)
            curs.execute(self._find_statements, (list(ids),), prepare=True)
            return {
                bytes(r["id"]): (bytes(r["id"]), r["idx"], bytes(r["digest"]), r["recorded_at"],
                                 bytes(r["leaf_hash"]))
                for r in curs.fetchall()
            }

    def latest_checkpoint(self) -> tuple[int, str] | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._latest_checkpoint, prepare=True)
            row = curs.fetchone()
        return (row["size"], row["note"]) if row else None

    def checkpoint_at(self, size: int) -> str | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._checkpoint_at, (size,), prepare=True)
            row = curs.fetchone()
        return row["note"] if row else None

    def _read_upper_levels(self, from_level: int, limit: int) -> dict[Coord, bytes]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            _without_jit(conn)
            curs.execute(self._select_upper_levels, (from_level, limit))
            return {(row["level"], row["idx"]): bytes(row["hash"]) for row in curs.fetchall()}

    def _read_nodes(self, coords: Sequence[Coord]) -> dict[Coord, bytes]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            _without_jit(conn)
            curs.execute(
                self._select_nodes, ([c[0] for c in coords], [c[1] for c in coords]),
                prepare=True,
            )
            return {(row["level"], row["idx"]): bytes(row["hash"]) for row in curs.fetchall()}

    def analyse_log_once(self) -> None:
        # The ledger analyses its tables as the log doubles, so this is for a ledger
        # that never passed the first doubling or was restored from a dump: analysing
        # every table each rebuild took a second a rebuild at 100,000 entries.
        with self.datastore.get_connection() as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_stats WHERE schemaname = %s AND tablename = %s LIMIT 1",
                (self.datastore.schema, self.events_table_name)).fetchone()
            if found is None:
                conn.execute(SQL("ANALYZE {}.{}").format(
                    Identifier(self.datastore.schema), Identifier(self.events_table_name)))

    def refresh_statistics(self) -> None:
        # Without statistics the planner guesses: a lookup of one node by its primary
        # key was planned as a bitmap scan of sixty rows (0.2 ms, not 0.08) on a
        # million-entry log never analysed. Autovacuum analyses a growing table only
        # when it runs at all, and some servers run with it off.
        schema = Identifier(self.datastore.schema)
        tables = ["merkle_nodes", "statements", "checkpoints", self.events_table_name]
        with self.datastore.get_connection() as conn:
            conn.execute(SQL("ANALYZE {tables}").format(tables=SQL(", ").join(
                SQL("{schema}.{table}").format(schema=schema, table=Identifier(t))
                for t in tables)))

    def select_versions(self, originator_id: UUID, versions: Sequence[int]) -> list[StoredEvent]:
        """The events of one aggregate at the given versions, in one query."""
        if not versions:
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            _without_jit(conn)
            curs.execute(self._select_versions, (list(versions), originator_id), prepare=True)
            return [
                StoredEvent(
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=bytes(row["state"]),
                )
                for row in curs.fetchall()
            ]

    def select_events_after(self, pairs: Sequence[tuple[UUID, int]]) -> list[StoredEvent]:
        """Events of many aggregates in one query: those of each id after its version."""
        if not pairs:
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            _without_jit(conn)
            curs.execute(
                self._select_after,
                ([p[0] for p in pairs], [p[1] for p in pairs]),
                prepare=True,  # OFFSET 0 keeps even the generic plan to index scans
            )
            return [
                StoredEvent(
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=bytes(row["state"]),
                )
                for row in curs.fetchall()
            ]

    def nodes_completed_in(self, start: int, stop: int) -> dict[Coord, bytes]:
        """As SQLiteLedgerRecorder.nodes_completed_in."""
        ranges = _completed_ranges(start, stop)
        if not ranges:
            return {}
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            _without_jit(conn)
            curs.execute(self._select_completed, ([r[0] for r in ranges], [r[1] for r in ranges],
                                                  [r[2] for r in ranges]), prepare=True)
            return {(row["level"], row["idx"]): bytes(row["hash"]) for row in curs.fetchall()}

    def nodes_beyond(self, size: int, limit: int) -> list[Coord]:
        """As SQLiteLedgerRecorder.nodes_beyond."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(SQL(
                "SELECT level, idx FROM {schema}.merkle_nodes WHERE level < 0 OR level > 62 "
                "OR idx < 0 OR ((idx + 1) << level) > %s ORDER BY level, idx LIMIT %s"
            ).format(schema=Identifier(self.datastore.schema)), (size, limit))
            return [(row["level"], row["idx"]) for row in curs.fetchall()]

    def count_statements(self) -> int:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(SQL("SELECT COUNT(*) AS n FROM {schema}.statements").format(
                schema=Identifier(self.datastore.schema)))
            row = curs.fetchone()
            return int(row["n"]) if row else 0

    def statement_rows_after(self, after: bytes, limit: int) -> list[StatementRow]:
        """As SQLiteLedgerRecorder.statement_rows_after."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(SQL(
                "SELECT id, idx, digest, recorded_at, leaf_hash FROM {schema}.statements "
                "WHERE id > %s ORDER BY id LIMIT %s"
            ).format(schema=Identifier(self.datastore.schema)), (after, limit))
            return [(bytes(r["id"]), r["idx"], bytes(r["digest"]), r["recorded_at"],
                     bytes(r["leaf_hash"])) for r in curs.fetchall()]

    def aggregate_events_after(self, after: tuple[Any, int], skip: Sequence[UUID],
                               limit: int) -> list[tuple[Any, int, str, bytes]]:
        """As SQLiteLedgerRecorder.aggregate_events_after (ids as UUIDs here)."""
        with self.datastore.get_connection() as conn, conn.cursor(
                binary=True, row_factory=tuple_row) as curs:
            _without_jit(conn)
            curs.execute(SQL(
                "SELECT originator_id, originator_version, topic, state FROM {schema}.{table} "
                "WHERE (originator_id, originator_version) > (%s, %s) "
                "AND originator_id <> ALL(%s::uuid[]) "
                "ORDER BY originator_id, originator_version LIMIT %s"
            ).format(schema=Identifier(self.datastore.schema),
                     table=Identifier(self.events_table_name)),
                (after[0], after[1], list(skip), limit), prepare=True)
            return curs.fetchall()

    def drop_nodes_from(self, size: int) -> None:
        self.forget_cached_nodes()
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("DELETE FROM {schema}.merkle_nodes WHERE (idx + 1) << level > %s").format(
                    schema=Identifier(self.datastore.schema)
                ),
                (size,),
            )


_NO_JIT: weakref.WeakSet[Any] = weakref.WeakSet()


def _without_jit(conn: Any) -> None:
    """These lookups have tiny results but huge cost estimates on a large log, which
    makes PostgreSQL JIT-compile them: about 100 ms of compiling for a 5 ms query."""
    if conn not in _NO_JIT:
        conn.execute("SET jit = off")
        _NO_JIT.add(conn)


def _completed_ranges(start: int, stop: int) -> list[tuple[int, int, int]]:
    """(level, first idx, last idx) of the nodes whose last leaf is one of start ≤ i < stop:
    node (l, i) is complete once leaf (i + 1)·2^l − 1 exists."""
    ranges = []
    level = 0
    while (1 << level) <= stop:
        first = max(0, -(-(start + 1) >> level) - 1)  # ceil((start + 1) / 2^l) − 1
        last = (stop >> level) - 1
        if first <= last:
            ranges.append((level, first, last))
        level += 1
    return ranges


def _complete(coords: Sequence[Coord], found: dict[Coord, bytes]) -> Mapping[Coord, bytes]:
    if len(found) != len(set(coords)):
        missing = sorted(set(coords) - found.keys())
        raise TreeNodesMissing(f"Merkle tree nodes missing from the database: {missing[:5]}")
    return found


@dataclass(frozen=True)
class Database:
    """Where a ledger lives: a SQLite file path or a PostgreSQL URL (QLEDGER_DB)."""

    url: str

    @classmethod
    def from_env(cls, value: str | None = None) -> Database:
        return cls(value or os.environ.get("QLEDGER_DB") or DEFAULT_DB)

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith(("postgresql://", "postgres://"))

    def describe(self) -> str:
        if not self.is_postgres:
            return self.url
        parts = urlsplit(self.url)
        return f"postgresql://{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"

    def env(self) -> dict[str, str]:
        """The eventsourcing library's settings for this database."""
        if not self.is_postgres:
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": self.url,
                "SQLITE_LOCK_TIMEOUT": str(_seconds("QLEDGER_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT)),
                "APPLICATION_RECORDER_TOPIC": get_topic(SQLiteLedgerRecorder),
                "CREATE_TABLE": "y",
            }
        parts = urlsplit(self.url)
        dbname = unquote(parts.path.lstrip("/")) or "postgres"
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        env = {
            "PERSISTENCE_MODULE": get_topic(BoundedPostgresFactory),
            "POSTGRES_DBNAME": dbname,
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or os.environ.get("USER", "postgres")),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_SCHEMA": query.get("schema", "public"),
            "POSTGRES_LOCK_TIMEOUT": str(_seconds("QLEDGER_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT)),
            "POSTGRES_CONNECT_TIMEOUT": str(storage_timeout()),  # the pool's wait
            "POSTGRES_POOL_SIZE": "4",
            "POSTGRES_MAX_OVERFLOW": "4",
            "APPLICATION_RECORDER_TOPIC": get_topic(PostgresLedgerRecorder),
            "CREATE_TABLE": "y",
        }
        return env

    @contextmanager
    def prepared(self) -> Iterator[None]:
        """Create what the library does not (the PostgreSQL schema named in the URL) and
        hold a lock while the library creates its tables: its CREATE OR REPLACE FUNCTION
        fails with "tuple concurrently updated" when several processes start at once."""
        if not self.is_postgres:
            directory = os.path.dirname(os.path.abspath(self.url))
            if not os.path.isdir(directory):
                raise StorageError(f"cannot create the ledger {self.url}: no folder {directory}")
            yield
            return
        schema = self.env()["POSTGRES_SCHEMA"]
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
            raise StorageError(f"bad PostgreSQL schema name {schema!r}")
        with connect(self.url) as conn:
            lock = int.from_bytes(hashlib.sha256(f"qledger:{schema}".encode()).digest()[:8], "big", signed=True)
            conn.execute("SELECT pg_advisory_lock(%s)", (lock,))
            try:
                conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(schema)))
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (lock,))


_HELD = threading.local()  # the writer locks this thread holds


class WriterLock:
    """One writer at a time across the processes of a PostgreSQL ledger.

    Appends are optimistic: a writer reads the state, checks the batch, and inserts; if
    another process inserted first, it starts again. With several processes writing all
    the time, one can lose every race (four writers lost twenty in a row in
    tests/test_concurrent_writers.py) and give up. A session advisory lock held from the
    read to the commit makes them take turns instead; PostgreSQL releases it if the
    process dies. It is taken on a connection borrowed from the ledger's own pool for
    the length of the append, so it costs no extra connection. SQLite needs none: its
    writers already queue on the file lock."""

    def __init__(self, database: Database) -> None:
        self._key = 0
        if database.is_postgres:
            schema = database.env()["POSTGRES_SCHEMA"]
            digest = hashlib.sha256(f"qledger-writer:{schema}".encode()).digest()
            self._key = int.from_bytes(digest[:8], "big", signed=True)

    @contextmanager
    def held(self, recorder: Any) -> Iterator[None]:
        held: set[int] = _HELD.__dict__.setdefault("keys", set())
        # A thread that holds it already (through another Ledger object on the same
        # database) goes on: waiting would be waiting for itself.
        if not self._key or self._key in held:
            yield
            return
        with recorder.datastore.get_connection() as conn:  # autocommit: no open transaction
            conn.execute("SELECT pg_advisory_lock(%s)", (self._key,))
            held.add(self._key)
            try:
                yield
            finally:
                held.discard(self._key)
                try:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
                except psycopg.Error:  # the session is gone, and its lock with it
                    pass


def _blob(value: bytes) -> bytearray:
    """A BLOB parameter for sqlite3, as a bytearray: stored and read back as the same
    bytes. The module binds str, int, float and bytearray directly but passes a `bytes`
    through its adaptation protocol, whose failed attribute lookup formats an error
    message for every value: a sixth of the cost of inserting an entry's rows."""
    return bytearray(value)


def _stored_events(rows: Sequence[Any]) -> Iterator[StoredEvent]:
    """SQLite rows of the events table as the library's stored events."""
    for row in rows:
        yield StoredEvent(
            originator_id=UUID(row["originator_id"]),
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=row["state"],
        )
