"""The ledger's PostgreSQL recorder: the library's, with the Merkle nodes, checkpoints and
statements tables beside the events, and the batched reads the ledger makes.

The same reads as ledger.store.sqlite, in PostgreSQL's SQL: arrays sent in binary and
unnested, each row found through a LATERAL primary-key lookup that OFFSET 0 keeps the
planner from flattening; JIT off for the lookups (see _without_jit). How its connections
are made and how long they wait is ledger.store.postgres_connections.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier

from ledger.store.recorder import (Coord, NewNode, Recorded, StatementRow, UpperNodes,
                                   completed_ranges)


class PostgresLedgerRecorder(UpperNodes, PostgresApplicationRecorder):
    """The library's PostgreSQL application recorder, with the Merkle nodes beside the events."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        schema = Identifier(self.datastore.schema)
        table = Identifier(self.events_table_name)
        self.sql_create_statements.extend(_ledger_tables(schema))
        self._compose_writes(schema, table)
        self._compose_reads(schema, table)

    def _compose_writes(self, schema: Identifier, table: Identifier) -> None:
        """The statements an append runs beside the library's: all arrays, one per column."""
        self._insert_checkpoint = SQL(
            "INSERT INTO {schema}.checkpoints (size, note) VALUES (%s, %s)"
        ).format(schema=schema)
        self._insert_statements = SQL(
            "INSERT INTO {schema}.statements (id, idx, digest, recorded_at, leaf_hash) "
            "SELECT * FROM unnest(%b::bytea[], %b::bigint[], %b::bytea[], %b::text[], %b::bytea[])"
        ).format(schema=schema)
        self._insert_nodes = SQL(
            "INSERT INTO {schema}.merkle_nodes (level, idx, hash) "
            "SELECT * FROM unnest(%b::smallint[], %b::bigint[], %b::bytea[])"
        ).format(schema=schema)
        self._insert_arrays = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(schema=schema, table=table)

    def _compose_reads(self, schema: Identifier, table: Identifier) -> None:
        """The reads, composed once: most are prepared on first use (prepare=True)."""
        self._latest_checkpoint = SQL(
            "SELECT size, note FROM {schema}.checkpoints ORDER BY size DESC LIMIT 1"
        ).format(schema=schema)
        self._checkpoint_at = SQL("SELECT note FROM {schema}.checkpoints WHERE size = %s").format(
            schema=schema
        )
        self._find_statements = SQL(
            "SELECT id, idx, digest, recorded_at, leaf_hash FROM {schema}.statements "
            "WHERE id = ANY(%b::bytea[])"
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
        ).format(schema=schema, table=table)
        self._select_states = SQL(
            "SELECT notification_id, state FROM {schema}.{table} WHERE notification_id > %s "
            "AND notification_id <= %s AND topic = %s ORDER BY notification_id LIMIT %s"
        ).format(schema=schema, table=table)
        self._select_versions = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state "
            "FROM unnest(%s::bigint[]) AS w(v) "
            "CROSS JOIN LATERAL (SELECT originator_id, originator_version, topic, state "
            "FROM {schema}.{table} x WHERE x.originator_id = %s AND x.originator_version = w.v "
            "OFFSET 0) e ORDER BY e.originator_version"
        ).format(schema=schema, table=table)

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
            return _stored_events(curs.fetchall())

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
            return _stored_events(curs.fetchall())

    def nodes_completed_in(self, start: int, stop: int) -> dict[Coord, bytes]:
        """As SQLiteLedgerRecorder.nodes_completed_in."""
        ranges = completed_ranges(start, stop)
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


def _stored_events(rows: Sequence[Any]) -> list[StoredEvent]:
    """PostgreSQL rows of the events table as the library's stored events."""
    return [
        StoredEvent(
            originator_id=row["originator_id"],
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=bytes(row["state"]),
        )
        for row in rows
    ]


def _ledger_tables(schema: Identifier) -> list[Composed]:
    """The ledger's tables beside the library's events table."""
    return [
        SQL(
            "CREATE TABLE IF NOT EXISTS {schema}.merkle_nodes ("
            "level smallint NOT NULL, idx bigint NOT NULL, hash bytea NOT NULL, "
            "PRIMARY KEY (level, idx))"
        ).format(schema=schema),
        SQL(
            "CREATE TABLE IF NOT EXISTS {schema}.checkpoints ("
            "size bigint PRIMARY KEY, note text NOT NULL)"
        ).format(schema=schema),
        SQL(
            "CREATE TABLE IF NOT EXISTS {schema}.statements ("
            "id bytea PRIMARY KEY, idx bigint NOT NULL, digest bytea NOT NULL, "
            "recorded_at text NOT NULL, leaf_hash bytea NOT NULL)"
        ).format(schema=schema),
    ]


_NO_JIT: weakref.WeakSet[Any] = weakref.WeakSet()


def _without_jit(conn: Any) -> None:
    """These lookups have tiny results but huge cost estimates on a large log, which
    makes PostgreSQL JIT-compile them: about 100 ms of compiling for a 5 ms query."""
    if conn not in _NO_JIT:
        conn.execute("SET jit = off")
        _NO_JIT.add(conn)
