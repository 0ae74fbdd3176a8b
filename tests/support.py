"""A small world for tests: a ledger, fictional organizations with valid codes, their keys.

The organizations are invented (valid check digits, no real company behind them), so
no test attributes a failed check or a blacklisting to a real enterprise.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from stdnum.cn import uscc as stdnum_uscc

from ledger import client, keys
from ledger.application import Ledger, Receipt
from ledger.genesis import genesis_envelopes
from ledger.identifiers import gtin_check_digit

ORIGIN = "ledger.quality.example/v1"
T0 = datetime(2026, 11, 22, 8, 0, 0, tzinfo=UTC)


def make_uscc(serial: int, region: str = "350100", prefix: str = "91") -> str:
    """A valid, fictional USCC: prefix, region, a 9-character code, check character."""
    body = f"{prefix}{region}MA{serial:07d}"
    return body + stdnum_uscc.calc_check_digit(body)


def make_gtin(serial: int, company: str = "690123") -> str:
    """A valid GTIN-14 under a fictional GS1 China company prefix."""
    body = f"0{company}{serial:06d}"
    return body + gtin_check_digit(body)


ROOT = make_uscc(1, "110000", "11")


class Clock:
    """The ledger's clock in tests: starts at T0 and moves only when told."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class World:
    def __init__(self, db: str, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.log_key = keys.generate_private_key()
        self.ledger = Ledger(db, clock=self.clock, log_key=self.log_key)
        self.keys: dict[str, Ed25519PrivateKey] = {}
        root_key = keys.generate_private_key()
        self.keys[ROOT] = root_key
        genesis = genesis_envelopes(ROOT, "国家市场监督管理总局（测试）", "110000", root_key,
                                    issued_at=self.clock.now)
        self.ledger.create(ORIGIN, self.log_key, ROOT, genesis)

    def statement(self, type: str, by: str, **fields: Any) -> dict[str, Any]:
        fields.setdefault("issued_at", self.clock.now)
        return client.new_statement(type, by, **fields)

    def envelope(
        self, type: str, by: str, *, key: Ed25519PrivateKey | None = None, **fields: Any
    ) -> dict[str, Any]:
        return client.sign(self.statement(type, by, **fields), key or self.keys[by])

    def submit(self, type: str, by: str, **fields: Any) -> Receipt:
        return self.ledger.append([self.envelope(type, by, **fields)])[0]

    def register(
        self, uscc: str, name: str, *roles: str, region: str = "350100", by: str = ROOT
    ) -> Ed25519PrivateKey:
        """The regulator registers an organization and one key for it."""
        key = keys.generate_private_key()
        self.submit("org.registered", by, uscc=uscc, name=name, roles=list(roles), region=region)
        self.submit("key.registered", by, org=uscc,
                    public_key=keys.encode_public_key(keys.public_bytes(key)))
        self.keys[uscc] = key
        return key

    def produce(self, by: str, gtin: str, lot: str, quantity: int,
                inputs: list[dict[str, Any]] | None = None, **extra: Any) -> Receipt:
        fields: dict[str, Any] = dict(
            gtin=gtin, lot=lot, product="高筋小麦粉", category="food", quantity=quantity,
            unit="kg", produced_at="2026-11-20T06:00:00Z", standard="GB/T 1355-2021",
            inputs=inputs or [],
        )
        fields.update(extra)
        return self.submit("batch.produced", by, **fields)

    def ship(self, by: str, gtin: str, lot: str, quantity: int, to: str, shipment: str) -> Receipt:
        return self.submit("batch.shipped", by, gtin=gtin, lot=lot, quantity=quantity, to=to,
                           shipment=shipment)

    def receive(self, by: str, shipment: str, quantity: int) -> Receipt:
        return self.submit("batch.received", by, shipment=shipment, quantity=quantity)
