"""`qledger audit`: re-verify a whole ledger from entry 0, trusting nothing in its database.

1. Every stored entry is read in index order; its index, its leaf hash and its
   canonical form are checked against its own bytes.
2. Every entry is applied again, with the recording time it had, by the ledger's own
   rule code to aggregates held in memory: signatures and every rule are checked
   against the state at that point, exactly as when it was first recorded. Nothing is
   written anywhere. Signatures are verified by worker processes on every core, a
   chunk ahead of the rules, which wait for a chunk's results before applying it (an
   entry whose signature fails is not applied, as the writer would not have).
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

Problems are collected, each naming the entry index where there is one.
"""

from __future__ import annotations

import hashlib
import json
import os
from base64 import b64decode
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import project_aggregate
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent

from ledger.application import (
    MAX_FUTURE,
    format_recorded_at,
    Ledger,
    Submission,
    authenticate,
    authenticate_genesis,
    check_genesis,
    entry_bytes,
    envelope_jcs,
    statement_key,
)
from ledger.canonical import canonical_bytes
from ledger.domain.base import recording
from ledger.domain.ids import LEDGER_ID, LOG_ID
from ledger.domain.key import Key
from ledger.domain.log import UNVERIFIED
from ledger.envelope import Envelope
from ledger.errors import IdConflict, LedgerError, Rejected, Rejection, VerificationError
from ledger.keys import key_id
from ledger.log.hasher import leaf_hash
from ledger.log.tree import Frontier
from ledger.log.verify import verify_checkpoint
from ledger.parallel import ParallelVerifier, Pending
from ledger.rules import RULES, Context, may_refuse_after_a_change
from ledger.statement_types import StatementType as T
from ledger.statements import Statement, parse_statement
from ledger.store import StatementRow
from ledger.timefmt import parse_time
from ledger.unit_of_work import InMemoryState

CHUNK = 1000
# Past this many, problems of one kind (stored tree nodes, aggregates) are counted, not
# listed: a rewritten table would otherwise print millions of lines.
MAX_LISTED = 100
AGGREGATE_PAGE = 10_000
_PREFIX = len('{"envelope":')


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

    verifier = ParallelVerifier((os.cpu_count() or 1) if workers is None else workers)
    # On PostgreSQL the next chunk is read while this one is checked: the server's work
    # and the wire then overlap the rules instead of stalling them (BENCHMARKS.md has
    # the runs, which vary by ±10 points). SQLite reads in-process, so a thread would only
    # contend with the rules for the interpreter: there the next chunk is read inline.
    reader = ThreadPoolExecutor(1, thread_name_prefix="audit-read") if source.database.is_postgres else None
    try:
        run = _Run(source, config, frontier, report, checkpoint_size, verifier)
        ahead = _read_ahead(reader, source, 0, min(CHUNK, size))
        for start in range(0, size, CHUNK):
            events, run.stored = ahead.result()
            if start + CHUNK < size:
                ahead = _read_ahead(reader, source, start + CHUNK, min(start + 2 * CHUNK, size))
            for event in events:
                run.take(event)
            run.flush()
            if progress:
                progress(frontier.size, size)
        run.finish()
    finally:
        if reader is not None:
            reader.shutdown(cancel_futures=True)
        verifier.close()
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


@dataclass(frozen=True)
class _Stored:
    """What the database holds beside the entries of indexes start ≤ i < stop: the tree
    nodes those entries complete, and the statements table's rows of their statement ids."""

    start: int
    stop: int
    nodes: Mapping[tuple[int, int], bytes]
    rows: Mapping[bytes, StatementRow]


def _read_chunk(source: Ledger, start: int, stop: int) -> tuple[list[Any], _Stored]:
    """The stored entries start < version ≤ stop, that is indexes start ≤ i < stop (rows
    deleted behind the ledger's back leave gaps), and what is stored beside them, read
    from the tables themselves (no cache)."""
    events = source._appended(start, stop)
    recorder: Any = source.recorder
    nodes = recorder.nodes_completed_in(start, stop)
    keys = []
    for e in events:
        try:
            keys.append(statement_key(e.statement_id))
        except (ValueError, AttributeError):  # an audit's stand-in, or an edited event
            pass
    return events, _Stored(start, stop, nodes, recorder.find_statements(keys))


def _read_ahead(reader: ThreadPoolExecutor | None, source: Ledger, start: int,
                stop: int) -> Future[tuple[list[Any], _Stored]]:
    """_read_chunk in the reading thread, or now, when there is none."""
    if reader is not None:
        return reader.submit(_read_chunk, source, start, stop)
    done: Future[tuple[list[Any], _Stored]] = Future()
    done.set_result(_read_chunk(source, start, stop))
    return done


@dataclass
class _Entry:
    """An entry read back for replay: None where it could not be parsed."""

    index: int
    text: str
    stamp: tuple[datetime, str]
    submission: Submission | None = None
    # The time the writer gave the entry's events: its log event's, to the microsecond
    # (recorded_at keeps milliseconds), when the two agree.
    events_at: datetime | None = None


@dataclass
class _Chunk:
    entries: list[_Entry]
    pending: Pending | None


class _Run:
    """One pass over the stored log: entries are checked, gathered into chunks, their
    signatures handed to the workers, and the previous chunk's rules applied."""

    def __init__(self, source: Ledger, config: Any, frontier: Frontier, report: AuditReport,
                 checkpoint_size: int | None, verifier: ParallelVerifier) -> None:
        self.source, self.config = source, config
        self.frontier, self.report, self.checkpoint_size = frontier, report, checkpoint_size
        self.verifier = verifier
        self.replaying = True
        self.roots: dict[int, bytes] = {}
        self.expected = 0
        self.state = _Replayed(source.mapper)
        self.public_keys: dict[str, bytes] = {}  # keyid -> raw key, from key.registered
        self.recorded: dict[bytes, int] = {}  # statement id -> index of its entry
        self.statements: dict[int, Statement] = {}  # of the chunks in hand
        self.waiting: _Chunk | None = None
        self.stored: _Stored | None = None  # read ahead with the chunk
        # The statement id each entry's row is keyed by, 16 bytes an entry (zeros: none
        # expected), to tell left-over rows of the statements table from the entries'.
        self.keys = bytearray()
        self.rows_in_place = 0  # rows found at their entry's index
        self.tree_problems = 0
        self._reset()

    def _reset(self) -> None:
        self.start = self.expected
        self.entries: list[_Entry] = []
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
                self.keys += bytes(16)
                if missing < 2:
                    self.replaying = False  # no genesis, nothing to replay against
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
        entry = _Entry(index, e.entry, stamp or (e.timestamp, ""))
        if stamp is not None:
            if format_recorded_at(e.timestamp) == stamp[1]:
                entry.events_at = e.timestamp
            else:
                self.problem(index, f"its log event is timed {e.timestamp.isoformat()}, "
                             f"not at its recorded_at {stamp[1]}")
        if isinstance(envelope, Rejected):
            self._refused(index, envelope)
        elif envelope is not None:
            try:
                statement = parse_statement(envelope.statement)
                entry.submission = Submission(envelope, statement, b"", b"",
                                              statement_key(statement.id))
            except Rejected as r:
                self._refused(index, r)
        self._check_row(e, entry, leaf)
        self.entries.append(entry)
        self.leaves.append(leaf)
        self.expected += 1

    def _check_row(self, e: Any, entry: _Entry, leaf: bytes) -> None:
        """The entry's row in the statements table: keyed by its statement id, it holds
        the entry's index, the digest of its envelope, its recording time and its leaf
        hash; a resubmission of the statement is answered with these."""
        index = entry.index
        if entry.submission is None:
            if e.statement_id != f"{UNVERIFIED}{index}":  # what readers take it to be
                self.problem(index, f"its log event names statement {e.statement_id!r}, "
                             "but its envelope holds no readable statement")
            self.keys += bytes(16)  # no row: neither an audit's stand-in nor a bad entry
            return
        statement_id = entry.submission.statement.id
        if e.statement_id != statement_id:
            self.problem(index, f"its log event names statement {e.statement_id}, "
                         f"but its envelope holds statement {statement_id}")
        key = entry.submission.key
        self.keys += key
        assert self.stored is not None
        row = self.stored.rows.get(key)
        if row is None:
            self.problem(index, f"statement {statement_id} has no row in the statements "
                         "table (a resubmission would not get its receipt)")
            return
        _, at, digest, recorded_at, row_leaf = row
        envelope = entry.text[_PREFIX:entry.text.rfind(',"recorded_at":')].encode()
        wrong = [what for what, bad in (
            (f"index {at}", at != index),
            ("another envelope digest", digest != hashlib.sha256(envelope).digest()),
            (f"recorded_at {recorded_at!r}", recorded_at != entry.stamp[1]),
            (f"leaf hash {row_leaf.hex()}", row_leaf != leaf),
        ) if bad]
        if wrong:
            self.problem(index, f"the statements table's row of statement {statement_id} "
                         f"holds {', '.join(wrong)}: a resubmission would get a wrong receipt")
        if at == index:
            self.rows_in_place += 1

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
        self.problem(index, f"fails on replay: [{e.kind.value}] {e.detail}")

    def flush(self) -> None:
        if not self.leaves:
            return
        for leaf in self.leaves:
            self._add_leaf(leaf)
        if self.replaying:
            chunk = _Chunk(self.entries, self._start_verifying(self.entries))
            # The workers check this chunk's signatures while the rules run on the last.
            self._apply_waiting()
            self.waiting = chunk
        self._reset()

    def finish(self) -> None:
        self.flush()
        self._apply_waiting()

    def _add_leaf(self, leaf: bytes) -> None:
        assert self.stored is not None  # read with the chunk, before any take
        stored = self.stored.nodes
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

    def _start_verifying(self, entries: list[_Entry]) -> Pending | None:
        """Hand every signature by a key registered anywhere so far to the workers (a
        key id names one public key for ever); whether the key was registered and
        active at that entry is for the rules."""
        jobs, owners = [], []
        for entry in entries:
            sub = entry.submission
            if sub is None:
                continue
            s = sub.statement
            if s.type == T.KEY_REGISTERED:
                self.public_keys[key_id(s.body["public_key"])] = s.body["public_key"]
            for sig in sub.envelope.signatures:
                public_key = self.public_keys.get(sig.keyid)
                if public_key is not None:
                    jobs.append((public_key, sig.sig, sub.envelope.message()))
                    owners.append((entry.index, sig.keyid))
        # One task per worker: the audit has a whole chunk's rules to apply meanwhile and
        # is seldom left waiting, so small tasks bought little and cost their round trips
        # (2-3 points of its ratio to the verify rate, within the noise but in every run).
        return self.verifier.begin(jobs, owners, task=None)

    def _apply_waiting(self) -> None:
        chunk, self.waiting = self.waiting, None
        if chunk is None or not self.replaying:
            return
        failed = set(chunk.pending.failures()) if chunk.pending is not None else set()
        covered = chunk.pending.covered if chunk.pending is not None else set()
        previous = self.statements
        self.statements = {}
        for entry in chunk.entries:
            if entry.submission is None or not self.replaying:
                continue
            if entry.index < 2:
                self._apply_genesis(chunk.entries, entry)
                continue
            try:
                self._apply(entry, entry.submission, covered, failed, previous)
            except Rejected as e:
                self.state.undo()
                self._refused(entry.index, e)

    def _apply(self, entry: _Entry, sub: Submission, covered: set[tuple[int, str]],
               failed: set[tuple[int, str]], previous: dict[int, Statement]) -> None:
        s = sub.statement
        index = entry.index
        now = entry.stamp[0]
        key = statement_key(s.id)
        if key in self.recorded:
            # A statement seen before is an entry recorded twice: a fault on replay.
            raise IdConflict(s.id, self.recorded[key])
        if s.issued_at > now + MAX_FUTURE:
            raise Rejected(
                Rejection.FUTURE_STATEMENT,
                f"issued_at {s.issued_at.isoformat()} is more than 5 minutes ahead "
                f"of the ledger's clock ({now.isoformat(timespec='seconds')})",
            )

        def check_signature(keyid: str, k: Key) -> None:
            if (index, keyid) in failed:
                raise Rejected(
                    Rejection.BAD_SIGNATURE,
                    f"the signature by key {keyid} does not verify over this payload and payloadType",
                )
            if (index, keyid) not in covered:
                sub.envelope.verify(keyid, b64decode(k.public_key))

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
            signer = authenticate(self.state, sub.envelope, s, now, check_signature)
            self.state.careful = may_refuse_after_a_change(s)
            RULES[s.type](Context(self.state, s, signer, index, now, read_statement))  # type: ignore[arg-type]
        self.state.keep()
        self.recorded[key] = index
        self.statements[index] = s

    def _apply_genesis(self, entries: list[_Entry], entry: _Entry) -> None:
        """Entries 0 and 1 start the ledger; if they do not, nothing after them can be
        replayed."""
        pair = [e.submission for e in entries[:2] if e.index < 2 and e.submission is not None]
        try:
            if len(pair) != 2:
                raise Rejected(Rejection.BAD_FIELDS, "a ledger starts with exactly two entries")
            check_genesis(pair, self.config.root_org)  # type: ignore[arg-type]
            sub = entry.submission
            assert sub is not None
            s = sub.statement
            with recording(entry.events_at or entry.stamp[0]):
                signer = authenticate_genesis(self.state, sub, pair, entry.index)  # type: ignore[arg-type]
                RULES[s.type](Context(self.state, s, signer, entry.index, entry.stamp[0],  # type: ignore[arg-type]
                                      self.source.statement_at))
            self.state.keep()
            self.recorded[statement_key(s.id)] = entry.index
        except Rejected as e:
            self.state.undo()
            self._refused(entry.index, e)
            self.replaying = False


def _read_entry(text: str) -> tuple[Envelope | Rejected | None, tuple[datetime, str] | None, str | None]:
    """The entry's envelope (or why it is not one), recording time, and what is wrong
    with the entry's form, if anything."""
    try:
        entry = json.loads(text)
    except ValueError:
        return None, None, "is not JSON"
    if not isinstance(entry, dict) or set(entry) != {"envelope", "recorded_at"}:
        return None, None, "is not an entry of {envelope, recorded_at}"
    envelope: Envelope | Rejected
    try:
        envelope = Envelope.from_json(entry["envelope"])
    except Rejected as e:
        envelope = e
    recorded_at = entry["recorded_at"]
    try:
        # A valid envelope's canonical form is built as the writer builds it; the
        # comparison with the stored text is what proves the entry canonical.
        if isinstance(envelope, Envelope) and type(recorded_at) is str:
            canonical = entry_bytes(envelope_jcs(envelope), recorded_at)
        else:
            canonical = canonical_bytes(entry)
        if canonical != text.encode():
            return envelope, None, "is not in canonical form"
        at = parse_time(recorded_at)
    except (Rejected, TypeError, ValueError) as e:
        return envelope, None, f"has a bad recorded_at: {e}"
    return envelope, (at, recorded_at), None


class _Replayed(InMemoryState):
    """The replay's aggregates, and a digest of the events each was made by: the events
    of an entry that is kept are encoded as the writer encodes them (LedgerMapper) and
    chained into their aggregate's digest; those of a refused entry are not."""

    def __init__(self, mapper: Any) -> None:
        super().__init__()
        self.digests: dict[UUID, bytes] = {}
        self._mapper = mapper

    def keep(self) -> None:
        digests, encode = self.digests, self._mapper.to_stored_event
        for aggregate in self._touched:
            if aggregate._pending_events:
                digest = digests.get(aggregate.id, b"")
                for event in aggregate._pending_events:
                    stored = encode(event)
                    digest = _chain(digest, stored.originator_version, stored.topic, stored.state)
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
