"""The ledger's encoding of events writes exactly what the library's would.

Stored events are read back by the library's decoder, and ledgers written before
the faster encoding must read the same: the state bytes are compared with those of
the library's own Mapper and JSONTranscoder.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from eventsourcing.persistence import (
    DatetimeAsISO, DecimalAsStr, JSONTranscoder, Mapper, UUIDAsHex)
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.log.entry_format import entry_bytes, envelope_jcs
from ledger.domain.batch import Batch
from ledger.domain.log import appended
from ledger.envelope import Envelope
from ledger.transcoding import LedgerMapper, LedgerTranscoder
from tests.support import World, make_gtin, make_uscc


def library_mapper() -> Mapper[Any]:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return Mapper(transcoder)


times = st.datetimes(
    min_value=datetime(1970, 1, 1), timezones=st.sampled_from([UTC, timezone(timedelta(hours=8))]))
# What an entry's strings are made of: base64, hex, the payload type, times; and JSON's
# own punctuation, '"' among it.
entry_text = st.text(
    alphabet="ABCXYZabcxyz0189+/=-.:;,TZ\"{}[] application/vnd.qledger.statement+json",
    max_size=300)


@settings(max_examples=300)
@given(st.integers(0, 2**53), entry_text, st.binary(min_size=32, max_size=32), st.uuids(), times)
def test_log_entries_are_stored_as_the_library_stores_them(
    index: int, entry: str, leaf: bytes, statement_id: Any, at: datetime
) -> None:
    ours, theirs = LedgerMapper(LedgerTranscoder()), library_mapper()
    event = appended(index, entry, leaf.hex(), str(statement_id), at)
    expected = theirs.to_stored_event(event)
    for _ in range(2):  # the second time with the tagged time remembered
        assert ours.stored_entry(index, entry.encode(), leaf, str(statement_id), at) == expected
    assert theirs.to_domain_event(expected).__dict__ == event.__dict__


def test_recorded_entries_are_stored_as_the_library_stores_them(tmp_path: Any) -> None:
    world = World(str(tmp_path / "l.db"))
    producer = make_uscc(7)
    world.register(producer, "面粉厂", "producer")
    world.produce(producer, make_gtin(7), "L-\"1\"", 10)
    ours, theirs = LedgerMapper(LedgerTranscoder()), library_mapper()
    at = datetime.now(UTC)
    for stored in world.ledger.entries(0, world.ledger.size()):
        envelope = Envelope.from_json(stored.to_json()["envelope"])
        text = entry_bytes(envelope_jcs(envelope), "2026-11-24T01:02:03.456Z")
        leaf = hashlib.sha256(text).digest()
        statement_id = envelope.statement["id"]
        assert ours.stored_entry(stored.index, text, leaf, statement_id, at) == (
            theirs.to_stored_event(appended(stored.index, text.decode(), leaf.hex(),
                                            statement_id, at)))


def test_aggregate_events_are_stored_as_the_library_stores_them() -> None:
    batch = Batch.produce("06909990000017", "L1", "91350100MB0000002X", 1000, entry=7)
    batch.ship("91350100MB0000002X", 200, "S1", entry=8)
    ours, theirs = LedgerMapper(LedgerTranscoder()), library_mapper()
    for event in batch.collect_events():
        assert ours.to_stored_event(event) == theirs.to_stored_event(event)
