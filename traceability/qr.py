"""GS1 Digital Link URIs for batches and their QR codes (GS1 Digital Link URI syntax 1.x).

`https://<resolver>/01/<GTIN-14>/10/<lot>`: the lot is a path segment, so the GS1 AI
(10) characters that are not unreserved in a URI path are percent-encoded.
"""

from __future__ import annotations

import io
from urllib.parse import quote

import qrcode
import qrcode.image.svg

from ledger.identifiers import normalize_gtin, validate_lot


def digital_link(resolver: str, gtin: str, lot: str) -> str:
    """The batch's Digital Link URI under `resolver` (scheme and host, e.g. https://id.example)."""
    gtin14 = normalize_gtin(gtin)
    lot = validate_lot(lot)
    return f"{resolver.rstrip('/')}/01/{gtin14}/10/{quote(lot, safe='')}"


def _code(uri: str) -> qrcode.QRCode:  # type: ignore[type-arg]
    # Error correction M: survives a scuffed or partly covered label, still small.
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=10, border=4)
    code.add_data(uri)
    code.make(fit=True)
    return code


def qr_svg(uri: str) -> bytes:
    image = _code(uri).make_image(image_factory=qrcode.image.svg.SvgPathImage)
    out = io.BytesIO()
    image.save(out)
    return out.getvalue()


def qr_png(uri: str) -> bytes:
    image = _code(uri).make_image(fill_color="black", back_color="white")
    out = io.BytesIO()
    image.save(out)
    return out.getvalue()
