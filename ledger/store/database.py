"""Where a ledger lives (QLEDGER_DB: a SQLite file or a PostgreSQL URL), and the
eventsourcing library's settings that open it with the ledger's recorder.

The one place that chooses between the databases: the rest of the code holds a Database
and never asks which recorder or driver is behind it, except where the SQL differs.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier

from ledger.errors import StorageError
from ledger.store.postgres import PostgresLedgerRecorder
from ledger.store.postgres_connections import BoundedConnection, BoundedPostgresFactory
from ledger.store.sqlite import SQLiteLedgerRecorder
from ledger.store.timeouts import lock_timeout, storage_timeout

DEFAULT_DB = "qledger.db"


@dataclass(frozen=True)
class Database:
    """Where a ledger lives: a SQLite file path or a PostgreSQL URL (QLEDGER_DB)."""

    url: str

    @classmethod
    def from_env(cls, value: str | None = None) -> Database:
        return cls(value or os.environ.get("QLEDGER_DB") or DEFAULT_DB)

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith(("postgresql://", "postgres://"))

    def describe(self) -> str:
        if not self.is_postgres:
            return self.url
        parts = urlsplit(self.url)
        return f"postgresql://{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"

    def env(self) -> dict[str, str]:
        """The eventsourcing library's settings for this database."""
        if not self.is_postgres:
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": self.url,
                "SQLITE_LOCK_TIMEOUT": str(lock_timeout()),
                "APPLICATION_RECORDER_TOPIC": get_topic(SQLiteLedgerRecorder),
                "CREATE_TABLE": "y",
            }
        parts = urlsplit(self.url)
        dbname = unquote(parts.path.lstrip("/")) or "postgres"
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        env = {
            "PERSISTENCE_MODULE": get_topic(BoundedPostgresFactory),
            "POSTGRES_DBNAME": dbname,
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or os.environ.get("USER", "postgres")),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_SCHEMA": query.get("schema", "public"),
            "POSTGRES_LOCK_TIMEOUT": str(lock_timeout()),
            "POSTGRES_CONNECT_TIMEOUT": str(storage_timeout()),  # the pool's wait
            "POSTGRES_POOL_SIZE": "4",
            "POSTGRES_MAX_OVERFLOW": "4",
            "APPLICATION_RECORDER_TOPIC": get_topic(PostgresLedgerRecorder),
            "CREATE_TABLE": "y",
        }
        return env

    @contextmanager
    def prepared(self) -> Iterator[None]:
        """Create what the library does not (the PostgreSQL schema named in the URL) and
        hold a lock while the library creates its tables: its CREATE OR REPLACE FUNCTION
        fails with "tuple concurrently updated" when several processes start at once."""
        if not self.is_postgres:
            directory = os.path.dirname(os.path.abspath(self.url))
            if not os.path.isdir(directory):
                raise StorageError(f"cannot create the ledger {self.url}: no folder {directory}")
            yield
            return
        schema = self.env()["POSTGRES_SCHEMA"]
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
            raise StorageError(f"bad PostgreSQL schema name {schema!r}")
        with self.connect() as conn:
            lock = int.from_bytes(hashlib.sha256(f"qledger:{schema}".encode()).digest()[:8], "big", signed=True)
            conn.execute("SELECT pg_advisory_lock(%s)", (lock,))
            try:
                conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(schema)))
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (lock,))

    def connect(self) -> psycopg.Connection[Any]:
        """A connection of its own (autocommit) to this PostgreSQL database's server,
        outside the pools, with the pools' bounds: connecting, and every wait on it
        (BoundedConnection). Raises StorageError when the server cannot be reached."""
        try:
            return BoundedConnection.connect(self.url.split("?", 1)[0], autocommit=True,
                                             connect_timeout=max(2, storage_timeout()))
        except psycopg.Error as e:
            raise StorageError(f"cannot reach PostgreSQL at {self.describe()}: {e}") from None
