"""A dispute case: who complained about whom, and how it ended.

Explicit event classes with their `apply`, as in ledger/domain/batch.py (why: there).
"""

from __future__ import annotations

from uuid import UUID

from ledger.domain.base import Aggregate

from ledger.domain.ids import named
from ledger.errors import Rejected, Rejection


class Case(Aggregate):
    @staticmethod
    def create_id(case: str) -> UUID:
        return named("case", case)

    class Opened(Aggregate.Created):
        case: str
        opened_by: str
        respondent: str
        entry: int

    def __init__(self, case: str, opened_by: str, respondent: str, entry: int) -> None:
        self.case = case
        self.opened_by = opened_by
        self.respondent = respondent
        self.opened_entry = entry
        self.finding: str | None = None
        self.cited = 0  # entries cited by its evidence so far (refs, counted with repeats)

    @classmethod
    def open(cls, case: str, opened_by: str, respondent: str, entry: int) -> Case:
        return cls._created(
            cls.Opened, cls.create_id(case), case=case, opened_by=opened_by,
            respondent=respondent, entry=entry,
        )

    def is_party(self, org: str) -> bool:
        return org in (self.opened_by, self.respondent)

    def check_open(self) -> None:
        if self.finding is not None:
            raise Rejected(Rejection.CASE_CLOSED, f"case {self.case} was resolved: {self.finding}")

    class Resolved(Aggregate.Event):
        finding: str
        entry: int

        def apply(self, case: Case) -> None:
            case.finding = self.finding

    def resolve(self, finding: str, entry: int) -> None:
        self.check_open()
        self.trigger_event(self.Resolved, finding=finding, entry=entry)

    class Cited(Aggregate.Event):
        refs: int

        def apply(self, case: Case) -> None:
            case.cited += self.refs

    def cite(self, refs: int) -> None:
        """Count `refs` more citations of the case's evidence (the rules bound the total)."""
        if refs:
            self.trigger_event(self.Cited, refs=refs)
