"""Canonical byte forms: the JSON Canonicalization Scheme (strict base64 is ledger/b64.py).

Standards followed:

* RFC 8785 — JSON Canonicalization Scheme (JCS). A statement's payload must be
  exactly JCS(statement), so that a statement has one byte form and one hash.
* RFC 7493 — I-JSON, which JCS builds on: no duplicate member names, no lone
  surrogates, integers only within ±(2^53 − 1) to stay exact as IEEE 754 doubles.

Statements allow integers only, nest at most `MAX_DEPTH` levels, and are parsed
by `parse_statement_json`; `parse_canonical_statement` additionally requires the
bytes to be exactly their canonical form. Every refusal raises `Rejected`.
"""

from __future__ import annotations

import json
import json.encoder
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any, NoReturn

import rfc8785

from ledger.errors import Rejected, Rejection

__all__ = [
    "MAX_DEPTH",
    "MAX_SAFE_INTEGER",
    "canonical_bytes",
    "parse_canonical_statement",
    "parse_statement_json",
]

MAX_SAFE_INTEGER = 2**53 - 1
"""Largest integer magnitude in a statement (I-JSON, RFC 7493 §2.2)."""

MAX_DEPTH = 16
"""Deepest nesting of objects and arrays in a statement; the statement object itself is level 1."""

# Generic values given to `canonical_bytes` (not parsed statements) may hold a
# statement inside wrappers, so the bound is looser; it exists to stop cycles and
# stack exhaustion in the reference implementation, which recurses.
_WALK_LIMIT = 64

# ---------------------------------------------------------------------------
# JCS serialization
# ---------------------------------------------------------------------------
#
# Fast path: Python's JSON encoder with these options produces exactly JCS for
# the values `_needs_reference` lets through, namely values built from dict
# (keys of exact type str), list, tuple, str, int with |n| <= 2^53 - 1, bool and
# None, where no object key contains a code point >= U+E000. Why, case by case:
#
# * null/true/false: identical literals. Separators: neither emits whitespace.
# * Integers: JCS writes numbers with ECMAScript Number::toString (RFC 8785
#   §3.2.2.3). For an integer-valued double below 10^21 that is its decimal
#   digits with a leading '-' if negative, which is Python's int repr; within
#   ±(2^53 - 1) the double is exact. Floats never take the fast path: Python's
#   repr differs from ECMAScript's (1e+16 vs 10000000000000000, 1e-07 vs
#   1e-7), so they go to the reference implementation.
# * Strings (RFC 8785 §3.2.2.2): JCS escapes exactly '"', '\' and U+0000-U+001F,
#   as \b \t \n \f \r where those exist and \u00xx in lowercase hex otherwise,
#   and writes every other code point literally in UTF-8. With
#   ensure_ascii=False Python escapes exactly the same set (its pattern is
#   [\x00-\x1f\\"\b\f\n\r\t]) with the same short forms and lowercase \u00xx;
#   DEL, U+2028/U+2029 and all non-ASCII are literal in both.
# * Lone surrogates: JCS must refuse them (I-JSON). A Python str may hold a
#   surrogate code point; encoding the output to UTF-8 then fails, so the fast
#   path refuses exactly the strings the reference implementation refuses
#   (rfc8785 also encodes strictly), and no fallback is needed for them.
# * Property order (RFC 8785 §3.2.3): JCS sorts keys by UTF-16 code units,
#   Python by code points. Take two distinct keys; if one is a prefix of the
#   other both orders agree. Otherwise let a != b be the first differing code
#   points; the equal prefixes encode to equal UTF-16 prefixes. If a and b are
#   both below U+10000 each is one code unit of the same value: same order. If
#   both are at or above U+10000, surrogate-pair encoding is monotonic: same
#   order. If a >= U+10000 and b < U+10000, a's first unit lies in D800-DBFF:
#   when b < U+D800 both orders put b first; when b >= U+E000 UTF-16 puts a
#   first but code points put b first. That is the only disagreement, and it
#   needs a key with a code point >= U+E000 (both an astral one and one in
#   E000-FFFF, in fact; the simpler test costs nothing in practice because
#   real keys are ASCII). Such values go to the reference implementation.
#
# The fast path costs about a quarter of rfc8785.dumps; the hypothesis test in
# tests/test_crypto_vectors.py checks it against rfc8785 on arbitrary values.

_ENCODER = json.JSONEncoder(
    ensure_ascii=False,
    sort_keys=True,
    separators=(",", ":"),
    allow_nan=False,
    # Values reach the encoder only after a bounded walk (or a bounded parse),
    # so a cycle cannot get here; skipping the check saves its bookkeeping.
    check_circular=False,
)

# JSONEncoder.encode builds a new C encoder (and a float-formatting closure) on every
# call; the writer encodes every statement once to check its canonical form, so one C
# encoder with the same options is built here and reused. Same output: it is exactly
# what _ENCODER.encode runs for a one-shot encode without indent.
_C_ENCODER = (
    None
    if json.encoder.c_make_encoder is None
    else json.encoder.c_make_encoder(
        None, _ENCODER.default, json.encoder.encode_basestring, None,
        _ENCODER.key_separator, _ENCODER.item_separator, True, False, False,
    )
)


def _encode(obj: Any) -> str:
    """_ENCODER.encode(obj), with the reused C encoder when there is one."""
    if _C_ENCODER is None or type(obj) is str:
        return _ENCODER.encode(obj)
    return "".join(_C_ENCODER(obj, 0))


# Any code point at or above U+E000: BMP private use and up, or astral.
_HIGH = re.compile("[\ue000-\U0010ffff]")


def _has_high_char(key: str) -> bool:
    return not key.isascii() and _HIGH.search(key) is not None


def _refuse(detail: str) -> NoReturn:
    raise Rejected(Rejection.BAD_JSON, detail)


def _check_key(key: object) -> bool:
    """Refuse non-string keys; say whether this key rules out the fast path."""
    if type(key) is str:
        return _has_high_char(key)
    if isinstance(key, str):
        return True  # a str subclass: let the reference implementation decide
    _refuse(f"object keys must be strings, found {type(key).__name__} {key!r}")


def _check_int(value: int) -> None:
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        _refuse(f"integer {value} is outside ±(2^53 − 1), the exact range of JSON numbers (I-JSON)")


def _needs_reference(obj: Any) -> bool:
    """Check `obj` is a JSON value; say whether the fast path could differ from JCS.

    Iterative, one nesting level at a time, so deep or cyclic input meets the
    `_WALK_LIMIT` instead of the interpreter's recursion limit.
    """
    slow = False
    level: list[Any] = [obj]
    depth = 0
    while level:
        depth += 1
        if depth > _WALK_LIMIT:
            _refuse(f"value nests deeper than {_WALK_LIMIT} levels (or refers to itself)")
        below: list[Any] = []
        for value in level:
            kind = type(value)
            if kind is str or kind is bool or value is None:
                continue
            if kind is int:
                _check_int(value)
            elif kind is dict:
                for key in value:
                    if _check_key(key):
                        slow = True
                below.extend(value.values())
            elif kind is list or kind is tuple:
                below.extend(value)
            else:
                # Floats, and subclasses of the JSON types (IntEnum, StrEnum,
                # OrderedDict …): rfc8785 gives them their JCS form, or refuses.
                slow = True
                if isinstance(value, dict):
                    for key in value:
                        _check_key(key)
                    below.extend(value.values())
                elif isinstance(value, (list, tuple)):
                    below.extend(value)
                elif isinstance(value, int):
                    _check_int(value)
                elif not isinstance(value, (str, float)):
                    _refuse(f"cannot canonicalize a value of type {kind.__name__}")
        level = below
    return slow


def _reference(obj: Any) -> bytes:
    try:
        return rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError as exc:
        _refuse(f"value has no canonical JSON form: {exc}")
    except UnicodeEncodeError:
        _refuse("a string holds a lone surrogate, which has no canonical JSON form")


def _fast(obj: Any) -> bytes:
    """Python's encoder, configured to agree with JCS on the domain argued above."""
    try:
        return _encode(obj).encode("utf-8")
    except UnicodeEncodeError:
        _refuse("a string holds a lone surrogate, which has no canonical JSON form")


def canonical_bytes(obj: Any) -> bytes:
    """JCS (RFC 8785) bytes of a JSON value.

    Raises Rejected(BAD_JSON) for values with no canonical form: non-string
    keys, integers beyond ±(2^53 − 1), NaN or infinities, lone surrogates,
    non-JSON types, nesting beyond 64 levels or cycles.
    """
    if _needs_reference(obj):
        return _reference(obj)
    return _fast(obj)


# ---------------------------------------------------------------------------
# Statement parsing
# ---------------------------------------------------------------------------


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # Only on refusal: find which key repeats, to name it.
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                _refuse(f"duplicate key {key!r} in an object (I-JSON forbids them)")
            seen.add(key)
    return obj


def _integer(text: str) -> int:
    # 2^53 - 1 has 16 digits: shorter literals are always in range, and the
    # length test also keeps int() away from absurdly long digit strings.
    value_ok = len(text.lstrip("-")) < 16 or (
        len(text) <= 17 and -MAX_SAFE_INTEGER <= int(text) <= MAX_SAFE_INTEGER
    )
    if not value_ok:
        shown = text if len(text) <= 24 else text[:20] + "…"
        _refuse(f"integer {shown} is outside ±(2^53 − 1), the exact range of JSON numbers")
    return int(text)


def _float(text: str) -> NoReturn:
    shown = text if len(text) <= 24 else text[:20] + "…"
    _refuse(f"numbers must be integers, found {shown}")


def _constant(text: str) -> NoReturn:
    _refuse(f"{text} is not JSON (numbers must be integers)")


# The C scanner calls parse_float/parse_constant only when such a literal
# occurs, so they cost nothing on valid statements; parse_int costs a Python
# call per integer, which statements have few of.
_STATEMENT_DECODER = json.JSONDecoder(
    object_pairs_hook=_object,
    parse_float=_float,
    parse_int=_integer,
    parse_constant=_constant,
)

# A JSON string literal (escapes included), to blank out before counting
# brackets. Possessive quantifiers keep it linear on unterminated strings.
_STRING_LITERAL = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _check_depth(text: str) -> None:
    """Refuse nesting beyond MAX_DEPTH before the recursive parser sees it."""
    deepest = nesting_depth(text, MAX_DEPTH)
    if deepest > MAX_DEPTH:
        _refuse(f"statement nests {deepest} levels deep; at most {MAX_DEPTH} are allowed")


def nesting_depth(text: str, limit: int) -> int:
    """How deep the JSON `text` nests, or any number <= `limit` when it cannot exceed it;
    computed without recursion, so that any depth can be refused before parsing."""
    # Depth can never exceed the number of opening brackets (those inside
    # strings included), so most texts stop here for two C-level counts.
    if text.count("[") + text.count("{") <= limit:
        return 0
    brackets = _NOT_BRACKET.sub("", _STRING_LITERAL.sub("", text))
    # Running depth over the brackets, computed in C: linear, no recursion.
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


def json_kind(value: object) -> str:
    """How a value reads in an error message: 'a string', 'an array', ..."""
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    return "an object"


def _decode_text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        _refuse(f"payload is not UTF-8: invalid byte at offset {exc.start}")


def _parse_text(text: str) -> dict[str, Any]:
    _check_depth(text)
    try:
        value = _STATEMENT_DECODER.decode(text)
    except json.JSONDecodeError as exc:
        offset = len(text[: exc.pos].encode("utf-8"))
        _refuse(f"payload is not valid JSON: {exc.msg} at byte {offset}")
    except RecursionError:
        # Unreachable after _check_depth on valid input; kept as a safety net.
        _refuse(f"statement nests more than {MAX_DEPTH} levels deep")
    if type(value) is not dict:
        _refuse(f"a statement must be a JSON object, not {json_kind(value)}")
    return value


def parse_statement_json(payload: bytes) -> dict[str, Any]:
    """Parse statement bytes under the ledger's JSON rules (PROTOCOL.md §1).

    UTF-8 only; one JSON object; integers only, within ±(2^53 − 1); no NaN or
    Infinity; no duplicate keys; at most MAX_DEPTH levels of nesting.
    Raises Rejected(BAD_JSON) naming the problem (and the byte offset for
    syntax errors).
    """
    return _parse_text(_decode_text(payload))


def _has_high_key(statement: dict[str, Any]) -> bool:
    stack: list[Any] = [statement]
    while stack:
        value = stack.pop()
        if type(value) is dict:
            for key in value:
                if _has_high_char(key):
                    return True
            stack.extend(value.values())
        elif type(value) is list:
            stack.extend(value)
    return False


def parse_canonical_statement(payload: bytes) -> dict[str, Any]:
    """`parse_statement_json`, then require payload == JCS(statement).

    Raises Rejected(BAD_JSON) as `parse_statement_json` does, and
    Rejected(NON_CANONICAL) naming the first differing byte when the payload
    is valid but not in canonical form.
    """
    text = _decode_text(payload)
    _check_depth(text)
    # Optimistic parse for the ingest hot path: the scanner without the
    # duplicate-key hook, called directly (no whitespace skipping; canonical
    # text has none). Float, constant and integer rules still apply through
    # their hooks. Duplicate keys cannot slip through: the parsed dict holds
    # each key once, so its canonical form cannot equal a payload naming a key
    # twice, and the refusal path below re-parses strictly to name them.
    try:
        statement, end = _SCAN(text, 0)
    except (StopIteration, json.JSONDecodeError, RecursionError):
        statement, end = None, -1
    if end == len(text) and type(statement) is dict and _is_canonical(statement, text, payload):
        return statement
    # Refusal path: the strict parser reports JSON problems with their
    # position; if there are none the payload is merely not canonical.
    raise _non_canonical(_parse_text(text), payload)


# scan_once is the C scanner the decoder builds in __init__; typeshed omits it.
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder(
    parse_float=_float,
    parse_int=_integer,
    parse_constant=_constant,
).scan_once  # type: ignore[attr-defined]


def _is_canonical(statement: dict[str, Any], text: str, payload: bytes) -> bool:
    # The parse enforced everything _needs_reference checks except the code
    # points of keys. The fast path can only misorder keys of one object when
    # one has an astral code point and another one in U+E000-U+FFFF (see the
    # argument above), so the payload must then hold both raw, in UTF-8: a
    # lead byte F0-F4 and one of EE/EF (lead bytes never occur elsewhere).
    # Could such keys arrive escaped instead (\uXXXX)? Then the payload is
    # not canonical, and also not the fast encoder's output, which never
    # escapes a code point >= U+0020: the comparison below fails, correctly.
    if _may_misorder(payload) and _has_high_key(statement):
        return _reference_or_none(statement) == payload
    # Comparing str to str spares encoding: the text came from strict UTF-8,
    # so equal strings mean equal bytes. A lone surrogate (only possible via
    # a \ud8xx escape) makes them differ, as it must.
    return _encode(statement) == text


def _may_misorder(payload: bytes) -> bool:
    # Cheapest test first: ASCII is the common case, and CJK text (lead
    # bytes E3-E9) rarely holds EE/EF (private use, full-width forms).
    return (
        not payload.isascii()
        and (b"\xee" in payload or b"\xef" in payload)
        and any(lead in payload for lead in (b"\xf0", b"\xf1", b"\xf2", b"\xf3", b"\xf4"))
    )


def _reference_or_none(statement: dict[str, Any]) -> bytes | None:
    try:
        return _reference(statement)
    except Rejected:
        return None


def _non_canonical(statement: dict[str, Any], payload: bytes) -> Rejected:
    """Explain a non-canonical payload (refusal path only, so cost is no concern)."""
    try:
        expected = canonical_bytes(statement)
    except Rejected:
        return Rejected(
            Rejection.NON_CANONICAL,
            "payload escapes a lone surrogate (\\ud800-\\udfff), which has no canonical form",
        )
    at = next(
        (i for i, (a, b) in enumerate(zip(expected, payload)) if a != b),
        min(len(expected), len(payload)),
    )
    return Rejected(
        Rejection.NON_CANONICAL,
        f"payload is not the RFC 8785 canonical form of its statement: first difference "
        f"at byte {at} (expected {expected[at:at + 12]!r}, found {payload[at:at + 12]!r})",
    )
