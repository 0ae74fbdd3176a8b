"""`qledger audit`, what needs no replayed state: each stored entry checked on its own.

A chunk of the log at a time, and in worker processes that read the database
themselves, so that the audit's own process is left with what must run in order (the
rules, the tree). For each entry (see ledger/audit.py for the whole audit):

1. its log event: its version is its index, and it holds that index and the leaf hash
   of its bytes, and it is timed at the entry's recorded_at;
2. its bytes: JSON, an entry of {envelope, recorded_at} in canonical form, the envelope
   and its statement checked as the writer checks them (the refusal is named);
3. its row in the statements table (what idempotency answers a resubmission with):
   its index, envelope digest, recording time and leaf hash;
4. its signatures, each against the public key of its key id. A key id is the SHA-256
   of its public key, so the key may come from anywhere the hash is checked: the
   chunk's own key registrations, or the database's key records. Whether the key was
   registered and active at that entry is for the rules; a signature whose key is not
   found here is left for them to check (CheckedEntry.unchecked).

The stored Merkle nodes the chunk's leaves complete are read with it, for the
audit's process to compare with the tree it recomputes.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from base64 import b64decode
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

from ledger import keys
from ledger.application import Ledger
from ledger.canonical import canonical_bytes
from ledger.domain.ids import LOG_ID
from ledger.domain.log import UNVERIFIED
from ledger.envelope import Envelope
from ledger.errors import Rejected
from ledger.intake import statement_key
from ledger.keys import key_id
from ledger.log.entry_format import entry_bytes, envelope_jcs, envelope_text, format_recorded_at
from ledger.log.hasher import leaf_hash
from ledger.statement_types import StatementType as T
from ledger.statements import Statement, parse_statement
from ledger.store import StatementRow
from ledger.timefmt import parse_time

_NO_KEY = bytes(16)

# A batch's entries share one recording time: remember the last ones read and written
# (a refusal is not cached, and keeps its message).
_parse_time = lru_cache(maxsize=64)(parse_time)
_format_recorded_at = lru_cache(maxsize=64)(format_recorded_at)

# Below this many entries a ledger is checked in the audit's own process: starting the
# workers (each imports the ledger and opens the database) costs more than they save.
MIN_FOR_WORKERS = 4000

PublicKeys = dict[str, bytes | None]  # key id -> raw public key, None: not found


class CheckedEntry(NamedTuple):
    """An entry as the checks found it (a tuple: tens of thousands cross a pipe a second)."""

    index: int  # the log event's version - 1
    problems: tuple[str, ...]  # what is wrong with it, in the order found
    leaf: bytes  # the leaf hash of its bytes
    stamp: tuple[datetime, str]  # its recorded_at (parsed, as text), or its event's time
    events_at: datetime | None  # the time the writer gave its events, where it agrees
    statement: Statement | None  # None where the entry holds no valid statement
    keyids: tuple[str, ...]  # of its signatures, in order
    key: bytes  # its statement id as 16 bytes (zeros: no statement)
    row_in_place: bool  # its statements-table row is found at its index
    # Tuples, not sets: nearly always empty, and an empty tuple is the cheapest to send.
    failed: tuple[str, ...]  # key ids whose signature does not verify
    unchecked: tuple[str, ...]  # key ids whose signature was not checked here
    # The envelope, where the rules need it: a signature left unchecked, or entry 0 or
    # 1 (the ledger's start, checked against the root key entry 1 registers).
    envelope: Envelope | None

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from a plain tuple: a third cheaper than a named tuple's own way.
        return _entry, (tuple(self),)


def _entry(fields: tuple[Any, ...]) -> CheckedEntry:
    return CheckedEntry._make(fields)


class CheckedChunk(NamedTuple):
    entries: list[CheckedEntry]  # in log order; a deleted row leaves a gap
    nodes: Mapping[tuple[int, int], bytes]  # the stored tree nodes its leaves complete


def refusal(e: Rejected) -> str:
    return f"fails on replay: [{e.kind.value}] {e.detail}"


def check_chunk(source: Ledger, start: int, stop: int, public_keys: PublicKeys) -> CheckedChunk:
    """The entries of indexes start ≤ i < stop, read from the tables themselves (no
    cache), and checked. `public_keys` is a cache, filled as keys are found."""
    recorder: Any = source.recorder
    to_event = source.mapper.to_domain_event
    events: list[Any] = [to_event(s) for s in recorder.select_events(LOG_ID, gt=start, lte=stop)]
    nodes = recorder.nodes_completed_in(start, stop)
    row_keys = []
    for e in events:
        try:
            row_keys.append(statement_key(e.statement_id))
        except (ValueError, AttributeError):  # an audit's stand-in, or an edited event
            pass
    rows = recorder.find_statements(row_keys)
    read = [_read(e, rows) for e in events]
    _find_keys(source, read, public_keys)
    return CheckedChunk([_finish(r, public_keys) for r in read], nodes)


class _Read(NamedTuple):
    index: int
    problems: list[str]
    leaf: bytes
    stamp: tuple[datetime, str]
    events_at: datetime | None
    envelope: Envelope | None  # with a valid statement
    statement: Statement | None
    row_in_place: bool


def _read(e: Any, rows: Mapping[bytes, StatementRow]) -> _Read:
    index = e.originator_version - 1
    problems: list[str] = []
    if e.index != index:
        problems.append(f"holds entry {e.index} (reordered)")
    text: str = e.entry
    leaf = leaf_hash(text.encode())
    if leaf.hex() != e.leaf_hash:
        problems.append("its bytes do not match its recorded leaf hash (edited)")
    envelope, stamp, problem = read_entry(text)
    if problem:
        problems.append(problem)
    events_at = None
    if stamp is not None:
        if _format_recorded_at(e.timestamp) == stamp[1]:
            events_at = e.timestamp
        else:
            problems.append(f"its log event is timed {e.timestamp.isoformat()}, "
                            f"not at its recorded_at {stamp[1]}")
    statement = None
    if isinstance(envelope, Rejected):
        problems.append(refusal(envelope))
        envelope = None
    elif envelope is not None:
        try:
            statement = parse_statement(envelope.statement)
        except Rejected as r:
            problems.append(refusal(r))
            envelope = None
    in_place = _check_row(e, index, text, stamp, leaf, statement, rows, problems)
    return _Read(index, problems, leaf, stamp or (e.timestamp, ""), events_at, envelope,
                 statement, in_place)


def _check_row(e: Any, index: int, text: str, stamp: tuple[datetime, str] | None, leaf: bytes,
               statement: Statement | None, rows: Mapping[bytes, StatementRow],
               problems: list[str]) -> bool:
    """The entry's row in the statements table: keyed by its statement id, it holds
    the entry's index, the digest of its envelope, its recording time and its leaf
    hash; a resubmission of the statement is answered with these. True when the row
    is found at the entry's index."""
    if statement is None:
        if e.statement_id != f"{UNVERIFIED}{index}":  # what readers take it to be
            problems.append(f"its log event names statement {e.statement_id!r}, "
                            "but its envelope holds no readable statement")
        return False
    statement_id = statement.id
    if e.statement_id != statement_id:
        problems.append(f"its log event names statement {e.statement_id}, "
                        f"but its envelope holds statement {statement_id}")
    row = rows.get(statement_key(statement_id))
    if row is None:
        problems.append(f"statement {statement_id} has no row in the statements "
                        "table (a resubmission would not get its receipt)")
        return False
    _, at, digest, recorded_at, row_leaf = row
    envelope = envelope_text(text).encode()
    wrong = [what for what, bad in (
        (f"index {at}", at != index),
        ("another envelope digest", digest != hashlib.sha256(envelope).digest()),
        (f"recorded_at {recorded_at!r}", recorded_at != (stamp[1] if stamp else "")),
        (f"leaf hash {row_leaf.hex()}", row_leaf != leaf),
    ) if bad]
    if wrong:
        problems.append(f"the statements table's row of statement {statement_id} "
                        f"holds {', '.join(wrong)}: a resubmission would get a wrong receipt")
    return bool(at == index)


def read_entry(text: str) -> tuple[Envelope | Rejected | None, tuple[datetime, str] | None, str | None]:
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
        at = _parse_time(recorded_at) if type(recorded_at) is str else parse_time(recorded_at)
    except (Rejected, TypeError, ValueError) as e:
        return envelope, None, f"has a bad recorded_at: {e}"
    return envelope, (at, recorded_at), None


def _find_keys(source: Ledger, read: list[_Read], public_keys: PublicKeys) -> None:
    """The public key of every key id that signed an entry of the chunk, into
    `public_keys`: from the chunk's registrations, else from the database's key records
    (None where there is none); a key is kept only if it hashes to its id."""
    for r in read:
        if r.statement is not None and r.statement.type == T.KEY_REGISTERED:
            public_key = r.statement.body["public_key"]
            public_keys[key_id(public_key)] = public_key
    wanted = {sig.keyid for r in read if r.envelope is not None
              for sig in r.envelope.signatures} - public_keys.keys()
    if not wanted:
        return
    found = source.key_history(wanted)
    for keyid in wanted:
        history = found.get(keyid)
        public_key = None
        if history is not None:
            try:
                raw = b64decode(history.public_key, validate=True)
            except (ValueError, TypeError):
                raw = b""
            if len(raw) == keys.PUBLIC_KEY_BYTES and key_id(raw) == keyid:
                public_key = raw
        public_keys[keyid] = public_key


def _finish(r: _Read, public_keys: PublicKeys) -> CheckedEntry:
    """The entry with its signatures checked."""
    failed: list[str] = []
    unchecked: list[str] = []
    keyids: tuple[str, ...] = ()
    envelope = r.envelope
    if envelope is not None:
        message = envelope.message()
        keyids = tuple(sig.keyid for sig in envelope.signatures)
        for sig in envelope.signatures:
            public_key = public_keys.get(sig.keyid)
            if public_key is None:
                unchecked.append(sig.keyid)
            elif not keys.verify(public_key, sig.sig, message):
                failed.append(sig.keyid)
    key = statement_key(r.statement.id) if r.statement is not None else _NO_KEY
    keep = envelope if unchecked or r.index < 2 else None
    return CheckedEntry(r.index, tuple(r.problems), r.leaf, r.stamp, r.events_at, r.statement,
                        keyids, key, r.row_in_place, tuple(failed), tuple(unchecked),
                        keep)


class EntryChecker:
    """check_chunk for chunk after chunk of a ledger, in worker processes several
    chunks ahead of the caller, or in the caller's process (no workers, a small
    ledger, or workers that failed)."""

    def __init__(self, source: Ledger, workers: int) -> None:
        self._source = source
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._public_keys: PublicKeys = {}

    def chunks(self, size: int, chunk: int) -> Iterator[CheckedChunk]:
        """The checked chunks of entries 0 ≤ i < size, `chunk` entries each, in order."""
        bounds = [(start, min(start + chunk, size)) for start in range(0, size, chunk)]
        if self._workers <= 0 or size < MIN_FOR_WORKERS:
            for start, stop in bounds:
                yield check_chunk(self._source, start, stop, self._public_keys)
            return
        # spawn, not fork: the caller holds database connections (and maybe threads).
        self._pool = ProcessPoolExecutor(
            self._workers, mp_context=multiprocessing.get_context("spawn"))
        url = self._source.database.url
        ahead: deque[tuple[int, int, Future[CheckedChunk] | None]] = deque()
        waiting = iter(bounds)
        for start, stop in waiting:
            ahead.append((start, stop, self._submit(url, start, stop)))
            if len(ahead) >= 2 * self._workers + 1:
                break
        while ahead:
            start, stop, future = ahead.popleft()
            for start_next, stop_next in waiting:
                ahead.append((start_next, stop_next, self._submit(url, start_next, stop_next)))
                break
            yield self._result(future, start, stop)

    def _submit(self, url: str, start: int, stop: int) -> Future[CheckedChunk] | None:
        if self._pool is None:
            return None
        try:
            return self._pool.submit(_check_in_worker, url, start, stop)
        except RuntimeError:  # the pool broke (BrokenProcessPool is one) or shut down
            self.close()
            return None

    def _result(self, future: Future[CheckedChunk] | None, start: int, stop: int) -> CheckedChunk:
        if future is not None:
            try:
                return future.result()
            except Exception:  # noqa: BLE001 -- a dead worker, or what the check raised
                # Checked again here: a failure of the workers costs time, not the audit,
                # and an error of the check itself is raised here, where it is reported.
                pass
        return check_chunk(self._source, start, stop, self._public_keys)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


# A worker's ledger, opened on its first chunk, and the public keys it has found.
_LEDGERS: dict[str, Ledger] = {}
_PUBLIC_KEYS: PublicKeys = {}


def _check_in_worker(url: str, start: int, stop: int) -> CheckedChunk:
    source = _LEDGERS.get(url)
    if source is None:
        source = _LEDGERS[url] = Ledger(url)
    return check_chunk(source, start, stop, _PUBLIC_KEYS)
