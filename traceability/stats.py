"""Pass rates of supervisory spot checks (生产/流通环节监督抽查, EVENTS.md "Pass-rate targets").

Grouped by any of category, stage, region (the province of the inspected organization,
as its GB/T 2260 code `xx0000`, or its full region code) and period (month `YYYY-MM`
or year `YYYY` of sampling). Withdrawn checks do not count; corrected ones count as
corrected. A group whose category has a target is flagged `missed` when its share of
passes is below the target, compared exactly in integers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ledger.errors import InvalidRequest
from traceability.views import Views

Dimension = Literal["category", "stage", "region", "period"]
DIMENSIONS: tuple[Dimension, ...] = ("category", "stage", "region", "period")

# Minimum share passed, in percent, per category (for both stages).
TARGETS: dict[str, int] = {"food": 95, "industrial": 94, "agricultural": 96, "aquatic": 99}

_PERIOD = {"month": "substr(sampled_at, 1, 7)", "year": "substr(sampled_at, 1, 4)"}
_REGION = {"province": "substr(region, 1, 2) || '0000'", "full": "region"}


@dataclass(frozen=True, slots=True)
class PassRate:
    category: str | None  # None when not grouped by it
    stage: str | None
    region: str | None
    period: str | None
    checks: int
    passed: int
    target: int | None  # percent

    @property
    def rate(self) -> float:
        return self.passed / self.checks

    @property
    def missed(self) -> bool:
        return self.target is not None and self.passed * 100 < self.target * self.checks

    def to_json(self) -> dict[str, Any]:
        return {"category": self.category, "stage": self.stage, "region": self.region,
                "period": self.period, "checks": self.checks, "passed": self.passed,
                "rate": self.rate,
                "target": None if self.target is None else self.target / 100,
                "missed": self.missed}


def pass_rates(
    views: Views,
    *,
    by: Sequence[Dimension] = DIMENSIONS,
    period: Literal["month", "year"] = "month",
    region_level: Literal["province", "full"] = "province",
    category: str | None = None,
    stage: str | None = None,
    region: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> list[PassRate]:
    """Supervisory pass rates grouped `by` the given dimensions, sorted by them.

    Filters: `category`, `stage`, `region` (compared at `region_level`), and the
    period range `since`..`until` inclusive (e.g. "2026-01".."2026-06"). Raises
    InvalidRequest for an unknown dimension, period or region level."""
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown or period not in _PERIOD or region_level not in _REGION:
        raise InvalidRequest(
            f"group by any of {', '.join(DIMENSIONS)}; period month or year; region level "
            f"province or full (got by={list(by)}, period={period!r}, "
            f"region_level={region_level!r})"
        )
    columns = {"category": "category", "stage": "stage",
               "region": _REGION[region_level], "period": _PERIOD[period]}
    conditions, params = ["kind = 'supervisory'", "withdrawn = 0"], []
    for name, value, op in (("category", category, "="), ("stage", stage, "="),
                            ("region", region, "="), ("period", since, ">="),
                            ("period", until, "<=")):
        if value is not None:
            conditions.append(f"{columns[name]} {op} ?")
            params.append(value)
    chosen = [d for d in DIMENSIONS if d in by]
    select = [f"{columns[d]} AS {d}" for d in chosen]
    sql = (
        f"SELECT {', '.join([*select, 'COUNT(*) AS checks'])}, "
        "SUM(CASE WHEN verdict = 'pass' THEN 1 ELSE 0 END) AS passed "
        f"FROM v_checks WHERE {' AND '.join(conditions)}"
    )
    if chosen:
        sql += f" GROUP BY {', '.join(columns[d] for d in chosen)}"
    with views.reading() as tx:
        rows = [r for r in tx.rows(sql, params) if r["checks"]]
    rates = [
        PassRate(
            r.get("category"), r.get("stage"), r.get("region"), r.get("period"),
            int(r["checks"]), int(r["passed"]),
            TARGETS.get(r["category"]) if "category" in r else None,
        )
        for r in rows
    ]
    # Sorted here, not in SQL: the two databases put NULLs at opposite ends.
    return sorted(rates, key=lambda p: [(v is None, v or "") for v in
                                        (p.category, p.stage, p.region, p.period)])
