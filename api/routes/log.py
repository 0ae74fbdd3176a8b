"""The verifiable log over HTTP (PROTOCOL.md §4-5): checkpoint, log key, RFC 9162 proofs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from api import problems
from api.deps import LedgerDep
from api.schemas import (
    EXAMPLE_CHECKPOINT,
    EXAMPLE_LOG_KEY,
    ConsistencyProofPublic,
    InclusionProofPublic,
)

router = APIRouter(prefix="/v1", tags=["log"])

# The latest checkpoint moves with every append: caches must ask again.
_NO_CACHE = {"Cache-Control": "no-cache"}


def _text(example: str, description: str) -> dict[int | str, dict[str, object]]:
    return {200: {"description": description,
                  "content": {"text/plain": {"schema": {"type": "string"}, "example": example}}}}


@router.get(
    "/checkpoint",
    response_class=PlainTextResponse,
    summary="The latest signed checkpoint",
    responses={
        **_text(EXAMPLE_CHECKPOINT, "C2SP tlog-checkpoint in a C2SP signed note"),
        **problems.responses(
            problems.example("not-found", 404, "the ledger has no checkpoint yet")),
    },
)
def get_checkpoint(ledger: LedgerDep) -> PlainTextResponse:
    """The latest checkpoint: origin, tree size and base64 root hash, signed by the log key.
    Verify it with the key from `/v1/log-key`, pinned from a source you trust."""
    return PlainTextResponse(ledger.checkpoint(), headers=_NO_CACHE)


@router.get(
    "/log-key",
    response_class=PlainTextResponse,
    summary="The log's verifier key",
    responses=_text(EXAMPLE_LOG_KEY, "`<name>+<key id hex>+<base64(0x01 || Ed25519 key)>`"),
)
def get_log_key(ledger: LedgerDep) -> PlainTextResponse:
    """The C2SP signed-note verifier key that checkpoints are signed under."""
    return PlainTextResponse(ledger.config.log_key)


_BAD_SIZE = problems.example("invalid-request", 400, "tree size 99 is beyond the log's 43 entries")


@router.get(
    "/proof/inclusion",
    summary="RFC 9162 inclusion proof",
    responses=problems.responses(_BAD_SIZE),
)
def get_inclusion_proof(
    ledger: LedgerDep,
    index: Annotated[int, Query(description="the entry's index")],
    tree_size: Annotated[int, Query(description="size of the tree to prove inclusion in")],
) -> InclusionProofPublic:
    """PATH(index, D[tree_size]) of RFC 9162 §2.1.3: needs 0 <= index < tree_size <= size."""
    proof = ledger.inclusion_proof(index, tree_size)
    return InclusionProofPublic(index=index, tree_size=tree_size, hashes=[h.hex() for h in proof])


@router.get(
    "/proof/consistency",
    summary="RFC 9162 consistency proof",
    responses=problems.responses(
        problems.example("invalid-request", 400,
                         "need 0 < first <= second, not first=0, second=43")),
)
def get_consistency_proof(
    ledger: LedgerDep,
    first: Annotated[int, Query(description="the older tree size")],
    second: Annotated[int, Query(description="the newer tree size")],
) -> ConsistencyProofPublic:
    """PROOF(first, D[second]) of RFC 9162 §2.1.4: needs 0 < first <= second <= size."""
    proof = ledger.consistency_proof(first, second)
    return ConsistencyProofPublic(first=first, second=second, hashes=[h.hex() for h in proof])
