"""Free text (EVENTS.md "Roles"): what a statement's names, reasons and notes may hold,
and how an exporter shows text recorded before that rule.

Unicode without control characters (C0, C1, and DEL), noncharacters, unpaired
surrogates, or bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069).
Each of these either makes an export ill-formed (XML 1.0, and so XLSX and SVG, cannot
hold C0 controls, U+FFFE or U+FFFF; a lone surrogate is not UTF-8) or lets text read
differently from what was signed (U+202E shows "gpj.exe" as "exe.jpg").
"""

from __future__ import annotations

import re

__all__ = ["forbidden_text", "scrub"]

_FORBIDDEN = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069\ufdd0-\ufdef"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17))
    + "]"
)
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

REPLACEMENT = "\ufffd"


def forbidden_text(value: str) -> str | None:
    """What the first character free text may not hold is, and where, or None."""
    # Every forbidden character is "not printable" to Python (Cc, Cf, Cs, Cn), and
    # isprintable() runs in C: most text (Chinese names, ASCII codes) needs no regex.
    if value.isprintable():
        return None
    found = _FORBIDDEN.search(value)
    if found is None:
        return None
    char = found.group()
    if char in _BIDI:
        kind = "a bidirectional override or isolate"
    elif "\ud800" <= char <= "\udfff":
        kind = "an unpaired surrogate"
    elif ord(char) <= 0x9F:
        kind = "a control character"
    else:
        kind = "a noncharacter"
    return f"{kind} (U+{ord(char):04X}) at position {found.start()}"


def scrub(value: str) -> str:
    """`value` with every character free text may not hold replaced by U+FFFD, visibly:
    for exporters showing entries recorded before the rule (or by another ledger), so
    that their XML stays well formed and no override reorders what a reader sees."""
    if value.isprintable() or not _FORBIDDEN.search(value):
        return value
    return _FORBIDDEN.sub(REPLACEMENT, value)
