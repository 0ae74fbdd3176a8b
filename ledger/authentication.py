"""Who signed a statement, checked against the ledger's state: the writer's and the
audit's replay alike call these, so a statement is refused on replay for the same reason
and in the same words as when it was submitted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from ledger.domain.key import Key
from ledger.domain.organization import Organization
from ledger.errors import Rejected, Rejection
from ledger.statements import Statement

# How far ahead of the ledger's clock a statement's issued_at may be (PROTOCOL.md).
MAX_FUTURE = timedelta(minutes=5)


def check_not_ahead(s: Statement, now: datetime) -> None:
    """Refuses a statement issued more than MAX_FUTURE after `now`, the recording time."""
    if s.issued_at > now + MAX_FUTURE:
        raise Rejected(
            Rejection.FUTURE_STATEMENT,
            f"issued_at {s.issued_at.isoformat()} is more than 5 minutes ahead "
            f"of the ledger's clock ({now.isoformat(timespec='seconds')})",
        )


def authenticate(
    uow: Any, keyids: Sequence[str], s: Statement, now: datetime,
    check_signature: Callable[[str, Key], None],
) -> Organization:
    """Every signature (by the envelope's `keyids`, in order) is by a registered key
    active at `issued_at` and now, and verifies (`check_signature`, which may have been
    done elsewhere); one of them is a key of `by`. Returns the signing organization."""
    own_key = False
    for keyid in keyids:
        key = uow.get(Key, Key.create_id(keyid))
        if key is None:
            raise Rejected(Rejection.UNKNOWN_KEY, f"key {keyid} is not registered")
        key.check_active(s.issued_at, "issued_at")
        key.check_active(now, "the time of recording")
        check_signature(keyid, key)
        own_key = own_key or key.org == s.by
    if not own_key:
        raise Rejected(
            Rejection.KEY_NOT_OF_SIGNER,
            f"no signature by a key of {s.by}, the organization named in `by`",
        )
    org = uow.get(Organization, Organization.create_id(s.by))
    if org is None:  # keys belong to registered organizations, so only after tampering
        raise Rejected(Rejection.UNKNOWN_ORG, f"by: organization {s.by} is not registered")
    return org  # type: ignore[no-any-return]
