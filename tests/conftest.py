"""Shared fixtures: every ledger test runs on SQLite and on PostgreSQL.

PostgreSQL comes from QLEDGER_TEST_PG (default: the local server's `test` database).
When it cannot be reached the PostgreSQL cases are skipped with the reason, except
under CI=true, where they must run and so fail instead.

Markers, given here by module so that a new test in a slow file is slow too:
`e2e` for tests that start servers, browsers or processes (and are `slow` as well),
`slow` for the rest of what takes seconds, and for every PostgreSQL case (a schema
each). `scripts/test -m "not slow"` runs the unit tests on SQLite in under a minute;
`scripts/test` alone runs everything.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

E2E_MODULES = frozenset({
    "test_browser", "test_feed_stream", "test_attacks_floods", "test_crash", "test_outages",
    "test_schemathesis", "test_concurrent_writers",
})
SLOW_MODULES = frozenset({
    "test_views_properties", "test_conservation", "test_attacks_exports", "test_case_exports",
    "test_backup", "test_audit", "test_attacks_audit", "test_tamper", "test_parallel",
    "test_views_tracking", "test_exporters_hostile",
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.path.stem
        if module in E2E_MODULES:
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.slow)
        elif module in SLOW_MODULES or item.get_closest_marker("postgres") is not None:
            item.add_marker(pytest.mark.slow)


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
