"""Dispute cases over HTTP (DISPUTES.md): the case record and its evidence bundle."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from api import problems
from api.case_exports import TOO_LARGE, CaseExports, exports_of, refusal, stream
from api.export_pool import ExportsBusy
from api.deps import ViewsDep
from ledger.statement_types import StatementType as T
from traceability import bundle, cases
from traceability.evidence import Selection
from traceability.export_cache import ExportRefused

router = APIRouter(prefix="/v1/cases", tags=["cases"])

CASE_EXAMPLE = {
    "case": "FJ-12315-2026-0457", "respondent": "91350102MA2Y00004P",
    "opened_by": "91350102MA2Y00007M", "status": "resolved", "finding": "substantiated",
    "summary": "消费者经12315反映吐司口感异常，超市下架并投诉", "channel": "12315",
    "opened_entry": 54, "resolved_entry": 55,
    "statements": [
        {"entry": 54, "type": T.CASE_OPENED, "by": "91350102MA2Y00007M",
         "recorded_at": "2026-11-23T09:00:00.000Z"},
        {"entry": 55, "type": T.CASE_RESOLVED, "by": "11350000MB0000001X",
         "recorded_at": "2026-11-28T09:00:00.000Z"},
    ],
    "batches": [{"gtin": "06920023000105", "lot": "BR20261028-B"}],
}
BUNDLE_EXAMPLE = {
    "bundle_version": 1,
    "case": "FJ-12315-2026-0457",
    "checkpoint": "demo.qledger.example/v1\n57\nPm0y…=\n\n— demo.qledger.example/v1 Ab3x…\n",
    "entries": [
        {"entry": {"envelope": {"payload": "eyJieSI6…", "payloadType":
                                "application/vnd.qledger.statement+json",
                                "signatures": [{"keyid": "874b…", "sig": "lqMZ…"}]},
                   "recorded_at": "2026-11-23T09:00:00.000Z"},
         "inclusion": ["ecfa…", "b4a2…"], "index": 54},
    ],
    "generated_at": "2026-11-30T10:00:00.000Z",
    "log_key": "demo.qledger.example/v1+1a2b3c4d+AQ…",
    "manifest": "demo.qledger.example/v1/bundle\ncase FJ-12315-2026-0457\n57\nPm0y…=\n"
                "k3Jd…=\n\n— demo.qledger.example/v1 Ab3x…\n",
    "signers": {"874b…": {"org": "91350102MA2Y00007M", "public_key": "NZ9J…=",
                          "registered_by_entry": 15}},
    "timeline": [{"at": "2026-11-23T09:00:00Z", "index": 54, "type": T.CASE_OPENED,
                  "summary": "91350102MA2Y00007M opens case FJ-12315-2026-0457 against "
                             "91350102MA2Y00004P (12315) about 06920023000105/BR20261028-B: …"}],
}
_NOT_FOUND = problems.responses(
    problems.example("not-found", 404, "case FJ-12315-2026-0999 was never opened"))
_TOO_LARGE = problems.responses(problems.example(
    TOO_LARGE, 403, "the bundle of case FJ-12315-2026-0457 would hold 23000 entries; this "
    "server publishes bundles of at most 20000 (its operator can write larger ones with "
    "`qledger bundle --case`)"))
ExportsDep = Annotated[CaseExports, Depends(exports_of)]


@router.get("/{case_id:segment}", summary="A dispute case: its parties, statements and batches",
            responses={200: {"content": {"application/json": {"example": CASE_EXAMPLE}}},
                       **_NOT_FOUND})
def case(case_id: str, views: ViewsDep) -> dict[str, Any]:
    """The case as its statements left it: open or resolved, with the finding."""
    return cases.case_view(views, case_id).to_json()


@router.get(
    "/{case_id:segment}/bundle",
    summary="The evidence bundle of a dispute case (DISPUTES.md)",
    response_class=Response,
    responses={200: {"content": {"application/json": {"example": BUNDLE_EXAMPLE}},
                     "description": "The bundle, in its one byte form (RFC 8785 JCS); "
                                    "`qledger verify-bundle` checks it offline"},
               **_NOT_FOUND, **_TOO_LARGE},
)
async def case_bundle(case_id: str, views: ViewsDep, exports_: ExportsDep) -> Response:
    """Every entry that touches the case, each with its inclusion proof against one signed
    checkpoint, the keys that signed them with the entries registering those keys back to
    the root regulator, a timeline, and the manifest: the ledger's signed note of which
    entries it selected, so that none can be cut out unseen. The bytes are served as
    written: re-encoding the JSON (pretty-printing it) makes the bundle fail verification.

    Built on the export pool and streamed (503 with Retry-After when the pool is full),
    then kept until the case's entries change: an append elsewhere in the log serves the
    same bundle, with the checkpoint it was built at, against which its proofs and
    manifest still verify. A case whose bundle would hold more than the server's bound
    (`QLEDGER_BUNDLE_MAX_ENTRIES`, 20,000 entries by default) is refused with a 403
    `export-too-large` problem naming the bound."""
    def build(selection: Selection) -> dict[str, bytes]:
        data = bundle.case_bundle(views, case_id, exports_.bundle_max_entries,
                                  selection).to_bytes()
        return {"bundle.json": data}

    try:
        _, (file,) = await exports_.open(views, "bundle", case_id, "", ["bundle.json"], build)
    except (ExportsBusy, ExportRefused) as e:
        return refusal(e)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", case_id)[:100]
    disposition = f'attachment; filename="case-{name}.bundle.json"'
    return stream(file, "application/json", {"Content-Disposition": disposition})
