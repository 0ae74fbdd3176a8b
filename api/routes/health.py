"""Liveness and readiness: the server answers and its database can be read, within a bound."""

from __future__ import annotations

import anyio
import anyio.to_thread
from fastapi import APIRouter

from api import problems
from api.deps import LedgerDep
from api.schemas import HealthPublic
from ledger.errors import LedgerError, StorageError
from ledger.store import storage_timeout

router = APIRouter(tags=["health"])

# Health checks run on threads of their own, two at a time, never on the routes' pool: a
# check stuck on a database that hangs must not take a thread the reads need, and a
# monitor polling a hung server must not pile up threads. Beyond two: unavailable.
_CHECKS = anyio.CapacityLimiter(2)


@router.get(
    "/healthz",
    summary="Health check",
    responses=problems.responses(problems.example("storage", 503, problems.STORAGE_DETAIL)),
)
async def healthz(ledger: LedgerDep) -> HealthPublic:
    """`ok` and the log's size when the database answers within QLEDGER_STORAGE_TIMEOUT
    seconds (default 5); a 503 problem when it does not."""
    seconds = storage_timeout()
    if _CHECKS.available_tokens == 0:
        raise StorageError("health checks are still waiting for the database")
    try:
        with anyio.fail_after(seconds):
            # Abandoned, not awaited, on timeout: a thread blocked on a socket cannot be
            # interrupted; it ends when the driver gives up.
            size = await anyio.to_thread.run_sync(ledger.size, abandon_on_cancel=True,
                                                  limiter=_CHECKS)
    except TimeoutError:
        raise StorageError(f"the database did not answer within {seconds} s") from None
    except LedgerError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever the driver raises: storage unavailable
        raise StorageError(f"the database cannot be read: {e}".splitlines()[0]) from None
    return HealthPublic(status="ok", tree_size=size)
