"""Log entries over HTTP (PROTOCOL.md §5): submit envelopes, read entries, prove them
(following the log is api/routes/feed.py).

Routes are plain `def`: the ledger is synchronous, so FastAPI runs them in its threadpool.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, status

from api import problems
from api.body import split_json_array
from api.deps import BodyDep, LedgerDep
from api.problems import RejectedBatch
from api.ratelimit import WriteLimits, client_of
from api.schemas import (
    EXAMPLE_ENVELOPE,
    BatchReceiptPublic,
    EntryProofPublic,
    EntryPublic,
    FeedEntryPublic,
    ReceiptPublic,
)
from ledger.application import Ledger
from ledger.errors import NotFound, Rejected, Rejection
from ledger.intake import MAX_BATCH, Admit, UnknownKeys
from ledger.log.checkpoint import parse_checkpoint

router = APIRouter(prefix="/v1", tags=["entries"])

MAX_INDEX = (1 << 62) - 1  # far beyond any log, and safe for both databases' integers

Index = Annotated[int, Path(ge=0, le=MAX_INDEX, description="0-based log index")]


_ENVELOPE_SCHEMA = {"$ref": "#/components/schemas/EnvelopePublic"}
_BATCH_SCHEMA = {"type": "array", "maxItems": MAX_BATCH, "items": _ENVELOPE_SCHEMA}


def _body(schema: dict[str, Any], example: Any, description: str) -> dict[str, Any]:
    """The request body, documented by hand: routes read it as bytes, not as a model."""
    return {"requestBody": {"required": True, "description": description, "content": {
        "application/json": {"schema": schema, "example": example}}}}


_TOO_LARGE = problems.example("payload-too-large", 413,
                              "the request body is larger than 1048576 bytes; split it into "
                              "smaller batches")
_BAD_JSON = problems.example("bad-json", 400,
                             "the envelope is not valid JSON: Expecting value at line 1 column 1")
_UNKNOWN_KEY = problems.example(
    "unknown-key", 422,
    "key 1db40a6df2fe7c3aa76c9693eb6a9cfe2555dbb37258e11f53de63166d5b3fb1 is not registered")
_CONFLICT = problems.example(
    "id-conflict", 409, "statement id 0b6f3d2e-8c1a-4f5e-9d7b-2a4c6e8f1b3d was recorded at "
    "entry 42 with different content")
_NOT_FOUND = problems.example("not-found", 404, "entry 99 does not exist (the log has 43 entries)")
_BAD_INDEX = problems.example(
    "invalid-request", 400, "path parameter index: Input should be a valid integer",
    **{"invalid-params": [{"name": "index", "in": "path",
                           "reason": "Input should be a valid integer"}]})


@router.post(
    "/entries",
    status_code=status.HTTP_201_CREATED,
    summary="Record one envelope",
    responses={
        200: {"model": ReceiptPublic, "description": "Recorded before: the original receipt"},
        201: {"description": "Recorded now", "headers": {
            "Location": {"description": "/v1/entries/{index}", "schema": {"type": "string"}}}},
        **problems.responses(_BAD_JSON, _CONFLICT, _TOO_LARGE, _UNKNOWN_KEY),
    },
    openapi_extra=_body(_ENVELOPE_SCHEMA, EXAMPLE_ENVELOPE,
                        "a DSSE envelope (PROTOCOL.md §2), at most 1 MiB"),
)
def post_entry(body: BodyDep, ledger: LedgerDep, request: Request,
               response: Response) -> ReceiptPublic:
    """Record one envelope. The same envelope again answers 200 with its original receipt;
    the same statement `id` in a different envelope is a 409 conflict."""
    receipt = ledger.append([body], admit=_admit(request, 1))[0]
    if receipt.duplicate:
        response.status_code = status.HTTP_200_OK
    else:
        response.headers["Location"] = f"{router.prefix}/entries/{receipt.index}"
    return ReceiptPublic.of(receipt)


@router.post(
    "/entries/batch",
    status_code=status.HTTP_201_CREATED,
    summary="Record up to 1,000 envelopes, all or none",
    responses={
        200: {"model": list[BatchReceiptPublic],
              "description": "Every envelope had been recorded before (or the array is empty)"},
        **problems.responses(
            problems.example(
                "bad-signature", 422,
                "envelope 2: the signature by key 1db40a6df2fe7c3aa76c9693eb6a9cfe2555dbb37258e11"
                "f53de63166d5b3fb1 does not verify over this payload and payloadType",
                position=2, errors=[{
                    "position": 2, "type": problems.problem_type("bad-signature"),
                    "detail": "the signature by key 1db40a6df2fe7c3aa76c9693eb6a9cfe2555dbb3725"
                              "8e11f53de63166d5b3fb1 does not verify over this payload and "
                              "payloadType"}]),
            problems.example("bad-envelope", 400, "a batch is a JSON array of envelopes"),
            _CONFLICT | {"position": 0, "errors": [{
                "position": 0, "type": problems.problem_type("id-conflict"),
                "detail": _CONFLICT["detail"]}]},
            _TOO_LARGE,
        ),
    },
    openapi_extra=_body(_BATCH_SCHEMA, [EXAMPLE_ENVELOPE],
                        "a JSON array of up to 1,000 envelopes, at most 1 MiB"),
)
def post_batch(body: BodyDep, ledger: LedgerDep, request: Request,
               response: Response) -> list[BatchReceiptPublic]:
    """Record the envelopes in array order, all or none. A refusal names the bad envelopes
    by their 0-based position (`position`, `errors`) and records nothing."""
    items = split_json_array(body)
    admit = _admit(request, len(items))
    try:
        receipts = ledger.append(items, admit=admit)
    except UnknownKeys as e:
        raise RejectedBatch(e, e.others) from None  # every one named already, by one query
    except Rejected as e:
        raise _name_every_bad_envelope(ledger, items, e) from None
    if all(r.duplicate for r in receipts):
        response.status_code = status.HTTP_200_OK
    return [BatchReceiptPublic.of(r) for r in receipts]


def _admit(request: Request, envelopes: int) -> Admit | None:
    """Charges the client's address for `envelopes` (429 if it has used its allowance),
    and returns the check of the signing keys' allowances, which the ledger makes once
    they are known to be registered and before any signature is verified."""
    limits: WriteLimits | None = request.app.state.write_limits
    if limits is None:
        return None
    limits.charge_client(client_of(request.scope), max(1, envelopes))
    return limits.admit_keys


def _name_every_bad_envelope(ledger: Ledger, items: list[str], first: Rejected) -> Rejected:
    """The ledger stops at the first bad envelope. The envelopes after it that fail a check
    needing no ledger state are named too (each is prepared alone); ledger rules are not run
    for them, as they would be judged against a state that will not exist."""
    if first.kind is Rejection.TOO_MANY:
        return first
    start = first.position if first.position is not None else 0
    first.at(start)  # the ledger names no position in a batch of one
    others: list[Rejected] = []
    if start < len(items):
        try:
            ledger.prepare([items[start]])
        except Rejected:
            pass
        else:
            # The first fault needed ledger state (a rule, a signature), so the ledger had
            # read the whole batch without fault first: there is nothing more to find, and
            # reading a batch of garbage signatures twice would double what it costs.
            return RejectedBatch(first, others)
    for position in range(start + 1, len(items)):  # none before `first` failed these checks
        try:
            ledger.prepare([items[position]])
        except Rejected as e:
            others.append(e.at(position))
    return RejectedBatch(first, others)


@router.get(
    "/entries/{index:segment}",
    summary="One log entry",
    responses=problems.responses(_NOT_FOUND, _BAD_INDEX),
)
def get_entry(index: Index, ledger: LedgerDep) -> EntryPublic:
    """The entry of PROTOCOL.md §3 (`envelope`, `recorded_at`) plus `index` and `leaf_hash`."""
    return EntryPublic.of(ledger.entry(index))


@router.get(
    "/entries/{index:segment}/proof",
    summary="One log entry with its inclusion proof and checkpoint",
    responses=problems.responses(_NOT_FOUND, _BAD_INDEX),
)
def get_entry_proof(index: Index, ledger: LedgerDep) -> EntryProofPublic:
    """The entry, its RFC 9162 inclusion proof, and the latest signed checkpoint, whose tree
    size and root the proof leads to: verify the checkpoint with the log key, then the proof."""
    stored = ledger.entry(index)
    # Read after the entry: a checkpoint covering it was committed with it.
    checkpoint = ledger.checkpoint()
    size = parse_checkpoint(checkpoint).size  # our own note: read, not verified
    if index >= size:
        raise NotFound(f"no signed checkpoint covers entry {index} yet (latest: size {size})")
    return EntryProofPublic(
        **FeedEntryPublic.of(stored).model_dump(),
        inclusion=[h.hex() for h in ledger.inclusion_proof(index, size)],
        checkpoint=checkpoint,
    )
