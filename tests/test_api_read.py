"""The read side over HTTP, on the demo ledger: what a shopper's phone, a bank and an
investigator get back."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import demo
from api.app import create_app
from ledger.application import Ledger


Shop = tuple[TestClient, demo.Demo, Ledger]


@pytest.fixture
def shop(tmp_path: Path, db_url: str) -> Shop:
    built = demo.build(db_url, tmp_path / "log.pem", tmp_path / "root.pem")
    from ledger import keys

    ledger = Ledger(db_url, log_key=keys.load_private_key(tmp_path / "log.pem"))
    return TestClient(create_app(ledger)), built, ledger


JSON = {"accept": "application/json"}


def test_a_shopper_scanning_bread_made_from_recalled_flour_sees_it_is_recalled(shop: Shop) -> None:
    client, built, _ = shop
    gtin, lot = built.recalled_bread
    view = client.get(f"/01/{gtin}/10/{lot}", headers=JSON).json()
    assert view["status"] == "recalled"
    assert [r["upstream"] for r in view["recalls"]] == [True]
    assert view["producer"]["uscc"] == demo.BAKERY and view["producer"]["grade"] == "A"
    page = client.get(f"/01/{gtin}/10/{lot}")
    assert page.headers["content-type"].startswith("text/html")
    assert 'class="banner recalled"' in page.text and "已召回" in page.text
    assert "RECALLED" in client.get(f"/01/{gtin}/10/{lot}?lang=en").text


def test_a_clean_loaf_is_ok_and_short_gtins_redirect_to_the_canonical_uri(shop: Shop) -> None:
    client, built, _ = shop
    gtin, lot = built.clean_bread
    assert client.get(f"/01/{gtin}/10/{lot}", headers=JSON).json()["status"] == "ok"
    moved = client.get(f"/01/{gtin[1:]}/10/{lot}", follow_redirects=False)
    assert moved.status_code == 301 and moved.headers["location"] == f"/01/{gtin}/10/{lot}"


def test_bad_gtins_and_unknown_batches_are_problems(shop: Shop) -> None:
    client, built, _ = shop
    gtin, lot = built.clean_bread
    bad = gtin[:-1] + str((int(gtin[-1]) + 1) % 10)
    answer = client.get(f"/01/{bad}/10/{lot}", headers=JSON)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert client.get(f"/01/{gtin}/10/NOPE", headers=JSON).status_code == 404


def test_the_reach_of_the_recall_and_the_mills_credit(shop: Shop) -> None:
    client, built, _ = shop
    down = client.get(f"/v1/batches/{demo.FLOUR}/FL20261025-2/trace?direction=down").json()
    assert down["organizations"] == sorted(
        [demo.MILL, demo.BAKERY, demo.DISTRIBUTOR, demo.MART_A, demo.MART_B])
    mill = client.get(f"/v1/orgs/{demo.MILL}").json()["credit"]
    assert (mill["score"], mill["grade"]) == (82, "B")
    assert [line["delta"] for line in mill["explain"]] == [100, -10, -8]
    listed = client.get("/v1/blacklist").json()["blacklist"]
    assert [entry["org"] for entry in listed] == [demo.WORKSHOP]


def test_another_worker_sees_a_write_at_once(shop: Shop, db_url: str, tmp_path: Path) -> None:
    """Two API workers share one database: a recall recorded through one is on the scan
    page served by the other on the next request."""
    client, built, ledger = shop
    from ledger import client as signing
    from ledger import keys

    other = TestClient(create_app(Ledger(db_url, log_key=keys.load_private_key(tmp_path / "log.pem"))))
    gtin, lot = built.clean_bread
    assert other.get(f"/01/{gtin}/10/{lot}", headers=JSON).json()["status"] == "ok"
    root = keys.load_private_key(tmp_path / "root.pem")
    recall = signing.sign(signing.new_statement(
        "recall.issued", demo.REGULATOR, gtin=gtin, lots=[lot], level=1, reason="包装破损"), root)
    assert client.post("/v1/entries", json=recall).status_code == 201
    assert other.get(f"/01/{gtin}/10/{lot}", headers=JSON).json()["status"] == "recalled"


def test_free_text_is_escaped_on_the_page(shop: Shop, tmp_path: Path) -> None:
    client, built, _ = shop
    from ledger import client as signing
    from ledger import keys

    root = keys.load_private_key(tmp_path / "root.pem")
    gtin, lot = built.clean_bread
    recall = signing.sign(signing.new_statement(
        "recall.issued", demo.REGULATOR, gtin=gtin, lots=[lot], level=3,
        reason="<script>alert(1)</script>' OR 1=1 --"), root)
    assert client.post("/v1/entries", json=recall).status_code == 201
    page = client.get(f"/01/{gtin}/10/{lot}").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_a_client_flooding_the_public_routes_is_slowed_down_with_429(tmp_path: Path) -> None:
    """A scraper asks for scan pages as fast as it can: past the limit it gets 429 problems
    with Retry-After, while writes are not limited."""
    from api.settings import Settings
    from ledger import keys

    db = str(tmp_path / "q.db")
    built = demo.build(db, tmp_path / "log.pem", tmp_path / "root.pem")
    ledger = Ledger(db, log_key=keys.load_private_key(tmp_path / "log.pem"))
    client = TestClient(create_app(ledger, Settings(db=db, read_rate_per_minute=5)))
    gtin, lot = built.clean_bread
    answers = [client.get(f"/01/{gtin}/10/{lot}", headers=JSON) for _ in range(7)]
    assert [a.status_code for a in answers] == [200] * 5 + [429] * 2
    assert answers[-1].headers["content-type"] == "application/problem+json"
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert answers[-1].json()["type"].endswith("/rate-limited")
    assert client.post("/v1/entries", content=b"{}").status_code != 429
    assert client.get("/v1/checkpoint").status_code == 200


def test_the_rate_limiter_refills_over_time() -> None:
    from api.ratelimit import RateLimiter

    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])
    assert all(limiter.wait_for("a") == 0 for _ in range(60))
    assert limiter.wait_for("a") > 0 and limiter.wait_for("b") == 0
    now[0] += 1.0
    assert limiter.wait_for("a") == 0


def test_metrics_count_refusals_and_time_routes_by_template(shop: Shop) -> None:
    client, built, ledger = shop
    gtin, lot = built.clean_bread
    client.get(f"/01/{gtin}/10/{lot}", headers=JSON)
    client.post("/v1/entries", content=b"not json")
    text = client.get("/metrics").text
    assert f"qledger_log_size {ledger.size()}" in text
    assert 'qledger_rejections_total{reason="bad-json"}' in text
    assert 'route="/01/{gtin}/10/{lot}"' in text and gtin not in text


def test_every_public_read_route_draws_on_the_same_allowance(tmp_path: Path) -> None:
    """Pages, products, label sheets and case exports are public too: once a client's
    allowance is spent, every one of them answers 429, while the log's own routes do not."""
    from api.settings import Settings
    from ledger import keys

    db = str(tmp_path / "q.db")
    built = demo.build(db, tmp_path / "log.pem", tmp_path / "root.pem")
    ledger = Ledger(db, log_key=keys.load_private_key(tmp_path / "log.pem"))
    client = TestClient(create_app(ledger, Settings(db=db, read_rate_per_minute=1)))
    gtin, lot = built.clean_bread
    assert client.get("/v1/blacklist").status_code == 200  # the one request allowed
    public = [f"/01/{gtin}", f"/01/{gtin}/10/{lot}", f"/v1/batches/{gtin}/{lot}",
              f"/v1/products/{gtin}", f"/v1/orgs/{demo.BAKERY}", f"/orgs/{demo.BAKERY}",
              "/blacklist", f"/v1/qr/{gtin}/{lot}.svg", f"/v1/labels/{gtin}/{lot}.svg",
              "/cases/any", "/v1/cases/any/bundle"]
    assert {path: client.get(path).status_code for path in public} == {p: 429 for p in public}
    assert client.get("/v1/checkpoint").status_code == 200


def test_a_worker_reads_what_another_worker_recorded_without_catching_up_itself(
        tmp_path: Path, db_url: str) -> None:
    """Each worker's views catch up at the start of every read: a blacklisting recorded
    through another `Ledger` on the same database (another worker) shows in this worker's
    very next scan, with a checkpoint covering it."""
    from datetime import UTC, datetime

    from ledger import client as signer, keys

    built = demo.build(db_url, tmp_path / "log.pem", tmp_path / "root.pem")
    log_key = keys.load_private_key(tmp_path / "log.pem")
    worker = TestClient(create_app(Ledger(db_url, log_key=log_key)))
    gtin, lot = built.clean_bread
    before = worker.get(f"/01/{gtin}/10/{lot}", headers=JSON).json()
    assert before["status"] == "ok" and before["producer"]["blacklisted"] is False

    other = Ledger(db_url, log_key=log_key)
    other.append([signer.sign(signer.new_statement(
        "blacklist.added", demo.REGULATOR, issued_at=datetime.now(UTC), org=demo.BAKERY,
        reason="拒不履行召回义务", basis="《食品安全法》", refs=[]),
        keys.load_private_key(tmp_path / "root.pem"))])
    after = worker.get(f"/01/{gtin}/10/{lot}", headers=JSON).json()
    assert after["status"] == "producer_blacklisted" and after["producer"]["blacklisted"] is True
    assert after["checkpoint"]["tree_size"] == other.size() > before["checkpoint"]["tree_size"]
    assert worker.get(f"/v1/orgs/{demo.BAKERY}").json()["credit"]["blacklisted"] is True
    other.close()
