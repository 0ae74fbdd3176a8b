"""The write-behind Tx of a rebuild leaves the same rows as the same writes made one by
one: writes to one row keep their order, reads see every write before them.
(tests/test_views_properties.py checks it on whole histories, on both databases.)"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from traceability.schema import create_statements
from traceability.sql import Tx
from traceability.writebehind import WriteBehind, _form

SHIP = ("INSERT INTO v_shipments (shipment, gtin, lot, sender, receiver, quantity, entry) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (shipment) DO NOTHING")
RECEIVE = "UPDATE v_shipments SET received_quantity = ?, received_entry = ? WHERE shipment = ?"
BY_SENDER = "UPDATE v_shipments SET quantity = quantity + ? WHERE sender = ?"


def _ship(n: int, shipment: str) -> tuple[Any, ...]:
    return (shipment, "06901234567892", "L-1", "A", "B", 10, n)


def _rows(writes: Callable[[Tx], None], behind: bool) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row  # as the library's connections, which Tx.rows expects
    for statement in create_statements():
        conn.execute(statement)
    tx = Tx(conn.cursor(), postgres=False)
    if behind:
        held = WriteBehind(tx)
        writes(held)
        held.flush()
    else:
        writes(tx)
    return [tuple(r) for r in conn.execute("SELECT * FROM v_shipments ORDER BY shipment")]


def test_statements_are_told_apart_by_the_rows_they_touch() -> None:
    assert _form(SHIP).key == (0,)
    assert _form(RECEIVE).key == (2,)
    assert _form(BY_SENDER).key is None  # not by primary key: may touch any row
    assert _form("DELETE FROM v_awards WHERE entry = ?").key is None


def test_held_back_writes_leave_the_rows_written_one_by_one() -> None:
    def writes(tx: Tx) -> None:
        tx.execute(RECEIVE, (5, 1, "S-1"))  # before its shipment: changes nothing
        tx.execute(SHIP, _ship(2, "S-1"))
        tx.execute(SHIP, _ship(3, "S-2"))
        tx.execute(RECEIVE, (7, 4, "S-2"))
        tx.execute(SHIP, _ship(5, "S-3"))
        tx.execute(BY_SENDER, (1, "A"))  # every row of A's, as they stand here
        tx.execute(SHIP, _ship(6, "S-4"))
        tx.execute(SHIP, _ship(7, "S-2"))  # already there: nothing
        tx.execute(RECEIVE, (9, 8, "S-3"))
        assert tx.value("SELECT received_quantity FROM v_shipments WHERE shipment = ?",
                        ("S-3",)) == 9
        tx.execute(RECEIVE, (3, 9, "S-1"))

    one_by_one = _rows(writes, behind=False)
    assert _rows(writes, behind=True) == one_by_one
    quantities = {r[0]: (r[5], r[7]) for r in one_by_one}
    assert quantities == {"S-1": (11, 3), "S-2": (11, 7), "S-3": (11, 9), "S-4": (10, None)}


BATCH = ("INSERT INTO v_batches (gtin, lot, producer, product, category, unit, quantity, "
         "produced_at, expires_at, standard, entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
         "ON CONFLICT (gtin, lot) DO UPDATE SET product = excluded.product, "
         "category = excluded.category, unit = excluded.unit, "
         "produced_at = excluded.produced_at, expires_at = excluded.expires_at, "
         "standard = excluded.standard")
CATEGORY = "SELECT category, producer FROM v_batches WHERE lot = ? AND gtin = ?"
SHIPPED = "SELECT sender, received_quantity FROM v_shipments WHERE shipment = ?"


def _batch(lot: str, producer: str, category: str, n: int) -> tuple[Any, ...]:
    return ("06901234567892", lot, producer, "面粉", category, "kg", 10,
            "2026-11-20T06:00:00Z", None, "GB 1", n)


def test_rows_read_ahead_are_answered_with_the_writes_held_since() -> None:
    """Each read is answered as the database answers it after the writes before it,
    and those answered from the rows read ahead leave the writes held."""
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    for statement in create_statements():
        conn.execute(statement)
    tx = Tx(conn.cursor(), postgres=False)
    tx.execute(BATCH, _batch("L-1", "A", "food", 1))
    tx.execute(SHIP, _ship(2, "S-1"))
    held = WriteBehind(tx)
    held.read_ahead("v_batches", [("06901234567892", lot) for lot in ("L-1", "L-2", "L-3")])
    held.read_ahead("v_shipments", ["S-1", "S-2"])
    answers: list[list[Any]] = []

    def reads() -> None:
        answers.append([held.rows(CATEGORY, (lot, "06901234567892"))
                        for lot in ("L-1", "L-2", "L-3")])
        answers.append([held.rows(SHIPPED, (s,)) for s in ("S-1", "S-2")])

    reads()  # as committed
    held.execute(BATCH, _batch("L-1", "B", "feed", 3))  # an update: the producer stays A
    held.execute(BATCH, _batch("L-2", "B", "feed", 4))  # a new row
    held.execute(RECEIVE, (5, 5, "S-1"))
    held.execute(RECEIVE, (6, 6, "S-2"))  # no such shipment: nothing
    held.execute(SHIP, _ship(7, "S-1"))  # already there: nothing
    held.execute(SHIP, _ship(8, "S-2"))
    reads()
    assert held._queues  # all answered without sending the writes
    held.execute(BY_SENDER, (1, "A"))  # any of its rows may change: the database is asked
    reads()
    assert "v_shipments" not in held._queues
    held.flush()
    expected = [
        [[{"category": "food", "producer": "A"}], [], []],
        [[{"sender": "A", "received_quantity": None}], []],
        [[{"category": "feed", "producer": "A"}], [{"category": "feed", "producer": "B"}], []],
        [[{"sender": "A", "received_quantity": 5}], [{"sender": "A", "received_quantity": None}]],
    ]
    assert answers[:4] == expected
    assert answers[5] == [[dict(r)] for r in conn.execute(
        "SELECT sender, received_quantity FROM v_shipments ORDER BY shipment")]
