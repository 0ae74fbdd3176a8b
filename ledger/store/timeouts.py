"""How long the ledger waits for its database: QLEDGER_STORAGE_TIMEOUT and QLEDGER_LOCK_TIMEOUT.

Both databases read them (SQLite's lock wait, PostgreSQL's connections and locks), and so
does the health check, which answers within the storage timeout whatever the driver does.
"""

from __future__ import annotations

import os

# How long any one wait for the database may last, in seconds (QLEDGER_STORAGE_TIMEOUT):
# a connection, a connection from the pool, an answer on a connection whose server went
# away. An outage then answers "storage unavailable" in seconds, not in minutes.
DEFAULT_STORAGE_TIMEOUT = 5
# How long a writer waits for another's lock (QLEDGER_LOCK_TIMEOUT): writers queue behind
# a long batch on purpose, so longer than a wait for a server that does not answer.
DEFAULT_LOCK_TIMEOUT = 30


def _seconds(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() and int(value) > 0 else default


def storage_timeout() -> int:
    return _seconds("QLEDGER_STORAGE_TIMEOUT", DEFAULT_STORAGE_TIMEOUT)


def lock_timeout() -> int:
    return _seconds("QLEDGER_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT)
