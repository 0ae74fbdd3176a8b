"""Reading the log's entries for the views, a chunk at a time, parsed.

`LogReader` reads in this process. During a rebuild, `ReadAhead` runs LogReaders in
other processes: they read and parse the next chunks while this process applies the
current one. At 100,000 entries on SQLite, reading and parsing had been 60 % of a
rebuild's time and applying 40 %, one after the other on one core of two.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from eventsourcing.persistence import Notification

from ledger.application import Ledger
from ledger.domain.log import APPENDED_TOPIC, UNVERIFIED, Appended
from ledger.log.entry_format import read_stored_state
from ledger.statements import Statement
from ledger.store import Recorded
from traceability.projector import Parsed, parse_entry, parse_written

Chunk = tuple[list[Parsed], int]
"""The parsed entries of a chunk, and the position (notification id) it ends at."""


class LogReader:
    """The log's entries of one ledger, read for the views."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        # Whether the stored state is the transcoder's JSON as it is (not compressed or
        # encrypted): then only `index`, `entry` and `statement_id` are read from it.
        self.plain = ledger.mapper.compressor is None and ledger.mapper.cipher is None

    def chunk(self, start: int, limit: int, stop: int) -> Chunk | None:
        """The entries of the next chunk after `start` (at most `limit`), parsed, and
        the position the chunk ends at; None when `start` is already at `stop`."""
        if start >= stop:
            return None
        notifications = self.select(start, limit, stop)
        # A short chunk is the last one: it takes the position to the horizon.
        end = notifications[-1].id if len(notifications) == limit else stop
        return [self.parse(n) for n in notifications], end

    def between(self, start: int, stop: int) -> list[Parsed]:
        """The entries after notification id `start` up to `stop`, parsed."""
        return [self.parse(n) for n in self.select(start, stop - start, stop)]

    def select(self, start: int, limit: int, stop: int) -> Sequence[Recorded | Notification]:
        """The log's notifications after `start` up to `stop`, at most `limit`."""
        if self.plain:
            return self.ledger.recorder.select_states(  # type: ignore[attr-defined, no-any-return]
                start, limit, stop, APPENDED_TOPIC)
        return self.ledger.recorder.select_notifications(
            start=start, limit=limit, stop=stop, topics=[APPENDED_TOPIC],
            inclusive_of_start=False,
        )

    def parse(self, notification: Recorded | Notification) -> Parsed:
        if self.plain:
            # The stored state is the transcoder's JSON object, whose `index`, `entry`
            # and `statement_id` are plain JSON values: read just those, without
            # building the library's event object (a third of the cost of a rebuild).
            # Decoded as the library's transcoder does: json.loads on bytes detects
            # the encoding and decodes more slowly.
            text = notification.state.decode("utf-8")
            written = read_stored_state(text)
            if written is not None:
                return parse_written(*written)
            state = json.loads(text)
            index, text, statement_id = state["index"], state["entry"], state["statement_id"]
        else:
            assert isinstance(notification, Notification)
            event: Appended = self.ledger.mapper.to_domain_event(  # type: ignore[assignment]
                notification)
            index, text, statement_id = event.index, event.entry, event.statement_id
        # The audit's stand-ins for entries that failed were never checked: check them.
        trusted = not statement_id.startswith(UNVERIFIED)
        return parse_entry(index, text, trusted=trusted)


# The reader of a ReadAhead process, opened once by its initializer.
_reader: LogReader | None = None


def _open(database: str, horizon: int) -> None:
    global _reader
    ledger = Ledger(database)
    # The same ledger as the caller's, not another one at the same name (a SQLite path
    # read from elsewhere, an empty file): it holds at least what is to be read. Failing
    # here breaks the pool, and the caller reads every chunk itself.
    if (ledger.recorder.max_notification_id() or 0) < horizon:
        raise RuntimeError(f"{ledger.database.describe()} does not hold notification {horizon}")
    _reader = LogReader(ledger)


def _between(start: int, stop: int) -> list[Packed]:
    assert _reader is not None, "the process was started without its initializer"
    return [_pack(p) for p in _reader.between(start, stop)]


# A parsed entry as it crosses between processes: a tuple of its fields. Pickling the
# frozen slotted dataclasses themselves goes through their Python-level __getstate__
# and __setstate__; as tuples, a chunk costs half as much to send and a third as much
# to receive, which the applying process pays.
Packed = tuple[Any, ...]


def _pack(p: Parsed) -> Packed:
    s = p.statement
    if s is None:
        return (p.index, p.recorded_at, p.problem)
    return (p.index, p.recorded_at, s.type, s.id, s.by, s.issued_at, s.body, s.replacement)


def _unpack(t: Packed) -> Parsed:
    if len(t) == 3:
        return Parsed(t[0], t[1], None, t[2])
    return Parsed(t[0], t[1], Statement(t[2], t[3], t[4], t[5], t[6], t[7]))


class ReadAhead:
    """The log's entries read and parsed by processes of their own, in chunks of
    notification ids known in advance, several at once, while the caller applies the
    chunks in order.

    If those processes cannot start or fail, a chunk is read here instead: a rebuild
    is slower then, never wrong."""

    def __init__(self, reader: LogReader, horizon: int, processes: int | None = None) -> None:
        """`horizon`: the last notification id to be read."""
        if processes is None:
            # Two readers keep up with one applier. A PostgreSQL server on the same
            # machine wants a core too: on two cores, one reader was the faster there
            # (33,000 against 31,000 entries/s at a million; SQLite: 35,000 with one
            # and 43,000 with two).
            cores = os.cpu_count() or 1
            processes = max(1, min(2, cores - (1 if reader.ledger.database.is_postgres else 0)))
        self._here = reader
        self._pool: ProcessPoolExecutor | None = ProcessPoolExecutor(
            processes, mp_context=multiprocessing.get_context("spawn"),
            initializer=_open, initargs=(reader.ledger.database.url, horizon),
        )
        # Chunks under way: one more than there are processes, so each has the next.
        self._depth = processes + 1

    def chunks(self, start: int, stop: int, span: int) -> Iterator[Chunk]:
        """The entries after `start` up to `stop`, in order, in chunks of `span`
        notification ids (each ends at the end of its span: its position then)."""
        bounds = [(lo, min(lo + span, stop)) for lo in range(start, stop, span)]
        under_way: deque[tuple[int, int, Future[list[Packed]] | None]] = deque()
        for lo, hi in bounds:
            under_way.append((lo, hi, self._submit(lo, hi)))
            if len(under_way) >= self._depth:
                yield self._result(*under_way.popleft())
        while under_way:
            yield self._result(*under_way.popleft())

    def _submit(self, start: int, stop: int) -> Future[list[Packed]] | None:
        if self._pool is None:
            return None
        try:
            return self._pool.submit(_between, start, stop)
        except RuntimeError:  # the pool broke or was shut down
            self.close()
            return None

    def _result(self, start: int, stop: int, future: Future[list[Packed]] | None) -> Chunk:
        if future is not None:
            try:
                return [_unpack(t) for t in future.result()], stop
            except Exception:
                # Whatever went wrong there (a process that could not start or died, a
                # database error) is met again here, and raised as the caller expects.
                self.close()
        return self._here.between(start, stop), stop

    def close(self) -> None:
        if self._pool is not None:
            # Waits for a chunk being read (a fraction of a second) rather than leave
            # processes behind holding database connections.
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
