"""Identifiers holding `/` or `%` in URL paths: the ledger routes on the raw path.

A bakery records lot `A1` (clean) and lot `A1/21/7` (GS1 AI 10 allows `/`); the market
regulator recalls `A1/21/7` at level 1. The ledger's own QR code for it encodes the lot
as one path segment, `A1%2F21%2F7` (PROTOCOL.md §5). A server that decodes the path
before routing reads that as lot `A1` with serial `7`, and a shopper scanning the
recalled loaf sees the green page of the clean lot. Here every route that takes a lot,
a serial or a case id is asked for one holding `/` (and `%`), and must answer about
exactly that identifier, decoded once.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

import httpx
import pytest
import zxingcpp
from fastapi.testclient import TestClient
from PIL import Image

from api import rawpath
from api.app import PAGE_ROUTERS, ROUTERS, create_app
from api.cli import main
from api.routes import casepages
from api.settings import Settings
from tests.support import ROOT, World, make_gtin, make_uscc
from tests.test_cli_url import server  # noqa: F401 - the uvicorn fixture, over `world`

BAKERY = make_uscc(701)
SHOP = make_uscc(702, "350200")
BREAD = make_gtin(701)

RECALLED = "A1/21/7"  # reads, undecoded, as lot A1 + serial 7
RECALLED_PATH = "A1%2F21%2F7"
CLEAN = "A1"
LITERAL = "X%2FY"  # a lot whose characters are `X`, `%`, `2`, `F`, `Y`
SLASHED = "X/Y"
PERCENT = "50%OFF"

CASE = "QX/2026/7"  # PROTOCOL tokens allow '/'
CASE_PATH = "QX%2F2026%2F7"
RESOLVER = "https://id.example.cn"
JSON = {"accept": "application/json"}
HTML = {"accept": "text/html"}


def segment(value: str) -> str:
    return quote(value, safe="")


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    w = World(db_url)
    w.register(BAKERY, "榕城烘焙食品有限公司（测试）", "producer")
    w.register(SHOP, "鼓楼社区超市（测试）", "retailer", region="350200")
    for lot in (CLEAN, RECALLED, SLASHED, LITERAL, PERCENT):
        w.produce(BAKERY, BREAD, lot, 100, product="全麦吐司 400g")
    w.submit("recall.issued", ROOT, gtin=BREAD, lots=[RECALLED], level=1,
             reason="金属异物，立即停止销售")
    w.submit("case.opened", SHOP, case=CASE, respondent=BAKERY,
             batches=[{"gtin": BREAD, "lot": RECALLED}], summary="吐司中发现金属丝",
             channel="12315")
    # Two cases whose ids a decoded path confuses: `QX/bundle` is not the bundle of `QX`.
    w.submit("case.opened", SHOP, case="QX", respondent=BAKERY, batches=[],
             summary="服务态度差", channel="letter")
    w.submit("case.opened", SHOP, case="QX/bundle", respondent=BAKERY, batches=[],
             summary="包装破损", channel="12315")
    yield w
    w.ledger.close()


@pytest.fixture
def client(world: World, db_url: str) -> Iterator[TestClient]:
    settings = Settings(db=db_url, resolver=RESOLVER, read_rate_per_minute=0)
    with TestClient(create_app(world.ledger, settings)) as c:
        yield c


def _decode_qr(png: bytes) -> str:
    (result,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    return str(result.text)


# ---- the story: the recalled loaf's own QR code -------------------------------------------


def test_the_recalled_lots_own_qr_code_lands_on_its_red_page_not_on_lot_a1(
    world: World, server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Over a real uvicorn server, which decodes `%2F` in `scope["path"]`. The bakery
    prints its label with `qledger qr`; a shopper's phone reads the code and opens it."""
    label = tmp_path / "label.png"
    assert main(["qr", BREAD, RECALLED, "-o", str(label), "--resolver", server]) == 0
    uri = _decode_qr(label.read_bytes())
    assert uri == f"{server}/01/{BREAD}/10/{RECALLED_PATH}" == capsys.readouterr().out.strip()
    # The recalled batch, whole, at level 1: not lot A1 with serial 7.
    view = httpx.get(uri, headers=JSON).json()
    assert (view["batch"]["lot"], view["status"]) == (RECALLED, "recalled")
    assert [r["level"] for r in view["recalls"]] == [1]
    assert "serial" not in view
    page = httpx.get(uri, headers=HTML)
    assert page.status_code == 200 and 'class="banner recalled"' in page.text
    assert "banner ok" not in page.text
    # The server draws the same code for the same lot.
    png = httpx.get(f"{server}/v1/qr/{BREAD}/{RECALLED_PATH}.png")
    assert png.status_code == 200 and _decode_qr(png.content) == uri
    # What the code used to land on, and what an unencoded URI still means (GS1 Digital
    # Link: bare slashes separate the keys): lot A1, serial 7, a green page.
    decoy = httpx.get(f"{server}/01/{BREAD}/10/{RECALLED}", headers=JSON).json()
    assert (decoy["batch"]["lot"], decoy["serial"], decoy["status"]) == (CLEAN, "7", "ok")


def test_the_link_set_of_the_recalled_lot_leads_only_to_the_recalled_lot(
    client: TestClient,
) -> None:
    path = f"/01/{BREAD}/10/{RECALLED_PATH}"
    answer = client.get(path, params={"linkType": "all"})
    (links,) = answer.json()["linkset"]
    assert links["anchor"] == RESOLVER + path
    assert answer.headers["link"].startswith(f"<{RESOLVER}{path}?linkType=all>")
    hrefs = [t["href"] for rel, ts in links.items() if rel != "anchor" for t in ts]
    assert all("/v1/entries/" in h or RECALLED_PATH in h for h in hrefs)
    for rel, targets in links.items():
        if rel == "anchor":
            continue
        for target in targets:
            followed = client.get(target["href"].removeprefix(RESOLVER),
                                  headers={"accept": target["type"]})
            assert followed.status_code == 200, (rel, target["href"], followed.text)
            if "/v1/batches/" in target["href"]:
                body = followed.json()
                lot = body["root"]["lot"] if "root" in body else body["batch"]["lot"]
                assert lot == RECALLED
    moved = client.get(path, params={"linkType": "gs1:recallStatus"}, follow_redirects=False)
    assert moved.headers["location"] == f"{RESOLVER}/v1/batches/{BREAD}/{RECALLED_PATH}"
    assert client.get(moved.headers["location"].removeprefix(RESOLVER)).json()["status"] == \
        "recalled"


def test_a_short_gtin_moves_to_the_canonical_uri_with_the_lot_still_encoded(
    client: TestClient,
) -> None:
    moved = client.get(f"/01/{BREAD[1:]}/10/{RECALLED_PATH}/21/9?lang=en",
                       follow_redirects=False)
    assert moved.status_code == 301
    assert moved.headers["location"] == f"/01/{BREAD}/10/{RECALLED_PATH}/21/9?lang=en"


def test_metrics_time_an_encoded_lot_under_the_lot_route(client: TestClient) -> None:
    client.get(f"/01/{BREAD}/10/{RECALLED_PATH}", headers=JSON)
    series = [line for line in client.get("/metrics").text.splitlines()
              if line.startswith("qledger_request_seconds_count")]
    assert series == ['qledger_request_seconds_count{method="GET",route="/01/{gtin}/10/{lot}"} 1']


# ---- serials ------------------------------------------------------------------------------


def test_an_item_of_a_lot_with_slashes_is_that_lots_item(client: TestClient) -> None:
    item = client.get(f"/01/{BREAD}/10/{RECALLED_PATH}/21/9", headers=JSON).json()
    assert (item["batch"]["lot"], item["serial"], item["status"]) == (RECALLED, "9", "recalled")
    # A serial may hold '/' too (GS1 AI 21): encoded, it is one serial.
    item = client.get(f"/01/{BREAD}/10/{CLEAN}/21/S%2F1", headers=JSON).json()
    assert (item["batch"]["lot"], item["serial"]) == (CLEAN, "S/1")


# ---- every route family that takes a lot --------------------------------------------------


@pytest.mark.parametrize("route, media_type", [
    ("/v1/batches/{gtin}/{lot}", "application/json"),
    ("/v1/batches/{gtin}/{lot}/trace?direction=down", "application/json"),
    ("/v1/qr/{gtin}/{lot}.svg", "image/svg+xml"),
    ("/v1/qr/{gtin}/{lot}.png", "image/png"),
    ("/v1/labels/{gtin}/{lot}.svg?count=3", "image/svg+xml"),
])
def test_each_batch_route_takes_the_lot_as_one_encoded_segment(
    client: TestClient, route: str, media_type: str,
) -> None:
    answer = client.get(route.format(gtin=BREAD, lot=RECALLED_PATH))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith(media_type)
    if media_type == "application/json":
        body = answer.json()
        assert (body["root"] if "root" in body else body["batch"])["lot"] == RECALLED
    if route.startswith("/v1/labels/"):
        assert f'data-uri="{RESOLVER}/01/{BREAD}/10/{RECALLED_PATH}"' in answer.text


def test_the_qr_code_of_a_lot_with_slashes_holds_the_encoded_lot(client: TestClient) -> None:
    png = client.get(f"/v1/qr/{BREAD}/{RECALLED_PATH}.png").content
    assert _decode_qr(png) == f"{RESOLVER}/01/{BREAD}/10/{RECALLED_PATH}"


def test_the_product_page_links_each_lot_to_its_own_scan_page(client: TestClient) -> None:
    page = client.get(f"/01/{BREAD}", headers=HTML).text
    for lot in (RECALLED, SLASHED, LITERAL, PERCENT):
        href = f"/01/{BREAD}/10/{segment(lot)}"
        assert f'href="{href}"' in page
        assert client.get(href, headers=JSON).json()["batch"]["lot"] == lot


def test_a_percent_in_a_lot_is_decoded_once_and_never_becomes_a_slash(client: TestClient) -> None:
    """`X%252FY` is the lot `X%2FY`; `X%2FY` is the lot `X/Y`: two batches, never mixed."""
    assert client.get(f"/01/{BREAD}/10/X%252FY", headers=JSON).json()["batch"]["lot"] == LITERAL
    assert client.get(f"/01/{BREAD}/10/X%2FY", headers=JSON).json()["batch"]["lot"] == SLASHED
    assert client.get(f"/v1/batches/{BREAD}/X%252FY").json()["batch"]["lot"] == LITERAL
    assert client.get(f"/v1/batches/{BREAD}/X%2fY").json()["batch"]["lot"] == SLASHED
    # Decoded twice, `%25252F` would become a slash; decoded once it is `%252F`: no batch.
    unknown = client.get(f"/v1/batches/{BREAD}/X%25252FY")
    assert unknown.status_code == 404 and "X%252FY" in unknown.json()["detail"]
    # A lot with a percent sign: its links encode it, and lead back to it.
    path = f"/01/{BREAD}/10/50%25OFF"
    assert client.get(path, headers=JSON).json()["batch"]["lot"] == PERCENT
    (links,) = client.get(path, params={"linkType": "all"}).json()["linkset"]
    assert links["anchor"] == RESOLVER + path


# ---- case ids with '/' --------------------------------------------------------------------


def test_a_case_id_with_slashes_on_its_json_bundle_page_and_exports(client: TestClient) -> None:
    case = client.get(f"/v1/cases/{CASE_PATH}")
    assert case.status_code == 200 and case.json()["case"] == CASE
    bundle = client.get(f"/v1/cases/{CASE_PATH}/bundle")
    assert bundle.status_code == 200 and bundle.json()["case"] == CASE
    assert bundle.headers["content-disposition"] == \
        'attachment; filename="case-QX_2026_7.bundle.json"'
    page = client.get(f"/cases/{CASE_PATH}", headers=HTML)
    assert page.status_code == 200 and CASE in page.text
    # Every link on the page is one encoded segment per identifier, and answers.
    for name in ("entries.csv", "entries.xlsx", "trace.svg", "bundle"):
        href = f"/v1/cases/{CASE_PATH}/{name}"
        assert f'href="{href}' in page.text
        assert client.get(href).status_code == 200, href
    batch = f"/01/{BREAD}/10/{RECALLED_PATH}"
    assert f'href="{batch}"' in page.text
    assert client.get(batch, headers=JSON).json()["status"] == "recalled"


def test_a_case_named_like_another_cases_bundle_is_that_case(client: TestClient) -> None:
    """`QX/bundle`, encoded, is the case QX/bundle, not the bundle of case QX."""
    case = client.get("/v1/cases/QX%2Fbundle")
    assert case.status_code == 200 and case.json()["case"] == "QX/bundle"
    assert client.get("/v1/cases/QX/bundle").json()["case"] == "QX"  # the bundle of QX
    assert client.get("/v1/cases/QX%2Fbundle/bundle").json()["case"] == "QX/bundle"


def test_a_case_page_reached_by_an_older_unencoded_link_still_works(client: TestClient) -> None:
    page = client.get(f"/cases/{CASE}", headers=HTML)
    assert page.status_code == 200 and f'href="/v1/cases/{CASE_PATH}/bundle"' in page.text


# ---- the routing step itself --------------------------------------------------------------


@pytest.mark.parametrize("raw, routed, value", [
    (b"/01/1/10/A1%2F21%2F7", "/01/1/10/A1%2F21%2F7", "A1/21/7"),  # encoded slashes kept
    (b"/01/1/10/a%2fb", "/01/1/10/a%2Fb", "a/b"),  # in either case
    (b"/01/1/10/X%252FY", "/01/1/10/X%252FY", "X%2FY"),  # an encoded percent kept
    (b"/01/1/10/50%OFF", "/01/1/10/50%25OFF", "50%OFF"),  # a bare percent is itself
    (b"/01/1/10/%41%2D1", "/01/1/10/A-1", "A-1"),  # every other escape decoded
    (b"/cases/%E6%A1%88", "/cases/\u6848", "\u6848"),  # UTF-8
], ids=["slash", "lowercase-hex", "double", "bare-percent", "other", "utf-8"])
def test_the_router_sees_encoded_slashes_and_percents_still_encoded(
    raw: bytes, routed: str, value: str,
) -> None:
    assert rawpath.routing_path(raw, unquote(raw.decode())) == routed
    assert rawpath.Segment().convert(routed.rsplit("/", 1)[1]) == value


def test_a_root_path_the_server_added_to_the_decoded_path_only_is_kept() -> None:
    assert rawpath.routing_path(b"/10/A%2FB", "/api/10/A/B", "/api") == "/api/10/A%2FB"


def test_every_route_parameter_decodes_its_segment_exactly_once() -> None:
    """A route declared with a plain `{name}` would see `%2F` undecoded (or, before the
    raw path, split the identifier): every parameter uses the segment convertors."""
    routers = (*ROUTERS, *PAGE_ROUTERS, casepages.router)
    declared = {(route.path, name): type(convertor).__name__
                for router in routers for route in router.routes
                for name, convertor in getattr(route, "param_convertors", {}).items()}
    assert declared, "no route with parameters found"
    assert {key for key, kind in declared.items()
            if kind not in ("Segment", "Segments")} == set()


def test_the_openapi_document_names_the_parameters_without_their_convertors(
    client: TestClient,
) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for route, names in [
        ("/01/{gtin}/10/{lot}/21/{serial}", ["gtin", "lot", "serial"]),
        ("/v1/batches/{gtin}/{lot}", ["gtin", "lot"]),
        ("/v1/batches/{gtin}/{lot}/trace", ["gtin", "lot"]),
        ("/v1/qr/{gtin}/{name}", ["gtin", "name"]),
        ("/v1/labels/{gtin}/{name}", ["gtin", "name"]),
        ("/v1/cases/{case_id}", ["case_id"]),
        ("/v1/cases/{case_id}/bundle", ["case_id"]),
        ("/cases/{case_id}", ["case_id"]),
        ("/v1/cases/{case_id}/entries.csv", ["case_id"]),
        ("/v1/entries/{index}", ["index"]),
    ]:
        parameters = paths[route]["get"]["parameters"]
        assert [p["name"] for p in parameters if p["in"] == "path"] == names, route
    assert not [p for p in paths if ":" in p]
