"""An organization keyed by its USCC: roles, region, and blacklist status.

Explicit event classes with their `apply`, as in ledger/domain/batch.py (why: there).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from ledger.domain.base import Aggregate

from ledger.domain.ids import named
from ledger.errors import Rejected, Rejection


class Organization(Aggregate):
    @staticmethod
    def create_id(uscc: str) -> UUID:
        return named("org", uscc)

    class Registered(Aggregate.Created):
        uscc: str
        name: str
        roles: list[str]
        region: str
        entry: int

    def __init__(self, uscc: str, name: str, roles: list[str], region: str, entry: int) -> None:
        self.uscc = uscc
        self.name = name
        self.roles = list(roles)
        self.region = region
        self.registered_entry = entry
        self.blacklisted = False
        self.listed_until: datetime | None = None  # the listing's `until`, if it has one

    @classmethod
    def register(cls, uscc: str, name: str, roles: list[str], region: str, entry: int) -> Organization:
        return cls._created(
            cls.Registered, cls.create_id(uscc), uscc=uscc, name=name, roles=list(roles),
            region=region, entry=entry,
        )

    @property
    def is_root(self) -> bool:
        """The ledger's root regulator: the organization entry 0 registers."""
        return self.registered_entry == 0

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def check_role(self, *roles: str, doing: str) -> None:
        if not any(r in self.roles for r in roles):
            raise Rejected(
                Rejection.ROLE_FORBIDDEN,
                f"{self.uscc} ({'/'.join(self.roles)}) may not sign {doing}; "
                f"it needs the role {' or '.join(roles)}",
            )

    class Blacklisted(Aggregate.Event):
        entry: int
        # Absent from listings recorded before `until` was kept here: they had none
        # the write side honoured, so None reads them as they were.
        until: datetime | None = None

        def apply(self, org: Organization) -> None:
            org.blacklisted = True
            org.listed_until = self.until

    def is_listed(self, at: datetime) -> bool:
        """On the blacklist at `at`: listed, and its listing's `until` not yet passed
        (EVENTS.md `blacklist.added`: after `until` the listing has ended)."""
        return self.blacklisted and (self.listed_until is None or at < self.listed_until)

    def blacklist(self, entry: int, at: datetime, until: datetime | None = None) -> None:
        if until is not None and until <= at:
            raise Rejected(
                Rejection.BAD_TIME,
                f"until: {until.isoformat()} is not after the time of recording "
                f"({at.isoformat(timespec='seconds')}); a listing cannot end before it starts",
            )
        if self.is_listed(at):
            raise Rejected(Rejection.ALREADY_BLACKLISTED, f"{self.uscc} is already on the blacklist")
        self.trigger_event(self.Blacklisted, entry=entry, until=until)

    class Delisted(Aggregate.Event):
        entry: int

        def apply(self, org: Organization) -> None:
            org.blacklisted = False
            org.listed_until = None

    def delist(self, entry: int, at: datetime) -> None:
        if not self.is_listed(at):
            raise Rejected(Rejection.NOT_BLACKLISTED, f"{self.uscc} is not on the blacklist")
        self.trigger_event(self.Delisted, entry=entry)
