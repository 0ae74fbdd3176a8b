"""Label sheets for a production run: the bakery prints serialised labels for a lot of
bread; every code on the printed page reads back as that loaf's Digital Link URI."""

from __future__ import annotations

import io
from pathlib import Path
from xml.etree import ElementTree

import cairosvg
import pypdfium2
import pytest
import zxingcpp
from biip import parse
from fastapi.testclient import TestClient
from PIL import Image

from api import demo
from api.app import create_app
from api.cli import main
from api.settings import Settings
from ledger import keys
from ledger.application import Ledger

RESOLVER = "https://id.example.cn"


@pytest.fixture(scope="module")
def bakery(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestClient, demo.Demo]:
    tmp = tmp_path_factory.mktemp("labels")
    db = str(tmp / "q.db")
    built = demo.build(db, tmp / "log.pem", tmp / "root.pem")
    ledger = Ledger(db, log_key=keys.load_private_key(tmp / "log.pem"))
    return TestClient(create_app(ledger, Settings(db=db, resolver=RESOLVER,
                                                  read_rate_per_minute=0))), built


def pages(pdf: bytes) -> list[Image.Image]:
    """Each page printed at 300 dpi."""
    document = pypdfium2.PdfDocument(pdf)
    return [page.render(scale=300 / 72).to_pil() for page in document]


def codes(image: Image.Image) -> list[str]:
    return [str(r.text) for r in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]


def test_a_run_of_serialised_labels_prints_one_readable_code_per_loaf(bakery: tuple[TestClient, demo.Demo]) -> None:
    client, built = bakery
    gtin, lot = built.clean_bread
    answer = client.get(f"/v1/labels/{gtin}/{lot}.pdf", params={"count": 50, "serial_from": "000098"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/pdf"
    printed = pages(answer.content)
    assert len(printed) == 3  # 24 + 24 + 2
    expected = [f"{RESOLVER}/01/{gtin}/10/{lot}/21/{n:06d}" for n in range(98, 148)]
    read = [sorted(codes(page)) for page in printed]
    assert read == [sorted(expected[:24]), sorted(expected[24:48]), sorted(expected[48:])]
    item = parse(expected[2])
    assert item.gtin is not None and item.gtin.value == gtin
    strings = item.gs1_digital_link_uri.element_strings  # type: ignore[union-attr]
    assert [(e.ai.ai, e.value) for e in strings[1:]] == [("10", lot), ("21", "000100")]
    text = pypdfium2.PdfDocument(answer.content)[0].get_textpage().get_text_range()
    assert f"GTIN {gtin}" in text and f"LOT {lot}" in text and "SN 000098" in text


def test_labels_without_serials_all_carry_the_batch_uri(bakery: tuple[TestClient, demo.Demo]) -> None:
    client, built = bakery
    gtin, lot = built.recalled_bread
    printed = pages(client.get(f"/v1/labels/{gtin[1:]}/{lot}.pdf?count=30").content)
    assert len(printed) == 2
    assert codes(printed[1]) == [f"{RESOLVER}/01/{gtin}/10/{lot}"] * 6


def test_an_svg_sheet_is_one_page_whose_codes_read_back(bakery: tuple[TestClient, demo.Demo]) -> None:
    client, built = bakery
    gtin, lot = built.clean_bread
    answer = client.get(f"/v1/labels/{gtin}/{lot}.svg", params={"count": 5, "serial_from": "7"})
    assert answer.headers["content-type"] == "image/svg+xml"
    svg = ElementTree.fromstring(answer.content)
    groups = [g for g in svg.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "label"]
    assert len(groups) == 5
    assert "全麦" in answer.text  # the product name, as text
    png = cairosvg.svg2png(bytestring=answer.content, output_width=2480)
    expected = [f"{RESOLVER}/01/{gtin}/10/{lot}/21/{n}" for n in range(7, 12)]
    assert sorted(codes(Image.open(io.BytesIO(png)))) == sorted(expected)


@pytest.mark.parametrize("path, params, status", [
    ("{gtin}/{lot}.svg", {"count": 25}, 400),  # more than one page
    ("{gtin}/{lot}.pdf", {"count": 1001}, 400),
    ("{gtin}/{lot}.pdf", {"count": 0}, 400),
    ("{gtin}/{lot}.pdf", {"serial_from": "A1"}, 400),
    ("{gtin}/{lot}.pdf", {"count": 3, "serial_from": "99999999999999999999"}, 400),  # 21 digits
    ("{gtin}/{lot}.gif", {}, 400),
    ("{gtin}/NO-SUCH-LOT.pdf", {}, 404),
])
def test_impossible_sheets_are_problems(bakery: tuple[TestClient, demo.Demo], path: str,
                                        params: dict[str, object], status: int) -> None:
    client, built = bakery
    gtin, lot = built.clean_bread
    answer = client.get("/v1/labels/" + path.format(gtin=gtin, lot=lot), params=params)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"


def test_qledger_labels_writes_the_sheet(bakery: tuple[TestClient, demo.Demo], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    _, built = bakery
    gtin, lot = built.clean_bread
    out = tmp_path / "run.pdf"
    assert main(["labels", gtin, lot, "--db", built.db, "--count", "3", "-o", str(out),
                 "--resolver", RESOLVER]) == 0
    (page,) = pages(out.read_bytes())
    assert codes(page) == [f"{RESOLVER}/01/{gtin}/10/{lot}"] * 3
    assert main(["labels", gtin, lot, "--db", built.db, "-o", str(tmp_path / "x.gif")]) == 2
    assert main(["labels", gtin, "NOPE", "--db", built.db, "-o", str(out)]) == 2
    assert main(["labels", gtin, lot, "--db", built.db, "--count", "30",
                 "-o", str(tmp_path / "x.svg")]) == 2
    assert "qledger:" in capsys.readouterr().err
