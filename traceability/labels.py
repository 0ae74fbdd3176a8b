"""Label sheets for a production run: A4 pages of labels, each with the QR code of the
batch's (or the item's) GS1 Digital Link URI and the GTIN, lot, serial and product name
as text, to print and stick on the packs.

A sheet is 3 × 8 labels of 64.7 × 35.1 mm inside 8 mm margins (most office printers
cannot print closer to the edge). The PDF is drawn with reportlab as vectors, so codes
stay sharp at any printer resolution; it may run to many pages. The SVG is one A4 page,
so it holds at most one sheet: a longer run is asked for as PDF, or page by page with
`serial_from`. The QR modules are drawn from qrcode's module matrix, not from its image
factories, because a sheet places many codes and text on one page.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from ledger.text import scrub

import qrcode
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

from ledger.errors import InvalidRequest
from traceability.qr import SERIAL_MAX, digital_link, validate_serial

MAX_LABELS = 1000
COLUMNS, ROWS = 3, 8
PER_PAGE = COLUMNS * ROWS
PAGE_W, PAGE_H = 210.0, 297.0  # mm
MARGIN = 8.0
LABEL_W = (PAGE_W - 2 * MARGIN) / COLUMNS
LABEL_H = (PAGE_H - 2 * MARGIN) / ROWS
QR_SIZE = LABEL_H - 3.0  # the code, quiet zone included, 1.5 mm inside the label's edges
TEXT_X = QR_SIZE + 2.0
TEXT_W = LABEL_W - TEXT_X - 1.5
# A font every PDF viewer has for Chinese (Adobe's Song CID font, not embedded).
CJK_FONT = "STSong-Light"
SVG_FONTS = '"Noto Sans CJK SC","PingFang SC","Microsoft YaHei",sans-serif'


@dataclass(frozen=True, slots=True)
class Label:
    uri: str
    gtin: str
    lot: str
    product: str
    serial: str | None = None

    def lines(self) -> list[tuple[str, float]]:
        """The text of the label, top to bottom, with font sizes in points."""
        # The product name is free text a ledger may hold from before EVENTS.md's rule:
        # scrubbed, so the SVG stays XML and no override reorders it.
        out = [(scrub(self.product), 7.5), (f"GTIN {self.gtin}", 6.5), (f"LOT {self.lot}", 6.5)]
        if self.serial is not None:
            out.append((f"SN {self.serial}", 6.5))
        return out


def serials(serial_from: str, count: int) -> list[str]:
    """`count` serials counting up from `serial_from` (digits), keeping its width:
    "000098" → "000098", "000099", "000100", …"""
    if not serial_from.isdigit() or not serial_from.isascii():
        raise InvalidRequest(f"serial_from {serial_from!r} must be digits to count up from")
    start, width = int(serial_from), len(serial_from)
    out = [str(n).zfill(width) for n in range(start, start + count)]
    if len(out[-1]) > SERIAL_MAX:
        raise InvalidRequest(f"serial {out[-1]} would have more than {SERIAL_MAX} characters")
    return [validate_serial(s) for s in out]


def run_labels(resolver: str, gtin14: str, lot: str, product: str, count: int,
               serial_from: str | None = None) -> list[Label]:
    """The labels of a run: `count` alike, or one per serial from `serial_from`."""
    if not 1 <= count <= MAX_LABELS:
        raise InvalidRequest(f"count {count} is not between 1 and {MAX_LABELS}")
    if serial_from is None:
        return [Label(digital_link(resolver, gtin14, lot), gtin14, lot, product)] * count
    return [Label(digital_link(resolver, gtin14, lot, s), gtin14, lot, product, s)
            for s in serials(serial_from, count)]


def _modules(uri: str) -> list[list[bool]]:
    # Error correction M, as the single QR codes of traceability/qr.py.
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(uri)
    code.make(fit=True)
    matrix: list[list[bool]] = code.get_matrix()
    return matrix


def _runs(matrix: list[list[bool]]) -> list[tuple[int, int, int]]:
    """Dark modules as horizontal runs (row, first column, length): fewer shapes to draw."""
    runs = []
    for y, row in enumerate(matrix):
        x = 0
        while x < len(row):
            if row[x]:
                start = x
                while x < len(row) and row[x]:
                    x += 1
                runs.append((y, start, x - start))
            else:
                x += 1
    return runs


def _origin(slot: int) -> tuple[float, float]:
    """Top-left corner of label `slot` of a page, in mm from the page's top-left."""
    row, column = divmod(slot, COLUMNS)
    return MARGIN + column * LABEL_W, MARGIN + row * LABEL_H


def _fit(text: str, size: float, width_mm: float, font: str) -> str:
    """`text` cut (with an ellipsis) to fit `width_mm` at `size` points."""
    if pdfmetrics.stringWidth(text, font, size) <= width_mm * mm:
        return text
    while text and pdfmetrics.stringWidth(text + "…", font, size) > width_mm * mm:
        text = text[:-1]
    return text + "…"


def _font() -> str:
    if CJK_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))
    return CJK_FONT


def sheet_pdf(labels: list[Label]) -> bytes:
    """The labels on as many A4 pages as they need, as a PDF."""
    font = _font()
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4, pageCompression=1)
    pdf.setTitle(f"{labels[0].gtin} {labels[0].lot}: {len(labels)} labels" if labels else "labels")
    codes: dict[str, tuple[int, list[tuple[int, int, int]]]] = {}  # labels alike share one
    for i, label in enumerate(labels):
        slot = i % PER_PAGE
        if i and slot == 0:
            pdf.showPage()
        left, top = _origin(slot)
        bottom = PAGE_H - top - LABEL_H  # PDF measures from the bottom
        pdf.setStrokeGray(0.8)
        pdf.setLineWidth(0.2)
        pdf.rect(left * mm, bottom * mm, LABEL_W * mm, LABEL_H * mm)  # cutting guide
        if label.uri not in codes:
            matrix = _modules(label.uri)
            codes[label.uri] = (len(matrix), _runs(matrix))
        size, runs = codes[label.uri]
        module = QR_SIZE / size
        qr_left, qr_top = left + 1.5, bottom + 1.5 + QR_SIZE  # mm; top edge of the code
        pdf.setFillGray(0)
        for y, x, length in runs:
            pdf.rect((qr_left + x * module) * mm, (qr_top - (y + 1) * module) * mm,
                     length * module * mm, module * mm, stroke=0, fill=1)
        baseline = bottom + LABEL_H - 6.0
        for text, size in label.lines():
            pdf.setFont(font, size)
            pdf.drawString((left + TEXT_X) * mm, baseline * mm, _fit(text, size, TEXT_W, font))
            baseline -= size * 0.3528 + 1.6  # points to mm, plus leading
    pdf.showPage()
    pdf.save()
    return out.getvalue()


def sheet_svg(labels: list[Label]) -> bytes:
    """At most one sheet of labels as one A4 SVG page (units: mm)."""
    if len(labels) > PER_PAGE:
        raise InvalidRequest(
            f"an SVG sheet is one A4 page of at most {PER_PAGE} labels, not {len(labels)}; "
            "ask for the PDF, or for one page at a time with serial_from")
    font = _font()  # for the widths of the text, as in the PDF
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{PAGE_W}mm" height="{PAGE_H}mm" '
        f'viewBox="0 0 {PAGE_W} {PAGE_H}">\n'
        f'<rect width="{PAGE_W}" height="{PAGE_H}" fill="#fff"/>\n'
    ]
    for slot, label in enumerate(labels):
        left, top = _origin(slot)
        matrix = _modules(label.uri)
        module = QR_SIZE / len(matrix)
        path = "".join(f"M{x} {y}h{length}v1h-{length}z" for y, x, length in _runs(matrix))
        parts.append(
            f'<g class="label" transform="translate({left:.3f} {top:.3f})" '
            f'data-uri={quoteattr(label.uri)}>\n'
            f'<rect width="{LABEL_W:.3f}" height="{LABEL_H:.3f}" fill="none" stroke="#ccc" '
            'stroke-width="0.07"/>\n'
            f'<path transform="translate(1.5 1.5) scale({module:.5f})" d="{path}" fill="#000"/>\n'
        )
        baseline = 6.0
        for text, size in label.lines():
            parts.append(
                f'<text x="{TEXT_X:.3f}" y="{baseline:.3f}" font-size="{size * 0.3528:.3f}" '
                f"font-family='{SVG_FONTS}'>{escape(_fit(text, size, TEXT_W, font))}</text>\n")
            baseline += size * 0.3528 + 1.6
        parts.append("</g>\n")
    parts.append("</svg>\n")
    return "".join(parts).encode()
