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
queued writes of every table it names, unless it reads one row by its primary key
and that row was read ahead (`read_ahead`, one query for a chunk's lookups): then it
is answered from that row as the writes made since leave it, where they tell (an
INSERT's values and ON CONFLICT, an UPDATE's SET), without waiting for the server.
On PostgreSQL the queued writes are also sent every _SEND_EVERY rows: in pipeline
mode the server writes them while the chunk's later entries are projected.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from itertools import count
from operator import itemgetter
from typing import Any

from traceability.schema import ORDER, TABLES
from traceability.sql import Row, Tx

_EVERY_ROW = object()  # the key of a write that may touch any row of its table
_UNKNOWN = object()  # a row whose state the held writes do not tell
Key = Any

_INSERT = re.compile(
    r"INSERT INTO (v_\w+) \(([^)]*)\) VALUES (\([^)]*\))( ON CONFLICT \(([^)]*)\).*)?$", re.S)
_UPDATE = re.compile(r"UPDATE (v_\w+) SET .* WHERE (\w+) = \?$", re.S)
_TABLE = re.compile(r"\b(v_\w+)\b")
_SELECT = re.compile(r"SELECT (\w+(?:, \w+)*) FROM (v_\w+) WHERE (\w+ = \?(?: AND \w+ = \?)*)$")
_SET = re.compile(r"(\w+) = (excluded\.(\w+)|'[^']*'|-?\d+|NULL)")


_COLUMN = re.compile(r"(\w+) (BIGINT|INTEGER|SMALLINT|TEXT)\b")
_LITERAL = re.compile(r"'[^']*'|-?\d+|NULL")


# A value a write gives a column: (parameter position, None) or (None, literal value).
_Source = tuple[int | None, Any]


@dataclass(frozen=True)
class _Effect:
    """What a write by primary key does to its one row, to answer reads of that row
    from writes not sent yet (`WriteBehind.read_ahead`)."""

    table: str
    # The row an INSERT makes when none has the key (columns not named are NULL: no
    # view table has defaults); None for an UPDATE, which then does nothing.
    new: tuple[tuple[str, _Source], ...] | None
    # What it sets on a row that has the key: an UPDATE's SET, an INSERT's
    # DO UPDATE SET (excluded.c: the value it gives c); () for DO NOTHING; None when
    # unknown (a plain INSERT then fails).
    change: tuple[tuple[str, _Source], ...] | None

    def after(self, before: Row | None, params: tuple[Any, ...]) -> Row | None | object:
        """The row after this write, given the row before (None: no row); _UNKNOWN
        when that cannot be told here."""
        if before is None:
            if self.new is None:
                return None
            row = dict.fromkeys(_columns(self.table))
            row.update((c, params[i] if i is not None else v) for c, (i, v) in self.new)
            return row
        if self.change is None:
            return _UNKNOWN
        if not self.change:
            return before
        row = dict(before)
        row.update((c, params[i] if i is not None else v) for c, (i, v) in self.change)
        return row


@dataclass(frozen=True)
class _Form:
    """What the write-behind needs to know of a statement's text."""

    table: str
    key: tuple[int, ...] | None  # positions of the primary key's parameters; None: every row
    # The same statement for many rows given as one array per parameter (PostgreSQL).
    arrays: str | None = None
    effect: _Effect | None = None  # None: what it does to its row is not known here

    @cached_property
    def key_of(self) -> Callable[[tuple[Any, ...]], Key] | None:
        """A row's key: its one primary key value, or their tuple (the same for every
        statement on a table, so keys of different statements compare)."""
        return None if self.key is None else itemgetter(*self.key)


@dataclass(frozen=True)
class _PointRead:
    """SELECT c, … FROM table WHERE each primary key column = ?: one row's columns."""

    table: str
    columns: tuple[str, ...]
    key_of: Callable[[Sequence[Any]], Key]

    def answer(self, row: Row | None) -> list[Row] | None:
        """The query's rows from the row as it stands; None if a value is not of the
        type the database would give back (then the database is asked)."""
        if row is None:
            return []
        types = _types(self.table)
        out = {}
        for c in self.columns:
            v = row[c]
            if v is not None and type(v) is not (str if types[c] == "TEXT" else int):
                return None
            out[c] = v
        return [out]


def _primary_key(table: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in ORDER[table].split(","))


@lru_cache(maxsize=64)
def _types(table: str) -> dict[str, str]:
    return dict(_COLUMN.findall(TABLES[table]))


def _columns(table: str) -> list[str]:
    return list(_types(table))


def _literal(text: str) -> Any:
    if text == "NULL":
        return None
    return text[1:-1] if text.startswith("'") else int(text)


def _sources(values: Iterable[Sequence[str]]) -> tuple[tuple[str, _Source], ...]:
    """(column, value as written) pairs as the value each column gets: the n-th `?`
    is parameter n, anything else a literal."""
    position = count()
    return tuple((c, (next(position), None) if v == "?" else (None, _literal(v)))
                 for c, v in values)


def _on_conflict(tail: str, given: dict[str, _Source]) -> tuple[tuple[str, _Source], ...] | None:
    """An INSERT's effect on a row that has its key, from its ON CONFLICT clause."""
    if tail.endswith(" DO NOTHING"):
        return ()
    if " DO UPDATE SET " not in tail:
        return None
    changes = []
    for item in tail[tail.index(" DO UPDATE SET ") + 15:].split(", "):
        m = _SET.fullmatch(item)
        if m is None or (m[3] is not None and m[3] not in given):
            return None
        changes.append((m[1], given[m[3]] if m[3] is not None else (None, _literal(m[2]))))
    return tuple(changes)


@lru_cache(maxsize=256)
def _point_read(sql: str) -> _PointRead | None:
    m = _SELECT.match(sql)
    if m is None:
        return None
    table, where = m[2], [w[:-4] for w in m[3].split(" AND ")]
    key = _primary_key(table)
    if table not in TABLES or sorted(where) != sorted(key):
        return None
    positions = [where.index(c) for c in key]
    return _PointRead(table, tuple(m[1].split(", ")), itemgetter(*positions))


def _unnest(table: str, columns: list[str]) -> str:
    """FROM unnest(?::type[], …) AS u(c0, …): one array parameter per column named."""
    types = _types(table)
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
        new = _sources(zip(names, items, strict=True))
        effect = _Effect(table, new, _on_conflict(tail, dict(new)))
        return _Form(table, tuple(params.index(c) for c in target), arrays, effect)
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
        return _Form(table, (len(params) - 1,), arrays, _Effect(table, None, _sources(sets)))
    table = next(iter(_TABLE.findall(sql)), "")
    return _Form(table, None)


# Rows held before they are sent, on PostgreSQL: each send is a statement per group,
# parsed and planned on its own, so not too few rows each.
_SEND_EVERY = 5_000

# Keys one read-ahead query names (SQLite allows 32,766 parameters; PostgreSQL's
# take one array per key column).
_READ_AHEAD = 5_000


@lru_cache(maxsize=64)
def _read_ahead_sql(table: str, postgres: bool, n: int) -> str:
    """The rows of `table` whose primary keys are among n given."""
    key = _primary_key(table)
    on = " AND ".join(f"t.{c} = k.c{i}" for i, c in enumerate(key))
    names = ", ".join(f"c{i}" for i in range(len(key)))
    if postgres:
        source = _unnest(table, list(key)).replace(f"AS u({names})", f"AS k({names})")
        return f"SELECT t.* FROM {source} JOIN {table} t ON {on}"
    values = ", ".join(["(" + ", ".join("?" * len(key)) + ")"] * n)
    return f"WITH k({names}) AS (VALUES {values}) SELECT t.* FROM k JOIN {table} t ON {on}"


def _read_ahead_params(keys: list[Key], one: bool, postgres: bool) -> list[Any]:
    rows = [(k,) for k in keys] if one else keys
    if postgres:
        return [list(column) for column in zip(*rows, strict=True)]
    return [v for row in rows for v in row]


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
        # Rows read ahead (`read_ahead`) and kept up to date with every write made to
        # them since: table -> key -> the row (None: no row, _UNKNOWN: not told).
        self._known: dict[str, dict[Key, Any]] = {}
        self._held = 0  # rows queued since the last flush

    def read_ahead(self, table: str, keys: Iterable[Key]) -> None:
        """Read the rows of `table` with these primary keys in one query, so that
        reads of one of them by its key (SELECT c FROM table WHERE key = ?) are then
        answered here, with the writes made since, and need not wait for the
        database. Before any write to `table`: the rows are read as committed."""
        assert table not in self._queues, f"{table}: read ahead after a write"
        known = self._known.setdefault(table, {})
        wanted = [k for k in dict.fromkeys(keys) if k not in known]
        key = _primary_key(table)
        for k in wanted:
            known[k] = None
        one = len(key) == 1
        for start in range(0, len(wanted), _READ_AHEAD):
            part = wanted[start:start + _READ_AHEAD]
            for row in super().rows(_read_ahead_sql(table, self._postgres, len(part)),
                                    _read_ahead_params(part, one, self._postgres)):
                known[row[key[0]] if one else tuple(row[c] for c in key)] = row

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
        known = self._known.get(form.table)
        for row in rows:
            key = _EVERY_ROW if key_of is None else key_of(row)
            if known is not None:
                self._follow(known, form, key, row)
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
        # On PostgreSQL (pipeline mode) sending does not wait for the server: it then
        # writes these rows while the chunk's next entries are projected, instead of
        # all of them after the last one.
        self._held += len(rows)
        if self._postgres and self._held >= _SEND_EVERY:
            self.flush()

    @staticmethod
    def _follow(known: dict[Key, Any], form: _Form, key: Key, row: tuple[Any, ...]) -> None:
        """Keep a row read ahead as this write leaves it."""
        if key is _EVERY_ROW:
            known.clear()  # any row may have changed: ask the database from now on
        elif (before := known.get(key, _UNKNOWN)) is not _UNKNOWN:
            known[key] = _UNKNOWN if form.effect is None else form.effect.after(before, row)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        read = _point_read(sql)
        if read is not None and (known := self._known.get(read.table)):
            row = known.get(read.key_of(params), _UNKNOWN)
            if row is not _UNKNOWN and (found := read.answer(row)) is not None:
                return found
        self._flush(_TABLE.findall(sql))
        return super().rows(sql, params)

    def tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._flush(_TABLE.findall(sql))
        return super().tuples(sql, params)

    def flush(self) -> None:
        """Send every queued write."""
        self._held = 0
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
        if len(group.keys) == len(group.rows):  # every key once: one statement
            self._send_arrays(arrays, group.rows)
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
        # In binary (%b): as text, psycopg quotes each element of a text array in
        # Python with a regular expression, a sixth of a rebuild's client time.
        self._cursor.execute(_binary_placeholders(sql),
                             [list(column) for column in zip(*batch, strict=True)])


@lru_cache(maxsize=256)
def _binary_placeholders(sql: str) -> str:
    # As traceability.sql's swap, with every parameter sent in binary.
    return sql.replace("%", "%%").replace("?", "%b")
