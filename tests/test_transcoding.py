"""The ledger's encoding of events writes exactly what the library's would.

Stored events are read back by the library's decoder, and ledgers written before
the faster encoding must read the same: the state bytes are compared with those of
the library's own Mapper and JSONTranscoder.
"""

from __future__ import annotations

import json.encoder
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from eventsourcing.persistence import (
    DatetimeAsISO, DecimalAsStr, JSONTranscoder, Mapper, UUIDAsHex)
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ledger.domain.batch import Batch
from ledger.domain.log import appended
from ledger.transcoding import LedgerMapper, LedgerTranscoder, json_string


def library_mapper() -> Mapper[Any]:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return Mapper(transcoder)


@settings(max_examples=1000)
@given(st.text())
@example('{"envelope":{"payload":"eyJ9+/=="},"recorded_at":"2026-11-24T00:00:00.000Z"}')
@example('a\\b"c\n\x00\x1f\x7f\u2028é面\U0001f600')
def test_json_string_is_the_encoders(text: str) -> None:
    assert json_string(text) == json.encoder.encode_basestring(text)


times = st.datetimes(
    min_value=datetime(1970, 1, 1), timezones=st.sampled_from([UTC, timezone(timedelta(hours=8))]))


@settings(max_examples=300)
@given(st.integers(0, 2**53), st.text(), st.text(), st.text(), times)
def test_appended_events_are_stored_as_the_library_stores_them(
    index: int, entry: str, leaf: str, statement_id: str, at: datetime
) -> None:
    event = appended(index, entry, leaf, statement_id, at)
    ours, theirs = LedgerMapper(LedgerTranscoder()), library_mapper()
    try:
        expected = theirs.to_stored_event(event)
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8, no stored event either way
        try:
            ours.to_stored_event(event)
        except UnicodeEncodeError:
            return
        raise AssertionError("encoded a lone surrogate") from None
    for _ in range(2):  # the second time with the tagged time remembered
        assert ours.to_stored_event(event) == expected
    assert theirs.to_domain_event(expected).__dict__ == event.__dict__


def test_aggregate_events_are_stored_as_the_library_stores_them() -> None:
    batch = Batch.produce("06909990000017", "L1", "91350100MB0000002X", 1000, entry=7)
    batch.ship("91350100MB0000002X", 200, "S1", entry=8)
    ours, theirs = LedgerMapper(LedgerTranscoder()), library_mapper()
    for event in batch.collect_events():
        assert ours.to_stored_event(event) == theirs.to_stored_event(event)
