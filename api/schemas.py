"""JSON answers of the HTTP API (PROTOCOL.md §5), with the examples the OpenAPI page shows.

Hashes are lowercase hex here; the ledger keeps bytes inside.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ledger.log_reads import Receipt, StoredEntry

# One real envelope and its entry (the farm ships 100 kg of wheat to the mill), for examples.
EXAMPLE_ENVELOPE: dict[str, Any] = {
    "payloadType": "application/vnd.qledger.statement+json",
    "payload": (
        "eyJieSI6IjkxMzUwMTAwTUEwMDAwMDExUSIsImd0aW4iOiIwNjkwMTIzMDAwMDAxMCIsImlkIjoiMGI2ZjNkMmUt"
        "OGMxYS00ZjVlLTlkN2ItMmE0YzZlOGYxYjNkIiwiaXNzdWVkX2F0IjoiMjAyNi0xMS0yMlQxMDowMDowMFoiLCJs"
        "b3QiOiJXMSIsInF1YW50aXR5IjoxMDAsInNoaXBtZW50IjoiUy0yMDI2LTAwNDIiLCJ0byI6IjkxMzUwMTAwTUEw"
        "MDAwMDEyVSIsInR5cGUiOiJiYXRjaC5zaGlwcGVkIn0="
    ),
    "signatures": [{
        "keyid": "1db40a6df2fe7c3aa76c9693eb6a9cfe2555dbb37258e11f53de63166d5b3fb1",
        "sig": "gXzJMgJTAOn99FnxUDFsU3QzsXnG17/0ML6L89gT2CGI/R3NTp5p87BcOHAWWTOiJRZIZZOg+dVX"
               "EisDcVofCw==",
    }],
}
EXAMPLE_RECORDED_AT = "2026-11-22T10:00:01.123Z"
EXAMPLE_LEAF_HASH = "7111995a153e32e8255086f211262de93ae730178289552f5126da2d87db2676"
EXAMPLE_HASHES = [
    "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb",
    "3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d",
]
EXAMPLE_CHECKPOINT = (
    "ledger.quality.example/v1\n43\nLXEWQrcmsEQBYnyp+6wy9chTD7GQPMTbAiWHF5IaSIE=\n\n"
    "\u2014 ledger.quality.example/v1 AgvUj4GmyEMfGVI2ocfcwi4trp5925XeuVU4FP6PcvNLQNIjSOuyh+SvF"
    "M5HdOOxjFKP0MUQShZoxDx1nLCsfL4JtQo=\n"
)
EXAMPLE_LOG_KEY = "ledger.quality.example/v1+020bd48f+AbJkZEnGhkpnba5LlQHHjdoZf/Oexizn6/rxeLY/yAAM"


def _examples(*values: Any) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(values)})


class SignaturePublic(BaseModel):
    keyid: str = Field(description="lowercase hex SHA-256 of the signer's Ed25519 public key")
    sig: str = Field(description="base64 Ed25519 signature over the DSSE PAE")


class EnvelopePublic(BaseModel):
    """A DSSE v1 envelope exactly as accepted (PROTOCOL.md §2)."""

    model_config = _examples(EXAMPLE_ENVELOPE)

    payloadType: str  # the DSSE field name
    payload: str = Field(description="base64 of the statement's JCS bytes")
    signatures: list[SignaturePublic]


class ReceiptPublic(BaseModel):
    """What the ledger answers for a recorded envelope."""

    model_config = _examples(
        {"index": 42, "recorded_at": EXAMPLE_RECORDED_AT, "leaf_hash": EXAMPLE_LEAF_HASH})

    index: int
    recorded_at: str = Field(description="RFC 3339 UTC, the ledger's clock")
    leaf_hash: str = Field(description="hex SHA-256(0x00 || JCS(entry))")

    @classmethod
    def of(cls, receipt: Receipt) -> ReceiptPublic:
        return cls(**receipt.to_json())


class BatchReceiptPublic(ReceiptPublic):
    """A receipt in a batch answer; `duplicate` marks an envelope recorded before."""

    model_config = _examples({"index": 42, "recorded_at": EXAMPLE_RECORDED_AT,
                              "leaf_hash": EXAMPLE_LEAF_HASH, "duplicate": False})

    duplicate: bool = Field(description="recorded before: this is its original receipt")

    @classmethod
    def of(cls, receipt: Receipt) -> BatchReceiptPublic:
        return cls(**receipt.to_json(), duplicate=receipt.duplicate)


class LogEntryPublic(BaseModel):
    """A log entry (PROTOCOL.md §3): its leaf hash is SHA-256(0x00 || JCS of this object)."""

    model_config = _examples({"envelope": EXAMPLE_ENVELOPE, "recorded_at": EXAMPLE_RECORDED_AT})

    envelope: EnvelopePublic
    recorded_at: str


class EntryPublic(LogEntryPublic):
    """A log entry with its index and leaf hash."""

    model_config = _examples({"envelope": EXAMPLE_ENVELOPE, "recorded_at": EXAMPLE_RECORDED_AT,
                              "index": 42, "leaf_hash": EXAMPLE_LEAF_HASH})

    index: int
    leaf_hash: str

    @classmethod
    def of(cls, stored: StoredEntry) -> EntryPublic:
        return cls(**stored.to_json(), index=stored.index, leaf_hash=stored.leaf_hash.hex())


class FeedEntryPublic(BaseModel):
    index: int
    entry: LogEntryPublic
    leaf_hash: str

    @classmethod
    def of(cls, stored: StoredEntry) -> FeedEntryPublic:
        return cls(index=stored.index, entry=LogEntryPublic(**stored.to_json()),
                   leaf_hash=stored.leaf_hash.hex())


class EntryProofPublic(FeedEntryPublic):
    """An entry, its RFC 9162 inclusion proof, and the signed checkpoint the proof is for."""

    model_config = _examples({
        "index": 42, "entry": {"envelope": EXAMPLE_ENVELOPE, "recorded_at": EXAMPLE_RECORDED_AT},
        "leaf_hash": EXAMPLE_LEAF_HASH, "inclusion": EXAMPLE_HASHES,
        "checkpoint": EXAMPLE_CHECKPOINT,
    })

    inclusion: list[str] = Field(description="hex hashes, RFC 9162 §2.1.3 PATH, deepest first")
    checkpoint: str = Field(description="the signed checkpoint whose tree size and root the "
                                        "proof leads to")


class FeedPublic(BaseModel):
    """Entries after `after`, in index order; ask again with `after=next_after` for more."""

    model_config = _examples({
        "entries": [{"index": 42, "entry": {"envelope": EXAMPLE_ENVELOPE,
                                            "recorded_at": EXAMPLE_RECORDED_AT},
                     "leaf_hash": EXAMPLE_LEAF_HASH}],
        "next_after": 42,
    })

    entries: list[FeedEntryPublic]
    next_after: int = Field(description="index of the last entry returned, else `after`")


class InclusionProofPublic(BaseModel):
    model_config = _examples({"index": 42, "tree_size": 43, "hashes": EXAMPLE_HASHES})

    index: int
    tree_size: int
    hashes: list[str] = Field(description="hex, RFC 9162 §2.1.3 PATH(index, D[tree_size])")


class ConsistencyProofPublic(BaseModel):
    model_config = _examples({"first": 40, "second": 43, "hashes": EXAMPLE_HASHES})

    first: int
    second: int
    hashes: list[str] = Field(description="hex, RFC 9162 §2.1.4 PROOF(first, D[second])")


class HealthPublic(BaseModel):
    model_config = _examples({"status": "ok", "tree_size": 43})

    status: str
    tree_size: int
