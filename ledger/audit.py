"""`qledger audit`: re-verify a whole ledger from entry 0, trusting nothing in its database.

1. Every stored entry is read in index order; its index, its leaf hash and its
   canonical form are checked against its own bytes.
2. Every entry is replayed into a fresh ledger (a temporary SQLite file) with the
   recording time it had: signatures and every rule are checked against the state at
   that point, exactly as when it was first recorded.
3. The RFC 9162 tree is recomputed from the entries and compared with the stored tree
   and with the latest signed checkpoint (signature checked against the log key).

Problems are collected, each naming the entry index where there is one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ledger import keys
from ledger.application import Ledger
from ledger.canonical import canonical_bytes
from ledger.errors import LedgerError, Rejected, VerificationError
from ledger.log.hasher import leaf_hash
from ledger.log.tree import Frontier
from ledger.log.verify import verify_checkpoint
from ledger.timefmt import parse_time

CHUNK = 1000


@dataclass(frozen=True)
class Problem:
    index: int | None
    detail: str

    def __str__(self) -> str:
        return f"entry {self.index}: {self.detail}" if self.index is not None else self.detail


@dataclass
class AuditReport:
    size: int = 0
    checkpoint_size: int | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def bad_indexes(self) -> list[int]:
        return sorted({p.index for p in self.problems if p.index is not None})


def audit(
    source: Ledger,
    *,
    trusted_log_key: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> AuditReport:
    """Audit `source`. `trusted_log_key` is the verifier key string the auditor holds;
    without it the one recorded in the ledger is used (and a rewritten config would go
    unnoticed: say so to the operator)."""
    report = AuditReport()
    config = source.config
    log_key = trusted_log_key or config.log_key
    if trusted_log_key and trusted_log_key != config.log_key:
        report.problems.append(Problem(None, "the log key recorded in the ledger is not the trusted one"))
    size = report.size = source.size()
    latest = source.recorder.latest_checkpoint()  # type: ignore[attr-defined]
    frontier = Frontier()
    checkpoint_root: bytes | None = None
    checkpoint_size: int | None = None
    if latest is not None:
        try:
            checkpoint = verify_checkpoint(latest[1], log_key, origin=config.origin)
            checkpoint_size = report.checkpoint_size = checkpoint.size
            checkpoint_root = checkpoint.root_hash
        except VerificationError as e:
            report.problems.append(Problem(None, f"the latest checkpoint does not verify: {e}"))
    else:
        report.problems.append(Problem(None, "the ledger has no signed checkpoint"))

    with tempfile.TemporaryDirectory(prefix="qledger-audit-") as scratch:
        replica = Ledger(os.path.join(scratch, "replica.db"), log_key=keys.generate_private_key())
        run = _Run(source, replica, config, frontier, report, checkpoint_size)
        for start in range(0, size, CHUNK):
            for event in source._appended(start, min(start + CHUNK, size)):
                run.take(event)
            run.flush()
            if progress:
                progress(frontier.size, size)
        replica.close()
        roots = run.roots
    if checkpoint_size is not None and checkpoint_root is not None:
        if checkpoint_size > size:
            report.problems.append(Problem(
                None, f"the latest checkpoint covers {checkpoint_size} entries but the log holds "
                f"{size}: entries were deleted"))
        elif roots.get(checkpoint_size, frontier.root() if checkpoint_size == 0 else None) != checkpoint_root:
            report.problems.append(Problem(
                None, f"the entries do not hash to the root signed in the checkpoint at size "
                f"{checkpoint_size}: the log was rewritten"))
    try:
        stored_root = source.root_at(size)
        if stored_root != frontier.root():
            report.problems.append(Problem(None, "the stored Merkle tree does not match the entries"))
    except LedgerError as e:
        report.problems.append(Problem(None, f"the stored Merkle tree is incomplete: {e}"))
    return report


class _Run:
    """One pass over the stored log: entries are gathered into chunks and replayed."""

    def __init__(self, source: Ledger, replica: Ledger, config: Any, frontier: Frontier,
                 report: AuditReport, checkpoint_size: int | None) -> None:
        self.source, self.replica, self.config = source, replica, config
        self.frontier, self.report, self.checkpoint_size = frontier, report, checkpoint_size
        self.replaying = True
        self.roots: dict[int, bytes] = {}
        self.expected = 0
        self._reset()

    def _reset(self) -> None:
        self.start = self.expected
        self.envelopes: list[Any] = []
        self.stamps: list[tuple[datetime, str]] = []
        self.texts: list[str] = []
        self.leaves: list[bytes] = []

    def problem(self, index: int | None, detail: str) -> None:
        self.report.problems.append(Problem(index, detail))

    def take(self, e: Any) -> None:
        index = e.originator_version - 1
        if index != self.expected:
            # Rows deleted behind the ledger's back: keep later entries at their indexes.
            self.flush()
            for missing in range(self.expected, index):
                self.problem(missing, "missing from the log (deleted)")
                self._add_leaf(leaf_hash(b""))
                if self.replaying:
                    self.replica.record_unverified(missing, "", e.timestamp)
            self.expected = index
            self._reset()
        if e.index != index:
            self.problem(index, f"holds entry {e.index} (reordered)")
        leaf = leaf_hash(e.entry.encode())
        if leaf.hex() != e.leaf_hash:
            self.problem(index, "its bytes do not match its recorded leaf hash (edited)")
        envelope, stamp, problem = _read_entry(e.entry)
        if problem:
            self.problem(index, problem)
        self.envelopes.append(envelope)
        self.stamps.append(stamp or (e.timestamp, ""))
        self.texts.append(e.entry)
        self.leaves.append(leaf)
        self.expected += 1

    def flush(self) -> None:
        if not self.leaves:
            return
        _compare_stored_leaves(self.source, self.start, self.leaves, self.report)
        if self.replaying:
            try:
                _replay(self.replica, self.config, self.envelopes, self.stamps, self.texts,
                        self.start, self.report)
            except _GenesisBroken:
                self.replaying = False
        for leaf in self.leaves:
            self._add_leaf(leaf)
        self._reset()

    def _add_leaf(self, leaf: bytes) -> None:
        self.frontier.append(leaf)
        if self.frontier.size == self.checkpoint_size:
            self.roots[self.frontier.size] = self.frontier.root()


def _read_entry(text: str) -> tuple[Any, tuple[datetime, str] | None, str | None]:
    try:
        entry = json.loads(text)
    except ValueError:
        return None, None, "is not JSON"
    if not isinstance(entry, dict) or set(entry) != {"envelope", "recorded_at"}:
        return None, None, "is not an entry of {envelope, recorded_at}"
    try:
        if canonical_bytes(entry) != text.encode():
            return entry["envelope"], None, "is not in canonical form"
        at = parse_time(entry["recorded_at"])
    except (Rejected, TypeError, ValueError) as e:
        return entry["envelope"], None, f"has a bad recorded_at: {e}"
    return entry["envelope"], (at, entry["recorded_at"]), None


def _compare_stored_leaves(source: Ledger, start: int, leaves: list[bytes], report: AuditReport) -> None:
    coords = [(0, start + i) for i in range(len(leaves))]
    try:
        stored = source.recorder.get_nodes(coords)  # type: ignore[attr-defined]
    except LedgerError:
        stored = {}
    for i, leaf in enumerate(leaves):
        if stored.get((0, start + i)) not in (None, leaf):
            report.problems.append(Problem(start + i, "the stored tree holds another leaf hash for it"))
        elif (0, start + i) not in stored:
            report.problems.append(Problem(start + i, "its leaf is missing from the stored tree"))


def _replay(
    replica: Ledger, config: Any, envelopes: list[Any], stamps: list[tuple[datetime, str]],
    texts: list[str], start: int, report: AuditReport,
) -> None:
    """Replay a chunk; on a rejection, replay up to it, put the bad entry in the replica's
    log unapplied, and go on after it, so one bad entry does not hide the rest."""
    position, end = 0, len(envelopes)
    while position < end:
        genesis = start + position == 0
        stop = min(position + 2, end) if genesis else end
        try:
            if genesis:
                replica.replay(envelopes[position:stop], stamps[position:stop],
                               origin=config.origin, root_org=config.root_org)
            else:
                replica.replay(envelopes[position:stop], stamps[position:stop])
            position = stop
        except Rejected as e:
            bad = position + (e.position or 0)
            if bad > position and not genesis:
                replica.replay(envelopes[position:bad], stamps[position:bad])
            report.problems.append(Problem(start + bad, f"fails on replay: [{e.kind.value}] {e.detail}"))
            if genesis:
                raise _GenesisBroken() from None
            replica.record_unverified(start + bad, texts[bad], stamps[bad][0])
            position = bad + 1


class _GenesisBroken(Exception):
    """Entries 0 and 1 do not start a ledger: nothing after them can be replayed."""
