"""The views as a pure function of the log, checked on random histories.

Hypothesis plays three producers, a distributor, a shop, a lab and the regulator:
batches are made from what a producer holds, shipped and received; the lab records
checks; producers recall; the regulator adjusts credit, grants awards, blacklists and
delists, opens and resolves cases; and anyone corrects: a check withdrawn or its
verdict changed, a recall's level changed, a correction itself corrected, a batch's
category or an organization's region changed. Several statements sometimes go in one
append, and the views catch up in chunks of random size.

The test keeps its own small model (who made what from what; which statement is in
force for each entry; the points each one is worth) and checks that:

* the views kept up as the history was told equal the views rebuilt from the log,
  table by table and row by row;
* the traces are inverse (b is in down(a) exactly when a is in up(b)) and equal the
  model's reachability;
* every organization's score equals the model's, and its explain lines add up to it;
* each batch's scan view lists exactly the checks in force, with their verdicts.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger import client
from ledger.envelope import Envelope
from ledger.errors import Rejected, Rejection
from ledger.rules import may_withdraw
from ledger.statement_types import FACTS
from ledger.timefmt import parse_time
from tests.conftest import PG_URL
from tests.support import ROOT, World, make_gtin, make_uscc
from traceability import writebehind
from traceability.credit import credit
from traceability.policy import DEFAULT_POLICY
from traceability.scan import scan
from traceability.standing import standing_at
from traceability.stats import pass_rates
from traceability.trace import trace
from traceability.views import Views

PRODUCERS = [make_uscc(4001, "350100"), make_uscc(4002, "350200"), make_uscc(4003, "440300")]
DISTRIBUTOR, SHOP, LAB = make_uscc(4004, "350100"), make_uscc(4005, "310100"), make_uscc(4006)
HOLDERS = [*PRODUCERS, DISTRIBUTOR, SHOP]
ORGS = [*HOLDERS, LAB]
ROLES = {**{p: "producer" for p in PRODUCERS}, DISTRIBUTOR: "distributor", SHOP: "retailer",
         LAB: "lab"}
GTINS = [make_gtin(n, "690999") for n in range(1, 4)]
REGIONS = ["350100", "350200", "440300", "310100"]

Key = tuple[str, str]


@dataclass
class Model:
    producer: dict[Key, str] = field(default_factory=dict)
    inputs: dict[Key, set[Key]] = field(default_factory=dict)  # batch -> what it was made from
    holdings: dict[tuple[Key, str], int] = field(default_factory=dict)
    in_flight: dict[str, tuple[str, int]] = field(default_factory=dict)  # shipment -> receiver
    shipped: dict[str, Key] = field(default_factory=dict)  # shipment -> batch
    signed: dict[int, dict[str, Any]] = field(default_factory=dict)  # entry -> statement
    direct: dict[int, list[int]] = field(default_factory=dict)  # entry -> its corrections
    listed: set[str] = field(default_factory=set)
    open_cases: dict[str, str] = field(default_factory=dict)  # case -> respondent
    registered: list[str] = field(default_factory=list)

    def in_force(self, entry: int) -> dict[str, Any] | None:
        """The statement in force for an entry: the latest valid correction naming it wins."""
        original = self.signed[entry]
        for c in reversed(self.direct.get(entry, [])):
            correction = self.in_force(c)
            if correction is not None and valid(original, correction["replacement"]):
                return correction["replacement"]  # type: ignore[no-any-return]
        return original

    def root(self, entry: int) -> int:
        while self.signed[entry]["type"] == "correction":
            entry = self.signed[entry]["corrects"]
        return entry

    def scores(self) -> dict[str, int]:
        p = DEFAULT_POLICY
        score = {org: p.start for org in self.registered}
        for entry, signed in self.signed.items():
            s = self.in_force(entry) if signed["type"] != "correction" else None
            if s is None:
                continue
            if s["type"] == "check.recorded":
                score[s["subject"]] += p.check_points(s["kind"], s["stage"], s["verdict"])
            elif s["type"] == "recall.issued":
                score[self.producer[(s["gtin"], s["lots"][0])]] += p.recall_points(s["level"])
            elif s["type"] == "credit.adjusted":
                score[s["org"]] += s["delta"]
            elif s["type"] == "award.granted":
                score[s["org"]] += p.award
            elif s["type"] == "case.resolved":
                opened = next(o for o in self.signed.values()
                              if o["type"] == "case.opened" and o["case"] == s["case"])
                score[opened["respondent"]] += p.case_points(s["finding"])
        # EVENTS.md "Credit": the sum of the lines, clamped to 0…100.
        return {org: max(0, min(100, total)) for org, total in score.items()}

    def checks(self, key: Key) -> list[tuple[int, str]]:
        out = []
        for entry, signed in self.signed.items():
            if signed["type"] != "check.recorded":
                continue
            s = self.in_force(entry)
            if s is not None and (s["gtin"], s["lot"]) == key:
                out.append((entry, s["verdict"]))
        return out

    def recalls(self, key: Key) -> list[tuple[int, str, str, int, bool]]:
        """Recalls in force of the batch and of everything upstream of it."""
        upstream = self.reach(key, "up")
        out = []
        for entry, signed in self.signed.items():
            s = self.in_force(entry) if signed["type"] == "recall.issued" else None
            if s is not None and (s["gtin"], s["lots"][0]) in upstream:
                out.append((entry, s["gtin"], s["lots"][0], s["level"],
                            (s["gtin"], s["lots"][0]) != key))
        return sorted(out)

    def pass_counts(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(category, region) -> (supervisory checks, passed), as things stand corrected."""
        category = {(s["gtin"], s["lot"]): s["category"] for e in self.signed
                    if (s := self.in_force(e)) is not None and s["type"] == "batch.produced"}
        region = {s["uscc"]: s["region"] for e in self.signed
                  if (s := self.in_force(e)) is not None and s["type"] == "org.registered"}
        counts: dict[tuple[str, str], tuple[int, int]] = {}
        for e in self.signed:
            s = self.in_force(e)
            if s is None or s["type"] != "check.recorded" or s["kind"] != "supervisory":
                continue
            group = (category[(s["gtin"], s["lot"])], region[s["subject"]])
            checks, passed = counts.get(group, (0, 0))
            counts[group] = (checks + 1, passed + (s["verdict"] == "pass"))
        return counts

    def reach(self, key: Key, direction: str) -> set[Key]:
        edges = {b: ins for b, ins in self.inputs.items()} if direction == "up" else {
            b: {o for o, ins in self.inputs.items() if b in ins} for b in self.inputs}
        seen, todo = {key}, [key]
        while todo:
            for nxt in edges.get(todo.pop(), set()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen


def valid(old: dict[str, Any], new: dict[str, Any] | None) -> bool:
    """What the ledger asks of a direct correction's replacement (ledger.rules)."""
    fixed = FACTS[old["type"]].fixed if old["type"] in FACTS else ()
    if new is None:
        return may_withdraw(old["type"])
    return all(new[k] == old[k] for k in ("type", "id", "by", *fixed))


class History:
    def __init__(self, world: World, data: st.DataObject) -> None:
        self.world, self.data = world, data
        self.model = Model(registered=[ROOT, *ORGS])
        self.serial = itertools.count(1)
        self.pending: list[dict[str, Any]] = []
        for stored in world.ledger.entries(0, world.ledger.size()):  # the registrations
            envelope = Envelope.from_json(stored.to_json()["envelope"])
            self.model.signed[stored.index] = dict(envelope.statement)

    def draw(self, strategy: st.SearchStrategy[Any], label: str) -> Any:
        return self.data.draw(strategy, label=label)

    def say(self, type: str, by: str, **fields: Any) -> int:
        """Queue a statement; returns the entry index it will get."""
        statement = self.world.statement(type, by, **fields)
        index = self.world.ledger.size() + len(self.pending)
        self.pending.append(client.sign(statement, self.world.keys[by]))
        self.model.signed[index] = statement
        return index

    def flush(self) -> None:
        if self.pending:
            self.world.ledger.append(self.pending)
            self.pending = []

    # -- the supply chain

    def produce(self) -> None:
        m = self.model
        producer = self.draw(st.sampled_from(PRODUCERS), "producer")
        held = sorted(k for (k, org), q in m.holdings.items() if org == producer and q > 0)
        used = self.draw(st.lists(st.sampled_from(held), unique=True, max_size=2)
                         if held else st.just([]), "inputs")
        key = (self.draw(st.sampled_from(GTINS), "gtin"), f"L{next(self.serial)}")
        inputs = []
        for k in used:
            q = self.draw(st.integers(1, m.holdings[(k, producer)]), "input quantity")
            m.holdings[(k, producer)] -= q
            inputs.append({"gtin": k[0], "lot": k[1], "quantity": q})
        self.say("batch.produced", producer, gtin=key[0], lot=key[1], product="产品",
                 category=self.draw(st.sampled_from(["food", "aquatic"]), "category"),
                 quantity=100, unit="kg", produced_at="2026-11-20T06:00:00Z",
                 standard="GB 2760-2014", inputs=inputs)
        m.producer[key], m.inputs[key] = producer, set(used)
        m.holdings[(key, producer)] = 100

    def ship(self) -> None:
        m = self.model
        (key, sender), held = self.draw(
            st.sampled_from(sorted((k, q) for k, q in m.holdings.items() if q > 0)), "stock")
        to = self.draw(st.sampled_from([o for o in HOLDERS if o != sender]), "to")
        quantity = self.draw(st.integers(1, held), "quantity")
        shipment = f"S{next(self.serial)}"
        self.say("batch.shipped", sender, gtin=key[0], lot=key[1], quantity=quantity, to=to,
                 shipment=shipment)
        m.holdings[(key, sender)] -= quantity
        m.in_flight[shipment] = (to, quantity)
        m.shipped[shipment] = key

    def receive(self) -> None:
        m = self.model
        shipment = self.draw(st.sampled_from(sorted(m.in_flight)), "shipment")
        to, quantity = m.in_flight.pop(shipment)
        self.say("batch.received", to, shipment=shipment, quantity=quantity)
        key = m.shipped[shipment]
        m.holdings[(key, to)] = m.holdings.get((key, to), 0) + quantity

    # -- checks, recalls, credit, cases

    def batch(self) -> Key:
        return self.draw(st.sampled_from(sorted(self.model.producer)), "batch")

    def check(self) -> None:
        key = self.batch()
        self.say("check.recorded", LAB, gtin=key[0], lot=key[1],
                 subject=self.draw(st.sampled_from(HOLDERS), "subject"),
                 kind=self.draw(st.sampled_from(["supervisory", "self", "third_party"]), "kind"),
                 stage=self.draw(st.sampled_from(["production", "circulation"]), "stage"),
                 sampled_at=self.draw(st.sampled_from(["2026-10-02T08:00:00Z",
                                                       "2026-11-03T08:00:00Z"]), "sampled"),
                 standard="GB 2762-2022",
                 items=[{"name": "铅", "value": "0.1", "limit": "0.2", "unit": "mg/kg",
                         "verdict": "pass"}],
                 verdict=self.draw(st.sampled_from(["pass", "fail"]), "verdict"),
                 report_no=f"R{next(self.serial)}")

    def recall(self) -> None:
        key = self.batch()
        self.say("recall.issued", self.model.producer[key], gtin=key[0], lots=[key[1]],
                 reason="抽检不合格", level=self.draw(st.integers(1, 3), "level"))

    def adjust(self) -> None:
        self.say("credit.adjusted", ROOT, org=self.draw(st.sampled_from(ORGS), "org"),
                 delta=self.draw(st.integers(-20, 20), "delta"), reason="调整", basis="规则",
                 refs=[])

    def award(self) -> None:
        self.say("award.granted", ROOT, org=self.draw(st.sampled_from(ORGS), "org"),
                 title="质量奖", valid_until=self.draw(st.sampled_from(
                     ["2099-01-01T00:00:00Z", "2030-01-01T00:00:00Z"]), "award until"))

    def blacklist(self) -> None:
        m = self.model
        org = self.draw(st.sampled_from(ORGS), "org")
        if org in m.listed:
            self.say("blacklist.removed", ROOT, org=org, reason="信用修复", refs=[])
            m.listed.discard(org)
        else:
            # Ends (if at all) after now, when the stored standing must change by itself.
            until = self.draw(st.sampled_from([None, "2031-06-01T00:00:00Z"]), "listing until")
            self.say("blacklist.added", ROOT, org=org, reason="失信", basis="法", refs=[],
                     until=until)
            m.listed.add(org)

    def open_case(self) -> None:
        case = f"C{next(self.serial)}"
        respondent = self.draw(st.sampled_from(ORGS), "respondent")
        known = sorted(self.model.producer)
        batches = self.draw(st.lists(st.sampled_from(known), unique=True, max_size=2)
                            if known else st.just([]), "batches")
        self.say("case.opened", ROOT, case=case, respondent=respondent,
                 batches=[{"gtin": g, "lot": lot} for g, lot in batches], summary="投诉",
                 channel="12315")
        self.model.open_cases[case] = respondent

    def resolve_case(self) -> None:
        case = self.draw(st.sampled_from(sorted(self.model.open_cases)), "case")
        del self.model.open_cases[case]
        self.say("case.resolved", ROOT, case=case, summary="处理",
                 finding=self.draw(st.sampled_from(["substantiated", "unsubstantiated"]),
                                   "finding"), refs=[])

    # -- corrections (all by the regulator, who may correct anything)

    def correctable(self) -> dict[str, list[int]]:
        kinds: dict[str, list[int]] = {}
        for e, s in sorted(self.model.signed.items()):
            if s["type"] in ("check.recorded", "recall.issued", "correction", "batch.produced",
                             "org.registered"):
                kinds.setdefault(s["type"], []).append(e)
        return kinds

    def correct(self) -> None:
        m = self.model
        kinds = self.correctable()
        # The kind first, so that the many registrations do not crowd out the checks.
        kind = self.draw(st.sampled_from(sorted(kinds)), "kind corrected")
        target = self.draw(st.sampled_from(kinds[kind]), "corrects")
        root = m.root(target)
        current = m.in_force(root) or m.signed[root]
        new = self.changed(dict(current))
        if kind == "correction" and self.draw(st.integers(0, 4), "malformed") == 0:
            # A nested replacement that would withdraw what cannot be withdrawn, or swap
            # in another statement (another id) further down, is refused at every depth.
            event("malformed correction of a correction: refused")
            bad = None if not may_withdraw(m.signed[root]["type"]) else {
                **current, "id": str(uuid.uuid4())}
            self.flush()
            envelope = client.sign(
                self.world.statement("correction", ROOT, corrects=target, reason="更正",
                                     replacement=self.nested(target, bad)),
                self.world.keys[ROOT])
            size = self.world.ledger.size()
            with pytest.raises(Rejected) as refused:
                self.world.ledger.append([envelope])
            assert refused.value.kind is Rejection.BAD_CORRECTION
            assert self.world.ledger.size() == size
            return
        if kind == "correction":
            event("correction of a correction")
        replacement = self.nested(target, new)
        index = self.say("correction", ROOT, corrects=target, reason="更正",
                         replacement=replacement)
        m.direct.setdefault(target, []).append(index)

    def nested(self, target: int, new: dict[str, Any] | None) -> dict[str, Any] | None:
        """The replacement that, put in place of `target`, puts `new` in force at its root."""
        m = self.model
        if m.signed[target]["type"] != "correction":
            return new
        inner = m.signed[target]["corrects"]
        return {**(m.in_force(target) or m.signed[target]), "replacement": self.nested(inner, new)}

    def changed(self, s: dict[str, Any]) -> dict[str, Any] | None:
        kind = s["type"]
        if kind in ("check.recorded", "recall.issued") and self.draw(st.booleans(), "withdraw"):
            event(f"withdraw {kind}")
            return None
        if kind == "check.recorded":
            return {**s, "verdict": self.draw(st.sampled_from(["pass", "fail"]), "verdict"),
                    "stage": self.draw(st.sampled_from(["production", "circulation"]), "stage")}
        if kind == "recall.issued":
            return {**s, "level": self.draw(st.integers(1, 3), "level")}
        if kind == "batch.produced":
            return {**s, "category": self.draw(st.sampled_from(["food", "industrial"]), "cat")}
        return {**s, "region": self.draw(st.sampled_from(REGIONS), "region")}

    # -- running

    def possible(self) -> list[Callable[[], None]]:
        m = self.model
        ops: list[Callable[[], None]] = [self.produce, self.produce, self.adjust, self.award,
                                         self.blacklist, self.open_case, self.correct,
                                         self.correct]
        if any(q > 0 for q in m.holdings.values()):
            ops += [self.ship, self.ship]
        if m.in_flight:
            ops += [self.receive, self.receive]
        if m.producer:
            ops += [self.check, self.check, self.recall]
        if m.open_cases:
            ops += [self.resolve_case]
        return ops

    def run(self, steps: int, views: Views, attached: bool) -> None:
        for _ in range(steps):
            operation = self.draw(st.sampled_from(self.possible()), "operation")
            event(operation.__name__)
            operation()
            # Corrections name entries already in the log; everything else may wait to
            # go in one append with what follows.
            if operation == self.correct or not self.draw(st.booleans(), "same append"):
                self.flush()
            if not attached and self.draw(st.booleans(), "catch up now"):
                views.catch_up()
        self.flush()
        views.catch_up()


def check_views(history: History, views: Views) -> None:
    m = history.model
    kept = views.dump()
    views.rebuild()
    assert views.dump() == kept
    # Rebuilt in chunks of a few entries: what a chunk writes in bulk meets rows
    # written by the chunks before it.
    views.rebuild(chunk_size=history.draw(st.integers(1, 5), "rebuild chunk size"))
    assert views.dump() == kept
    # A chunk's held rows sent a few at a time (on PostgreSQL, every _SEND_EVERY rows,
    # while the chunk is still being projected).
    with mock.patch.object(writebehind, "_SEND_EVERY", history.draw(st.integers(1, 8), "send")):
        views.rebuild()
    assert views.dump() == kept

    batches = sorted(m.producer)
    up = {k: trace(views, *k, "up").batches() for k in batches}
    down = {k: trace(views, *k, "down").batches() for k in batches}
    for a in batches:
        assert up[a] == m.reach(a, "up"), a
        assert down[a] == m.reach(a, "down"), a
        for b in batches:
            assert (b in down[a]) == (a in up[b]), (a, b)

    expected = m.scores()
    for org in m.registered:
        c = credit(views, org)
        assert c.score == expected[org], org
        assert sum(line.delta for line in c.explain) == c.score
        assert c.blacklisted == (org in m.listed)
        check_standing(views, org)
    for k in batches:
        view = scan(views, *k)
        c = credit(views, m.producer[k])
        assert (view.producer.score, view.producer.grade, view.producer.blacklisted) == (
            c.score, c.grade, c.blacklisted), k
        assert [(c.entry, c.verdict) for c in view.checks] == m.checks(k), k
        assert sorted((r.entry, r.gtin, r.lot, r.level, r.upstream)
                      for r in view.recalls) == m.recalls(k), k
    rates = pass_rates(views, by=["category", "region"], region_level="full")
    assert {(r.category, r.region): (r.checks, r.passed) for r in rates} == m.pass_counts()


def check_standing(views: Views, org: str) -> None:
    """The standing the projector keeps for the scan view says what the credit lines
    say, now and at every moment it changes on its own (an award or listing running
    out), a second either side of each, and long after."""
    with views.reading() as tx:
        text = tx.value("SELECT timeline FROM v_standing WHERE org = ?", (org,))
    now = views.clock()
    assert standing_at(text, now) is not None, org
    moments = [now, now + timedelta(days=3650)]
    for when, _, _ in json.loads(text):
        t = parse_time(when)
        moments += [t, t - timedelta(seconds=1), t + timedelta(seconds=1)]
    for at in moments:
        kept = standing_at(text, at)
        if kept is not None:
            c = credit(views, org, at)
            assert kept == (c.score, c.blacklisted), (org, at)


def run_example(url: str, data: st.DataObject, steps: int) -> None:
    world = World(url)
    try:
        for org in ORGS:
            world.register(org, f"企业{org[-6:]}", ROLES[org], region=org[2:8])
        chunk = data.draw(st.integers(1, 8), label="chunk size")
        views = Views(world.ledger, chunk_size=chunk)
        attached = data.draw(st.booleans(), label="attached")
        if attached:
            views.attach(world.ledger, raise_errors=True)
        history = History(world, data)
        try:
            history.run(steps, views, attached)
            check_views(history, views)
        finally:
            views.close()
    finally:
        world.ledger.close()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), steps=st.integers(5, 40))
def test_views_are_a_function_of_the_log_sqlite(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, steps: int
) -> None:
    folder = tmp_path_factory.mktemp("views")
    run_example(os.path.join(folder, "ledger.db"), data, steps)


@pytest.mark.postgres
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data(), steps=st.integers(5, 30))
def test_views_are_a_function_of_the_log_postgres(
    postgres: str, data: st.DataObject, steps: int
) -> None:
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:16]
    try:
        run_example(f"{postgres}?schema={schema}", data, steps)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
