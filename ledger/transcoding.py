"""How the ledger's events become stored bytes: the library's JSON format, made faster.

The stored state is exactly what the library's JSONTranscoder writes (JSON objects,
datetimes and UUIDs as {"_type_": ..., "_data_": ...}), and it is read back by the
library's decoder. Only encoding is replaced: JSONTranscoder.encode builds a new C
encoder for every event, and Mapper.to_stored_event copies each event's attributes
twice; a ledger writes a few events per entry, and those copies cost about as much as
the rest of recording it.
"""

from __future__ import annotations

import json.encoder
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    UUIDAsHex,
)
from eventsourcing.utils import get_topic

from ledger.domain.ids import LOG_ID
from ledger.domain.log import APPENDED_TOPIC, appended
from ledger.log.entry_format import stored_state


class LedgerTranscoder(JSONTranscoder):
    """JSONTranscoder with one reusable C encoder (no circular-reference bookkeeping:
    event states are flat, built by the ledger, never cyclic)."""

    def __init__(self) -> None:
        super().__init__()
        for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
            self.register(transcoding)
        make = json.encoder.c_make_encoder
        if make is None:  # a Python without the C accelerator: the library's way
            self._encode = None
        else:
            self._encode = make(
                None, self._special, json.encoder.encode_basestring, None, ":", ",",
                False, False, True,
            )
        # The tagged form of the last datetime encoded: every entry of a batch is
        # recorded at the same time, and isoformat is a formatted print each time.
        self._last_time: tuple[datetime | None, dict[str, Any]] = (None, {})

    def _special(self, o: Any) -> dict[str, Any]:
        # The library's own tagged forms, so its decoder reads them back unchanged.
        if type(o) is datetime:
            last, tagged = self._last_time
            if last is not o:
                tagged = {"_type_": "datetime_iso", "_data_": o.isoformat()}
                self._last_time = (o, tagged)
            return tagged
        return self._encode_obj(o)

    def encode(self, obj: Any) -> bytes:
        if self._encode is None:
            return super().encode(obj)
        return "".join(self._encode(obj, 0)).encode("utf8")


class LedgerMapper(Mapper[UUID]):
    """The library's Mapper, with the event's attributes copied once, and the log's
    events (one per entry, the largest) written directly by the writer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_time: tuple[datetime | None, bytes] = (None, b"")
        self._classes: dict[type, tuple[str, int]] = {}

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        if self.compressor or self.cipher:
            return super().to_stored_event(domain_event)
        version, topic, state = self.encoded(domain_event)
        return StoredEvent(domain_event.originator_id, version, topic, state)

    def encoded(self, domain_event: Any) -> tuple[int, str, bytes]:
        """The version, topic and state to_stored_event stores `domain_event` with (for
        the audit, which hashes them and needs no StoredEvent)."""
        if self.compressor or self.cipher:
            stored = super().to_stored_event(domain_event)
            return stored.originator_version, stored.topic, stored.state
        state = dict(domain_event.__dict__)
        del state["originator_id"]
        originator_version = state.pop("originator_version")
        cls = type(domain_event)
        try:
            topic, class_version = self._classes[cls]
        except KeyError:
            # Looked up once per class: a getattr that finds no class_version formats
            # an AttributeError's message every time.
            topic, class_version = self._classes[cls] = (
                get_topic(cls), getattr(cls, "class_version", 1))
        if class_version > 1:
            state["class_version"] = class_version
        return originator_version, topic, self.transcoder.encode(state)

    def stored_entry(
        self, index: int, entry: bytes, leaf_hash: bytes, statement_id: str, at: datetime
    ) -> StoredEvent:
        """to_stored_event(appended(index, entry.decode(), leaf_hash.hex(), statement_id,
        at)), byte for byte, for an entry the writer built (entry_format.stored_state:
        an eighth of the encoder's cost), the time in the library's tagged form, formatted
        once a batch. Any other entry goes through `appended` and to_stored_event."""
        if self.compressor or self.cipher:
            return self.to_stored_event(
                appended(index, entry.decode("ascii"), leaf_hash.hex(), statement_id, at))
        last, tagged = self._last_time
        if last is not at:
            tagged = b'{"_type_":"datetime_iso","_data_":"%b"}' % at.isoformat().encode()
            self._last_time = (at, tagged)
        state = stored_state(tagged, index, entry, leaf_hash, statement_id)
        return StoredEvent(LOG_ID, index + 1, APPENDED_TOPIC, state)
