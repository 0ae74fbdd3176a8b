"""The ledger's write side as its users meet it: genesis, receipts, idempotency, batches,
and two writers racing for the same flour."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.application import Ledger
from ledger.domain.batch import Batch
from ledger.errors import IdConflict, NotFound, Rejected, Rejection
from ledger.log.hasher import leaf_hash
from ledger.log.tree import MemoryNodes, root_at
from tests.support import ROOT, World, make_gtin, make_uscc

FARM, MILL, BAKERY = make_uscc(11), make_uscc(12), make_uscc(13)
WHEAT = make_gtin(1)


def farm_world(db_url: str) -> World:
    world = World(db_url)
    world.register(FARM, "青禾农场", "producer")
    world.register(MILL, "金穗面粉厂", "producer")
    world.register(BAKERY, "麦香烘焙", "producer")
    world.produce(FARM, WHEAT, "W-2026-11", 1000, product="小麦", category="agricultural")
    return world


def test_a_new_ledger_holds_the_root_regulator_and_its_key(db_url: str) -> None:
    world = World(db_url)
    assert world.ledger.size() == 2
    assert world.ledger.config.root_org == ROOT
    first = world.ledger.statement_at(0)
    second = world.ledger.statement_at(1)
    assert (first.type, first.body["uscc"]) == ("org.registered", ROOT)
    assert (second.type, second.body["org"]) == ("key.registered", ROOT)


def test_a_ledger_is_created_once(db_url: str) -> None:
    world = World(db_url)
    with pytest.raises(Rejected) as e:
        world.ledger.create("x", "y", ROOT, [])
    assert e.value.kind is Rejection.LEDGER_NOT_EMPTY


def test_nothing_is_appended_to_a_ledger_that_was_never_created(tmp_path: Any) -> None:
    with pytest.raises(NotFound):
        Ledger(str(tmp_path / "empty.db")).append([])


def test_the_receipt_names_the_entry_and_its_leaf_hash(db_url: str) -> None:
    world = farm_world(db_url)
    receipt = world.ship(FARM, WHEAT, "W-2026-11", 400, MILL, "S-1")
    stored = world.ledger.entry(receipt.index)
    assert receipt.index == world.ledger.size() - 1
    assert receipt.leaf_hash == leaf_hash(stored.text.encode()) == stored.leaf_hash
    entry = stored.to_json()
    assert entry["recorded_at"] == receipt.recorded_at
    assert set(entry) == {"envelope", "recorded_at"}


def test_the_same_envelope_twice_records_once_and_returns_the_first_receipt(db_url: str) -> None:
    world = farm_world(db_url)
    envelope = world.envelope("batch.shipped", FARM, gtin=WHEAT, lot="W-2026-11", quantity=10,
                              to=MILL, shipment="S-1")
    first = world.ledger.append([envelope])[0]
    size = world.ledger.size()
    world.clock.advance(hours=1)
    again = world.ledger.append([envelope])[0]
    assert world.ledger.size() == size
    assert (again.index, again.recorded_at, again.leaf_hash) == (
        first.index, first.recorded_at, first.leaf_hash)
    assert again.duplicate and not first.duplicate


def test_the_same_id_with_other_content_is_a_conflict(db_url: str) -> None:
    world = farm_world(db_url)
    statement = world.statement("batch.shipped", FARM, gtin=WHEAT, lot="W-2026-11", quantity=10,
                                to=MILL, shipment="S-1")
    from ledger import client

    world.ledger.append([client.sign(statement, world.keys[FARM])])
    size = world.ledger.size()
    with pytest.raises(IdConflict) as e:
        world.ledger.append([client.sign({**statement, "quantity": 11}, world.keys[FARM])])
    assert e.value.kind is Rejection.ID_CONFLICT and e.value.index == size - 1
    assert world.ledger.size() == size


def test_a_batch_is_recorded_in_order_and_may_build_on_itself(db_url: str) -> None:
    world = farm_world(db_url)
    size = world.ledger.size()
    batch = [
        world.envelope("batch.shipped", FARM, gtin=WHEAT, lot="W-2026-11", quantity=400, to=MILL,
                       shipment="S-1"),
        world.envelope("batch.received", MILL, shipment="S-1", quantity=400),
        world.envelope("batch.produced", MILL, gtin=make_gtin(2), lot="F1", product="面粉",
                       category="food", quantity=300, unit="kg", produced_at="2026-11-21T00:00:00Z",
                       standard="GB/T 1355-2021",
                       inputs=[{"gtin": WHEAT, "lot": "W-2026-11", "quantity": 400}]),
    ]
    receipts = world.ledger.append(batch)
    assert [r.index for r in receipts] == [size, size + 1, size + 2]
    wheat: Batch = world.ledger.repository.get(Batch.create_id(WHEAT, "W-2026-11"))
    assert wheat.holdings == {FARM: 600} and wheat.consumed == 400 and wheat.in_transit == 0


def test_a_batch_with_one_bad_envelope_records_nothing(db_url: str) -> None:
    world = farm_world(db_url)
    size = world.ledger.size()
    batch = [
        world.envelope("batch.shipped", FARM, gtin=WHEAT, lot="W-2026-11", quantity=400, to=MILL,
                       shipment="S-1"),
        world.envelope("batch.shipped", FARM, gtin=WHEAT, lot="W-2026-11", quantity=700, to=MILL,
                       shipment="S-2"),
    ]
    with pytest.raises(Rejected) as e:
        world.ledger.append(batch)
    assert e.value.kind is Rejection.INSUFFICIENT_QUANTITY and e.value.position == 1
    assert world.ledger.size() == size
    # The refused batch left no trace in memory either: the first shipment is still possible.
    world.ship(FARM, WHEAT, "W-2026-11", 1000, MILL, "S-1")


def test_more_than_a_thousand_envelopes_is_refused_whole(db_url: str) -> None:
    world = World(db_url)
    with pytest.raises(Rejected) as e:
        world.ledger.append([{}] * 1001)
    assert e.value.kind is Rejection.TOO_MANY


def test_the_tree_in_the_database_is_the_tree_of_the_entries(db_url: str) -> None:
    world = farm_world(db_url)
    for n in range(5):
        world.ship(FARM, WHEAT, "W-2026-11", 10, MILL, f"S-{n}")
    size = world.ledger.size()
    leaves = [leaf_hash(e.text.encode()) for e in world.ledger.entries(0, size)]
    assert root_at(size, world.ledger.recorder) == root_at(size, MemoryNodes.from_leaf_hashes(leaves))  # type: ignore[arg-type]


def test_two_writers_cannot_spend_the_same_flour(db_url: str) -> None:
    """Mill and bakery run separate processes against one database. Both check the farm's
    600 kg, both try to take 400: the second to commit must lose and be checked again."""
    world = farm_world(db_url)
    other = Ledger(db_url, clock=world.clock, log_key=world.log_key)
    world.ledger.repository.get(Batch.create_id(WHEAT, "W-2026-11"))
    other.repository.get(Batch.create_id(WHEAT, "W-2026-11"))  # both have it cached

    first = world.envelope("batch.shipped", FARM, gtin=WHEAT, lot="W-2026-11", quantity=600,
                           to=MILL, shipment="S-1")
    second = world.envelope("batch.shipped", FARM, gtin=WHEAT, lot="W-2026-11", quantity=600,
                            to=BAKERY, shipment="S-2")

    # Let `other` validate `second` against the old state, then let `world` commit `first`
    # just before `other` saves: a true race, made deterministic.
    original_save = other._save
    raced = []

    def save_after_the_rival(*args: Any, **kwargs: Any) -> Any:
        if not raced:
            raced.append(world.ledger.append([first]))
        return original_save(*args, **kwargs)

    other._save = save_after_the_rival  # type: ignore[method-assign]
    with pytest.raises(Rejected) as e:
        other.append([second])
    assert e.value.kind is Rejection.INSUFFICIENT_QUANTITY
    fresh = Ledger(db_url)
    wheat: Batch = fresh.repository.get(Batch.create_id(WHEAT, "W-2026-11"))
    assert wheat.holdings == {FARM: 400} and wheat.in_transit == 600


def test_independent_writers_both_get_gap_free_indexes(db_url: str) -> None:
    world = farm_world(db_url)
    other = Ledger(db_url, clock=world.clock, log_key=world.log_key)
    other.size()
    first = world.envelope("batch.shipped", FARM, gtin=WHEAT, lot="W-2026-11", quantity=10,
                           to=MILL, shipment="S-1")
    second = world.envelope("batch.produced", MILL, gtin=make_gtin(3), lot="X", product="麸皮",
                            category="food", quantity=5, unit="kg",
                            produced_at="2026-11-21T00:00:00Z", standard="Q/JS 0001S-2026",
                            inputs=[])
    other.frontier()  # `other` knows the old size
    size = world.ledger.size()
    world.ledger.append([first])
    receipt = other.append([second])[0]  # claims `size` first, conflicts, retries at size + 1
    assert receipt.index == size + 1
    fresh = Ledger(db_url)
    assert [e.index for e in fresh.entries(0, size + 2)] == list(range(size + 2))


def _ship_in_a_process(db_url: str, log_key: bytes, envelope: dict[str, Any], out: Any) -> None:
    try:
        Ledger(db_url, log_key=Ed25519PrivateKey.from_private_bytes(log_key)).append([envelope])
        out.put("recorded")
    except Rejected as e:
        out.put(e.kind.value)


@pytest.mark.slow
def test_four_processes_race_for_one_batch(db_url: str) -> None:
    """Four distributors' systems ship from one 1,000 kg batch at once, 300 kg each:
    exactly three shipments fit, whatever the interleaving."""
    world = farm_world(db_url)
    envelopes = [
        world.envelope("batch.shipped", FARM, gtin=WHEAT, lot="W-2026-11", quantity=300,
                       to=target, shipment=f"S-{n}")
        for n, target in enumerate([MILL, BAKERY, MILL, BAKERY])
    ]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    workers = [ctx.Process(target=_ship_in_a_process, args=(db_url, world.log_key.private_bytes_raw(), e, out)) for e in envelopes]
    for w in workers:
        w.start()
    results = sorted(out.get(timeout=120) for _ in workers)
    for w in workers:
        w.join(timeout=60)
    assert results == ["insufficient-quantity", "recorded", "recorded", "recorded"]
    fresh = Ledger(db_url)
    wheat: Batch = fresh.repository.get(Batch.create_id(WHEAT, "W-2026-11"))
    assert wheat.holdings == {FARM: 100} and wheat.in_transit == 900
    size = fresh.size()
    assert [e.index for e in fresh.entries(0, size)] == list(range(size))


def _flip_signature(envelope: dict[str, Any]) -> dict[str, Any]:
    import base64

    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[0] ^= 0x80
    return dict(envelope, signatures=[dict(envelope["signatures"][0],
                                           sig=base64.b64encode(bytes(sig)).decode())])


def test_a_large_batch_verified_in_worker_processes_still_names_the_first_bad_signature(
    db_url: str,
) -> None:
    """Signatures by known keys are checked on other cores while the rules run. A forged
    signature at 250 and an over-shipment at 260: the forgery is the fault reported."""
    world = farm_world(db_url)
    world.ledger.intake.verifier.workers = 1  # force the worker path even on a one-core machine
    envelopes = [
        world.envelope("batch.shipped", FARM, gtin=WHEAT, lot="W-2026-11", quantity=1,
                       to=MILL, shipment=f"S-{n}")
        for n in range(300)
    ]
    envelopes[250] = _flip_signature(envelopes[250])
    envelopes[260] = world.envelope("batch.shipped", FARM, gtin=WHEAT, lot="W-2026-11",
                                    quantity=10**6, to=MILL, shipment="S-huge")
    size = world.ledger.size()
    with pytest.raises(Rejected) as e:
        world.ledger.append(envelopes)
    assert (e.value.kind, e.value.position) == (Rejection.BAD_SIGNATURE, 250)
    assert world.ledger.intake.verifier._pool is not None  # the workers did the checking
    envelopes[260] = world.envelope("batch.shipped", FARM, gtin=WHEAT, lot="W-2026-11",
                                    quantity=1, to=MILL, shipment="S-260")
    with pytest.raises(Rejected) as e:
        world.ledger.append(envelopes)
    assert (e.value.kind, e.value.position) == (Rejection.BAD_SIGNATURE, 250)
    assert world.ledger.size() == size
    envelopes[250] = world.envelope("batch.shipped", FARM, gtin=WHEAT, lot="W-2026-11",
                                    quantity=1, to=MILL, shipment="S-250")
    assert len(world.ledger.append(envelopes)) == 300
    world.ledger.close()


def test_the_envelope_bytes_the_ledger_builds_are_its_canonical_json() -> None:
    """The writer concatenates an envelope's JCS instead of canonicalising the object:
    the same bytes, with one signature or several."""
    from ledger import client, keys
    from ledger.log.entry_format import envelope_jcs
    from ledger.canonical import canonical_bytes
    from ledger.envelope import Envelope

    first, second = keys.generate_private_key(), keys.generate_private_key()
    statement = client.new_statement("batch.received", ROOT, shipment="S-1", quantity=3)
    one = Envelope.from_json(client.sign(statement, first))
    both = client.sign(statement, first)
    both["signatures"] += client.sign(statement, second)["signatures"]
    for given, envelope in ((client.sign(statement, first), one), (both, Envelope.from_json(both))):
        assert envelope_jcs(envelope) == canonical_bytes(envelope.to_json())
        # And the same bytes as canonicalising what the client sent.
        assert envelope_jcs(envelope) == canonical_bytes(given)


def test_an_append_leaves_the_garbage_collector_as_it_found_it(db_url: str) -> None:
    """The collector is off while a batch is recorded (ledger.application.collecting_after),
    and on again afterwards, whether the batch was recorded or refused; a collector the
    application turned off stays off."""
    import gc

    world = farm_world(db_url)
    assert gc.isenabled()
    world.ship(FARM, WHEAT, "W-2026-11", 10, MILL, "S-gc-1")
    assert gc.isenabled()
    with pytest.raises(Rejected):
        world.ledger.append([{}])
    assert gc.isenabled()
    gc.disable()
    try:
        world.ship(FARM, WHEAT, "W-2026-11", 10, MILL, "S-gc-2")
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.postgres
def test_postgres_planner_statistics_are_refreshed_each_time_the_log_doubles(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some servers run without autovacuum: a log never analysed has its node lookups
    # planned from guesses. The ledger analyses its tables as it passes 2^k entries.
    import psycopg

    from ledger import application

    monkeypatch.setattr(application, "STATISTICS_FROM", 4)
    url, _, schema = pg_schema_url.partition("?schema=")

    def analysed() -> bool:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = 'merkle_nodes'", (schema,)).fetchone()
        return row is not None and row[0] >= 0  # -1: never analysed

    world = World(pg_schema_url)  # two entries: below the threshold
    assert not analysed()
    world.register(make_uscc(7), "统计测试面粉厂", "producer")  # entries 2 and 3: passes 4
    assert world.ledger.size() == 4
    assert analysed()


def test_statistics_are_due_only_when_a_power_of_two_is_passed() -> None:
    from ledger.application import STATISTICS_FROM, statistics_due

    assert statistics_due(STATISTICS_FROM - 1, STATISTICS_FROM)
    assert statistics_due(STATISTICS_FROM - 10, STATISTICS_FROM * 2 + 5)
    assert not statistics_due(STATISTICS_FROM, STATISTICS_FROM * 2 - 1)
    assert not statistics_due(0, STATISTICS_FROM - 1)


def test_the_first_proof_reads_the_upper_levels_of_the_tree_whole_highest_first(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ledger.log.verify import verify_inclusion

    world = World(db_url)
    for serial in range(10):
        world.register(make_uscc(300 + serial), f"上层节点测试{serial}厂", "producer")
    size = world.ledger.size()
    assert size == 22  # perfect subtrees stored: 5 of 4 leaves, 2 of 8, 1 of 16
    recorder = world.ledger.recorder
    monkeypatch.setattr(type(recorder), "_FROM_LEVEL", 2)
    monkeypatch.setattr(type(recorder), "_MAX_NODES", 3)
    recorder.forget_cached_nodes()  # type: ignore[attr-defined]

    for index in range(size):
        proof = world.ledger.inclusion_proof(index, size)
        verify_inclusion(index, size, world.ledger.entry(index).leaf_hash, proof,
                         world.ledger.root_at(size))
    # Read before the first proof, within the bound, the highest levels first.
    assert set(recorder._upper) == {(4, 0), (3, 0), (3, 1)}  # type: ignore[attr-defined]


def test_the_events_of_an_entry_carry_its_recording_time(db_url: str) -> None:
    world = farm_world(db_url)
    world.clock.advance(minutes=3)
    world.ship(FARM, WHEAT, "W-2026-11", 4, MILL, "S-9")
    ledger = world.ledger
    shipped, produced = ledger._appended(ledger.size() - 2)[::-1][:2]
    assert shipped.timestamp == world.clock.now
    batch = ledger.repository.get(Batch.create_id(WHEAT, "W-2026-11"))
    # The batch was made by one entry and changed by another, each at its own time.
    assert batch.created_on == produced.timestamp < batch.modified_on == shipped.timestamp
