"""An organization's credit explained a page at a time ("The server's edges", item 7), on
SQLite and PostgreSQL.

The story: the regulator has adjusted the flour mill's credit 250 times, small points up
and down (150 down, 100 up), and granted it a provincial award that runs out tomorrow. A
bank asks for the mill's credit. Before, the answer listed every line at once (1,000
adjustments made a 170 KB list); now the answer lists the first 50 lines and a cursor,
and the bank follows the cursors for the rest. Every line comes exactly once, in entry
order, and the lines add up to the score, which is still summed over all of them, even
when the award runs out while the bank is paging. Bad paging parameters are a 400
problem, never a 500. PROTOCOL.md §5: `GET /v1/orgs/{uscc}` and `/v1/orgs/{uscc}/explain`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.support import ROOT, World, make_uscc
from traceability.credit import credit, explain
from traceability.views import Views

MILL = make_uscc(501)
ADJUSTMENTS = 250
BROWSER = {"accept": "text/html"}


@dataclass
class Paging:
    world: World
    client: TestClient
    views: Views


def adjustment(world: World, delta: int, n: int) -> dict[str, Any]:
    return world.envelope("credit.adjusted", ROOT, org=MILL, delta=delta,
                          reason=f"第 {n} 次抽查整改情况", basis="《产品质量法》", refs=[])


@pytest.fixture
def paging(db_url: str) -> Iterator[Paging]:
    """The mill, its 250 adjustments (appended in one batch), and the award: 252 lines
    with the mill's registration, scoring 100 − 150 + 100 + 5 = 55."""
    world = World(db_url)
    world.register(MILL, "闽江面粉厂（测试）", "producer")
    world.ledger.append([adjustment(world, -1 if n < 150 else 1, n) for n in range(ADJUSTMENTS)])
    world.submit("award.granted", ROOT, org=MILL, title="福建省名牌产品",
                 valid_until="2026-11-23T08:00:00Z")  # a day after the world's clock
    views = Views(world.ledger)
    with TestClient(create_app(world.ledger)) as client:
        yield Paging(world, client, views)
    views.close()
    world.ledger.close()


def follow(client: TestClient, first: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Every line of the mill's explain from its answer's first page on, and how many
    pages it took."""
    lines, following, pages = list(first["explain"]), first["explain_next"], 1
    while following is not None:
        page = client.get(f"/v1/orgs/{MILL}/explain", params={"cursor": following})
        assert page.status_code == 200
        body = page.json()
        assert set(body) == {"items", "next"}  # the answer of every list (PROTOCOL.md §5)
        assert 0 < len(body["items"]) <= 50
        lines += body["items"]
        following, pages = body["next"], pages + 1
    return lines, pages


def test_the_answer_lists_a_first_page_and_the_cursors_give_every_line_once_in_order(
        paging: Paging) -> None:
    answer = paging.client.get(f"/v1/orgs/{MILL}").json()["credit"]
    assert answer["score"] == 55
    assert len(answer["explain"]) == 50 and answer["explain_next"] is not None
    lines, pages = follow(paging.client, answer)
    assert pages == 6  # 252 lines: five full pages of 50 and one of 2
    # Every line exactly once, in entry order: the same lines as the whole, unpaged list.
    whole = credit(paging.views, MILL).explain
    assert lines == [line.to_json() for line in whole]
    assert [line["entry"] for line in lines] == sorted({line["entry"] for line in lines})
    # The score is still summed over every line, not over a page.
    assert sum(line["delta"] for line in lines) == answer["score"] == sum(
        line.delta for line in whole)


def test_a_bank_may_ask_for_bigger_pages_up_to_500(paging: Paging) -> None:
    url = f"/v1/orgs/{MILL}/explain"
    whole = paging.client.get(url, params={"limit": 500}).json()
    assert len(whole["items"]) == 252 and whole["next"] is None
    shown, following = [], None
    while True:
        page = paging.client.get(url, params={"limit": 100, **(
            {"cursor": following} if following else {})}).json()
        shown += page["items"]
        following = page["next"]
        if following is None:
            break
    assert shown == whole["items"]


def test_pages_explain_the_score_of_the_first_page_even_when_an_award_runs_out_between(
        paging: Paging) -> None:
    """The bank reads the first page, and a day passes before it asks for the rest: the
    award has run out, and the mill scores 50 now. The pages it follows still explain
    the 55 it was shown, award line included, because the cursor carries the time the
    score was taken at; a fresh first page explains the 50."""
    first = paging.client.get(f"/v1/orgs/{MILL}").json()["credit"]
    paging.world.clock.advance(days=1)
    lines, _ = follow(paging.client, first)
    assert sum(line["delta"] for line in lines) == first["score"] == 55
    assert [line["rule"].split(".")[0] for line in lines].count("award") == 1
    now = paging.client.get(f"/v1/orgs/{MILL}").json()["credit"]
    assert now["score"] == 50
    lines_now, _ = follow(paging.client, now)
    assert sum(line["delta"] for line in lines_now) == 50
    assert "award" not in [line["rule"].split(".")[0] for line in lines_now]


def test_the_credit_page_shows_a_page_of_lines_and_links_to_the_next(paging: Paging) -> None:
    """The same in a browser: 50 lines a page, how many in all, a link to the next page
    (and, after the first, back to it); the linked pages together show every line once."""
    url: str | None = f"/orgs/{MILL}?lang=en"
    entries: list[int] = []
    deltas: list[int] = []
    pages = 0
    while url is not None:
        page = paging.client.get(url, headers=BROWSER)
        assert page.status_code == 200
        assert 'id="score">55<' in page.text
        section = page.text.split('<section id="explain">')[1].split("</section>")[0]
        shown = [int(e) for e in re.findall(r'<li data-entry="(\d+)">', section)]
        assert 0 < len(shown) <= 50
        assert f"{len(entries) + 1}–{len(entries) + len(shown)} / 252 lines" in section
        entries += shown
        deltas += [int(d) for d in re.findall(r'<span class="(?:plus|minus)">([+-]\d+)</span>',
                                               section)]
        assert ('rel="first"' in section) == (pages > 0)
        found = re.search(r'<a rel="next" href="([^"]+)"', section)
        url = found.group(1).replace("&amp;", "&") if found else None
        pages += 1
    assert pages == 6
    assert entries == [line.entry for line in credit(paging.views, MILL).explain]
    assert sum(deltas) == 55


@pytest.mark.parametrize("params", [
    {"limit": "0"}, {"limit": "501"}, {"limit": "-5"}, {"limit": "fifty"},
    {"cursor": "not a cursor"},  # not base64url
    {"cursor": "%%%"},
    {"cursor": "e30"},  # {}: no position
    {"cursor": base64.urlsafe_b64encode(b"[1,2]").decode().rstrip("=")},
    {"cursor": base64.urlsafe_b64encode(b'{"after":true,"at":"2026-11-22T08:00:00Z"}')
     .decode().rstrip("=")},
    {"cursor": base64.urlsafe_b64encode(b'{"after":-1,"at":"2026-11-22T08:00:00Z"}')
     .decode().rstrip("=")},
    {"cursor": base64.urlsafe_b64encode(b'{"after":3,"at":"yesterday"}').decode().rstrip("=")},
    {"cursor": base64.urlsafe_b64encode(b"\xff\xfe").decode().rstrip("=")},  # not UTF-8
    {"cursor": "A" * 201},  # longer than any cursor the server writes
])
def test_bad_paging_parameters_are_a_400_problem(paging: Paging, params: dict[str, str]) -> None:
    for url in (f"/v1/orgs/{MILL}/explain", f"/orgs/{MILL}"):
        answer = paging.client.get(url, params=params)
        assert answer.status_code == 400, (url, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["type"].endswith("/invalid-request")
    # A browser gets the same status as a small HTML page.
    page = paging.client.get(f"/orgs/{MILL}", params=params, headers=BROWSER)
    assert page.status_code == 400 and page.headers["content-type"].startswith("text/html")


def test_the_clamp_line_comes_last_even_alone_on_the_last_page(db_url: str) -> None:
    """Fifty adjustments of −3 sink the mill to −50, clamped to 0: the clamp line, which no
    entry caused, is the last line; a page that ends just before it is followed by a
    page holding only the clamp, and then there is no next."""
    world = World(db_url)
    world.register(MILL, "闽江面粉厂（测试）", "producer")
    world.ledger.append([adjustment(world, -3, n) for n in range(50)])
    views = Views(world.ledger)
    views.catch_up()
    try:
        first = explain(views, MILL, limit=51)  # the registration's line and the 50
        assert len(first.lines) == 51 and first.next is not None
        last = explain(views, MILL, first.next, limit=51)
        assert [(line.rule, line.entry, line.delta) for line in last.lines] == [
            ("clamp", None, 50)]
        assert last.next is None
        assert sum(line.delta for line in first.lines + last.lines) == 0 == credit(
            views, MILL).score
    finally:
        views.close()
        world.ledger.close()
