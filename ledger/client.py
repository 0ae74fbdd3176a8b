"""Building statements and signing them into DSSE envelopes.

What the CLI, the tests and integrators use. The envelope produced is the
DSSE v1 JSON form (secure-systems-lab/dsse) with an RFC 8785 canonical payload
and Ed25519 (RFC 8032) signatures over the DSSE PAE; see ledger.envelope for
the rules the ledger checks it against.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.b64 import b64encode
from ledger.canonical import canonical_bytes, parse_canonical_statement
from ledger.envelope import MAX_PAYLOAD_BYTES, PAYLOAD_TYPE, pae
from ledger.errors import Rejected, Rejection
from ledger.keys import key_id, public_bytes
from ledger.timefmt import format_time, parse_time

__all__ = ["format_time", "new_statement", "parse_time", "sign"]


def new_statement(
    type: str,
    by: str,
    *,
    issued_at: datetime | None = None,
    id: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A statement with `type`, `by`, a fresh `id` (UUID4) and `issued_at` (now, UTC, whole seconds)."""
    statement = dict(fields)
    statement["type"] = type
    statement["by"] = by
    statement["id"] = id if id is not None else str(uuid4())
    statement["issued_at"] = format_time(
        issued_at if issued_at is not None else datetime.now(UTC)
    )
    return statement


def sign(
    statement: Mapping[str, Any],
    key: Ed25519PrivateKey,
    *co_signers: Ed25519PrivateKey,
) -> dict[str, Any]:
    """Sign `statement` into an envelope JSON object, one signature per key, `key` first.

    The statement is checked against the same JSON rules the ledger applies
    (integers only, nesting, size), so a statement the ledger would refuse on
    those grounds fails here, with the same Rejected kind, rather than after
    submission.
    """
    payload = canonical_bytes(dict(statement))
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected(
            Rejection.PAYLOAD_TOO_LARGE,
            f"the statement is {len(payload)} bytes canonicalized; at most {MAX_PAYLOAD_BYTES} are accepted",
        )
    parse_canonical_statement(payload)
    message = pae(PAYLOAD_TYPE, payload)
    signatures: list[dict[str, str]] = []
    for signer in (key, *co_signers):
        keyid = key_id(public_bytes(signer))
        if any(s["keyid"] == keyid for s in signatures):
            raise Rejected(
                Rejection.BAD_ENVELOPE,
                f"key {keyid} is given twice; each key signs an envelope at most once",
            )
        signatures.append({"keyid": keyid, "sig": b64encode(signer.sign(message))})
    return {"payloadType": PAYLOAD_TYPE, "payload": b64encode(payload), "signatures": signatures}
