"""A dispute case: who complained about whom, and how it ended."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from ledger.domain.ids import named
from ledger.errors import Rejected, Rejection


class Case(Aggregate):
    @staticmethod
    def create_id(case: str) -> UUID:
        return named("case", case)

    @event("Opened")
    def __init__(self, case: str, opened_by: str, respondent: str, entry: int) -> None:
        self.case = case
        self.opened_by = opened_by
        self.respondent = respondent
        self.opened_entry = entry
        self.finding: str | None = None

    def is_party(self, org: str) -> bool:
        return org in (self.opened_by, self.respondent)

    def check_open(self) -> None:
        if self.finding is not None:
            raise Rejected(Rejection.CASE_CLOSED, f"case {self.case} was resolved: {self.finding}")

    @event("Resolved")
    def resolve(self, finding: str, entry: int) -> None:
        self.check_open()
        self.finding = finding
