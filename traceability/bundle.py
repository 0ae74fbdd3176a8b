"""Evidence bundles (DISPUTES.md): the entries that touch a case, with proof, in one document.

The bundle is written in its canonical form (RFC 8785 JCS, no trailing newline) and
only in it, so that a changed byte anywhere is a change the offline verifier
(ledger.bundle) sees: a value it checks, or a departure from the one byte form.

Every inclusion proof is against the latest checkpoint, read after the selection, so
its tree covers every selected entry. `generated_at` is the ledger clock's time of
writing: it is the one field nothing attests (the verifier checks only that it is a
ledger timestamp not before the newest entry). A bundle about one batch, not a case,
has `"case": null`; its manifest names the batch.

The manifest (DISPUTES.md, ledger.log.manifest) is the ledger's signed claim of what it
selected: the subject, the checkpoint's tree head and the hash of the selected indexes,
signed with the log key. Without it, a bundle with an entry cut out would still verify.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.log.entry_format import format_recorded_at
from ledger.canonical import canonical_bytes
from ledger.errors import StorageError
from ledger.log.manifest import Manifest, sign_manifest
from ledger.log.verify import Checkpoint, verify_checkpoint
from ledger.timeline import timeline
from traceability.evidence import KEYID_PATTERN as _KEYID
from traceability.export_cache import ExportRefused
from traceability.evidence import Selection, batch_selection, case_selection
from traceability.trace import batch_key
from traceability.views import Views

BUNDLE_VERSION = 1
_PAYLOAD = re.compile(r'"payload":"([A-Za-z0-9+/=]*)"')


@dataclass(frozen=True, slots=True)
class Bundle:
    """A bundle ready to write; `entries` keeps each entry's stored JCS text as is."""

    case: str | None
    generated_at: str
    log_key: str
    checkpoint: str
    tree_size: int
    entries: list[tuple[int, str, list[bytes]]]  # (index, entry text, inclusion proof)
    signers: dict[str, dict[str, Any]]
    timeline: list[dict[str, Any]]
    manifest: str  # the signed note naming the subject and the selected indexes

    def to_bytes(self) -> bytes:
        """The bundle's one byte form: JCS, members in JCS order, entries spliced in as stored
        (they are JCS already, and re-encoding ten thousand of them would be wasted work)."""
        entries = b",".join(
            b'{"entry":' + text.encode("ascii") + b',"inclusion":[' + _hashes(proof)
            + b'],"index":' + str(index).encode() + b"}"
            for index, text, proof in self.entries
        )
        members = [  # in JCS order: sorted by name
            (b"bundle_version", canonical_bytes(BUNDLE_VERSION)),
            (b"case", canonical_bytes(self.case)),
            (b"checkpoint", canonical_bytes(self.checkpoint)),
            (b"entries", b"[" + entries + b"]"),
            (b"generated_at", canonical_bytes(self.generated_at)),
            (b"log_key", canonical_bytes(self.log_key)),
            (b"manifest", canonical_bytes(self.manifest)),
            (b"signers", canonical_bytes(self.signers)),
            (b"timeline", canonical_bytes(self.timeline)),
        ]
        return b"{" + b",".join(b'"' + name + b'":' + value for name, value in members) + b"}"


def _hashes(proof: list[bytes]) -> bytes:
    """A proof's hashes as JSON strings of lowercase hex (nothing to escape), comma-separated:
    one hex() call for the whole proof, a comma after every 32 bytes."""
    if not proof:
        return b""
    return b'"' + b"".join(proof).hex(",", 32).encode().replace(b",", b'","') + b'"'


def case_bundle(views: Views, case_id: str, max_entries: int | None = None,
                selection: Selection | None = None) -> Bundle:
    """The bundle of case `case_id`: of `selection`, when the caller has already selected
    the case's entries (the export cache keys the bundle on that selection), else of a
    selection made now. Raises NotFound for a case never opened, StorageError without
    the log signing key (the manifest is signed per bundle), and ExportRefused when it
    would hold more than `max_entries` entries (checked on the selection, before any
    proof is built: the proofs and their text are the cost)."""
    if selection is None:
        selection = case_selection(views, case_id)
    if max_entries is not None and len(selection.indexes) > max_entries:
        raise ExportRefused(
            f"the bundle of case {case_id} would hold {len(selection.indexes)} entries; "
            f"this server publishes bundles of at most {max_entries} (its operator can write "
            "larger ones with `qledger bundle --case`)")
    return _bundle(views, case_id, ("case", (case_id,)), selection)


def batch_bundle(views: Views, gtin: str, lot: str) -> Bundle:
    """The bundle of one batch (`case` null). Raises InvalidRequest, NotFound, StorageError."""
    selection = batch_selection(views, gtin, lot)
    return _bundle(views, None, ("batch", batch_key(gtin, lot)), selection)


def serialize(bundle: Bundle) -> bytes:
    return bundle.to_bytes()


def _bundle(views: Views, case: str | None, subject: tuple[str, tuple[str, ...]],
            selection: Selection) -> Bundle:
    ledger = views.ledger
    signing_key = ledger.log_key()  # asked first: without it there is no manifest, no bundle
    log_key = ledger.config.log_key
    checkpoint = ledger.checkpoint()
    head = verify_checkpoint(checkpoint, log_key)
    size = head.size
    proofs = ledger.inclusion_proofs(selection.indexes, size)
    statements = [(i, _statement(selection.entries[i].text)) for i in selection.indexes]
    signing = {k for e in selection.entries.values() for k in _KEYID.findall(e.text)}
    signers = {
        k: {"org": h.org, "public_key": h.public_key, "registered_by_entry": h.registered_entry}
        for k, h in sorted(selection.keys.items()) if k in signing
    }
    return Bundle(
        case=case,
        generated_at=format_recorded_at(views.clock()),
        log_key=log_key,
        checkpoint=checkpoint,
        tree_size=size,
        entries=[(i, selection.entries[i].text, proofs[i]) for i in selection.indexes],
        signers=signers,
        timeline=timeline(statements),
        manifest=_manifest(signing_key, head, subject, selection.indexes),
    )


def _manifest(signing_key: Ed25519PrivateKey, head: Checkpoint,
              subject: tuple[str, tuple[str, ...]], indexes: list[int]) -> str:
    """The signed manifest of a bundle holding `indexes`, at the bundle's own tree head: the
    one whose checkpoint carries the inclusion proofs, so size and root agree by making."""
    kind, fields = subject
    return sign_manifest(Manifest.of(head, kind, fields, indexes), signing_key)


def _statement(text: str) -> dict[str, Any]:
    """The statement of a recorded entry: its payload, which the ledger checked on entry.
    Found by pattern in the entry's JCS text, where `"payload":"` occurs once (the other
    members are payloadType and signatures), to spare parsing ten thousand entries."""
    match = _PAYLOAD.search(text)
    if match is None:
        raise StorageError("a recorded entry has no payload: the log was altered")
    # Decoded here: given bytes, json.loads first guesses their encoding, at a cost.
    payload: dict[str, Any] = json.loads(base64.b64decode(match.group(1)).decode("utf-8"))
    return payload
