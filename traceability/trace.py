"""Trace graphs (PROTOCOL.md §5, "Trace graph"): what a batch was made from, or made into.

`up` holds the root and every batch it was made from, to any depth; `down` the root and
every batch made from it. The reach is one recursive query over the indexed input
lines (v_inputs), so a trace never loads the whole graph: it costs what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from ledger.errors import InvalidRequest, NotFound, Rejected
from ledger.identifiers import normalize_gtin, validate_lot
from traceability.sql import Tx
from traceability.views import Views

Direction = Literal["up", "down"]

# The batches reachable from (?, ?), root included, as the CTE `reach(gtin, lot)`.
# UNION (not UNION ALL) visits each batch once, however many paths lead to it.
# `reach r CROSS JOIN table ... WHERE` in every query on the reach: SQLite then keeps
# the reach as the outer loop and looks rows up by index; with a plain JOIN and an
# ORDER BY it may rather scan a whole table in key order to skip the sort (11 ms per
# trace at 200,000 entries, growing with the log). PostgreSQL plans it as any join.
_REACH = {
    "up": """WITH RECURSIVE reach(gtin, lot) AS (
        SELECT CAST(? AS TEXT), CAST(? AS TEXT)
        UNION
        SELECT i.input_gtin, i.input_lot FROM reach r CROSS JOIN v_inputs i
        WHERE i.output_gtin = r.gtin AND i.output_lot = r.lot) """,
    "down": """WITH RECURSIVE reach(gtin, lot) AS (
        SELECT CAST(? AS TEXT), CAST(? AS TEXT)
        UNION
        SELECT i.output_gtin, i.output_lot FROM reach r CROSS JOIN v_inputs i
        WHERE i.input_gtin = r.gtin AND i.input_lot = r.lot) """,
}

# The input lines inside the reach: for `up` those into a reached batch, for `down`
# those out of one (the other end is then reached too).
_EDGE_JOIN = {
    "up": "i.output_gtin = r.gtin AND i.output_lot = r.lot",
    "down": "i.input_gtin = r.gtin AND i.input_lot = r.lot",
}


def reach_sql(direction: Direction) -> str:
    """The WITH RECURSIVE prefix for `direction`; its two parameters are gtin and lot."""
    return _REACH[direction]


def batch_key(gtin: str, lot: str) -> tuple[str, str]:
    """(GTIN-14, lot) from a GTIN-8/12/13/14 and a lot; raises InvalidRequest."""
    try:
        return normalize_gtin(gtin), validate_lot(lot)
    except Rejected as e:
        raise InvalidRequest(e.detail) from None


@dataclass(frozen=True, slots=True)
class BatchRef:
    gtin: str
    lot: str

    def to_json(self) -> dict[str, Any]:
        return {"gtin": self.gtin, "lot": self.lot}


# Nodes and shipments are named tuples, not frozen dataclasses: built straight from
# the query's row tuples, a few hundred nanoseconds each instead of a few microseconds,
# which matters for a recall's trace of thousands of shipments.
class TraceNode(NamedTuple):
    gtin: str
    lot: str
    org: str  # the producer
    product: str
    entry: int

    def to_json(self) -> dict[str, Any]:
        return {"gtin": self.gtin, "lot": self.lot, "org": self.org, "product": self.product,
                "entry": self.entry}


@dataclass(frozen=True, slots=True)
class TraceEdge:
    """An input line: `source` went into `target` (JSON `from` and `to`)."""

    source: BatchRef
    target: BatchRef
    quantity: int
    entry: int

    def to_json(self) -> dict[str, Any]:
        return {"from": self.source.to_json(), "to": self.target.to_json(),
                "quantity": self.quantity, "entry": self.entry}


class TraceShipment(NamedTuple):
    gtin: str
    lot: str
    sender: str
    receiver: str
    quantity: int
    entry: int
    received_entry: int | None

    def to_json(self) -> dict[str, Any]:
        return {"gtin": self.gtin, "lot": self.lot, "from": self.sender, "to": self.receiver,
                "quantity": self.quantity, "entry": self.entry,
                "received_entry": self.received_entry}


@dataclass(frozen=True, slots=True)
class TraceGraph:
    root: BatchRef
    direction: Direction
    nodes: tuple[TraceNode, ...]
    edges: tuple[TraceEdge, ...]
    shipments: tuple[TraceShipment, ...]
    organizations: tuple[str, ...]

    def batches(self) -> set[tuple[str, str]]:
        return {(n.gtin, n.lot) for n in self.nodes}

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root.to_json(),
            "direction": self.direction,
            "nodes": [n.to_json() for n in self.nodes],
            "edges": [e.to_json() for e in self.edges],
            "shipments": [s.to_json() for s in self.shipments],
            "organizations": list(self.organizations),
        }


def trace(views: Views, gtin: str, lot: str, direction: Direction) -> TraceGraph:
    """The trace graph of batch (gtin, lot). Raises InvalidRequest for a bad GTIN, lot
    or direction, NotFound for a batch that was never produced."""
    if direction not in _REACH:
        raise InvalidRequest(f"direction must be up or down, not {direction!r}")
    key = batch_key(gtin, lot)
    with views.reading() as tx:
        return _trace(tx, key, direction)


def _trace(tx: Tx, key: tuple[str, str], direction: Direction) -> TraceGraph:
    reach = reach_sql(direction)
    # Rows as plain tuples straight into named tuples: a recall's downstream trace
    # can hold thousands of shipments, and a dict per row would cost more than the query.
    nodes = tuple(map(
        TraceNode._make,
        tx.tuples(
            reach + "SELECT b.gtin, b.lot, b.producer, b.product, b.entry FROM reach r "
            "CROSS JOIN v_batches b WHERE b.gtin = r.gtin AND b.lot = r.lot ORDER BY b.entry",
            key,
        ),
    ))
    if not nodes:
        raise NotFound(f"batch {key[0]}/{key[1]} is not recorded")
    edges = tuple(
        TraceEdge(BatchRef(r[0], r[1]), BatchRef(r[2], r[3]), r[4], r[5])
        for r in tx.tuples(
            reach + "SELECT i.input_gtin, i.input_lot, i.output_gtin, i.output_lot, i.quantity, "
            f"i.entry FROM reach r CROSS JOIN v_inputs i WHERE {_EDGE_JOIN[direction]} "
            "ORDER BY i.entry, i.seq",
            key,
        )
    )
    shipments = tuple(map(
        TraceShipment._make,
        tx.tuples(
            reach + "SELECT s.gtin, s.lot, s.sender, s.receiver, s.quantity, s.entry, "
            "s.received_entry FROM reach r CROSS JOIN v_shipments s "
            "WHERE s.gtin = r.gtin AND s.lot = r.lot ORDER BY s.entry",
            key,
        ),
    ))
    # Who produced, shipped or received a batch of the graph: a receiver counts once
    # the shipment is received; until then it is only on its way there.
    organizations = (
        {n.org for n in nodes}
        | {s.sender for s in shipments}
        | {s.receiver for s in shipments if s.received_entry is not None}
    )
    return TraceGraph(BatchRef(*key), direction, nodes, edges, shipments,
                      tuple(sorted(organizations)))
