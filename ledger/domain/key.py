"""A signing key registered to one organization, with its validity window.

Explicit event classes with their `apply`, as in ledger/domain/batch.py (why: there).
"""

from __future__ import annotations

from base64 import b64decode

from datetime import datetime
from uuid import UUID

from ledger.domain.base import Aggregate

from ledger.domain.ids import named
from ledger.errors import Rejected, Rejection


class Key(Aggregate):
    @staticmethod
    def create_id(keyid: str) -> UUID:
        return named("key", keyid)

    class Registered(Aggregate.Created):
        keyid: str
        org: str
        public_key: str
        valid_from: datetime | None
        entry: int

    def __init__(
        self, keyid: str, org: str, public_key: str, valid_from: datetime | None, entry: int
    ) -> None:
        self.keyid = keyid
        self.org = org
        self.public_key = public_key  # base64, as in the statement
        self.valid_from = valid_from
        self.registered_entry = entry
        self.revoked_at: datetime | None = None

    @classmethod
    def register(
        cls, keyid: str, org: str, public_key: str, valid_from: datetime | None, entry: int
    ) -> Key:
        return cls._created(
            cls.Registered, cls.create_id(keyid), keyid=keyid, org=org, public_key=public_key,
            valid_from=valid_from, entry=entry,
        )

    def public_key_bytes(self) -> bytes:
        """The raw public key. Its base64 was checked strictly (ledger.b64) when the key
        was registered, so the plain decoder is enough here."""
        return b64decode(self.public_key)

    def check_active(self, at: datetime, what: str) -> None:
        """A key signs from `valid_from` up to, not including, `revoked_at`."""
        if self.revoked_at is not None and at >= self.revoked_at:
            raise Rejected(
                Rejection.KEY_REVOKED,
                f"key {self.keyid} of {self.org} was revoked at "
                f"{self.revoked_at.isoformat()}; {what} is after that",
            )
        if self.valid_from is not None and at < self.valid_from:
            raise Rejected(
                Rejection.KEY_NOT_YET_VALID,
                f"key {self.keyid} of {self.org} is valid from "
                f"{self.valid_from.isoformat()}; {what} is before that",
            )

    class Revoked(Aggregate.Event):
        revoked_at: datetime
        entry: int

        def apply(self, key: Key) -> None:
            key.revoked_at = self.revoked_at

    def revoke(self, revoked_at: datetime, entry: int) -> None:
        """EVENTS.md `key.revoked`: the earliest revocation wins. A key may be revoked
        again with an earlier `revoked_at`, so a thief who revokes the stolen key far in
        the future (to keep signing until then) cannot block the real revocation."""
        if self.revoked_at is not None and revoked_at >= self.revoked_at:
            raise Rejected(
                Rejection.KEY_REVOKED,
                f"key {self.keyid} is already revoked at {self.revoked_at.isoformat()}; "
                "a further revocation must be earlier than that",
            )
        self.trigger_event(self.Revoked, revoked_at=revoked_at, entry=entry)
