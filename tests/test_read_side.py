"""The read side as its users meet it: one story, told on SQLite and on PostgreSQL.

A farm in Fuzhou harvests two lots of wheat. The flour mill in Xiamen buys lot W-01 and
mills it into flour F-01; a second mill (the decoy) buys lot W-02 from the same farm and
makes flour of its own. The bakery bakes bread B-01 from flour F-01 and sells it to a
distributor, who sends it on to two shops. A lab's supervisory spot check at the mill
finds flour F-01 out of limits, and the mill recalls it (level 2). A shop complains
about the bakery through 12315; the regulator finds the complaint substantiated. And a
soy-sauce maker elsewhere is put on the quality-dishonesty blacklist.

What the views must then say: the bread traces back to lot W-01 and never to the decoy;
the recall reaches the bakery, the distributor and both shops; a phone scanning the
bread sees it recalled because of its flour; the mill stands at 100 - 10 - 8 = 82 (B),
the bakery at 100 - 5 = 95 (A), and the blacklisted maker is D whatever its score.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from ledger.envelope import Envelope
from ledger.errors import InvalidRequest, NotFound
from tests.support import ROOT, World, make_gtin, make_uscc
from traceability import blacklist
from traceability.cases import case_view, cases_of
from traceability.credit import credit
from traceability.orgs import profile
from traceability.scan import scan
from traceability.stats import pass_rates
from traceability.trace import trace
from traceability.views import Views

FARM = make_uscc(21, "350100")  # 福州
MILL = make_uscc(22, "350200")  # 厦门
DECOY_MILL = make_uscc(23, "350300")
BAKERY = make_uscc(24, "350100")
DISTRIBUTOR = make_uscc(25, "350100")
SHOP_A = make_uscc(26, "350100")
SHOP_B = make_uscc(27, "350500")
LAB = make_uscc(28, "350100")
SOY = make_uscc(29, "440300")  # 深圳: the blacklisted maker

NAMES = {FARM: "青禾农场", MILL: "金穗面粉厂", DECOY_MILL: "银麦面粉厂", BAKERY: "麦香烘焙",
         DISTRIBUTOR: "闽鲜配送", SHOP_A: "东街超市", SHOP_B: "西湖便利店", LAB: "海峡检测中心",
         SOY: "南海酱油厂"}
ROLES = {FARM: "producer", MILL: "producer", DECOY_MILL: "producer", BAKERY: "producer",
         DISTRIBUTOR: "distributor", SHOP_A: "retailer", SHOP_B: "retailer", LAB: "lab",
         SOY: "producer"}

WHEAT, FLOUR, BREAD, DECOY_FLOUR, SAUCE = (make_gtin(n) for n in (1, 2, 3, 4, 5))


@dataclass
class Story:
    world: World
    views: Views
    entry: dict[str, int] = field(default_factory=dict)  # what happened -> its log index

    def record(self, what: str, receipt: Any) -> None:
        self.entry[what] = receipt.index

    def ref(self, gtin: str, lot: str) -> dict[str, str]:
        return {"gtin": gtin, "lot": lot}


def check(world: World, gtin: str, lot: str, subject: str, stage: str, verdict: str,
          report_no: str) -> Any:
    return world.submit(
        "check.recorded", LAB, gtin=gtin, lot=lot, subject=subject, kind="supervisory",
        stage=stage, sampled_at="2026-11-21T09:00:00Z", standard="GB 2715-2016",
        items=[{"name": "脱氧雪腐镰刀菌烯醇", "value": "1200", "limit": "1000", "unit": "μg/kg",
                "verdict": verdict}],
        verdict=verdict, report_no=report_no,
    )


def tell(db_url: str) -> Story:
    world = World(db_url)
    views = Views(world.ledger)
    views.attach(world.ledger, raise_errors=True)  # read-your-writes: no catch_up calls below
    story = Story(world, views)
    w = world
    for org, name in NAMES.items():
        story.entry[f"registered {org}"] = w.ledger.size()
        w.register(org, name, ROLES[org], region=org[2:8])

    # The farm's two lots of wheat; one goes to each mill.
    story.record("wheat W-01", w.produce(FARM, WHEAT, "W-01", 1000, product="小麦",
                                         category="agricultural", standard="GB 1351-2023"))
    story.record("wheat W-02", w.produce(FARM, WHEAT, "W-02", 1000, product="小麦",
                                         category="agricultural", standard="GB 1351-2023"))
    story.record("ship S-W1", w.ship(FARM, WHEAT, "W-01", 400, MILL, "S-W1"))
    story.record("receive S-W1", w.receive(MILL, "S-W1", 400))
    story.record("ship S-W2", w.ship(FARM, WHEAT, "W-02", 400, DECOY_MILL, "S-W2"))
    story.record("receive S-W2", w.receive(DECOY_MILL, "S-W2", 400))

    # Each mill makes its own flour (the decoy writes the wheat's GTIN as GTIN-13).
    story.record("flour F-01", w.produce(MILL, FLOUR, "F-01", 300, product="高筋小麦粉",
                                         inputs=[{"gtin": WHEAT, "lot": "W-01", "quantity": 400}]))
    story.record("decoy flour D-01", w.produce(
        DECOY_MILL, DECOY_FLOUR, "D-01", 300, product="低筋小麦粉",
        inputs=[{"gtin": WHEAT[1:], "lot": "W-02", "quantity": 400}]))

    # Flour to the bakery, bread to the distributor and on to two shops.
    story.record("ship S-F1", w.ship(MILL, FLOUR, "F-01", 200, BAKERY, "S-F1"))
    story.record("receive S-F1", w.receive(BAKERY, "S-F1", 200))
    story.record("bread B-01", w.produce(
        BAKERY, BREAD, "B-01", 1000, product="全麦面包", unit="个", standard="GB 7099-2015",
        produced_at="2026-11-21T05:00:00Z", expires_at="2026-11-28T05:00:00Z",
        inputs=[{"gtin": FLOUR, "lot": "F-01", "quantity": 200}]))
    story.record("ship S-B1", w.ship(BAKERY, BREAD, "B-01", 600, DISTRIBUTOR, "S-B1"))
    story.record("receive S-B1", w.receive(DISTRIBUTOR, "S-B1", 600))
    story.record("ship S-B2", w.ship(DISTRIBUTOR, BREAD, "B-01", 300, SHOP_A, "S-B2"))
    story.record("receive S-B2", w.receive(SHOP_A, "S-B2", 300))
    story.record("ship S-B3", w.ship(DISTRIBUTOR, BREAD, "B-01", 300, SHOP_B, "S-B3"))
    story.record("receive S-B3", w.receive(SHOP_B, "S-B3", 300))

    # The lab finds the flour out of limits at the mill; the bread passes in the shop.
    story.record("flour check", check(w, FLOUR, "F-01", MILL, "production", "fail", "R-F01"))
    story.record("bread check", check(w, BREAD, "B-01", SHOP_A, "circulation", "pass", "R-B01"))
    story.record("recall", w.submit("recall.issued", MILL, gtin=FLOUR, lots=["F-01"],
                                    reason="呕吐毒素超标", level=2))

    # A shop complains about the bakery; the regulator finds the complaint substantiated.
    story.record("case opened", w.submit(
        "case.opened", SHOP_A, case="C-2026-001", respondent=BAKERY,
        batches=[{"gtin": BREAD, "lot": "B-01"}], summary="面包发霉", channel="12315"))
    story.record("case resolved", w.submit(
        "case.resolved", ROOT, case="C-2026-001", finding="substantiated",
        summary="经查属实", refs=[story.entry["case opened"]]))

    # Elsewhere, a soy-sauce maker is put on the blacklist.
    story.record("sauce", w.produce(SOY, SAUCE, "Y-01", 500, product="酱油", unit="瓶",
                                    standard="GB 2717-2018"))
    story.record("blacklisted", w.submit(
        "blacklist.added", ROOT, org=SOY, reason="使用非食品原料生产酱油",
        basis="《食品安全法》第一百二十三条", refs=[story.entry["sauce"]]))
    return story


@pytest.fixture
def story(db_url: str) -> Iterator[Story]:
    s = tell(db_url)
    yield s
    s.views.close()
    s.world.ledger.close()


def node(story: Story, gtin: str, lot: str, org: str, product: str, what: str) -> dict[str, Any]:
    return {"gtin": gtin, "lot": lot, "org": org, "product": product, "entry": story.entry[what]}


def shipment(story: Story, gtin: str, lot: str, sender: str, receiver: str, quantity: int,
             sid: str) -> dict[str, Any]:
    return {"gtin": gtin, "lot": lot, "from": sender, "to": receiver, "quantity": quantity,
            "entry": story.entry[f"ship {sid}"], "received_entry": story.entry[f"receive {sid}"]}


# ---- tracing -----------------------------------------------------------------------------------


def test_tracing_up_from_the_shops_bread_reaches_the_farms_wheat_and_not_the_decoy(
    story: Story,
) -> None:
    # A phone reads the GTIN-13 printed on the bag; the graph speaks GTIN-14.
    graph = trace(story.views, BREAD[1:], "B-01", "up").to_json()
    assert graph == {
        "root": {"gtin": BREAD, "lot": "B-01"},
        "direction": "up",
        "nodes": [
            node(story, WHEAT, "W-01", FARM, "小麦", "wheat W-01"),
            node(story, FLOUR, "F-01", MILL, "高筋小麦粉", "flour F-01"),
            node(story, BREAD, "B-01", BAKERY, "全麦面包", "bread B-01"),
        ],
        "edges": [
            {"from": story.ref(WHEAT, "W-01"), "to": story.ref(FLOUR, "F-01"), "quantity": 400,
             "entry": story.entry["flour F-01"]},
            {"from": story.ref(FLOUR, "F-01"), "to": story.ref(BREAD, "B-01"), "quantity": 200,
             "entry": story.entry["bread B-01"]},
        ],
        "shipments": [
            shipment(story, WHEAT, "W-01", FARM, MILL, 400, "S-W1"),
            shipment(story, FLOUR, "F-01", MILL, BAKERY, 200, "S-F1"),
            shipment(story, BREAD, "B-01", BAKERY, DISTRIBUTOR, 600, "S-B1"),
            shipment(story, BREAD, "B-01", DISTRIBUTOR, SHOP_A, 300, "S-B2"),
            shipment(story, BREAD, "B-01", DISTRIBUTOR, SHOP_B, 300, "S-B3"),
        ],
        "organizations": sorted([FARM, MILL, BAKERY, DISTRIBUTOR, SHOP_A, SHOP_B]),
    }
    assert DECOY_MILL not in graph["organizations"]


def test_the_reach_of_the_flour_recall_is_the_bakery_the_distributor_and_both_shops(
    story: Story,
) -> None:
    graph = trace(story.views, FLOUR, "F-01", "down").to_json()
    assert graph == {
        "root": {"gtin": FLOUR, "lot": "F-01"},
        "direction": "down",
        "nodes": [
            node(story, FLOUR, "F-01", MILL, "高筋小麦粉", "flour F-01"),
            node(story, BREAD, "B-01", BAKERY, "全麦面包", "bread B-01"),
        ],
        "edges": [
            {"from": story.ref(FLOUR, "F-01"), "to": story.ref(BREAD, "B-01"), "quantity": 200,
             "entry": story.entry["bread B-01"]},
        ],
        "shipments": [
            shipment(story, FLOUR, "F-01", MILL, BAKERY, 200, "S-F1"),
            shipment(story, BREAD, "B-01", BAKERY, DISTRIBUTOR, 600, "S-B1"),
            shipment(story, BREAD, "B-01", DISTRIBUTOR, SHOP_A, 300, "S-B2"),
            shipment(story, BREAD, "B-01", DISTRIBUTOR, SHOP_B, 300, "S-B3"),
        ],
        "organizations": sorted([MILL, BAKERY, DISTRIBUTOR, SHOP_A, SHOP_B]),
    }


def test_each_wheat_lot_reaches_only_what_was_made_from_it(story: Story) -> None:
    first = trace(story.views, WHEAT, "W-01", "down")
    second = trace(story.views, WHEAT, "W-02", "down")
    assert first.batches() == {(WHEAT, "W-01"), (FLOUR, "F-01"), (BREAD, "B-01")}
    assert second.batches() == {(WHEAT, "W-02"), (DECOY_FLOUR, "D-01")}
    assert second.organizations == (FARM, DECOY_MILL)


def test_a_trace_of_an_unknown_batch_or_a_bad_gtin_is_refused(story: Story) -> None:
    with pytest.raises(NotFound):
        trace(story.views, BREAD, "B-99", "up")
    with pytest.raises(InvalidRequest):
        trace(story.views, BREAD[:-1] + str((int(BREAD[-1]) + 1) % 10), "B-01", "up")
    with pytest.raises(InvalidRequest):
        trace(story.views, BREAD, "B-01", "sideways")  # type: ignore[arg-type]


# ---- the scan view -----------------------------------------------------------------------------


def test_a_phone_scanning_the_bread_sees_it_recalled_because_of_its_flour(story: Story) -> None:
    size = story.world.ledger.size()
    view = scan(story.views, BREAD, "B-01").to_json()
    assert view == {
        "batch": {"gtin": BREAD, "lot": "B-01", "product": "全麦面包", "category": "food",
                  "produced_at": "2026-11-21T05:00:00Z", "expires_at": "2026-11-28T05:00:00Z",
                  "standard": "GB 7099-2015", "entry": story.entry["bread B-01"]},
        "producer": {"uscc": BAKERY, "name": "麦香烘焙", "grade": "A", "score": 95,
                     "blacklisted": False},
        "status": "recalled",
        "checks": [{"verdict": "pass", "kind": "supervisory", "stage": "circulation",
                    "report_no": "R-B01", "lab": LAB, "entry": story.entry["bread check"]}],
        "recalls": [{"gtin": FLOUR, "lot": "F-01", "level": 2, "reason": "呕吐毒素超标",
                     "upstream": True, "entry": story.entry["recall"]}],
        "origin": [{"uscc": FARM, "name": "青禾农场", "region": "350100"}],
        "checkpoint": {"tree_size": size, "root_hash": story.world.ledger.root_at(size).hex()},
    }


def test_the_flour_itself_is_recalled_and_failed_its_check(story: Story) -> None:
    view = scan(story.views, FLOUR, "F-01")
    assert view.status == "recalled"  # the worst of recalled and failed_check
    assert [r.upstream for r in view.recalls] == [False]
    assert [(c.verdict, c.stage, c.entry) for c in view.checks] == [
        ("fail", "production", story.entry["flour check"])]
    assert (view.producer.score, view.producer.grade) == (82, "B")


def test_the_wheat_is_ok_and_its_origin_is_the_farm_itself(story: Story) -> None:
    view = scan(story.views, WHEAT, "W-02")
    assert view.status == "ok"
    assert [o.to_json() for o in view.origin] == [
        {"uscc": FARM, "name": "青禾农场", "region": "350100"}]


def test_the_blacklisted_makers_sauce_is_flagged(story: Story) -> None:
    view = scan(story.views, SAUCE, "Y-01").to_json()
    assert view["status"] == "producer_blacklisted"
    assert view["producer"] == {"uscc": SOY, "name": "南海酱油厂", "grade": "D", "score": 100,
                                "blacklisted": True}


# ---- credit ------------------------------------------------------------------------------------


def test_the_mill_lost_ten_for_the_failed_check_and_eight_for_the_recall(story: Story) -> None:
    c = credit(story.views, MILL)
    assert (c.score, c.grade, c.blacklisted) == (82, "B", False)
    assert [line.to_json() for line in c.explain] == [
        {"entry": story.entry[f"registered {MILL}"], "delta": 100,
         "reason": "registered: starting score", "rule": "start"},
        {"entry": story.entry["flour check"], "delta": -10,
         "reason": f"failed supervisory check at the production stage, report R-F01, "
                   f"batch {FLOUR}/F-01",
         "rule": "check.failed.production"},
        {"entry": story.entry["recall"], "delta": -8,
         "reason": f"level 2 recall of {FLOUR} lots F-01: 呕吐毒素超标", "rule": "recall.level2"},
    ]
    assert [(p.entry, p.score) for p in c.history] == [
        (story.entry[f"registered {MILL}"], 100), (story.entry["flour check"], 90),
        (story.entry["recall"], 82)]
    assert {line.policy for line in c.explain} == {"default-2026.2"}


def test_the_bakery_lost_five_for_the_substantiated_complaint(story: Story) -> None:
    c = credit(story.views, BAKERY)
    assert (c.score, c.grade) == (95, "A")
    assert [(line.entry, line.delta, line.rule) for line in c.explain] == [
        (story.entry[f"registered {BAKERY}"], 100, "start"),
        (story.entry["case resolved"], -5, "case.substantiated"),
    ]


def test_a_blacklisted_maker_is_graded_d_whatever_its_score(story: Story) -> None:
    c = credit(story.views, SOY)
    assert (c.score, c.grade, c.blacklisted) == (100, "D", True)
    assert profile(story.views, SOY).to_json()["credit"]["grade"] == "D"


def test_the_other_organizations_keep_their_hundred_and_an_a(story: Story) -> None:
    for org in (FARM, DECOY_MILL, DISTRIBUTOR, SHOP_A, SHOP_B, LAB, ROOT):
        c = credit(story.views, org)
        assert (c.score, c.grade) == (100, "A"), org


def test_credit_of_an_organization_never_registered_is_not_found(story: Story) -> None:
    with pytest.raises(NotFound):
        credit(story.views, make_uscc(99))


def test_the_organization_profile_carries_its_credit(story: Story) -> None:
    p = profile(story.views, MILL).to_json()
    assert (p["name"], p["roles"], p["region"], p["entry"]) == (
        "金穗面粉厂", ["producer"], "350200", story.entry[f"registered {MILL}"])
    assert (p["credit"]["score"], p["credit"]["grade"]) == (82, "B")


# ---- corrections -------------------------------------------------------------------------------


def signed_statement(story: Story, index: int) -> dict[str, Any]:
    """The statement of an entry exactly as its signer wrote it."""
    text = story.world.ledger.entry(index).to_json()
    return dict(Envelope.from_json(text["envelope"]).statement)


def test_a_withdrawn_check_and_a_milder_recall_give_the_mill_its_points_back(
    story: Story,
) -> None:
    # The lab finds it tested the wrong sample and withdraws its report.
    withdrawal = story.world.submit("correction", LAB, corrects=story.entry["flour check"],
                                    reason="样品编号错误", replacement=None)
    # The mill's recall was over-classified: level 3, not 2.
    recall = signed_statement(story, story.entry["recall"])
    milder = story.world.submit("correction", MILL, corrects=story.entry["recall"],
                                reason="召回级别调整", replacement={**recall, "level": 3})
    c = credit(story.views, MILL)
    assert (c.score, c.grade) == (97, "A")
    assert [(line.entry, line.delta, line.rule) for line in c.explain] == [
        (story.entry[f"registered {MILL}"], 100, "start"),
        (story.entry["recall"], -3, "recall.level3"),
    ]
    assert c.explain[1].reason.endswith(f"(as corrected by entry {milder.index})")
    view = scan(story.views, FLOUR, "F-01")
    assert view.checks == ()  # the withdrawn check is no longer shown
    assert [(r.level, r.entry) for r in view.recalls] == [(3, story.entry["recall"])]
    assert withdrawal.index < milder.index


def test_a_corrected_verdict_and_a_correction_of_that_correction(story: Story) -> None:
    flour_check = story.entry["flour check"]
    original = signed_statement(story, flour_check)
    passed = {**original, "verdict": "pass"}
    first = story.world.submit("correction", LAB, corrects=flour_check, reason="复检合格",
                               replacement=passed)
    assert credit(story.views, MILL).score == 92
    assert [c.verdict for c in scan(story.views, FLOUR, "F-01").checks] == ["pass"]
    # The regulator reviews the re-test and restores the original verdict.
    correction = signed_statement(story, first.index)
    story.world.submit("correction", LAB, corrects=first.index, reason="复检无效",
                       replacement={**correction, "replacement": original})
    assert credit(story.views, MILL).score == 82
    assert [c.verdict for c in scan(story.views, FLOUR, "F-01").checks] == ["fail"]


def test_a_corrected_product_name_shows_in_the_trace(story: Story) -> None:
    bread = signed_statement(story, story.entry["bread B-01"])
    story.world.submit("correction", BAKERY, corrects=story.entry["bread B-01"],
                       reason="品名更正", replacement={**bread, "product": "全麦吐司"})
    names = [n.product for n in trace(story.views, FLOUR, "F-01", "down").nodes]
    assert names == ["高筋小麦粉", "全麦吐司"]


# ---- blacklist, awards, statistics, cases ------------------------------------------------------


def test_the_blacklist_lists_the_maker_until_it_is_removed(story: Story) -> None:
    listed = blacklist.current(story.views)
    assert [item.to_json() for item in listed] == [{
        "org": SOY, "name": "南海酱油厂", "reason": "使用非食品原料生产酱油",
        "basis": "《食品安全法》第一百二十三条", "since": "2026-11-22T08:00:00.000Z",
        "until": None, "entry": story.entry["blacklisted"]}]
    story.world.clock.advance(days=200)
    removed = story.world.submit("blacklist.removed", ROOT, org=SOY, reason="信用修复完成",
                                 refs=[story.entry["blacklisted"]])
    assert blacklist.current(story.views) == []
    assert [(e.action, e.entry) for e in blacklist.history(story.views, SOY)] == [
        ("added", story.entry["blacklisted"]), ("removed", removed.index)]
    assert credit(story.views, SOY).grade == "A"
    # Asked about the past, the views still answer as they stood then.
    assert blacklist.is_listed(story.views, SOY, at=datetime(2026, 12, 1, tzinfo=UTC))


def test_a_listing_with_an_end_date_ends_by_itself(story: Story) -> None:
    story.world.submit("blacklist.added", ROOT, org=DECOY_MILL, reason="虚假标注",
                       basis="《产品质量法》第五十三条", refs=[], until="2027-06-01T00:00:00Z")
    assert blacklist.is_listed(story.views, DECOY_MILL)
    assert not blacklist.is_listed(story.views, DECOY_MILL, at=datetime(2027, 6, 1, tzinfo=UTC))


def test_an_award_counts_five_while_it_is_valid(story: Story) -> None:
    award = story.world.submit("award.granted", ROOT, org=FARM, title="福建名牌农产品",
                               valid_until="2027-01-01T00:00:00Z")
    during = credit(story.views, FARM, at=datetime(2026, 12, 1, tzinfo=UTC))
    after = credit(story.views, FARM, at=datetime(2027, 2, 1, tzinfo=UTC))
    # A clean record is already 100, the top of the scale (EVENTS.md clamps to 0…100):
    # the award is listed and explained, and the clamp takes its five points back.
    assert (during.score, [a.entry for a in during.awards]) == (100, [award.index])
    assert [(line.rule, line.delta) for line in during.explain][-2:] == [
        ("award.granted", 5), ("clamp", -5)]
    assert (after.score, after.awards) == (100, ())
    assert [(p.at, p.delta, p.score) for p in after.history] == [
        ("2026-11-22T08:00:00.000Z", 100, 100), ("2026-11-22T08:00:00.000Z", 5, 100),
        ("2027-01-01T00:00:00Z", -5, 100)]


def test_pass_rates_flag_the_food_production_stage_below_its_target(story: Story) -> None:
    rates = [r.to_json() for r in pass_rates(story.views)]
    assert rates == [
        {"category": "food", "stage": "circulation", "region": "350000", "period": "2026-11",
         "checks": 1, "passed": 1, "rate": 1.0, "target": 0.95, "missed": False},
        {"category": "food", "stage": "production", "region": "350000", "period": "2026-11",
         "checks": 1, "passed": 0, "rate": 0.0, "target": 0.95, "missed": True},
    ]
    by_city = pass_rates(story.views, by=["region"], region_level="full")
    assert [(r.region, r.checks, r.target) for r in by_city] == [
        ("350100", 1, None), ("350200", 1, None)]
    overall = pass_rates(story.views, by=[], period="year", since="2026", until="2026")
    assert [(r.checks, r.passed) for r in overall] == [(2, 1)]
    assert pass_rates(story.views, category="aquatic") == []


def test_the_complaint_case_holds_its_statements_and_the_bread(story: Story) -> None:
    case = case_view(story.views, "C-2026-001").to_json()
    assert {k: case[k] for k in ("respondent", "opened_by", "status", "finding", "channel")} == {
        "respondent": BAKERY, "opened_by": SHOP_A, "status": "resolved",
        "finding": "substantiated", "channel": "12315"}
    assert [(s["entry"], s["type"]) for s in case["statements"]] == [
        (story.entry["case opened"], "case.opened"),
        (story.entry["case resolved"], "case.resolved")]
    assert case["batches"] == [{"gtin": BREAD, "lot": "B-01"}]
    assert cases_of(story.views, BAKERY) == ["C-2026-001"]
    with pytest.raises(NotFound):
        case_view(story.views, "C-0000-000")


# ---- keeping the views ---------------------------------------------------------------------------


def test_rebuilt_views_equal_the_views_kept_up_as_the_story_was_told(story: Story) -> None:
    kept = story.views.dump()
    assert story.views.rebuild() > 0
    assert story.views.dump() == kept


def test_a_follower_with_its_own_connection_catches_up_to_the_same_views(
    story: Story, db_url: str
) -> None:
    from ledger.application import Ledger

    other = Ledger(db_url, clock=story.world.clock)
    follower = Views(other)
    try:
        assert follower.catch_up() == 0  # the writer's views are up to date already
        story.world.submit("credit.adjusted", ROOT, org=FARM, delta=-3, reason="标签不规范",
                           basis="地方信用管理办法", refs=[])
        assert credit(follower, FARM).score == 97  # the writer caught up, in the same tables
        assert follower.dump() == story.views.dump()
    finally:
        follower.close()
        other.close()
