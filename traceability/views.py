"""The read side's tables, kept up to date from the log's `Appended` notifications.

The views live in the ledger's own database (the SQLite file, or the PostgreSQL schema
of its URL) and are written through a tracking recorder (traceability.recorders), so
the rows of a chunk of entries and the position after it commit in one transaction.
Any number of processes may call `catch_up`: each chunk is applied by exactly one.

In the writing process, `attach` gives read-your-writes: the views catch up after each
commit, before the writer hands out its receipts. Elsewhere, `follow` polls.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Self, cast

import psycopg
from eventsourcing.persistence import InfrastructureFactory, Notification, PersistenceError
from eventsourcing.utils import Environment

from ledger.application import Ledger, statistics_due
from ledger.errors import LedgerError, NotFound, StorageError
from ledger.statements import Statement
from ledger.store import Database, Recorded
from traceability.policy import DEFAULT_POLICY, CreditPolicy
from traceability.logreader import LogReader, ReadAhead
from traceability.projector import Parsed, Projector, lookups
from traceability.recorders import PostgresViewsRecorder, SQLiteViewsRecorder, ViewsRecorder
from traceability.schema import CONTENT_TABLES, INDEXES, ORDER, SCHEMA_VERSION
from traceability.sql import Row, Tx
from traceability.writebehind import WriteBehind

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 500
REBUILD_CHUNK = 10_000
# Notifications a rebuild must have left to read before it starts processes to read
# ahead (a few hundred milliseconds to start): about 40,000 entries.
READ_AHEAD_FROM = 100_000
# Indexes on columns the projector never looks rows up by, only the read side's
# queries: a rebuild makes them after loading the rows, in one pass each.
DEFERRED_INDEXES = (
    "v_batches_producer", "v_inputs_input", "v_inputs_output", "v_shipments_batch",
    "v_shipments_sender", "v_shipments_receiver", "v_checks_stats", "v_recalls_batch",
)

# The tables a rebuild's own queries join or filter on other than by a primary key
# value (rows read ahead, receipts, standings, corrections): the statistics it
# refreshes as it goes. Not v_entries or v_inputs, the largest, only written to.
REBUILD_READS = ("v_batches", "v_organizations", "v_cases", "v_shipments", "v_checks",
                 "v_credit_lines", "v_blacklist", "v_corrections")


class Views:
    """The view tables of one ledger.

    `clock` is the time credit and blacklist questions are answered at when no time
    is given; by default the ledger's own clock.

    With `fresh_reads` (the API, where other workers write), every `reading` first
    catches the views up with every entry committed by then, whoever committed it.

    `home` puts the view tables in another database than the ledger's (the audit
    rebuilds them into a scratch one to compare with the live ones); no fresh reads then.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        policy: CreditPolicy = DEFAULT_POLICY,
        chunk_size: int = DEFAULT_CHUNK,
        clock: Callable[[], datetime] | None = None,
        fresh_reads: bool = False,
        home: Database | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
        if home is not None and fresh_reads:
            raise ValueError("fresh reads need the views in the ledger's own database")
        self.ledger = ledger
        self.policy = policy
        self.chunk_size = chunk_size
        self.clock = clock or ledger.clock
        # Tracking rows are named after the application followed, as the library does.
        self.name = ledger.name
        self._factory, self.recorder = _infrastructure(ledger, home)  # creates the tables
        self._lock = threading.Lock()  # one catch-up at a time in this process
        # A position this process has seen the views reach. Positions only grow (a
        # reset here sets it back), so a horizon at or below it needs no catch-up: the
        # API asks before every read, and then that is one query, not two.
        self._reached = 0
        self.fresh_reads = fresh_reads
        self._reader = LogReader(ledger)
        # The log's last notification id, asked inside a read's own snapshot: the views
        # live in the ledger's database (its schema on PostgreSQL, the search path of
        # the views' connections), so a read that finds nothing new to apply costs one
        # more statement, not a catch-up's transaction of its own before it.
        column = "notification_id" if ledger.database.is_postgres else "rowid"
        self.log_horizon = f'(SELECT MAX({column}) FROM "{ledger.recorder.events_table_name}")'
        self._horizon_sql = f"SELECT {self.log_horizon}"
        self._reset(only_if_stale=True)

    def close(self) -> None:
        """Close the views' connections (not the ledger's)."""
        self.recorder.close_readers()
        self._factory.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def open(cls, ledger: Ledger, **options: Any) -> Views:
        """Views brought up to date with the log: what a command or a reader wants."""
        views = cls(ledger, **options)
        views.catch_up()
        return views

    # ---- keeping up ----------------------------------------------------------

    def position(self) -> int:
        """The notification id of the last entry applied (0 before any)."""
        return self.recorder.max_tracking_id(self.name) or 0

    def catch_up(self, up_to_notification_id: int | None = None) -> int:
        """Apply the entries recorded since the last catch-up, in order, in chunks of
        `chunk_size`, one transaction each, up to the given notification id (default:
        the latest). Returns how many entries this call applied; other processes may
        have applied the rest.

        The position then covers every notification up to that id, not only the
        log's, so a reader can wait for any notification id the ledger gave out."""
        return self._catch_up(up_to_notification_id, self.chunk_size)

    def _catch_up(
        self, up_to_notification_id: int | None, chunk_size: int, *, bulk: bool = False
    ) -> int:
        applied = 0
        with self._lock:
            # Every id up to the latest is committed: the library's recorders take a
            # table lock to give out notification ids in commit order.
            horizon = up_to_notification_id
            if horizon is None:
                horizon = self.ledger.recorder.max_notification_id() or 0
            if horizon <= self._reached:
                return 0
            start = self.position()
            if bulk and horizon - start >= READ_AHEAD_FROM:
                start, applied = self._read_ahead(start, horizon, chunk_size)
            chunk = self._reader.chunk(start, chunk_size, horizon)
            while chunk is not None:
                entries, end = chunk
                if self._apply_parsed(start, entries, end, bulk=bulk):
                    applied += len(entries)
                    self._statistics_after(start, end, bulk=bulk)
                    start = end
                else:
                    # Another process applied (part of) it: go on from where it is.
                    start = self.position()
                chunk = self._reader.chunk(start, chunk_size, horizon)
            self._reached = max(self._reached, horizon)
        return applied

    def _read_ahead(self, start: int, horizon: int, chunk_size: int) -> tuple[int, int]:
        """A rebuild's chunks, read and parsed by other processes while this one applies
        them, in order, each committed with its position; stops early if another process
        applies a chunk first. Returns the position reached and the entries applied."""
        applied = 0
        # Spans of ids, not counts of entries, so that every chunk's bounds are known
        # before any is read; about 2.3 notifications per entry in a supply chain.
        reading = ReadAhead(self._reader, horizon)
        try:
            for entries, end in reading.chunks(start, horizon, 2 * chunk_size):
                if not self._apply_parsed(start, entries, end, bulk=True):
                    return self.position(), applied
                applied += len(entries)
                self._statistics_after(start, end, bulk=True)
                start = end
        finally:
            reading.close()
        return start, applied

    def _statistics_after(self, start: int, end: int, *, bulk: bool) -> None:
        """Refresh the planner's statistics when the position has grown enough from
        `start` to `end`, as the ledger does (ledger.application); during a rebuild too,
        whose lookups into the growing tables would otherwise be planned as if they were
        empty: then only the tables its own queries join or filter on (it analyses all
        after)."""
        if statistics_due(start, end):
            self.recorder.refresh_statistics(REBUILD_READS if bulk else None)

    def _parse(self, notification: Recorded | Notification) -> Parsed:
        return self._reader.parse(notification)

    def wait(self, notification_id: int, timeout: float = 5.0) -> None:
        """Block until the views cover `notification_id` (whoever applies it); raises
        TimeoutError after `timeout` seconds."""
        self.recorder.wait(self.name, notification_id, timeout=timeout)

    def _apply_chunk(
        self, start: int, notifications: Sequence[Recorded | Notification],
        end: int | None = None,
    ) -> bool:
        """Apply `notifications` (all the log's after `start` up to `end`, by default
        the last of them) and move the position from `start` to `end`, or do nothing
        and return False if the position is no longer `start`."""
        if end is None:
            end = notifications[-1].id
        # Parse before taking the write lock: on SQLite it also holds up the ledger's writers.
        return self._apply_parsed(start, [self._parse(n) for n in notifications], end, bulk=False)

    def _apply_parsed(self, start: int, entries: list[Parsed], end: int, *, bulk: bool) -> bool:
        """`_apply_chunk` for entries already parsed. `bulk` (a rebuild's chunks): the
        view rows are written in bulk at the end of the chunk (traceability.writebehind),
        and each standing once for the chunk."""
        with self.recorder.write() as tx:
            if not self.recorder.claim(tx, self.name, start, end):
                return False
            writes: Tx = tx
            if bulk:
                writes = WriteBehind(tx)
                wanted: dict[str, list[Any]] = {}
                for parsed in entries:
                    for table, key in lookups(parsed):
                        wanted.setdefault(table, []).append(key)
                for table, keys in wanted.items():
                    writes.read_ahead(table, keys)
            projector = Projector(writes, self.policy, self._read_statement,
                                  standing_per_chunk=bulk)
            for parsed in entries:
                projector.entry(parsed)
            projector.finish()  # not in bulk, each entry wrote its own: nothing is left
            if isinstance(writes, WriteBehind):
                writes.flush()
        return True

    def _read_statement(self, index: int) -> Statement | None:
        """An entry's statement as signed, for corrections (entries never change)."""
        try:
            return self.ledger.statement_at(index)
        except LedgerError:
            return None

    def attach(self, ledger: Ledger | None = None, *, raise_errors: bool = False) -> None:
        """Catch up after every commit of `ledger` (by default the one followed).

        A failure to catch up is logged, not raised: the entries are recorded by then,
        and the next catch-up retries. Tests pass raise_errors=True to see it."""
        def after_commit(notification_id: int) -> None:
            try:
                self.catch_up(notification_id)
            except Exception:
                if raise_errors:
                    raise
                log.exception("views did not catch up to notification %d", notification_id)

        (ledger or self.ledger).after_commit.append(after_commit)

    def follow(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Catch up every `interval` seconds until `stop` is set (a follower process)."""
        while not stop.is_set():
            self.catch_up()
            stop.wait(interval)

    def rebuild(self, *, chunk_size: int | None = None,
                up_to_notification_id: int | None = None) -> int:
        """Drop every view table, create them again, and apply the whole log.

        In chunks of REBUILD_CHUNK entries (a commit per chunk was a tenth of the
        time; for a long log read ahead by other processes, spans of twice as many
        notification ids), their rows written in bulk, and with the indexes only the
        read side uses made after the load, not kept up row by row. Each chunk still
        commits with its position: a rebuild cut short resumes at the next catch-up,
        and the indexes come back when the views are next opened (CREATE INDEX IF NOT
        EXISTS).
        Tests pass a small `chunk_size` to cut a short log into many chunks; the audit
        an `up_to_notification_id`, the position of the views it compares with."""
        if chunk_size is None:
            chunk_size = max(self.chunk_size, REBUILD_CHUNK)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
        self._reset(only_if_stale=False, deferred_indexes=True)
        # The whole log is read in order: without statistics of the log's table, the
        # server read each chunk by sorting everything after it (0.85 s a chunk at a
        # million entries, not 15 ms), and a ledger may never have been analysed.
        self.ledger.recorder.analyse_log_once()  # type: ignore[attr-defined]
        applied = self._catch_up(up_to_notification_id, chunk_size, bulk=True)
        with self._lock, self.recorder.write() as tx:
            for name in DEFERRED_INDEXES:
                tx.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {INDEXES[name]}")
        self.recorder.refresh_statistics()  # every table is new: the planner knows nothing of them
        return applied

    def _reset(self, *, only_if_stale: bool, deferred_indexes: bool = False) -> bool:
        expected = self._meta()
        with self._lock, self.recorder.write() as tx:
            # First statement: takes the write lock (SQLite) or the views' lock (PostgreSQL).
            self.recorder.lock_views(tx)
            if only_if_stale:
                found = {r["name"]: r["value"] for r in tx.rows("SELECT name, value FROM v_meta")}
                if found == expected:
                    return False
            self.recorder.forget_position(tx, self.name)
            self._reached = 0
            self.recorder.recreate_tables(tx)
            if deferred_indexes:
                for name in DEFERRED_INDEXES:
                    tx.execute(f"DROP INDEX IF EXISTS {name}")
            tx.executemany("INSERT INTO v_meta (name, value) VALUES (?, ?)", expected.items())
        return True

    def _meta(self) -> dict[str, str]:
        return {"schema": SCHEMA_VERSION, "policy": self.policy.name}

    # ---- reading -------------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[Tx]:
        """A read-only snapshot of the view tables, for the query modules; with
        `fresh_reads`, one that covers every entry committed before it began."""
        with self._storage_errors(), self._snapshot() as tx:
            yield tx

    @contextmanager
    def _storage_errors(self) -> Iterator[None]:
        """A database's error in reading the views, as the ledger's StorageError."""
        try:
            yield
        except (PersistenceError, sqlite3.Error, psycopg.Error) as e:
            raise StorageError(
                f"cannot read the views in {self.ledger.database.describe()}: {e}"
            ) from e

    @contextmanager
    def _snapshot(self) -> Iterator[Tx]:
        if self.fresh_reads:
            with self.recorder.read() as tx:
                # Positions only grow: a snapshot whose log ends at or below a position
                # this process saw the views reach holds the views of all of it.
                if self.holds(tx.value(self._horizon_sql)):
                    yield tx
                    return
            # Behind: catch up to the latest, then read, as a catch-up before each read
            # would (not checking again, which under steady writes could go on and on).
            self.catch_up()
        with self.recorder.read() as tx:
            yield tx

    def holds(self, horizon: int | None) -> bool:
        """Whether views read in a snapshot whose log ends at `horizon` (selected as
        `log_horizon`) hold every entry of it: always, without `fresh_reads`."""
        return not self.fresh_reads or (horizon or 0) <= self._reached

    def statement(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows, as tuples, of one statement read in a snapshot of its own, with no
        transaction around it: for a question one statement answers, the cheapest
        read there is (no BEGIN and ROLLBACK, and on PostgreSQL one round trip). It is
        not caught up first: a statement that must be fresh selects `log_horizon`,
        and its caller asks `holds` and, if not, catches up and reads again."""
        with self._storage_errors():
            return self.recorder.read_one(sql, params)

    def organization(self, uscc: str) -> Row:
        """The organization's row; raises NotFound for an unknown USCC."""
        with self.reading() as tx:
            row = tx.row("SELECT * FROM v_organizations WHERE uscc = ?", (uscc,))
        if row is None:
            raise NotFound(f"organization {uscc} is not registered")
        return row

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every content table's rows in key order: to compare two builds of the views."""
        with self.reading() as tx:
            return {
                table: [tuple(r.values())
                        for r in tx.rows(f"SELECT * FROM {table} ORDER BY {ORDER[table]}")]
                for table in CONTENT_TABLES
            }


def _infrastructure(
    ledger: Ledger, home: Database | None = None
) -> tuple[InfrastructureFactory[Any], ViewsRecorder]:
    """The views' own connections to the ledger's database (or to `home`), and their
    recorder.

    Not the ledger's pool: a views transaction reads entries from the ledger while it
    holds its write connection, and a pool that queues callers fairly would keep that
    read waiting behind a ledger writer waiting for the same write connection."""
    database = home or ledger.database
    if database.is_postgres != ledger.database.is_postgres:
        raise ValueError("the views must be on the same kind of database as the ledger")
    settings = {**database.env(), "POSTGRES_POOL_SIZE": "2", "POSTGRES_MAX_OVERFLOW": "2"}
    # Named "views": on PostgreSQL the tracking table is then views_tracking.
    factory = InfrastructureFactory.construct(Environment("views", settings))
    cls = PostgresViewsRecorder if ledger.database.is_postgres else SQLiteViewsRecorder
    # The library types the result as its base TrackingRecorder; it is an instance of cls.
    return factory, cast(ViewsRecorder, factory.tracking_recorder(cls))
