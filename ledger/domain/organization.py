"""An organization keyed by its USCC: roles, region, and blacklist status.

Explicit event classes with their `apply`, as in ledger/domain/batch.py (why: there).
"""

from __future__ import annotations

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

        def apply(self, org: Organization) -> None:
            org.blacklisted = True

    def blacklist(self, entry: int) -> None:
        if self.blacklisted:
            raise Rejected(Rejection.ALREADY_BLACKLISTED, f"{self.uscc} is already on the blacklist")
        self.trigger_event(self.Blacklisted, entry=entry)

    class Delisted(Aggregate.Event):
        entry: int

        def apply(self, org: Organization) -> None:
            org.blacklisted = False

    def delist(self, entry: int) -> None:
        if not self.blacklisted:
            raise Rejected(Rejection.NOT_BLACKLISTED, f"{self.uscc} is not on the blacklist")
        self.trigger_event(self.Delisted, entry=entry)
