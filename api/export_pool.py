"""The pool that builds heavy exports, apart from the pool that answers scans.

Every plain `def` route runs on anyio's default thread pool (`settings.threads`, 4 by
default). A spreadsheet of a large case took 21 s to build, so four of them held every
thread and a scan waited for one. Builds therefore run here instead: on at most
`workers` threads of their own (an anyio capacity limiter of their own, so they never
take a token from the routes' pool), with at most `queue` more builds waiting. Beyond
that the request is refused at once, a 503 with Retry-After, rather than queued without
end. Requests for a build already under way wait for it and do not count: the second
visitor of a case page costs nothing.

The builds are Python work under the one interpreter lock, so a scan still shares the
processor with them; what it no longer does is wait for a thread.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")

DEFAULT_WORKERS = 2
DEFAULT_QUEUE = 8
RETRY_AFTER_SECONDS = 10


class ExportsBusy(Exception):
    """Every export worker is busy and the queue is full; try again in `retry_after` s."""

    def __init__(self, workers: int, queue: int, retry_after: int = RETRY_AFTER_SECONDS) -> None:
        super().__init__(f"the server is building {workers} exports and has {queue} more "
                         f"waiting; try again in {retry_after} s")
        self.retry_after = retry_after


class ExportPool:
    """Bounded: `workers` builds at once, `queue` more waiting, per worker process."""

    def __init__(self, workers: int = DEFAULT_WORKERS, queue: int = DEFAULT_QUEUE) -> None:
        if workers < 1 or queue < 0:
            raise ValueError("an export pool needs at least one worker and a queue of 0 or more")
        self.workers = workers
        self.queue = queue
        self._admitted = 0  # running and waiting; touched only on the event loop's thread
        self._limiter: anyio.CapacityLimiter | None = None
        self._inflight: dict[Hashable, anyio.Event] = {}

    @property
    def admitted(self) -> int:
        return self._admitted

    async def run(self, key: Hashable, build: Callable[[], T], lookup: Callable[[], T | None]
                  ) -> T:
        """`build()` on the pool, unless a build of `key` is under way: then wait for it and
        return `lookup()` (the cache's answer, on the routes' pool since it is cheap). Raises
        ExportsBusy when the pool and its queue are full, and what `build` raises."""
        while key in self._inflight:
            await self._inflight[key].wait()
            found = await anyio.to_thread.run_sync(lookup)
            if found is not None:
                return found
        if self._admitted >= self.workers + self.queue:
            raise ExportsBusy(self.workers, self.queue)
        if self._limiter is None:  # made on the event loop, where it will be used
            self._limiter = anyio.CapacityLimiter(self.workers)
        done = self._inflight[key] = anyio.Event()
        self._admitted += 1
        try:
            return await anyio.to_thread.run_sync(build, limiter=self._limiter)
        finally:
            self._admitted -= 1
            del self._inflight[key]
            done.set()
