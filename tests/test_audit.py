"""`qledger audit` and checkpoint consistency against someone who edits the database
behind the ledger's back (with sqlite3 or psql)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from api.cli import main
from ledger.application import Ledger
from ledger.audit import audit
from ledger.domain.ids import LOG_ID
from ledger.log.hasher import leaf_hash
from ledger.log.verify import RootMismatchError, verify_checkpoint, verify_consistency
from tests.support import World, make_gtin, make_uscc

FARM, MILL = make_uscc(11), make_uscc(12)
WHEAT = make_gtin(1)


def chain(db_url: str) -> World:
    world = World(db_url)
    world.register(FARM, "青禾农场", "producer")
    world.register(MILL, "金穗面粉厂", "producer")
    world.produce(FARM, WHEAT, "W1", 1000, product="小麦", category="agricultural")
    for n in range(4):
        world.ship(FARM, WHEAT, "W1", 100, MILL, f"S-{n}")
        world.receive(MILL, f"S-{n}", 100)
    return world


def edit_log_row(db_url: str, version: int, change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite the stored state of log event `version` (entry version-1) directly."""
    if db_url.startswith("postgresql://"):
        url, schema = db_url.split("?schema=")
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                f"SELECT state FROM {schema}.qledger_events WHERE originator_id=%s "
                "AND originator_version=%s", (LOG_ID, version)).fetchone()
            assert row is not None
            state = json.loads(bytes(row[0]))
            change(state)
            conn.execute(
                f"UPDATE {schema}.qledger_events SET state=%s WHERE originator_id=%s "
                "AND originator_version=%s", (json.dumps(state).encode(), LOG_ID, version))
        return
    with sqlite3.connect(db_url) as conn:
        (raw,) = conn.execute("SELECT state FROM stored_events WHERE originator_id=? AND "
                              "originator_version=?", (LOG_ID.hex, version)).fetchone()
        state = json.loads(raw)
        change(state)
        conn.execute("UPDATE stored_events SET state=? WHERE originator_id=? AND "
                     "originator_version=?", (json.dumps(state).encode(), LOG_ID.hex, version))


def delete_log_row(db_url: str, version: int) -> None:
    if db_url.startswith("postgresql://"):
        url, schema = db_url.split("?schema=")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DELETE FROM {schema}.qledger_events WHERE originator_id=%s AND "
                         "originator_version=%s", (LOG_ID, version))
            conn.execute(f"DELETE FROM {schema}.merkle_nodes WHERE (idx + 1) << level > %s",
                         (version - 1,))
        return
    with sqlite3.connect(db_url) as conn:
        conn.execute("DELETE FROM stored_events WHERE originator_id=? AND originator_version=?",
                     (LOG_ID.hex, version))
        conn.execute("DELETE FROM merkle_nodes WHERE (idx + 1) << level > ?", (version - 1,))


def delete_checkpoints_from(db_url: str, size: int) -> None:
    if db_url.startswith("postgresql://"):
        url, schema = db_url.split("?schema=")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DELETE FROM {schema}.checkpoints WHERE size >= %s", (size,))
        return
    with sqlite3.connect(db_url) as conn:
        conn.execute("DELETE FROM checkpoints WHERE size >= ?", (size,))


def test_an_untouched_ledger_audits_clean(db_url: str) -> None:
    world = chain(db_url)
    report = audit(world.ledger)
    assert report.ok, [str(p) for p in report.problems]
    assert report.size == report.checkpoint_size == world.ledger.size()


def test_an_edited_entry_is_named_by_its_index(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Someone raises a shipment's quantity in the stored entry with a SQL UPDATE."""
    world = chain(db_url)
    target = world.ship(FARM, WHEAT, "W1", 100, MILL, "S-X").index
    world.receive(MILL, "S-X", 100)

    def raise_quantity(state: dict[str, Any]) -> None:
        state["entry"] = state["entry"].replace('"recorded_at":"2026', '"recorded_at":"2025')

    edit_log_row(db_url, target + 1, raise_quantity)
    report = audit(Ledger(db_url))
    assert target in report.bad_indexes()
    code = main(["audit", "--db", db_url, "--quiet"])
    out = capsys.readouterr().out
    assert code == 1 and f"entry {target}:" in out


def test_a_careful_forger_who_fixes_every_hash_is_caught_by_the_signed_checkpoint(db_url: str) -> None:
    """The forger edits the entry and also rewrites its leaf hash and the stored tree;
    the checkpoint signed by the log key still commits to the old root."""
    world = chain(db_url)
    size = world.ledger.size()
    target = 5
    new_text: list[str] = []

    def forge(state: dict[str, Any]) -> None:
        text = state["entry"].replace('"recorded_at":"2026', '"recorded_at":"2024')
        state["entry"] = text
        state["leaf_hash"] = leaf_hash(text.encode()).hex()
        new_text.append(text)

    edit_log_row(db_url, target + 1, forge)
    ledger = Ledger(db_url)
    ledger.recorder.drop_nodes_from(0)  # type: ignore[attr-defined]
    # Rebuild the stored tree from the forged entries, as a careful forger would.
    from ledger.log.tree import Frontier

    frontier = Frontier()
    nodes = []
    for e in ledger.entries(0, size):
        nodes += frontier.append(leaf_hash(e.text.encode()))
    _insert_nodes(db_url, nodes)
    report = audit(Ledger(db_url), trusted_log_key=world.ledger.config.log_key)
    assert not report.ok
    assert any("checkpoint" in p.detail for p in report.problems)
    assert target in report.bad_indexes()  # its recording time no longer verifies on replay


def _insert_nodes(db_url: str, nodes: list[tuple[int, int, bytes]]) -> None:
    if db_url.startswith("postgresql://"):
        url, schema = db_url.split("?schema=")
        with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {schema}.merkle_nodes VALUES (%s,%s,%s)", nodes)
        return
    with sqlite3.connect(db_url) as conn:
        conn.executemany("INSERT INTO merkle_nodes VALUES (?,?,?)", nodes)


def test_swapped_entries_are_named(db_url: str) -> None:
    world = chain(db_url)
    a, b = 7, 8
    states: dict[int, dict[str, Any]] = {}

    def keep(i: int) -> Callable[[dict[str, Any]], None]:
        return lambda s: states.__setitem__(i, dict(s))

    edit_log_row(db_url, a + 1, keep(a))
    edit_log_row(db_url, b + 1, keep(b))
    edit_log_row(db_url, a + 1, lambda s: s.update(states[b]))
    edit_log_row(db_url, b + 1, lambda s: s.update(states[a]))
    report = audit(Ledger(db_url))
    assert {a, b} <= set(report.bad_indexes())


def test_a_deleted_last_entry_breaks_consistency_with_an_older_checkpoint(db_url: str) -> None:
    """A bank's system kept the checkpoint it last saw. The operator deletes the last entry
    and records another in its place: the next checkpoint is not consistent with the old."""
    world = chain(db_url)
    old_checkpoint = world.ledger.checkpoint()
    old = verify_checkpoint(old_checkpoint, world.ledger.config.log_key)
    delete_log_row(db_url, old.size)  # entry old.size - 1
    ledger = Ledger(db_url, clock=world.clock, log_key=world.log_key)
    assert ledger.size() == old.size - 1
    assert not audit(ledger).ok  # the stored latest checkpoint covers a deleted entry
    delete_checkpoints_from(db_url, old.size)  # the operator hides that too
    world.ledger = ledger
    world.ship(FARM, WHEAT, "W1", 1, MILL, "S-other")
    world.ship(FARM, WHEAT, "W1", 1, MILL, "S-more")
    new = verify_checkpoint(ledger.checkpoint(), ledger.config.log_key)
    proof = ledger.consistency_proof(old.size, new.size)
    with pytest.raises(RootMismatchError):
        verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)


def test_checkpoints_of_an_honest_ledger_are_consistent(db_url: str) -> None:
    world = chain(db_url)
    old = verify_checkpoint(world.ledger.checkpoint(), world.ledger.config.log_key)
    world.ship(FARM, WHEAT, "W1", 1, MILL, "S-next")
    new = verify_checkpoint(world.ledger.checkpoint(), world.ledger.config.log_key)
    verify_consistency(old.size, new.size, old.root_hash, new.root_hash,
                       world.ledger.consistency_proof(old.size, new.size))


def test_an_entry_refused_on_replay_leaves_no_trace_on_the_entries_after_it(db_url: str) -> None:
    """Someone with the farm's key replaces an entry with a batch made of two inputs, the
    second more than the farm holds. Replayed, it consumes the first input and is then
    refused: the audit names it, and the shipment of all of the first input after it
    still replays, because the refused entry's consumption was undone."""
    from ledger.log.entry_format import entry_bytes
    from ledger.canonical import canonical_bytes

    world = chain(db_url)
    world.produce(FARM, WHEAT, "A", 100)
    world.produce(FARM, WHEAT, "B", 100)
    target = world.produce(FARM, WHEAT, "C", 10).index
    world.ship(FARM, WHEAT, "A", 100, MILL, "S-all-of-A")
    forged = world.envelope(
        "batch.produced", FARM, gtin=WHEAT, lot="D", product="面粉", category="food",
        quantity=10, unit="kg", produced_at="2026-11-20T06:00:00Z", standard="GB/T 1355-2021",
        inputs=[{"gtin": WHEAT, "lot": "A", "quantity": 50},
                {"gtin": WHEAT, "lot": "B", "quantity": 500}],
    )

    def replace(state: dict[str, Any]) -> None:
        recorded_at = json.loads(state["entry"])["recorded_at"]
        state["entry"] = entry_bytes(canonical_bytes(forged), recorded_at).decode()

    edit_log_row(db_url, target + 1, replace)
    report = audit(Ledger(db_url))
    assert report.bad_indexes() == [target]
    assert any(p.index == target and "fails on replay" in p.detail for p in report.problems)


def test_the_workers_find_what_the_audit_finds_alone(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each entry's own checks run in worker processes, which read the database
    themselves, a few entries a chunk here: the report is the one the audit's own
    process makes alone, problems and all (an edited entry, a deleted one)."""
    import ledger.audit
    import ledger.audit_entries

    world = chain(db_url)
    target = world.ship(FARM, WHEAT, "W1", 100, MILL, "S-X").index
    world.receive(MILL, "S-X", 100)
    edit_log_row(db_url, target + 1, lambda s: s.update(
        entry=s["entry"].replace('"recorded_at":"2026', '"recorded_at":"2025')))
    delete_log_row(db_url, world.ledger.size())
    monkeypatch.setattr(ledger.audit, "CHUNK", 4)
    alone = audit(Ledger(db_url), workers=0)
    monkeypatch.setattr(ledger.audit_entries, "MIN_FOR_WORKERS", 0)
    with_workers = audit(Ledger(db_url), workers=2)
    assert target in alone.bad_indexes()
    assert [str(p) for p in with_workers.problems] == [str(p) for p in alone.problems]
