"""A case's rows as CSV (RFC 4180), times kept as the RFC 3339 text of the log.

Free text can hold anything a signer typed, so text that a spreadsheet would take for a
formula is neutralised (OWASP "CSV injection"): it gets a leading apostrophe wherever a
delimiter of any locale could make a cell begin.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from typing import Any

from ledger.text import scrub
from traceability.exports.rows import COLUMNS, Row

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"

# A cell starting with one of these is a formula (or starts one) in Excel, LibreOffice
# and Google Sheets; tab and carriage return can smuggle one past a naive check, and
# East Asian input methods type the full-width forms, which Excel takes as well.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# Where a cell may begin once the file is split on another delimiter than ours (Excel
# in many European locales splits on ";"; others on tab or "|"), or on a line break:
# a formula start after any of these, or after spaces at the very start, is neutralised.
_FORMULA_ANYWHERE = re.compile(
    "(^|[,;\t|\r\n])([ \"]*)([" + re.escape("".join(FORMULA_START[:4] + FORMULA_START[6:])) + "])")


def neutralise(value: Any) -> Any:
    """A text cell that a spreadsheet would read as a formula, made plain text by an
    apostrophe before the formula's start (what Excel itself shows for text typed that
    way), wherever a delimiter of any locale could make a cell begin; text that free text
    may not hold is replaced (ledger.text.scrub); other values unchanged."""
    if not isinstance(value, str):
        return value
    value = scrub(value)
    if value.startswith(("\t", "\r")):
        value = "'" + value
    return _FORMULA_ANYWHERE.sub(r"\1\2'\3", value)


def to_csv(rows: Iterable[Row]) -> str:
    """RFC 4180: a header row, CRLF line ends, fields quoted where needed. Times stay RFC 3339
    text; an empty quantity is an empty field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(["" if v is None else neutralise(v) for v in row.cells()])
    return out.getvalue()


def to_csv_bytes(rows: Iterable[Row]) -> bytes:
    """UTF-8 with a byte order mark: without it Excel reads Chinese text as the local code page."""
    return to_csv(rows).encode("utf-8-sig")
