"""Strict base64: RFC 4648 §4 (the standard alphabet, with padding) in its one canonical
form (§3.5: the unused bits of the last character are zero), so that every value has
exactly one accepted spelling, as every byte form of the ledger must.
"""

from __future__ import annotations

import binascii

from ledger.errors import Rejected, Rejection

# Base64 digits whose value has its low four (two) bits zero: the last digit of a group
# encoding one (two) bytes, as b64encode writes it.
_LOW_FOUR_BITS_ZERO = frozenset("AQgw")
_LOW_TWO_BITS_ZERO = frozenset("AEIMQUYcgkosw048")
_BASE64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def b64encode(data: bytes) -> str:
    """Padded standard base64 of `data`, as text."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def b64decode(text: str, what: str) -> bytes:
    """Decode padded standard base64 that is in its one canonical form.

    Refuses (Rejected(BAD_BASE64), the message starting with `what`) the
    URL-safe alphabet, missing or extra padding, whitespace, and non-zero
    unused bits — every text for which b64encode(result) != text — so each
    value has exactly one accepted spelling.
    """
    try:
        raw = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError, TypeError):
        raise Rejected(
            Rejection.BAD_BASE64, f"{what} is not padded standard base64: {_base64_problem(text)}"
        ) from None
    # strict_mode still accepts non-zero unused bits ("QR==" for "QQ==") and
    # surplus padding ("QUJD===="). What it accepted is the alphabet with padding
    # only at the end, so b64encode(raw) == text exactly when the length is that of
    # the encoding and the last digit before the padding leaves the unused bits zero
    # (checked without re-encoding: for a payload that was a fifth of parsing it).
    size = len(raw)
    tail = size % 3
    if (
        len(text) != (size + 2) // 3 * 4
        or (tail == 1 and text[-3] not in _LOW_FOUR_BITS_ZERO)
        or (tail == 2 and text[-2] not in _LOW_TWO_BITS_ZERO)
    ):
        raise Rejected(
            Rejection.BAD_BASE64,
            f"{what} is not canonical base64: {_base64_problem(text)}",
        )
    return raw


def _base64_problem(text: object) -> str:
    if not isinstance(text, str):
        return f"expected a string, found {type(text).__name__}"
    for i, ch in enumerate(text):
        if ch not in _BASE64_ALPHABET:
            if ch in "-_":
                return f"{ch!r} at position {i} is from the URL-safe alphabet"
            if ch.isspace():
                return f"whitespace at position {i}"
            return f"{ch!r} at position {i} is not a base64 character"
    if len(text) % 4:
        return f"length {len(text)} is not a multiple of 4 (padding missing?)"
    body = text.rstrip("=")
    if "=" in body:
        return f"padding '=' at position {body.index('=')} inside the data"
    if len(text) - len(body) > 2:
        return "more than two padding characters"
    return "the unused bits of the last character are not zero"
