"""Tracking recorders that also hold the view tables: rows and position commit together.

They extend the eventsourcing library's SQLite and PostgreSQL tracking recorders
(eventsourcing ~=9.5: `SQLiteTrackingRecorder`, `PostgresTrackingRecorder`, their
tracking table and `max_tracking_id`). A chunk of entries is applied in one
transaction that first moves the tracking row from the position the chunk starts at
to the notification id it ends at, then writes the view rows. A crash rolls both back;
a process that lost a race finds the row moved, changes nothing and reads its
position again.

Why a compare-and-set and not the library's `insert_tracking`: that upsert only
refuses a position that does not move forward, so two processes whose chunks overlap
without ending at the same id (one catching up to id 10, another to id 15) would both
commit the entries up to 10. Claiming the row first also makes every later reader
of the view tables in the transaction see the rows of all earlier chunks.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from psycopg import IsolationLevel
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from traceability.schema import TABLES, create_statements, drop_statements
from traceability.sql import Tx, to_pyformat

# Serialises creating and dropping the view tables between processes on PostgreSQL,
# where two concurrent CREATE TABLE IF NOT EXISTS can still collide.
_PG_LOCK = 0x716C6564  # "qled"


class ViewsRecorder(Protocol):
    """What `Views` needs from a recorder, whichever the database."""

    def create_table(self) -> None: ...

    def max_tracking_id(self, application_name: str) -> int | None: ...

    def wait(self, application_name: str, notification_id: int | None,
             timeout: float = 1.0, interrupt: Any = None) -> None: ...

    def write(self) -> Any:
        """A context manager giving a Tx in a transaction that commits on success."""

    def read(self) -> Any:
        """A context manager giving a Tx in a read-only snapshot."""

    def read_one(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The rows of one statement (`?` placeholders) in a snapshot of its own."""

    def close_readers(self) -> None:
        """Close the connections `read` opened outside the library's pool, if any."""

    def claim(self, tx: Tx, application_name: str, start: int, last: int) -> bool: ...

    def lock_views(self, tx: Tx) -> None: ...

    def forget_position(self, tx: Tx, application_name: str) -> None: ...

    def recreate_tables(self, tx: Tx) -> None: ...

    def refresh_statistics(self, tables: Sequence[str] | None = None) -> None:
        """Bring the query planner's statistics of the view tables (by default all of
        them) up to date."""


class _Tracking:
    """The compare-and-set on the library's single-row tracking table."""

    tracking_table: str

    def claim(self, tx: Tx, application_name: str, start: int, last: int) -> bool:
        """Move the position of `application_name` from `start` to `last` (0: none yet).

        True if this transaction now owns the notifications start < id <= last; False
        if another process moved the position first, and then nothing was changed. Must
        be the transaction's first statement: on SQLite that takes the write lock before
        anything is read; on PostgreSQL a rival waits on the row, then finds it moved.
        """
        if start == 0:
            row = tx.row(
                f"INSERT INTO {self.tracking_table} AS t (application_name, notification_id) "
                "VALUES (?, ?) ON CONFLICT (application_name) DO UPDATE "
                "SET notification_id = excluded.notification_id WHERE t.notification_id = 0 "
                "RETURNING notification_id",
                (application_name, last),
            )
        else:
            row = tx.row(
                f"UPDATE {self.tracking_table} SET notification_id = ? "
                "WHERE application_name = ? AND notification_id = ? RETURNING notification_id",
                (last, application_name, start),
            )
        return row is not None

    def forget_position(self, tx: Tx, application_name: str) -> None:
        """Back to 0. The row is kept, not deleted, so that a process about to claim it
        waits for this transaction and then finds it moved."""
        tx.execute(
            f"INSERT INTO {self.tracking_table} AS t (application_name, notification_id) "
            "VALUES (?, 0) ON CONFLICT (application_name) DO UPDATE SET notification_id = 0",
            (application_name,),
        )

    def lock_views(self, tx: Tx) -> None:
        """Serialise creating, checking and dropping the view tables. A write as the
        transaction's first statement makes SQLite take its write lock at once."""
        tx.execute("UPDATE v_meta SET value = value WHERE name = ''")

    def recreate_tables(self, tx: Tx) -> None:
        for statement in (*drop_statements(), *create_statements()):
            tx.execute(statement)

    def refresh_statistics(self, tables: Sequence[str] | None = None) -> None:
        # SQLite plans these lookups well without sqlite_stat1, and the trace joins'
        # order is fixed by their CROSS JOINs: statistics could only move plans.
        pass


# The most of the database file a reading connection maps (SQLite caps it at its own
# compile-time limit, 2 GiB in Python's builds); address space, not memory.
READER_MMAP_BYTES = 1 << 31


class _Reader:
    """A thread's reading connection, closed when the thread's storage lets it go."""

    __slots__ = ("conn", "__weakref__")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __del__(self) -> None:
        self.conn.close()


class SQLiteViewsRecorder(_Tracking, SQLiteTrackingRecorder):
    tracking_table = "tracking"  # the library's fixed name on SQLite

    def __init__(self, datastore: SQLiteDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self._local = threading.local()
        self._readers: weakref.WeakSet[_Reader] = weakref.WeakSet()

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *create_statements()]

    @contextmanager
    def write(self) -> Iterator[Tx]:
        with self.datastore.transaction(commit=True) as cursor:
            yield Tx(cursor, postgres=False)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        # A deferred transaction in WAL mode: one snapshot from the first read on.
        pool = self.datastore.pool
        if pool.is_sqlite_memory_mode:
            # Shared-cache memory databases need the library's reader/writer interlock.
            with self.datastore.transaction(commit=False) as cursor:
                yield Tx(cursor, postgres=False)
            return
        cursor = self._reader().cursor()
        cursor.execute("BEGIN")
        try:
            yield Tx(cursor, postgres=False)
        finally:
            cursor.close()
            cursor.connection.rollback()

    def read_one(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        if self.datastore.pool.is_sqlite_memory_mode:
            with self.read() as tx:
                return tx.tuples(sql, params)
        # Outside a transaction (the connection is in autocommit mode), a statement
        # reads in a snapshot of its own.
        cursor = self._reader().cursor()
        cursor.row_factory = None
        try:
            return cursor.execute(sql, tuple(params)).fetchall()
        finally:
            cursor.close()

    def _reader(self) -> sqlite3.Connection:
        reader: _Reader | None = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = self._open_reader(self.datastore.pool.db_name)
        return reader.conn

    def _open_reader(self, db_name: str) -> _Reader:
        """A connection of the calling thread's own for reading the views.

        Not one of the library's pool: it opens connections with `cached_statements=True`,
        a statement cache of one, so every query of a scan view was compiled again
        (its recursive reaches most of all: three quarters of a scan's time). A thread
        keeps its connection, and its compiled statements, until it ends (the server's
        thread pool lets idle threads go) or the views are closed."""
        conn = sqlite3.connect(db_name, uri=True, check_same_thread=False,
                               isolation_level=None, cached_statements=256)
        conn.row_factory = sqlite3.Row
        # Pages read through a memory map, not copied by a read() each into the
        # connection's own small cache: a scan touches some tens of pages spread over a
        # large file. Only reads use it; writes go through the library's connections.
        conn.execute(f"PRAGMA mmap_size = {READER_MMAP_BYTES}")
        reader = _Reader(conn)
        self._readers.add(reader)
        return reader

    def close_readers(self) -> None:
        for reader in list(self._readers):
            reader.conn.close()


class PostgresViewsRecorder(_Tracking, PostgresTrackingRecorder):
    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.tracking_table = self.tracking_table_name
        self._on_path: weakref.WeakSet[Any] = weakref.WeakSet()
        self._search_path = SQL("SET LOCAL search_path TO {}").format(
            Identifier(self.datastore.schema)
        )

    def _create_table(self, curs: Any) -> None:
        curs.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
        # The library looked for the tracking table before this lock was taken: when
        # several workers start on a fresh schema, all of them saw none, and every one
        # after the first would insert the table's `__migration__` row again and die
        # ("Failed to record tracking for __migration__ 1"). Look again, under the lock.
        table = f"{self.datastore.schema}.{self.tracking_table_name}"
        curs.execute("SELECT to_regclass(%s) IS NOT NULL AS present", (table,))
        row = curs.fetchone()
        if row is not None and row["present"]:
            self.tracking_table_exists = True
            curs.execute(self.max_tracking_id_statement, (self.table_migration_identifier,))
            found = curs.fetchone()
            self.tracking_migration_previous = self.tracking_migration_current = (
                found["max"] if found is not None else None)
        super()._create_table(curs)
        curs.execute(self._search_path)
        for statement in create_statements():
            curs.execute(statement)

    @contextmanager
    def write(self) -> Iterator[Tx]:
        with self.datastore.transaction(commit=True) as cursor:
            # Table names are unqualified in the queries; the ledger's schema holds them.
            cursor.execute(self._search_path)
            # Pipeline mode: the statements of a chunk go to the server without waiting
            # for each answer (a read waits for those before it). One round trip per
            # view row was most of the cost of building the views (2,200 entries/s).
            # Nothing is prepared server-side meanwhile: after an error aborts a
            # pipeline, psycopg may count as prepared a statement whose PREPARE the
            # server skipped, and the connection's next use of it would fail.
            conn = cursor.connection
            threshold, conn.prepare_threshold = conn.prepare_threshold, None
            try:
                with conn.pipeline():
                    yield Tx(cursor, postgres=True)
            finally:
                conn.prepare_threshold = threshold

    @contextmanager
    def read(self) -> Iterator[Tx]:
        # A scan view is a handful of small queries, so round trips are most of its
        # cost: the search path is set once per connection of the views' own pool
        # (the library's statements name their schema), and the snapshot's options
        # go with BEGIN, not in statements of their own.
        with self._connection() as conn:
            conn.isolation_level, conn.read_only = IsolationLevel.REPEATABLE_READ, True
            try:
                # One snapshot for every query of a trace or scan view, as on SQLite.
                with conn.transaction(force_rollback=True), conn.cursor() as cursor:
                    yield Tx(cursor, postgres=True)
            finally:
                conn.isolation_level, conn.read_only = None, None

    def read_one(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        # The pool's connections are in autocommit mode: one statement, one snapshot,
        # and one round trip.
        with self._connection() as conn, conn.cursor(row_factory=tuple_row) as cursor:
            cursor.execute(to_pyformat(sql), tuple(params))
            return cursor.fetchall()

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        with self.datastore.get_connection() as conn:
            if conn not in self._on_path:
                conn.execute(SQL("SET search_path TO {}").format(Identifier(self.datastore.schema)))
                self._on_path.add(conn)
            yield conn

    def close_readers(self) -> None:
        pass  # reads use the views' own pool

    def refresh_statistics(self, tables: Sequence[str] | None = None) -> None:
        # As the ledger's own tables (ledger.store.postgres): a server without autovacuum
        # would otherwise plan the trace and scan queries from guesses.
        schema = Identifier(self.datastore.schema)
        with self.datastore.get_connection() as conn:
            conn.execute(SQL("ANALYZE {}").format(SQL(", ").join(
                SQL("{}.{}").format(schema, Identifier(name)) for name in tables or TABLES)))

    def lock_views(self, tx: Tx) -> None:
        # Held to the end of the transaction; the same lock guards creating the tables.
        tx.execute("SELECT pg_advisory_xact_lock(?)", (_PG_LOCK,))
