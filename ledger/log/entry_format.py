"""The bytes of a log entry (PROTOCOL.md §3), and of the stored event that holds it,
written and read in one place.

An entry is JCS({"envelope": …, "recorded_at": …}): its leaf hash is what the Merkle
tree commits to, so its bytes must be exactly these. The writer builds them by
concatenation rather than by canonicalising (`envelope_jcs`, `entry_bytes`): every
value in them is base64, lowercase hex, the fixed payloadType or a timestamp, none
needing an escape, and JCS orders the members "envelope" < "recorded_at", "payload" <
"payloadType" < "signatures", "keyid" < "sig". Readers of entries the ledger wrote take
the payload and recording time back by slicing (`written_parts`), and anything else the
long way (json), so the slow path stays beside the fast one; tests/test_ledger.py
compares the concatenation with canonicalising the object.

The log's stored event (ledger.domain.log.Appended, as the library's JSON transcoder
encodes it) holds the entry as a JSON string. The writer builds that state directly
too (`stored_state`), and the views' log reader takes an entry's payload and recording
time back out of it by slicing (`read_stored_state`), without decoding the string;
any other form is decoded by the library, the long way (tests/test_transcoding.py and
tests/test_views_parse.py compare the two ways).
"""

from __future__ import annotations

from datetime import UTC, datetime

from ledger.b64 import b64encode
from ledger.domain.log import UNVERIFIED
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


def stored_state(tagged_time: bytes, index: int, entry: bytes, leaf_hash: bytes,
                 statement_id: str) -> bytes:
    """The stored state of the log event of an entry the writer built, byte for byte what
    the library's transcoder writes for Appended(timestamp, index, entry, leaf_hash,
    statement_id): `entry` is JSON whose strings hold only base64, hex, the payload type
    and a time, so '"' is the one character to escape in it (a bytes replace, not the
    encoder's look at each of a kilobyte of characters), and the statement id is a
    checked lowercase UUID. `tagged_time` is the time in the library's tagged form."""
    return b'{"timestamp":%b,"index":%d,"entry":"%b","leaf_hash":"%b","statement_id":"%b"}' % (
        tagged_time, index, entry.replace(b'"', b'\\"'), leaf_hash.hex().encode(),
        statement_id.encode())


# A stored Appended state as `stored_state` writes it (the event's attributes in the
# order of ledger/domain/log.py, no spaces), its entry a JSON string in it.
_STATE_HEAD = '{"timestamp":{"_type_":"datetime_iso","_data_":"'
_STATE_INDEX = '"},"index":'
_STATE_ENTRY = ',"entry":"{\\"envelope\\":{\\"payload\\":\\"'
_STATE_LEAF = '","leaf_hash":"'
_STATE_ID = '","statement_id":"'
_STATE_RECORDED_AT = ',\\"recorded_at\\":\\"'


def read_stored_state(text: str) -> tuple[int, str, str] | None:
    """The index, payload and recording time of a verified entry whose stored state
    and entry are in the forms the ledger writes them, read from the state's text by
    slicing: the values that json.loads and then entry_format.written_parts give, without
    decoding the entry's JSON string (most of the cost of reading a state). None
    for anything else: an unverified entry, or any other form, read the long way."""
    if not (text.startswith(_STATE_HEAD) and text.endswith('"}')):
        return None
    i = text.find(_STATE_INDEX, len(_STATE_HEAD))
    j = text.find(_STATE_ENTRY, i)
    k = text.find(_STATE_LEAF, j)
    m = text.find(_STATE_ID, k)
    if i < 0 or j < 0 or k < 0 or m < 0:
        return None
    number = text[i + len(_STATE_INDEX):j]
    statement_id = text[m + len(_STATE_ID):-2]
    for part in (text[len(_STATE_HEAD):i], text[k + len(_STATE_LEAF):m], statement_id):
        if '"' in part or "\\" in part:
            return None
    if (statement_id.startswith(UNVERIFIED) or not number.isascii() or not number.isdigit()
            or (number[0] == "0" and number != "0")):
        return None
    # The entry's string after the payload's opening quote: every quote in it escaped
    # and no backslash escaped (so `k` is where it ends, and each \" is a quote).
    entry = text[j + len(_STATE_ENTRY):k]
    if entry.count('"') != entry.count('\\"') or "\\\\" in entry:
        return None
    end = entry.find('\\"')
    at = entry.rfind(_STATE_RECORDED_AT)
    payload, recorded_at = entry[:end], entry[at + len(_STATE_RECORDED_AT):-3]
    if (end < 0 or at <= end or not entry.endswith('\\"}')
            or "\\" in payload or "\\" in recorded_at):
        return None
    return int(number), payload, recorded_at
