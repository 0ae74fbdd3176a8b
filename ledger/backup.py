"""`qledger export` / `qledger import`: the whole log as JSON Lines, and back, re-verified.

The file (one ASCII line each, UTF-8, `\\n` line ends):

    {"envelope":{…},"index":0,"recorded_at":"…"}     one line per entry, index 0, 1, 2, …
    …
    {"checkpoint":"<signed note>","log_key":"<verifier key>"}   the trailer, last line

An entry line is the JCS form of the entry of PROTOCOL.md §3 with its `index` added (JCS
sorts "index" between the two), so the entry's own bytes are the line without it. The
trailer is the signed checkpoint the export was taken at and the verifier key it was
signed with: with it, a file cut short, a line changed, dropped or moved is found before
anything is written, because the entries no longer hash to the signed root.

Import is two passes over the file, each in constant memory:

1. the file alone: every line parses, is canonical and holds the next index; the
   entries' RFC 9162 root equals the root in the trailer's checkpoint, whose signature
   verifies (against the trusted key when one is given). Nothing is written.
2. every entry is replayed into the empty target ledger with the recording time it had
   (`Ledger.replay`): signatures and every rule are checked against the state at that
   point, in transactions of 1,000 entries. If one is refused, what this import wrote is
   erased, so the target is empty again: all or nothing for the caller.

The root hash depends only on the entries, so the imported ledger has the same root
whatever its log key; its checkpoints are signed with the key the import is given.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from ledger.application import Ledger
from ledger.canonical import canonical_bytes
from ledger.envelope import Envelope
from ledger.errors import LedgerError, Rejected, StorageError, VerificationError
from ledger.log.hasher import leaf_hash
from ledger.log.tree import Frontier
from ledger.log.verify import Checkpoint, verify_checkpoint
from ledger.statements import parse_statement
from ledger.timefmt import parse_time

CHUNK = 1000
_INDEX_AT = ',"recorded_at":"'  # the last key of an entry: its value holds no such text

Progress = Callable[[int, int], None]


class BadBackup(VerificationError):
    """The file is not a faithful export: names the line (1-based) at fault."""

    def __init__(self, line: int | None, detail: str) -> None:
        super().__init__(f"line {line}: {detail}" if line is not None else detail)
        self.line = line
        self.reason = detail


# ---- export -----------------------------------------------------------------------------------


def export(ledger: Ledger, out: IO[str], progress: Progress | None = None) -> Checkpoint:
    """Write every entry up to the latest signed checkpoint, then that checkpoint.

    Entries recorded while the export runs are after the checkpoint and left out, so the
    file is one consistent state of the log. Returns the checkpoint the file ends with."""
    config = ledger.config
    note = ledger.checkpoint()
    checkpoint = verify_checkpoint(note, config.log_key, origin=config.origin)
    for start in range(0, checkpoint.size, CHUNK):
        lines = []
        for stored in ledger.entries(start, min(start + CHUNK, checkpoint.size)):
            lines.append(entry_line(stored.index, stored.text))
        out.write("".join(lines))
        if progress:
            progress(min(start + CHUNK, checkpoint.size), checkpoint.size)
    out.write(json.dumps({"checkpoint": note, "log_key": config.log_key}, ensure_ascii=True) + "\n")
    out.flush()
    return checkpoint


def entry_line(index: int, text: str) -> str:
    """The entry's JCS text with `"index"` spliced in where JCS would sort it: saves
    canonicalising a million entries again."""
    at = text.rindex(_INDEX_AT)
    return f"{text[:at]},\"index\":{index}{text[at:]}\n"


# ---- import -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Imported:
    size: int
    root_hash: bytes
    origin: str
    source_log_key: str  # the key the file's checkpoint was signed with


@dataclass(frozen=True)
class _Entry:
    line: int
    index: int
    text: str  # the entry's JCS bytes, as hashed
    envelope: Any
    stamp: tuple[datetime, str]


def import_file(
    source: IO[str], target: Ledger, *, trusted_log_key: str | None = None,
    progress: Progress | None = None,
) -> Imported:
    """Verify the export in `source` and replay it into the empty ledger `target`, whose
    log key (given to its constructor) signs the new checkpoints. `source` must be
    seekable (see `seekable`). Raises BadBackup naming the line, StorageError when
    `target` is not empty, and leaves the target's database empty on any failure; the
    `target` object itself then holds stale caches: close it and open the database anew."""
    if target.size() > 0 or target.is_created():
        raise StorageError(f"{target.database.describe()} holds a ledger already; "
                           "import needs an empty one")
    checkpoint, log_key = verify_file(source, trusted_log_key)
    source.seek(0)
    try:
        _replay(source, target, checkpoint, progress)
    except BaseException:
        erase(target)
        raise
    return Imported(checkpoint.size, checkpoint.root_hash, checkpoint.origin, log_key)


def verify_file(source: IO[str], trusted_log_key: str | None = None) -> tuple[Checkpoint, str]:
    """Pass 1: the file alone. Returns the trailer's checkpoint, verified, and its key."""
    frontier = Frontier()
    trailer = _Trailer()
    for entry in _entries(source, trailer):
        frontier.append(leaf_hash(entry.text.encode("ascii")))
    if trailer.note is None:
        raise BadBackup(None, "the file ends without its checkpoint line: it was cut short")
    log_key = trailer.log_key
    if trusted_log_key is not None and trusted_log_key != log_key:
        raise BadBackup(trailer.line, "the checkpoint was signed with another key than the "
                        "trusted one")
    try:
        checkpoint = verify_checkpoint(trailer.note, log_key)
    except VerificationError as e:
        raise BadBackup(trailer.line, f"the checkpoint does not verify: {e}") from None
    if checkpoint.size != frontier.size:
        raise BadBackup(trailer.line, f"the checkpoint covers {checkpoint.size} entries but the "
                        f"file holds {frontier.size}")
    if checkpoint.root_hash != frontier.root():
        mismatch = (f"the entries hash to {frontier.root().hex()}, not to the root "
                    f"{checkpoint.root_hash.hex()} signed in the checkpoint")
        _locate(source, checkpoint, mismatch)
        raise BadBackup(None, f"{mismatch}: a line was changed (no entry fails on its own)")
    return checkpoint, log_key


def _locate(source: IO[str], checkpoint: Checkpoint, mismatch: str) -> None:
    """Find the line a changed entry is on, by replaying the file into a scratch ledger
    (as `qledger audit` does): the first entry whose signature or rules fail. Only run
    when the file is known to be bad, so the cost falls on the failure path."""
    from ledger import keys

    source.seek(0)
    with tempfile.TemporaryDirectory(prefix="qledger-import-") as scratch:
        replica = Ledger(f"{scratch}/replica.db", log_key=keys.generate_private_key())
        try:
            _replay(source, replica, checkpoint, None, check_root=False)
        except BadBackup as e:
            raise BadBackup(e.line, f"{e.reason} ({mismatch})") from None
        finally:
            replica.close()


@dataclass
class _Trailer:
    line: int | None = None
    note: str | None = None
    log_key: str = ""


def _entries(source: IO[str], trailer: _Trailer) -> Iterator[_Entry]:
    """Every entry line, checked on its own: JSON, canonical, the next index. The
    checkpoint line is put in `trailer`."""
    expected = 0
    for number, raw in _lines(source):
        if trailer.note is not None:
            raise BadBackup(number, "text after the checkpoint line")
        line = raw.rstrip("\n")
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            raise BadBackup(number, "is not JSON") from None
        if isinstance(obj, dict) and set(obj) == {"checkpoint", "log_key"}:
            if not all(isinstance(v, str) for v in obj.values()):
                raise BadBackup(number, "the checkpoint line holds non-text values")
            trailer.line, trailer.note, trailer.log_key = number, obj["checkpoint"], obj["log_key"]
            continue
        if not isinstance(obj, dict) or set(obj) != {"envelope", "index", "recorded_at"}:
            raise BadBackup(number, "is not an entry of {envelope, index, recorded_at}")
        index = obj.pop("index")
        if type(index) is not int or index != expected:
            raise BadBackup(number, f"holds index {index!r} where {expected} was due: an entry "
                            "is missing, repeated or out of order")
        try:
            text = canonical_bytes(obj).decode("ascii")
            stamp = (parse_time(obj["recorded_at"]), obj["recorded_at"])
        except (Rejected, TypeError, ValueError, UnicodeDecodeError) as e:
            raise BadBackup(number, f"is not a canonical entry: {e}") from None
        if entry_line(index, text) != line + "\n":
            raise BadBackup(number, "is not in canonical form (JCS): a byte was changed")
        yield _Entry(number, index, text, obj["envelope"], stamp)
        expected += 1


def _lines(source: IO[str]) -> Iterator[tuple[int, str]]:
    number = 0
    try:
        for number, raw in enumerate(source, 1):  # noqa: B007 - read after the loop
            yield number, raw
    except UnicodeDecodeError:
        raise BadBackup(number + 1, "is not UTF-8") from None


def _replay(source: IO[str], target: Ledger, checkpoint: Checkpoint,
            progress: Progress | None, *, check_root: bool = True) -> None:
    """Pass 2: replay every entry as of its recording time."""
    chunk: list[_Entry] = []

    def flush() -> None:
        if not chunk:
            return
        genesis = chunk[0].index == 0
        first = chunk[:2] if genesis else []
        if genesis:
            root_org = _root_org(chunk[0])
            _replay_chunk(target, first, origin=checkpoint.origin, root_org=root_org)
        _replay_chunk(target, chunk[len(first):])
        if progress:
            progress(chunk[-1].index + 1, checkpoint.size)
        chunk.clear()

    for entry in _entries(source, _Trailer()):
        chunk.append(entry)
        if len(chunk) == CHUNK:
            flush()
    flush()
    if not check_root:
        return
    root = target.root_at(target.size()) if target.size() else None
    if target.size() != checkpoint.size or root != checkpoint.root_hash:
        # Replaying the same bytes cannot give another root; this guards the code above.
        raise BadBackup(None, "the imported log does not reproduce the checkpoint's root")


def _replay_chunk(target: Ledger, entries: list[_Entry], **genesis: str) -> None:
    if not entries:
        return
    try:
        receipts = target.replay([e.envelope for e in entries], [e.stamp for e in entries],
                                 **genesis)
    except Rejected as e:
        bad = entries[e.position or 0]
        raise BadBackup(bad.line, f"entry {bad.index} fails verification: [{e.kind.value}] "
                        f"{e.detail}") from None
    for entry, receipt in zip(entries, receipts, strict=True):
        if receipt.index != entry.index or receipt.leaf_hash != leaf_hash(entry.text.encode()):
            raise BadBackup(entry.line, f"entry {entry.index} was not reproduced byte for byte")


def _root_org(first: _Entry) -> str:
    try:
        statement = parse_statement(Envelope.from_json(first.envelope).statement)
    except LedgerError as e:
        raise BadBackup(first.line, f"entry 0 is not a statement: {e}") from None
    return statement.by


@contextmanager
def seekable(stream: IO[str]) -> Iterator[IO[str]]:
    """`stream` if it can be read twice, else a temporary file holding a copy (standard
    input): the import reads the file once to verify and once to replay."""
    if stream.seekable():
        yield stream
        return
    with tempfile.TemporaryFile("w+", encoding="utf-8", newline="\n") as copy:
        shutil.copyfileobj(stream, copy, 1 << 20)
        copy.seek(0)
        yield copy


# The tables the ledger's recorder writes beside the library's events table (ledger/store/).
TABLES = ("merkle_nodes", "checkpoints", "statements")


def erase(target: Ledger) -> None:
    """Empty a ledger this import filled in part. Written against the storage tables
    because no ledger method deletes anything, by design: this is the one place that
    may, and only for a ledger it created itself moments before."""
    recorder: Any = target.recorder
    if target.database.is_postgres:
        from psycopg.sql import SQL, Identifier

        schema = Identifier(recorder.datastore.schema)
        with recorder.datastore.transaction(commit=True) as curs:
            for table in (recorder.events_table_name, *TABLES):
                curs.execute(SQL("TRUNCATE {}.{}").format(schema, Identifier(table)))
    else:
        with recorder.datastore.transaction(commit=True) as c:
            for table in (recorder.events_table_name, *TABLES):
                c.execute(f"DELETE FROM {table}")
    recorder.forget_cached_nodes()  # the upper tree levels it held were of the erased tree
    target._config = None  # noqa: SLF001 - it described what was erased
