"""Storage: the eventsourcing library's SQLite and PostgreSQL recorders, plus the Merkle nodes.

Split as the library splits its persistence, one module per idea:

- `database`: where a ledger lives (QLEDGER_DB) and the library's settings to open it;
- `recorder`: what both recorders share, the rows and types the rest of the code reads;
- `sqlite` and `postgres`: the two recorders, each database's SQL for the same reads;
- `postgres_connections`: how PostgreSQL connections are made and how long they wait;
- `writer_lock`: one writer at a time across processes (PostgreSQL);
- `timeouts`: QLEDGER_STORAGE_TIMEOUT and QLEDGER_LOCK_TIMEOUT.

The names other modules use are re-exported here: `from ledger.store import Database`.
"""

from ledger.store.database import DEFAULT_DB, Database
from ledger.store.postgres import PostgresLedgerRecorder
from ledger.store.postgres_connections import (BoundedConnection, BoundedPostgresFactory,
                                               ServerSilent)
from ledger.store.recorder import Coord, NewNode, Recorded, StatementRow, TreeNodesMissing
from ledger.store.sqlite import SQLiteLedgerRecorder
from ledger.store.timeouts import DEFAULT_LOCK_TIMEOUT, DEFAULT_STORAGE_TIMEOUT, storage_timeout
from ledger.store.writer_lock import WriterLock

__all__ = [
    "DEFAULT_DB",
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_STORAGE_TIMEOUT",
    "BoundedConnection",
    "BoundedPostgresFactory",
    "Coord",
    "Database",
    "NewNode",
    "PostgresLedgerRecorder",
    "Recorded",
    "SQLiteLedgerRecorder",
    "ServerSilent",
    "StatementRow",
    "TreeNodesMissing",
    "WriterLock",
    "storage_timeout",
]
