"""Following the ledger (PROTOCOL.md §5 `/v1/feed`): paging, long polling, and a live
stream of Server-Sent Events (WHATWG HTML, "Server-sent events").

A follower wakes within a second of a new entry: at once when this worker recorded it
(the ledger's after-commit hook), and within `POLL_SECONDS` when another worker, process
or host did (the log's size is polled, one query per worker, only while someone waits).
Polling was chosen over PostgreSQL LISTEN/NOTIFY because it works the same on SQLite and
holds no extra connection per worker. Waiting happens on the event loop, never in a
thread, so followers do not take threads away from other requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api import problems
from api.deps import LedgerDep
from api.schemas import FeedEntryPublic, FeedPublic
from ledger.application import Ledger
from ledger.errors import InvalidRequest
from ledger.log_reads import StoredEntry

router = APIRouter(prefix="/v1", tags=["entries"])

MAX_INDEX = (1 << 62) - 1  # as api/routes/entries.py: safe for both databases' integers
MAX_FEED = 1000
MAX_WAIT = 30.0
POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
# Threads the live streams of one worker share to read and encode their pages: one, so
# that streams catching up take turns among themselves and leave the request threads
# (Settings.threads) to everyone else.
STREAM_THREADS = 1
# Entries a stream reads and sends at a time. The next page is read only once the last
# was handed to the connection, so a follower that does not read holds up its own stream
# after one page (some 150 KB), instead of making the server encode and buffer the log.
STREAM_PAGE = 100


class LogWatch:
    """Wakes the followers of one worker when the log grows.

    Used from the event loop only; the after-commit hook runs in the writer's thread and
    hands the wake-up to the loop. A follower takes `changed()` BEFORE reading the log, so
    an entry committed between its read and its wait still wakes it."""

    def __init__(self, ledger: Ledger, poll: float = POLL_SECONDS) -> None:
        self.ledger = ledger
        self.poll = poll
        self.waiting = 0
        self.streams = 0  # live SSE streams: a disconnect must bring this back down
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._limiter = anyio.CapacityLimiter(STREAM_THREADS)
        ledger.after_commit.append(self._committed)

    def changed(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first use, or a new loop (test clients make several)
            self._loop, self._changed, self._poller = loop, asyncio.Event(), None
            self._limiter = anyio.CapacityLimiter(STREAM_THREADS)
        return self._changed

    def limiter(self) -> anyio.CapacityLimiter:
        """The threads every stream of this worker shares (made with `changed()`)."""
        return self._limiter

    async def wait(self, changed: asyncio.Event, timeout: float) -> bool:
        """Wait until `changed` is set or `timeout` seconds pass; True if it was set."""
        self.waiting += 1
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll())
        try:
            with suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout)
        finally:
            self.waiting -= 1
        return changed.is_set()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _committed(self, notification_id: int) -> None:
        loop = self._loop
        if loop is not None:
            with suppress(RuntimeError):  # the loop is closed: nobody is waiting on it
                loop.call_soon_threadsafe(self._wake)

    async def _poll(self) -> None:
        """Other processes' writes: poll the log's size while anyone waits."""
        size = await run_in_threadpool(self.ledger.size)
        while self.waiting:
            await asyncio.sleep(self.poll)
            now = await run_in_threadpool(self.ledger.size)
            if now != size:
                size = now
                self._wake()


def watch_of(request: Request) -> LogWatch:
    """The worker's LogWatch, made on first use (routes run on the one event loop)."""
    state = request.app.state
    if getattr(state, "log_watch", None) is None:
        state.log_watch = LogWatch(state.ledger)
    watch: LogWatch = state.log_watch
    return watch


_LIMIT_TOO_BIG = problems.example(
    "invalid-request", 400, "query parameter limit: Input should be less than or equal to 1000",
    **{"invalid-params": [{"name": "limit", "in": "query",
                           "reason": "Input should be less than or equal to 1000"}]})

After = Annotated[int, Query(ge=-1, le=MAX_INDEX, description="last index already seen")]


async def _entries(ledger: Ledger, after: int, limit: int) -> FeedPublic:
    entries = await run_in_threadpool(ledger.entries, after + 1, after + 1 + limit)
    return FeedPublic(entries=[FeedEntryPublic.of(e) for e in entries],
                      next_after=entries[-1].index if entries else after)


@router.get(
    "/feed",
    summary="Entries after an index, in order, for systems that follow the ledger",
    responses=problems.responses(_LIMIT_TOO_BIG),
)
async def get_feed(
    request: Request,
    ledger: LedgerDep,
    after: After = -1,
    limit: Annotated[int, Query(ge=1, le=MAX_FEED, description="most entries to return")] = 100,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT, description=(
        "long polling: when nothing is after `after`, wait up to this many seconds for it"
    ))] = 0,
) -> FeedPublic:
    """Entries with index > `after`, in index order, at most `limit`. `next_after` is the
    last index returned (`after` itself when there is nothing new): pass it as `after` next.
    With `wait`, an empty answer comes only after waiting that long for a new entry."""
    watch = watch_of(request)
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        changed = watch.changed()
        feed = await _entries(ledger, after, limit)
        remaining = deadline - asyncio.get_running_loop().time()
        if feed.entries or remaining <= 0:
            return feed
        await watch.wait(changed, remaining)


def _sse(entry: StoredEntry) -> str:
    """The event of one entry. Its data is the `/v1/feed` entry's JSON, written around the
    entry's recorded JCS text rather than re-encoded: a fraction of the cost, no line
    breaks (JCS escapes them), and the very bytes `leaf_hash` is the hash of."""
    return (f'id: {entry.index}\nevent: entry\ndata: {{"index":{entry.index},"entry":{entry.text},'
            f'"leaf_hash":"{entry.leaf_hash.hex()}"}}\n\n')


def _sse_page(ledger: Ledger, after: int) -> tuple[str, int]:
    """The events of the entries after `after` (a page of them) as one text, and the last
    index in it. Run in a thread: a page is entries to read and encode."""
    entries = ledger.entries(after + 1, after + 1 + STREAM_PAGE)
    return "".join(map(_sse, entries)), entries[-1].index if entries else after


async def _stream(ledger: Ledger, watch: LogWatch, after: int,
                  keepalive: float) -> AsyncIterator[str]:
    watch.streams += 1
    try:
        yield "retry: 1000\n\n"  # reconnect after a second; Last-Event-ID resumes
        while True:
            changed = watch.changed()
            # Pages are read and encoded on a thread of the streams' own (one), never on
            # the event loop: hundreds of followers catching up on a long log would
            # otherwise hold the loop, and every thread, away from the other requests.
            events, last = await anyio.to_thread.run_sync(
                _sse_page, ledger, after, limiter=watch.limiter())
            if events:
                yield events
            after, had_entries = last, last != after
            if not had_entries and not await watch.wait(changed, keepalive):
                yield ": keep-alive\n\n"  # also finds out, by failing, that the client left
    finally:
        watch.streams -= 1


@router.get(
    "/feed/stream",
    summary="Follow the ledger live: entries as Server-Sent Events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {
        "schema": {"type": "string"},
        "example": 'id: 42\nevent: entry\ndata: {"index":42,"entry":{…},"leaf_hash":"…"}\n\n',
    }}}, **problems.responses(problems.example(
        "invalid-request", 400, "Last-Event-ID 'x' is not an entry index"))},
)
async def stream_feed(
    request: Request,
    ledger: LedgerDep,
    after: After = -1,
    last_event_id: Annotated[str | None, Header(
        description="the `id` of the last event received: resumes after it (wins over `after`)"
    )] = None,
) -> StreamingResponse:
    """Every entry with index > `after`, then each new entry within a second of its
    recording, as `event: entry` with `id:` the entry's index and the `/v1/feed` entry JSON
    as `data:`. A comment line every 15 s keeps proxies from closing an idle stream."""
    if last_event_id is not None:
        if not last_event_id.strip().isdigit() or int(last_event_id) > MAX_INDEX:
            raise InvalidRequest(f"Last-Event-ID {last_event_id!r} is not an entry index")
        after = int(last_event_id)
    keepalive: float = getattr(request.app.state, "feed_keepalive", KEEPALIVE_SECONDS)
    return StreamingResponse(
        _stream(ledger, watch_of(request), after, keepalive),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
