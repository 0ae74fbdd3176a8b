"""The ledger application: verifies signed statements, applies the rules, appends to the log.

One `append()` call is one transaction: every envelope of the batch is recorded, in
order, or none is. Log indexes, aggregate versions and Merkle nodes are claimed
optimistically; when another process got there first, the whole batch is checked
again against the new state and retried.
"""

from __future__ import annotations

import gc
import hashlib
import os
import random
import threading
import time
from base64 import b64decode
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.persistence import Mapper, RecordConflictError, Transcoder

from ledger.canonical import b64encode, canonical_bytes
from ledger.domain.base import recording
from ledger.domain.ids import LEDGER_ID, LOG_ID
from ledger.domain.key import Key
from ledger.domain.log import UNVERIFIED, Appended, LedgerConfig, appended
from ledger.domain.organization import Organization
from ledger.envelope import Envelope, signer_ids
from ledger.envelope import load_json as load_envelope_json
from ledger.keys import key_id, load_private_key
from ledger.log import tree
from ledger.log.checkpoint import Checkpoint, sign_checkpoint, verifier_key
from ledger.log.verify import parse_verifier_key
from ledger.errors import IdConflict, InvalidRequest, LedgerError, NotFound, Rejected, Rejection, StorageError
from ledger.log.hasher import leaf_hash
from ledger.log.tree import Frontier
from ledger.parallel import Feed, ParallelVerifier, Pending
from ledger.references import references
from ledger.rules import RULES, Context
from ledger.statements import Statement, parse_statement
from ledger.store import Database, WriterLock
from ledger.transcoding import LedgerMapper, LedgerTranscoder
from ledger.unit_of_work import UnitOfWork

MAX_BATCH = 1000
MAX_FUTURE = timedelta(minutes=5)
MAX_RETRIES = 20
# Envelopes the writer applies between looks at the workers' verdicts so far (a task's
# worth, ledger/parallel.py TASK).
CHECK_VERDICTS_EVERY = 64

Clock = Callable[[], datetime]
# Called with the number of a batch's envelopes signed by each key id, once every key is
# known to be registered and before any signature is checked; raises to refuse the batch.
Admit = Callable[[Mapping[str, int]], None]


def default_log_key_path(database: Database) -> str:
    """Where `qledger init` writes the log key when not told: beside a SQLite file, else
    (PostgreSQL) log-key.pem in the current folder (CLI.md)."""
    folder = os.getcwd() if database.is_postgres else os.path.dirname(os.path.abspath(database.url))
    return os.path.join(folder, "log-key.pem")


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_recorded_at(at: datetime) -> str:
    """RFC 3339 UTC with milliseconds: entries recorded in one second still sort."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the ledger answers for a recorded envelope (PROTOCOL.md §5)."""

    index: int
    recorded_at: str
    leaf_hash: bytes
    duplicate: bool = False  # the envelope had been recorded before: this is its first receipt

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "recorded_at": self.recorded_at, "leaf_hash": self.leaf_hash.hex()}


@dataclass(frozen=True, slots=True)
class Submission:
    """An envelope that passed every check that needs no ledger state."""

    envelope: Envelope
    statement: Statement
    digest: bytes  # SHA-256 of the envelope's canonical bytes: same id, same digest, same envelope
    envelope_bytes: bytes  # JCS of the envelope
    key: bytes  # the statement id as 16 bytes, how the statements table keys it


class UnknownKeys(Rejected):
    """Rejected(UNKNOWN_KEY) for a batch: the first envelope signed by an unregistered key,
    and the others (`others`), all found by one look-up (Ledger.check_keys_registered)."""

    def __init__(self, first: Rejected, others: Sequence[Rejected]) -> None:
        super().__init__(first.kind, first.detail, position=first.position)
        self.others = list(others)


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


def statement_key(statement_id: str) -> bytes:
    # The id was checked to be a lowercase hyphenated UUID; a UUID object costs more.
    return bytes.fromhex(statement_id.replace("-", ""))


def envelope_jcs(envelope: Envelope) -> bytes:
    """JCS(envelope.to_json()), built by concatenation as entry_bytes is: every value is
    the fixed payloadType, base64 or lowercase hex, none needing an escape; JCS orders
    "payload" < "payloadType" < "signatures" and "keyid" < "sig". A quarter of the cost
    of canonicalising the object (tests/test_ledger.py compares the two)."""
    signatures = ",".join(
        f'{{"keyid":"{sig.keyid}","sig":"{b64encode(sig.sig)}"}}' for sig in envelope.signatures
    )
    return (
        f'{{"payload":"{envelope.payload_base64}","payloadType":"{envelope.payload_type}",'
        f'"signatures":[{signatures}]}}'
    ).encode()


def entry_bytes(envelope_bytes: bytes, recorded_at: str) -> bytes:
    """JCS({"envelope": ..., "recorded_at": ...}) (PROTOCOL.md §3), built by concatenation:
    JCS sorts "envelope" before "recorded_at", adds no white space, and a timestamp of
    digits, '-', ':', '.', 'T' and 'Z' needs no escaping. Saves canonicalising twice."""
    return b'{"envelope":' + envelope_bytes + b',"recorded_at":"' + recorded_at.encode() + b'"}'


@dataclass(frozen=True, slots=True)
class StoredEntry:
    index: int
    text: str  # JCS of {"envelope", "recorded_at"}: ASCII
    leaf_hash: bytes

    def to_json(self) -> dict[str, Any]:
        import json

        entry: dict[str, Any] = json.loads(self.text)
        return entry


@dataclass(frozen=True, slots=True)
class KeyHistory:
    """A registered key: its organization and the entries that registered and revoked it."""

    keyid: str
    org: str
    public_key: str  # base64, as registered
    registered_entry: int
    revoked_entries: tuple[int, ...]


class Ledger(Application[UUID]):
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
        self._verifier = ParallelVerifier()
        self._public_keys: dict[str, bytes] = {}  # keyid -> public key: fixed by the hash
        # Key ids found registered: registration is for ever (revocation is an event of
        # the same key), so only ids not in here cost a query (check_keys_registered).
        self._registered_keys: set[str] = set()
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

    def size(self) -> int:
        last = self.recorder.select_events(LOG_ID, desc=True, limit=1)
        return last[0].originator_version if last else 0

    def _appended(self, gt: int, lte: int | None = None) -> list[Appended]:
        stored = self.recorder.select_events(LOG_ID, gt=gt, lte=lte)
        return [self.mapper.to_domain_event(s) for s in stored]  # type: ignore[misc]

    def entry(self, index: int) -> StoredEntry:
        events = self._appended(index, index + 1) if index >= 0 else []
        if not events:
            raise NotFound(f"entry {index} does not exist (the log has {self.size()} entries)")
        e = events[0]
        return StoredEntry(e.index, e.entry, bytes.fromhex(e.leaf_hash))

    def entries(self, start: int, stop: int) -> list[StoredEntry]:
        """Entries start ≤ index < stop, in order."""
        return [
            StoredEntry(e.index, e.entry, bytes.fromhex(e.leaf_hash))
            for e in self._appended(start, stop)
        ]

    def entries_at(self, indexes: Iterable[int]) -> list[StoredEntry]:
        """The entries at the given indexes, in index order (missing ones left out):
        scattered entries of a large log in a few queries, for evidence bundles."""
        versions = sorted({i + 1 for i in indexes if i >= 0})
        stored = self.recorder.select_versions(LOG_ID, versions)  # type: ignore[attr-defined]
        return [
            StoredEntry(e.index, e.entry, bytes.fromhex(e.leaf_hash))
            for e in (self.mapper.to_domain_event(s) for s in stored)
        ]

    def key_history(self, keyids: Iterable[str]) -> dict[str, KeyHistory]:
        """Where each registered key among `keyids` was registered and revoked, in one
        query; keys never registered are left out."""
        ids = {Key.create_id(k): k for k in set(keyids)}
        stored = self.recorder.select_events_after(  # type: ignore[attr-defined]
            [(uid, 0) for uid in ids]
        )
        out: dict[str, KeyHistory] = {}
        for s in stored:
            # The events' fields are those of the decorated methods: untyped to mypy.
            event: Any = self.mapper.to_domain_event(s)
            keyid = ids[s.originator_id]
            if isinstance(event, Key.Registered):
                out[keyid] = KeyHistory(keyid, event.org, event.public_key, event.entry, ())
            elif isinstance(event, Key.Revoked) and keyid in out:
                h = out[keyid]
                out[keyid] = KeyHistory(h.keyid, h.org, h.public_key, h.registered_entry,
                                        (*h.revoked_entries, event.entry))
        return out

    def statement_at(self, index: int) -> Statement:
        stored = self.entry(index)
        envelope = Envelope.from_json(stored.to_json()["envelope"])
        return parse_statement(envelope.statement)

    def receipt(self, statement_id: str) -> Receipt | None:
        try:
            key = statement_key(statement_id)
        except ValueError:
            return None
        row = self.recorder.find_statements([key]).get(key)  # type: ignore[attr-defined]
        return Receipt(row[1], row[3], row[4], True) if row is not None else None

    def frontier(self) -> Frontier:
        """The right edge of the Merkle tree, brought up to date with the log."""
        if self._frontier is None:
            size = self.size()
            self._frontier = Frontier.load(size, self.recorder)  # type: ignore[arg-type]
        for e in self._appended(self._frontier.size):
            self._frontier.append(bytes.fromhex(e.leaf_hash))
        return self._frontier

    # ---- the verifiable log (PROTOCOL.md §3-4) ----------------------------------

    def log_key(self) -> Ed25519PrivateKey:
        """The log signing key: given, else $QLEDGER_LOG_KEY, else log-key.pem where
        `qledger init` writes it (beside a SQLite database; for PostgreSQL, in the
        current folder). Raises StorageError naming the file looked for."""
        if self._log_key is None:
            path = os.environ.get("QLEDGER_LOG_KEY") or default_log_key_path(self.database)
            if not os.path.exists(path):
                raise StorageError(
                    f"no log signing key at {path}: pass --log-key or set QLEDGER_LOG_KEY "
                    "to the PEM file `qledger init` wrote"
                )
            key = load_private_key(Path(path))
            expected = parse_verifier_key(self.config.log_key).public_key
            if key.public_key().public_bytes_raw() != expected:
                raise StorageError(f"{path} is not this ledger's log key")
            self._log_key = key
        return self._log_key

    def _sign_checkpoint(self, size: int, root: bytes) -> str:
        origin = self.config.origin
        return sign_checkpoint(Checkpoint(origin, size, root), origin, self.log_key())

    def checkpoint(self) -> str:
        """The latest signed checkpoint (C2SP signed note)."""
        latest = self.recorder.latest_checkpoint()  # type: ignore[attr-defined]
        if latest is None:
            raise NotFound("the ledger has no checkpoint yet")
        return str(latest[1])

    def checkpoint_at(self, size: int) -> str:
        note = self.recorder.checkpoint_at(size)  # type: ignore[attr-defined]
        if note is None:
            raise NotFound(f"no checkpoint was signed at tree size {size}")
        return str(note)

    def root_at(self, size: int) -> bytes:
        self._check_size(size)
        return tree.root_at(size, self.recorder)  # type: ignore[arg-type]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3 proof that entry `index` is in the tree of `size` entries."""
        self._check_size(size)
        if not 0 <= index < size:
            raise InvalidRequest(f"index {index} is not below tree size {size}")
        return tree.inclusion_proof(index, size, self.recorder)  # type: ignore[arg-type]

    def inclusion_proofs(self, indexes: Sequence[int], size: int) -> dict[int, list[bytes]]:
        """inclusion_proof for many entries of the tree of `size` entries, in a few reads."""
        self._check_size(size)
        for index in indexes:
            if not 0 <= index < size:
                raise InvalidRequest(f"index {index} is not below tree size {size}")
        return tree.inclusion_proofs(indexes, size, self.recorder)  # type: ignore[arg-type]

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """RFC 9162 §2.1.4 proof that the tree of `first` entries is a prefix of `second`."""
        self._check_size(second)
        if not 0 < first <= second:
            raise InvalidRequest(f"need 0 < first <= second, not first={first}, second={second}")
        return tree.consistency_proof(first, second, self.recorder)  # type: ignore[arg-type]

    def _check_size(self, size: int) -> None:
        # The log only grows, so a size seen once stays valid: ask the database only
        # for sizes beyond it.
        if 0 <= size <= self._known_size:
            return
        current = self._known_size = self.size()
        if not 0 <= size <= current:
            raise InvalidRequest(f"tree size {size} is beyond the log's {current} entries")

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
            submissions, pending = self._prepare_verifying(envelopes, admit, submitted=True)
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
            submissions, pending = self._prepare_verifying(envelopes)
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
        return self._prepare(envelopes)

    def _prepare_verifying(
        self, envelopes: Sequence[Any], admit: Admit | None = None, *, submitted: bool = False,
    ) -> tuple[list[Submission], Pending | None]:
        """`prepare`, and the signatures by keys seen before handed to the worker
        processes, which verify them while the writer applies the rules.

        A `submitted` batch passes the cheap checks that need the ledger first (every key
        named is registered; `admit`): a batch under made-up key ids, or over its key's
        rate, costs parsing and one query, never an Ed25519 verification, here or in a
        worker. Those checks need only the key ids, which the envelopes' JSON names
        before anything else is validated: when every id is known to be registered, the
        batch is admitted from its JSON, and the workers start on the first envelopes
        while the writer still validates the rest. Otherwise (a key unknown, or one the
        batch itself registers) the whole batch is validated first and checked after.

        A replay (audit, import) is not checked ahead: its genesis is signed by the key
        its second entry registers, and its rules say the same in their turn."""
        self._check_batch_size(envelopes)
        if submitted:
            loaded = self._admit_from_json(envelopes, admit)
            if loaded is not None:
                return self._prepare_feeding(loaded)
        submissions = self._prepare(envelopes)
        if submitted:
            self.check_keys_registered(submissions)
        if admit is not None:
            admit(Counter(sig.keyid for sub in submissions for sig in sub.envelope.signatures))
        feed = self._verifier.feed()
        for position, sub in enumerate(submissions):
            self._feed(feed, position, sub)
        return submissions, feed.finish()

    def _admit_from_json(self, envelopes: Sequence[Any], admit: Admit | None) -> list[Any] | None:
        """The envelopes' JSON, parsed, once `admit` has let the batch in, when every key
        id it names is registered already; None when the batch must be validated whole
        before it is admitted (JSON that is not an envelope's, a key not known here)."""
        loaded, signers = [], Counter[str]()
        for item in envelopes:
            try:
                obj = load_envelope_json(item)
            except Rejected:
                return None  # _prepare says so at its position, in batch order
            ids = signer_ids(obj)
            if ids is None:
                return None
            signers.update(ids)
            loaded.append(obj)
        self._look_up_keys(signers.keys())
        if not self._registered_keys.issuperset(signers):
            return None
        if admit is not None:
            admit(signers)
        return loaded

    def _prepare_feeding(self, loaded: list[Any]) -> tuple[list[Submission], Pending | None]:
        """`prepare` of an admitted batch, handing each envelope's signatures to the workers
        as soon as it is read; what they have not begun is dropped if the batch is refused."""
        feed = self._verifier.feed()
        submissions = []
        try:
            for position, obj in enumerate(loaded):
                sub = self._submission(obj, position, len(loaded))
                self._feed(feed, position, sub)
                submissions.append(sub)
        except BaseException:
            feed.cancel()
            raise
        return submissions, feed.finish()

    def _feed(self, feed: Feed, position: int, sub: Submission) -> None:
        message = None
        for sig in sub.envelope.signatures:
            public_key = self._public_keys.get(sig.keyid)
            if public_key is not None:
                message = message or sub.envelope.message()
                feed.add((public_key, sig.sig, message), (position, sig.keyid))

    @staticmethod
    def _check_batch_size(envelopes: Sequence[Any]) -> None:
        if len(envelopes) > MAX_BATCH:
            raise Rejected(
                Rejection.TOO_MANY, f"a batch holds at most {MAX_BATCH} envelopes, not {len(envelopes)}"
            )

    def _prepare(self, envelopes: Sequence[Any]) -> list[Submission]:
        self._check_batch_size(envelopes)
        return [self._submission(item, position, len(envelopes))
                for position, item in enumerate(envelopes)]

    @staticmethod
    def _submission(item: Any, position: int, batch: int) -> Submission:
        try:
            envelope = Envelope.from_json(item)
            statement = parse_statement(envelope.statement)
        except Rejected as e:
            raise e.at(position) if batch > 1 else e
        envelope_bytes = envelope_jcs(envelope)
        digest = hashlib.sha256(envelope_bytes).digest()
        return Submission(envelope, statement, digest, envelope_bytes, statement_key(statement.id))

    def _look_up_keys(self, keyids: Iterable[str]) -> None:
        """Adds to the key ids known registered those of `keyids` the ledger holds, with one
        query for the ids not known already."""
        unseen = {keyid for keyid in keyids if keyid not in self._registered_keys}
        if unseen:
            ids = {Key.create_id(keyid): keyid for keyid in unseen}
            stored = self.recorder.select_events_after(  # type: ignore[attr-defined]
                [(uid, 0) for uid in ids]
            )
            self._registered_keys.update(ids[s.originator_id] for s in stored)

    def check_keys_registered(self, submissions: Sequence[Submission]) -> None:
        """Raises Rejected(UNKNOWN_KEY) naming every envelope signed by a key that is not
        registered, neither in the ledger nor by an earlier envelope of the batch.

        The rules say the same later, envelope by envelope, after the signatures before
        it were checked; this says it first, with one query for the keys not seen before.
        Revocation and validity are left to the rules: a registered key stays registered."""
        self._look_up_keys(sig.keyid for sub in submissions for sig in sub.envelope.signatures)
        in_batch: dict[str, int] = {}  # key id -> position of the envelope registering it
        unknown: list[Rejected] = []
        for position, sub in enumerate(submissions):
            for sig in sub.envelope.signatures:
                if sig.keyid not in self._registered_keys and in_batch.get(sig.keyid, position) >= position:
                    unknown.append(Rejected(Rejection.UNKNOWN_KEY,
                                            f"key {sig.keyid} is not registered", position=position))
                    break
            if sub.statement.type == "key.registered":
                with suppress(ValueError):  # a malformed key is the rules' to refuse
                    in_batch.setdefault(key_id(sub.statement.body["public_key"]), position)
        if unknown:
            first = unknown[0]
            if len(submissions) == 1:
                first.position = None  # as every refusal of a single envelope
                raise first
            raise UnknownKeys(first, unknown[1:])

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
        rows: list[tuple[bytes, int, bytes, str, bytes]] = []  # the statements table's
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
                    if s.id in in_batch:
                        digest, receipt = in_batch[s.id]
                        if digest != sub.digest or stamps is not None:
                            raise IdConflict(s.id, receipt.index)
                        receipts.append(receipt)
                        continue
                    record = known.get(sub.key)
                    if record is not None:
                        _, first_index, digest, first_recorded_at, first_leaf = record
                        if digest != sub.digest or stamps is not None:
                            # On replay (audit, import) a statement seen before is an
                            # entry recorded twice: a fault, never a receipt to hand back.
                            raise IdConflict(s.id, first_index)
                        receipts.append(Receipt(first_index, first_recorded_at, first_leaf, True))
                        continue
                    index = next_index
                    if s.issued_at > now + MAX_FUTURE:
                        raise Rejected(
                            Rejection.FUTURE_STATEMENT,
                            f"issued_at {s.issued_at.isoformat()} is more than 5 minutes ahead "
                            f"of the ledger's clock ({now.isoformat(timespec='seconds')})",
                        )
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
            # The checkpoint for the new size commits with the entries: a checkpoint
            # covering an entry exists as soon as its append is acknowledged.
            checkpoint = (
                (frontier.size, self._sign_checkpoint(frontier.size, frontier.root()))
                if self.maintain_tree else None
            )
            self._save(stored, nodes, checkpoint, rows)
            self._frontier = frontier if self.maintain_tree else None
            if statistics_due(next_index - len(entries), next_index):
                self.recorder.refresh_statistics()  # type: ignore[attr-defined]
        return receipts

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
        self._verifier.close()
        super().close()

    def _authenticate(
        self, uow: UnitOfWork, sub: Submission, now: datetime, position: int = 0,
        pending: Pending | None = None,
    ) -> Organization:
        def check_signature(keyid: str, key: Key) -> None:
            if pending is None or (position, keyid) not in pending.covered:
                public_key = b64decode(key.public_key)
                sub.envelope.verify(keyid, public_key)
                self._public_keys[keyid] = public_key

        return authenticate(uow, [sig.keyid for sig in sub.envelope.signatures], sub.statement,
                            now, check_signature)


STATISTICS_FROM = 1 << 12


def statistics_due(before: int, after: int) -> bool:
    """Whether a count that grew from `before` to `after` (the log's entries; the views'
    notification ids) passed a power of two of at least STATISTICS_FROM: the planner's
    statistics are refreshed then, a dozen times on the way to ten million entries, each
    costing a sample of every table."""
    return after >= STATISTICS_FROM and after.bit_length() > before.bit_length()


def authenticate_genesis(
    uow: Any, sub: Submission, submissions: list[Submission], index: int
) -> Organization:
    """Entries 0 and 1 are signed by the root key that entry 1 registers."""
    root_key = submissions[1].statement.body["public_key"]
    sub.envelope.verify(key_id(root_key), root_key)
    if index == 0:
        s = sub.statement
        # The root registers itself: it is its own (root) regulator for this one entry.
        return Organization.register(s.by, "", ["regulator"], s.body["region"], entry=0)
    org = uow.get(Organization, Organization.create_id(sub.statement.by))
    if org is None:  # entry 0 creates it; check_genesis saw to the order
        raise Rejected(Rejection.UNKNOWN_ORG, "entry 1 must follow the root's registration")
    return org


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


def _raise_signature_failure(
    pending: Pending | None, submissions: list[Submission], before: int, wait: bool = True,
) -> None:
    """Raises the first signature that failed, if it is before `before`; `wait` False:
    among the verdicts the workers have given so far."""
    if pending is None:
        return
    for position, keyid in pending.failures() if wait else pending.failures_known():
        if position < before:
            error = Rejected(
                Rejection.BAD_SIGNATURE,
                f"the signature by key {keyid} does not verify over this payload and payloadType",
            )
            raise error.at(position) if len(submissions) > 1 else error
        return


def check_genesis(submissions: list[Submission], root_org: str) -> None:
    if len(submissions) != 2:
        raise Rejected(Rejection.BAD_FIELDS, "a ledger starts with exactly two entries")
    first, second = (s.statement for s in submissions)
    if not (
        first.type == "org.registered"
        and first.by == first.body["uscc"] == root_org
        and "regulator" in first.body["roles"]
    ):
        raise Rejected(
            Rejection.BAD_FIELDS, "entry 0 must register the root regulator, signed by itself"
        )
    if not (second.type == "key.registered" and second.by == second.body["org"] == root_org):
        raise Rejected(Rejection.BAD_FIELDS, "entry 1 must register the root regulator's key")
