"""`qledger audit`: re-verify a whole ledger from entry 0, trusting nothing in its database.

1. Every stored entry is read in index order; its index, its leaf hash and its
   canonical form are checked against its own bytes.
2. Every entry is applied again, with the recording time it had, by the ledger's own
   rule code to aggregates held in memory: signatures and every rule are checked
   against the state at that point, exactly as when it was first recorded. Nothing is
   written anywhere. Signatures are verified by worker processes on every core, a
   few chunks ahead of the rules, which wait for a chunk's results before applying it
   (an entry whose signature fails is not applied, as the writer would not have).
3. The RFC 9162 tree is recomputed from the entries, chunk by chunk; every stored node
   (leaves and interior nodes alike: proofs are built from them) is compared with it,
   and the root with the latest signed checkpoint (signature checked against the log key).
4. Every entry's row in the statements table (what idempotency answers a resubmission
   with) is compared with the entry, and the table is counted: no row may be left over.
5. Every aggregate's stored events (what the writer loads it from, and what readers
   such as key histories read) are compared with the events the replay made: a digest
   of each aggregate's stream, both sides encoded as the writer encodes them. Where one
   differs, the stored events are projected as the writer would load them and compared
   field by field with the replay's aggregate, to name the field.

Only the log is read here. The read-side views are checked against a rebuild of them
by traceability.viewcheck; `qledger audit` runs both.

Steps 1 and 4 and the signatures need no replayed state: ledger/audit_entries.py
does them, in the worker processes, which read the database themselves. This process
is left with what must run in order: the rules, the tree, the aggregates.

Problems are collected, each naming the entry index where there is one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.application import project_aggregate
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent

from ledger.application import Ledger
from ledger.audit_entries import CheckedEntry, EntryChecker, refusal
from ledger.authentication import authenticate, check_not_ahead
from ledger.domain.base import recording
from ledger.domain.ids import LEDGER_ID, LOG_ID
from ledger.domain.key import Key
from ledger.envelope import signature_failure
from ledger.errors import IdConflict, LedgerError, Rejected, Rejection, VerificationError
from ledger.genesis import authenticate_genesis, check_genesis
from ledger.intake import Submission
from ledger.log.hasher import leaf_hash
from ledger.log.tree import Frontier
from ledger.log.verify import verify_checkpoint
from ledger.rules import RULES, Context, may_refuse_after_a_change
from ledger.statements import Statement
from ledger.unit_of_work import InMemoryState

CHUNK = 1000
# Past this many, problems of one kind (stored tree nodes, aggregates) are counted, not
# listed: a rewritten table would otherwise print millions of lines.
MAX_LISTED = 100
AGGREGATE_PAGE = 10_000


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
    workers: int | None = None,
) -> AuditReport:
    """Audit `source`. `trusted_log_key` is the verifier key string the auditor holds;
    without it the one recorded in the ledger is used (and a rewritten config would go
    unnoticed: say so to the operator). `workers`: signature-checking processes
    (default: one per core; 0 checks them in this process)."""
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

    checker = EntryChecker(source, (os.cpu_count() or 1) if workers is None else workers)
    try:
        run = _Run(source, config, frontier, report, checkpoint_size)
        for chunk in checker.chunks(size, CHUNK):
            run.nodes = chunk.nodes
            for entry in chunk.entries:
                run.take(entry)
            run.flush()
            if progress:
                progress(frontier.size, size)
    finally:
        checker.close()
    roots = run.roots
    run.check_leftovers()
    if run.replaying:
        _compare_aggregates(source, run.state, report)  # type: ignore[arg-type]
    else:
        report.problems.append(Problem(None, "the aggregates were not compared with the "
                                       "database: the log could not be replayed"))
    report.problems.sort(key=lambda p: -1 if p.index is None else p.index)
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
    """One pass over the stored log: the checked entries are taken in order, their
    leaves added to the tree, and each chunk's rules applied."""

    def __init__(self, source: Ledger, config: Any, frontier: Frontier, report: AuditReport,
                 checkpoint_size: int | None) -> None:
        self.source, self.config = source, config
        self.frontier, self.report, self.checkpoint_size = frontier, report, checkpoint_size
        self.replaying = True
        self.roots: dict[int, bytes] = {}
        self.expected = 0
        self.state = _Replayed(source.mapper)
        self.recorded: dict[bytes, int] = {}  # statement id -> index of its entry
        self.statements: dict[int, Statement] = {}  # of the last chunk applied
        # The stored tree nodes the chunk in hand completes (read with it).
        self.nodes: Mapping[tuple[int, int], bytes] = {}
        # The statement id each entry's row is keyed by, 16 bytes an entry (zeros: none
        # expected), to tell left-over rows of the statements table from the entries'.
        self.keys = bytearray()
        self.rows_in_place = 0  # rows found at their entry's index
        self.tree_problems = 0
        self._reset()

    def _reset(self) -> None:
        self.entries: list[CheckedEntry] = []
        self.leaves: list[bytes] = []

    def problem(self, index: int | None, detail: str) -> None:
        self.report.problems.append(Problem(index, detail))

    def take(self, entry: CheckedEntry) -> None:
        index = entry.index
        if index != self.expected:
            # Rows deleted behind the ledger's back: keep later entries at their indexes.
            self.flush()
            for missing in range(self.expected, index):
                self.problem(missing, "missing from the log (deleted)")
                self._add_leaf(leaf_hash(b""))
                self.keys += bytes(16)
                if missing < 2:
                    self.replaying = False  # no genesis, nothing to replay against
            self.expected = index
        for problem in entry.problems:
            self.problem(index, problem)
        self.keys += entry.key
        self.rows_in_place += entry.row_in_place
        self.entries.append(entry)
        self.leaves.append(entry.leaf)
        self.expected += 1

    def check_leftovers(self) -> None:
        """Stored tree nodes past the log's end, and rows of the statements table that
        belong to no entry (found by counting: a scan only when the count is off)."""
        recorder: Any = self.source.recorder
        size = self.expected
        for level, idx in recorder.nodes_beyond(size, MAX_LISTED):
            self.problem(None, f"the stored tree holds node (level {level}, index {idx}), "
                         f"which no entry of the {size} completes")
        if recorder.count_statements() == self.rows_in_place:
            return
        after, listed = b"", 0
        while rows := recorder.statement_rows_after(after, 10_000):
            for key, at, *_ in rows:
                if not (0 <= at < size and self.keys[16 * at: 16 * at + 16] == key):
                    listed += 1
                    if listed <= MAX_LISTED:
                        self.problem(None, f"the statements table holds a row for statement "
                                     f"{UUID(bytes=key)} at index {at}, which is not that "
                                     "entry's statement (left over or added)")
            after = rows[-1][0]
        if listed > MAX_LISTED:
            self.problem(None, f"… and {listed - MAX_LISTED} more such rows of the statements "
                         "table")

    def _refused(self, index: int, e: Rejected) -> None:
        self.problem(index, refusal(e))

    def flush(self) -> None:
        """The entries taken so far: their leaves into the tree, their rules applied."""
        if not self.leaves:
            return
        for leaf in self.leaves:
            self._add_leaf(leaf)
        if self.replaying:
            self._apply_all(self.entries)
        self._reset()

    def _add_leaf(self, leaf: bytes) -> None:
        stored = self.nodes
        for level, idx, value in self.frontier.append(leaf):
            found = stored.get((level, idx))
            if found != value:
                self._tree_problem(level, idx, found is None)
        if self.frontier.size == self.checkpoint_size:
            self.roots[self.frontier.size] = self.frontier.root()

    def _tree_problem(self, level: int, idx: int, missing: bool) -> None:
        """A stored node that is not the one recomputed from the entries: proofs built
        from it fail against the checkpoints."""
        if level == 0:
            self.problem(idx, "its leaf is missing from the stored tree" if missing
                         else "the stored tree holds another leaf hash for it")
            return
        self.tree_problems += 1
        if self.tree_problems <= MAX_LISTED:
            first, stop = idx << level, (idx + 1) << level
            self.problem(None, f"the stored tree's node (level {level}, index {idx}) over entries "
                         f"{first}-{stop - 1} is " + ("missing" if missing else
                         "not the hash recomputed from those entries"))
        elif self.tree_problems == MAX_LISTED + 1:
            self.problem(None, "… and more stored tree nodes that are missing or differ")

    def _apply_all(self, entries: list[CheckedEntry]) -> None:
        previous = self.statements
        self.statements = {}
        for entry in entries:
            if entry.statement is None or not self.replaying:
                continue
            if entry.index < 2:
                self._apply_genesis(entries, entry)
                continue
            try:
                self._apply(entry, entry.statement, previous)
            except Rejected as e:
                self.state.undo()
                self._refused(entry.index, e)

    def _apply(self, entry: CheckedEntry, s: Statement, previous: dict[int, Statement]) -> None:
        index = entry.index
        now = entry.stamp[0]
        key = entry.key
        if key in self.recorded:
            # A statement seen before is an entry recorded twice: a fault on replay.
            raise IdConflict(s.id, self.recorded[key])
        check_not_ahead(s, now)

        def check_signature(keyid: str, k: Key) -> None:
            if keyid in entry.failed:
                raise signature_failure(keyid)
            if keyid in entry.unchecked:  # its key was not found where the entry was checked
                assert entry.envelope is not None  # kept for this
                entry.envelope.verify(keyid, k.public_key_bytes())

        def read_statement(i: int) -> Statement:
            found = self.statements.get(i) or previous.get(i)
            if found is not None:
                return found
            try:
                return self.source.statement_at(i)
            except Rejected:
                raise
            except LedgerError as e:
                raise Rejected(Rejection.UNKNOWN_ENTRY, f"entry {i} cannot be read: {e}") from None

        # The events carry the entry's recording time, as the writer's did.
        with recording(entry.events_at or now):
            signer = authenticate(self.state, entry.keyids, s, now, check_signature)
            self.state.careful = may_refuse_after_a_change(s)
            RULES[s.type](Context(self.state, s, signer, index, now, read_statement))  # type: ignore[arg-type]
        self.state.keep()
        self.recorded[key] = index
        self.statements[index] = s

    def _apply_genesis(self, entries: list[CheckedEntry], entry: CheckedEntry) -> None:
        """Entries 0 and 1 start the ledger; if they do not, nothing after them can be
        replayed."""
        pair = [_submission(e) for e in entries[:2] if e.index < 2 and e.statement is not None]
        try:
            if len(pair) != 2:
                raise Rejected(Rejection.BAD_FIELDS, "a ledger starts with exactly two entries")
            check_genesis(pair, self.config.root_org)
            sub = _submission(entry)
            s = sub.statement
            with recording(entry.events_at or entry.stamp[0]):
                signer = authenticate_genesis(self.state, sub, pair, entry.index)
                RULES[s.type](Context(self.state, s, signer, entry.index, entry.stamp[0],  # type: ignore[arg-type]
                                      self.source.statement_at))
            self.state.keep()
            self.recorded[entry.key] = entry.index
        except Rejected as e:
            self.state.undo()
            self._refused(entry.index, e)
            self.replaying = False


def _submission(entry: CheckedEntry) -> Submission:
    """Entry 0 or 1 as the genesis checks take it (its envelope is kept for them)."""
    assert entry.envelope is not None and entry.statement is not None
    return Submission(entry.envelope, entry.statement, b"", b"", entry.key)

class _Replayed(InMemoryState):
    """The replay's aggregates, and a digest of the events each was made by: the events
    of an entry that is kept are encoded as the writer encodes them (LedgerMapper) and
    chained into their aggregate's digest; those of a refused entry are not."""

    def __init__(self, mapper: Any) -> None:
        super().__init__()
        self.digests: dict[UUID, bytes] = {}
        self._mapper = mapper

    def keep(self) -> None:
        digests, encode = self.digests, self._mapper.encoded
        for aggregate in self._touched:
            if aggregate._pending_events:
                digest = digests.get(aggregate.id, b"")
                for event in aggregate._pending_events:
                    digest = _chain(digest, *encode(event))
                digests[aggregate.id] = digest
                aggregate._pending_events.clear()
        super().keep()

    def undo(self) -> None:
        for aggregate in self._touched:
            aggregate._pending_events.clear()
        super().undo()


def _page_ahead(reader: ThreadPoolExecutor | None, recorder: Any, after: tuple[Any, int],
                skip: tuple[UUID, ...]) -> Future[list[Any]]:
    if reader is not None:
        return reader.submit(recorder.aggregate_events_after, after, skip, AGGREGATE_PAGE)
    done: Future[list[Any]] = Future()
    done.set_result(recorder.aggregate_events_after(after, skip, AGGREGATE_PAGE))
    return done


def _chain(digest: bytes, version: int, topic: str, state: bytes) -> bytes:
    """The digest of a stream, one stored event further."""
    return hashlib.sha256(b"%b%d\n%b\n%b" % (digest, version, topic.encode(), state)).digest()


def _compare_aggregates(source: Ledger, state: _Replayed, report: AuditReport) -> None:
    """Every stored stream but the log's and the config's (the ledger keeps no
    snapshots), read through in (id, version) order a page at a time, against the
    replay's digests; a stream that differs is projected by the library, as the writer
    loads it, and compared with the replay's aggregate to name the fields."""
    replayed = state.aggregates()
    digests = state.digests
    recorder: Any = source.recorder
    mapper = source.mapper
    listed = 0

    def compare(rows: list[tuple[Any, int, str, bytes]]) -> None:
        nonlocal listed
        raw = rows[0][0]
        aggregate_id = raw if isinstance(raw, UUID) else UUID(raw)
        expected = replayed.pop(aggregate_id, None)
        digest = b""
        for _, version, topic, state in rows:
            digest = _chain(digest, version, topic, state)
        if expected is not None and digest == digests.get(aggregate_id):
            return
        stored = [StoredEvent(aggregate_id, version, topic, bytes(state))
                  for _, version, topic, state in rows]
        try:
            found = project_aggregate(None, [mapper.to_domain_event(s) for s in stored])
        except Exception as e:  # whatever an edited event makes the library raise
            found, problem = None, f"its stored events cannot be loaded: {type(e).__name__}: {e}"
        else:
            problem = _difference(found, expected) or (
                "its stored events are not those the replay makes, in what the aggregate "
                "does not keep (an entry number, say): readers of its history see them")
        listed += 1
        if listed <= MAX_LISTED:
            name = _name(expected or found, aggregate_id, rows[0][2])
            report.problems.append(Problem(None, f"{name}: {problem}"))

    # On PostgreSQL the next page is read while this one is hashed (as the entries are).
    reader = (ThreadPoolExecutor(1, thread_name_prefix="audit-read")
              if source.database.is_postgres else None)
    skip = (LOG_ID, LEDGER_ID)
    try:
        after: tuple[Any, int] = (UUID(int=0), 0)
        ahead = _page_ahead(reader, recorder, after, skip)
        current: list[Any] = []
        while page := ahead.result():
            ahead = _page_ahead(reader, recorder, (page[-1][0], page[-1][1]), skip)
            for row in page:
                if current and row[0] != current[0][0]:
                    compare(current)
                    current = []
                current.append(row)
        if current:
            compare(current)
    finally:
        if reader is not None:
            reader.shutdown(cancel_futures=True)
    for aggregate_id, aggregate in replayed.items():
        listed += 1
        if listed <= MAX_LISTED:
            report.problems.append(Problem(
                None, f"{_name(aggregate, aggregate_id, '')}: the replay makes it, but the "
                "database holds no events of it"))
    if listed > MAX_LISTED:
        report.problems.append(Problem(
            None, f"… and {listed - MAX_LISTED} more aggregates that differ"))


def _name(aggregate: Aggregate | None, aggregate_id: UUID, topic: str) -> str:
    kind = type(aggregate).__name__ if aggregate is not None else topic.rsplit(":", 1)[-1]
    own = type(aggregate).__str__ is not object.__str__ if aggregate is not None else False
    return f"{kind} {aggregate_id}" + (f" ({aggregate})" if own else "")


def _difference(found: Aggregate | None, expected: Aggregate | None) -> str | None:
    """What differs between the aggregate loaded from the database and the replay's,
    field by field, or None."""
    if expected is None:
        return "the database holds events of it, but no entry makes it"
    if found is None or type(found) is not type(expected):
        return (f"its stored events make a {type(found).__name__}, the replay a "
                f"{type(expected).__name__}")
    stored, replayed = vars(found), vars(expected)
    fields = [f for f in {**replayed, **stored} if f != "_pending_events"
              and stored.get(f, _ABSENT) != replayed.get(f, _ABSENT)]
    if not fields:
        return None
    return "; ".join(f"{f.lstrip('_')} is {stored.get(f, _ABSENT)!r} in the database, "
                     f"{replayed.get(f, _ABSENT)!r} on replay" for f in fields)


class _Absent:
    def __repr__(self) -> str:
        return "absent"


_ABSENT = _Absent()
