"""Hostile free text on the demo ledger: what an attacker with a signing key could write.

Every free-text field of a statement is someone else's words; the pages must show them
as text. `add_hostile_text` puts a script tag and an SQL fragment into an
organization's name, a product, a recall reason, a case summary, a blacklist reason and
basis, an award title and a credit adjustment, all signed by the demo's regulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api import demo
from ledger import client, keys
from ledger.application import Ledger
from tests.support import make_gtin, make_uscc

SCRIPT = "<script>alert(1)</script>"
SQL = "'; DROP TABLE x; --"
HOSTILE = f"{SCRIPT}{SQL}"
# How Jinja2's autoescape writes them: the script as entities, the quote as &#39;.
SCRIPT_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
SQL_ESCAPED = "&#39;; DROP TABLE x; --"

EVIL = make_uscc(6660001, "350100")
EVIL_GTIN = make_gtin(666, "692009")
EVIL_LOT = "EV-0001"
EVIL_CASE = "FJ-12315-2026-0666"


@dataclass(frozen=True)
class Hostile:
    org: str
    batch: tuple[str, str]
    case: str


def add_hostile_text(ledger: Ledger, regulator_key: Ed25519PrivateKey) -> Hostile:
    """Record the hostile statements in `ledger` (built by api.demo.build)."""
    evil_key = keys.generate_private_key()
    signers = {demo.REGULATOR: regulator_key, EVIL: evil_key}

    def sign(type: str, by: str, **fields: Any) -> dict[str, Any]:
        return client.sign(client.new_statement(type, by, **fields), signers[by])

    later = client.format_time(datetime.now(UTC) + timedelta(days=365))
    ledger.append([
        sign("org.registered", demo.REGULATOR, uscc=EVIL, name=HOSTILE, roles=["producer"],
             region="350100"),
        sign("key.registered", demo.REGULATOR, org=EVIL,
             public_key=keys.encode_public_key(keys.public_bytes(evil_key))),
    ])
    ledger.append([sign(
        "batch.produced", EVIL, gtin=EVIL_GTIN, lot=EVIL_LOT, product=HOSTILE, category="food",
        quantity=10, unit="bag", produced_at=client.format_time(datetime.now(UTC)),
        standard=HOSTILE, inputs=[])])
    ledger.append([
        sign("recall.issued", demo.REGULATOR, gtin=EVIL_GTIN, lots=[EVIL_LOT], level=1,
             reason=HOSTILE),
        sign("case.opened", demo.REGULATOR, case=EVIL_CASE, respondent=EVIL,
             batches=[{"gtin": EVIL_GTIN, "lot": EVIL_LOT}], summary=HOSTILE, channel="12315"),
        sign("credit.adjusted", demo.REGULATOR, org=EVIL, delta=-1, reason=HOSTILE,
             basis=HOSTILE, refs=[]),
        sign("award.granted", demo.REGULATOR, org=EVIL, title=HOSTILE, valid_until=later),
        sign("blacklist.added", demo.REGULATOR, org=EVIL, reason=HOSTILE, basis=HOSTILE,
             refs=[]),
    ])
    return Hostile(EVIL, (EVIL_GTIN, EVIL_LOT), EVIL_CASE)
