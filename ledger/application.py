"""The ledger application: verifies signed statements, applies the rules, appends to the log.

One `append()` call is one transaction: every envelope of the batch is recorded, in
order, or none is. Log indexes, aggregate versions and Merkle nodes are claimed
optimistically; when another process got there first, the whole batch is checked
again against the new state and retried.
"""

from __future__ import annotations

import gc
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import Mapper, RecordConflictError, Transcoder

from ledger.authentication import authenticate, check_not_ahead
from ledger.domain.base import recording
from ledger.domain.ids import LEDGER_ID
from ledger.domain.key import Key
from ledger.domain.log import UNVERIFIED, LedgerConfig, appended
from ledger.domain.organization import Organization
from ledger.envelope import signature_failure
from ledger.errors import (
    IdConflict,
    InvalidRequest,
    LedgerError,
    NotFound,
    Rejected,
    Rejection,
    StorageError,
)
from ledger.genesis import authenticate_genesis, check_genesis
from ledger.intake import (
    Admit,
    Intake,
    Submission,
)
from ledger.log.checkpoint import verifier_key
from ledger.log.entry_format import (
    entry_bytes,
    format_recorded_at,
)
from ledger.log.hasher import leaf_hash
from ledger.log.tree import Frontier
from ledger.log_reads import LogReads, Receipt
from ledger.parallel import Pending
from ledger.provable_log import ProvableLog
from ledger.references import references
from ledger.rules import RULES, Context
from ledger.statements import Statement
from ledger.store import Database, StatementRow, WriterLock
from ledger.transcoding import LedgerMapper, LedgerTranscoder
from ledger.unit_of_work import UnitOfWork

MAX_RETRIES = 20
# Envelopes the writer applies between looks at the workers' verdicts so far (a task's
# worth, ledger/parallel.py TASK).
CHECK_VERDICTS_EVERY = 64

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def collecting_after() -> Iterator[None]:
    """No cyclic garbage collection while a batch is recorded; one afterwards.

    A batch allocates tens of thousands of containers (parsed JSON, events, stored
    events), and most of them live until it ends, so the collector would run a hundred
    times per batch to traverse young objects it cannot free. Reference counting
    frees everything else as usual, and the next allocation after the batch runs the
    collection the batch skipped. The collector is turned on again only if it was on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Ledger(LogReads, ProvableLog, Application[UUID]):
    name = "qledger"
    env = {
        # Aggregates are looked up by id on every statement; keep the hot ones in memory.
        # Fast-forwarding keeps cached aggregates current when other processes write.
        "AGGREGATE_CACHE_MAXSIZE": "50000",
        "AGGREGATE_CACHE_FASTFORWARD": "y",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
    }

    def __init__(
        self,
        database: Database | str | None = None,
        *,
        clock: Clock = utc_now,
        log_key: Ed25519PrivateKey | None = None,
    ) -> None:
        if not isinstance(database, Database):
            database = Database.from_env(database)
        self.database = database
        try:
            with database.prepared():
                super().__init__(env=database.env())
        except LedgerError:
            raise
        except Exception as e:  # the library raises its own errors for a bad database
            raise StorageError(f"cannot open the ledger {database.describe()}: {e}") from None
        self.clock = clock
        self._log_key = log_key
        # Only `scripts/bench log` turns this off, to measure what the tree costs.
        self.maintain_tree = True
        self._known_size = 0
        self.intake = Intake(self.recorder)
        # Called with the last notification id after each commit, before the writer gets
        # its receipts: how views updated in this process give read-your-writes.
        self.after_commit: list[Callable[[int], None]] = []
        self._write_lock = threading.Lock()
        self._writer_lock = WriterLock(database)  # the same, across processes
        self._frontier: Frontier | None = None
        self._config: LedgerConfig | None = None

    def construct_transcoder(self) -> Transcoder:
        return LedgerTranscoder()

    def construct_mapper(self) -> Mapper[UUID]:
        return LedgerMapper(
            self.construct_transcoder(),
            compressor=self.factory.compressor(),
            cipher=self.factory.cipher(),
        )

    # ---- reading ---------------------------------------------------------------

    @property
    def config(self) -> LedgerConfig:
        if self._config is None:
            try:
                self._config = self.repository.get(LEDGER_ID)
            except AggregateNotFoundError:
                raise NotFound(
                    f"no ledger in {self.database.describe()}; create one with `qledger init`"
                ) from None
        return self._config

    def is_created(self) -> bool:
        try:
            self.config
        except NotFound:
            return False
        return True

    # ---- writing ---------------------------------------------------------------

    def create(
        self, origin: str, log_key: Ed25519PrivateKey, root_org: str, genesis: Sequence[Any]
    ) -> list[Receipt]:
        """Create the ledger: its config, then the root regulator's registration and key
        as entries 0 and 1, both signed by that key (CLI.md `init`). The origin is also
        the name of the log key in signed checkpoints."""
        if self.size() > 0 or self.is_created():
            raise Rejected(Rejection.LEDGER_NOT_EMPTY, f"{self.database.describe()} holds a ledger already")
        submissions = self.prepare(genesis)  # no key is known yet: nothing to verify ahead
        check_genesis(submissions, root_org)
        verifier = verifier_key(origin, log_key.public_key().public_bytes_raw())
        config = LedgerConfig(origin=origin, log_key=verifier, root_org=root_org)
        self._config = config
        self._log_key = log_key
        try:
            return self._append(submissions, extra=[config], genesis=True)
        except BaseException:
            self._config = self._log_key = None  # nothing was created
            raise

    def append(self, envelopes: Sequence[Any], admit: Admit | None = None) -> list[Receipt]:
        """Record up to 1,000 envelopes in order, all or nothing.

        Raises Rejected (with `position` set for the envelope at fault) and records
        nothing if any envelope fails a check. An envelope recorded before gets its
        first receipt again (`duplicate=True`) and is not recorded twice. `admit` (the
        HTTP API's rate limit per key) sees the parsed batch once every key it names is
        known to be registered, before any signature is checked, and may raise to refuse it.
        """
        self.config  # noqa: B018 - a ledger must exist before anything is appended
        with collecting_after():
            submissions, pending = self.intake.prepare_verifying(envelopes, admit, submitted=True)
            receipts = self._append(submissions, pending=pending)
            # Freed here, not traversed by the collection that follows the batch.
            del submissions, pending
        return receipts

    def replay(
        self, envelopes: Sequence[Any], stamps: Sequence[tuple[datetime, str]],
        *, origin: str | None = None, root_org: str | None = None,
    ) -> list[Receipt]:
        """Record envelopes again with the recording times they had in another ledger,
        checking every rule as of those times (audit and import). With `origin` and
        `root_org` the envelopes start a new ledger: the first two are its genesis."""
        with collecting_after():
            submissions, pending = self.intake.prepare_verifying(envelopes)
            if origin is None:
                self.config  # noqa: B018
                return self._append(submissions, stamps=stamps, pending=pending)
            if root_org is None or self.size() > 0 or self.is_created():
                raise Rejected(Rejection.LEDGER_NOT_EMPTY, "replaying a genesis needs an empty ledger")
            check_genesis(submissions, root_org)
            verifier = verifier_key(origin, self.log_key().public_key().public_bytes_raw())
            config = LedgerConfig(origin=origin, log_key=verifier, root_org=root_org)
            self._config = config
            return self._append(
                submissions, extra=[config], genesis=True, stamps=stamps, pending=pending
            )

    def record_unverified(self, index: int, text: str, at: datetime) -> None:
        """Put an entry in the log without applying it: the audit's stand-in for an entry
        that failed, so later entries keep their indexes."""
        with self._write_lock:
            frontier = self.frontier()
            if frontier.size != index:
                raise InvalidRequest(f"entry {index} cannot follow a log of {frontier.size}")
            leaf = leaf_hash(text.encode())
            nodes = frontier.append(leaf)
            event = appended(index, text, leaf.hex(), f"{UNVERIFIED}{index}", at)
            self._save(self._stored_events([], [self.mapper.to_stored_event(event)]), nodes, None)

    def prepare(self, envelopes: Sequence[Any]) -> list[Submission]:
        """Every check that needs no ledger state: shape, encoding, canonical form, fields."""
        return self.intake.prepare(envelopes)

    def _append(
        self,
        submissions: list[Submission],
        extra: Iterable[Any] = (),
        genesis: bool = False,
        stamps: Sequence[tuple[datetime, str]] | None = None,
        pending: Pending | None = None,
    ) -> list[Receipt]:
        with self._write_lock, self._writer_lock.held(self.recorder):
            for attempt in range(MAX_RETRIES):
                uow = UnitOfWork(self.repository)
                try:
                    return self._append_once(uow, submissions, list(extra), genesis, stamps, pending)
                except RecordConflictError:
                    # Another process appended first: start again from its state, after
                    # a random pause that grows with each loss, so that one writer
                    # among several busy ones is not beaten to the lock every time.
                    uow.discard()
                    self._frontier = None
                    time.sleep(random.uniform(0, min(0.2, 0.002 * 2 ** attempt)))
                except BaseException:
                    uow.discard()
                    raise
            raise StorageError(
                "gave up after repeated write conflicts: the ledger is very busy, or its "
                "database was altered behind its back (run `qledger audit`)"
            )

    def _append_once(
        self,
        uow: UnitOfWork,
        submissions: list[Submission],
        extra: list[Any],
        genesis: bool,
        stamps: Sequence[tuple[datetime, str]] | None,
        pending: Pending | None = None,
    ) -> list[Receipt]:
        """`stamps` (the audit's replay) gives each entry the recording time it had;
        otherwise the whole batch is recorded now."""
        now = self.clock()
        recorded_at = format_recorded_at(now)
        if self.maintain_tree:
            current = self.frontier()
            frontier = Frontier(current.size, current.hashes)  # a copy: kept if the save succeeds
            next_index = frontier.size
        else:
            frontier, next_index = Frontier(), self.size()
        receipts: list[Receipt] = []
        entries: list[Any] = []  # the log's stored events
        nodes: list[tuple[int, int, bytes]] = []
        in_batch: dict[str, tuple[bytes, Receipt]] = {}
        rows: list[StatementRow] = []  # the statements table's
        mapper: LedgerMapper = self.mapper  # type: ignore[assignment]
        statements: dict[int, Statement] = {}

        def read_statement(index: int) -> Statement:
            return statements[index] if index in statements else self.statement_at(index)

        uow.prefetch(i for sub in submissions for i in references(sub.envelope, sub.statement))
        known = self.recorder.find_statements([sub.key for sub in submissions])  # type: ignore[attr-defined]
        with recording(now) as recording_time:
            for position, sub in enumerate(submissions):
                s = sub.statement
                if pending is not None and position and position % CHECK_VERDICTS_EVERY == 0:
                    # The workers' verdicts so far: a bad signature before here is the
                    # first fault, and nothing after it need be done.
                    _raise_signature_failure(pending, submissions, before=position, wait=False)
                if stamps is not None:
                    now, recorded_at = stamps[position]
                    recording_time(now)
                try:
                    earlier = _earlier_receipt(sub, in_batch, known, replaying=stamps is not None)
                    if earlier is not None:
                        receipts.append(earlier)
                        continue
                    index = next_index
                    check_not_ahead(s, now)
                    signer = (
                        authenticate_genesis(uow, sub, submissions, index)
                        if genesis
                        else self._authenticate(uow, sub, now, position, pending)
                    )
                    RULES[s.type](Context(uow, s, signer, index, now, read_statement))
                except Rejected as e:
                    # A bad signature earlier in the batch, still being checked by a
                    # worker, is the first fault to report.
                    _raise_signature_failure(pending, submissions, before=position)
                    raise e.at(position) if len(submissions) > 1 else e
                text = entry_bytes(sub.envelope_bytes, recorded_at)
                leaf = leaf_hash(text)
                if self.maintain_tree:
                    nodes.extend(frontier.append(leaf))
                entries.append(mapper.stored_entry(index, text, leaf, s.id, now))
                receipt = Receipt(index, recorded_at, leaf)
                rows.append((sub.key, index, sub.digest, recorded_at, leaf))
                next_index += 1
                in_batch[s.id] = (sub.digest, receipt)
                statements[index] = s
                receipts.append(receipt)
        # Encoding the events needs no verdict on the signatures: it is done while the
        # workers may still be verifying, and thrown away if one fails.
        stored = self._stored_events(extra + uow.changed(), entries) if entries or extra else []
        _raise_signature_failure(pending, submissions, before=len(submissions))
        if entries or extra:
            self._commit(stored, nodes, rows, frontier, next_index - len(entries), next_index)
        return receipts

    def _commit(self, stored: list[Any], nodes: list[tuple[int, int, bytes]],
                rows: list[StatementRow], frontier: Frontier, before: int, after: int) -> None:
        # The checkpoint for the new size commits with the entries: a checkpoint
        # covering an entry exists as soon as its append is acknowledged.
        checkpoint = (
            (frontier.size, self._sign_checkpoint(frontier.size, frontier.root()))
            if self.maintain_tree else None
        )
        self._save(stored, nodes, checkpoint, rows)
        self._frontier = frontier if self.maintain_tree else None
        if statistics_due(before, after):
            self.recorder.refresh_statistics()  # type: ignore[attr-defined]

    def _stored_events(self, aggregates: list[Any], entries: list[Any]) -> list[Any]:
        """The aggregates' new events, encoded, then the log's (stored already)."""
        stored = []
        for aggregate in aggregates:
            stored.extend(map(self.mapper.to_stored_event, aggregate.collect_events()))
        stored.extend(entries)
        return stored

    def _save(
        self, stored: list[Any], nodes: list[Any],
        checkpoint: tuple[int, str] | None, statements: list[Any] | None = None,
    ) -> None:
        # Application.save() checks every object against runtime Protocols, and the
        # library's EventStore.put wraps every stored event in a Recording and a
        # Notification, of which only the last notification id is used here: together
        # more than the rest of recording an entry. The recorder is the library's.
        ids = self.recorder.insert_events(
            stored, merkle_nodes=nodes, checkpoint=checkpoint, statements=statements or []
        )
        if ids and self.after_commit:
            last = max(ids)
            for follower in self.after_commit:
                follower(last)

    def close(self) -> None:
        self.intake.verifier.close()
        super().close()

    def _authenticate(
        self, uow: UnitOfWork, sub: Submission, now: datetime, position: int = 0,
        pending: Pending | None = None,
    ) -> Organization:
        def check_signature(keyid: str, key: Key) -> None:
            if pending is None or (position, keyid) not in pending.covered:
                public_key = key.public_key_bytes()
                sub.envelope.verify(keyid, public_key)
                self.intake.public_keys[keyid] = public_key

        return authenticate(uow, [sig.keyid for sig in sub.envelope.signatures], sub.statement,
                            now, check_signature)


STATISTICS_FROM = 1 << 12


def statistics_due(before: int, after: int) -> bool:
    """Whether a count that grew from `before` to `after` (the log's entries; the views'
    notification ids) passed a power of two of at least STATISTICS_FROM: the planner's
    statistics are refreshed then, a dozen times on the way to ten million entries, each
    costing a sample of every table."""
    return after >= STATISTICS_FROM and after.bit_length() > before.bit_length()


def _earlier_receipt(sub: Submission, in_batch: dict[str, tuple[bytes, Receipt]],
                     known: dict[bytes, StatementRow], *, replaying: bool) -> Receipt | None:
    """The first receipt of a statement recorded before, earlier in the batch or in the
    ledger, when `sub` is the same envelope again; None for a statement not seen before.
    The same id under another envelope is a conflict; on replay (audit, import) a
    statement seen before is an entry recorded twice: a fault, never a receipt."""
    s = sub.statement
    if s.id in in_batch:
        digest, receipt = in_batch[s.id]
        if digest != sub.digest or replaying:
            raise IdConflict(s.id, receipt.index)
        return receipt
    record = known.get(sub.key)
    if record is None:
        return None
    _, first_index, digest, first_recorded_at, first_leaf = record
    if digest != sub.digest or replaying:
        raise IdConflict(s.id, first_index)
    return Receipt(first_index, first_recorded_at, first_leaf, True)


def _raise_signature_failure(
    pending: Pending | None, submissions: list[Submission], before: int, wait: bool = True,
) -> None:
    """Raises the first signature that failed, if it is before `before`; `wait` False:
    among the verdicts the workers have given so far."""
    if pending is None:
        return
    for position, keyid in pending.failures() if wait else pending.failures_known():
        if position < before:
            error = signature_failure(keyid)
            raise error.at(position) if len(submissions) > 1 else error
        return
