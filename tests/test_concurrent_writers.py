"""Concurrent writers: four processes write to one ledger at the same moment.

The story: four regional offices of a cooperative run their own systems against one
ledger. Each records its own production (independent statements), and all four ship
from the one lot of seed wheat the cooperative holds centrally, 60 kg of it, one kg at a
time, 25 attempts each: 100 attempts at 60 kg, so 40 must be refused. Each office also
keeps every checkpoint it is handed, as a witness would.

Afterwards: every acknowledged entry is in the log at its index, no index is given twice
or skipped, exactly 60 shipments of the seed lot exist and its account balances, and
every checkpoint collected is consistent with every earlier one, checked with the
standalone verifier (ledger/log/verify.py) alone.

Run directly against the database (PostgreSQL and SQLite) and through `qledger serve
--workers 2` over HTTP (PostgreSQL).
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger import client, keys
from ledger.application import Ledger
from ledger.domain.batch import Batch
from ledger.errors import Rejected, Rejection
from ledger.log.verify import verify_checkpoint, verify_consistency
from tests.server_process import ServerProcess
from tests.support import World, make_gtin, make_uscc

COOP, MILL = make_uscc(40), make_uscc(41)
OFFICES = [make_uscc(50 + n) for n in range(4)]
SEED, GRAIN = make_gtin(40), make_gtin(41)
SEED_LOT, SEED_KG = "SEED-1", 60
ROUNDS = 25


def produced(by: str, lot: str, key: Any) -> dict[str, Any]:
    return client.sign(client.new_statement(
        "batch.produced", by, gtin=GRAIN, lot=lot, product="小麦", category="agricultural",
        quantity=5, unit="kg", produced_at="2026-11-20T06:00:00Z", standard="GB 1351-2023",
        inputs=[]), key)


def shipped(shipment: str, key: Any) -> dict[str, Any]:
    return client.sign(client.new_statement(
        "batch.shipped", COOP, gtin=SEED, lot=SEED_LOT, quantity=1, to=MILL,
        shipment=shipment), key)


def office(target: str, number: int, office_pem: bytes, coop_pem: bytes,
           start_at: float) -> dict[str, Any]:
    """One office's run, in its own process. `target` is a database URL or http://…"""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    own, coop = (load_pem_private_key(p, None) for p in (office_pem, coop_pem))
    http = target.startswith("http://")
    conn: Any = httpx.Client(timeout=60) if http else Ledger(target)
    receipts: list[dict[str, Any]] = []
    shipped_ok: list[str] = []
    refused: list[str] = []
    checkpoints: list[str] = []

    def append(envelope: dict[str, Any]) -> bool:
        if http:
            r = conn.post(target + "/v1/entries", json=envelope)
            if r.status_code == 201:
                receipts.append(r.json())
            elif r.status_code == 422:
                refused.append(r.json()["type"].rsplit("/", 1)[-1])
                return False
            else:
                raise AssertionError(f"{r.status_code} {r.text}")
            checkpoints.append(conn.get(target + "/v1/checkpoint").text)
            return True
        try:
            receipt = conn.append([envelope])[0]
        except Rejected as e:
            refused.append(e.kind.value)
            return False
        receipts.append(receipt.to_json())
        checkpoints.append(conn.checkpoint())
        return True

    time.sleep(max(0.0, start_at - time.time()))  # all four start together
    for i in range(ROUNDS):
        append(produced(OFFICES[number], f"O{number}-{i}", own))  # independent
        shipment = f"C-{number}-{i}"
        if append(shipped(shipment, coop)):  # conflicting: the same 60 kg
            shipped_ok.append(shipment)
    conn.close()
    return {"receipts": receipts, "shipped": shipped_ok, "refused": refused,
            "checkpoints": checkpoints}


def setup(db_url: str) -> tuple[World, list[bytes], bytes]:
    world = World(db_url)
    world.register(COOP, "禾丰合作社", "producer")
    world.register(MILL, "金穗面粉厂", "producer")
    for n, uscc in enumerate(OFFICES):
        world.register(uscc, f"禾丰合作社第{n + 1}分社", "producer")
    world.produce(COOP, SEED, SEED_LOT, SEED_KG, product="小麦种子", category="agricultural")
    # The clock of the processes is the real one; the test world's lies a day behind it.
    pems = [_pem(world.keys[u]) for u in OFFICES]
    return world, pems, _pem(world.keys[COOP])


def _pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def run_offices(target: str, pems: list[bytes], coop_pem: bytes) -> list[dict[str, Any]]:
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 8  # time for four interpreters to start and connect
    with context.Pool(4) as pool:
        return pool.starmap(office, [(target, n, pems[n], coop_pem, start_at) for n in range(4)])


def check(db_url: str, start: int, log_key: str, results: list[dict[str, Any]]) -> None:
    ledger = Ledger(db_url)
    size = ledger.size()
    receipts = [r for result in results for r in result["receipts"]]
    indexes = sorted(r["index"] for r in receipts)
    # No lost, duplicated or skipped entry: the acknowledged indexes are exactly the new ones.
    assert indexes == list(range(start, size)), "an index was skipped or given twice"
    assert len(receipts) == 4 * ROUNDS + SEED_KG
    for r in receipts:
        assert ledger.entry(r["index"]).leaf_hash.hex() == r["leaf_hash"]
    assert [e.index for e in ledger.entries(0, size)] == list(range(size))

    # No quantity spent twice: 60 shipments of 1 kg, 40 refusals, the lot's account balances.
    shipments = [s for result in results for s in result["shipped"]]
    assert len(shipments) == len(set(shipments)) == SEED_KG
    refusals = [k for result in results for k in result["refused"]]
    assert len(refusals) == 4 * ROUNDS - SEED_KG
    assert set(refusals) <= {Rejection.INSUFFICIENT_QUANTITY.value, Rejection.NOT_HELD.value}
    seed: Batch = ledger.repository.get(Batch.create_id(SEED, SEED_LOT))
    assert seed.holdings.get(COOP, 0) == 0 and seed.in_transit == SEED_KG
    assert seed.quantity == sum(seed.holdings.values()) + seed.in_transit + seed.consumed

    # Every checkpoint handed out verifies, and extends every earlier one. Consistency
    # between successive sizes composes (a prefix of a prefix is a prefix), so each is
    # checked against the next larger one and, as a cross-check, against the last.
    seen = {}
    for note in (n for result in results for n in result["checkpoints"]):
        cp = verify_checkpoint(note, log_key)
        assert seen.setdefault(cp.size, cp.root_hash) == cp.root_hash, "two roots for one size"
    sizes = sorted(seen)
    assert len(sizes) > 50
    last = sizes[-1]
    for older, newer in [*zip(sizes, sizes[1:]), *((s, last) for s in sizes[:-1])]:
        verify_consistency(older, newer, seen[older], seen[newer],
                           ledger.consistency_proof(older, newer))
    ledger.close()


def test_four_processes_writing_at_once_lose_nothing_and_spend_nothing_twice(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    world, pems, coop_pem = setup(db_url)
    start, log_key = world.ledger.size(), world.ledger.config.log_key
    world.ledger.close()
    # The processes sign checkpoints with the log key; they find it through the environment.
    keys.write_private_key(tmp_path / "log-key.pem", world.log_key)
    monkeypatch.setenv("QLEDGER_LOG_KEY", str(tmp_path / "log-key.pem"))
    check(db_url, start, log_key, run_offices(db_url, pems, coop_pem))


@pytest.mark.postgres
def test_four_clients_through_two_server_workers(pg_schema_url: str, tmp_path: Path) -> None:
    world, pems, coop_pem = setup(pg_schema_url)
    start, log_key = world.ledger.size(), world.ledger.config.log_key
    world.ledger.close()
    key_file = tmp_path / "log-key.pem"
    keys.write_private_key(key_file, world.log_key)
    server = ServerProcess(pg_schema_url, key_file, workers=2, log=tmp_path / "server.log")
    try:
        server.start()
        results = run_offices(server.url, pems, coop_pem)
    finally:
        server.stop()
    check(pg_schema_url, start, log_key, results)
