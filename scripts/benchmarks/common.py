"""What every benchmark reports: the machine, the date, the backends it can reach."""

from __future__ import annotations

import os
import platform
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

PG_URL = os.environ.get("QLEDGER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def machine() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3):
            return True
    except Exception:
        return False


@contextmanager
def database(backend: str) -> Iterator[str]:
    """A fresh, empty database of the given kind, removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="qledger-bench-") as d:
            yield os.path.join(d, "bench.db")
        return
    import psycopg

    schema = "bench_" + uuid.uuid4().hex[:12]
    try:
        yield f"{PG_URL}?schema={schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def reachable_backends(spec: str) -> list[str]:
    """The comma-separated backends asked for, less PostgreSQL when it cannot be reached."""
    backends = [b for b in spec.split(",") if b]
    if "postgres" in backends and not postgres_available():
        print("PostgreSQL not reachable: measuring SQLite only")
        backends.remove("postgres")
    return backends


def uscc(body: str) -> str:
    """A 17-character USCC body with its GB 32100 check character appended."""
    from stdnum.cn import uscc as stdnum_uscc

    return body + stdnum_uscc.calc_check_digit(body)


def gtin(body: str) -> str:
    """A 13-digit GTIN-14 body with its GS1 check digit appended."""
    from ledger.identifiers import gtin_check_digit

    return body + gtin_check_digit(body)
