"""Evidence bundles (DISPUTES.md), on SQLite and PostgreSQL: what goes in, and nothing else.

The demo's story: a farm's wheat lot WH2026-10A is milled into two flour lots; lot
FL20261025-2 fails a supervisory check for lead and the mill recalls it; the bakery
baked bread BR20261028-B from it and sent it through a distributor to two supermarkets.
One of them complains through 12315 about that bread; the regulator finds the complaint
substantiated. Meanwhile a decoy mill milled the farm's other lot, a workshop elsewhere
was blacklisted, and the farm won a provincial award.

The case's bundle must hold the complaint and its finding, the bread's whole upstream
(its flour and that flour's wheat, their checks and the recall) and downstream (every
shipment and receipt of the bread), the credit changes of everyone in that chain (the
farm's award), and the registrations of every organization and key that signed any of
it, back to the root regulator. Nothing of the decoy mill, the farm's other wheat lot or
the blacklisted workshop.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api import demo
from api.app import create_app
from api.cli import main
from ledger import client, keys
from ledger.application import Ledger
from ledger.bundle import verify_bundle
from ledger.errors import NotFound
from tests import test_read_side as story_module
from tests.support import ROOT
from traceability.bundle import batch_bundle, case_bundle
from traceability.evidence import batch_entries, case_entries
from traceability.views import Views

CASE = "FJ-12315-2026-0457"


@pytest.fixture
def shop(tmp_path: Path, db_url: str) -> Iterator[tuple[Ledger, Views]]:
    demo.build(db_url, tmp_path / "log.pem", tmp_path / "root.pem")
    ledger = Ledger(db_url, log_key=keys.load_private_key(tmp_path / "log.pem"))
    views = Views.open(ledger)
    yield ledger, views
    views.close()
    ledger.close()


def label(ledger: Ledger, index: int) -> str:
    """What an entry is, in words a test can list: its type and what it is about."""
    s = ledger.statement_at(index)
    b = s.body
    about = {
        "org.registered": lambda: b["uscc"],
        "key.registered": lambda: b["org"],
        "batch.produced": lambda: f"{b['gtin']}/{b['lot']}",
        "batch.shipped": lambda: b["shipment"],
        "batch.received": lambda: b["shipment"],
        "check.recorded": lambda: f"{b['gtin']}/{b['lot']}",
        "recall.issued": lambda: f"{b['gtin']}/{','.join(b['lots'])}",
        "award.granted": lambda: b["org"],
        "blacklist.added": lambda: b["org"],
        "case.opened": lambda: b["case"],
        "case.evidence": lambda: b["case"],
        "case.resolved": lambda: b["case"],
        "correction": lambda: str(b["corrects"]),
    }[s.type]()
    return f"{s.type} {about}"


def labels(ledger: Ledger, indexes: list[int]) -> list[str]:
    return sorted(label(ledger, i) for i in indexes)


# Everyone who signed something the case touches, registered with their keys.
SIGNERS = [demo.REGULATOR, demo.FARM, demo.MILL, demo.BAKERY, demo.DISTRIBUTOR, demo.MART_A,
           demo.MART_B, demo.LAB]
# The chain of the complained-about bread, and what touched it.
CHAIN = [
    f"batch.produced {demo.WHEAT}/WH2026-10A",
    f"batch.produced {demo.FLOUR}/FL20261025-2",
    f"batch.produced {demo.BREAD}/BR20261028-B",
    "batch.shipped SH-FARM-0001", "batch.received SH-FARM-0001",  # wheat to the mill
    "batch.shipped SH-MILL-0102", "batch.received SH-MILL-0102",  # flour to the bakery
    "batch.shipped SH-BK-0202", "batch.received SH-BK-0202",  # bread to the distributor
    "batch.shipped SH-DS-0303", "batch.received SH-DS-0303",  # and on to both marts
    "batch.shipped SH-DS-0304", "batch.received SH-DS-0304",
    f"check.recorded {demo.FLOUR}/FL20261025-2",  # the failed lead check
    f"recall.issued {demo.FLOUR}/FL20261025-2",
    f"award.granted {demo.FARM}",  # a credit change of the farm, which grew the wheat
]
CASE_ENTRIES = sorted(
    [f"org.registered {org}" for org in SIGNERS] + [f"key.registered {org}" for org in SIGNERS]
    + CHAIN + [f"case.opened {CASE}", f"case.resolved {CASE}"]
)


def test_the_complaint_bundle_holds_exactly_the_bread_its_chain_and_their_signers(
    shop: tuple[Ledger, Views],
) -> None:
    ledger, views = shop
    selected = case_entries(views, CASE)
    assert selected == sorted(set(selected))
    assert labels(ledger, selected) == CASE_ENTRIES
    # Nothing of the decoy mill, the farm's other lot or the blacklisted workshop.
    everything = " ".join(labels(ledger, selected))
    for unrelated in (demo.DECOY_MILL, demo.DECOY_FLOUR, "WH2026-10B", demo.WORKSHOP, demo.SNACK,
                      "FL20261025-1", "BR20261028-A"):
        assert unrelated not in everything
    assert selected[:2] == [0, 1]  # the root regulator's registrations anchor the chain


def test_the_case_bundle_is_the_selection_with_proofs_signers_and_a_timeline(
    shop: tuple[Ledger, Views],
) -> None:
    ledger, views = shop
    data = case_bundle(views, CASE).to_bytes()
    bundle = json.loads(data)
    assert bundle["bundle_version"] == 1 and bundle["case"] == CASE
    assert bundle["log_key"] == ledger.config.log_key
    assert bundle["manifest"].startswith(f"{ledger.config.origin}/bundle\ncase {CASE}\n")
    assert [e["index"] for e in bundle["entries"]] == case_entries(views, CASE)
    # Each entry is the stored one, its inclusion proof against the bundle's checkpoint.
    size = ledger.size()
    assert bundle["checkpoint"] == ledger.checkpoint_at(size)
    for item in bundle["entries"]:
        stored = ledger.entry(item["index"])
        assert item["entry"] == stored.to_json()
        assert item["inclusion"] == [h.hex() for h in ledger.inclusion_proof(item["index"], size)]
    # One signer per key that signed, each pointing at the entry that registered it.
    assert {s["org"] for s in bundle["signers"].values()} == set(SIGNERS)
    for keyid, signer in bundle["signers"].items():
        registration = ledger.statement_at(signer["registered_by_entry"])
        assert registration.type == "key.registered" and registration.body["org"] == signer["org"]
        assert keys.key_id(registration.body["public_key"]) == keyid
    # The timeline runs in the order things happened: the complaint, then its finding.
    kinds = [line["type"] for line in bundle["timeline"]]
    assert len(kinds) == len(bundle["entries"])
    assert kinds.index("case.opened") < kinds.index("case.resolved")
    assert kinds[-1] == "award.granted"  # granted after the case was closed
    verdict = verify_bundle(data, log_key=ledger.config.log_key)
    assert verdict.failures == []
    assert verdict.summary() == f"verified {len(CASE_ENTRIES)} entries at tree size {size}"


def test_a_batch_bundle_has_no_case_and_the_batch_reach(shop: tuple[Ledger, Views]) -> None:
    ledger, views = shop
    # The recalled flour: its wheat upstream, the bread baked from it downstream.
    selected = labels(ledger, batch_entries(views, demo.FLOUR, "FL20261025-2"))
    assert selected == sorted(
        [f"org.registered {org}" for org in SIGNERS] + [f"key.registered {org}" for org in SIGNERS]
        + CHAIN)
    data = batch_bundle(views, demo.FLOUR[1:], "FL20261025-2").to_bytes()  # a GTIN-13 too
    assert json.loads(data)["case"] is None
    assert verify_bundle(data).failures == []
    with pytest.raises(NotFound):
        batch_bundle(views, demo.FLOUR, "NO-SUCH-LOT")
    with pytest.raises(NotFound):
        case_bundle(views, "FJ-12315-2026-0999")


def test_the_bundle_over_http_is_the_one_the_cli_writes(
    shop: tuple[Ledger, Views], db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ledger, views = shop
    # In a with block, the app's shutdown closes its views' connections.
    with TestClient(create_app(ledger)) as client:
        answer = client.get(f"/v1/cases/{CASE}/bundle")
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
        assert verify_bundle(answer.content).failures == []
        served = json.loads(answer.content)
        assert [e["index"] for e in served["entries"]] == case_entries(views, CASE)

        record = client.get(f"/v1/cases/{CASE}").json()
        assert (record["status"], record["finding"], record["respondent"]) == (
            "resolved", "substantiated", demo.BAKERY)

        missing = client.get("/v1/cases/FJ-12315-2026-0999/bundle")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert client.get("/v1/cases/FJ-12315-2026-0999").status_code == 404

    monkeypatch.setenv("QLEDGER_LOG_KEY", str(tmp_path / "log.pem"))
    out = tmp_path / "case.bundle.json"
    assert main(["bundle", "--db", db_url, "--case", CASE, "-o", str(out)]) == 0
    written = json.loads(out.read_bytes())
    # The same bundle but for when it was written.
    assert {k: v for k, v in written.items() if k != "generated_at"} == {
        k: v for k, v in served.items() if k != "generated_at"}
    batch = tmp_path / "flour.bundle.json"
    assert main(["bundle", "--db", db_url, "--batch", demo.FLOUR, "FL20261025-2",
                 "-o", str(batch)]) == 0
    assert verify_bundle(batch.read_bytes()).failures == []
    capsys.readouterr()
    assert main(["bundle", "--db", db_url, "--case", "NOPE", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err == "qledger: case NOPE was never opened\n"
    assert not (tmp_path / "x").exists()


def test_a_bundle_is_not_written_without_the_log_key_to_sign_its_manifest(
    shop: tuple[Ledger, Views], db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The stored checkpoint would do for the proofs, but the manifest is signed per bundle:
    # a command without the key says so in one line and writes nothing.
    monkeypatch.delenv("QLEDGER_LOG_KEY", raising=False)
    out = tmp_path / "case.bundle.json"
    assert main(["bundle", "--db", db_url, "--case", CASE, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qledger: no log signing key") and err.count("\n") == 1
    assert not out.exists()


# ---- evidence cited, corrections, the case's own record -------------------------------------


@pytest.fixture
def story(db_url: str) -> Iterator[Any]:
    s = story_module.tell(db_url)
    yield s
    s.views.close()
    s.world.ledger.close()


def test_evidence_cites_entries_into_the_bundle_and_corrections_follow(story: Any) -> None:
    w, rs = story.world, story_module
    # A second complaint, against the mill, about the flour; the lab cites the soy sauce
    # batch (an entry nothing else connects to the flour), then corrects its note.
    opened = w.submit("case.opened", rs.SHOP_B, case="C-2026-002", respondent=rs.MILL,
                      batches=[{"gtin": rs.FLOUR, "lot": "F-01"}], summary="面粉异味",
                      channel="12315")
    note = w.statement("case.evidence", rs.LAB, case="C-2026-002", refs=[story.entry["sauce"]],
                       note="同批次酱油对照")
    evidence = w.ledger.append([client.sign(note, w.keys[rs.LAB])])[0]
    fixed = w.submit("correction", rs.LAB, corrects=evidence.index, reason="备注有误",
                     replacement={**note, "note": "对照样品"})
    selected = case_entries(story.views, "C-2026-002")
    assert {opened.index, evidence.index, fixed.index, story.entry["sauce"]} <= set(selected)
    # The flour's chain and the first case's statements about the bread made from it are
    # not this case's: the first case is another case, the bread is downstream and in.
    assert story.entry["bread B-01"] in selected
    assert story.entry["case opened"] not in selected
    assert story.entry["decoy flour D-01"] not in selected
    # The soy maker signed the cited batch: its registrations come along, its blacklisting
    # (a credit change of an organization outside the chain) does not.
    assert story.entry[f"registered {rs.SOY}"] in selected
    assert story.entry["blacklisted"] not in selected
    data = case_bundle(story.views, "C-2026-002").to_bytes()
    assert verify_bundle(data).failures == []


def test_a_withdrawn_credit_change_of_someone_in_the_chain_stays_in_with_its_withdrawal(
    story: Any,
) -> None:
    w, rs = story.world, story_module
    adjusted = w.submit("credit.adjusted", ROOT, org=rs.DISTRIBUTOR, delta=-3, reason="迟报",
                        basis="规则 7", refs=[])
    withdrawn = w.submit("correction", ROOT, corrects=adjusted.index, reason="误报",
                         replacement=None)
    elsewhere = w.submit("credit.adjusted", ROOT, org=rs.SOY, delta=-3, reason="迟报",
                         basis="规则 7", refs=[])
    selected = case_entries(story.views, "C-2026-001")
    assert {adjusted.index, withdrawn.index} <= set(selected)
    assert elsewhere.index not in selected
