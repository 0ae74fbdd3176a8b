"""Every exporter against a corpus of hostile strings: markup, formulas in several
delimiters and widths, noncharacters, bidirectional controls, and names as long as the
fields allow. Each output must parse with a strict parser, hold no formula a spreadsheet
of any locale would run, and show no override raw.

The write side refuses noncharacters and overrides now (EVENTS.md "Roles"), so the
ledger here is written as older code would have written it: the free-text rule is
switched off while the story is recorded, as in a ledger imported from before the rule.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from html.parser import HTMLParser

import openpyxl
import pypdfium2
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from ledger.text import forbidden_text
from tests.support import ROOT, World, make_gtin, make_uscc
from traceability.exports import FORMULA_START, case_sheet, to_csv_bytes, to_xlsx
from traceability.labels import run_labels, sheet_pdf, sheet_svg
from traceability.picture import case_picture, render_svg
from traceability.views import Views

MILL = make_uscc(701)
GTIN = make_gtin(71)
LOT = "H-2026-01"
CASE = "HOSTILE-1"

CORPUS = [
    "<script>alert(1)</script>", "]]><!--", "&amp;&lt;", "\"'`",
    "=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "＝SUM(A1)", "＋1", "－1", "＠A1",
    "Mill;=cmd|' /C calc'!A0;", "Mill,=1+1", "Mill|=1", "Mill\t=1", " =1", "\n=1", "\r@A1",
    "\ufffe", "\uffff", "\ufdd0", "\U0010ffff", "\x00", "\x0b", "\x85",
    "\u202eexe.jpg", "\u2066isolate\u2069", "\u202aembed\u202c", "zero\u200bwidth\u200d",
]

SPREADSHEET_DELIMITERS = [",", ";", "\t", "|"]


def hostile_text(i: int) -> str:
    return f"{CORPUS[i % len(CORPUS)]} 第{i}号"


class Story:
    def __init__(self, db: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.world = w = World(db)
        with monkeypatch.context() as older:  # a ledger from before the free-text rule
            older.setattr("ledger.statements.forbidden_text", lambda value: None)
            w.register(MILL, "恶意" + "面" * 190, "producer")  # a name near its 200 limit
            w.produce(MILL, GTIN, LOT, 100, product=hostile_text(0), unit=hostile_text(5))
            w.submit("case.opened", ROOT, case=CASE, respondent=MILL,
                     batches=[{"gtin": GTIN, "lot": LOT}], summary="投诉 " + "长" * 1990,
                     channel="12315")
            for i, _ in enumerate(CORPUS):
                w.submit("case.evidence", ROOT, case=CASE, refs=[], note=hostile_text(i))
        self.views = Views(w.ledger)
        self.views.catch_up()


@pytest.fixture
def story(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Story]:
    s = Story(db_url, monkeypatch)
    yield s
    s.views.close()
    s.world.ledger.close()


def forbidden_in_document(document: str) -> str | None:
    """forbidden_text over a whole document, whose own line breaks and tabs are layout."""
    return forbidden_text(re.sub("[\n\r\t]", "", document))


def no_formula_in_any_locale(text: str) -> None:
    """Split the cell as a spreadsheet of each locale would; no piece may start a formula."""
    for delimiter in SPREADSHEET_DELIMITERS:
        for piece in re.split(f"[{re.escape(delimiter)}\r\n]", text):
            assert not piece.lstrip(' "').startswith(FORMULA_START), (delimiter, text)


def test_csv_holds_no_formula_in_any_locale_and_no_forbidden_character(story: Story) -> None:
    data = to_csv_bytes(case_sheet(story.views, CASE)).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(data, newline=""), strict=True))
    assert len(rows) > len(CORPUS)
    for row in rows:
        for cell in row:
            no_formula_in_any_locale(cell)
            assert forbidden_text(cell) is None, cell
    # The text is still there for a reader: the formula only lost its power.
    assert any("'=cmd|' /C calc'!A0" in cell for row in rows for cell in row)


def test_xlsx_reopens_and_holds_text_not_formulas(story: Story) -> None:
    data = to_xlsx(case_sheet(story.views, CASE))
    book = openpyxl.load_workbook(io.BytesIO(data))  # raises on ill-formed XML
    cells = [c for row in book.active.iter_rows() for c in row if c.value is not None]
    assert all(c.data_type != "f" for c in cells)
    assert not any(forbidden_text(str(c.value)) for c in cells)
    assert any("<script>" in str(c.value) for c in cells)


def test_the_case_picture_is_well_formed_xml_without_overrides(story: Story) -> None:
    svg = render_svg(case_picture(story.views, CASE))
    ET.fromstring(svg.encode())  # a strict XML parser
    assert forbidden_in_document(svg) is None


def test_label_sheets_parse_as_svg_and_open_as_pdf(story: Story) -> None:
    labels = run_labels("https://q.example", GTIN, LOT, hostile_text(19), 3)  # U+FFFE
    svg = sheet_svg(labels)
    ET.fromstring(svg)
    assert forbidden_in_document(svg.decode()) is None
    pdf = pypdfium2.PdfDocument(sheet_pdf(labels))
    assert len(pdf) == 1
    pdf.close()


class _Strict(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.mark.parametrize("path", [f"/cases/{CASE}", f"/orgs/{MILL}", f"/01/{GTIN}/10/{LOT}"])
def test_pages_escape_markup_and_show_no_override_raw(story: Story, path: str) -> None:
    client = TestClient(create_app(story.world.ledger))
    r = client.get(path, headers={"Accept": "text/html"})
    assert r.status_code == 200, r.text[:300]
    parser = _Strict()
    parser.feed(r.text)
    assert "script" not in parser.tags
    assert forbidden_in_document(r.text) is None, forbidden_in_document(r.text)
