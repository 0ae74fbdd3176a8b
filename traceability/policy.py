"""The credit policy (EVENTS.md, Credit): which facts move a score, by how much, and the grades.

A policy is data with a name; the name is written on every credit line, so each line
of an `explain` says which rules priced it. The views are built under one policy;
opening them under another rebuilds them from the log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


# EVENTS.md "Credit": the score is the sum of the lines clamped to 0…100, so awards
# cannot lift a firm above a clean record nor adjustments sink it without bound.
SCORE_FLOOR, SCORE_CEILING = 0, 100


def clamp_score(total: int) -> int:
    return max(SCORE_FLOOR, min(SCORE_CEILING, total))


def _frozen(values: dict[str, int]) -> Mapping[str, int]:
    return MappingProxyType(values)


@dataclass(frozen=True)
class CreditPolicy:
    """Points and grade thresholds. Rule names (`rule` in explain lines) are fixed:
    start, check.failed.<stage>, recall.level<n>, case.substantiated, credit.adjusted,
    award.granted, and `clamp` for the line that brings the sum into 0…100."""

    name: str
    start: int = 100
    # Only failed checks of these kinds cost points: a supervisory spot check is the
    # regulator's finding; self and third-party checks are the company's own business.
    charged_check_kinds: frozenset[str] = frozenset({"supervisory"})
    failed_check: Mapping[str, int] = field(
        default_factory=lambda: _frozen({"production": -10, "circulation": -5})
    )
    recall: Mapping[str, int] = field(default_factory=lambda: _frozen({"1": -15, "2": -8, "3": -3}))
    substantiated_case: int = -5
    award: int = 5
    # (lowest score, grade), best first; below the last threshold the grade is `lowest`.
    grades: tuple[tuple[int, str], ...] = ((90, "A"), (75, "B"), (60, "C"))
    lowest: str = "D"

    def check_points(self, kind: str, stage: str, verdict: str) -> int:
        if verdict != "fail" or kind not in self.charged_check_kinds:
            return 0
        return self.failed_check.get(stage, 0)

    def recall_points(self, level: int) -> int:
        return self.recall.get(str(level), 0)

    def case_points(self, finding: str | None) -> int:
        return self.substantiated_case if finding == "substantiated" else 0

    def grade(self, score: int, blacklisted: bool) -> str:
        """A blacklisted organization is graded lowest whatever its score."""
        if blacklisted:
            return self.lowest
        for threshold, grade in self.grades:
            if score >= threshold:
                return grade
        return self.lowest


# 2026.2: the score is clamped to 0…100 (2026.1 summed without bounds).
DEFAULT_POLICY = CreditPolicy(name="default-2026.2")
