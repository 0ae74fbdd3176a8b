"""Heavy exports must not starve shoppers ("The server's edges", item 2), on SQLite and
PostgreSQL where storage is involved.

The story: a bakery's bread lot B-LOAD is checked by a lab again and again, thousands of
times (a case of "about 50,000 entries" in the issue, a few thousand here: enough to
make each export take a while). A shop complains about the bread. Then everyone wants
the case at once: anonymous visitors ask for its spreadsheets, picture, bundle and page,
while shoppers keep scanning other bread. And one party to the case tries to grow it
into a copy of the whole log by citing everything as evidence.

What must hold: each export is built once and then only looked up until the case's
entries change (an append elsewhere in the log keeps it; the kept bundle still
verifies); the exports are built on a bounded pool of their own (full: 503 with Retry-After), so a
scan answers while they build; the case page shows one page of its timeline at a time;
a case's evidence cites at most 2,000 entries in all; a public bundle holds at most the
server's bound of entries, beyond which it is a problem naming the bound.
"""

from __future__ import annotations

import json
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli import main
from api.settings import Settings
from ledger import client as signing
from ledger import keys
from ledger.bundle import verify_bundle
from ledger.log.verify import verify_checkpoint, verify_consistency
from ledger.rules import MAX_CASE_CITATIONS
from tests.support import ROOT, World, make_gtin, make_uscc
from tests.test_attacks_rules import statement_of
from traceability import evidence
from traceability.evidence import case_entries
from traceability.views import Views

BAKERY = make_uscc(41)
LAB = make_uscc(42)
SHOP = make_uscc(43)
WAREHOUSE = make_uscc(44)
BREAD = make_gtin(41)
CASE = "FJ-12315-2026-LOAD"


@dataclass
class Crowd:
    world: World
    views: Views
    checks: list[int]  # the lab's checks of the bread, by log index

    def check_envelopes(self, count: int, start: int = 0,
                        lot: str = "B-LOAD") -> list[dict[str, Any]]:
        w = self.world
        return [w.envelope("check.recorded", LAB, gtin=BREAD, lot=lot, subject=BAKERY,
                           kind="third_party", stage="circulation",
                           sampled_at="2026-11-21T09:00:00Z", standard="GB 7099-2015",
                           items=[{"name": "霉菌", "value": "10", "limit": "150",
                                   "unit": "CFU/g", "verdict": "pass"}],
                           verdict="pass", report_no=f"R-{start + i:06d}")
                for i in range(count)]


def tell(db_url: str, checks: int) -> Crowd:
    """The bakery, the lab, the shop; the bread; `checks` checks of it, appended a
    thousand envelopes at a time; the shop's complaint about the bread."""
    w = World(db_url)
    w.register(BAKERY, "麦香烘焙", "producer")
    w.register(LAB, "海峡检测中心", "lab")
    w.register(SHOP, "东街超市", "retailer")
    w.produce(BAKERY, BREAD, "B-LOAD", 1000, product="全麦面包", unit="个")
    w.produce(BAKERY, BREAD, "B-OTHER", 1000, product="全麦面包", unit="个")
    crowd = Crowd(w, Views(w.ledger), [])
    crowd.views.attach(w.ledger, raise_errors=True)
    for start in range(0, checks, 1000):
        receipts = w.ledger.append(crowd.check_envelopes(min(1000, checks - start), start))
        crowd.checks += [r.index for r in receipts]
    w.submit("case.opened", SHOP, case=CASE, respondent=BAKERY,
             batches=[{"gtin": BREAD, "lot": "B-LOAD"}], summary="面包发霉", channel="12315")
    return crowd


@pytest.fixture
def crowd(db_url: str) -> Iterator[Crowd]:
    c = tell(db_url, 450)
    yield c
    c.views.close()
    c.world.ledger.close()


EXPORTS = ("/v1/cases/{case}/bundle", "/v1/cases/{case}/entries.csv",
           "/v1/cases/{case}/entries.xlsx", "/v1/cases/{case}/trace.svg", "/cases/{case}")


def count_selections(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every export selects the case's entries first (traceability.evidence): count them."""
    calls: list[int] = []
    close = evidence._close

    def counted(*args: Any) -> Any:
        calls.append(1)
        return close(*args)

    monkeypatch.setattr(evidence, "_close", counted)
    return calls


# ---- built once, kept until the case changes ------------------------------------------------


def test_each_export_is_built_once_and_then_looked_up(
        crowd: Crowd, monkeypatch: pytest.MonkeyPatch) -> None:
    selections = count_selections(monkeypatch)
    with TestClient(create_app(crowd.world.ledger)) as client:
        first = {path: client.get(path.format(case=CASE)) for path in EXPORTS}
        assert {p: a.status_code for p, a in first.items()} == dict.fromkeys(EXPORTS, 200)
        built = len(selections)
        # The page and the picture share one build; the others have one each.
        assert built == 4
        # Everyone else asking for the same exports of the same case costs lookups:
        # the same bytes (the bundle's generated_at included), and not one selection more.
        for _ in range(3):
            again = {path: client.get(path.format(case=CASE)) for path in EXPORTS}
            assert {p: a.content for p, a in again.items()} == {
                p: a.content for p, a in first.items()}
        assert len(selections) == built
        assert verify_bundle(first[EXPORTS[0]].content).failures == []
        # The case grows (the lab checks the bread once more): the next request rebuilds,
        # and the new check is in it.
        (check,) = crowd.world.ledger.append(crowd.check_envelopes(1, start=9999))
        grown = client.get(f"/v1/cases/{CASE}/entries.csv")
        assert len(selections) == built + 1
        assert f"\r\n{check.index}," in grown.content.decode("utf-8-sig")


EXPORT_KINDS = ("bundle", "csv", "xlsx", "page")  # the page's build holds the picture too


def builds(client: TestClient) -> dict[str, int]:
    """How many times the server has built each export."""
    counted = client.app.state.case_exports.cache.builds  # type: ignore[attr-defined]
    return {what: counted[what] for what in EXPORT_KINDS}


def test_an_append_elsewhere_keeps_every_export_and_the_kept_bundle_still_verifies(
        crowd: Crowd, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ledger keeps growing while the case stands still: a warehouse registers, the lab
    checks the bakery's other lot, the bakery bakes a new one. None of it touches the
    case, so every export is served as kept, byte for byte, and not built again; finding
    that out costs one selection of the case's entries, not a build per export. The kept
    bundle still carries the checkpoint it was built at: it verifies offline, and a
    consistency proof links that checkpoint to the ledger's newest. Then the shop adds
    evidence to the case: every export is built again, with it."""
    w = crowd.world
    selections = count_selections(monkeypatch)
    with TestClient(create_app(w.ledger)) as client:
        first = {path: client.get(path.format(case=CASE)).content for path in EXPORTS}
        built = builds(client)
        assert built == dict.fromkeys(EXPORT_KINDS, 1)
        size = w.ledger.size()

        w.register(WAREHOUSE, "海峡冷链仓储", "distributor")
        w.ledger.append(crowd.check_envelopes(3, start=5000, lot="B-OTHER"))
        w.produce(BAKERY, BREAD, "B-NEXT", 500, product="全麦面包", unit="个")
        assert w.ledger.size() == size + 6
        selected = len(selections)
        again = {path: client.get(path.format(case=CASE)).content for path in EXPORTS}
        assert again == first
        assert builds(client) == built
        assert len(selections) == selected + 1  # to find the case's entries unchanged

        kept = verify_bundle(again[EXPORTS[0]])
        assert kept.failures == [] and kept.tree_size == size < w.ledger.size()
        bundle = json.loads(again[EXPORTS[0]])
        old = verify_checkpoint(bundle["checkpoint"], bundle["log_key"])
        new = verify_checkpoint(client.get("/v1/checkpoint").text, bundle["log_key"])
        proof = client.get("/v1/proof/consistency",
                           params={"first": old.size, "second": new.size}).json()
        verify_consistency(old.size, new.size, old.root_hash, new.root_hash,
                           [bytes.fromhex(h) for h in proof["hashes"]])

        evidence = w.submit("case.evidence", SHOP, case=CASE, refs=[crowd.checks[0]],
                            note="发霉面包照片")
        changed = {path: client.get(path.format(case=CASE)) for path in EXPORTS}
        assert {p: a.status_code for p, a in changed.items()} == dict.fromkeys(EXPORTS, 200)
        assert builds(client) == {what: n + 1 for what, n in built.items()}
        fresh = verify_bundle(changed[EXPORTS[0]].content)
        assert fresh.failures == [] and fresh.tree_size == w.ledger.size()
        assert evidence.index in [e["index"] for e in changed[EXPORTS[0]].json()["entries"]]
        assert f"\r\n{evidence.index}," in changed[EXPORTS[1]].content.decode("utf-8-sig")


def test_a_name_corrected_outside_the_case_entries_builds_the_sheet_again(crowd: Crowd) -> None:
    """The bakery sends bread of the lot to a warehouse, which has not received it yet: the
    sheet names the warehouse, though no entry of the case is the warehouse's own
    registration (it signed nothing the case holds). The regulator corrects the
    warehouse's name: the case's entries stay the same, yet the sheet shows the new name."""
    w = crowd.world
    w.register(WAREHOUSE, "海峡冷链仓储", "distributor")
    registered = w.ledger.size() - 2
    w.ship(BAKERY, BREAD, "B-LOAD", 100, WAREHOUSE, "SH-LOAD-1")
    sheet = f"/v1/cases/{CASE}/entries.csv?lang=en"
    with TestClient(create_app(w.ledger)) as client:
        assert "海峡冷链仓储" in client.get(sheet).content.decode("utf-8-sig")
        selected = case_entries(crowd.views, CASE)
        assert registered not in selected
        w.submit("correction", ROOT, corrects=registered, reason="名称有误",
                 replacement={**statement_of(w, registered), "name": "海峡冷链物流"})
        assert case_entries(crowd.views, CASE) == selected
        renamed = client.get(sheet).content.decode("utf-8-sig")
        assert "海峡冷链物流" in renamed and "海峡冷链仓储" not in renamed


# ---- a pool of their own ----------------------------------------------------------------------


def test_scans_answer_while_exports_build(tmp_path: Path) -> None:
    """SQLite only: this is about threads, not storage. Seven different exports of a case
    of 4,000 checks are asked for at once (every export and language: no two share a
    build); scans of other bread must answer about as fast as when the server is idle,
    not after the exports (before, four of them held all four threads of the routes)."""
    crowd = tell(str(tmp_path / "ledger.db"), 4000)
    scan = f"/01/{BREAD}/10/B-OTHER"
    json_please = {"accept": "application/json"}
    exports = [f"/v1/cases/{CASE}/entries.xlsx?lang=zh", f"/v1/cases/{CASE}/entries.xlsx?lang=en",
               f"/v1/cases/{CASE}/entries.csv?lang=zh", f"/v1/cases/{CASE}/entries.csv?lang=en",
               f"/v1/cases/{CASE}/bundle", f"/cases/{CASE}?lang=zh", f"/cases/{CASE}?lang=en"]
    try:
        settings = Settings(read_rate_per_minute=0, export_threads=2, export_queue=8)
        with TestClient(create_app(crowd.world.ledger, settings)) as client:
            def timed_scan() -> float:
                started = time.perf_counter()
                assert client.get(scan, headers=json_please).status_code == 200
                return time.perf_counter() - started

            for _ in range(3):
                timed_scan()  # warm up the routes and the views
            idle = statistics.median(timed_scan() for _ in range(5))

            finished: list[float] = []

            def export(path: str) -> int:
                status = client.get(path).status_code
                finished.append(time.perf_counter())
                return status

            with ThreadPoolExecutor(len(exports)) as pool:
                started = time.perf_counter()
                answers = [pool.submit(export, path) for path in exports]
                time.sleep(0.5)  # every export asked for and building
                loaded = [timed_scan() for _ in range(5)]
                scanned = time.perf_counter()
                statuses = [a.result(timeout=300) for a in answers]
            assert statuses == [200] * len(exports)
            # The exports were still building while the scans answered...
            assert max(finished) > scanned, (max(finished) - started, scanned - started)
            # ...and every scan answered promptly all the same: not after an export (the
            # five scans together took a small part of the time the exports took), and
            # each within a generous bound that allows for the interpreter lock the scan
            # shares with the builds and for the other work of a shared machine.
            took = max(finished) - started
            assert sum(loaded) < took / 4, (idle, loaded, took)
            assert max(loaded) < max(2.0, 25 * idle), (idle, loaded)
            print(f"scan idle {idle * 1000:.1f} ms, loaded max {max(loaded) * 1000:.1f} ms, "
                  f"exports done after {max(finished) - started:.1f} s")
    finally:
        crowd.views.close()
        crowd.world.ledger.close()


def test_a_full_export_pool_refuses_at_once_with_retry_after(
        crowd: Crowd, monkeypatch: pytest.MonkeyPatch) -> None:
    """One worker and no queue: while a spreadsheet builds, another export is refused with
    a 503 problem and Retry-After, instead of waiting without end; a scan still answers."""
    from traceability import exports

    release = threading.Event()
    building = threading.Event()
    sheet = exports.case_sheet

    def slow_sheet(*args: Any) -> Any:
        building.set()
        assert release.wait(30)
        return sheet(*args)

    monkeypatch.setattr(exports, "case_sheet", slow_sheet)
    settings = Settings(read_rate_per_minute=0, export_threads=1, export_queue=0)
    with TestClient(create_app(crowd.world.ledger, settings)) as client, \
            ThreadPoolExecutor(1) as pool:
        slow = pool.submit(client.get, f"/v1/cases/{CASE}/entries.xlsx")
        assert building.wait(30)
        refused = client.get(f"/v1/cases/{CASE}/entries.csv")
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"].endswith("/exports-busy")
        assert int(refused.headers["retry-after"]) > 0
        scan = client.get(f"/01/{BREAD}/10/B-OTHER", headers={"accept": "application/json"})
        assert scan.status_code == 200
        release.set()
        assert slow.result(timeout=60).status_code == 200
        # The pool free again, the refused export is served.
        assert client.get(f"/v1/cases/{CASE}/entries.csv").status_code == 200


# ---- a page at a time ----------------------------------------------------------------------


def test_the_case_page_shows_its_timeline_a_page_at_a_time(crowd: Crowd) -> None:
    selected = case_entries(crowd.views, CASE)
    assert len(selected) > 400  # 450 checks, the bread, the case and the registrations
    with TestClient(create_app(crowd.world.ledger)) as client:
        shown: list[int] = []
        path: str | None = f"/cases/{CASE}?lang=en"
        pages = 0
        while path is not None:
            page = client.get(path, headers={"accept": "text/html"})
            assert page.status_code == 200
            rows = [int(i) for i in re.findall(r'<li data-entry="(\d+)">', page.text)]
            assert 0 < len(rows) <= 200  # never the whole timeline at once
            assert f"({len(selected)} entries" in page.text  # the page says how many in all
            shown += rows
            pages += 1
            # Each page links to the next, until the last.
            found = re.search(r'<a rel="next" href="([^"]+)"', page.text)
            path = found.group(1).replace("&amp;", "&") if found else None
        assert pages == 3
        assert sorted(shown) == selected and len(shown) == len(set(shown))
        # A page past the last is not found.
        beyond = client.get(f"/cases/{CASE}?page=4")
        assert beyond.status_code == 404 and beyond.json()["type"].endswith("/not-found")
        assert client.get(f"/cases/{CASE}?page=0").status_code == 400


# ---- what one case may cite ----------------------------------------------------------------


def test_a_case_cites_at_most_2000_entries_in_all(crowd: Crowd) -> None:
    """The shop, a party to the case, cites a thousand checks twice over: that is the
    bound. One more citation, as a new statement or slipped into a correction, is refused
    with a problem naming the bound, and nothing is recorded."""
    w = crowd.world
    assert MAX_CASE_CITATIONS == 2000
    assert len(crowd.checks) >= 450
    refs = (crowd.checks * 3)[:1000]  # repeats count: the bound is on refs written
    # 1 + 999 + 1,000 refs: exactly the bound.

    def evidence(refs: list[int], note: str) -> dict[str, Any]:
        return w.statement("case.evidence", SHOP, case=CASE, refs=refs, note=note)

    def signed(statement: dict[str, Any]) -> dict[str, Any]:
        return signing.sign(statement, w.keys[SHOP])

    with TestClient(create_app(w.ledger)) as client:
        small = evidence(refs[:1], "证据 0")
        posted = client.post("/v1/entries", json=signed(small))
        assert posted.status_code == 201
        for n in (1, 2):
            more = refs[:999] if n == 1 else refs
            assert client.post("/v1/entries", json=signed(evidence(more, f"证据 {n}"))
                               ).status_code == 201
        size = w.ledger.size()
        one_more = client.post("/v1/entries", json=signed(evidence(refs[:1], "再来一条")))
        assert one_more.status_code == 422
        assert one_more.json()["type"].endswith("/case-cites-too-much")
        assert "2000" in one_more.json()["detail"]
        # A correction of the first evidence whose replacement cites more is refused the
        # same way: its refs would join the bundle beside the original's.
        fixed = w.envelope("correction", SHOP, corrects=posted.json()["index"],
                           reason="补充", replacement={**small, "refs": refs[:5]})
        refused = client.post("/v1/entries", json=fixed)
        assert refused.status_code == 422
        assert refused.json()["type"].endswith("/case-cites-too-much")
        assert w.ledger.size() == size
        # A correction that cites nothing more (a note fixed) is still fine.
        noted = w.envelope("correction", SHOP, corrects=posted.json()["index"],
                           reason="备注", replacement={**small, "refs": [], "note": "对照"})
        assert client.post("/v1/entries", json=noted).status_code == 201
    # A regulator may still resolve the case, which is what ends it.
    w.submit("case.resolved", ROOT, case=CASE, finding="unsubstantiated", summary="查无实据",
             refs=[])


def test_a_public_bundle_beyond_the_bound_is_a_problem_naming_it(
        crowd: Crowd, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server bounded at 100 entries per public bundle refuses the case's (450 checks and
    more), once per tree size, with a problem naming the bound; the operator's CLI still
    writes the whole bundle, which verifies."""
    selections = count_selections(monkeypatch)
    settings = Settings(read_rate_per_minute=0, bundle_max_entries=100)
    with TestClient(create_app(crowd.world.ledger, settings)) as client:
        for _ in range(2):
            answer = client.get(f"/v1/cases/{CASE}/bundle")
            assert answer.status_code == 403
            assert answer.headers["content-type"] == "application/problem+json"
            problem = answer.json()
            assert problem["type"].endswith("/export-too-large")
            assert "at most 100" in problem["detail"]
            assert f"would hold {len(case_entries(crowd.views, CASE))} entries" in \
                problem["detail"]
        assert len(selections) == 1 + 2  # one refused build; case_entries above twice
    # The operator's CLI is not bounded: it writes the whole bundle, which verifies (the
    # CLI signs the bundle's manifest with the log key).
    keys.write_private_key(tmp_path / "log.pem", crowd.world.log_key)
    monkeypatch.setenv("QLEDGER_LOG_KEY", str(tmp_path / "log.pem"))
    out = tmp_path / "case.bundle.json"
    assert main(["bundle", "--db", db_url, "--case", CASE, "-o", str(out)]) == 0
    assert verify_bundle(out.read_bytes()).failures == []
    # Twelve statements of a thousand refs made a 20.6 MB bundle: by default a public
    # bundle holds at most 20,000 entries, a tenth of which a case's citations may reach.
    assert Settings().bundle_max_entries == 20_000
