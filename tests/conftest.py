"""Shared fixtures: every ledger test runs on SQLite and on PostgreSQL.

PostgreSQL comes from QLEDGER_TEST_PG (default: the local server's `test` database).
When it cannot be reached the PostgreSQL cases are skipped with the reason, except
under CI=true, where they must run and so fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

PG_URL = os.environ.get("QLEDGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
_pg_problem: list[str | None] = []


def _postgres_problem() -> str | None:
    if not _pg_problem:
        try:
            import psycopg

            with psycopg.connect(PG_URL, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            _pg_problem.append(None)
        except Exception as e:  # any failure to connect means: no PostgreSQL here
            _pg_problem.append(f"PostgreSQL not reachable at {PG_URL}: {e}".splitlines()[0])
    return _pg_problem[0]


def require_postgres() -> str:
    problem = _postgres_problem()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem} (CI=true: the PostgreSQL tests must run)")
        pytest.skip(problem)
    return PG_URL


@pytest.fixture
def postgres() -> str:
    """The PostgreSQL server URL (skipped, or failed under CI=true, when unreachable)."""
    return require_postgres()


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL with a fresh schema, dropped afterwards."""
    import psycopg

    url = require_postgres()
    schema = "t_" + uuid.uuid4().hex[:16]
    yield f"{url}?schema={schema}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    if request.param == "sqlite":
        return os.path.join(tmp_path, "ledger.db")
    return str(request.getfixturevalue("pg_schema_url"))
