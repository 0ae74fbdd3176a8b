"""The ledger's SQLite recorder: the library's, with the Merkle nodes, checkpoints and
statements tables beside the events, and the batched reads the ledger makes.

The same reads as ledger.store.postgres, in SQLite's SQL: lookups by primary key through
joins on VALUES lists, blobs bound as bytearray (see _blob).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder

from ledger.store.recorder import (Coord, NewNode, Recorded, StatementRow, UpperNodes,
                                   completed_ranges)


class SQLiteLedgerRecorder(UpperNodes, SQLiteApplicationRecorder):
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
        ranges = completed_ranges(start, stop)
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
