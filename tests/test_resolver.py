"""The GS1 Digital Link resolver on the demo ledger: a product and its lots, a batch, one
serialised loaf, short GTINs, bad codes, and the link set a machine asks for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from api import demo
from api.app import create_app
from api.settings import Settings
from ledger import keys
from ledger.application import Ledger
from tests.support import make_gtin

RESOLVER = "https://id.example.cn"
JSON = {"accept": "application/json"}
LINKSET = {"accept": "application/linkset+json"}
VOC = "https://gs1.org/voc/"

Shop = tuple[TestClient, demo.Demo]


@pytest.fixture
def shop(tmp_path: Path, db_url: str) -> Iterator[Shop]:
    built = demo.build(db_url, tmp_path / "log.pem", tmp_path / "root.pem")
    ledger = Ledger(db_url, log_key=keys.load_private_key(tmp_path / "log.pem"))
    settings = Settings(db=db_url, resolver=RESOLVER, read_rate_per_minute=0)
    with TestClient(create_app(ledger, settings)) as client:  # closes the views after
        yield client, built
    ledger.close()


def test_the_product_lists_its_lots_each_linking_to_its_scan_page(shop: Shop) -> None:
    """The bakery's bread GTIN: one product, one producer, its two lots newest first."""
    client, built = shop
    gtin, _ = built.clean_bread
    product = client.get(f"/01/{gtin}", headers=JSON).json()
    assert product["gtin"] == gtin and product["category"] == "food"
    assert [p["uscc"] for p in product["producers"]] == [demo.BAKERY]
    lots = {lot["lot"] for lot in product["lots"]}
    assert {built.clean_bread[1], built.recalled_bread[1]} <= lots
    assert product["lot_count"] == len(product["lots"])
    page = client.get(f"/01/{gtin}")
    assert page.headers["content-type"].startswith("text/html")
    assert product["product"] in page.text
    assert f'href="/01/{gtin}/10/{built.clean_bread[1]}"' in page.text
    assert client.get(f"/v1/products/{gtin}").json() == product


def test_an_unknown_product_is_not_found(shop: Shop) -> None:
    client, _ = shop
    answer = client.get(f"/01/{make_gtin(4242)}", headers=JSON)  # valid code, never recorded
    assert answer.status_code == 404 and answer.json()["type"].endswith("/not-found")


def test_a_serialised_loaf_shows_its_batch_and_echoes_the_serial(shop: Shop) -> None:
    client, built = shop
    gtin, lot = built.recalled_bread
    item = client.get(f"/01/{gtin}/10/{lot}/21/SN-000123", headers=JSON).json()
    assert item["serial"] == "SN-000123"
    assert item["status"] == "recalled" and item["batch"]["lot"] == lot
    assert "serial" not in client.get(f"/01/{gtin}/10/{lot}", headers=JSON).json()
    assert 'class="banner recalled"' in client.get(f"/01/{gtin}/10/{lot}/21/7").text


@pytest.mark.parametrize("serial", ["a" * 21, "SN 1", "序列号", "#1"])
def test_serials_outside_gs1_ai_21_are_refused(shop: Shop, serial: str) -> None:
    client, built = shop
    gtin, lot = built.clean_bread
    answer = client.get(f"/01/{gtin}/10/{lot}/21/{quote(serial)}", headers=JSON)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert "serial" in answer.json()["detail"]


def test_short_gtins_move_to_the_canonical_uri_on_every_route_keeping_the_query(shop: Shop) -> None:
    client, built = shop
    gtin, lot = built.clean_bread  # a GTIN-14 with indicator 0: its GTIN-13 drops the 0
    for short, canonical in [
        (f"/01/{gtin[1:]}", f"/01/{gtin}"),
        (f"/01/{gtin[1:]}/10/{lot}", f"/01/{gtin}/10/{lot}"),
        (f"/01/{gtin[1:]}/10/{lot}/21/X1", f"/01/{gtin}/10/{lot}/21/X1"),
    ]:
        moved = client.get(short + "?lang=en&linkType=all", follow_redirects=False)
        assert moved.status_code == 301
        assert moved.headers["location"] == canonical + "?lang=en&linkType=all"
    bad = gtin[1:-1] + str((int(gtin[-1]) + 1) % 10)
    for path in (f"/01/{bad}", f"/01/{bad}/10/{lot}", f"/01/{bad}/10/{lot}/21/X1"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 400 and "check digit" in answer.json()["detail"]


def test_a_machine_gets_the_link_set_of_a_batch(shop: Shop) -> None:
    """A bank's or a retailer's system asks what the resolver knows about a batch."""
    client, built = shop
    gtin, lot = built.recalled_bread
    anchor = f"{RESOLVER}/01/{gtin}/10/{lot}"
    answer = client.get(f"/01/{gtin}/10/{lot}", headers=LINKSET)
    assert answer.headers["content-type"] == "application/linkset+json"
    (links,) = answer.json()["linkset"]
    assert links["anchor"] == anchor
    assert links[VOC + "defaultLink"][0]["href"] == anchor
    assert links[VOC + "pip"][0]["href"] == f"{RESOLVER}/v1/batches/{gtin}/{lot}"
    assert "recalled" in links[VOC + "recallStatus"][0]["title"]
    assert [link["href"].rsplit("=", 1)[1] for link in links[VOC + "traceability"]] == ["up", "down"]
    view = client.get(f"/01/{gtin}/10/{lot}", headers=JSON).json()
    proofs = [link["href"] for link in links[VOC + "certificationInfo"]]
    assert proofs[-1] == f"{RESOLVER}/v1/entries/{view['batch']['entry']}/proof"
    assert client.get(f"/01/{gtin}/10/{lot}?linkType=all").json() == answer.json()
    # Every link leads somewhere that answers (the resolver is this server here).
    for rel, targets in links.items():
        if rel != "anchor":
            for target in targets:
                path = target["href"].removeprefix(RESOLVER)
                assert client.get(path, headers={"accept": target["type"]}).status_code == 200


def test_the_flour_mills_failed_check_is_in_its_certification_info(shop: Shop) -> None:
    client, _ = shop
    links = client.get(f"/01/{demo.FLOUR}/10/FL20261025-2?linkType=all").json()["linkset"][0]
    titles = [link["title"] for link in links[VOC + "certificationInfo"]]
    assert any(title.endswith(": fail") for title in titles)


def test_normal_answers_point_to_the_link_set(shop: Shop) -> None:
    client, built = shop
    gtin, lot = built.clean_bread
    for path in (f"/01/{gtin}", f"/01/{gtin}/10/{lot}", f"/01/{gtin}/10/{lot}/21/9"):
        for headers in ({}, JSON):
            answer = client.get(path, headers=headers)
            assert answer.headers["link"] == (f'<{RESOLVER}{path}?linkType=all>; rel="linkset"; '
                                              'type="application/linkset+json"')


def test_a_link_type_redirects_to_its_link_and_an_unknown_one_to_the_default(shop: Shop) -> None:
    client, built = shop
    gtin, lot = built.clean_bread
    base = f"/01/{gtin}/10/{lot}"
    for asked, expected in [
        ("gs1:pip", f"{RESOLVER}/v1/batches/{gtin}/{lot}"),
        ("https://gs1.org/voc/traceability", f"{RESOLVER}/v1/batches/{gtin}/{lot}/trace?direction=up"),
        ("gs1:defaultLink", RESOLVER + base),
        ("gs1:recipeInfo", RESOLVER + base),  # none of that type here: the default link
    ]:
        moved = client.get(base, params={"linkType": asked}, follow_redirects=False)
        assert (moved.status_code, moved.headers["location"]) == (307, expected)
    product = client.get(f"/01/{gtin}?linkType=gs1:pip", follow_redirects=False)
    assert product.headers["location"] == f"{RESOLVER}/v1/products/{gtin}"


def test_the_openapi_document_names_every_parameter_of_the_resolver_routes(shop: Shop) -> None:
    """The resolver reads its parameters from the request itself, so its OpenAPI
    operations must still name each one, as declared parameters would be named."""
    client, _ = shop
    paths = client.get("/openapi.json").json()["paths"]
    for route, path_names in [("/01/{gtin}", ["gtin"]), ("/01/{gtin}/10/{lot}", ["gtin", "lot"]),
                              ("/01/{gtin}/10/{lot}/21/{serial}", ["gtin", "lot", "serial"])]:
        parameters = paths[route]["get"]["parameters"]
        assert [(p["name"], p["in"], p["required"]) for p in parameters] == [
            *((name, "path", True) for name in path_names), ("linkType", "query", False)]
        assert all(p["schema"]["type"] == "string" for p in parameters if p["in"] == "path")
