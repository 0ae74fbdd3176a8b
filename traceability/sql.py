"""One cursor interface over SQLite and PostgreSQL for the view tables.

Queries are written once, with `?` placeholders and SQL that both databases speak
(WITH RECURSIVE, INSERT … ON CONFLICT, RETURNING, ||, substr); for PostgreSQL the
placeholders become `%s`. Values are always passed as parameters, never formatted in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from psycopg.rows import tuple_row

Row = dict[str, Any]

_TUPLE_ROW = tuple_row


@lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    # No query of the views holds a literal '?' or '%', so the swap is exact.
    return sql.replace("%", "%%").replace("?", "%s")


class Tx:
    """A cursor inside one transaction, opened by a views recorder."""

    def __init__(self, cursor: Any, *, postgres: bool) -> None:
        self._cursor = cursor
        self._postgres = postgres
        # The driver's own cursor (the library wraps SQLite's), whose row factory
        # `tuples` switches for one query.
        self._raw = cursor if postgres else getattr(cursor, "sqlite_cursor", cursor)

    def _sql(self, sql: str) -> str:
        return to_pyformat(sql) if self._postgres else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(self._sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(r) for r in rows]
        if rows:
            self._cursor.executemany(self._sql(sql), rows)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._cursor.execute(self._sql(sql), tuple(params))
        return [dict(r) for r in self._cursor.fetchall()]

    def tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows as tuples in the order of the select list: for answers of many rows,
        where building a dict per row costs more than the query."""
        cursor = self._raw
        saved = cursor.row_factory
        cursor.row_factory = _TUPLE_ROW if self._postgres else None
        try:
            cursor.execute(self._sql(sql), tuple(params))
            return cursor.fetchall()  # type: ignore[no-any-return]
        finally:
            cursor.row_factory = saved

    def row(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        found = self.rows(sql, params)
        return found[0] if found else None

    def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or None when there is no row."""
        found = self.row(sql, params)
        return next(iter(found.values())) if found else None
