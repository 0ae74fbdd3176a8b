"""What a bundle holds and what its verifier says: the members DISPUTES.md names, the
entries and keys read from it, and the verdict.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from ledger.envelope import Envelope
from ledger.errors import LedgerError
from ledger.statements import Statement

BUNDLE_FIELDS = frozenset({"bundle_version", "case", "generated_at", "log_key", "checkpoint",
                           "entries", "signers", "manifest", "timeline"})


ITEM_FIELDS = frozenset({"index", "entry", "inclusion"})


ENTRY_FIELDS = frozenset({"envelope", "recorded_at"})


SIGNER_FIELDS = frozenset({"org", "public_key", "registered_by_entry"})


HEX_HASH = re.compile("[0-9a-f]{64}")


ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                            allow_nan=False)


class UnreadableBundle(LedgerError):
    """The input is not a bundle at all: not UTF-8, not JSON, or not a JSON object."""


@dataclass
class Verdict:
    """What the verifier found: no failures means every check passed."""

    entries: int = 0
    tree_size: int | None = None
    signatures: int = 0  # signatures verified, for the benchmark
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        return f"verified {self.entries} entries at tree size {self.tree_size}"


@dataclass(frozen=True, slots=True)
class SigningKey:
    keyid: str
    org: str
    public_key: bytes
    public_key_text: str
    valid_from: datetime | None
    entry: int


@dataclass(frozen=True, slots=True)
class BundleEntry:
    index: int
    envelope: Envelope
    statement: Statement
    recorded_at: datetime
