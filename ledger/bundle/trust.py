"""Checks 5-7 of ledger/bundle: the chain of trust. Entries 0 and 1 anchor it; every
signature verifies under a key registered earlier in the bundle, active when used, and
every registration was made by a signer with the authority to make it.
"""

from __future__ import annotations

import hashlib
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from typing import Any

from ledger.bundle.model import BundleEntry, SigningKey, Verdict
from ledger.errors import Rejected
from ledger.keys import check_prime_order, encode_public_key
from ledger.parallel import MIN_PARALLEL, ParallelVerifier, verify_all
from ledger.statement_types import StatementType as T
from ledger.statements import Statement

PARALLEL_FROM = 1000  # signatures; below, starting worker processes costs more than it saves


def check_signatures(entries: list[BundleEntry], fail: Any, verdict: Verdict,
                     verifier: ParallelVerifier) -> dict[str, SigningKey]:
    """Steps 5-7; returns the registration of every key that signs an entry."""
    by_index = {e.index: e for e in entries}
    registered_at = {}  # keyid -> index of its registration anywhere in the bundle
    for e in entries:
        if e.statement.type == T.KEY_REGISTERED:
            registered_at.setdefault(_keyid(e.statement), e.index)
    keys: dict[str, SigningKey] = {}
    orgs: dict[str, list[str]] = {}  # USCC -> roles
    revocations: dict[str, list[tuple[int, datetime]]] = {}
    used: dict[str, SigningKey] = {}

    root = genesis_key(by_index, fail)
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


def _checked_signatures(entries: list[BundleEntry], by_index: dict[int, BundleEntry],
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


def genesis_key(by_index: dict[int, BundleEntry], fail: Any) -> SigningKey | None:
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


def _key_of(e: BundleEntry) -> SigningKey:
    body = e.statement.body
    raw = body["public_key"]
    return SigningKey(hashlib.sha256(raw).hexdigest(), body["org"], raw, encode_public_key(raw),
                body.get("valid_from"), e.index)


def _check_active(where: str, key: SigningKey, e: BundleEntry,
                  revocations: dict[str, list[tuple[int, datetime]]], fail: Any) -> None:
    issued = e.statement.issued_at
    if key.valid_from is not None and issued < key.valid_from:
        fail(f"{where}: issued at {issued.isoformat()}, before key {key.keyid} is valid "
             f"({key.valid_from.isoformat()})")
    for revoked_entry, revoked_at in revocations.get(key.keyid, []):
        if issued >= revoked_at or e.recorded_at >= revoked_at:
            fail(f"{where}: key {key.keyid} was revoked at {revoked_at.isoformat()} "
                 f"(entry {revoked_entry}) before this statement was issued or recorded")


def _register(e: BundleEntry, keys: dict[str, SigningKey], orgs: dict[str, list[str]],
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
