"""A Tx that holds a rebuild chunk's writes back and sends them in bulk.

Building the views row by row costs a statement per row: on SQLite the driver's and
the library's per-call work, on PostgreSQL a parse and plan on the server for each
(nothing is prepared there: see PostgresViewsRecorder.write). A rebuild applies
10,000 entries in one transaction, so their writes can wait and go together: runs of
the same statement as one executemany on SQLite, and on PostgreSQL as one statement
reading its rows from arrays, a parameter per column (INSERT … SELECT … FROM unnest,
UPDATE … FROM unnest), parsed and planned once.

Exactness. Every write of the projector touches rows of one table only, and, when it
is an INSERT … ON CONFLICT on the table's primary key or an UPDATE … WHERE on it,
only the row with that key: such writes to different rows commute. So writes are
queued per table, in order, in groups of the same statement; a write joins the last
group of its statement unless a group after that one touches the same row (then it
starts a new group), and a write whose rows cannot be told from its text (any other
form) touches every row of its table. Groups go in order, and rows within a group in
order: each row's writes keep the order they were made in. A read first sends the
queued writes of every table it names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from operator import itemgetter
from typing import Any

from traceability.schema import ORDER, TABLES
from traceability.sql import Row, Tx

_EVERY_ROW = object()  # the key of a write that may touch any row of its table
Key = Any

_INSERT = re.compile(
    r"INSERT INTO (v_\w+) \(([^)]*)\) VALUES (\([^)]*\))( ON CONFLICT \(([^)]*)\).*)?$", re.S)
_UPDATE = re.compile(r"UPDATE (v_\w+) SET .* WHERE (\w+) = \?$", re.S)
_TABLE = re.compile(r"\b(v_\w+)\b")


_COLUMN = re.compile(r"(\w+) (BIGINT|INTEGER|SMALLINT|TEXT)\b")
_LITERAL = re.compile(r"'[^']*'|-?\d+|NULL")


@dataclass(frozen=True)
class _Form:
    """What the write-behind needs to know of a statement's text."""

    table: str
    key: tuple[int, ...] | None  # positions of the primary key's parameters; None: every row
    # The same statement for many rows given as one array per parameter (PostgreSQL).
    arrays: str | None = None

    @property
    def key_of(self) -> Callable[[tuple[Any, ...]], Key] | None:
        """A row's key: its one primary key value, or their tuple (the same for every
        statement on a table, so keys of different statements compare)."""
        return None if self.key is None else itemgetter(*self.key)


def _primary_key(table: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in ORDER[table].split(","))


def _unnest(table: str, columns: list[str]) -> str:
    """FROM unnest(?::type[], …) AS u(c0, …): one array parameter per column named."""
    types = dict(_COLUMN.findall(TABLES[table]))
    arrays = ", ".join(f"?::{types[c].lower()}[]" for c in columns)
    names = ", ".join(f"c{i}" for i in range(len(columns)))
    return f"unnest({arrays}) AS u({names})"


@lru_cache(maxsize=256)
def _form(sql: str) -> _Form:
    if m := _INSERT.match(sql):
        table, columns, values, tail, conflict = m[1], m[2], m[3], m[4] or "", m[5]
        names = [c.strip() for c in columns.split(",")]
        items = [v.strip() for v in values[1:-1].split(",")]
        if len(items) != len(names) or not all(v == "?" or _LITERAL.fullmatch(v) for v in items):
            return _Form(table, None)
        target = tuple(c.strip() for c in conflict.split(",")) if conflict else _primary_key(table)
        params = [n for n, v in zip(names, items, strict=True) if v == "?"]
        if target != _primary_key(table) or not all(c in params for c in target):
            return _Form(table, None)
        selected = iter(range(len(params)))
        select = ", ".join(f"u.c{next(selected)}" if v == "?" else v for v in items)
        arrays = (f"INSERT INTO {table} ({columns}) SELECT {select} "
                  f"FROM {_unnest(table, params)}{tail}")
        return _Form(table, tuple(params.index(c) for c in target), arrays)
    if (m := _UPDATE.match(sql)) and _primary_key(m[1]) == (m[2],):
        table, key = m[1], m[2]
        sets = [item.split(" = ") for item in sql[sql.index(" SET ") + 5:sql.rindex(" WHERE ")]
                .split(", ")]
        if not all(len(s) == 2 and (s[1] == "?" or _LITERAL.fullmatch(s[1])) for s in sets):
            return _Form(table, (sql.count("?") - 1,))
        params = [c for c, v in sets if v == "?"] + [key]
        selected = iter(range(len(params)))
        assign = ", ".join(f"{c} = u.c{next(selected)}" if v == "?" else f"{c} = {v}"
                           for c, v in sets)
        arrays = (f"UPDATE {table} AS t SET {assign} FROM {_unnest(table, params)} "
                  f"WHERE t.{key} = u.c{len(params) - 1}")
        return _Form(table, (len(params) - 1,), arrays)
    table = next(iter(_TABLE.findall(sql)), "")
    return _Form(table, None)


@dataclass
class _Group:
    sql: str
    form: _Form
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    keys: set[Key] = field(default_factory=set)


class WriteBehind(Tx):
    """The Tx of a rebuild chunk: writes wait until a read needs them or `flush`."""

    def __init__(self, tx: Tx) -> None:
        super().__init__(tx._cursor, postgres=tx._postgres)
        self._queues: dict[str, list[_Group]] = {}

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._queue(sql, [tuple(params)])

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._queue(sql, [tuple(r) for r in rows])

    def _queue(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        form = _form(sql)
        groups = self._queues.setdefault(form.table, [])
        key_of = form.key_of
        for row in rows:
            key = _EVERY_ROW if key_of is None else key_of(row)
            target = None
            if key is not _EVERY_ROW and groups and groups[-1].sql == sql:
                target = groups[-1]  # the usual case: no group after it to cross
            else:
                for group in reversed(groups):
                    if group.sql == sql and key is not _EVERY_ROW:
                        target = group
                        break
                    if key is _EVERY_ROW or _EVERY_ROW in group.keys or key in group.keys:
                        break
            if target is None:
                target = _Group(sql, form)
                groups.append(target)
            target.rows.append(row)
            target.keys.add(key)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._flush(_TABLE.findall(sql))
        return super().rows(sql, params)

    def tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._flush(_TABLE.findall(sql))
        return super().tuples(sql, params)

    def flush(self) -> None:
        """Send every queued write."""
        self._flush(list(self._queues))

    def _flush(self, tables: Iterable[str]) -> None:
        for table in tables:
            for group in self._queues.pop(table, ()):
                self._send(group)

    def _send(self, group: _Group) -> None:
        arrays = group.form.arrays
        if not self._postgres or arrays is None or len(group.rows) == 1:
            super().executemany(group.sql, group.rows)
            return
        # Rows of distinct keys in one statement do what they do one by one; a key met
        # again starts the next statement, after the one holding its first row.
        key_of = group.form.key_of
        assert key_of is not None
        batch: list[tuple[Any, ...]] = []
        seen: set[Key] = set()
        for row in group.rows:
            key = key_of(row)
            if key in seen:
                self._send_arrays(arrays, batch)
                batch, seen = [], set()
            batch.append(row)
            seen.add(key)
        self._send_arrays(arrays, batch)

    def _send_arrays(self, sql: str, batch: list[tuple[Any, ...]]) -> None:
        super().execute(sql, [list(column) for column in zip(*batch, strict=True)])
