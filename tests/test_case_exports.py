"""A dispute investigated from the ledger: the case's spreadsheet, picture and page, told on
SQLite and on PostgreSQL.

First the demo chain (api/demo.py): a mill's flour lot FL20261025-2 fails a supervisory
check for lead and is recalled; the bakery baked bread BR20261028-B from it, which went
through the distributor to both supermarkets; one supermarket complains through 12315
about the bread, and the regulator finds the complaint substantiated. The investigator
downloads the case's entries as CSV and XLSX, and its picture as SVG.

Then a hostile case: organizations named like spreadsheet formulas, a product named like
a script, a lot that starts with "=", and a case summary carrying HTML and SQL. Nothing
of it may run in a spreadsheet, a browser, or the database.

Which entries a case holds is the evidence selection's business (traceability.evidence);
these tests assert what holds for any correct selection, and build the index list
themselves wherever they check exact row content.
"""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import openpyxl
import pytest
from fastapi.testclient import TestClient

from api import demo
from api.app import create_app
from api.cli import main
from ledger import keys
from ledger.application import Ledger
from ledger.envelope import Envelope
from ledger.errors import NotFound
from ledger.timefmt import parse_time
from tests.support import ROOT, World, make_gtin, make_uscc
from traceability.cases import case_view
from traceability.evidence import case_entries
from traceability.exports import COLUMNS, Row, case_rows, case_sheet, to_csv, to_csv_bytes, to_xlsx
from traceability.picture import case_picture, render_svg
from traceability.views import Views

CASE = "FJ-12315-2026-0457"
BAD_FLOUR = (demo.FLOUR, "FL20261025-2")
SVG = "{http://www.w3.org/2000/svg}"


@dataclass
class Investigation:
    ledger: Ledger
    views: Views
    db: str

    def index_of(self, sql: str, params: tuple[object, ...]) -> int:
        with self.views.reading() as tx:
            found = tx.value(sql, params)
        assert isinstance(found, int), (sql, params)
        return found

    def envelope(self, index: int) -> dict[str, object]:
        entry: dict[str, object] = json.loads(self.ledger.entry(index).text)
        return entry["envelope"]  # type: ignore[return-value]


@pytest.fixture
def inv(tmp_path: Path, db_url: str) -> Iterator[Investigation]:
    demo.build(db_url, tmp_path / "log.pem", tmp_path / "root.pem")
    ledger = Ledger(db_url, log_key=keys.load_private_key(tmp_path / "log.pem"))
    views = Views.open(ledger)
    yield Investigation(ledger, views, db_url)
    views.close()
    ledger.close()


def _signer_keyid(inv: Investigation, index: int) -> str:
    signatures = inv.envelope(index)["signatures"]
    assert isinstance(signatures, list)
    return " ".join(s["keyid"] for s in signatures)


# ---- the spreadsheet ----------------------------------------------------------------------


def test_each_given_entry_is_one_row_in_the_order_given(inv: Investigation) -> None:
    selected = case_entries(inv.views, CASE)
    rows = case_rows(inv.ledger, inv.views, selected)
    assert [r.index for r in rows] == selected
    assert case_sheet(inv.views, CASE) == rows
    # Whatever the selection holds, it holds the complaint itself and the flour's recall.
    opened = case_view(inv.views, CASE).opened_entry
    recall = inv.index_of("SELECT entry FROM v_recalls WHERE gtin = ? AND lot = ?", BAD_FLOUR)
    assert {opened, recall} <= set(selected)
    assert [r.lot for r in rows if r.type == "recall.issued"] == [BAD_FLOUR[1]]
    shuffled = [selected[-1], selected[0], selected[1]]
    assert [r.index for r in case_rows(inv.ledger, inv.views, shuffled)] == shuffled


def test_the_rows_say_who_did_what_to_which_batch_where_and_when(inv: Investigation) -> None:
    check = inv.index_of("SELECT entry FROM v_checks WHERE gtin = ? AND lot = ? AND verdict = 'fail'",
                         BAD_FLOUR)
    recall = inv.index_of("SELECT entry FROM v_recalls WHERE gtin = ? AND lot = ?", BAD_FLOUR)
    shipped = inv.index_of("SELECT entry FROM v_shipments WHERE shipment = ?", ("SH-MILL-0102",))
    received = inv.index_of("SELECT received_entry FROM v_shipments WHERE shipment = ?",
                            ("SH-MILL-0102",))
    bread = inv.index_of("SELECT entry FROM v_batches WHERE lot = ?", ("BR20261028-B",))
    case = case_view(inv.views, CASE)
    resolved = case.resolved_entry
    assert resolved is not None
    indexes = [check, recall, shipped, received, bread, case.opened_entry, resolved]
    rows = {r.index: r for r in case_rows(inv.ledger, inv.views, indexes, 'en')}

    lab_check = rows[check]
    assert (lab_check.type, lab_check.org, lab_check.org_name, lab_check.region) == (
        "check.recorded", demo.LAB, "福建省产品质量检验研究院（演示）", "350000")
    assert (lab_check.gtin, lab_check.lot, lab_check.verdict, lab_check.counterparty) == (
        *BAD_FLOUR, "fail", demo.MILL)
    assert lab_check.quantity is None
    assert "FJQI-2026-10312" in lab_check.summary and "0.38" in lab_check.summary
    assert (rows[recall].type, rows[recall].org, rows[recall].lot) == (
        "recall.issued", demo.MILL, BAD_FLOUR[1])
    assert "level 2" in rows[recall].summary
    # The shipment and its receipt: same batch and quantity, each signed by its own party.
    for index, signer, other in ((shipped, demo.MILL, demo.BAKERY),
                                 (received, demo.BAKERY, demo.MILL)):
        row = rows[index]
        assert (row.org, row.counterparty, row.gtin, row.lot, row.quantity, row.unit) == (
            signer, other, *BAD_FLOUR, 100, "bag")
    assert (rows[bread].type, rows[bread].quantity, rows[bread].unit, rows[bread].org) == (
        "batch.produced", 3000, "bag", demo.BAKERY)
    assert (rows[case.opened_entry].org, rows[case.opened_entry].counterparty) == (
        demo.MART_B, demo.BAKERY)
    assert rows[resolved].verdict == "substantiated"
    for index, row in rows.items():
        entry = json.loads(inv.ledger.entry(index).text)
        assert row.recorded_at == entry["recorded_at"]
        assert row.keyid == _signer_keyid(inv, index)
        assert parse_time(row.issued_at) <= parse_time(row.recorded_at)


def test_an_index_not_in_the_log_is_not_found(inv: Investigation) -> None:
    with pytest.raises(NotFound):
        case_rows(inv.ledger, inv.views, [0, inv.ledger.size() + 5])
    with pytest.raises(NotFound):
        case_sheet(inv.views, "NO-SUCH-CASE")


def test_the_csv_parses_back_to_the_same_rows(inv: Investigation) -> None:
    rows = case_sheet(inv.views, CASE)
    text = to_csv(rows)
    assert text.startswith(",".join(COLUMNS) + "\r\n")  # RFC 4180: CRLF line ends
    parsed = list(csv.reader(io.StringIO(to_csv_bytes(rows).decode("utf-8-sig"), newline="")))
    assert parsed[0] == list(COLUMNS)
    assert parsed[1:] == [["" if v is None else str(v) for v in r.cells()] for r in rows]


def test_the_xlsx_is_a_sortable_sheet_with_numbers_and_dates(inv: Investigation) -> None:
    rows = case_sheet(inv.views, CASE)
    sheet = openpyxl.load_workbook(io.BytesIO(to_xlsx(rows))).active
    header = [c.value for c in sheet[1]]
    assert header == [f"{c} (UTC)" if c in ("recorded_at", "issued_at") else c for c in COLUMNS]
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == f"A1:O{len(rows) + 1}"
    assert sheet.max_row == len(rows) + 1
    for row, cells in zip(rows, sheet.iter_rows(min_row=2, values_only=True), strict=True):
        expected = list(row.cells())
        for name in ("recorded_at", "issued_at"):
            i = COLUMNS.index(name)
            expected[i] = parse_time(expected[i]).astimezone(UTC).replace(tzinfo=None)
        # openpyxl reads an empty cell as None; empty text is not written.
        assert list(cells) == [None if v == "" else v for v in expected]
    first = next(sheet.iter_rows(min_row=2, max_row=2))
    assert isinstance(first[COLUMNS.index("index")].value, int)
    # The first row naming a batch (the selection opens with registrations, which name none).
    gtins = [c[COLUMNS.index("gtin")] for c in sheet.iter_rows(min_row=2, values_only=True)]
    assert [g for g in gtins if g][0].startswith("0")  # GTIN-14 keeps its zero
    assert sheet.column_dimensions["E"].width > sheet.column_dimensions["A"].width


# ---- the picture --------------------------------------------------------------------------


def _svg(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == f"{SVG}svg"
    return root


def _with_class(root: ET.Element, *classes: str) -> list[ET.Element]:
    return [e for e in root.iter() if set(classes) <= set(e.get("class", "").split())]


def test_the_picture_has_a_lane_per_organization_and_marks_the_bad_flour(inv: Investigation) -> None:
    root = _svg(render_svg(case_picture(inv.views, CASE)))
    lanes = [lane.get("data-org", "") for lane in _with_class(root, "lane")]
    # Farm → mill → bakery → distributor → both marts; never the decoy mill.
    assert sorted(lanes) == sorted({demo.FARM, demo.MILL, demo.BAKERY, demo.DISTRIBUTOR,
                                    demo.MART_A, demo.MART_B})
    assert lanes[:3] == [demo.FARM, demo.MILL, demo.BAKERY]  # the chain runs top to bottom
    names = "".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "福州金穗面粉有限公司" in names and "泉州麦源面粉有限公司" not in names
    batches = {(b.get("data-gtin"), b.get("data-lot")): b.get("data-org")
               for b in _with_class(root, "batch")}
    assert batches[BAD_FLOUR] == demo.MILL and batches[demo.BREAD, "BR20261028-B"] == demo.BAKERY
    assert (demo.DECOY_FLOUR, "QZ-F-1026") not in batches
    for kind in ("recall", "failed-check"):
        marks = _with_class(root, "mark", kind)
        assert [(m.get("data-gtin"), m.get("data-lot")) for m in marks] == [BAD_FLOUR], kind
    assert _with_class(root, "legend-recall") and _with_class(root, "legend-failed-check")
    # Inputs and shipments are arrows between lanes.
    inputs = {(e.get("data-from"), e.get("data-to")) for e in _with_class(root, "edge", "input")}
    assert (f"{demo.FLOUR}/FL20261025-2", f"{demo.BREAD}/BR20261028-B") in inputs
    shipments = {(s.get("data-from"), s.get("data-to"), s.get("data-lot"))
                 for s in _with_class(root, "edge", "shipment")}
    assert (demo.DISTRIBUTOR, demo.MART_A, "BR20261028-B") in shipments
    # Self-contained: nothing fetched from elsewhere, nothing run.
    assert not [e for e in root.iter() if e.tag in (f"{SVG}script", f"{SVG}image", f"{SVG}foreignObject")]
    assert not [e for e in root.iter() if any("href" in k for k in e.attrib)]


# ---- a hostile case -----------------------------------------------------------------------

MAKER = make_uscc(41)
SHOP = make_uscc(42, "350200")
SNACK = make_gtin(41)
LOT = "=1+2"  # GS1 allows '=' and '+' in a lot number
HOSTILE_CASE = "QX/2026:01"  # case ids may hold '/' and ':'
SCRIPT = "<script>alert('x')</script>"
SUMMARY = f"{SCRIPT} '; DROP TABLE v_cases; --"
MAKER_NAME = '=HYPERLINK("http://evil.example","click")'
SHOP_NAME = "@SUM(1+1)"


@dataclass
class Hostile:
    world: World
    views: Views
    check: int
    recall: int
    correction: int


@pytest.fixture
def hostile(db_url: str) -> Iterator[Hostile]:
    w = World(db_url)
    w.register(MAKER, MAKER_NAME, "producer")
    w.register(SHOP, SHOP_NAME, "retailer", region="350200")
    w.produce(MAKER, SNACK, LOT, 100, product=SCRIPT, unit="-bag")
    w.ship(MAKER, SNACK, LOT, 10, SHOP, "S-1")
    w.receive(SHOP, "S-1", 10)
    check = w.submit(
        "check.recorded", ROOT, gtin=SNACK, lot=LOT, subject=MAKER, kind="supervisory",
        stage="circulation", sampled_at="2026-11-21T08:00:00Z", standard="+GB 2762",
        items=[{"name": "-铅", "value": "0.5", "limit": "0.2", "unit": "mg/kg", "verdict": "fail"}],
        verdict="fail", report_no="R-1").index
    recall = w.submit("recall.issued", MAKER, gtin=SNACK, lots=[LOT], level=1,
                      reason="=cmd|' /C calc'!A0").index
    # The maker finds the recall over-classified: level 2, not 1.
    signed = Envelope.from_json(json.loads(w.ledger.entry(recall).text)["envelope"]).statement
    correction = w.submit("correction", MAKER, corrects=recall, reason="级别调整",
                          replacement={**signed, "level": 2}).index
    w.submit("case.opened", SHOP, case=HOSTILE_CASE, respondent=MAKER,
             batches=[{"gtin": SNACK, "lot": LOT}], summary=SUMMARY, channel="12315")
    w.submit("case.evidence", ROOT, case=HOSTILE_CASE, refs=[check], note="=抽检报告")
    w.submit("credit.adjusted", ROOT, org=MAKER, delta=-3, reason="+逾期未整改", basis="规则 7",
             refs=[check])
    # A complaint that names no batch at all.
    w.submit("case.opened", SHOP, case="QX-EMPTY", respondent=MAKER, batches=[],
             summary="服务态度差", channel="letter")
    views = Views.open(w.ledger)
    yield Hostile(w, views, check, recall, correction)
    views.close()
    w.ledger.close()


def test_no_text_becomes_a_formula_in_the_csv(hostile: Hostile) -> None:
    rows = case_sheet(hostile.views, HOSTILE_CASE, "en")
    parsed = list(csv.reader(io.StringIO(to_csv(rows), newline="")))
    cells = [cell for line in parsed[1:] for cell in line]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert "'" + MAKER_NAME in cells and "'" + SHOP_NAME in cells and "'" + LOT in cells
    assert "'-bag" in cells  # the unit of the batch a user typed
    # The apostrophe is all that changed: without it, the row is the row.
    by_index = {int(line[0]): line for line in parsed[1:]}
    recall = by_index[hostile.recall]
    assert recall[COLUMNS.index("lot")] == "'" + LOT
    assert recall[COLUMNS.index("summary")] == "level 1 recall: =cmd|' /C calc'!A0"


def test_no_text_becomes_a_formula_in_the_xlsx(hostile: Hostile) -> None:
    rows = case_sheet(hostile.views, HOSTILE_CASE)
    data = to_xlsx(rows)
    sheet_xml = zipfile.ZipFile(io.BytesIO(data)).read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet_xml and "<f " not in sheet_xml
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    texts = {c.value: c.data_type for line in sheet.iter_rows(min_row=2) for c in line
             if isinstance(c.value, str)}
    # Stored exactly as signed, as text.
    for value in (MAKER_NAME, SHOP_NAME, LOT, "-bag"):
        assert texts.get(value) == "s", value


def test_a_correction_shows_what_it_corrects_and_the_picture_the_corrected_level(
    hostile: Hostile,
) -> None:
    row, = case_rows(hostile.world.ledger, hostile.views, [hostile.correction], 'en')
    assert (row.type, row.org, row.gtin, row.lot) == ("correction", MAKER, SNACK, LOT)
    assert row.summary == (f"corrects entry {hostile.recall} (级别调整): "
                           "level 2 recall: =cmd|' /C calc'!A0")
    root = _svg(render_svg(case_picture(hostile.views, HOSTILE_CASE)))
    recall, = _with_class(root, "mark", "recall")
    assert recall.get("data-entry") == str(hostile.recall)
    assert "L2" in "".join(recall.itertext()) and "L1" not in "".join(recall.itertext())


def test_a_case_without_batches_has_its_respondents_lane_and_a_page(hostile: Hostile) -> None:
    root = _svg(render_svg(case_picture(hostile.views, "QX-EMPTY")))
    assert [lane.get("data-org") for lane in _with_class(root, "lane")] == [MAKER]
    assert not _with_class(root, "batch")
    client = TestClient(create_app(hostile.world.ledger))
    page = client.get("/cases/QX-EMPTY?lang=en", headers={"accept": "text/html"})
    assert page.status_code == 200 and "服务态度差" in page.text
    opened = case_view(hostile.views, "QX-EMPTY").opened_entry
    assert f'<li data-entry="{opened}">' in page.text


def test_the_picture_escapes_every_text(hostile: Hostile) -> None:
    svg = render_svg(case_picture(hostile.views, HOSTILE_CASE), "en")
    assert "<script" not in svg
    root = _svg(svg)
    assert not [e for e in root.iter() if e.tag.endswith("script")]
    texts = [t.text or "" for t in root.iter() if t.tag in (f"{SVG}text", f"{SVG}title")]
    assert any(MAKER_NAME[:15] in t for t in texts)  # lane labels are clipped, not mangled
    assert any(SCRIPT in t for t in texts)  # the product, whole, in the batch's tooltip
    assert [m.get("data-lot") for m in _with_class(root, "mark", "recall")] == [LOT]
    assert [m.get("data-lot") for m in _with_class(root, "mark", "failed-check")] == [LOT]
    assert sorted(lane.get("data-org", "") for lane in _with_class(root, "lane")) == sorted([MAKER, SHOP])


def test_the_case_page_escapes_the_summary_and_serves_the_downloads(hostile: Hostile) -> None:
    client = TestClient(create_app(hostile.world.ledger))
    page = client.get(f"/cases/{HOSTILE_CASE}", headers={"accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script" not in page.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &#39;; DROP TABLE v_cases; --" in page.text
    assert 'class="case-trace"' in page.text  # the picture, inline
    for name in ("entries.csv", "entries.xlsx", "trace.svg", "bundle"):
        # The id is one path segment, its '/' encoded (PROTOCOL.md §5), and the link works.
        assert f'href="/v1/cases/QX%2F2026%3A01/{name}' in page.text
        assert client.get(f"/v1/cases/QX%2F2026%3A01/{name}").status_code == 200
    # The SQL in the summary was data: the case is still there.
    assert case_view(hostile.views, HOSTILE_CASE).summary == SUMMARY
    svg = client.get(f"/v1/cases/{HOSTILE_CASE}/trace.svg")
    assert svg.headers["content-type"] == "image/svg+xml"
    assert svg.headers["content-disposition"] == 'attachment; filename="case-QX_2026_01-trace.svg"'
    _svg(svg.text)


# ---- over HTTP and on the command line -----------------------------------------------------


def test_the_case_page_and_its_downloads_over_http(inv: Investigation) -> None:
    client = TestClient(create_app(inv.ledger))
    page = client.get(f"/cases/{CASE}", headers={"accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "消费者经12315反映吐司口感异常" in page.text and "属实" in page.text
    assert "福州麦香烘焙食品有限公司" in page.text  # the respondent by name
    selected = case_entries(inv.views, CASE)
    # The timeline runs in the order things happened, as their signers date them.
    shown = [int(i) for i in re.findall(r'<li data-entry="(\d+)">', page.text)]
    rows = {r.index: r for r in case_sheet(inv.views, CASE)}
    assert sorted(shown) == selected
    assert shown == sorted(selected, key=lambda i: (rows[i].issued_at, i))
    english = client.get(f"/cases/{CASE}?lang=en", headers={"accept": "text/html"}).text
    assert "Finding: substantiated" in english and "Legend" in english
    # Summaries follow the page's language; the free text is the signer's own.
    assert "2 级召回：监督抽查铅含量超标" in page.text and "监督抽查，生产环节" in page.text
    assert "level 2 recall: 监督抽查铅含量超标" in english
    assert f'href="/v1/cases/{CASE}/entries.csv?lang=en"' in english

    answers = {name: client.get(f"/v1/cases/{CASE}/{name}")
               for name in ("entries.csv", "entries.xlsx", "trace.svg")}
    assert {n: a.status_code for n, a in answers.items()} == dict.fromkeys(answers, 200)
    assert answers["entries.csv"].headers["content-type"] == "text/csv; charset=utf-8"
    assert answers["entries.xlsx"].headers["content-type"] == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
    assert answers["trace.svg"].headers["content-type"] == "image/svg+xml"
    for name, answer in answers.items():
        assert answer.headers["content-disposition"] == f'attachment; filename="case-{CASE}-{name}"'
    lines = list(csv.reader(io.StringIO(answers["entries.csv"].content.decode("utf-8-sig"))))
    assert [int(line[0]) for line in lines[1:]] == selected
    assert lines[1:] == [[str(v) if v is not None else "" for v in r.cells()]
                         for r in case_sheet(inv.views, CASE, "zh")]
    in_english = client.get(f"/v1/cases/{CASE}/entries.csv?lang=en").content.decode("utf-8-sig")
    assert in_english.startswith(",".join(COLUMNS)) and "level 2 recall" in in_english
    sheet = openpyxl.load_workbook(io.BytesIO(answers["entries.xlsx"].content)).active
    assert [r[0] for r in sheet.iter_rows(min_row=2, values_only=True)] == selected
    assert _with_class(_svg(answers["trace.svg"].text), "mark", "recall")


def test_an_unknown_case_is_a_404(inv: Investigation) -> None:
    client = TestClient(create_app(inv.ledger))
    for path in ("/cases/NOPE", "/v1/cases/NOPE/entries.csv", "/v1/cases/NOPE/entries.xlsx",
                 "/v1/cases/NOPE/trace.svg"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["type"].endswith("/not-found")
    page = client.get("/cases/NOPE", headers={"accept": "text/html,*/*"})
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "NOPE" in page.text


def test_the_cli_writes_the_three_files(inv: Investigation, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = {k: tmp_path / f"case.{k}" for k in ("csv", "xlsx", "svg")}
    code = main(["case", CASE, "--db", inv.db, "--csv", str(out["csv"]),
                 "--xlsx", str(out["xlsx"]), "--svg", str(out["svg"])])
    assert code == 0
    selected = case_entries(inv.views, CASE)
    assert f"{len(selected)} entries" in capsys.readouterr().out
    assert out["csv"].read_bytes() == to_csv_bytes(case_sheet(inv.views, CASE))
    sheet = openpyxl.load_workbook(out["xlsx"]).active
    assert sheet.max_row == len(selected) + 1
    _svg(out["svg"].read_text(encoding="utf-8"))

    assert main(["case", "NOPE", "--db", inv.db, "--csv", str(tmp_path / "n.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NOPE" in err
    assert not (tmp_path / "n.csv").exists()
    assert main(["case", CASE, "--db", inv.db]) == 2


def test_every_entry_of_the_ledger_makes_a_row(inv: Investigation) -> None:
    """The evidence of a case may hold any type of entry (registrations of its signers,
    credit changes, awards…): each has its own summary, in plain values."""
    everything = list(range(inv.ledger.size()))
    rows = case_rows(inv.ledger, inv.views, everything)
    assert [r.index for r in rows] == everything
    assert {"org.registered", "key.registered", "blacklist.added", "award.granted",
            "case.opened", "case.resolved"} <= {r.type for r in rows}
    for row in rows:
        assert isinstance(row, Row) and row.summary and row.summary != row.type, row
        assert all(v is None or isinstance(v, (str, int)) for v in row.cells())
    key = next(r for r in rows if r.type == "key.registered" and r.counterparty == demo.LAB)
    lab_row = next(r for r in rows if r.org == demo.LAB)
    assert lab_row.keyid[:16] in key.summary  # the key that signs the lab's entries


def test_evidence_and_credit_rows(hostile: Hostile) -> None:
    everything = list(range(hostile.world.ledger.size()))
    rows = {r.type: r for r in case_rows(hostile.world.ledger, hostile.views, everything, 'en')}
    assert rows["case.evidence"].summary == (
        f"evidence for case {HOSTILE_CASE} (entries {hostile.check}): =抽检报告")
    credit = rows["credit.adjusted"]
    assert (credit.org, credit.counterparty) == (ROOT, MAKER)
    assert credit.summary == "credit -3 (规则 7): +逾期未整改"
