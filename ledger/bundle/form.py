"""Checks 1-4 of ledger/bundle: the bytes are the bundle's canonical JSON, the checkpoint
is signed by the log key, and every entry is well formed, once, in order, and included
under the checkpoint's root.
"""

from __future__ import annotations

import json
from typing import Any

from ledger.bundle.model import (
    ENCODER,
    ENTRY_FIELDS,
    HEX_HASH,
    ITEM_FIELDS,
    BundleEntry,
    UnreadableBundle,
)
from ledger.canonical import canonical_bytes
from ledger.envelope import Envelope
from ledger.errors import LedgerError, Rejected, VerificationError
from ledger.log.hasher import leaf_hash
from ledger.log.verify import (
    Checkpoint,
    inclusion_step,
    parse_verifier_key,
    verify_checkpoint,
    verify_inclusion,
)
from ledger.statements import parse_statement
from ledger.timefmt import parse_time


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # Which duplicate wins differs between parsers: a bundle must mean one thing.
        raise UnreadableBundle("the bundle repeats a member name in an object")
    return obj


def load(data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UnreadableBundle(
            f"the bundle is not UTF-8: invalid byte at offset {e.start}") from None
    try:
        bundle = json.loads(text, object_pairs_hook=_object)
    except json.JSONDecodeError as e:
        raise UnreadableBundle(
            f"the bundle is not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise UnreadableBundle("the bundle nests too deeply") from None
    if not isinstance(bundle, dict):
        raise UnreadableBundle("the bundle is not a JSON object")
    return bundle


def check_canonical(bundle: dict[str, Any], data: bytes, fail: Any) -> None:
    try:
        canonical = canonical_bytes(bundle)
    except (LedgerError, ValueError, TypeError) as e:
        fail(f"the bundle has no canonical form (RFC 8785): {e}")
        return
    if canonical != data:
        at = next((i for i, (a, b) in enumerate(zip(canonical, data)) if a != b),
                  min(len(canonical), len(data)))
        fail(f"the bundle is not in its canonical byte form (RFC 8785 JCS): "
             f"it departs from it at byte {at}")


def check_checkpoint(bundle: dict[str, Any], pinned: str | None, fail: Any) -> Checkpoint | None:
    key, note = bundle.get("log_key"), bundle.get("checkpoint")
    if not isinstance(key, str) or not isinstance(note, str):
        fail("log_key and checkpoint must be strings")
        return None
    if pinned is not None and key != pinned:
        fail(f"the bundle's log key {key!r} is not the expected {pinned!r}")
    try:
        return verify_checkpoint(note, parse_verifier_key(key))
    except VerificationError as e:
        fail(f"checkpoint: {e}")
        return None


def read_entries(items: list[Any], proofs: Proofs | None, fail: Any) -> list[BundleEntry]:
    out: list[BundleEntry] = []
    previous = -1
    for position, item in enumerate(items):
        where = f"entries[{position}]"
        if not isinstance(item, dict) or item.keys() != ITEM_FIELDS:
            fail(f"{where} must be an object with exactly index, entry and inclusion")
            continue
        index, entry, inclusion = item["index"], item["entry"], item["inclusion"]
        if type(index) is not int or index < 0:
            fail(f"{where}.index must be a non-negative integer")
            continue
        where = f"entry {index}"
        if index <= previous:
            fail(f"{where} is out of order or repeated (after entry {previous})")
        previous = max(previous, index)
        if not isinstance(entry, dict) or entry.keys() != ENTRY_FIELDS:
            fail(f"{where} must be an object with exactly envelope and recorded_at")
            continue
        if proofs is not None:
            _check_inclusion(where, index, entry, inclusion, proofs, fail)
        recorded = entry["recorded_at"]
        try:
            envelope = Envelope.from_json(entry["envelope"])
            statement = parse_statement(envelope.statement)
            recorded_at = parse_time(recorded) if isinstance(recorded, str) else None
        except Rejected as e:
            fail(f"{where}: {e.detail}")
            continue
        if recorded_at is None:
            fail(f"{where}: recorded_at must be an RFC 3339 UTC time")
            continue
        out.append(BundleEntry(index, envelope, statement, recorded_at))
    return out


def _check_inclusion(where: str, index: int, entry: dict[str, Any], inclusion: Any,
                     proofs: Proofs, fail: Any) -> None:
    if not isinstance(inclusion, list) or not all(
        isinstance(h, str) and HEX_HASH.fullmatch(h) for h in inclusion
    ):
        fail(f"{where}: inclusion must be a list of 64-digit lowercase hex hashes")
        return
    leaf = leaf_hash(_entry_bytes(entry))
    proof = [bytes.fromhex(h) for h in inclusion]
    if proofs.proven(index, leaf, proof):
        return
    checkpoint = proofs.checkpoint
    try:  # the standalone verifier, for the exact reason
        verify_inclusion(index, checkpoint.size, leaf, proof, checkpoint.root_hash)
    except (LedgerError, ValueError, TypeError) as e:
        fail(f"{where}: not proven in the checkpoint's tree of {checkpoint.size}: {e}")


class Proofs:
    """RFC 9162 inclusion proofs of many leaves of one tree, each shared node hashed once.

    The entries of a bundle share the upper nodes of their paths: walked one by one, ten
    thousand proofs in a tree of a million hash the same nodes again and again. A walk is
    a state (fn, sn, hash) and the proof hashes still to use, and what follows depends on
    nothing else; so once a walk from a state reached the root, another walk reaching that
    state with the same remaining hashes (compared, byte for byte) reaches it too. Every
    hash of every proof is thus hashed or compared: a changed byte still fails. Whatever
    this does not prove goes to ledger.log.verify, the reference, for its verdict.
    (The walk is the log verifier's own step, ledger.log.verify.inclusion_step; only the
    sharing is added here: the log verifier checks one proof at a time, by design.)
    """

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        self._reached: dict[tuple[int, int, bytes], list[bytes]] = {}

    def proven(self, index: int, leaf: bytes, proof: list[bytes]) -> bool:
        size = self.checkpoint.size
        if not 0 <= index < size:
            return False
        reached = self._reached
        walked: list[tuple[tuple[int, int, bytes], int]] = []
        fn, sn, r = index, size - 1, leaf
        for k, p in enumerate(proof):
            state = (fn, sn, r)
            known = reached.get(state)
            if known is not None and known == proof[k:]:
                break
            walked.append((state, k))
            if sn == 0:
                return False
            fn, sn, r = inclusion_step(fn, sn, r, p)
        else:
            if sn != 0 or r != self.checkpoint.root_hash:
                return False
        for state, k in walked:
            reached.setdefault(state, proof[k:])
        return True


def _entry_bytes(entry: dict[str, Any]) -> bytes:
    """JCS of an entry, by Python's encoder with JCS's settings (ledger.canonical's fast path)
    and no second check: where the two could differ (floats, exotic keys) the entry is not
    one the ledger records, so its proof fails either way. Ten thousand checks saved."""
    return ENCODER.encode(entry).encode("utf-8")
