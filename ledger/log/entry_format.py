"""The bytes of a log entry (PROTOCOL.md §3), written and read in one place.

An entry is JCS({"envelope": …, "recorded_at": …}): its leaf hash is what the Merkle
tree commits to, so its bytes must be exactly these. The writer builds them by
concatenation rather than by canonicalising (`envelope_jcs`, `entry_bytes`): every
value in them is base64, lowercase hex, the fixed payloadType or a timestamp, none
needing an escape, and JCS orders the members "envelope" < "recorded_at", "payload" <
"payloadType" < "signatures", "keyid" < "sig". Readers of entries the ledger wrote take
the payload and recording time back by slicing (`written_parts`), and anything else the
long way (json), so the slow path stays beside the fast one; tests/test_ledger.py
compares the concatenation with canonicalising the object.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ledger.b64 import b64encode
from ledger.envelope import Envelope

_HEAD = '{"envelope":{"payload":"'
_RECORDED_AT = ',"recorded_at":"'
# The envelope's bytes within an entry's: after '{"envelope":', before ',"recorded_at":'.
ENVELOPE_START = len('{"envelope":')


def format_recorded_at(at: datetime) -> str:
    """RFC 3339 UTC with milliseconds: entries recorded in one second still sort."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def envelope_jcs(envelope: Envelope) -> bytes:
    """JCS(envelope.to_json()), built by concatenation: a quarter of the cost of
    canonicalising the object."""
    signatures = ",".join(
        f'{{"keyid":"{sig.keyid}","sig":"{b64encode(sig.sig)}"}}' for sig in envelope.signatures
    )
    return (
        f'{{"payload":"{envelope.payload_base64}","payloadType":"{envelope.payload_type}",'
        f'"signatures":[{signatures}]}}'
    ).encode()


def entry_bytes(envelope_bytes: bytes, recorded_at: str) -> bytes:
    """JCS({"envelope": ..., "recorded_at": ...}), given the envelope's JCS: a timestamp of
    digits, '-', ':', '.', 'T' and 'Z' needs no escaping. Saves canonicalising twice."""
    return b'{"envelope":' + envelope_bytes + b',"recorded_at":"' + recorded_at.encode() + b'"}'


def envelope_text(entry: str) -> str:
    """The envelope's JCS within an entry's text, as `entry_bytes` placed it."""
    return entry[ENVELOPE_START:entry.rfind(_RECORDED_AT)]


def written_parts(text: str) -> tuple[str, str] | None:
    """The payload (base64) and recording time of an entry text in the form `entry_bytes`
    writes (the payload first, the recording time last, no escapes in either), read by
    slicing instead of json.loads; None for any other text, to be read the long way."""
    if not (text.startswith(_HEAD) and text.endswith('"}')):
        return None
    end = text.find('"', len(_HEAD))
    at = text.rfind(_RECORDED_AT)
    if end < 0 or at <= end:
        return None
    return text[len(_HEAD):end], text[at + len(_RECORDED_AT):-2]
