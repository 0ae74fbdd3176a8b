"""The entries that touch a dispute case (DISPUTES.md, point 1).

placeholder: replaced by the evidence selection of issue 6
"""

from __future__ import annotations

from traceability.cases import case_view
from traceability.trace import Direction, trace
from traceability.views import Views

_DIRECTIONS: tuple[Direction, ...] = ("up", "down")


def case_entries(views: Views, case_id: str) -> list[int]:
    """Sorted log indexes of the case's statements and of the produced, shipped,
    received, check and recall entries of every batch up and down from its batches.
    Raises NotFound for a case that was never opened."""
    case = case_view(views, case_id)
    found = {s.entry for s in case.statements}
    batches: set[tuple[str, str]] = set()
    for ref in case.batches:
        for direction in _DIRECTIONS:
            graph = trace(views, ref.gtin, ref.lot, direction)
            batches |= graph.batches()
            found |= {n.entry for n in graph.nodes}
            for s in graph.shipments:
                found.add(s.entry)
                if s.received_entry is not None:
                    found.add(s.received_entry)
    with views.reading() as tx:
        for gtin, lot in sorted(batches):
            for table in ("v_checks", "v_recalls"):
                found |= {r["entry"] for r in tx.rows(
                    f"SELECT entry FROM {table} WHERE gtin = ? AND lot = ?", (gtin, lot))}
    return sorted(found)
