"""Aggregate ids derived from the identifiers of EVENTS.md, so a lookup needs no index."""

from __future__ import annotations

from functools import lru_cache
from uuid import UUID, uuid5

NAMESPACE = UUID("6d1f0b2e-5a0c-4a51-9c3e-7b1f2a4c8d90")

LOG_ID = uuid5(NAMESPACE, "log")
LEDGER_ID = uuid5(NAMESPACE, "ledger")


@lru_cache(maxsize=1 << 16)  # organizations and keys recur in every batch
def named(kind: str, *parts: str) -> UUID:
    # The group separator cannot occur in any identifier, so ids never collide
    # across kinds or part boundaries.
    return uuid5(NAMESPACE, "\x1d".join((kind, *parts)))
