"""An organization as the public sees it (PROTOCOL.md §5 `GET /v1/orgs/{uscc}`) with its credit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.errors import InvalidRequest, Rejected
from ledger.identifiers import validate_uscc
from traceability.credit import Credit, ExplainPage, credit
from traceability.views import Views


@dataclass(frozen=True, slots=True)
class OrgProfile:
    uscc: str
    name: str
    roles: tuple[str, ...]
    region: str
    legacy_code: str | None
    entry: int  # where it was registered
    credit: Credit

    def to_json(self, explain: ExplainPage | None = None) -> dict[str, Any]:
        """With `explain`, the credit lists that page of its lines (Credit.to_json)."""
        return {"uscc": self.uscc, "name": self.name, "roles": list(self.roles),
                "region": self.region, "legacy_code": self.legacy_code, "entry": self.entry,
                "credit": self.credit.to_json(explain)}


def profile(views: Views, uscc: str, at: datetime | None = None) -> OrgProfile:
    """Raises InvalidRequest for a malformed USCC, NotFound for an unregistered one."""
    try:
        uscc = validate_uscc(uscc)
    except Rejected as e:
        raise InvalidRequest(e.detail) from None
    row = views.organization(uscc)
    return OrgProfile(row["uscc"], row["name"], tuple(json.loads(row["roles"])), row["region"],
                      row["legacy_code"], row["entry"], credit(views, uscc, at))
