"""Validation of the identifiers that appear in statements.

Standards followed:

* GB 32100-2015 — Unified Social Credit Code (USCC, 统一社会信用代码) for legal
  persons and other organizations; its check character follows GB/T 17710.
* GB 11714-1997 — legacy 9-character organization code (组织机构代码).
* GS1 General Specifications — GTIN-8/12/13/14 and the mod-10 check digit
  (section 7.9), and AI (10) batch/lot over GS1 AI encodable character set 82
  (Figure 7.11-1).
* GB/T 2260 — codes for the administrative divisions of the People's Republic
  of China (province-level prefixes only).

Statements are signed bytes, so each identifier has exactly one accepted byte
form: nothing is stripped, case-folded or de-hyphenated here. Validators return
the value unchanged, except `normalize_gtin`, whose purpose is to produce the
canonical GTIN-14. Every problem raises
`Rejected(Rejection.BAD_IDENTIFIER, ...)` with a one-line message about the
value only (callers add the field name), e.g.
``USCC 91350100M000100Y44 has a wrong check digit (expected 3)``.
Character positions in messages are 1-based, as people count them.
"""

from __future__ import annotations

import unicodedata

from stdnum import ean
from stdnum.cn import uscc

from ledger.errors import Rejected, Rejection

__all__ = [
    "GS1_CHARSET_82",
    "gtin_check_digit",
    "normalize_gtin",
    "validate_gtin14",
    "validate_lot",
    "validate_org_code",
    "validate_region",
    "validate_uscc",
]

_DIGITS = "0123456789"
_DIGIT_SET = frozenset(_DIGITS)
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# GB 32100: 31 characters — digits and uppercase letters without I, O, Z, S, V
# (too easily confused with 1, 0, 2, 5, U). Same order as the standard's values.
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_FORBIDDEN = "IOZSV"

# GB 11714: body characters are digits and uppercase Latin letters (A=10 … Z=35).
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_VALUES = {c: i for i, c in enumerate(_DIGITS + _UPPER)}

# GS1 General Specifications, Figure 7.11-1: the 82 characters an AI value such
# as AI (10) may hold. Listed explicitly rather than derived from ASCII ranges
# so the set can be checked against the figure by eye.
GS1_CHARSET_82 = frozenset(
    "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
)
_LOT_MAX = 20  # AI (10) is X..20

# GB/T 2260 province-level divisions (first two digits of a division code),
# including 71 Taiwan, 81 Hong Kong and 82 Macao, which the standard lists.
_PROVINCES = frozenset(
    {
        "11", "12", "13", "14", "15",
        "21", "22", "23",
        "31", "32", "33", "34", "35", "36", "37",
        "41", "42", "43", "44", "45", "46",
        "50", "51", "52", "53", "54",
        "61", "62", "63", "64", "65",
        "71", "81", "82",
    }
)  # fmt: skip

_SHOW_MAX = 40  # longer values are cut in messages so one bad input cannot flood a log line


def _show(value: str) -> str:
    """The value as it may appear in a one-line message.

    Plain values are shown bare (as in the USCC example above); values that are
    empty, contain spaces or invisible characters are quoted with escapes so the
    reader can see what was actually sent.
    """
    cut = value[:_SHOW_MAX]
    if cut and all(c.isprintable() and not c.isspace() for c in cut):
        shown = cut
    else:
        shown = '"' + "".join(_escape(c) for c in cut) + '"'
    return shown + ("…" if len(value) > _SHOW_MAX else "")


def _escape(c: str) -> str:
    if c == '"' or c == "\\":
        return "\\" + c
    if c == " " or (c.isprintable() and not c.isspace()):
        return c
    return f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"


def _char(c: str) -> str:
    """A character named by code point, so look-alikes (Ｌ, А) are told apart from L, A."""
    name = unicodedata.name(c, "")
    return f"U+{ord(c):04X} ({name})" if name else f"U+{ord(c):04X}"


def _reject(detail: str) -> Rejected:
    return Rejected(Rejection.BAD_IDENTIFIER, detail)


def _require_text(kind: str, value: object) -> str:
    # Values arrive from decoded JSON; a number or null must not reach len()/iteration.
    if not isinstance(value, str):
        raise _reject(f"{kind} must be text, not {type(value).__name__}")
    return value


def _bad_char(kind: str, value: str, index: int, why: str) -> Rejected:
    return _reject(
        f"{kind} {_show(value)} contains {_char(value[index])} at position {index + 1}; {why}"
    )


def _first_not_in(value: str, allowed: frozenset[str]) -> int | None:
    # Every character allowed is the case of every valid identifier, so it is answered at
    # C speed; the position, for the error message, only when one is not.
    if allowed.issuperset(value):
        return None
    return next(i for i, c in enumerate(value) if c not in allowed)


# --- USCC (GB 32100-2015) ---------------------------------------------------


def validate_uscc(value: str) -> str:
    """Check a Unified Social Credit Code (GB 32100-2015); return it unchanged.

    Structure: 1 registration-authority character, 1 entity-type character,
    6-digit GB/T 2260 region (positions 3–8), 9-character subject identifier
    (positions 9–17), 1 check character.
    """
    kind = "USCC"
    value = _require_text(kind, value)
    if len(value) != 18:
        raise _reject(f"{kind} {_show(value)} has {len(value)} characters; a USCC has 18")
    for i, c in enumerate(value):
        if "a" <= c <= "z":
            raise _bad_char(kind, value, i, "USCCs are written in uppercase")
        if c in _USCC_FORBIDDEN:
            raise _bad_char(kind, value, i, "GB 32100 never uses the letters I, O, Z, S, V")
        if 2 <= i <= 7 and c not in _DIGITS:
            raise _bad_char(kind, value, i, "positions 3 to 8 are a region code and must be digits")
        if c not in _USCC_ALPHABET:
            raise _bad_char(
                kind, value, i, "a USCC has only digits and uppercase letters except I, O, Z, S, V"
            )
    # Why calc_check_digit and not uscc.validate(): validate() first runs
    # compact(), which strips spaces/hyphens and uppercases (we need one exact
    # byte form, checked above), and it requires positions 1–2 to be digits,
    # which GB 32100 does not: authorities code them with letters too (e.g. 'N'
    # for agriculture-registered rural collective economic organisations, 'Y'
    # for others). Everything validate() checks besides that is checked above.
    #
    # The embedded organization code (positions 9–17) is deliberately NOT
    # checked against GB 11714: python-stdnum does not check it either, and
    # codes issued after 2015 (notably to individual businesses and many new
    # companies, e.g. "MA…" segments) are not GB 11714 codes, so rejecting on
    # it would refuse real, valid USCCs.
    expected = uscc.calc_check_digit(value[:17])
    if value[17] != expected:
        raise _reject(f"{kind} {value} has a wrong check digit (expected {expected})")
    return value


# --- Organization code (GB 11714-1997) --------------------------------------


def _org_check_char(body: str) -> str:
    # Hand-written: python-stdnum has no GB 11714 module (stdnum.cn has only
    # ric and uscc). C9 = 11 - (Σ value·weight mod 11); 10 → 'X', 11 → '0'.
    remainder = 11 - sum(_ORG_VALUES[c] * w for c, w in zip(body, _ORG_WEIGHTS)) % 11
    return {10: "X", 11: "0"}.get(remainder, str(remainder))


def validate_org_code(value: str) -> str:
    """Check a legacy organization code (GB 11714-1997); return it unchanged.

    Only the 9-character form without the hyphen (``192203821``, not
    ``19220382-1``) is accepted, so each code has a single byte form.
    """
    kind = "organization code"
    value = _require_text(kind, value)
    if len(value) != 9:
        hint = ", written without the hyphen" if "-" in value else ""
        raise _reject(
            f"{kind} {_show(value)} has {len(value)} characters; an organization code has 9{hint}"
        )
    for i, c in enumerate(value):
        if "a" <= c <= "z":
            raise _bad_char(kind, value, i, "organization codes are written in uppercase")
        if i < 8 and c not in _ORG_VALUES:
            raise _bad_char(
                kind, value, i, "the first 8 characters are digits or uppercase letters"
            )
        if i == 8 and c not in _DIGITS + "X":
            raise _bad_char(kind, value, i, "the check character is a digit or X")
    expected = _org_check_char(value[:8])
    if value[8] != expected:
        raise _reject(f"{kind} {value} has a wrong check character (expected {expected})")
    return value


# --- GTIN (GS1) ---------------------------------------------------------------


def gtin_check_digit(body: str) -> str:
    """The GS1 mod-10 check digit for `body` (a GTIN without its last digit)."""
    kind = "GTIN body"
    body = _require_text(kind, body)
    bad = _first_not_in(body, _DIGIT_SET)
    if bad is not None:
        raise _bad_char(kind, body, bad, "it must be digits 0-9 only")
    if not body:
        raise _reject(f"{kind} is empty")
    return ean.calc_check_digit(body)


def _check_gtin(kind: str, value: str, lengths: tuple[int, ...], expected_len: str) -> str:
    value = _require_text(kind, value)
    # Our own ASCII digit test: str.isdigit() would let '４' or '٤' through, and
    # stdnum.ean.validate() would silently drop spaces and hyphens.
    bad = _first_not_in(value, _DIGIT_SET)
    if bad is not None:
        raise _bad_char(kind, value, bad, "a GTIN has digits 0-9 only")
    if len(value) not in lengths:
        raise _reject(f"{kind} {_show(value)} has {len(value)} digits; {expected_len}")
    expected = gtin_check_digit(value[:-1])
    if value[-1] != expected:
        raise _reject(f"{kind} {value} has a wrong check digit (expected {expected})")
    if not value.strip("0"):
        # Its check digit is valid (zeros weigh nothing), but no GS1 company prefix is
        # all zeros: it names no trade item, and scanners read it from blank labels.
        raise _reject(f"{kind} {value} is all zeros and names no trade item")
    return value


def normalize_gtin(value: str) -> str:
    """Check a GTIN-8, -12, -13 or -14 and return it as a GTIN-14.

    Left-padding with zeros keeps the check digit valid: GS1 weights run from
    the right, and zeros add nothing to the sum.
    """
    value = _check_gtin("GTIN", value, (8, 12, 13, 14), "a GTIN has 8, 12, 13 or 14")
    return value.zfill(14)


def validate_gtin14(value: str) -> str:
    """Check a GTIN in the 14-digit form stored in statements; return it unchanged."""
    return _check_gtin(
        "GTIN-14", value, (14,), "it must have 14 (pad shorter GTINs with leading zeros)"
    )


# --- Batch/lot (GS1 AI 10) ----------------------------------------------------


def validate_lot(value: str) -> str:
    """Check a batch/lot number as GS1 AI (10) allows it; return it unchanged.

    1 to 20 characters of GS1 AI encodable character set 82. Everything else —
    spaces, '#', control characters and Unicode look-alikes such as fullwidth
    or Cyrillic letters — is refused, since it cannot be carried in a GS1
    barcode and would make two lots that print alike compare unequal.
    """
    kind = "lot"
    value = _require_text(kind, value)
    if not value:
        raise _reject(f'{kind} "" is empty; a lot has 1 to {_LOT_MAX} characters')
    if len(value) > _LOT_MAX:
        raise _reject(
            f"{kind} {_show(value)} has {len(value)} characters; at most {_LOT_MAX} are allowed"
        )
    bad = _first_not_in(value, GS1_CHARSET_82)
    if bad is not None:
        raise _bad_char(kind, value, bad, "a lot may use only GS1 character set 82")
    return value


# --- Region (GB/T 2260) -------------------------------------------------------


def validate_region(value: str) -> str:
    """Check a 6-digit GB/T 2260 administrative division code; return it unchanged.

    Only the province-level prefix is checked: the list of lower divisions
    changes every year, and an old code stays meaningful in an old statement.
    """
    kind = "region code"
    value = _require_text(kind, value)
    bad = _first_not_in(value, _DIGIT_SET)
    if bad is not None:
        raise _bad_char(kind, value, bad, "a region code has digits 0-9 only")
    if len(value) != 6:
        raise _reject(f"{kind} {_show(value)} has {len(value)} digits; a region code has 6")
    if value[:2] not in _PROVINCES:
        raise _reject(
            f"{kind} {value} starts with {value[:2]}, which is not a GB/T 2260 province-level code"
        )
    return value
