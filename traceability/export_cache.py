"""Heavy exports kept on disk: each built once per (what, case, language, basis), then read.

An export of a large case (its bundle, spreadsheet, picture, or the data of its page)
takes seconds and tens of megabytes to build, and it changes only when what it is made
of changes: the case's basis (traceability.case_basis), which an append elsewhere in
the log leaves as it is. So a build is stored under its key and every later request for
the same key is a file opened, not a rebuild.

Finding the basis means selecting the case's entries, a fraction of a build but not
free, so the basis found at a tree size is kept too, as a small record of its own
(`basis_at`, `record_basis`): every request at that size is then a lookup again, and
only the first request after the log grows selects. The store is a directory, not memory: a 100 MB bundle kept in a
worker's memory is 100 MB per worker, while a file is shared by every worker process
pointed at the same directory and costs the server nothing until it is streamed. The
directory is bounded in bytes; past the bound, the builds used least recently go first.

A build is a set of named files (the case page is its data and one file per page of its
timeline), written to a temporary directory and renamed into place, so a reader never
sees half a build. A build that refuses (`ExportRefused`) is kept as its refusal, so a
too-large case costs one selection per tree size, not one per request.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ledger.errors import LedgerError

GiB = 1 << 30
DEFAULT_MAX_BYTES = GiB
_REFUSED = "refused.txt"
_BASIS = "basis.txt"


class ExportRefused(LedgerError):
    """The export is not served (it would exceed a bound); `detail` says which and why."""

    def __init__(self, detail: str, kind: str = "export-too-large") -> None:
        super().__init__(detail)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class ExportKey:
    """What identifies a build: the export, the case, the language, what it is made of."""

    what: str  # "bundle", "csv", "xlsx", "page"; "basis" for the record of a basis
    case: str
    lang: str
    basis: str  # the case's basis; for the record of a basis, the tree size it was found at

    def dirname(self) -> str:
        # Case ids are free text ('/' included): the directory is named by a digest of the
        # key, with the export's name in front for whoever lists the directory.
        text = f"{self.what}\x00{self.case}\x00{self.lang}\x00{self.basis}"
        return f"{self.what}-{hashlib.sha256(text.encode()).hexdigest()[:32]}"


Build = Callable[[], Mapping[str, bytes]]


class ExportCache:
    """A bounded directory of builds. Safe to share between threads and between worker
    processes (a build is renamed into place whole; a second process building the same
    key at the same moment keeps the first one's files)."""

    def __init__(self, directory: Path | str | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        # A directory of our own making is removed by close(); a configured one is kept.
        self.owned = directory is None
        self.directory = Path(directory) if directory is not None else Path(
            tempfile.mkdtemp(prefix="qledger-exports-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        # An app that is never shut down (a test's client) still leaves no directory behind.
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.directory, True) \
            if self.owned else None
        self.max_bytes = max_bytes
        self.builds: Counter[str] = Counter()  # builds run by this process, per export
        self._lock = threading.Lock()
        self._building: dict[ExportKey, threading.Lock] = {}

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()

    def lookup(self, key: ExportKey, name: str) -> BinaryIO | None:
        """The file `name` of the build of `key`, opened, or None when not built yet.
        Raises ExportRefused when the build refused. The file stays readable however
        soon the build is evicted (an open file outlives its name)."""
        place = self.directory / key.dirname()
        try:
            refused = (place / _REFUSED).read_text("utf-8")
        except FileNotFoundError:
            pass
        else:
            raise ExportRefused(refused)
        try:
            file = open(place / name, "rb")  # noqa: SIM115 - the caller streams and closes it
        except FileNotFoundError:
            return None
        try:
            os.utime(place)  # used now: the last to be evicted
        except OSError:
            pass
        return file

    def get(self, key: ExportKey, name: str, build: Build) -> BinaryIO:
        """The file `name` of the build of `key`, building it first if needed; one build per
        key at a time in this process (the others wait for it and read its files). Raises
        what `build` raises; an ExportRefused is kept and raised again on every lookup."""
        found = self.lookup(key, name)
        if found is not None:
            return found
        with self._lock:
            lock = self._building.setdefault(key, threading.Lock())
        with lock:
            found = self.lookup(key, name)
            if found is None:
                self._store(key, build)
                found = self.lookup(key, name)
        with self._lock:
            self._building.pop(key, None)
        if found is None:
            raise LedgerError(f"the {key.what} export has no file {name}")
        return found

    def basis_at(self, case: str, size: int) -> str | None:
        """The basis recorded for `case` at tree size `size`, or None when none is."""
        file = self.lookup(_basis_key(case, size), _BASIS)
        if file is None:
            return None
        with file:
            return file.read().decode("ascii")

    def record_basis(self, case: str, size: int, basis: str) -> None:
        """Record `basis` as the case's at tree size `size` (a record already there stays:
        any basis found at or after a size is the case's as new as that size or newer)."""
        self.get(_basis_key(case, size), _BASIS, lambda: {_BASIS: basis.encode("ascii")}).close()

    def _store(self, key: ExportKey, build: Build) -> None:
        self.builds[key.what] += 1
        try:
            files: Mapping[str, bytes] = build()
        except ExportRefused as e:
            files = {_REFUSED: e.detail.encode("utf-8")}
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=self.directory))
        for name, data in files.items():
            (staging / name).write_bytes(data)
        try:
            staging.rename(self.directory / key.dirname())
        except OSError:  # another process stored the same key first: keep its build
            shutil.rmtree(staging, ignore_errors=True)
        self._evict(keep=key.dirname())

    def _evict(self, keep: str) -> None:
        """Remove the builds used least recently until the directory fits its bound; never
        `keep`, the build just stored, which its requester is about to read."""
        builds = []
        for place in self.directory.iterdir():
            if place.name.startswith(".building-") or place.name == keep:
                continue
            try:
                size = sum(f.stat().st_size for f in place.iterdir())
                builds.append((place.stat().st_mtime, size, place))
            except OSError:  # evicted by another process meanwhile
                continue
        total = sum(size for _, size, _ in builds)
        for _, size, place in sorted(builds, key=lambda b: b[0]):
            if total <= self.max_bytes:
                break
            shutil.rmtree(place, ignore_errors=True)
            total -= size


def _basis_key(case: str, size: int) -> ExportKey:
    return ExportKey("basis", case, "", str(size))
