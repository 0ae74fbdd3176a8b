"""DSSE envelopes carrying signed statements: parsing, PAE and signature checks.

Standards followed:

* DSSE v1 (Dead Simple Signing Envelope, secure-systems-lab/dsse,
  envelope.md and protocol.md) — envelope fields `payloadType`, `payload`,
  `signatures[{keyid, sig}]`, and the Pre-Authentication Encoding (PAE) that
  is what gets signed.
* RFC 8032 — Ed25519 signatures (64 bytes).
* RFC 4648 §4 — payload and signatures as padded standard base64.
* RFC 8785 — the payload must be the canonical JSON of its statement.

The ledger stores an envelope exactly as accepted and hashes it, so
`Envelope.from_json` accepts only one byte form per envelope: no extra or
missing fields, base64 in its single canonical spelling, lowercase hex key
ids, no repeated key ids. `Envelope.to_json` gives that form back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ledger import keys
from ledger.b64 import b64decode, b64encode
from ledger.canonical import json_kind, nesting_depth, parse_canonical_statement
from ledger.errors import Rejected, Rejection

__all__ = ["MAX_PAYLOAD_BYTES", "PAYLOAD_TYPE", "Envelope", "Signature", "load_json", "pae",
           "signature_failure", "signer_ids"]

PAYLOAD_TYPE = "application/vnd.qledger.statement+json"
MAX_PAYLOAD_BYTES = 65536

# Base64 spends 4 characters per started group of 3 bytes; anything longer
# than this cannot decode to MAX_PAYLOAD_BYTES or fewer, so it is refused
# before any decoding work.
_MAX_PAYLOAD_BASE64 = 4 * -(-MAX_PAYLOAD_BYTES // 3)
_SIG_BASE64 = 4 * -(-keys.SIGNATURE_BYTES // 3)  # 88

_ENVELOPE_FIELDS = frozenset({"payloadType", "payload", "signatures"})
_SIGNATURE_FIELDS = frozenset({"keyid", "sig"})
_KEYID = re.compile("[0-9a-f]{64}")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding: the bytes a signature covers.

    "DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload, where LEN is the
    byte length in ASCII decimal. Binding the type stops a signature made for
    one kind of payload being replayed as another.
    """
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


@dataclass(frozen=True, slots=True)
class Signature:
    keyid: str  # lowercase hex SHA-256 of the signer's raw public key
    sig: bytes  # 64-byte Ed25519 signature over the envelope's PAE


@dataclass(frozen=True, slots=True)
class Envelope:
    """An envelope that passed every check except signature verification.

    `statement` is the parsed payload, kept because every consumer needs it;
    it is derived from `payload`, so equality and hashing ignore it. Treat it
    as read-only.
    """

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]
    statement: dict[str, Any] = field(compare=False, repr=False)
    # The payload as accepted: its one canonical base64 spelling, kept because the
    # envelope's bytes are written out again (to_json, the ledger's entries).
    payload_base64: str = field(compare=False, repr=False)

    @classmethod
    def from_json(cls, data: bytes | str | Mapping[str, Any]) -> Envelope:
        """Validate an envelope given as JSON text/bytes or as the parsed object.

        Refusals, by kind: BAD_JSON (unparseable, duplicate keys, or a payload
        breaking the statement JSON rules), BAD_ENVELOPE (shape, repeated
        keyid), BAD_BASE64, BAD_SIGNATURE (a sig that is not 64 bytes),
        BAD_PAYLOAD_TYPE, PAYLOAD_TOO_LARGE, NON_CANONICAL. Signatures are
        checked by `verify`, not here.
        """
        obj = _load_json(data) if isinstance(data, (bytes, bytearray, str)) else data
        # type() first: parsed JSON is always a dict, and the ABC check costs more.
        if type(obj) is not dict and not isinstance(obj, Mapping):
            _bad_envelope(f"an envelope must be a JSON object, not {json_kind(obj)}")
        if obj.keys() != _ENVELOPE_FIELDS:
            _bad_envelope(_field_problem("the envelope", obj.keys(), _ENVELOPE_FIELDS))
        payload_type = obj["payloadType"]
        payload_text = obj["payload"]
        if not isinstance(payload_type, str):
            _bad_envelope(f"payloadType must be a string, not {json_kind(payload_type)}")
        if not isinstance(payload_text, str):
            _bad_envelope(f"payload must be a base64 string, not {json_kind(payload_text)}")
        signatures = _signatures(obj["signatures"])
        if payload_type != PAYLOAD_TYPE:
            shown = payload_type if len(payload_type) <= 80 else payload_type[:77] + "…"
            raise Rejected(
                Rejection.BAD_PAYLOAD_TYPE,
                f"payloadType must be {PAYLOAD_TYPE!r}, not {shown!r}",
            )
        if len(payload_text) > _MAX_PAYLOAD_BASE64:
            _too_large(f"at least {len(payload_text) // 4 * 3 - 2}")
        payload = b64decode(payload_text, "payload")
        if len(payload) > MAX_PAYLOAD_BYTES:
            _too_large(str(len(payload)))
        statement = parse_canonical_statement(payload)
        return cls(payload_type, payload, signatures, statement, payload_text)

    def to_json(self) -> dict[str, Any]:
        """The envelope exactly as accepted.

        Signatures are re-encoded in base64, which reproduces the accepted text
        because only the canonical spelling is ever accepted.
        """
        return {
            "payloadType": self.payload_type,
            "payload": self.payload_base64,
            "signatures": [{"keyid": s.keyid, "sig": b64encode(s.sig)} for s in self.signatures],
        }

    def message(self) -> bytes:
        """The PAE bytes every signature in this envelope covers."""
        return pae(self.payload_type, self.payload)

    def verify(self, keyid: str, public_key: bytes) -> None:
        """Check the signature made by `keyid`, whose raw public key is `public_key`.

        Raises Rejected(BAD_ENVELOPE) if no signature carries that keyid, and
        Rejected(BAD_SIGNATURE) if the key does not have that id or the
        signature does not verify.
        """
        signature = next((s for s in self.signatures if s.keyid == keyid), None)
        if signature is None:
            _bad_envelope(f"the envelope has no signature with keyid {keyid}")
        if len(public_key) != keys.PUBLIC_KEY_BYTES or keys.key_id(public_key) != keyid:
            raise Rejected(
                Rejection.BAD_SIGNATURE,
                f"the public key given for keyid {keyid} is not the key with that id",
            )
        if not keys.verify(public_key, signature.sig, self.message()):
            raise signature_failure(keyid)


def signature_failure(keyid: str) -> Rejected:
    """The refusal of a signature by `keyid` that does not verify, wherever it was checked
    (here, in a worker process, on replay)."""
    return Rejected(
        Rejection.BAD_SIGNATURE,
        f"the signature by key {keyid} does not verify over this payload and payloadType",
    )


def _signatures(value: object) -> tuple[Signature, ...]:
    if not isinstance(value, list) or not value:
        _bad_envelope("signatures must be a non-empty list of {keyid, sig} objects")
    parsed: list[Signature] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        where = f"signatures[{i}]"
        if type(item) is not dict and not isinstance(item, Mapping):
            _bad_envelope(f"{where} must be an object with fields keyid and sig, not {json_kind(item)}")
        if item.keys() != _SIGNATURE_FIELDS:
            _bad_envelope(_field_problem(where, item.keys(), _SIGNATURE_FIELDS))
        keyid = item["keyid"]
        sig = item["sig"]
        if not isinstance(keyid, str) or _KEYID.fullmatch(keyid) is None:
            _bad_envelope(
                f"{where}.keyid must be 64 lowercase hex digits (SHA-256 of the public key)"
            )
        if keyid in seen:
            _bad_envelope(f"{where} repeats keyid {keyid}; each key signs an envelope at most once")
        if not isinstance(sig, str):
            _bad_envelope(f"{where}.sig must be a base64 string, not {json_kind(sig)}")
        # A sig of the wrong size is well-formed JSON but cannot be an Ed25519
        # signature, so it is refused as a bad signature (before decoding, if
        # the text alone is too long).
        if len(sig) > _SIG_BASE64:
            _bad_signature(keyid, f"{where}.sig is {len(sig)} characters; a 64-byte signature is 88")
        raw = b64decode(sig, f"{where}.sig")
        if len(raw) != keys.SIGNATURE_BYTES:
            _bad_signature(keyid, f"{where}.sig decodes to {len(raw)} bytes; Ed25519 signatures are 64")
        seen.add(keyid)
        parsed.append(Signature(keyid, raw))
    return tuple(parsed)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # Parsers disagree on which duplicate wins; accepting one would make
        # "the envelope as accepted" depend on ours.
        raise Rejected(Rejection.BAD_JSON, "the envelope JSON repeats a key in an object")
    return obj


_ENVELOPE_DECODER = json.JSONDecoder(object_pairs_hook=_object)
MAX_ENVELOPE_DEPTH = 8


def signer_ids(obj: object) -> list[str] | None:
    """The key ids an envelope, parsed but not yet checked, says it is signed by; None
    when it is not shaped as an envelope (Envelope.from_json says how)."""
    signatures = obj.get("signatures") if type(obj) is dict else None
    if type(signatures) is not list:
        return None
    ids = []
    for item in signatures:
        keyid = item.get("keyid") if type(item) is dict else None
        if type(keyid) is not str:
            return None
        ids.append(keyid)
    return ids


def load_json(data: bytes | bytearray | str) -> object:
    """An envelope's JSON text parsed, as Envelope.from_json parses it (depth, duplicate
    keys), for a caller that looks at it before validating it."""
    return _load_json(data) if isinstance(data, (bytes, bytearray, str)) else data


def _load_json(data: bytes | bytearray | str) -> object:
    if isinstance(data, (bytes, bytearray)):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Rejected(
                Rejection.BAD_JSON, f"the envelope is not UTF-8: invalid byte at offset {exc.start}"
            ) from None
    else:
        text = data
    # An envelope nests three levels (object, signatures, signature). Refusing deeper text
    # before parsing spares the recursive decoder 100,000 levels of hostile brackets.
    if nesting_depth(text, MAX_ENVELOPE_DEPTH) > MAX_ENVELOPE_DEPTH:
        raise Rejected(Rejection.BAD_JSON, "the envelope JSON nests too deeply")
    try:
        return _ENVELOPE_DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise Rejected(
            Rejection.BAD_JSON,
            f"the envelope is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None
    except RecursionError:
        raise Rejected(Rejection.BAD_JSON, "the envelope JSON nests too deeply") from None


def _bad_envelope(detail: str) -> NoReturn:
    raise Rejected(Rejection.BAD_ENVELOPE, detail)


def _bad_signature(keyid: str, detail: str) -> NoReturn:
    raise Rejected(Rejection.BAD_SIGNATURE, f"{detail} (keyid {keyid})")


def _too_large(size: str) -> NoReturn:
    raise Rejected(
        Rejection.PAYLOAD_TOO_LARGE,
        f"the payload is {size} bytes; at most {MAX_PAYLOAD_BYTES} are accepted",
    )


def _field_problem(where: str, present: Any, expected: frozenset[str]) -> str:
    missing = sorted(expected - set(present))
    extra = sorted(repr(k) for k in set(present) - expected)
    parts = []
    if missing:
        parts.append("lacks " + ", ".join(missing))
    if extra:
        parts.append("has unexpected field(s) " + ", ".join(extra))
    return f"{where} {' and '.join(parts)} (fields are exactly {', '.join(sorted(expected))})"
