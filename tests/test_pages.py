"""The pages people read, on the demo ledger: the scan page, an organization's credit
page and the blacklist page, in Chinese and English, with every free text escaped."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import demo
from api.app import create_app
from api.regions import province
from ledger import client as signing
from ledger import keys
from ledger.application import Ledger
from tests.hostile import HOSTILE, SCRIPT, SCRIPT_ESCAPED, SQL_ESCAPED, add_hostile_text
from tests.support import make_uscc

Shop = tuple[TestClient, demo.Demo, Ledger, Path]
BROWSER = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
JSON = {"accept": "application/json"}


@pytest.fixture
def shop(tmp_path: Path, db_url: str) -> Iterator[Shop]:
    built = demo.build(db_url, tmp_path / "log.pem", tmp_path / "root.pem")
    ledger = Ledger(db_url, log_key=keys.load_private_key(tmp_path / "log.pem"))
    # Entering the client runs the app's lifespan, which closes the views' connections.
    with TestClient(create_app(ledger)) as client:
        yield client, built, ledger, tmp_path
    ledger.close()


def _links(page: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', page)


def test_the_scan_page_names_the_producer_its_grade_the_origin_and_links_the_proof(
        shop: Shop) -> None:
    client, built, _, _ = shop
    gtin, lot = built.recalled_bread
    view = client.get(f"/01/{gtin}/10/{lot}", headers=JSON).json()
    page = client.get(f"/01/{gtin}/10/{lot}", headers=BROWSER).text
    # The bakery, graded A, made the bread; the wheat came from the farm in Fuqing (福建省).
    assert 'id="grade">A<' in page and "福州麦香烘焙食品有限公司" in page
    assert f'href="/orgs/{demo.BAKERY}?lang=zh"' in page
    assert "福清市禾丰粮食种植专业合作社" in page and "福建省 · 350181" in page
    # The recall is of the flour upstream, and its reason is on the banner.
    assert "上游原料" in page and "铅含量超标" in page
    # "Verified in the ledger": the checkpoint size, and the batch entry's proof.
    proof = f"/v1/entries/{view['batch']['entry']}/proof"
    assert f'id="proof-link" href="{proof}"' in page
    assert f'id="tree-size">{view["checkpoint"]["tree_size"]}<' in page
    assert client.get(proof).json()["index"] == view["batch"]["entry"]
    english = client.get(f"/01/{gtin}/10/{lot}?lang=en", headers=BROWSER).text
    assert "Fujian · 350181" in english and "upstream ingredient" in english
    assert '<html lang="en">' in english and 'href="?lang=zh"' in english


def test_the_banner_for_a_failed_check_and_for_a_blacklisted_producer(shop: Shop) -> None:
    """The workshop's twisted dough sticks failed their check (and the workshop is
    blacklisted: the failed check is worse, so it is what the banner says). Then the
    regulator blacklists the bakery: its clean loaf now warns about its producer."""
    client, built, _, tmp_path = shop
    snack = client.get(f"/01/{demo.SNACK}/10/MH-1101", headers=BROWSER).text
    assert 'class="banner failed_check"' in snack and "抽检不合格" in snack
    assert "FJQI-2026-11105" in snack and 'id="grade">D<' in snack and "已列入黑名单" in snack

    root = keys.load_private_key(tmp_path / "root.pem")
    listing = signing.sign(signing.new_statement(
        "blacklist.added", demo.REGULATOR, org=demo.BAKERY, reason="拒不召回问题产品",
        basis="《食品安全法》", refs=[]), root)
    assert client.post("/v1/entries", json=listing).status_code == 201
    gtin, lot = built.clean_bread
    loaf = client.get(f"/01/{gtin}/10/{lot}?lang=en", headers=BROWSER).text
    assert 'class="banner producer_blacklisted"' in loaf
    assert "Producer is on the quality blacklist" in loaf and 'id="grade">D<' in loaf


def test_the_mills_credit_page_explains_every_point_with_a_link_to_its_proof(
        shop: Shop) -> None:
    """A bank looks up the flour mill: B, 82 points, and why: it started at 100, failed a
    supervisory check (−10) and recalled a lot (−8)."""
    client, _, _, _ = shop
    org = client.get(f"/v1/orgs/{demo.MILL}").json()
    page = client.get(f"/orgs/{demo.MILL}").text
    assert "福州金穗面粉有限公司" in page and demo.MILL in page
    assert 'id="grade">B<' in page and 'id="score">82<' in page
    assert "未列入黑名单" in page and "福建省 · 350100" in page
    proofs = {link for link in _links(page) if link.endswith("/proof")}
    for line in org["credit"]["explain"]:
        assert f"/v1/entries/{line['entry']}/proof" in proofs
    assert ">+100<" in page and ">-10<" in page and ">-8<" in page
    assert "抽检不合格" in page and "召回" in page
    english = client.get(f"/orgs/{demo.MILL}?lang=en").text
    assert "failed check" in english and "Not blacklisted" in english


def test_the_bakerys_page_shows_the_complaint_and_the_farms_its_award(shop: Shop) -> None:
    client, _, _, _ = shop
    bakery = client.get(f"/orgs/{demo.BAKERY}").text
    assert "FJ-12315-2026-0457" in bakery and "消费者经12315反映吐司口感异常" in bakery
    assert "被投诉方" in bakery and "属实" in bakery
    farm = client.get(f"/orgs/{demo.FARM}?lang=en").text
    assert "福建省名牌农产品" in farm and "award" in farm


def test_the_blacklist_page_shows_who_is_listed_why_and_the_repair(shop: Shop) -> None:
    """The workshop is on the blacklist; after the regulator records its credit repair it
    is no longer listed, and the history shows both steps."""
    client, _, _, tmp_path = shop
    page = client.get("/blacklist").text
    now = page.split('id="history"')[0]
    assert "福州仓山某食品加工坊" in now and "生产销售不合格食品且拒不整改" in now
    assert f'href="/orgs/{demo.WORKSHOP}?lang=zh"' in now and "第九条" in now
    workshop = client.get(f"/orgs/{demo.WORKSHOP}").text
    assert 'id="grade">D<' in workshop and "一律评为最低等级" in workshop

    root = keys.load_private_key(tmp_path / "root.pem")
    repair = signing.sign(signing.new_statement(
        "blacklist.removed", demo.REGULATOR, org=demo.WORKSHOP, reason="已完成整改，信用修复",
        refs=[]), root)
    assert client.post("/v1/entries", json=repair).status_code == 201
    page = client.get("/blacklist").text
    now, history = page.split('id="history"')
    assert "福州仓山某食品加工坊" not in now
    assert "已完成整改，信用修复" in history and "移出（信用修复）" in history
    assert "列入" in history and "生产销售不合格食品且拒不整改" in history
    english = client.get("/blacklist?lang=en").text
    assert "removed (credit repaired)" in english and "Listed now" in english


def test_a_bad_or_unknown_uscc_is_a_problem_an_html_page_for_a_browser(shop: Shop) -> None:
    client, _, _, _ = shop
    bad = demo.MILL[:-1] + ("0" if demo.MILL[-1] != "0" else "1")
    unknown = make_uscc(4242, "350100")
    for uscc, status in ((bad, 400), (unknown, 404), ("nope", 400)):
        page = client.get(f"/orgs/{uscc}", headers=BROWSER)
        assert page.status_code == status
        assert page.headers["content-type"].startswith("text/html")
        assert 'id="detail"' in page.text and uscc in page.text
        problem = client.get(f"/orgs/{uscc}", headers=JSON)
        assert problem.status_code == status
        assert problem.headers["content-type"] == "application/problem+json"
    english = client.get(f"/orgs/{unknown}?lang=en", headers=BROWSER).text
    assert "Something went wrong" in english and "not registered" in english


def test_a_browser_scanning_a_bad_code_gets_an_error_page_an_app_gets_a_problem(
        shop: Shop) -> None:
    """The same problems as ever, as a page when a phone's browser asks: a mistyped
    GTIN (400), a lot never recorded (404), a path that is no page (404)."""
    client, built, _, _ = shop
    gtin, lot = built.clean_bread
    bad = gtin[:-1] + str((int(gtin[-1]) + 1) % 10)
    for path, status in ((f"/01/{bad}/10/{lot}", 400), (f"/01/{gtin}/10/NOPE", 404),
                         (f"/orgs/{demo.MILL}/more", 404)):
        page = client.get(path, headers=BROWSER)
        assert page.status_code == status, path
        assert page.headers["content-type"].startswith("text/html"), path
        assert f"({status})" in page.text and 'id="detail"' in page.text
        for accept in (JSON, {"accept": "*/*"}):
            problem = client.get(path, headers=accept)
            assert problem.status_code == status
            assert problem.headers["content-type"] == "application/problem+json"
    # The API's own routes answer problems whoever asks.
    api = client.get(f"/v1/orgs/{demo.MILL[:-1]}0", headers=BROWSER)
    assert api.headers["content-type"] == "application/problem+json"


def test_a_page_that_fails_inside_shows_no_stack_trace(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    client, _, _, _ = shop
    from api.routes import pages

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(pages.orgs, "profile", broken)
    quiet = TestClient(client.app, raise_server_exceptions=False)
    page = quiet.get(f"/orgs/{demo.MILL}", headers=BROWSER)
    assert page.status_code == 500 and page.headers["content-type"].startswith("text/html")
    assert "secret internals" not in page.text and "Traceback" not in page.text
    assert quiet.get(f"/orgs/{demo.MILL}").headers["content-type"] == "application/problem+json"


def test_a_language_the_pages_do_not_speak_falls_back_to_chinese(shop: Shop) -> None:
    client, built, _, _ = shop
    gtin, lot = built.clean_bread
    page = client.get(f"/01/{gtin}/10/{lot}?lang=fr", headers=BROWSER)
    assert page.status_code == 200 and '<html lang="zh-CN">' in page.text
    assert client.get("/blacklist?lang=xx").status_code == 200


def test_hostile_free_text_is_escaped_on_every_page(shop: Shop) -> None:
    """Someone with a signing key writes a script tag and an SQL fragment into every
    free-text field it can; every page shows them as text, and the ledger still reads."""
    client, _, ledger, tmp_path = shop
    evil = add_hostile_text(ledger, keys.load_private_key(tmp_path / "root.pem"))
    gtin, lot = evil.batch
    assert client.get(f"/v1/orgs/{evil.org}").json()["name"] == HOSTILE
    pages = {
        "scan": client.get(f"/01/{gtin}/10/{lot}", headers=BROWSER),
        "scan-en": client.get(f"/01/{gtin}/10/{lot}?lang=en", headers=BROWSER),
        "org": client.get(f"/orgs/{evil.org}", headers=BROWSER),
        "blacklist": client.get("/blacklist", headers=BROWSER),
    }
    for name, page in pages.items():
        assert page.headers["content-type"].startswith("text/html"), name
        assert "<script" not in page.text.lower(), name
        assert SCRIPT_ESCAPED in page.text, name
    # An error page echoes the bad USCC it was given (a path segment holds no slash).
    error = client.get("/orgs/%3Cscript%3Ealert(1)%3C%5Cscript%3E", headers=BROWSER)
    assert error.status_code == 400 and error.headers["content-type"].startswith("text/html")
    assert "<script" not in error.text.lower() and "&lt;script&gt;alert(1)" in error.text
    for name in ("scan", "org", "blacklist"):
        assert pages[name].status_code == 200
        assert SQL_ESCAPED in pages[name].text, name
    org = pages["org"].text
    # The name, the summary of the case, the award, the adjustment and the listing.
    assert org.count(SCRIPT_ESCAPED) >= 5 and SCRIPT not in org
    assert 'class="banner recalled"' in pages["scan"].text


def test_province_names_of_gb_t_2260_codes() -> None:
    assert province("350181") == "福建省" and province("350181", "en") == "Fujian"
    assert province("110000") == "北京市" and province("820000", "en") == "Macao"
    assert province("990000") is None and province("35") is None and province("35018x") is None
