"""Reading the log back: its size, entries by index, the statement of an entry, a key's
history and a statement's receipt. A mixin of the Ledger application (it reads through
the application's recorder and mapper), kept apart from the writing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ledger.domain.ids import LOG_ID
from ledger.domain.key import Key
from ledger.domain.log import Appended
from ledger.envelope import Envelope
from ledger.errors import NotFound
from ledger.intake import statement_key
from ledger.statements import Statement, parse_statement


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the ledger answers for a recorded envelope (PROTOCOL.md §5)."""

    index: int
    recorded_at: str
    leaf_hash: bytes
    duplicate: bool = False  # the envelope had been recorded before: this is its first receipt

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "recorded_at": self.recorded_at, "leaf_hash": self.leaf_hash.hex()}


@dataclass(frozen=True, slots=True)
class StoredEntry:
    index: int
    text: str  # JCS of {"envelope", "recorded_at"}: ASCII
    leaf_hash: bytes

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = json.loads(self.text)
        return entry


@dataclass(frozen=True, slots=True)
class KeyHistory:
    """A registered key: its organization and the entries that registered and revoked it."""

    keyid: str
    org: str
    public_key: str  # base64, as registered
    registered_entry: int
    revoked_entries: tuple[int, ...]


class LogReads:
    """The Ledger's reads of its log (a mixin: `recorder` and `mapper` are the
    application's)."""

    recorder: Any
    mapper: Any

    def size(self) -> int:
        last = self.recorder.select_events(LOG_ID, desc=True, limit=1)
        return last[0].originator_version if last else 0

    def _appended(self, gt: int, lte: int | None = None) -> list[Appended]:
        stored = self.recorder.select_events(LOG_ID, gt=gt, lte=lte)
        return [self.mapper.to_domain_event(s) for s in stored]  # type: ignore[misc]

    def entry(self, index: int) -> StoredEntry:
        events = self._appended(index, index + 1) if index >= 0 else []
        if not events:
            raise NotFound(f"entry {index} does not exist (the log has {self.size()} entries)")
        e = events[0]
        return StoredEntry(e.index, e.entry, bytes.fromhex(e.leaf_hash))

    def entries(self, start: int, stop: int) -> list[StoredEntry]:
        """Entries start ≤ index < stop, in order."""
        return [
            StoredEntry(e.index, e.entry, bytes.fromhex(e.leaf_hash))
            for e in self._appended(start, stop)
        ]

    def entries_at(self, indexes: Iterable[int]) -> list[StoredEntry]:
        """The entries at the given indexes, in index order (missing ones left out):
        scattered entries of a large log in a few queries, for evidence bundles."""
        versions = sorted({i + 1 for i in indexes if i >= 0})
        stored = self.recorder.select_versions(LOG_ID, versions)  # type: ignore[attr-defined]
        return [
            StoredEntry(e.index, e.entry, bytes.fromhex(e.leaf_hash))
            for e in (self.mapper.to_domain_event(s) for s in stored)
        ]

    def key_history(self, keyids: Iterable[str]) -> dict[str, KeyHistory]:
        """Where each registered key among `keyids` was registered and revoked, in one
        query; keys never registered are left out."""
        ids = {Key.create_id(k): k for k in set(keyids)}
        stored = self.recorder.select_events_after(  # type: ignore[attr-defined]
            [(uid, 0) for uid in ids]
        )
        out: dict[str, KeyHistory] = {}
        for s in stored:
            # The events' fields are those of the decorated methods: untyped to mypy.
            event: Any = self.mapper.to_domain_event(s)
            keyid = ids[s.originator_id]
            if isinstance(event, Key.Registered):
                out[keyid] = KeyHistory(keyid, event.org, event.public_key, event.entry, ())
            elif isinstance(event, Key.Revoked) and keyid in out:
                h = out[keyid]
                out[keyid] = KeyHistory(h.keyid, h.org, h.public_key, h.registered_entry,
                                        (*h.revoked_entries, event.entry))
        return out

    def statement_at(self, index: int) -> Statement:
        stored = self.entry(index)
        envelope = Envelope.from_json(stored.to_json()["envelope"])
        return parse_statement(envelope.statement)

    def receipt(self, statement_id: str) -> Receipt | None:
        try:
            key = statement_key(statement_id)
        except ValueError:
            return None
        row = self.recorder.find_statements([key]).get(key)  # type: ignore[attr-defined]
        return Receipt(row[1], row[3], row[4], True) if row is not None else None
