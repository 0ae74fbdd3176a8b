"""One writer at a time across the processes of a PostgreSQL ledger (see WriterLock)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from ledger.store.database import Database


_HELD = threading.local()  # the writer locks this thread holds


class WriterLock:
    """One writer at a time across the processes of a PostgreSQL ledger.

    Appends are optimistic: a writer reads the state, checks the batch, and inserts; if
    another process inserted first, it starts again. With several processes writing all
    the time, one can lose every race (four writers lost twenty in a row in
    tests/test_concurrent_writers.py) and give up. A session advisory lock held from the
    read to the commit makes them take turns instead; PostgreSQL releases it if the
    process dies. It is taken on a connection borrowed from the ledger's own pool for
    the length of the append, so it costs no extra connection. SQLite needs none: its
    writers already queue on the file lock."""

    def __init__(self, database: Database) -> None:
        self._key = 0
        if database.is_postgres:
            schema = database.env()["POSTGRES_SCHEMA"]
            digest = hashlib.sha256(f"qledger-writer:{schema}".encode()).digest()
            self._key = int.from_bytes(digest[:8], "big", signed=True)

    @contextmanager
    def held(self, recorder: Any) -> Iterator[None]:
        held: set[int] = _HELD.__dict__.setdefault("keys", set())
        # A thread that holds it already (through another Ledger object on the same
        # database) goes on: waiting would be waiting for itself.
        if not self._key or self._key in held:
            yield
            return
        with recorder.datastore.get_connection() as conn:  # autocommit: no open transaction
            conn.execute("SELECT pg_advisory_lock(%s)", (self._key,))
            held.add(self._key)
            try:
                yield
            finally:
                held.discard(self._key)
                try:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
                except psycopg.Error:  # the session is gone, and its lock with it
                    pass
