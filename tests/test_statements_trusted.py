"""The trusted read of a statement (for building the views from the log) gives exactly
what the checked read gives, for every statement a ledger holds: the demo ledger's,
and statements written in the forms the checked read converts (GTIN-13, times with
fractions, optional fields left out or null, corrections with a replacement)."""

from __future__ import annotations

import json
from base64 import b64decode
from pathlib import Path
from typing import Any

import pytest

from api import demo
from ledger.application import Ledger
from ledger.errors import Rejected
from ledger.statements import parse_statement
from tests.support import make_uscc
from ledger.log.entry_format import written_parts as _as_written
from traceability.projector import parse_entry

LAB = make_uscc(7)


def _statements_of(db: str) -> list[dict[str, Any]]:
    ledger = Ledger(db)
    try:
        out = []
        for i in range(ledger.size()):
            entry = json.loads(ledger.entry(i).text)
            out.append(json.loads(b64decode(entry["envelope"]["payload"])))
        return out
    finally:
        ledger.close()


def test_every_statement_of_the_demo_ledger_reads_the_same_trusted(tmp_path: Path) -> None:
    db = str(tmp_path / "demo.db")
    demo.build(db, tmp_path / "log.pem", tmp_path / "root.pem")
    statements = _statements_of(db)
    kinds = {s["type"] for s in statements}
    assert {"org.registered", "key.registered", "batch.produced", "batch.shipped",
            "check.recorded", "recall.issued"} <= kinds
    for s in statements:
        assert parse_statement(s, trusted=True) == parse_statement(s)


def test_every_entry_of_the_demo_ledger_reads_the_same_sliced_as_parsed(tmp_path: Path) -> None:
    """parse_entry reads a verified entry's payload and recording time by slicing the
    text the ledger wrote; it must find what json.loads finds, and take the long way
    for a text in any other form."""
    db = str(tmp_path / "demo.db")
    demo.build(db, tmp_path / "log.pem", tmp_path / "root.pem")
    ledger = Ledger(db)
    try:
        texts = [ledger.entry(i).text for i in range(ledger.size())]
    finally:
        ledger.close()
    for i, text in enumerate(texts):
        entry = json.loads(text)
        assert _as_written(text) == (entry["envelope"]["payload"], entry["recorded_at"])
        fast = parse_entry(i, text, trusted=True)
        assert fast.statement is not None
        assert fast == parse_entry(i, text, trusted=False)
        # The same entry with white space added is not as written: read by json.loads.
        spaced = json.dumps(entry, indent=1)
        assert _as_written(spaced) is None
        assert parse_entry(i, spaced, trusted=True) == fast


def _produced(**changes: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "type": "batch.produced", "id": "3f2b8c1e-9d4a-4e7b-8a21-5c6d7e8f9a0b",
        "by": LAB, "issued_at": "2026-03-01T08:00:00.25Z",
        "gtin": "6901234567892", "lot": "L-1", "product": "flour", "category": "food",
        "quantity": 10, "unit": "kg", "produced_at": "2026-03-01T07:00:00Z",
        "standard": "GB 1355", "inputs": [{"gtin": "06901234567892", "lot": "W-1",
                                           "quantity": 3}],
    }
    s.update(changes)
    return s


@pytest.mark.parametrize("statement", [
    _produced(),
    _produced(expires_at=None),
    _produced(expires_at="2027-01-01T00:00:00.123456789Z"),
    {"type": "correction", "id": "3f2b8c1e-9d4a-4e7b-8a21-5c6d7e8f9a0c", "by": LAB,
     "issued_at": "2026-03-02T00:00:00Z", "corrects": 4, "reason": "typo",
     "replacement": _produced(lot="L-2")},
    {"type": "correction", "id": "3f2b8c1e-9d4a-4e7b-8a21-5c6d7e8f9a0c", "by": LAB,
     "issued_at": "2026-03-02T00:00:00Z", "corrects": 4, "reason": "withdrawn",
     "replacement": None},
], ids=["gtin-13", "null-optional", "fraction", "replacement", "withdrawal"])
def test_converted_forms_read_the_same_trusted(statement: dict[str, Any]) -> None:
    checked = parse_statement(statement)
    trusted = parse_statement(statement, trusted=True)
    assert trusted == checked
    if trusted.replacement is not None:
        assert trusted.replacement.body["gtin"] == "06901234567892"


def test_the_trusted_read_still_refuses_an_unknown_type_or_a_missing_field() -> None:
    with pytest.raises(Rejected):
        parse_statement(_produced(type="batch.eaten"), trusted=True)
    missing = _produced()
    del missing["standard"]
    with pytest.raises(KeyError):
        parse_statement(missing, trusted=True)
