"""One error tree for the whole ledger; the HTTP API and the CLI each map it in one place.

LedgerError
├── Rejected          a statement or envelope refused: nothing was recorded
│   └── IdConflict    the same statement `id` with a different envelope
├── InvalidRequest    a question asked wrongly (index beyond size …)
├── NotFound          an entry, batch, organization … that does not exist
├── VerificationError a signature, proof or checkpoint that does not verify
└── StorageError      the database could not be used
"""

from __future__ import annotations

from enum import StrEnum


class Rejection(StrEnum):
    """Stable kinds of rejection. The value becomes the problem `type` over HTTP."""

    BAD_JSON = "bad-json"
    BAD_ENVELOPE = "bad-envelope"
    BAD_BASE64 = "bad-base64"
    BAD_PAYLOAD_TYPE = "bad-payload-type"
    NON_CANONICAL = "non-canonical-payload"
    PAYLOAD_TOO_LARGE = "payload-too-large"
    TOO_MANY = "too-many-envelopes"
    UNKNOWN_TYPE = "unknown-statement-type"
    BAD_FIELDS = "bad-fields"
    BAD_IDENTIFIER = "bad-identifier"
    BAD_TIME = "bad-time"
    FUTURE_STATEMENT = "issued-in-future"
    BAD_QUANTITY = "bad-quantity"
    UNKNOWN_KEY = "unknown-key"
    BAD_SIGNATURE = "bad-signature"
    KEY_NOT_OF_SIGNER = "key-not-of-signer"
    KEY_REVOKED = "key-revoked"
    KEY_NOT_YET_VALID = "key-not-yet-valid"
    DUPLICATE_KEY = "duplicate-key"
    WEAK_KEY = "weak-public-key"
    ROLE_FORBIDDEN = "role-forbidden"
    UNKNOWN_ORG = "unknown-organization"
    DUPLICATE_ORG = "duplicate-organization"
    UNKNOWN_BATCH = "unknown-batch"
    DUPLICATE_BATCH = "duplicate-batch"
    NOT_HELD = "batch-not-held"
    INSUFFICIENT_QUANTITY = "insufficient-quantity"
    UNKNOWN_SHIPMENT = "unknown-shipment"
    DUPLICATE_SHIPMENT = "duplicate-shipment"
    WRONG_RECEIVER = "wrong-receiver"
    ALREADY_RECEIVED = "already-received"
    NOT_BLACKLISTED = "not-blacklisted"
    ALREADY_BLACKLISTED = "already-blacklisted"
    UNKNOWN_CASE = "unknown-case"
    DUPLICATE_CASE = "duplicate-case"
    CASE_CLOSED = "case-closed"
    CASE_CITES_TOO_MUCH = "case-cites-too-much"
    NOT_A_PARTY = "not-a-party"
    UNKNOWN_ENTRY = "unknown-entry"
    BAD_CORRECTION = "bad-correction"
    ID_CONFLICT = "id-conflict"
    LEDGER_NOT_EMPTY = "ledger-not-empty"
    LEDGER_EMPTY = "ledger-not-initialised"


class LedgerError(Exception):
    """Root of every error the ledger raises on purpose."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


class Rejected(LedgerError):
    """A statement or envelope was refused; nothing was recorded.

    `position` is the envelope's place in a batch (0-based) when it came in one.
    """

    def __init__(self, kind: Rejection, detail: str, *, position: int | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.position = position

    def at(self, position: int) -> Rejected:
        """The same rejection, naming the envelope's place in its batch."""
        self.position = position
        return self

    def __str__(self) -> str:
        where = f"envelope {self.position}: " if self.position is not None else ""
        return f"{where}{self.detail}"


class IdConflict(Rejected):
    """The statement `id` was recorded before with a different envelope."""

    def __init__(self, statement_id: str, index: int) -> None:
        super().__init__(
            Rejection.ID_CONFLICT,
            f"statement id {statement_id} was recorded at entry {index} with different content",
        )
        self.statement_id = statement_id
        self.index = index


class InvalidRequest(LedgerError):
    """A question the ledger cannot answer as asked (a proof for an index beyond the size)."""


class NotFound(LedgerError):
    """Something asked for by name or index does not exist."""


class VerificationError(LedgerError):
    """A signature, proof, checkpoint or bundle failed to verify."""


class StorageError(LedgerError):
    """The database could not be opened or used."""
