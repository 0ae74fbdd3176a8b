"""GS1 Digital Link URIs for batches and their QR codes (GS1 Digital Link URI syntax 1.x).

`https://<resolver>/01/<GTIN-14>/10/<lot>[/21/<serial>]`: the lot and the serial are path
segments, so the GS1 AI (10) and (21) characters that are not unreserved in a URI path
are percent-encoded.
"""

from __future__ import annotations

import io
from urllib.parse import quote

import qrcode
import qrcode.image.svg

from ledger.errors import InvalidRequest
from ledger.identifiers import GS1_CHARSET_82, normalize_gtin, validate_lot

SERIAL_MAX = 20  # AI (21) is X..20


def validate_serial(value: str) -> str:
    """Check a serial number as GS1 AI (21) allows it (1 to 20 characters of GS1 character
    set 82); return it unchanged. Raises InvalidRequest: serials are not recorded in the
    ledger, they only travel in Digital Link URIs and on labels."""
    if not 1 <= len(value) <= SERIAL_MAX:
        raise InvalidRequest(
            f"serial {value!r} has {len(value)} characters; a serial (GS1 AI 21) has 1 to "
            f"{SERIAL_MAX}")
    bad = next((i for i, c in enumerate(value) if c not in GS1_CHARSET_82), None)
    if bad is not None:
        raise InvalidRequest(
            f"serial {value!r} contains {value[bad]!r} at position {bad + 1}; a serial may use "
            "only GS1 character set 82")
    return value


def batch_path(gtin14: str, lot: str, serial: str | None = None) -> str:
    """The path of a batch's (or one item's) Digital Link URI, without the host."""
    path = f"/01/{gtin14}/10/{quote(lot, safe='')}"
    return path if serial is None else f"{path}/21/{quote(serial, safe='')}"


def digital_link(resolver: str, gtin: str, lot: str, serial: str | None = None) -> str:
    """The batch's Digital Link URI under `resolver` (scheme and host, e.g. https://id.example),
    with `/21/<serial>` for one serialised item."""
    gtin14 = normalize_gtin(gtin)
    lot = validate_lot(lot)
    if serial is not None:
        serial = validate_serial(serial)
    return resolver.rstrip("/") + batch_path(gtin14, lot, serial)


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
