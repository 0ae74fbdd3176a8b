"""A complaint through its life (EVENTS.md case.*), as parties submit it over HTTP and with
`qledger submit`, and what a substantiated finding costs the respondent.

A supermarket complains through 12315 about a bakery's bread; the testing institute adds
its report as evidence; the regulator finds the complaint substantiated. The bakery's
credit then explains the lost points by the resolving entry. Told twice, once for each
edge a party may use, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli import main
from ledger import keys
from tests.support import ROOT, World, make_gtin, make_uscc

BAKERY, SHOP, LAB = make_uscc(31), make_uscc(32), make_uscc(33)
BREAD = make_gtin(31)


def setting(world: World) -> int:
    """The bakery's bread, sold to the shop; the index of the lab's failed check."""
    world.register(BAKERY, "麦香烘焙", "producer")
    world.register(SHOP, "东街超市", "retailer")
    world.register(LAB, "海峡检测中心", "lab")
    world.produce(BAKERY, BREAD, "B-01", 100, product="全麦面包", unit="个")
    world.ship(BAKERY, BREAD, "B-01", 40, SHOP, "S-1")
    world.receive(SHOP, "S-1", 40)
    return world.submit(
        "check.recorded", LAB, gtin=BREAD, lot="B-01", subject=SHOP, kind="third_party",
        stage="circulation", sampled_at="2026-11-22T07:00:00Z", standard="GB 7099-2015",
        items=[{"name": "霉菌", "value": "300", "limit": "150", "unit": "CFU/g",
                "verdict": "fail"}], verdict="fail", report_no="HX-2026-118").index


def the_case(world: World, case: str, report: int) -> list[dict[str, Any]]:
    """The three statements of the case, signed by their parties, in order."""
    return [
        world.envelope("case.opened", SHOP, case=case, respondent=BAKERY,
                       batches=[{"gtin": BREAD, "lot": "B-01"}], summary="顾客投诉面包发霉",
                       channel="12315"),
        world.envelope("case.evidence", LAB, case=case, refs=[report],
                       note="委托检验霉菌超标"),
        world.envelope("case.resolved", ROOT, case=case, finding="substantiated",
                       summary="经查属实，责令整改", refs=[report]),
    ]


def assert_the_finding_costs_the_bakery(explain: list[dict[str, Any]], resolved: int,
                                        case: str) -> None:
    lines = [line for line in explain if line["entry"] == resolved]
    assert lines == [{"entry": resolved, "delta": -5, "rule": "case.substantiated",
                      "reason": f"case {case} resolved substantiated against it"}]


def test_a_complaint_over_http_from_opening_to_a_substantiated_finding(db_url: str) -> None:
    world = World(db_url)
    report = setting(world)
    with TestClient(create_app(world.ledger)) as client:  # closes the app's views after
        indexes = []
        for envelope in the_case(world, "C-HTTP-1", report):
            answer = client.post("/v1/entries", content=json.dumps(envelope),
                                 headers={"Content-Type": "application/json"})
            assert answer.status_code == 201, answer.text
            indexes.append(answer.json()["index"])
        opened, evidence, resolved = indexes

        record = client.get("/v1/cases/C-HTTP-1").json()
        assert (record["status"], record["finding"]) == ("resolved", "substantiated")
        assert (record["opened_entry"], record["resolved_entry"]) == (opened, resolved)
        assert [(s["entry"], s["type"]) for s in record["statements"]] == [
            (opened, "case.opened"), (evidence, "case.evidence"), (resolved, "case.resolved")]

        credit = client.get(f"/v1/orgs/{BAKERY}").json()["credit"]
        assert (credit["score"], credit["grade"]) == (95, "A")
        assert_the_finding_costs_the_bakery(credit["explain"], resolved, "C-HTTP-1")
        # The complainant and the lab lose nothing.
        assert client.get(f"/v1/orgs/{SHOP}").json()["credit"]["score"] == 100
        # A closed case takes no more evidence.
        late = world.envelope("case.evidence", LAB, case="C-HTTP-1", refs=[], note="补充")
        assert client.post("/v1/entries", content=json.dumps(late),
                           headers={"Content-Type": "application/json"}).status_code == 422
    world.ledger.close()


def test_a_complaint_submitted_with_qledger_submit(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    world = World(db_url)
    report = setting(world)
    keys.write_private_key(tmp_path / "log.pem", world.log_key)
    monkeypatch.setenv("QLEDGER_LOG_KEY", str(tmp_path / "log.pem"))
    indexes = []
    for n, envelope in enumerate(the_case(world, "C-CLI-1", report)):
        path = tmp_path / f"step-{n}.json"
        path.write_text(json.dumps(envelope))
        assert main(["submit", "--db", db_url, "--quiet", str(path)]) == 0
        indexes.append(json.loads(capsys.readouterr().out)["index"])
    resolved = indexes[-1]

    assert main(["org", BAKERY, "--json", "--db", db_url]) == 0
    profile = json.loads(capsys.readouterr().out)
    assert profile["credit"]["score"] == 95
    assert_the_finding_costs_the_bakery(profile["credit"]["explain"], resolved, "C-CLI-1")
    # The case's bundle holds all three statements and the report they cite.
    out = tmp_path / "case.json"
    assert main(["bundle", "--db", db_url, "--case", "C-CLI-1", "-o", str(out)]) == 0
    capsys.readouterr()
    bundled = {e["index"] for e in json.loads(out.read_bytes())["entries"]}
    assert {*indexes, report} <= bundled
    assert main(["verify-bundle", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"verified {len(bundled)} entries")
    world.ledger.close()
