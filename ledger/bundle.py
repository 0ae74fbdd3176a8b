"""Offline verification of an evidence bundle (DISPUTES.md), from the bundle's bytes alone.

Built only on the standalone log verifier (ledger.log.verify: C2SP checkpoints, RFC 9162
inclusion proofs), DSSE envelopes (ledger.envelope), statement parsing and the timeline
rule: no database, no network, nothing from the read side or the web.

The checks, in order:

1. The bytes are UTF-8 JSON (else UnreadableBundle) and exactly the bundle's canonical
   form, RFC 8785 JCS: with one byte form, a changed byte that leaves the values alone
   (white space, escapes, key order) is still a change, and is refused.
2. The members are exactly those of DISPUTES.md; bundle_version is 1.
3. The checkpoint is signed by `log_key` (and, if the caller pins one, `log_key` is it).
4. Every entry is well formed, listed once in index order, and its inclusion proof
   leads from SHA-256(0x00 || JCS(entry)) to the checkpoint's root. The leaf covers the
   envelope and `recorded_at`.
5. Entries 0 and 1 are the root regulator registering itself and its key, signed by
   that key: the anchor of the chain of trust.
6. Every signature of every entry verifies under a key registered by an earlier entry
   of the bundle, valid at the statement's `issued_at`, not revoked (by an earlier
   entry) at `issued_at` or `recorded_at`; one of them is a key of the statement's `by`.
7. Every registration was made by an authorised signer (EVENTS.md): organizations by
   a regulator; keys, and their revocations, by a regulator or the organization itself.
   With 6, every signature chains back to the root key of entry 1.
8. `signers` is exactly what the registrations say of every key that signs an entry.
9. `timeline` is exactly the one ledger.timeline derives from the entries.
10. `case`, when not null, is opened by a case.opened entry of the bundle;
    `generated_at` is a ledger timestamp not before the newest entry. Nothing can
    attest when a bundle was written, so this is the one value a changed byte may leave
    looking valid: read it as the exporter's claim.
11. `manifest` (ledger.log.manifest) is signed by the log key (the pinned one if given),
    is of the checkpoint's log at its tree size and root, is about this bundle's subject
    (the `case`; for a batch bundle, a batch whose batch.produced entry the bundle holds),
    and hashes exactly the indexes of the bundle's entries: an entry cut out or added
    fails, whoever rewrote the rest.

Every failure is one line; the verdict lists them all rather than stopping at the first.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ledger.canonical import canonical_bytes
from ledger.envelope import Envelope
from ledger.errors import LedgerError, Rejected, VerificationError
from ledger.keys import check_prime_order, encode_public_key
from ledger.log.hasher import leaf_hash
from ledger.log.manifest import Manifest, manifest_failures, verify_manifest
from ledger.log.verify import (
    MAX_TREE_SIZE,
    Checkpoint,
    inclusion_step,
    parse_verifier_key,
    verify_checkpoint,
    verify_inclusion,
)
from ledger.parallel import MIN_PARALLEL, ParallelVerifier, verify_all
from ledger.statement_types import StatementType as T
from ledger.statements import Statement, parse_statement
from ledger.timefmt import parse_time
from ledger.timeline import timeline

__all__ = ["BUNDLE_FIELDS", "UnreadableBundle", "Verdict", "verify_bundle"]

BUNDLE_FIELDS = frozenset({"bundle_version", "case", "generated_at", "log_key", "checkpoint",
                           "entries", "signers", "manifest", "timeline"})
_ITEM_FIELDS = frozenset({"index", "entry", "inclusion"})
_ENTRY_FIELDS = frozenset({"envelope", "recorded_at"})
_SIGNER_FIELDS = frozenset({"org", "public_key", "registered_by_entry"})
_HEX_HASH = re.compile("[0-9a-f]{64}")
PARALLEL_FROM = 1000  # signatures; below, starting worker processes costs more than it saves
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                            allow_nan=False)


class UnreadableBundle(LedgerError):
    """The input is not a bundle at all: not UTF-8, not JSON, or not a JSON object."""


@dataclass
class Verdict:
    """What the verifier found: no failures means every check passed."""

    entries: int = 0
    tree_size: int | None = None
    signatures: int = 0  # signatures verified, for the benchmark
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        return f"verified {self.entries} entries at tree size {self.tree_size}"


@dataclass(frozen=True, slots=True)
class _Key:
    keyid: str
    org: str
    public_key: bytes
    public_key_text: str
    valid_from: datetime | None
    entry: int


@dataclass(frozen=True, slots=True)
class _Entry:
    index: int
    envelope: Envelope
    statement: Statement
    recorded_at: datetime


def verify_bundle(data: bytes, *, log_key: str | None = None) -> Verdict:
    """Verify a bundle's bytes; with `log_key`, also that the bundle is of that ledger.

    Raises UnreadableBundle when `data` is not a JSON object; every other problem is a
    line in the verdict's failures.
    """
    bundle = _load(data)
    verifier = ParallelVerifier(0)
    if len(data) >= PARALLEL_FROM * 1500:  # bytes: each entry is about 2 KB
        # Workers take a second to start: started now, they are ready by the signatures.
        verifier = ParallelVerifier()
        verifier.start([(b"", b"", b"")] * MIN_PARALLEL)
    try:
        return _verify(bundle, data, log_key, verifier)
    finally:
        verifier.close()


def _verify(bundle: dict[str, Any], data: bytes, log_key: str | None,
            verifier: ParallelVerifier) -> Verdict:
    verdict = Verdict()
    fail = verdict.failures.append

    # 1-2. One byte form, the fields of DISPUTES.md.
    _check_canonical(bundle, data, fail)
    for name in sorted(BUNDLE_FIELDS - bundle.keys()):
        fail(f"the bundle lacks the field {name!r}")
    for name in sorted(bundle.keys() - BUNDLE_FIELDS):
        fail(f"the bundle has an unknown field {name!r}")
    version = bundle.get("bundle_version")
    if type(version) is not int or version != 1:
        fail(f"bundle_version is {version!r}; this verifier reads version 1")

    # 3. The checkpoint.
    checkpoint = _checkpoint(bundle, log_key, fail)
    verdict.tree_size = checkpoint.size if checkpoint else None

    # 4. The entries and their proofs.
    items = bundle.get("entries")
    if not isinstance(items, list) or not items:
        fail("entries must be a non-empty list")
        return verdict
    verdict.entries = len(items)
    entries = _entries(items, checkpoint and _Proofs(checkpoint), fail)

    # 5-7. The chain of trust and every signature.
    used = _signatures(entries, fail, verdict, verifier)

    # 8-10. What is derived from the entries must be exactly that.
    if len(entries) == len(items):
        _check_signers(bundle.get("signers"), used, fail)
        _check_timeline(bundle.get("timeline"), entries, fail)
    else:
        fail("signers and timeline not checked: not every entry could be read")
    _check_case(bundle.get("case"), entries, fail)
    _check_generated_at(bundle.get("generated_at"), entries, fail)

    # 11. The manifest: nothing cut out, nothing added.
    _check_manifest(bundle, log_key, checkpoint, items, entries, fail)
    return verdict


# ---- reading ------------------------------------------------------------------------------


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # Which duplicate wins differs between parsers: a bundle must mean one thing.
        raise UnreadableBundle("the bundle repeats a member name in an object")
    return obj


def _load(data: bytes) -> dict[str, Any]:
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


def _check_canonical(bundle: dict[str, Any], data: bytes, fail: Any) -> None:
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


def _checkpoint(bundle: dict[str, Any], pinned: str | None, fail: Any) -> Checkpoint | None:
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


def _entries(items: list[Any], proofs: _Proofs | None, fail: Any) -> list[_Entry]:
    out: list[_Entry] = []
    previous = -1
    for position, item in enumerate(items):
        where = f"entries[{position}]"
        if not isinstance(item, dict) or item.keys() != _ITEM_FIELDS:
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
        if not isinstance(entry, dict) or entry.keys() != _ENTRY_FIELDS:
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
        out.append(_Entry(index, envelope, statement, recorded_at))
    return out


def _check_inclusion(where: str, index: int, entry: dict[str, Any], inclusion: Any,
                     proofs: _Proofs, fail: Any) -> None:
    if not isinstance(inclusion, list) or not all(
        isinstance(h, str) and _HEX_HASH.fullmatch(h) for h in inclusion
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


class _Proofs:
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
    return _ENCODER.encode(entry).encode("utf-8")


# ---- the chain of trust -------------------------------------------------------------------


def _signatures(entries: list[_Entry], fail: Any, verdict: Verdict,
                verifier: ParallelVerifier) -> dict[str, _Key]:
    """Steps 5-7; returns the registration of every key that signs an entry."""
    by_index = {e.index: e for e in entries}
    registered_at = {}  # keyid -> index of its registration anywhere in the bundle
    for e in entries:
        if e.statement.type == T.KEY_REGISTERED:
            registered_at.setdefault(_keyid(e.statement), e.index)
    keys: dict[str, _Key] = {}
    orgs: dict[str, list[str]] = {}  # USCC -> roles
    revocations: dict[str, list[tuple[int, datetime]]] = {}
    used: dict[str, _Key] = {}

    root = _genesis(by_index, fail)
    if root is not None:
        keys[root.keyid] = root  # signs entries 0 and 1, which register it
    checked = _checked_signatures(entries, by_index, registered_at, verifier)

    for e in entries:
        s = e.statement
        where = f"entry {e.index}"
        own = False
        for signature in e.envelope.signatures:
            key = keys.get(signature.keyid)
            if key is None:
                later = registered_at.get(signature.keyid)
                fail(f"{where}: signed by key {signature.keyid}, " + (
                    f"which entry {later} registers only after it signed" if later is not None
                    else "which no entry of the bundle registers"))
                continue
            if not checked.get((e.index, key.keyid), False):
                try:  # the key or signature is bad: the envelope says how
                    e.envelope.verify(key.keyid, key.public_key)
                except Rejected as error:
                    fail(f"{where}: {error.detail}")
                    continue
            verdict.signatures += 1
            used[key.keyid] = key
            _check_active(where, key, e, revocations, fail)
            own = own or key.org == s.by
        if not own:
            fail(f"{where}: no valid signature by a key of {s.by}, who signs it (`by`)")
        _register(e, keys, orgs, revocations, fail)
    return used


def _checked_signatures(entries: list[_Entry], by_index: dict[int, _Entry],
                        registered_at: dict[str, int],
                        verifier: ParallelVerifier) -> dict[tuple[int, str], bool]:
    """Every signature by a key some entry registers, checked ahead of the chain of trust,
    on all cores for a large bundle: (entry index, keyid) -> whether it verifies under
    that key. Whether the key may sign there is the chain walk's to decide; a key id is
    the SHA-256 of its public key, so the key is the same whichever entry registers it."""
    public = {k: by_index[i].statement.body["public_key"] for k, i in registered_at.items()}
    jobs: list[tuple[bytes, bytes, bytes]] = []
    owners: list[tuple[int, str]] = []
    for e in entries:
        message = e.envelope.message()
        for signature in e.envelope.signatures:
            key = public.get(signature.keyid)
            if key is not None:
                jobs.append((key, signature.sig, message))
                owners.append((e.index, signature.keyid))
    # The workers take their share; this process checks the rest meanwhile.
    share = len(jobs) * verifier.workers // (verifier.workers + 1)
    futures = verifier.start(jobs[:share]) if share >= MIN_PARALLEL else []
    own = verify_all(jobs[share:] if futures else jobs)
    try:
        results = [ok for future in futures for ok in future.result()]
    except (BrokenProcessPool, OSError):  # a worker died: check its share here
        results = verify_all(jobs[:share])
    if not futures:
        return dict(zip(owners, own, strict=True))
    results += own
    return dict(zip(owners, results, strict=True))


def _genesis(by_index: dict[int, _Entry], fail: Any) -> _Key | None:
    """Entries 0 and 1: the root regulator and its key, the anchor of every chain."""
    first, second = by_index.get(0), by_index.get(1)
    if first is None or second is None:
        fail("the bundle lacks entries 0 and 1, the root regulator's registrations "
             "every chain of trust starts from")
        return None
    a, b = first.statement, second.statement
    if not (a.type == T.ORG_REGISTERED and a.by == a.body["uscc"]
            and "regulator" in a.body["roles"]):
        fail("entry 0 is not the root regulator registering itself")
        return None
    if not (b.type == T.KEY_REGISTERED and b.by == b.body["org"] == a.by):
        fail("entry 1 is not the root regulator registering its key")
        return None
    return _key_of(second)


def _keyid(s: Statement) -> str:
    return hashlib.sha256(s.body["public_key"]).hexdigest()  # parsed: the raw 32 bytes


def _key_of(e: _Entry) -> _Key:
    body = e.statement.body
    raw = body["public_key"]
    return _Key(hashlib.sha256(raw).hexdigest(), body["org"], raw, encode_public_key(raw),
                body.get("valid_from"), e.index)


def _check_active(where: str, key: _Key, e: _Entry,
                  revocations: dict[str, list[tuple[int, datetime]]], fail: Any) -> None:
    issued = e.statement.issued_at
    if key.valid_from is not None and issued < key.valid_from:
        fail(f"{where}: issued at {issued.isoformat()}, before key {key.keyid} is valid "
             f"({key.valid_from.isoformat()})")
    for revoked_entry, revoked_at in revocations.get(key.keyid, []):
        if issued >= revoked_at or e.recorded_at >= revoked_at:
            fail(f"{where}: key {key.keyid} was revoked at {revoked_at.isoformat()} "
                 f"(entry {revoked_entry}) before this statement was issued or recorded")


def _register(e: _Entry, keys: dict[str, _Key], orgs: dict[str, list[str]],
              revocations: dict[str, list[tuple[int, datetime]]], fail: Any) -> None:
    """Step 7, and the registry update for a registration entry. Authority runs down
    from the root (EVENTS.md "Roles"): only the root registers regulators and manages
    their keys (each regulator its own too), and only the root its own keys."""
    s, where = e.statement, f"entry {e.index}"
    regulator = "regulator" in orgs.get(s.by, [])
    root = e.index <= 1 or s.by == _root_of(orgs)
    if s.type == T.ORG_REGISTERED:
        if e.index != 0 and not regulator:
            fail(f"{where}: {s.by} registers an organization but is not a registered regulator")
            return
        if "regulator" in s.body["roles"] and not root:
            fail(f"{where}: {s.by} registers {s.body['uscc']} as a regulator, which only the "
                 "root regulator may")
            return
        orgs.setdefault(s.body["uscc"], list(s.body["roles"]))
    elif s.type in (T.KEY_REGISTERED, T.KEY_REVOKED):
        org = s.body["org"]
        doing = "registers a key for" if s.type == T.KEY_REGISTERED else "revokes a key of"
        if org not in orgs:
            fail(f"{where}: {doing} {org}, which no earlier entry of the bundle registers")
            return
        problem = _authority(s.by, org, orgs, regulator=regulator, root=root)
        if problem:
            fail(f"{where}: {s.by} {doing} {org}, but {problem}")
            return
        if s.type == T.KEY_REVOKED:
            revocations.setdefault(s.body["keyid"], []).append((e.index, s.body["revoked_at"]))
            return
        try:
            check_prime_order(s.body["public_key"])
        except Rejected as error:
            fail(f"{where}: {error.detail}")
            return
        keys.setdefault(_keyid(s), _key_of(e))


def _root_of(orgs: dict[str, list[str]]) -> str | None:
    # The first organization registered is the root (entry 0); dicts keep that order.
    return next(iter(orgs), None)


def _authority(by: str, org: str, orgs: dict[str, list[str]], *, regulator: bool,
               root: bool) -> str | None:
    """Why `by` may not manage the keys of `org`, or None when it may."""
    if by == org:
        return None
    if org == _root_of(orgs):
        return "only the root regulator manages its own keys"
    if "regulator" in orgs[org]:
        return None if root else "only the root regulator manages another regulator's keys"
    return None if regulator else "it is neither a regulator nor that organization"


# ---- the manifest --------------------------------------------------------------------------


def _check_manifest(bundle: dict[str, Any], pinned: str | None, checkpoint: Checkpoint | None,
                    items: list[Any], entries: Sequence[_Entry], fail: Any) -> None:
    """Step 11. A missing manifest is already a missing field (step 2)."""
    if "manifest" not in bundle:
        return
    note = bundle["manifest"]
    if not isinstance(note, str):
        fail("manifest must be a string")
        return
    key = pinned if pinned is not None else bundle.get("log_key")
    if not isinstance(key, str):
        return  # step 3 said so
    try:
        manifest = verify_manifest(note, parse_verifier_key(key))
    except VerificationError as e:
        fail(f"manifest: {e}")
        return
    if "case" in bundle:  # else step 2 said so
        _check_subject(manifest, bundle["case"], entries, fail)
    # Every listed index counts, well-formed entry or not: the hashed set is the list's.
    indexes = [i["index"] for i in items if isinstance(i, dict) and type(i.get("index")) is int
               and 0 <= i["index"] <= MAX_TREE_SIZE]
    for line in manifest_failures(manifest, checkpoint, indexes):
        fail(line)


def _check_subject(manifest: Manifest, case: Any, entries: Sequence[_Entry], fail: Any) -> None:
    """A case bundle's manifest names its `case`; a batch bundle's (case null) a batch the
    bundle records the production of. Other kinds (an org's credit report) are not bundles
    of this form."""
    said = manifest.subject_line
    if isinstance(case, str):
        if (manifest.kind, manifest.subject) != ("case", (case,)):
            fail(f"manifest: it is about {said}, the bundle about case {case!r}")
    elif case is None:
        if manifest.kind != "batch":
            fail(f"manifest: it is about {said}, the bundle (case null) about a batch")
        elif not any(e.statement.type == T.BATCH_PRODUCED
                     and (e.statement.body["gtin"], e.statement.body["lot"]) == manifest.subject
                     for e in entries):
            fail(f"manifest: it is about {said}, whose {T.BATCH_PRODUCED} entry the bundle lacks")


# ---- what is derived ----------------------------------------------------------------------


def _check_signers(signers: Any, used: dict[str, _Key], fail: Any) -> None:
    if not isinstance(signers, dict):
        fail("signers must be an object")
        return
    expected = {k: {"org": key.org, "public_key": key.public_key_text,
                    "registered_by_entry": key.entry} for k, key in used.items()}
    for keyid in sorted(expected.keys() - signers.keys()):
        fail(f"signers lacks key {keyid}, which signs entries of the bundle")
    for keyid in sorted(signers.keys() - expected.keys()):
        fail(f"signers lists key {keyid}, which signs no entry of the bundle")
    for keyid in sorted(expected.keys() & signers.keys()):
        given = signers[keyid]
        if not isinstance(given, dict) or given.keys() != _SIGNER_FIELDS:
            fail(f"signers[{keyid}] must hold exactly org, public_key and registered_by_entry")
        elif given != expected[keyid] or type(given["registered_by_entry"]) is not int:
            fail(f"signers[{keyid}] does not match its registration at entry "
                 f"{expected[keyid]['registered_by_entry']}")


def _check_timeline(given: Any, entries: Sequence[_Entry], fail: Any) -> None:
    expected = timeline((e.index, e.envelope.statement) for e in entries)
    if not isinstance(given, list):
        fail("timeline must be a list")
        return
    if len(given) != len(expected):
        fail(f"timeline has {len(given)} lines for {len(expected)} entries")
        return
    for position, (line, want) in enumerate(zip(given, expected, strict=True)):
        if line != want or not isinstance(line.get("index"), int) or isinstance(
                line.get("index"), bool):
            fail(f"timeline[{position}] is not what entry {want['index']} says: "
                 f"expected {want}")
            return


def _check_case(case: Any, entries: Sequence[_Entry], fail: Any) -> None:
    if case is None:
        return
    if not isinstance(case, str):
        fail("case must be a string or null")
        return
    if not any(e.statement.type == T.CASE_OPENED and e.statement.body["case"] == case
               for e in entries):
        fail(f"no entry of the bundle opens case {case!r}")


def _check_generated_at(value: Any, entries: Sequence[_Entry], fail: Any) -> None:
    try:
        at = parse_time(value) if isinstance(value, str) else None
    except Rejected:
        at = None
    if at is None:
        fail(f"generated_at {value!r} is not an RFC 3339 UTC time")
        return
    newest = max((e.recorded_at for e in entries), default=None)
    if newest is not None and at < newest:
        fail(f"generated_at {value} is before the newest entry's recorded_at")
