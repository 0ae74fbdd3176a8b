"""The two entries that start a ledger, built, checked and authenticated in one place.

Entry 0 registers the root regulator, signed by itself; entry 1 registers the root's
key, signed by that key. Nothing can authenticate them against the ledger's state (there
is none yet): they are signed by the key entry 1 registers. `qledger init`, the demo,
the benchmarks and the tests build them with `genesis_envelopes`; the writer and the
audit check them with `check_genesis` and `authenticate_genesis`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import client, keys
from ledger.domain.organization import Organization
from ledger.errors import Rejected, Rejection
from ledger.statement_types import StatementType as T

if TYPE_CHECKING:
    from ledger.intake import Submission


def genesis_envelopes(
    root: str, name: str, region: str, root_key: Ed25519PrivateKey, *,
    issued_at: datetime | None = None,
) -> list[dict[str, Any]]:
    """The root regulator `root` (USCC) registering itself as `name` in `region`, then
    its key `root_key`, both signed by that key: what Ledger.create starts a ledger with."""
    public = keys.encode_public_key(keys.public_bytes(root_key))
    statements = [
        client.new_statement(T.ORG_REGISTERED, root, issued_at=issued_at, uscc=root,
                             name=name, roles=["regulator"], region=region),
        client.new_statement(T.KEY_REGISTERED, root, issued_at=issued_at, org=root,
                             public_key=public),
    ]
    return [client.sign(s, root_key) for s in statements]


def check_genesis(submissions: list[Submission], root_org: str) -> None:
    """The two entries are the root's registration by itself and its key's."""
    if len(submissions) != 2:
        raise Rejected(Rejection.BAD_FIELDS, "a ledger starts with exactly two entries")
    first, second = (s.statement for s in submissions)
    if not (
        first.type == T.ORG_REGISTERED
        and first.by == first.body["uscc"] == root_org
        and "regulator" in first.body["roles"]
    ):
        raise Rejected(
            Rejection.BAD_FIELDS, "entry 0 must register the root regulator, signed by itself"
        )
    if not (second.type == T.KEY_REGISTERED and second.by == second.body["org"] == root_org):
        raise Rejected(Rejection.BAD_FIELDS, "entry 1 must register the root regulator's key")


def authenticate_genesis(
    uow: Any, sub: Submission, submissions: list[Submission], index: int
) -> Organization:
    """Entries 0 and 1 are signed by the root key that entry 1 registers."""
    root_key = submissions[1].statement.body["public_key"]
    sub.envelope.verify(keys.key_id(root_key), root_key)
    if index == 0:
        s = sub.statement
        # The root registers itself: it is its own (root) regulator for this one entry.
        return Organization.register(s.by, "", ["regulator"], s.body["region"], entry=0)
    org = uow.get(Organization, Organization.create_id(sub.statement.by))
    if org is None:  # entry 0 creates it; check_genesis saw to the order
        raise Rejected(Rejection.UNKNOWN_ORG, "entry 1 must follow the root's registration")
    return org  # type: ignore[no-any-return]
