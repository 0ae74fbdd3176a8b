"""Timestamps in statements: RFC 3339 §5.6 `date-time`, restricted to UTC with 'Z'.

Statements are signed bytes, so times have one written form: `format_time`
writes `YYYY-MM-DDTHH:MM:SSZ` (whole seconds). `parse_time` also reads optional
fractional seconds, but nothing else RFC 3339 permits: no numeric offsets (UTC
is written 'Z', never '+00:00'), no lowercase 't'/'z', no leap second :60
(Python's datetime cannot hold it). Problems raise Rejected(BAD_TIME).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from ledger.errors import Rejected, Rejection

__all__ = ["format_time", "parse_time"]

# [0-9], not \d: \d also matches non-ASCII digits such as '٣'.
_UTC_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?Z"
)


def format_time(dt: datetime) -> str:
    """`dt` in UTC as `YYYY-MM-DDTHH:MM:SSZ`, dropping fractions of a second.

    Naive datetimes are refused (ValueError): their zone is a guess.
    """
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("cannot format a naive datetime; give it a timezone, e.g. timezone.utc")
    u = dt.astimezone(UTC)
    # Explicit widths: strftime('%Y') does not zero-pad years below 1000 on every platform.
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}Z"


def parse_time(s: str) -> datetime:
    """Read `YYYY-MM-DDTHH:MM:SS[.fraction]Z` into an aware UTC datetime.

    Fractions beyond microseconds (up to 9 digits) are truncated.
    """
    if not isinstance(s, str):
        raise Rejected(Rejection.BAD_TIME, f"a time must be a string, not {type(s).__name__}")
    shown = s if len(s) <= 40 else s[:37] + "…"
    match = _UTC_TIME.fullmatch(s)
    if match is None:
        raise Rejected(
            Rejection.BAD_TIME,
            f"{shown!r} is not a UTC time of the form YYYY-MM-DDTHH:MM:SSZ (RFC 3339)",
        )
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if second == 60:
        raise Rejected(Rejection.BAD_TIME, f"{shown!r} is a leap second, which is not supported")
    fraction = match.group(7) or ""
    try:
        return datetime(
            year, month, day, hour, minute, second,
            int(fraction[:6].ljust(6, "0")),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise Rejected(Rejection.BAD_TIME, f"{shown!r} is not a valid time: {exc}") from None
