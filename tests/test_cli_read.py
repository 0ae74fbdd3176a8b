"""`qledger trace|org|blacklist|stats|rebuild` on the demo ledger (CLI.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api import demo
from api.cli import main


@pytest.fixture
def demo_db(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    demo.build(db_url, tmp_path / "log.pem", tmp_path / "root.pem")
    monkeypatch.setenv("QLEDGER_LOG_KEY", str(tmp_path / "log.pem"))
    return db_url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_trace_down_from_the_recalled_flour_names_everyone_who_got_it(
    demo_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "trace", demo.FLOUR, "FL20261025-2", "--down", "--json", "--db", demo_db)
    assert code == 0
    graph = json.loads(out)
    assert graph["organizations"] == sorted(
        [demo.MILL, demo.BAKERY, demo.DISTRIBUTOR, demo.MART_A, demo.MART_B])
    code, out, _ = run(capsys, "trace", demo.FLOUR, "FL20261025-2", "--down", "--db", demo_db)
    assert code == 0 and "organizations:" in out


def test_org_explains_the_score_line_by_line(demo_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "org", demo.MILL, "--db", demo_db)
    assert code == 0 and "credit: 82 grade B" in out and "-10" in out and "-8" in out


def test_blacklist_stats_and_rebuild(demo_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "blacklist", "--json", "--db", demo_db)
    assert code == 0 and [row["org"] for row in json.loads(out)] == [demo.WORKSHOP]
    code, out, _ = run(capsys, "stats", "--json", "--db", demo_db)
    rows = json.loads(out)
    production = [r for r in rows if r["stage"] == "production" and r["category"] == "food"]
    assert production and production[0]["missed"] is True
    code, out, _ = run(capsys, "rebuild", "--db", demo_db)
    assert code == 0 and "57 entries" in out


def test_bad_identifiers_are_one_line_and_status_2(demo_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "trace", "1234", "x", "--up", "--db", demo_db)
    assert code == 2 and len(err.splitlines()) == 1
    code, _, err = run(capsys, "org", "91350100MA2Y00002X", "--db", demo_db)
    assert code == 2 and "check digit" in err
