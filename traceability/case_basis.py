"""What a case's exports are made of, as one digest: the key its builds are kept under
(traceability.export_cache), so that they are built again when, and only when, it changes.

A case's exports (bundle, spreadsheets, picture, page) show the entries its selection
holds (traceability.evidence, DISPUTES.md) and a few facts the views add about them.
So the basis is a SHA-256 over:

- each selected entry, as its index and leaf hash: the entries themselves, not only
  which ones, so that equal bases mean equal bytes to export. An append anywhere else
  in the log leaves it as it is; a new entry that touches the case (evidence, a ruling,
  a check or shipment of a batch in its trace, a correction of any of those), or one
  that takes an entry out of the selection, changes it;
- the newest correction, anywhere in the log, of an `org.registered` or a
  `batch.produced`: the spreadsheets and the page show organizations' names and regions
  and batches' units and products from the views, also for organizations and batches
  that a selected entry only names (a shipment's receiver, a cited batch), whose
  registration or production may not be selected, so a correction of one need not
  change the selection. Such corrections are rare; each one makes every case's exports
  be built again, which is always right;
- the log key (a bundle carries it) and the version of qledger (a configured cache
  directory outlives a restart, and a new version may write an export otherwise).

The tree size is deliberately not in it: a bundle kept across unrelated appends still
carries the checkpoint it was built at, every proof against it, and a manifest signed
at that size; all of it still verifies, and the selection it states is the case's
selection now, since the basis is unchanged (DISPUTES.md, "The bundle").
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import metadata

from ledger.statement_types import StatementType as T
from traceability.evidence import Selection
from traceability.views import Views

# Corrections of these change what an export reads from the views besides its entries.
_SHOWN_FROM_VIEWS = (T.ORG_REGISTERED.value, T.BATCH_PRODUCED.value)
# Every correction of such a statement, and of those corrections, to any depth.
_NEWEST_FIX = """WITH RECURSIVE fixes(entry) AS (
        SELECT c.correcting FROM v_corrections c JOIN v_entries e ON e.entry = c.corrected
        WHERE e.type IN (?, ?)
        UNION
        SELECT c.correcting FROM fixes f JOIN v_corrections c ON c.corrected = f.entry)
    SELECT MAX(entry) AS newest FROM fixes"""


def case_basis(views: Views, selection: Selection) -> str:
    """The basis of the exports of the case whose entries `selection` holds, as hex."""
    digest = hashlib.sha256(b"qledger case exports\n")
    digest.update(f"{_version()}\n{views.ledger.config.log_key}\n".encode())
    with views.reading() as tx:
        newest = tx.value(_NEWEST_FIX, _SHOWN_FROM_VIEWS)
    digest.update(f"{-1 if newest is None else newest}\n".encode())
    for index in selection.indexes:
        digest.update(index.to_bytes(8, "big") + selection.entries[index].leaf_hash)
    return digest.hexdigest()


@cache
def _version() -> str:
    try:
        return metadata.version("qledger")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"
