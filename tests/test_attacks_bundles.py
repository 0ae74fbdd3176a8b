"""Attacks on evidence bundles by whoever holds one: cutting it, padding it, re-signing it.

An inclusion proof shows that an entry is in the log, never that nothing was left out. A
respondent handed the bundle of a case found against it would like the finding gone: it
drops the `case.resolved` entry, tidies the timeline and writes the rest back in the one
canonical byte form. Every proof left still holds. What stops it is the manifest
(DISPUTES.md): the ledger's signed note of the subject, the tree head and the hash of the
indexes it selected. Each test below is one way around the manifest, and the line the
verifier answers with. The bundle is the complaint case of the read-side story
(tests/test_read_side.py), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from api.cli import main
from ledger import keys
from ledger.bundle import verify_bundle
from ledger.canonical import canonical_bytes
from ledger.log.checkpoint import sign_checkpoint, sign_note, verifier_key
from ledger.log.manifest import Manifest, index_differences, sign_manifest, verify_manifest
from ledger.log.verify import Checkpoint, MalformedNoteError, verify_checkpoint, verify_note
from ledger.timeline import timeline
from tests import test_read_side as rs
from tests.support import ORIGIN
from traceability.bundle import batch_bundle, case_bundle

CASE = "C-2026-001"


class Evidence:
    """The story's ledger and the case's bundle, as the respondent receives it."""

    def __init__(self, db: str) -> None:
        self.story = rs.tell(db)
        self.ledger = self.story.world.ledger
        self.log_key = self.ledger.config.log_key
        self.data = case_bundle(self.story.views, CASE).to_bytes()

    def bundle(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.data)
        return loaded

    def entry(self, what: str) -> int:
        return self.story.entry[what]


@pytest.fixture
def evidence(db_url: str) -> Iterator[Evidence]:
    e = Evidence(db_url)
    yield e
    e.story.views.close()
    e.ledger.close()


def failures(bundle: dict[str, Any], **options: Any) -> list[str]:
    """What verify-bundle answers for the bundle rewritten in its canonical form."""
    return verify_bundle(canonical_bytes(bundle), **options).failures


def without(bundle: dict[str, Any], index: int) -> dict[str, Any]:
    """The bundle with entry `index` and its timeline line cut out, nothing else touched."""
    cut = dict(bundle)
    cut["entries"] = [e for e in bundle["entries"] if e["index"] != index]
    cut["timeline"] = [t for t in bundle["timeline"] if t["index"] != index]
    return cut


def statement(item: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(base64.b64decode(item["entry"]["envelope"]["payload"]))
    return payload


# ---- the issue: a bundle cut and rewritten canonically ---------------------------------------


def test_cutting_out_the_finding_fails_naming_the_entry(
    evidence: Evidence, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # The bakery drops the regulator's finding against it and the finding's timeline line.
    # The signers are unchanged (the regulator signs other entries), the proofs all hold.
    resolved = evidence.entry("case resolved")
    cut = without(evidence.bundle(), resolved)
    assert [t["type"] for t in cut["timeline"]].count("case.resolved") == 0
    (tmp_path / "cut.json").write_bytes(canonical_bytes(cut))
    # verify-bundle, with the ledger's key pinned as an investigator holds it: exit 1, one line.
    assert main(["verify-bundle", str(tmp_path / "cut.json"), "--log-key", evidence.log_key]) == 1
    assert capsys.readouterr().out == (
        f"manifest: it lists entry {resolved}, which the bundle lacks\n")


def test_cutting_out_two_entries_fails_without_naming_them(evidence: Evidence) -> None:
    # A hash names a set without listing it: one entry missing or added is found by trying,
    # more than one is reported as a difference the verifier cannot spell out.
    cut = without(without(evidence.bundle(), evidence.entry("case resolved")),
                  evidence.entry("bread check"))
    assert failures(cut) == [f"manifest: the bundle's {len(cut['entries'])} entries are not "
                             "the entries it lists (more than one differs, or too many to try)"]


def test_an_entry_added_from_elsewhere_in_the_log_with_a_valid_proof_fails(
    evidence: Evidence,
) -> None:
    # The complainant pads the bundle with the soy maker's blacklisting, an entry of the same
    # log signed by the same regulator, with a genuine proof against the bundle's checkpoint
    # and a timeline recomputed to match. Only the manifest knows it was not selected.
    bundle = evidence.bundle()
    added = evidence.entry("blacklisted")
    assert added not in {e["index"] for e in bundle["entries"]}
    size = verify_checkpoint(bundle["checkpoint"], evidence.log_key).size
    item = {"entry": evidence.ledger.entry(added).to_json(), "index": added,
            "inclusion": [h.hex() for h in evidence.ledger.inclusion_proof(added, size)]}
    bundle["entries"] = sorted([*bundle["entries"], item], key=lambda e: e["index"])
    bundle["timeline"] = timeline((e["index"], statement(e)) for e in bundle["entries"])
    assert failures(bundle) == [f"manifest: the bundle holds entry {added}, which it does not list"]


# ---- the manifest itself: absent, forged, or taken from another bundle -------------------------


def test_a_bundle_without_a_manifest_fails(evidence: Evidence) -> None:
    bundle = evidence.bundle()
    del bundle["manifest"]
    assert failures(bundle) == ["the bundle lacks the field 'manifest'"]
    bundle["manifest"] = None
    assert failures(bundle) == ["manifest must be a string"]


def test_a_cut_bundle_with_a_manifest_re_signed_by_another_key_fails(evidence: Evidence) -> None:
    # The bakery cuts the finding out and signs a manifest of what is left with a key of its
    # own, under the ledger's name: the signature line names the log, but not its key.
    resolved = evidence.entry("case resolved")
    cut = without(evidence.bundle(), resolved)
    genuine = verify_manifest(cut["manifest"], evidence.log_key)
    impostor = keys.generate_private_key()
    rest = [e["index"] for e in cut["entries"]]
    head = Checkpoint(genuine.origin, genuine.size, genuine.root_hash)
    cut["manifest"] = sign_manifest(Manifest.of(head, "case", (CASE,), rest), impostor)
    found = failures(cut)
    assert len(found) == 1 and found[0].startswith(f"manifest: key {ORIGIN}+")
    assert found[0].endswith("note carries no signature by this key")
    # Swapping the bundle's log key, checkpoint and manifest all for the impostor's is
    # consistent in itself; the ledger's key as the investigator pins it tells them apart.
    cut["log_key"] = verifier_key(ORIGIN, keys.public_bytes(impostor))
    cut["checkpoint"] = sign_checkpoint(head, ORIGIN, impostor)
    assert failures(cut) == []
    assert failures(cut, log_key=evidence.log_key) == [
        f"the bundle's log key {cut['log_key']!r} is not the expected {evidence.log_key!r}",
        found[0]]


def test_the_manifest_of_another_case_pasted_in_fails(evidence: Evidence) -> None:
    # A second complaint, against the mill about the flour, at the same tree size: its
    # manifest is genuine, of the same log and tree head, and about another case.
    w = evidence.story.world
    w.submit("case.opened", rs.SHOP_B, case="C-2026-002", respondent=rs.MILL,
             batches=[{"gtin": rs.FLOUR, "lot": "F-01"}], summary="面粉异味", channel="12315")
    first = json.loads(case_bundle(evidence.story.views, CASE).to_bytes())
    other = json.loads(case_bundle(evidence.story.views, "C-2026-002").to_bytes())
    assert first["checkpoint"] == other["checkpoint"]
    first["manifest"] = other["manifest"]
    assert failures(first) == [
        f"manifest: it is about case C-2026-002, the bundle about case {CASE!r}",
        f"manifest: the bundle's {len(first['entries'])} entries are not the entries it lists "
        "(more than one differs, or too many to try)"]


def test_the_manifest_of_another_tree_size_pasted_in_fails(evidence: Evidence) -> None:
    # The same case's bundle made after the log grew (by an entry the case does not touch):
    # the same entries, so only the tree head gives the later manifest away.
    earlier = evidence.bundle()
    evidence.story.world.register(rs.make_uscc(90), "后来的超市", "retailer")
    later = json.loads(case_bundle(evidence.story.views, CASE).to_bytes())
    assert [e["index"] for e in later["entries"]] == [e["index"] for e in earlier["entries"]]
    earlier["manifest"] = later["manifest"]
    size = verify_checkpoint(earlier["checkpoint"], evidence.log_key).size
    grown = verify_checkpoint(later["checkpoint"], evidence.log_key).size
    assert grown == size + 2  # the organization and its key
    assert failures(earlier) == [f"manifest: it is at tree size {grown}, the checkpoint at {size}"]


def test_a_batch_manifest_in_a_case_bundle_and_a_case_manifest_in_a_batch_bundle_fail(
    evidence: Evidence,
) -> None:
    views = evidence.story.views
    case = evidence.bundle()
    batch = json.loads(batch_bundle(views, rs.BREAD, "B-01").to_bytes())
    assert batch["case"] is None
    assert verify_manifest(batch["manifest"], evidence.log_key).subject == (rs.BREAD, "B-01")
    case["manifest"], batch["manifest"] = batch["manifest"], case["manifest"]
    assert failures(case)[0] == (
        f"manifest: it is about batch {rs.BREAD} B-01, the bundle about case {CASE!r}")
    assert failures(batch)[0] == (
        f"manifest: it is about case {CASE}, the bundle (case null) about a batch")
    # A batch bundle says which batch it is about in its manifest alone (`case` is null).
    # The flour and the bread are one chain, so their bundles hold the same entries: the
    # bread's bundle with the flour's manifest IS the flour's bundle, and verifies as that.
    flour = json.loads(batch_bundle(views, rs.FLOUR, "F-01").to_bytes())
    batch = json.loads(batch_bundle(views, rs.BREAD, "B-01").to_bytes())
    assert flour["entries"] == batch["entries"]
    batch["manifest"] = flour["manifest"]
    assert failures(batch) == []
    # A manifest naming a batch whose production the bundle does not hold fails.
    wheat = json.loads(batch_bundle(views, rs.WHEAT, "W-02").to_bytes())
    batch["manifest"] = wheat["manifest"]
    assert failures(batch)[0] == (f"manifest: it is about batch {rs.WHEAT} W-02, whose "
                                  "batch.produced entry the bundle lacks")


# The manifest's value in the bundle, changed in each of its parts: (name, old, new).
MUTATIONS = [
    ("origin-line", "/bundle\n", "/bundles\n"),
    ("subject-kind", "\ncase ", "\norg "),
    ("subject-id", f" {CASE}\n", " C-2026-002\n"),
    ("subject-extra-space", f" {CASE}\n", f"  {CASE}\n"),
]


@pytest.mark.parametrize("name, old, new", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_a_changed_manifest_text_fails(evidence: Evidence, name: str, old: str,
                                       new: str) -> None:
    bundle = evidence.bundle()
    assert old in bundle["manifest"]
    bundle["manifest"] = bundle["manifest"].replace(old, new, 1)
    found = failures(bundle)
    assert len(found) == 1 and found[0].startswith("manifest: key ")
    assert found[0].endswith(": signature does not verify")


@pytest.mark.slow
def test_a_byte_flipped_anywhere_in_the_manifest_fails(evidence: Evidence) -> None:
    # Each character of the note (text and signature line) in turn, its lowest bit flipped
    # (a newline, which would become a control character, made a "*"): the signature or
    # the note's form breaks, and the verifier says it is the manifest's.
    bundle = evidence.bundle()
    note = bundle["manifest"]
    for position, character in enumerate(note):
        changed = "*" if character == "\n" else chr(ord(character) ^ 0x01)
        bundle["manifest"] = note[:position] + changed + note[position + 1:]
        found = failures(bundle)
        assert found and all(line.startswith("manifest") for line in found), (position, found)


# ---- what the ledger signs ---------------------------------------------------------------------


def test_the_untouched_bundles_verify_and_their_manifests_say_what_they_hold(
    evidence: Evidence,
) -> None:
    for data in (evidence.data,
                 batch_bundle(evidence.story.views, rs.BREAD[1:], "B-01").to_bytes()):
        assert verify_bundle(data, log_key=evidence.log_key).failures == []
        bundle = json.loads(data)
        # The note's text, read without the manifest code: the log's signature over it,
        # the checkpoint's tree head, the hash of the indexes the bundle lists.
        text = verify_note(bundle["manifest"], evidence.log_key)
        head = verify_checkpoint(bundle["checkpoint"], evidence.log_key)
        indexes = b"".join(e["index"].to_bytes(8, "big") for e in bundle["entries"])
        subject = (f"case {CASE}" if bundle["case"] is not None
                   else f"batch {rs.BREAD} B-01")  # the GTIN-13 asked for, as a GTIN-14
        assert text == (f"{head.origin}/bundle\n{subject}\n{head.size}\n"
                        f"{base64.b64encode(head.root_hash).decode()}\n"
                        f"{base64.b64encode(hashlib.sha256(indexes).digest()).decode()}\n")


# RFC 8032 §7.1 test 1: the secret key and its public key.
RFC8032_SECRET = bytes.fromhex(
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex(
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")


def test_manifest_known_answer() -> None:
    # Entries 0, 1 and 5 of case C-2026-001 at tree size 7, root 00 01 … 1f. Every value
    # below is written from DISPUTES.md and PROTOCOL.md §4, and reproduced without qledger:
    #   indexes:   printf '\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1\0\0\0\0\0\0\0\5' |
    #              openssl dgst -sha256 -binary | base64
    #   key hash:  { printf 'ledger.quality.example/v1\n\1'; <public key bytes>; } |
    #              sha256sum | cut -c1-8                                      -> c6da9249
    #   signature: openssl pkeyutl -sign -rawin -inkey <RFC 8032 test 1 key> -in <text>
    text = ("ledger.quality.example/v1/bundle\n"
            "case C-2026-001\n"
            "7\n"
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
            "qGwFD93n/Lw4WghGFb+k5Anyy40TKZKY/6Xvh2AxgwE=\n")
    signed = text + ("\n\u2014 ledger.quality.example/v1 xtqSSRcpvUARan0MT6z1jaFQG6CTfPqc4TXTOwnK"
                     "RoNEurSXGyI5CO0T/td7tpaju8fzH788DHtJEWgR/zfX7BvCDgw=\n")
    head = Checkpoint("ledger.quality.example/v1", 7, bytes(range(32)))
    manifest = Manifest.of(head, "case", ["C-2026-001"], [5, 1, 0])
    assert manifest.text() == text
    key = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)
    assert key.public_key().public_bytes_raw() == RFC8032_PUBLIC
    assert sign_manifest(manifest, key) == signed
    assert verify_manifest(signed, verifier_key(head.origin, RFC8032_PUBLIC)) == manifest
    Ed25519PublicKey.from_public_bytes(RFC8032_PUBLIC).verify(
        base64.b64decode(signed.rsplit(" ", 1)[1])[4:], text.encode())
    # A batch is named by its GTIN-14 and lot; an organization by its USCC.
    batch = Manifest.of(head, "batch", ["06920023000105", "BR20261028-B"], [])
    assert batch.text().split("\n")[1] == "batch 06920023000105 BR20261028-B"
    assert batch.text().split("\n")[4] == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="  # no entry
    assert Manifest.of(head, "org", ["91350100MA2Y00001X"], [0]).subject_line == (
        "org 91350100MA2Y00001X")


@pytest.mark.parametrize("kind, subject", [
    ("case", ["C 2026"]), ("case", ["C\n2026"]), ("case", [""]), ("batch", ["06920023000105"]),
    ("batch", ["06920023000105", "B 01"]), ("org", ["A", "B"]), ("lot", ["B-01"]),
])
def test_a_subject_line_that_could_read_two_ways_is_never_written(
    kind: str, subject: list[str],
) -> None:
    # Case ids and lots cannot hold white space when recorded (statements.token, GS1 set
    # 82); the writer refuses it anyway, so a subject line has exactly one reading.
    head = Checkpoint(ORIGIN, 7, bytes(32))
    with pytest.raises(ValueError):
        Manifest.of(head, kind, subject, [0])


def test_a_manifest_text_not_of_the_form_is_refused() -> None:
    key = keys.generate_private_key()
    good = Manifest.of(Checkpoint(ORIGIN, 7, bytes(32)), "case", [CASE], [0]).text()
    for bad in (good.replace("/bundle\n", "\n"), good.replace(f"case {CASE}", f"case  {CASE}"),
                good.replace("\n7\n", "\n07\n"), good + "extra\n", good.replace("case ", "org ")
                .replace(CASE, f"{CASE} X")):
        note = sign_note(bad, ORIGIN, key)
        with pytest.raises(MalformedNoteError):
            verify_manifest(note, verifier_key(ORIGIN, keys.public_bytes(key)))
    # A checkpoint is no manifest (its second line is a size), though the same key signs both.
    checkpoint = sign_checkpoint(Checkpoint(ORIGIN, 7, bytes(32)), ORIGIN, key)
    with pytest.raises(MalformedNoteError):
        verify_manifest(checkpoint, verifier_key(ORIGIN, keys.public_bytes(key)))


def test_the_search_for_the_one_index_that_differs_stays_within_its_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ledger.log.manifest

    selected = list(range(0, 200, 3))
    signed = Manifest.of(Checkpoint(ORIGIN, 200, bytes(32)), "case", [CASE], selected)
    assert index_differences(signed.indexes_hash, selected[:7] + selected[8:], 200) == (
        [21], [])
    assert index_differences(signed.indexes_hash, sorted(selected + [100]), 200) == ([], [100])
    monkeypatch.setattr(ledger.log.manifest, "_SEARCH_BUDGET", 1000)
    assert index_differences(signed.indexes_hash, selected[:7] + selected[8:], 200) is None
