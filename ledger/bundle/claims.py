"""Checks 8-11 of ledger/bundle: what the bundle says about its entries (signers,
timeline, case, generated_at) is what they say, and its signed manifest is of exactly
these entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger.bundle.model import SIGNER_FIELDS, BundleEntry, SigningKey
from ledger.errors import Rejected, VerificationError
from ledger.log.manifest import Manifest, manifest_failures, verify_manifest
from ledger.log.verify import (
    MAX_TREE_SIZE,
    Checkpoint,
    parse_verifier_key,
)
from ledger.statement_types import StatementType as T
from ledger.timefmt import parse_time
from ledger.timeline import timeline


def check_manifest(bundle: dict[str, Any], pinned: str | None, checkpoint: Checkpoint | None,
                   items: list[Any], entries: Sequence[BundleEntry], fail: Any) -> None:
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


def _check_subject(manifest: Manifest, case: Any, entries: Sequence[BundleEntry],
                   fail: Any) -> None:
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


def check_signers(signers: Any, used: dict[str, SigningKey], fail: Any) -> None:
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
        if not isinstance(given, dict) or given.keys() != SIGNER_FIELDS:
            fail(f"signers[{keyid}] must hold exactly org, public_key and registered_by_entry")
        elif given != expected[keyid] or type(given["registered_by_entry"]) is not int:
            fail(f"signers[{keyid}] does not match its registration at entry "
                 f"{expected[keyid]['registered_by_entry']}")


def check_timeline(given: Any, entries: Sequence[BundleEntry], fail: Any) -> None:
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


def check_case(case: Any, entries: Sequence[BundleEntry], fail: Any) -> None:
    if case is None:
        return
    if not isinstance(case, str):
        fail("case must be a string or null")
        return
    if not any(e.statement.type == T.CASE_OPENED and e.statement.body["case"] == case
               for e in entries):
        fail(f"no entry of the bundle opens case {case!r}")


def check_generated_at(value: Any, entries: Sequence[BundleEntry], fail: Any) -> None:
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
