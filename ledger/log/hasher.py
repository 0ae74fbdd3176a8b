"""RFC 9162 §2.1.1 Merkle Tree Hash primitives: SHA-256 with a 0x00 leaf and a 0x01 node prefix."""

from __future__ import annotations

import hashlib

HASH_SIZE = 32
"""Width in bytes of every leaf, node and root hash (SHA-256)."""

EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256(), the root of the empty tree."""

# The two prefixes keep a leaf hash from ever equalling a node hash (second-preimage resistance).
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d) for one entry's bytes `d` (any length, including empty)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right) for the hashes of two adjacent subtrees.

    Precondition: `left` and `right` are HASH_SIZE bytes each (ValueError otherwise); without it
    two different pairs could concatenate to the same input.
    """
    if len(left) != HASH_SIZE or len(right) != HASH_SIZE:
        raise ValueError(
            f"node_hash needs two {HASH_SIZE}-byte hashes, got {len(left)} and {len(right)} bytes"
        )
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()
