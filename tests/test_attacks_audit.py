"""The audit's blind spots, closed: edits of the database that left `qledger audit` at 0.

An insider with write access to the database (sqlite3 or psql) leaves every log entry
alone, so every entry still verifies, and edits instead what the server or the writer
trusts beside the log:

- an interior node of the stored Merkle tree: the server then hands out inclusion
  proofs that fail against its own signed checkpoint;
- the statements table (idempotency): a resubmitted statement then gets a wrong receipt,
  or is recorded a second time;
- an aggregate's stored events: the writer then loads a batch of 100,000 where the log
  made one of 100, and accepts shipping 5,000 of it;
- a view: a phone scanning a recalled batch sees it as ok.

Each is now named by the audit: the tree node by (level, index), the statements row by
its entry and field, the aggregate by its id and field, the view row by table, key and
column.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest

from api.cli import main
from ledger.application import Ledger
from ledger.audit import audit
from ledger.domain.batch import Batch
from ledger.errors import Rejected
from ledger.intake import statement_key
from ledger.log.verify import RootMismatchError, verify_checkpoint, verify_inclusion
from tests.support import World
from tests.test_audit import FARM, MILL, WHEAT, chain
from traceability.scan import scan
from traceability.viewcheck import check_views
from traceability.views import Views


def sql(db_url: str, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """What the insider types into sqlite3 or psql (`?` placeholders; the log's events
    table is called `events`)."""
    if db_url.startswith("postgresql://"):
        url, schema = db_url.split("?schema=")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"SET search_path TO {schema}")
            cur = conn.execute(statement.replace("?", "%s").replace("events", "qledger_events"),
                               params)
            return cur.fetchall() if cur.description else []
    with sqlite3.connect(db_url) as conn:
        return conn.execute(statement.replace("events", "stored_events"), params).fetchall()


def farm_to_mill(db_url: str) -> World:
    """The farm grows 1,000 kg of wheat and ships it to the mill in four lots of 100
    (the chain of tests/test_audit.py)."""
    return chain(db_url)


def problems(db_url: str, world: World) -> list[str]:
    report = audit(Ledger(db_url), trusted_log_key=world.ledger.config.log_key)
    return [str(p) for p in report.problems]


def audit_cli(db_url: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["audit", "--db", db_url, "--quiet"])
    return code, capsys.readouterr().out


# ---- the tree ----------------------------------------------------------------------------------


def test_a_flipped_bit_in_an_interior_tree_node_is_named_by_its_level_and_index(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    world = farm_to_mill(db_url)
    size = world.ledger.size()
    # 15 = 8 + 4 + 2 + 1: the root folds nodes (3, 0), (2, 2), (1, 6) and leaf 14, so a
    # node below (3, 0) is read only by proofs, never by the root.
    assert size == 15
    # The insider flips one bit of node (level 2, index 1), leaves and root untouched.
    (stored,) = sql(db_url, "SELECT hash FROM merkle_nodes WHERE level = 2 AND idx = 1")[0]
    flipped = bytes([stored[0] ^ 1]) + bytes(stored[1:])
    sql(db_url, "UPDATE merkle_nodes SET hash = ? WHERE level = 2 AND idx = 1", (flipped,))

    # The server, freshly started, now proves entry 0 with that node, and the proof
    # fails against its own signed checkpoint.
    ledger = Ledger(db_url)
    checkpoint = verify_checkpoint(ledger.checkpoint(), ledger.config.log_key)
    with pytest.raises(RootMismatchError):
        verify_inclusion(0, size, ledger.entry(0).leaf_hash, ledger.inclusion_proof(0, size),
                         checkpoint.root_hash)

    assert problems(db_url, world) == [
        "the stored tree's node (level 2, index 1) over entries 4-7 is not the hash "
        "recomputed from those entries"]
    code, out = audit_cli(db_url, capsys)
    assert code == 1 and "node (level 2, index 1)" in out, out


def test_a_tree_node_added_past_the_end_of_the_log_is_named(db_url: str) -> None:
    """A node no leaf completes yet would make the next append fail on its key."""
    world = farm_to_mill(db_url)
    sql(db_url, "INSERT INTO merkle_nodes VALUES (?, ?, ?)", (1, 9, bytes(32)))
    assert problems(db_url, world) == [
        "the stored tree holds node (level 1, index 9), which no entry of the 15 completes"]


# ---- the statements table ---------------------------------------------------------------------


def test_an_edited_leaf_hash_in_the_statements_table_is_named_before_it_misleads_a_resubmitter(
    db_url: str,
) -> None:
    world = farm_to_mill(db_url)
    envelope = world.envelope("batch.shipped", FARM, gtin=WHEAT, lot="W1", quantity=5, to=MILL,
                              shipment="S-5")
    receipt = world.ledger.append([envelope])[0]
    sql(db_url, "UPDATE statements SET leaf_hash = ? WHERE idx = ?", (bytes(32), receipt.index))
    # The farm's client, unsure whether its shipment went through, sends it again, and
    # gets a receipt whose leaf hash no proof will ever match.
    again = Ledger(db_url).append([envelope])[0]
    assert again.duplicate and again.leaf_hash == bytes(32) != receipt.leaf_hash

    assert problems(db_url, world) == [
        f"entry {receipt.index}: the statements table's row of statement "
        f"{envelope_id(envelope)} holds leaf hash {'00' * 32}: a resubmission would get a "
        "wrong receipt"]


def test_an_edited_index_in_the_statements_table_is_named(db_url: str) -> None:
    world = farm_to_mill(db_url)
    sql(db_url, "UPDATE statements SET idx = 3 WHERE idx = 7")
    found = problems(db_url, world)
    assert found[-1].startswith("entry 7: the statements table's row of statement ")
    assert "holds index 3:" in found[-1]
    # Entry 3's own row is where it should be; the count of rows in place is one short.
    assert len(found) == 2 and "at index 3, which is not that entry's statement" in found[0]


def test_a_deleted_statements_row_is_named_and_breaks_idempotent_resubmission(
    db_url: str,
) -> None:
    world = farm_to_mill(db_url)
    envelope = world.envelope("batch.shipped", FARM, gtin=WHEAT, lot="W1", quantity=5, to=MILL,
                              shipment="S-5")
    index = world.ledger.append([envelope])[0].index
    sql(db_url, "DELETE FROM statements WHERE idx = ?", (index,))
    assert problems(db_url, world) == [
        f"entry {index}: statement {envelope_id(envelope)} has no row in the statements table "
        "(a resubmission would not get its receipt)"]
    # The farm's client retries the shipment it was unsure of: instead of its first
    # receipt it is told its own shipment is a duplicate of another.
    with pytest.raises(Rejected, match="shipment S-5 was recorded before"):
        Ledger(db_url, clock=world.clock).append([envelope])


def test_a_row_added_to_the_statements_table_is_named(db_url: str) -> None:
    """A row for a statement the farm has not sent yet: when it does, the ledger refuses
    it as a conflict with an entry that does not hold it."""
    world = farm_to_mill(db_url)
    envelope = world.envelope("batch.shipped", FARM, gtin=WHEAT, lot="W1", quantity=5, to=MILL,
                              shipment="S-5")
    key = statement_key(envelope_id(envelope))
    sql(db_url, "INSERT INTO statements VALUES (?, ?, ?, ?, ?)",
        (key, 4, bytes(32), "2026-11-20T08:00:00.000Z", bytes(32)))
    assert problems(db_url, world) == [
        f"the statements table holds a row for statement {envelope_id(envelope)} at index 4, "
        "which is not that entry's statement (left over or added)"]


def envelope_id(envelope: dict[str, Any]) -> str:
    from base64 import b64decode

    return str(json.loads(b64decode(envelope["payload"]))["id"])


# ---- aggregates -------------------------------------------------------------------------------


def test_a_batch_whose_stored_quantity_was_raised_is_named_with_the_fields_that_differ(
    db_url: str,
) -> None:
    world = farm_to_mill(db_url)
    world.produce(FARM, WHEAT, "W2", 100, product="小麦", category="agricultural")
    batch = Batch.create_id(WHEAT, "W2")
    # The insider raises the batch's production from 100 to 100,000 in its stored event.
    version = "originator_id = ? AND originator_version = 1"
    uid = batch if db_url.startswith("postgresql://") else batch.hex
    (state,) = sql(db_url, f"SELECT state FROM events WHERE {version}", (uid,))[0]
    produced = json.loads(bytes(state))
    assert produced["quantity"] == 100
    produced["quantity"] = 100_000
    sql(db_url, f"UPDATE events SET state = ? WHERE {version}",
        (json.dumps(produced).encode(), uid))

    assert problems(db_url, world) == [
        f"Batch {batch} (batch {WHEAT}/W2): quantity is 100000 in the database, 100 on replay; "
        f"holdings is {{'{FARM}': 100000}} in the database, {{'{FARM}': 100}} on replay"]
    # What it would have let through: a fresh writer loads the batch from its events.
    world.ledger = Ledger(db_url, clock=world.clock, log_key=world.log_key)
    world.ship(FARM, WHEAT, "W2", 5000, MILL, "S-5000")


# ---- the views --------------------------------------------------------------------------------


@pytest.mark.parametrize("edit", ["row-deleted", "column-edited"])
def test_a_recalled_batch_made_to_scan_ok_is_named_by_table_key_and_column(
    db_url: str, capsys: pytest.CaptureFixture[str], edit: str,
) -> None:
    world = farm_to_mill(db_url)
    views = Views(world.ledger)
    views.attach(raise_errors=True)
    views.catch_up()
    recall = world.submit("recall.issued", FARM, gtin=WHEAT, lots=["W1"], reason="呕吐毒素超标",
                          level=2)
    assert scan(views, WHEAT, "W1").status == "recalled"
    assert audit_cli(db_url, capsys)[0] == 0
    if edit == "row-deleted":
        sql(db_url, "DELETE FROM v_recalls WHERE gtin = ? AND lot = ?", (WHEAT, "W1"))
        named = f"v_recalls (entry={recall.index}, lot='W1'): missing; the log makes entry="
    else:  # the recall moved to another lot
        sql(db_url, "UPDATE v_recalls SET lot = ? WHERE gtin = ? AND lot = ?", ("W0", WHEAT, "W1"))
        named = f"v_recalls (entry={recall.index}, lot='W0'): a row that the log does not make"
    assert scan(views, WHEAT, "W1").status == "ok"  # what a phone now shows

    report = check_views(world.ledger)
    assert report.checked and any(p.startswith(named) for p in report.problems), report.problems
    code, out = audit_cli(db_url, capsys)
    assert code == 1 and f"views: {named}" in out, out
    views.close()


def test_a_credit_line_whose_points_were_edited_is_named_by_its_column(db_url: str) -> None:
    world = farm_to_mill(db_url)
    views = Views(world.ledger)
    views.attach(raise_errors=True)
    views.catch_up()
    recall = world.submit("recall.issued", FARM, gtin=WHEAT, lots=["W1"], reason="呕吐毒素超标",
                          level=2)
    sql(db_url, "UPDATE v_credit_lines SET delta = 0 WHERE entry = ?", (recall.index,))
    assert check_views(world.ledger).problems == [
        f"v_credit_lines (entry={recall.index}, org='{FARM}'): delta is 0 in the views, "
        "-8 rebuilt from the log"]
    views.close()


def test_an_aggregate_event_edited_where_the_state_does_not_show_it_is_named(db_url: str) -> None:
    """The insider points the wheat's first shipment at another entry: the batch loads
    the same, but a reader of the batch's history would follow the wrong entry."""
    world = farm_to_mill(db_url)
    batch = Batch.create_id(WHEAT, "W1")
    version = "originator_id = ? AND originator_version = 2"
    uid = batch if db_url.startswith("postgresql://") else batch.hex
    (state,) = sql(db_url, f"SELECT state FROM events WHERE {version}", (uid,))[0]
    shipped = json.loads(bytes(state))
    shipped["entry"] += 1
    sql(db_url, f"UPDATE events SET state = ? WHERE {version}", (json.dumps(shipped).encode(), uid))
    assert problems(db_url, world) == [
        f"Batch {batch} (batch {WHEAT}/W1): its stored events are not those the replay makes, "
        "in what the aggregate does not keep (an entry number, say): readers of its history "
        "see them"]


def test_views_moved_past_the_end_of_the_log_are_named(db_url: str) -> None:
    """The insider moves the views' position forward: every entry recorded until the
    log reaches it would be left out of the views, a recall among them."""
    world = farm_to_mill(db_url)
    with Views.open(world.ledger):
        pass
    table = "views_tracking" if db_url.startswith("postgresql://") else "tracking"
    sql(db_url, f"UPDATE {table} SET notification_id = 1000000")
    last = world.ledger.recorder.max_notification_id()
    assert check_views(world.ledger).problems == [
        f"views_tracking: the views claim to have reached notification 1000000, past the "
        f"log's last, {last}: the entries recorded before they catch up to it would never "
        "be applied"]
