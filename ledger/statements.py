"""Statement types of EVENTS.md and their fields, checked before any rule is applied.

A statement arrives as the parsed JSON object of a signed payload. `parse_statement`
checks that it has exactly the fields of its type, each of the right shape, and
returns a `Statement` whose `body` holds the type's fields with GTINs normalised to
GTIN-14 (the signed bytes keep whatever valid GTIN form the signer chose).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from typing import Any

from ledger.errors import Rejected, Rejection
from ledger.identifiers import (
    normalize_gtin,
    validate_lot,
    validate_org_code,
    validate_region,
    validate_uscc,
)
from ledger.keys import decode_public_key
from ledger.statement_types import StatementType as T
from ledger.text import forbidden_text
from ledger.timefmt import parse_time

ROLES = ("regulator", "producer", "distributor", "retailer", "lab")
CATEGORIES = ("food", "agricultural", "aquatic", "industrial", "drug", "other")
CHECK_KINDS = ("supervisory", "self", "third_party")
STAGES = ("production", "circulation")
VERDICTS = ("pass", "fail")
FINDINGS = ("substantiated", "unsubstantiated", "withdrawn")

MAX_QUANTITY = 10**12  # far above any real lot; keeps every sum well inside 2^53
MAX_LIST = 1000

Check = Callable[[Any, str], Any]
"""A field check: (value, field path) -> normalised value, or raise Rejected."""

Convert = Callable[[Any], Any]
"""What a check does to a value it accepts, without checking it: for `trusted=True`."""

# The checks that change the value they accept (everything else passes it through),
# and how: the trusted read of parse_statement applies only these.
_CONVERTS: dict[Any, Convert] = {}


def _converts(check: Any, convert: Convert) -> Any:
    _CONVERTS[check] = convert
    return check


def _bad(path: str, detail: str) -> Rejected:
    # Top-level problems have no path: "missing field 'to'", not ": missing field 'to'".
    return Rejected(Rejection.BAD_FIELDS, f"{path}: {detail}" if path else detail)


def _identifier(validate: Callable[[str], str]) -> Check:
    # The same organizations and products recur in every batch, and a USCC check
    # digit costs more than a dict lookup: remember the valid ones.
    cached = lru_cache(maxsize=1 << 16)(validate)

    def check(value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise Rejected(Rejection.BAD_IDENTIFIER, f"{path} must be a string")
        try:
            return cached(value)
        except Rejected as e:
            raise Rejected(Rejection.BAD_IDENTIFIER, f"{path}: {e.detail}") from None

    return check


uscc = _identifier(validate_uscc)
gtin = _converts(_identifier(normalize_gtin), lambda v: v.zfill(14))
lot = _identifier(validate_lot)
region = _identifier(validate_region)
org_code = _identifier(validate_org_code)

def text(max_len: int = 500) -> Check:
    def check(value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise _bad(path, "must be a string")
        if not value.strip():
            raise _bad(path, "must not be empty")
        if len(value) > max_len:
            raise _bad(path, f"is {len(value)} characters long; at most {max_len} allowed")
        problem = forbidden_text(value)
        if problem:
            raise _bad(path, f"contains {problem}")
        return value

    return check


def integer(low: int, high: int, kind: Rejection = Rejection.BAD_FIELDS) -> Check:
    def check(value: Any, path: str) -> int:
        # bool is an int in Python but not a number in JSON.
        if not isinstance(value, int) or isinstance(value, bool):
            raise _bad(path, "must be an integer")
        if not low <= value <= high:
            raise Rejected(kind, f"{path} must be between {low} and {high}, not {value}")
        return value

    return check


quantity = integer(1, MAX_QUANTITY, Rejection.BAD_QUANTITY)
entry_index = integer(0, 2**53 - 1)


def one_of(*choices: str) -> Check:
    def check(value: Any, path: str) -> str:
        if value not in choices:
            raise _bad(path, f"must be one of {', '.join(choices)}, not {value!r}")
        return str(value)

    return check


# Times recur across a batch (one client signs many statements in the same second, and
# production and sampling dates repeat): remember the valid ones. A datetime is
# immutable, so sharing one is safe; refusals are not cached and keep their message.
_parse_time = lru_cache(maxsize=1 << 12)(parse_time)


def time(value: Any, path: str) -> datetime:
    if not isinstance(value, str):
        raise Rejected(Rejection.BAD_TIME, f"{path} must be an RFC 3339 UTC time string")
    try:
        return _parse_time(value)
    except Rejected as e:
        raise Rejected(Rejection.BAD_TIME, f"{path}: {e.detail}") from None


def _trusted_time(value: str) -> datetime:
    # Nearly every time is written in whole seconds (format_time), and slicing that
    # one form is several times cheaper than parse_time's regular expression.
    if len(value) == 20:
        return datetime(int(value[0:4]), int(value[5:7]), int(value[8:10]),
                        int(value[11:13]), int(value[14:16]), int(value[17:19]), tzinfo=UTC)
    return parse_time(value)


_converts(time, _trusted_time)


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def uuid_text(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise _bad(path, "must be a lowercase UUID such as 3f2b8c1e-9d4a-4e7b-8a21-5c6d7e8f9a0b")
    return value


_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")


def token(value: Any, path: str) -> str:
    """Identifiers chosen by clients (shipment and case ids, report numbers)."""
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise _bad(path, "must be 1-64 characters of letters, digits and . _ : / -")
    return value


_KEYID = re.compile(r"[0-9a-f]{64}")


def keyid(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _KEYID.fullmatch(value):
        raise _bad(path, "must be 64 lowercase hex digits")
    return value


def public_key(value: Any, path: str) -> bytes:
    if not isinstance(value, str):
        raise _bad(path, "must be base64 text")
    try:
        return decode_public_key(value)
    except Rejected as e:
        raise _bad(path, e.detail) from None


_converts(public_key, decode_public_key)


def list_of(item: Check, low: int = 0, high: int = MAX_LIST, unique: bool = False) -> Check:
    def check(value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise _bad(path, "must be a list")
        if not low <= len(value) <= high:
            raise _bad(path, f"must hold {low} to {high} items, not {len(value)}")
        out = [item(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if unique and len({repr(v) for v in out}) != len(out):
            raise _bad(path, "must not repeat an item")
        return out

    convert = _CONVERTS.get(item)
    if convert is not None:
        _converts(check, lambda value: [convert(v) for v in value])
    return check


@dataclass(frozen=True, eq=False)  # compared by identity: a key of _CONVERTS
class Fields:
    """The fields of one object: required and optional checks by name."""

    required: Mapping[str, Check]
    optional: Mapping[str, Check] = field(default_factory=dict)

    def __call__(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _bad(path, "must be an object")
        required, optional = self.required, self.optional
        out: dict[str, Any] = {}
        for name, check in required.items():
            if name not in value:
                raise _bad(path, f"missing field {name!r}")
            # _join(path, name), inlined: this runs for every field of every statement.
            out[name] = check(value[name], f"{path}.{name}" if path else name)
        # All required fields are there: any more are optional ones, or unknown.
        if len(value) > len(required):
            for name, v in value.items():
                if name in required:
                    continue
                optional_check = optional.get(name)
                if optional_check is None:
                    raise _bad(path, f"unknown field {name!r}")
                # An optional field may be given as null; it then means "not given".
                out[name] = None if v is None else optional_check(v, _join(path, name))
        for name in optional:
            out.setdefault(name, None)
        return out

    @cached_property
    def _conversions(self) -> tuple[tuple[str, Convert], ...]:
        checks = {**self.required, **self.optional}
        return tuple((name, _CONVERTS[c]) for name, c in checks.items() if c in _CONVERTS)

    def trusted(self, value: dict[str, Any]) -> dict[str, Any]:
        """The object as `self(value, path)` returns it, for a value known to pass."""
        if not self.required.keys() <= value.keys():
            raise KeyError(f"missing one of the fields {', '.join(self.required)}")
        out = dict(value)
        for name, convert in self._conversions:
            v = out.get(name)
            if v is not None:
                out[name] = convert(v)
        for name in self.optional:
            out.setdefault(name, None)
        return out

    def __post_init__(self) -> None:
        _converts(self, self.trusted)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


batch_ref = Fields({"gtin": gtin, "lot": lot})
refs = list_of(entry_index)

TYPES: dict[str, Fields] = {
    T.ORG_REGISTERED: Fields(
        {
            "uscc": uscc,
            "name": text(200),
            "roles": list_of(one_of(*ROLES), 1, len(ROLES), unique=True),
            "region": region,
        },
        {"legacy_code": org_code},
    ),
    T.KEY_REGISTERED: Fields({"org": uscc, "public_key": public_key}, {"valid_from": time}),
    T.KEY_REVOKED: Fields(
        {"org": uscc, "keyid": keyid, "reason": text(), "revoked_at": time}
    ),
    T.BATCH_PRODUCED: Fields(
        {
            "gtin": gtin,
            "lot": lot,
            "product": text(200),
            "category": one_of(*CATEGORIES),
            "quantity": quantity,
            "unit": text(20),
            "produced_at": time,
            "standard": text(100),
            "inputs": list_of(Fields({"gtin": gtin, "lot": lot, "quantity": quantity}), 0, 100),
        },
        {"expires_at": time},
    ),
    T.BATCH_SHIPPED: Fields(
        {"gtin": gtin, "lot": lot, "quantity": quantity, "to": uscc, "shipment": token}
    ),
    T.BATCH_RECEIVED: Fields({"shipment": token, "quantity": quantity}),
    T.CHECK_RECORDED: Fields(
        {
            "gtin": gtin,
            "lot": lot,
            "subject": uscc,
            "kind": one_of(*CHECK_KINDS),
            "stage": one_of(*STAGES),
            "sampled_at": time,
            "standard": text(100),
            "items": list_of(
                Fields(
                    {
                        "name": text(200),
                        "value": text(50),
                        "limit": text(50),
                        "unit": text(20),
                        "verdict": one_of(*VERDICTS),
                    }
                ),
                1,
                200,
            ),
            "verdict": one_of(*VERDICTS),
            "report_no": token,
        }
    ),
    T.RECALL_ISSUED: Fields(
        {"gtin": gtin, "lots": list_of(lot, 1, MAX_LIST, unique=True), "reason": text(),
         "level": integer(1, 3)}
    ),
    T.CREDIT_ADJUSTED: Fields(
        {"org": uscc, "delta": integer(-1000, 1000), "reason": text(), "basis": text(),
         "refs": refs}
    ),
    T.BLACKLIST_ADDED: Fields(
        {"org": uscc, "reason": text(), "basis": text(), "refs": refs}, {"until": time}
    ),
    T.BLACKLIST_REMOVED: Fields({"org": uscc, "reason": text(), "refs": refs}),
    T.AWARD_GRANTED: Fields({"org": uscc, "title": text(200), "valid_until": time}),
    T.CASE_OPENED: Fields(
        {
            "case": token,
            "respondent": uscc,
            "batches": list_of(batch_ref, 0, 100),
            "summary": text(2000),
            "channel": token,
        }
    ),
    T.CASE_EVIDENCE: Fields({"case": token, "refs": refs, "note": text(2000)}),
    T.CASE_RESOLVED: Fields(
        {"case": token, "finding": one_of(*FINDINGS), "summary": text(2000), "refs": refs}
    ),
    T.CORRECTION: Fields(
        {"corrects": entry_index, "reason": text(), "replacement": lambda v, p: v}
    ),
}

COMMON = ("type", "id", "by", "issued_at")


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement whose fields have been checked; `body` holds the type's fields."""

    type: str
    id: str
    by: str
    issued_at: datetime
    body: dict[str, Any]
    replacement: Statement | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its fields, rebuilt by __init__: the audit's workers send tens of
        # thousands a second, and a slotted dataclass's own way costs twice as much.
        return Statement, (self.type, self.id, self.by, self.issued_at, self.body,
                           self.replacement)


def parse_statement(obj: Any, path: str = "", *, trusted: bool = False) -> Statement:
    """Check a parsed payload against its type's fields. Raises Rejected.

    `trusted=True` is for a statement the ledger already checked when it recorded it
    (and that `qledger audit` checks again): it builds the same Statement from the
    same field table, converting values (GTIN-14, times, keys) without checking
    them. A value that would fail a check is not caught then; a missing field or
    unknown type still raises (KeyError, Rejected)."""
    if trusted:
        return _parse_trusted(obj)
    if not isinstance(obj, dict):
        raise _bad(path or "statement", "must be a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in TYPES:
        raise Rejected(
            Rejection.UNKNOWN_TYPE,
            f"{_join(path, 'type')}: unknown statement type {kind!r}",
        )
    for name in COMMON:
        if name not in obj:
            raise _bad(path, f"missing field {name!r}")
    statement_id = uuid_text(obj["id"], _join(path, "id"))
    by = uscc(obj["by"], _join(path, "by"))
    issued_at = time(obj["issued_at"], _join(path, "issued_at"))
    fields = {k: v for k, v in obj.items() if k not in COMMON}
    body = TYPES[kind](fields, path)
    replacement = None
    if kind == T.CORRECTION and body["replacement"] is not None:
        # A replacement is a whole statement of the corrected type; it is checked
        # here for shape, and against the corrected entry when the rules run.
        replacement = parse_statement(body["replacement"], _join(path, "replacement"))
    return Statement(kind, statement_id, by, issued_at, body, replacement)


def _parse_trusted(obj: dict[str, Any]) -> Statement:
    kind = obj["type"]
    fields = TYPES.get(kind)
    if fields is None:
        raise Rejected(Rejection.UNKNOWN_TYPE, f"type: unknown statement type {kind!r}")
    body = fields.trusted({k: v for k, v in obj.items() if k not in COMMON})
    replacement = None
    if kind == T.CORRECTION and body["replacement"] is not None:
        replacement = _parse_trusted(body["replacement"])
    return Statement(kind, obj["id"], obj["by"], _trusted_time(obj["issued_at"]), body,
                     replacement)
