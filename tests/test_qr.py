"""QR codes hold exactly the batch's GS1 Digital Link URI: drawn by the API and the CLI,
decoded by zxing-cpp, parsed back by biip."""

from __future__ import annotations

import io
from pathlib import Path

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
from traceability.qr import digital_link, qr_png


def decode(png: bytes) -> str:
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(results) == 1
    return str(results[0].text)


def test_the_api_draws_a_code_a_phone_can_read(tmp_path: Path) -> None:
    db = str(tmp_path / "q.db")
    built = demo.build(db, tmp_path / "log.pem", tmp_path / "root.pem")
    ledger = Ledger(db, log_key=keys.load_private_key(tmp_path / "log.pem"))
    client = TestClient(create_app(ledger, Settings(db=db, resolver="https://id.example.cn")))
    gtin, lot = built.recalled_bread
    png = client.get(f"/v1/qr/{gtin[1:]}/{lot}.png")  # a GTIN-13 is accepted too
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    uri = decode(png.content)
    assert uri == f"https://id.example.cn/01/{gtin}/10/{lot}"
    parsed = parse(uri)
    assert parsed.gtin is not None and parsed.gtin.value == gtin
    element = parsed.gs1_digital_link_uri.element_strings[1]  # type: ignore[union-attr]
    assert (element.ai.ai, element.value) == ("10", lot)
    svg = client.get(f"/v1/qr/{gtin}/{lot}.svg")
    assert svg.headers["content-type"] == "image/svg+xml" and b"<svg" in svg.content
    assert client.get(f"/v1/qr/{gtin}/{lot}.gif").status_code == 400


@pytest.mark.parametrize("lot", ["A1", "L/2026%1", "x&y?z=1", "a" * 20])
def test_lots_with_uri_delimiters_survive_the_round_trip(lot: str) -> None:
    uri = digital_link("https://id.example", "6920023000105", lot)
    assert decode(qr_png(uri)) == uri
    element = parse(uri).gs1_digital_link_uri.element_strings[1]  # type: ignore[union-attr]
    assert element.value == lot


def test_qledger_qr_writes_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "label.png"
    assert main(["qr", "06920023000105", "BR20261028-B", "-o", str(out),
                 "--resolver", "https://id.example"]) == 0
    assert decode(out.read_bytes()) == capsys.readouterr().out.strip()
    assert main(["qr", "06920023000105", "BR20261028-B", "-o", str(tmp_path / "x.gif")]) == 2
