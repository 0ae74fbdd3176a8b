"""Ed25519 verification of a batch on the machine's other cores, while this one applies rules.

Signature checking is the one cost of ingest that needs no ledger state once the
public key is known, and a key id is the SHA-256 of its public key, so a key id
seen once names the same public key for ever. Signatures by keys already known are
checked in worker processes while the writer runs the rules; the writer checks the
rest itself (keys first seen in this batch) and waits for the workers before it
commits anything or reports a later envelope's fault.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from ledger import keys

# Below this many signatures the round trip to a worker costs more than it saves.
MIN_PARALLEL = 200
# Signatures per task when a batch is handed over while it is still being parsed (Feed):
# with one worker, a quarter of a full batch, so the worker starts on the first envelopes
# while the writer reads the rest.
FEED_TASK = 250

Job = tuple[bytes, bytes, bytes]  # public key, signature, signed message


def verify_all(jobs: Sequence[Job]) -> list[bool]:
    """Runs in a worker process."""
    return [keys.verify(public_key, sig, message) for public_key, sig, message in jobs]


class ParallelVerifier:
    """Splits a batch's signature checks between worker processes and the caller."""

    def __init__(self, workers: int | None = None) -> None:
        if workers is None:
            env = os.environ.get("QLEDGER_VERIFY_WORKERS")
            workers = int(env) if env else max(0, (os.cpu_count() or 1) - 1)
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # spawn, not fork: the writer holds database connections and threads.
                self._pool = ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("spawn")
                )
            return self._pool

    def start(self, jobs: Sequence[Job]) -> list[Future[list[bool]]]:
        """Begin checking `jobs` in the workers; [] when not worth it or disabled."""
        if self.workers <= 0 or len(jobs) < MIN_PARALLEL:
            return []
        try:
            pool = self._executor()
            # The caller's own core is busy with the rules meanwhile.
            size = -(-len(jobs) // self.workers)
            return [pool.submit(verify_all, jobs[i : i + size]) for i in range(0, len(jobs), size)]
        except (BrokenProcessPool, OSError, RuntimeError):
            self.disable()
            return []

    def submit(self, jobs: Sequence[Job]) -> Future[list[bool]] | None:
        """Begin checking `jobs` as one task; None when disabled or the workers failed."""
        if self.workers <= 0:
            return None
        try:
            return self._executor().submit(verify_all, jobs)
        except (BrokenProcessPool, OSError, RuntimeError):
            self.disable()
            return None

    def feed(self) -> Feed:
        return Feed(self)

    def disable(self) -> None:
        """Workers could not start (say, a main module without a __main__ guard, which
        spawn must import): verify in the writer from now on."""
        self.close()
        self.workers = 0

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None


class Pending:
    """The signature checks of one batch under way in the workers."""

    def __init__(
        self, verifier: ParallelVerifier, jobs: Sequence[Job],
        futures: list[Future[list[bool]]], owners: list[tuple[int, str]],
    ) -> None:
        self._verifier = verifier
        self._jobs = jobs
        self._futures = futures
        self._owners = owners  # (position in batch, keyid) of each job, in job order
        self.covered = set(owners)
        self._failures: list[tuple[int, str]] | None = None

    def failures(self) -> list[tuple[int, str]]:
        """(position, keyid) of every signature that did not verify, in batch order."""
        if self._failures is None:
            try:
                results = [ok for future in self._futures for ok in future.result()]
            except (BrokenProcessPool, CancelledError):
                # CancelledError: the workers failed while a later part of the batch was
                # handed over, and the pool was shut down with this part still queued.
                self._verifier.disable()
                results = verify_all(self._jobs)
            self._failures = [o for o, ok in zip(self._owners, results, strict=True) if not ok]
        return self._failures


class Feed:
    """The signature checks of one batch, handed to the workers while the writer is still
    parsing it: each `FEED_TASK` jobs (fewer per task with more workers) go as soon as
    they are known, instead of all of them once the whole batch is read. The writer's
    parsing of the batch and the workers' verifying then overlap."""

    def __init__(self, verifier: ParallelVerifier) -> None:
        self._verifier = verifier
        self._step = max(MIN_PARALLEL // 4, FEED_TASK // max(1, verifier.workers))
        self._jobs: list[Job] = []
        self._owners: list[tuple[int, str]] = []
        self._futures: list[Future[list[bool]]] = []
        self._sent = 0
        self._stopped = verifier.workers <= 0

    def add(self, job: Job, owner: tuple[int, str]) -> None:
        """`owner`: (position in batch, keyid) of the signature."""
        if self._stopped:
            return
        self._jobs.append(job)
        self._owners.append(owner)
        if len(self._jobs) - self._sent >= self._step:
            self._send()

    def _send(self) -> None:
        future = self._verifier.submit(self._jobs[self._sent:])
        if future is None:  # the workers are gone: what was not sent, the writer checks
            self._stopped = True
            return
        self._futures.append(future)
        self._sent = len(self._jobs)

    def finish(self) -> Pending | None:
        """The checks under way: the rest is sent too if part of the batch already went,
        or if it is worth a round trip on its own."""
        if not self._stopped and self._sent < len(self._jobs) and (
            self._futures or len(self._jobs) >= MIN_PARALLEL
        ):
            self._send()
        if not self._futures:
            return None
        sent = self._sent
        return Pending(self._verifier, self._jobs[:sent], self._futures, self._owners[:sent])

    def cancel(self) -> None:
        """The batch was refused before its rules ran: drop the checks not yet started."""
        for future in self._futures:
            future.cancel()
