"""Conservation of quantity, as a property of random supply-chain histories.

Hypothesis plays a few producers, distributors and retailers: batches are produced (some
from inputs the producer holds, the GTIN written as GTIN-13 or GTIN-14), parts are shipped
on to anyone, some shipments are received. Mixed in are attempts the ledger must refuse
without effect: shipping more than is held, using more input than is held, receiving a
shipment twice or in someone else's name, producing a batch that exists, and a batch of
envelopes whose last one over-ships after a good one.

The test keeps its own model of who holds what. At the end, for every batch:

    produced == sum of holdings + in transit + consumed as input

computed from the ledger's aggregates (through the application's cache, and again cold
from storage by a second application) and from the model; the two must agree item by item.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger.application import Ledger
from ledger.domain.batch import Batch
from ledger.domain.shipment import Shipment
from ledger.errors import Rejected, Rejection
from tests.conftest import PG_URL
from tests.support import World, make_gtin, make_uscc

PRODUCERS = [make_uscc(1001), make_uscc(1002), make_uscc(1003)]
DISTRIBUTORS = [make_uscc(2001), make_uscc(2002)]
RETAILERS = [make_uscc(3001), make_uscc(3002)]
ORGS = PRODUCERS + DISTRIBUTORS + RETAILERS
ROLES = {**{p: "producer" for p in PRODUCERS}, **{d: "distributor" for d in DISTRIBUTORS},
         **{r: "retailer" for r in RETAILERS}}
GTINS = [make_gtin(n) for n in range(1, 5)]  # GTIN-14s starting with 0: [1:] is the GTIN-13

BatchKey = tuple[str, str]  # (GTIN-14, lot)


# ---- the model ----------------------------------------------------------------------------------


@dataclass
class ModelBatch:
    produced: int
    holdings: Counter[str] = field(default_factory=Counter)
    consumed: int = 0


@dataclass
class ModelShipment:
    batch: BatchKey
    sender: str
    receiver: str
    quantity: int
    received: bool = False


@dataclass
class Model:
    batches: dict[BatchKey, ModelBatch] = field(default_factory=dict)
    shipments: dict[str, ModelShipment] = field(default_factory=dict)
    accepted: int = 0  # statements recorded during the history

    def in_transit(self, key: BatchKey) -> int:
        # Derived from the shipments, not kept as a counter: an independent account.
        return sum(s.quantity for s in self.shipments.values() if s.batch == key and not s.received)

    def stock(self) -> list[tuple[BatchKey, str, int]]:
        """(batch, holder, quantity) for every positive holding, in a stable order."""
        return [(k, org, q) for k, b in self.batches.items()
                for org, q in sorted(b.holdings.items()) if q > 0]

    def in_flight(self) -> list[str]:
        return [sid for sid, s in self.shipments.items() if not s.received]

    def delivered(self) -> list[str]:
        return [sid for sid, s in self.shipments.items() if s.received]


# ---- one history ------------------------------------------------------------------------------


class History:
    """Draws operations from `data`, submits them to the world, and keeps the model."""

    def __init__(self, world: World, data: st.DataObject) -> None:
        self.world = world
        self.data = data
        self.model = Model()
        self.serial = itertools.count(1)

    def draw(self, strategy: st.SearchStrategy[Any], label: str) -> Any:
        return self.data.draw(strategy, label=label)

    def written(self, gtin14: str) -> str:
        """The GTIN as a client might write it: GTIN-14 or the same item as GTIN-13."""
        return gtin14[1:] if self.draw(st.booleans(), "as GTIN-13") else gtin14

    # -- envelopes

    def produced(self, producer: str, key: BatchKey, quantity: int,
                 inputs: list[tuple[BatchKey, int]]) -> dict[str, Any]:
        return self.world.envelope(
            "batch.produced", producer, gtin=self.written(key[0]), lot=key[1], product="产品",
            category="food", quantity=quantity, unit="kg", produced_at="2026-11-20T06:00:00Z",
            standard="GB 2760-2014",
            inputs=[{"gtin": self.written(k[0]), "lot": k[1], "quantity": q} for k, q in inputs],
        )

    def shipped(self, sender: str, key: BatchKey, quantity: int, to: str,
                shipment: str) -> dict[str, Any]:
        return self.world.envelope("batch.shipped", sender, gtin=self.written(key[0]), lot=key[1],
                                   quantity=quantity, to=to, shipment=shipment)

    def received(self, receiver: str, shipment: str, quantity: int) -> dict[str, Any]:
        return self.world.envelope("batch.received", receiver, shipment=shipment,
                                   quantity=quantity)

    # -- submitting

    def accept(self, envelopes: list[dict[str, Any]]) -> None:
        size = self.world.ledger.size()
        receipts = self.world.ledger.append(envelopes)
        assert [r.index for r in receipts] == list(range(size, size + len(envelopes)))
        self.model.accepted += len(envelopes)

    def refuse(self, envelopes: list[dict[str, Any]], *kinds: Rejection) -> None:
        size = self.world.ledger.size()
        try:
            self.world.ledger.append(envelopes)
        except Rejected as e:
            assert e.kind in kinds, f"expected one of {[k.value for k in kinds]}, got {e.kind}: {e}"
            assert e.position == (len(envelopes) - 1 if len(envelopes) > 1 else None), str(e)
        else:
            raise AssertionError(f"accepted what should be refused ({[k.value for k in kinds]})")
        assert self.world.ledger.size() == size

    # -- valid operations

    def produce(self) -> None:
        producer = self.draw(st.sampled_from(PRODUCERS), "producer")
        key = (self.draw(st.sampled_from(GTINS), "gtin"), f"L{next(self.serial)}")
        quantity = self.draw(st.integers(1, 500), "quantity")
        held = [(k, q) for k, org, q in self.model.stock() if org == producer]
        chosen = self.draw(st.lists(st.sampled_from(held), unique_by=lambda h: h[0], max_size=2)
                           if held else st.just([]), "inputs")
        inputs = [(k, self.draw(st.integers(1, q), "input quantity")) for k, q in chosen]
        if inputs:
            event("produce with inputs")
        self.accept([self.produced(producer, key, quantity, inputs)])
        for k, q in inputs:
            self.model.batches[k].holdings[producer] -= q
            self.model.batches[k].consumed += q
        self.model.batches[key] = ModelBatch(quantity, Counter({producer: quantity}))

    def ship(self) -> None:
        key, sender, held = self.draw(st.sampled_from(self.model.stock()), "stock")
        quantity = self.draw(st.integers(1, held), "quantity")
        to = self.draw(st.sampled_from([o for o in ORGS if o != sender]), "to")
        shipment = f"S{next(self.serial)}"
        self.accept([self.shipped(sender, key, quantity, to, shipment)])
        self.model.batches[key].holdings[sender] -= quantity
        self.model.shipments[shipment] = ModelShipment(key, sender, to, quantity)

    def receive(self) -> None:
        sid = self.draw(st.sampled_from(self.model.in_flight()), "shipment")
        s = self.model.shipments[sid]
        self.accept([self.received(s.receiver, sid, s.quantity)])
        s.received = True
        self.model.batches[s.batch].holdings[s.receiver] += s.quantity

    # -- invalid operations: refused, and the model does not change

    def over_ship(self) -> None:
        key = self.draw(st.sampled_from(sorted(self.model.batches)), "batch")
        sender = self.draw(st.sampled_from(ORGS), "sender")
        held = self.model.batches[key].holdings[sender]
        quantity = held + self.draw(st.integers(1, 100), "excess")
        to = next(o for o in ORGS if o != sender)
        self.refuse([self.shipped(sender, key, quantity, to, f"X{next(self.serial)}")],
                    Rejection.INSUFFICIENT_QUANTITY if held else Rejection.NOT_HELD)

    def over_consume(self) -> None:
        producer = self.draw(st.sampled_from(PRODUCERS), "producer")
        key = self.draw(st.sampled_from(sorted(self.model.batches)), "input batch")
        held = self.model.batches[key].holdings[producer]
        quantity = held + self.draw(st.integers(1, 100), "excess")
        new = (self.draw(st.sampled_from(GTINS), "gtin"), f"X{next(self.serial)}")
        self.refuse([self.produced(producer, new, 10, [(key, quantity)])],
                    Rejection.INSUFFICIENT_QUANTITY if held else Rejection.NOT_HELD)

    def produce_again(self) -> None:
        key = self.draw(st.sampled_from(sorted(self.model.batches)), "existing batch")
        producer = self.draw(st.sampled_from(PRODUCERS), "producer")
        self.refuse([self.produced(producer, key, 10, [])], Rejection.DUPLICATE_BATCH)

    def receive_twice(self) -> None:
        sid = self.draw(st.sampled_from(self.model.delivered()), "delivered shipment")
        s = self.model.shipments[sid]
        self.refuse([self.received(s.receiver, sid, s.quantity)], Rejection.ALREADY_RECEIVED)

    def receive_as_someone_else(self) -> None:
        sid = self.draw(st.sampled_from(self.model.in_flight()), "shipment")
        s = self.model.shipments[sid]
        thief = self.draw(st.sampled_from([o for o in ORGS if o != s.receiver]), "thief")
        self.refuse([self.received(thief, sid, s.quantity)], Rejection.WRONG_RECEIVER)

    def good_then_over_ship(self) -> None:
        """A batch of two envelopes: a valid shipment, then one more than what is left."""
        key, sender, held = self.draw(st.sampled_from(self.model.stock()), "stock")
        quantity = self.draw(st.integers(1, held), "quantity")
        to = next(o for o in ORGS if o != sender)
        good = self.shipped(sender, key, quantity, to, f"S{next(self.serial)}")
        left = held - quantity
        bad = self.shipped(sender, key, left + 1, to, f"X{next(self.serial)}")
        self.refuse([good, bad], Rejection.INSUFFICIENT_QUANTITY if left else Rejection.NOT_HELD)

    def possible(self) -> list[Callable[[], None]]:
        m = self.model
        ops: list[Callable[[], None]] = [self.produce]
        if m.stock():
            ops += [self.ship, self.ship, self.good_then_over_ship]
        if m.in_flight():
            ops += [self.receive, self.receive, self.receive_as_someone_else]
        if m.batches:
            ops += [self.over_ship, self.over_consume, self.produce_again]
        if m.delivered():
            ops += [self.receive_twice]
        return ops

    def run(self, steps: int) -> None:
        for _ in range(steps):
            operation = self.draw(st.sampled_from(self.possible()), "operation")
            event(operation.__name__)
            operation()


# ---- the property -----------------------------------------------------------------------------


def check_conservation(world: World, model: Model, ledger: Ledger) -> None:
    for (gtin, lot), m in model.batches.items():
        b: Batch = ledger.repository.get(Batch.create_id(gtin, lot))
        in_transit = model.in_transit((gtin, lot))
        holdings = {org: q for org, q in m.holdings.items() if q}
        assert all(q >= 0 for q in m.holdings.values())  # the model never went negative
        # From the aggregate.
        assert b.quantity == sum(b.holdings.values()) + b.in_transit + b.consumed, (gtin, lot)
        assert all(q > 0 for q in b.holdings.values()), b.holdings
        # From the model.
        assert m.produced == sum(holdings.values()) + in_transit + m.consumed, (gtin, lot)
        # And they agree, item by item.
        assert (b.quantity, b.holdings, b.in_transit, b.consumed) == (
            m.produced, holdings, in_transit, m.consumed
        ), (gtin, lot)
    for sid, s in model.shipments.items():
        shipment: Shipment = ledger.repository.get(Shipment.create_id(sid))
        assert (shipment.received_entry is not None) == s.received, sid
        assert (shipment.sender, shipment.receiver, shipment.quantity) == (
            s.sender, s.receiver, s.quantity)


def run_example(url: str, data: st.DataObject, steps: int) -> None:
    world = World(url)
    try:
        for org in ORGS:
            world.register(org, f"测试企业 {org[-6:]}", ROLES[org])
        start = world.ledger.size()
        history = History(world, data)
        history.run(steps)
        assert world.ledger.size() == start + history.model.accepted
        check_conservation(world, history.model, world.ledger)
        # Once more from storage alone: a second application with a cold cache.
        cold = Ledger(url, clock=world.clock)
        try:
            check_conservation(world, history.model, cold)
        finally:
            cold.close()
    finally:
        world.ledger.close()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), steps=st.integers(5, 60))
def test_quantities_are_conserved_sqlite(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, steps: int
) -> None:
    folder = tmp_path_factory.mktemp("conservation")
    run_example(os.path.join(folder, "ledger.db"), data, steps)


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.mark.postgres
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data(), steps=st.integers(5, 30))
def test_quantities_are_conserved_postgres(postgres: str, data: st.DataObject, steps: int) -> None:
    schema = "t_" + uuid.uuid4().hex[:16]  # a fresh schema per example
    try:
        run_example(f"{postgres}?schema={schema}", data, steps)
    finally:
        drop_schema(schema)


def test_model_helpers_agree_on_a_hand_written_history(tmp_path: Any) -> None:
    """The model itself, checked once by hand so that the property cannot pass vacuously."""
    world = World(os.path.join(tmp_path, "ledger.db"))
    for org in ORGS:
        world.register(org, f"测试企业 {org[-6:]}", ROLES[org])
    p, d, r = PRODUCERS[0], DISTRIBUTORS[0], RETAILERS[0]
    g = GTINS[0]
    world.produce(p, g, "A", 100)
    world.ship(p, g, "A", 30, d, "S1")
    world.receive(d, "S1", 30)
    world.ship(d, g, "A", 10, r, "S2")
    world.produce(p, GTINS[1], "B", 5, inputs=[{"gtin": g[1:], "lot": "A", "quantity": 50}])
    b: Batch = world.ledger.repository.get(Batch.create_id(g, "A"))
    assert (b.holdings, b.in_transit, b.consumed) == ({p: 20, d: 20}, 10, 50)
    model = Model(
        batches={(g, "A"): ModelBatch(100, Counter({p: 20, d: 20}), consumed=50),
                 (GTINS[1], "B"): ModelBatch(5, Counter({p: 5}))},
        shipments={"S1": ModelShipment((g, "A"), p, d, 30, received=True),
                   "S2": ModelShipment((g, "A"), d, r, 10)},
    )
    check_conservation(world, model, world.ledger)
    world.ledger.close()
