"""The offline bundle verifier (ledger.bundle, `qledger verify-bundle`) against a forger.

An investigator receives a bundle and checks it with no database and no network. Each
test below is one way to tamper with it, and the line the verifier must answer with.
The bundle is the complaint case of the read-side story (tests/test_read_side.py): a
shop's complaint about bread made from flour that failed its check.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import keys
from ledger.log.entry_format import entry_bytes, format_recorded_at
from ledger.bundle import UnreadableBundle, verify_bundle
from ledger.canonical import canonical_bytes
from ledger.log.checkpoint import sign_checkpoint
from ledger.log.verify import verify_checkpoint
from tests import test_read_side as rs
from tests.support import ROOT, World, make_gtin
from traceability.bundle import batch_bundle, case_bundle
from traceability.views import Views

CASE = "C-2026-001"
REPO = Path(__file__).resolve().parent.parent


class Evidence:
    """The case's bundle, and a second one of the same case made after the log grew."""

    def __init__(self, db: str) -> None:
        story = rs.tell(db)
        self.story = story
        self.log_key = story.world.ledger.config.log_key
        self.data = case_bundle(story.views, CASE).to_bytes()
        story.world.register(rs.make_uscc(90), "后来的超市", "retailer")  # the log grows
        self.later = case_bundle(story.views, CASE).to_bytes()

    def bundle(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.data)
        return loaded

    def index_of(self, what: str) -> int:
        return self.story.entry[what]


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Evidence]:
    e = Evidence(str(tmp_path_factory.mktemp("verify") / "ledger.db"))
    yield e
    e.story.views.close()
    e.story.world.ledger.close()


def failures(data: bytes, **options: Any) -> list[str]:
    return verify_bundle(data, **options).failures


def test_an_untouched_bundle_verifies(evidence: Evidence) -> None:
    verdict = verify_bundle(evidence.data, log_key=evidence.log_key)
    bundle = evidence.bundle()
    assert verdict.failures == []
    assert verdict.summary() == (
        f"verified {len(bundle['entries'])} entries at tree size "
        f"{verify_checkpoint(bundle['checkpoint'], evidence.log_key).size}")
    assert verify_bundle(evidence.later).failures == []


def _generated_at(data: bytes) -> range:
    """The bytes of generated_at's value: the one value nothing attests (ledger.bundle)."""
    start = data.index(b'"generated_at":"') + len(b'"generated_at":"')
    return range(start, data.index(b'"', start))


def _tampered_fails(data: bytes, position: int, value: int) -> bool:
    changed = data[:position] + bytes([value]) + data[position + 1:]
    try:
        return bool(failures(changed))
    except UnreadableBundle:
        return True  # no longer JSON: not a bundle at all, exit status 2


@pytest.mark.slow
def test_changing_any_byte_fails(evidence: Evidence) -> None:
    data = evidence.data
    skip = _generated_at(data)
    # Every byte of a stride through the whole bundle, each changed in its lowest bit
    # (the change a text editor or a careless script is likeliest to make)...
    positions = [p for p in range(0, len(data), max(1, len(data) // 600)) if p not in skip]
    positions += [len(data) - 1]
    for position in positions:
        assert _tampered_fails(data, position, data[position] ^ 0x01), position
    # ...and appending or dropping a byte, a trailing newline included.
    assert failures(data + b"\n") and failures(b" " + data)
    with pytest.raises(UnreadableBundle):
        verify_bundle(data[:-1])


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_changing_any_byte_to_any_value_fails(evidence: Evidence, data: st.DataObject) -> None:
    bundle = evidence.data
    position = data.draw(st.integers(0, len(bundle) - 1).filter(
        lambda p: p not in _generated_at(bundle)))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != bundle[position]))
    assert _tampered_fails(bundle, position, value)


def test_generated_at_is_checked_only_for_form_and_against_the_newest_entry(
    evidence: Evidence,
) -> None:
    bundle = evidence.bundle()
    bundle["generated_at"] = "2020-01-01T00:00:00.000Z"
    assert failures(canonical_bytes(bundle)) == [
        "generated_at 2020-01-01T00:00:00.000Z is before the newest entry's recorded_at"]
    bundle["generated_at"] = "yesterday"
    assert failures(canonical_bytes(bundle)) == [
        "generated_at 'yesterday' is not an RFC 3339 UTC time"]


def test_a_pretty_printed_bundle_is_not_the_bundle(evidence: Evidence) -> None:
    pretty = json.dumps(evidence.bundle(), indent=2, ensure_ascii=False).encode()
    assert failures(pretty) == [
        "the bundle is not in its canonical byte form (RFC 8785 JCS): it departs from it at byte 1"]


def test_unknown_or_missing_fields_fail(evidence: Evidence) -> None:
    bundle = evidence.bundle()
    bundle["note"] = "trust me"
    del bundle["case"]
    assert failures(canonical_bytes(bundle)) == [
        "the bundle lacks the field 'case'", "the bundle has an unknown field 'note'"]


def test_dropping_a_key_registration_breaks_the_chain_of_trust(evidence: Evidence) -> None:
    # The forger leaves out the bakery's key registration and tidies up after it: the
    # timeline line goes too, so the bundle is otherwise self-consistent.
    bundle = evidence.bundle()
    gone = evidence.index_of(f"registered {rs.BAKERY}") + 1  # its key.registered
    bundle["entries"] = [e for e in bundle["entries"] if e["index"] != gone]
    bundle["timeline"] = [t for t in bundle["timeline"] if t["index"] != gone]
    found = failures(canonical_bytes(bundle))
    bakery_key = next(k for k, s in bundle["signers"].items() if s["org"] == rs.BAKERY)
    for what in ("bread B-01", "ship S-B1", "receive S-F1"):
        assert (f"entry {evidence.index_of(what)}: signed by key {bakery_key}, which no entry of "
                "the bundle registers") in found
    assert f"signers lists key {bakery_key}, which signs no entry of the bundle" in found


def test_dropping_the_root_registrations_leaves_no_anchor(evidence: Evidence) -> None:
    bundle = evidence.bundle()
    bundle["entries"] = [e for e in bundle["entries"] if e["index"] > 1]
    bundle["timeline"] = [t for t in bundle["timeline"] if t["index"] > 1]
    assert ("the bundle lacks entries 0 and 1, the root regulator's registrations every chain "
            "of trust starts from") in failures(canonical_bytes(bundle))


def test_an_inclusion_proof_against_another_checkpoint_fails(evidence: Evidence) -> None:
    # The entries and proofs of the first bundle, the (genuine, later) checkpoint of the second.
    bundle = evidence.bundle()
    later = json.loads(evidence.later)
    bundle["checkpoint"] = later["checkpoint"]
    found = failures(canonical_bytes(bundle))
    # The manifest, signed at the first bundle's tree head, is not of this checkpoint either.
    early_size = verify_checkpoint(evidence.bundle()["checkpoint"], evidence.log_key).size
    later_size = verify_checkpoint(later["checkpoint"], evidence.log_key).size
    assert found[-1] == f"manifest: it is at tree size {early_size}, the checkpoint at {later_size}"
    assert len(found[:-1]) == len(bundle["entries"])
    assert all("not proven in the checkpoint's tree of" in line for line in found[:-1])
    # One entry's proof from the later bundle in the earlier one: that entry alone fails.
    bundle = evidence.bundle()
    bundle["entries"][5]["inclusion"] = later["entries"][5]["inclusion"]
    found = failures(canonical_bytes(bundle))
    index = bundle["entries"][5]["index"]
    assert len(found) == 1 and found[0].startswith(f"entry {index}: not proven")


def test_a_checkpoint_signed_by_another_key_fails(evidence: Evidence) -> None:
    bundle = evidence.bundle()
    genuine = verify_checkpoint(bundle["checkpoint"], evidence.log_key)
    impostor = keys.generate_private_key()
    bundle["checkpoint"] = sign_checkpoint(genuine, genuine.origin, impostor)
    found = failures(canonical_bytes(bundle))
    assert found and found[0].startswith("checkpoint: key ledger.quality.example/v1+")
    assert found[0].endswith("note carries no signature by this key")
    # Swapping the log key for the impostor's too is consistent in itself: only the ledger's
    # key as the investigator holds it (published, pinned with --log-key) tells them apart.
    from ledger.log.checkpoint import verifier_key

    bundle["log_key"] = verifier_key(genuine.origin, keys.public_bytes(impostor))
    forged = canonical_bytes(bundle)
    assert failures(forged, log_key=evidence.log_key) == [
        f"the bundle's log key {bundle['log_key']!r} is not the expected {evidence.log_key!r}"]


def test_a_signers_entry_that_disagrees_with_its_registration_fails(evidence: Evidence) -> None:
    bundle = evidence.bundle()
    keyid = next(iter(bundle["signers"]))
    bundle["signers"][keyid]["registered_by_entry"] += 2
    assert failures(canonical_bytes(bundle)) == [
        f"signers[{keyid}] does not match its registration at entry "
        f"{bundle['signers'][keyid]['registered_by_entry'] - 2}"]


def test_a_timeline_line_rewritten_fails(evidence: Evidence) -> None:
    bundle = evidence.bundle()
    bundle["timeline"][-1]["summary"] = "nothing happened"
    found = failures(canonical_bytes(bundle))
    assert len(found) == 1 and found[0].startswith(f"timeline[{len(bundle['timeline']) - 1}]")


def test_a_case_the_bundle_does_not_open_fails(evidence: Evidence) -> None:
    bundle = evidence.bundle()
    bundle["case"] = "C-2026-999"
    assert failures(canonical_bytes(bundle)) == [
        "no entry of the bundle opens case 'C-2026-999'",
        f"manifest: it is about case {CASE}, the bundle about case 'C-2026-999'"]


def test_signatures_checked_on_other_cores_still_catch_a_forged_one(
    evidence: Evidence, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A large bundle's signatures are checked in worker processes as well as here; the
    # story's bundle is made to take that path, and a forged signature sits in each share.
    import ledger.bundle
    import ledger.parallel

    monkeypatch.setattr(ledger.bundle, "PARALLEL_FROM", 0)
    monkeypatch.setattr(ledger.bundle, "MIN_PARALLEL", 1)
    monkeypatch.setattr(ledger.parallel, "MIN_PARALLEL", 1)
    monkeypatch.setenv("QLEDGER_VERIFY_WORKERS", "1")
    verdict = verify_bundle(evidence.data)
    assert verdict.failures == []
    assert verdict.signatures == sum(
        len(e["entry"]["envelope"]["signatures"]) for e in evidence.bundle()["entries"])
    bundle = evidence.bundle()
    forged = []
    for item in (bundle["entries"][2], bundle["entries"][-1]):
        signature = item["entry"]["envelope"]["signatures"][0]
        raw = bytearray(base64.b64decode(signature["sig"]))
        raw[0] ^= 0x01
        signature["sig"] = base64.b64encode(bytes(raw)).decode()
        forged.append((item["index"], signature["keyid"]))
    found = failures(canonical_bytes(bundle))
    for index, keyid in forged:
        assert (f"entry {index}: the signature by key {keyid} does not verify over this "
                "payload and payloadType") in found


# ---- a ledger whose operator lets a statement in before its key -------------------------------


def test_a_signature_by_a_key_registered_only_after_it_signed_fails(db_url: str) -> None:
    # The operator slips into the log a batch the bakery "signed" with a key it had not
    # registered yet (record_unverified: the log takes the entry without the rules), and
    # registers that key afterwards. The log and its proofs are genuine; the chain is not.
    w = World(db_url)
    views = Views(w.ledger)
    views.attach(w.ledger, raise_errors=True)
    w.register(rs.BAKERY, "麦香烘焙", "producer")
    early_key = keys.generate_private_key()
    envelope = w.envelope("batch.produced", rs.BAKERY, key=early_key, gtin=make_gtin(3),
                          lot="B-99", product="面包", category="food", quantity=10, unit="个",
                          produced_at="2026-11-21T05:00:00Z", standard="GB 7099-2015", inputs=[])
    slipped = w.ledger.size()
    text = entry_bytes(canonical_bytes(envelope), format_recorded_at(w.clock.now)).decode()
    w.ledger.record_unverified(slipped, text, w.clock.now)
    registered = w.submit("key.registered", ROOT, org=rs.BAKERY,
                          public_key=keys.encode_public_key(keys.public_bytes(early_key)))
    # The ledger's own state never took the slipped batch in; the views read the log as is.
    data = batch_bundle(views, make_gtin(3), "B-99").to_bytes()
    found = failures(data)
    early = keys.key_id(keys.public_bytes(early_key))
    assert found[:2] == [
        f"entry {slipped}: signed by key {early}, which entry {registered.index} registers only "
        "after it signed",
        f"entry {slipped}: no valid signature by a key of {rs.BAKERY}, who signs it (`by`)",
    ]
    views.close()
    w.ledger.close()


# ---- the command line, with no database and no network -----------------------------------------


def _cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "QLEDGER_DB": str(cwd / "no-such-folder" / "qledger.db"),
           "QLEDGER_TEST_PG": "postgresql://nobody@192.0.2.1:1/none"}
    return subprocess.run([sys.executable, "-m", "api.cli", *argv], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120)


def test_verify_bundle_needs_no_database(evidence: Evidence, tmp_path: Path) -> None:
    (tmp_path / "case.json").write_bytes(evidence.data)
    done = _cli("verify-bundle", "case.json", "--log-key", evidence.log_key, cwd=tmp_path)
    count = len(evidence.bundle()["entries"])
    size = verify_checkpoint(evidence.bundle()["checkpoint"], evidence.log_key).size
    assert (done.returncode, done.stdout, done.stderr) == (
        0, f"verified {count} entries at tree size {size}\n", "")
    assert not (tmp_path / "no-such-folder").exists()
    assert sorted(os.listdir(tmp_path)) == ["case.json"]  # no database was created


def test_the_verifier_imports_nothing_from_storage_web_or_the_read_side() -> None:
    probe = ("import sys, ledger.bundle; print(sorted(m for m in sys.modules if m.split('.')[0] "
             "in ('eventsourcing', 'psycopg', 'sqlite3', 'traceability', 'api', 'fastapi', "
             "'httpx') or m in ('ledger.store', 'ledger.application')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert (done.returncode, done.stdout) == (0, "[]\n"), done.stderr


@pytest.mark.slow
def test_verify_bundle_exit_statuses(evidence: Evidence, tmp_path: Path) -> None:
    bundle = evidence.bundle()
    bundle["timeline"][0]["summary"] = "edited"
    (tmp_path / "edited.json").write_bytes(canonical_bytes(bundle))
    done = _cli("verify-bundle", "edited.json", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout.startswith("timeline[0] is not what entry ")
    assert len(done.stdout.splitlines()) == 1

    (tmp_path / "notes.txt").write_text("not a bundle\n")
    done = _cli("verify-bundle", "notes.txt", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("qledger: the bundle is not JSON")
    assert done.stderr.count("\n") == 1

    done = _cli("verify-bundle", "missing.json", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "qledger: missing.json: cannot read: No such file or directory\n"

    done = _cli("verify-bundle", "edited.json", "--log-key", "nonsense", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("qledger: --log-key: ")
