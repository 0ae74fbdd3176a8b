"""A case's rows as XLSX (Office Open XML, written by openpyxl): times as Excel
date-times in UTC, to sort and filter by; every text cell a string cell, which Excel
never evaluates as a formula.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from ledger.errors import LedgerError
from ledger.text import scrub
from ledger.timefmt import parse_time
from traceability.exports.rows import COLUMNS, TIME_COLUMNS, Row

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

_TIME_FORMAT = "yyyy-mm-dd hh:mm:ss.000"
_MAX_WIDTH = 60


def to_xlsx(rows: Iterable[Row], title: str = "entries") -> bytes:
    """One sheet: the header row frozen, an autofilter over the whole range, widths fitted
    to the text. Index and quantity are numbers; the two times are Excel date-times in UTC
    (Excel has no time zones; the headers say UTC); codes (USCC, GTIN, region, lot) are
    text, so no leading zero is lost. Every text cell is stored as a string, never a formula.

    Written in openpyxl's write-only mode, which streams rows (the ordinary mode slows
    down with every row added); widths are therefore measured before the first row."""
    headers = [f"{c} (UTC)" if c in TIME_COLUMNS else c for c in COLUMNS]
    times = [COLUMNS.index(c) for c in TIME_COLUMNS]
    table: list[list[Any]] = []
    for row in rows:
        values = list(row.cells())
        for i in times:
            values[i] = _excel_time(values[i])
        table.append(values)
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title[:31])  # Excel's limit on sheet names
    for i, width in enumerate(_widths(headers, table), start=1):
        sheet.column_dimensions[get_column_letter(i)].width = min(width + 2, _MAX_WIDTH)
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(COLUMNS))}{len(table) + 1}"
    sheet.append([_cell(sheet, h, bold=True) for h in headers])
    for values in table:
        sheet.append([_cell(sheet, v) for v in values])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _cell(sheet: Any, value: Any, bold: bool = False) -> WriteOnlyCell:
    if isinstance(value, str):
        value = scrub(value)  # XML (and so XLSX) cannot hold C0 controls, U+FFFE, U+FFFF
    cell = WriteOnlyCell(sheet, value=value)
    if isinstance(value, str):
        # openpyxl takes text starting with "=" for a formula; a string cell is only text.
        cell.data_type = "s"
    elif isinstance(value, datetime):
        cell.number_format = _TIME_FORMAT
    if bold:
        cell.font = Font(bold=True)
    return cell


def _widths(headers: list[str], table: list[list[Any]]) -> list[int]:
    widths = [_width(h) for h in headers]
    for values in table:
        for i, v in enumerate(values):
            if isinstance(v, datetime):
                shown = len(_TIME_FORMAT)
            elif v is None:
                continue
            else:
                shown = _width(str(v))
            widths[i] = max(widths[i], shown)
    return widths


def _excel_time(text: str) -> datetime | str:
    """A naive UTC datetime for Excel, or the text itself when it is not a valid time."""
    try:
        return parse_time(text).astimezone(UTC).replace(tzinfo=None)
    except (LedgerError, ValueError):
        return text


def _width(text: str) -> int:
    # Chinese characters take two columns of a fixed-width font.
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)
