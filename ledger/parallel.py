"""Ed25519 verification of a batch on the machine's other cores, while this one applies rules.

Signature checking is the one cost of ingest that needs no ledger state once the
public key is known, and a key id is the SHA-256 of its public key, so a key id
seen once names the same public key for ever. Signatures by keys already known are
checked in worker processes while the writer runs the rules; the writer checks the
rest itself (keys first seen in this batch), then, instead of waiting, the tasks no
worker has begun yet, and has every verdict before it commits anything or reports a
later envelope's fault.
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
# Signatures per task of a batch (Feed): a worker starts on the
# first envelopes while the writer still reads the rest, and the tasks are small so that
# the writer, once waiting is all it has left, can take back those no worker has begun
# and check them itself (Pending.failures). About 6 ms of work each on this machine kind.
TASK = 64

# How long the writer waits for a task a worker holds (a few milliseconds of work)
# before it decides no answer will come and checks the batch itself.
ANSWER_WITHIN = 30.0

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
        return Feed(self, TASK)

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
        bounds: list[tuple[int, int]],
    ) -> None:
        self._verifier = verifier
        self._jobs = jobs
        self._futures = futures
        self._bounds = bounds  # the slice of `jobs` each future checks
        self._owners = owners  # (position in batch, keyid) of each job, in job order
        self.covered = set(owners)
        self._failures: list[tuple[int, str]] | None = None

    def failures(self) -> list[tuple[int, str]]:
        """(position, keyid) of every signature that did not verify, in batch order."""
        if self._failures is None:
            results = self._results()
            self._failures = [o for o, ok in zip(self._owners, results, strict=True) if not ok]
        return self._failures

    def failures_known(self) -> list[tuple[int, str]]:
        """The failures among the tasks the workers have finished, from the first task up
        to the first one not finished, without waiting: a batch of garbage signatures is
        refused once its first task is answered, not after its rules have all run."""
        if self._failures is not None:
            return self._failures
        known: list[tuple[int, str]] = []
        for future, (start, stop) in zip(self._futures, self._bounds, strict=True):
            if not future.done() or future.cancelled() or future.exception() is not None:
                break
            known.extend(o for o, ok in zip(self._owners[start:stop], future.result(),
                                            strict=True) if not ok)
        return known

    def _results(self) -> list[bool]:
        parts: list[list[bool] | None] = [None] * len(self._futures)
        # Instead of waiting, the caller checks the tasks no worker has begun, the last
        # first, while the workers finish theirs: the end of a batch is verified on
        # every core, the caller's too. (A future a worker has taken cannot be cancelled.)
        for i in reversed(range(len(self._futures))):
            if not self._futures[i].cancel():
                break
            start, stop = self._bounds[i]
            parts[i] = verify_all(self._jobs[start:stop])
        try:
            for i, future in enumerate(self._futures):
                if parts[i] is None:
                    parts[i] = future.result(timeout=ANSWER_WITHIN)
        except (BrokenProcessPool, CancelledError, TimeoutError):
            # CancelledError: the workers failed while a later part of the batch was
            # handed over, and the pool was shut down with this part still queued.
            # TimeoutError: no answer will come. When a worker dies, the executor's
            # thread marks every queued future failed, and stops at the first one
            # cancelled (taken back above) that it had not yet cleared (CPython 3.11:
            # InvalidStateError in that thread), leaving the rest unanswered.
            self._verifier.disable()
            return verify_all(self._jobs)
        return [ok for part in parts if part is not None for ok in part]


class Feed:
    """The signature checks of one batch, handed to the workers while the writer is still
    parsing it: once MIN_PARALLEL are known (a batch worth the round trip), each `task`
    jobs go as soon as they are known, instead of all of them once the whole batch is
    read. The writer's parsing of the batch and the workers' verifying then overlap."""

    def __init__(self, verifier: ParallelVerifier, task: int) -> None:
        self._verifier = verifier
        self._task = task
        self._jobs: list[Job] = []
        self._owners: list[tuple[int, str]] = []
        self._futures: list[Future[list[bool]]] = []
        self._bounds: list[tuple[int, int]] = []
        self._sent = 0
        self._stopped = verifier.workers <= 0

    def add(self, job: Job, owner: tuple[int, str]) -> None:
        """`owner`: (position in batch, keyid) of the signature."""
        if self._stopped:
            return
        self._jobs.append(job)
        self._owners.append(owner)
        if len(self._jobs) - self._sent >= self._task and len(self._jobs) >= MIN_PARALLEL:
            self._send(whole_tasks=True)

    def _send(self, whole_tasks: bool = False) -> None:
        """Send what is not sent yet in tasks of `task` jobs, and the rest as a smaller
        task unless `whole_tasks`."""
        while len(self._jobs) - self._sent >= (self._task if whole_tasks else 1):
            stop = min(self._sent + self._task, len(self._jobs))
            future = self._verifier.submit(self._jobs[self._sent:stop])
            if future is None:  # the workers are gone: what was not sent, the writer checks
                self._stopped = True
                return
            self._futures.append(future)
            self._bounds.append((self._sent, stop))
            self._sent = stop

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
        return Pending(self._verifier, self._jobs[:sent], self._futures, self._owners[:sent],
                       self._bounds)

    def cancel(self) -> None:
        """The batch was refused before its rules ran: drop the checks not yet started."""
        for future in self._futures:
            future.cancel()
