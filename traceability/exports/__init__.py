"""The spreadsheet of a dispute case (DISPUTES.md, "Spreadsheet and picture"): one row per
entry with the key data elements an investigator sorts and filters by (who, what batch,
what happened, where, when, quantity, verdict, entry index, signer), as CSV (RFC 4180)
and XLSX (Office Open XML, written by openpyxl).

Rows show each statement as signed, read from the log itself; the views only supply
names, regions, units and the batch a shipment carried. Free text can hold anything a
signer typed, so text that a spreadsheet would take for a formula is neutralised
(OWASP "CSV injection"): in CSV it gets a leading apostrophe, in XLSX it is stored as a
string cell, which Excel never evaluates.

The short summary of each row is in Chinese (the default) or English; the column names
are fixed identifiers in either case, so scripts can rely on them. CSV keeps times as the
RFC 3339 text of the log; XLSX makes them Excel date-times in UTC, to sort and filter by.

The package: `rows` reads a case's entries into rows, `csv` and `xlsx` write them.
"""

from traceability.exports.csv import CSV_MEDIA_TYPE, FORMULA_START, neutralise, to_csv, to_csv_bytes
from traceability.exports.rows import COLUMNS, Lang, Row, case_rows, case_sheet
from traceability.exports.xlsx import XLSX_MEDIA_TYPE, to_xlsx

__all__ = [
    "COLUMNS", "CSV_MEDIA_TYPE", "FORMULA_START", "XLSX_MEDIA_TYPE", "Lang", "Row", "case_rows",
    "case_sheet", "neutralise", "to_csv", "to_csv_bytes", "to_xlsx",
]
