"""Liveness and readiness: the server answers and its database can be read."""

from __future__ import annotations

from fastapi import APIRouter

from api import problems
from api.deps import LedgerDep
from api.schemas import HealthPublic
from ledger.errors import LedgerError, StorageError

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    summary="Health check",
    responses=problems.responses(
        problems.example("storage", 503, "the database cannot be read: connection refused")),
)
def healthz(ledger: LedgerDep) -> HealthPublic:
    """`ok` and the log's size when the database answers; a 503 problem when it does not."""
    try:
        size = ledger.size()
    except LedgerError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the driver raises: storage unavailable
        raise StorageError(f"the database cannot be read: {e}".splitlines()[0]) from None
    return HealthPublic(status="ok", tree_size=size)
