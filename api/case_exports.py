"""Serving a case's heavy exports over HTTP: looked up, built on their own pool, streamed.

A request first looks its export up (on the routes' pool: the case's existence, the
tree size, the case's basis recorded at that size, a file opened), and only on a miss
asks the export pool for it: there the case's entries are selected, the basis found
and recorded for the size, and the export built from that selection unless a build of
the same basis is kept already (the log grew elsewhere: nothing to build). The answer
streams the file in chunks, so no worker holds a 100 MB body in memory. Problems
of their own: 503 `exports-busy` with Retry-After when the pool is full, 403
`export-too-large` when the export is beyond what the server publishes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import anyio.to_thread
from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from api import problems
from api.export_pool import ExportPool, ExportsBusy
from api.settings import Settings
from traceability.case_basis import case_basis
from traceability.cases import check_opened
from traceability.evidence import Selection, case_selection
from traceability.export_cache import ExportCache, ExportKey, ExportRefused
from traceability.views import Views

CHUNK = 1 << 16
Opened = tuple[ExportKey, list[BinaryIO]]  # a build's key and the files asked for, open
EXPORTS_BUSY = "exports-busy"
TOO_LARGE = "export-too-large"


@dataclass
class CaseExports:
    """The cache and the pool of one app (one worker process)."""

    cache: ExportCache
    pool: ExportPool
    bundle_max_entries: int
    page_size: int = 200  # rows of the case page's timeline per page

    @classmethod
    def from_settings(cls, settings: Settings) -> CaseExports:
        return cls(ExportCache(settings.export_cache_dir, settings.export_cache_bytes),
                   ExportPool(settings.export_threads, settings.export_queue),
                   settings.bundle_max_entries)

    async def open(self, views: Views, what: str, case_id: str, lang: str,
                   names: Sequence[str], build: Callable[[Selection], Mapping[str, bytes]]
                   ) -> tuple[ExportKey, list[BinaryIO]]:
        """The files `names` of the build of export `what` of the case as it stands now,
        opened, with the build's key (to look up more of its files); `build` makes the
        export of the case's selection. Raises NotFound (no such case), ExportRefused,
        ExportsBusy."""
        def lookup_now() -> tuple[int, Opened | None]:
            check_opened(views, case_id)
            size = views.ledger.size()
            return size, self._lookup_at(what, case_id, lang, size, names)

        size, found = await anyio.to_thread.run_sync(lookup_now)
        if found is not None:
            return found

        def build_and_open() -> Opened:
            # The size was read before the selection is made, so the basis recorded for a
            # size is that of a selection at least as new as it, never an older one.
            selection = case_selection(views, case_id)
            basis = case_basis(views, selection)
            self.cache.record_basis(case_id, size, basis)
            key = ExportKey(what, case_id, lang, basis)
            first = self.cache.get(key, names[0], lambda: build(selection))
            rest = self._lookup(key, names[1:])
            if rest is None:  # evicted in between (a tiny directory bound): no half answers
                first.close()
                raise ExportsBusy(self.pool.workers, self.pool.queue)
            return key, [first, *rest]

        return await self.pool.run(
            (what, case_id, lang, size), build_and_open,
            lambda: self._lookup_at(what, case_id, lang, size, names))

    def _lookup_at(self, what: str, case_id: str, lang: str, size: int,
                   names: Sequence[str]) -> Opened | None:
        """The files of the build for the basis recorded at `size`, if both are kept."""
        basis = self.cache.basis_at(case_id, size)
        if basis is None:
            return None
        key = ExportKey(what, case_id, lang, basis)
        found = self._lookup(key, names)
        return None if found is None else (key, found)

    def _lookup(self, key: ExportKey, names: Sequence[str]) -> list[BinaryIO] | None:
        files: list[BinaryIO] = []
        for name in names:
            file = self.cache.lookup(key, name)
            if file is None:
                for f in files:
                    f.close()
                return None
            files.append(file)
        return files


def exports_of(request: Request) -> CaseExports:
    exports: CaseExports = request.app.state.case_exports
    return exports


def refusal(e: ExportsBusy | ExportRefused) -> Response:
    """The problem answer for the two refusals of the exports."""
    if isinstance(e, ExportsBusy):
        answer = problems.problem(EXPORTS_BUSY, 503, str(e))
        answer.headers["Retry-After"] = str(e.retry_after)
        return answer
    return problems.problem(e.kind, 403, e.detail)


def stream(file: BinaryIO, media_type: str, headers: Mapping[str, str] | None = None
           ) -> StreamingResponse:
    """The file's bytes in chunks, with its length; the file is closed when sent."""
    length = os.fstat(file.fileno()).st_size

    def chunks() -> Iterator[bytes]:
        with file:
            while chunk := file.read(CHUNK):
                yield chunk

    return StreamingResponse(chunks(), media_type=media_type,
                             headers={**(headers or {}), "Content-Length": str(length)})
