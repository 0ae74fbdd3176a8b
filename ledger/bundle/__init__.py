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

The package: `model` (what a bundle holds, the verdict), `form` (checks 1-4), `trust`
(5-7) and `claims` (8-11); `verify_bundle` runs them in that order.
"""

from __future__ import annotations

from typing import Any

from ledger.bundle.claims import (
    check_case,
    check_generated_at,
    check_manifest,
    check_signers,
    check_timeline,
)
from ledger.bundle.form import Proofs, check_canonical, check_checkpoint, load, read_entries
from ledger.bundle.model import BUNDLE_FIELDS, UnreadableBundle, Verdict
from ledger.bundle.trust import PARALLEL_FROM, check_signatures
from ledger.parallel import MIN_PARALLEL, ParallelVerifier

__all__ = ["BUNDLE_FIELDS", "UnreadableBundle", "Verdict", "verify_bundle"]


def verify_bundle(data: bytes, *, log_key: str | None = None) -> Verdict:
    """Verify a bundle's bytes; with `log_key`, also that the bundle is of that ledger.

    Raises UnreadableBundle when `data` is not a JSON object; every other problem is a
    line in the verdict's failures.
    """
    bundle = load(data)
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
    check_canonical(bundle, data, fail)
    for name in sorted(BUNDLE_FIELDS - bundle.keys()):
        fail(f"the bundle lacks the field {name!r}")
    for name in sorted(bundle.keys() - BUNDLE_FIELDS):
        fail(f"the bundle has an unknown field {name!r}")
    version = bundle.get("bundle_version")
    if type(version) is not int or version != 1:
        fail(f"bundle_version is {version!r}; this verifier reads version 1")

    # 3. The checkpoint.
    checkpoint = check_checkpoint(bundle, log_key, fail)
    verdict.tree_size = checkpoint.size if checkpoint else None

    # 4. The entries and their proofs.
    items = bundle.get("entries")
    if not isinstance(items, list) or not items:
        fail("entries must be a non-empty list")
        return verdict
    verdict.entries = len(items)
    entries = read_entries(items, checkpoint and Proofs(checkpoint), fail)

    # 5-7. The chain of trust and every signature.
    used = check_signatures(entries, fail, verdict, verifier)

    # 8-10. What is derived from the entries must be exactly that.
    if len(entries) == len(items):
        check_signers(bundle.get("signers"), used, fail)
        check_timeline(bundle.get("timeline"), entries, fail)
    else:
        fail("signers and timeline not checked: not every entry could be read")
    check_case(bundle.get("case"), entries, fail)
    check_generated_at(bundle.get("generated_at"), entries, fail)

    # 11. The manifest: nothing cut out, nothing added.
    check_manifest(bundle, log_key, checkpoint, items, entries, fail)
    return verdict
