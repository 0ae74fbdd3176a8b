"""The views against a rebuild of them from the log: the read side's part of `qledger audit`.

Readers trust the view tables (a scan shows a batch as recalled or not from v_recalls),
and anyone with write access to the database can edit them without touching the log.
So the views are rebuilt from the log into scratch tables (a temporary SQLite file, or a
scratch schema of the same PostgreSQL database) up to the position the live views claim
to have reached, under the policy they were built with, and each content table is
compared with its rebuilt twin in the database itself (EXCEPT both ways: only rows that
differ come back). Each difference names the table, the row's key and the column.

Nothing of the live views is written: a view that differs is for the operator to
rebuild (`qledger rebuild`) once the cause is known.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

from eventsourcing.persistence import PersistenceError

from ledger.application import Ledger
from ledger.errors import StorageError
from ledger.store import Database
from traceability.policy import DEFAULT_POLICY, CreditPolicy
from traceability.schema import CONTENT_TABLES, ORDER, SCHEMA_VERSION
from traceability.views import Views

# The differences listed per table, each way; the rest are counted.
MAX_LISTED = 50


@dataclass
class ViewsReport:
    """`checked` is False when there were no views to check (`note` says why): not a
    problem, since readers rebuild missing or outdated views when they open them."""

    checked: bool = False
    position: int = 0  # the notification id the live views claim to have reached
    entries: int = 0  # entries the rebuild applied
    note: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_views(ledger: Ledger, *, policy: CreditPolicy = DEFAULT_POLICY,
                progress: Callable[[str], None] | None = None) -> ViewsReport:
    """Compare the ledger's views with a rebuild of them from its log. `policy` is the
    one the operator runs the views under; views built under another are reported.
    Raises StorageError when the comparison cannot be made (no room for the scratch
    tables, no right to create a schema)."""
    try:
        return _check_views(ledger, policy, progress)
    except (OSError, sqlite3.Error, psycopg.Error, PersistenceError) as e:
        raise StorageError(f"cannot rebuild the views to compare them: "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def _check_views(ledger: Ledger, policy: CreditPolicy,
                 progress: Callable[[str], None] | None) -> ViewsReport:
    report = ViewsReport()
    with _live(ledger.database) as live:
        state = live.state()
        if state is None:
            report.note = "no views in the database: nothing to compare"
            return report
        meta, report.position = state
        if meta.get("schema") != SCHEMA_VERSION:
            report.note = (f"the views are of schema {meta.get('schema')!r}, not "
                           f"{SCHEMA_VERSION!r}: they are rebuilt from the log when next opened")
            return report
        last = ledger.recorder.max_notification_id() or 0
        if report.position > last:
            # The next catch-up would start past every entry recorded until then.
            report.problems.append(
                f"views_tracking: the views claim to have reached notification "
                f"{report.position}, past the log's last, {last}: the entries recorded "
                "before they catch up to it would never be applied")
            return report
        if meta.get("policy") != policy.name:
            report.problems.append(f"v_meta: the views say they were built under credit policy "
                                   f"{meta.get('policy')!r}, not {policy.name!r}")
            return report
        with _scratch(ledger.database) as scratch:
            if progress:
                progress(f"rebuilding the views up to notification {report.position} to compare")
            with Views(ledger, policy=policy, home=scratch.database) as rebuilt:
                report.entries = rebuilt.rebuild(up_to_notification_id=report.position)
            if progress:
                progress("comparing the views table by table")
            if not scratch.database.is_postgres:
                live.attach(scratch.database.url)
            for table in CONTENT_TABLES:
                report.problems += live.compare(table, scratch.place)
        report.checked = True
    return report


@dataclass(frozen=True)
class _Scratch:
    database: Database
    place: str  # the scratch tables' qualifier as the live connection sees it


@contextmanager
def _scratch(database: Database) -> Iterator[_Scratch]:
    """Where the rebuild goes, removed afterwards: a SQLite file in a temporary folder
    (attached to the live connection as `scratch`), or a schema of its own."""
    if not database.is_postgres:
        folder = tempfile.mkdtemp(prefix="qledger-viewcheck-")
        try:
            yield _Scratch(Database(os.path.join(folder, "views.db")), "scratch")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    url = database.url.split("?", 1)[0]
    schema = "qledger_viewcheck_" + uuid.uuid4().hex[:12]
    with database.connect() as conn:
        conn.execute(SQL("CREATE SCHEMA {}").format(Identifier(schema)))
    try:
        yield _Scratch(Database(f"{url}?schema={schema}"), schema)
    finally:
        with database.connect() as conn:
            conn.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(schema)))


class _Live:
    """A read-only connection to the live views, with the queries both databases share
    (`{live}` and `{scratch}` stand for the two places' qualifiers)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.postgres = database.is_postgres
        if self.postgres:
            self.schema = database.env()["POSTGRES_SCHEMA"]
            self.conn: Any = database.connect()
            self.tracking = f'"{self.schema}".views_tracking'
            self.qualifier = f'"{self.schema}"'
        else:
            self.conn = sqlite3.connect(f"file:{database.url}?mode=ro", uri=True)
            self.tracking = "tracking"
            self.qualifier = "main"

    def rows(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        cursor = self.conn.execute(sql if self.postgres else sql.replace("%s", "?"), params)
        return [d[0] for d in cursor.description], cursor.fetchall()

    def state(self) -> tuple[dict[str, str], int] | None:
        """The live views' v_meta and position, or None when there are none."""
        try:
            _, meta = self.rows(f"SELECT name, value FROM {self.qualifier}.v_meta")
            _, found = self.rows(f"SELECT notification_id FROM {self.tracking} "
                                 "WHERE application_name = %s", ("qledger",))
        except (sqlite3.Error, psycopg.Error):
            return None
        return dict(meta), int(found[0][0]) if found else 0

    def compare(self, table: str, scratch: str) -> list[str]:
        """The rows of `table` that differ between the live views and the rebuild."""
        live, rebuilt = f"{self.qualifier}.{table}", f'"{scratch}".{table}'
        try:
            columns, extra = self.rows(f"SELECT * FROM {live} EXCEPT SELECT * FROM {rebuilt} "
                                       f"ORDER BY {ORDER[table]} LIMIT {MAX_LISTED + 1}")
            _, lacking = self.rows(f"SELECT * FROM {rebuilt} EXCEPT SELECT * FROM {live} "
                                   f"ORDER BY {ORDER[table]} LIMIT {MAX_LISTED + 1}")
        except (sqlite3.Error, psycopg.Error) as e:
            return [f"{table}: cannot be compared with its rebuild (its columns were altered?): "
                    f"{str(e).splitlines()[0]}"]
        return _differences(table, columns, extra, lacking)

    def attach(self, path: str) -> None:
        """SQLite: the scratch file, under the name `scratch`, for EXCEPT across files."""
        self.conn.execute("ATTACH DATABASE ? AS scratch", (path,))

    def close(self) -> None:
        self.conn.close()


def _differences(table: str, columns: list[str], extra: list[tuple[Any, ...]],
                 lacking: list[tuple[Any, ...]]) -> list[str]:
    """Rows only in the live table (`extra`) and only in the rebuild (`lacking`),
    matched by primary key: a key in both is a row whose columns differ."""
    keys = [columns.index(c.strip()) for c in ORDER[table].split(",")]

    def key_of(row: tuple[Any, ...]) -> str:
        return ", ".join(f"{columns[i]}={row[i]!r}" for i in keys)

    live = {key_of(r): r for r in extra[:MAX_LISTED]}
    rebuilt = {key_of(r): r for r in lacking[:MAX_LISTED]}
    out = []
    for key in sorted(live.keys() | rebuilt.keys()):
        mine, theirs = live.get(key), rebuilt.get(key)
        if mine is not None and theirs is not None:
            changed = "; ".join(f"{c} is {a!r} in the views, {b!r} rebuilt from the log"
                                for c, a, b in zip(columns, mine, theirs) if a != b)
            out.append(f"{table} ({key}): {changed}")
        elif mine is not None:
            out.append(f"{table} ({key}): a row that the log does not make")
        else:
            out.append(f"{table} ({key}): missing; the log makes "
                       + ", ".join(f"{c}={v!r}" for c, v in zip(columns, theirs or ())))
    if len(extra) > MAX_LISTED or len(lacking) > MAX_LISTED:
        out.append(f"{table}: … and more rows that differ")
    return out


@contextmanager
def _live(database: Database) -> Iterator[_Live]:
    live = _Live(database)
    try:
        yield live
    finally:
        live.close()
