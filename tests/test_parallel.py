"""The writer hands signature checks to worker processes while it is still parsing a batch
(ledger/parallel.py Feed): each check is done exactly once, by a worker or by the writer
(which takes back the tasks no worker has begun rather than wait), and a failure is
reported with the position and key it belongs to."""

from __future__ import annotations

import time
from concurrent.futures import Future

import pytest

from ledger import keys, parallel
from ledger.parallel import MIN_PARALLEL, TASK, Job, ParallelVerifier, Pending


def _jobs(count: int, bad: set[int]) -> list[Job]:
    key = keys.generate_private_key()
    public = keys.public_bytes(key)
    jobs = []
    for i in range(count):
        message = f"message {i}".encode()
        sig = key.sign(message if i not in bad else b"something else")
        jobs.append((public, sig, message))
    return jobs


def _begin(verifier: ParallelVerifier, jobs: list[Job],
           owners: list[tuple[int, str]]) -> Pending | None:
    """A whole batch fed at once, as the writer feeds one it has read."""
    feed = verifier.feed()
    for job, owner in zip(jobs, owners, strict=True):
        feed.add(job, owner)
    return feed.finish()


def test_a_fed_batch_goes_to_the_workers_in_tasks_as_it_is_read() -> None:
    verifier = ParallelVerifier(1)
    try:
        feed = verifier.feed()
        tasks = -(-MIN_PARALLEL // TASK)  # whole tasks before the batch is worth sending
        last = (tasks + 2) * TASK + 30
        jobs = _jobs(last, bad={3, TASK + 7, last - 1})
        for i, job in enumerate(jobs):
            feed.add(job, (i, f"k{i}"))
            if i == MIN_PARALLEL - 2:
                assert feed._futures == []  # not worth a round trip yet
            if i == tasks * TASK - 1:
                # sent as soon as known, before the rest was read
                assert len(feed._futures) == tasks
        pending = feed.finish()
        assert pending is not None
        assert len(pending._futures) == tasks + 3  # whole tasks, then the rest
        assert pending._bounds[-1] == ((tasks + 2) * TASK, last)
        assert pending.covered == {(i, f"k{i}") for i in range(len(jobs))}
        assert pending.failures() == [(3, "k3"), (TASK + 7, f"k{TASK + 7}"),
                                      (last - 1, f"k{last - 1}")]
    finally:
        verifier.close()


def test_a_small_batch_is_left_to_the_writer() -> None:
    verifier = ParallelVerifier(1)
    try:
        feed = verifier.feed()
        for i, job in enumerate(_jobs(MIN_PARALLEL - 1, bad=set())):
            feed.add(job, (i, "k"))
        assert feed.finish() is None
        assert verifier._pool is None  # no process was started for it
    finally:
        verifier.close()


def test_without_workers_nothing_is_covered() -> None:
    verifier = ParallelVerifier(0)
    feed = verifier.feed()
    for i, job in enumerate(_jobs(TASK * 2, bad=set())):
        feed.add(job, (i, "k"))
    assert feed.finish() is None


def test_when_the_workers_cannot_start_the_writer_checks_what_was_not_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = ParallelVerifier(1)
    try:
        feed = verifier.feed()
        first = -(-MIN_PARALLEL // TASK) * TASK  # what goes before the workers fail
        jobs = _jobs(first + TASK, bad={first + 1})
        for i, job in enumerate(jobs[:first]):
            feed.add(job, (i, "k"))
        monkeypatch.setattr(verifier, "_executor", lambda: (_ for _ in ()).throw(OSError("no")))
        for i, job in enumerate(jobs[first:], start=first):
            feed.add(job, (i, "k"))
        pending = feed.finish()
        assert pending is not None
        assert pending.covered == {(i, "k") for i in range(first)}  # the rest is the writer's
        assert pending.failures() == []
        assert verifier.workers == 0
    finally:
        verifier.close()


def test_the_writer_checks_the_tasks_no_worker_has_begun_instead_of_waiting() -> None:
    verifier = ParallelVerifier(1)
    try:
        # The only worker is busy for a while, so the batch's tasks are still queued
        # when the writer asks for the verdict: it takes back those not yet begun.
        busy = verifier._executor().submit(time.sleep, 1.0)
        jobs = _jobs(6 * TASK, bad={5, 3 * TASK + 1, 6 * TASK - 1})
        pending = _begin(verifier, jobs, [(i, f"k{i}") for i in range(len(jobs))])
        assert pending is not None
        assert pending.failures() == [(5, "k5"), (3 * TASK + 1, f"k{3 * TASK + 1}"),
                                      (6 * TASK - 1, f"k{6 * TASK - 1}")]
        # The last tasks were taken back; the first ones were already the worker's (its
        # queue holds a few), and it checked them once it was free.
        assert pending._futures[-1].cancelled() and pending._futures[-2].cancelled()
        assert not pending._futures[0].cancelled()
        assert busy.done()
    finally:
        verifier.close()


def test_a_whole_batch_begun_at_once_is_checked_exactly_once() -> None:
    verifier = ParallelVerifier(1)
    try:
        jobs = _jobs(MIN_PARALLEL + 3, bad={0, MIN_PARALLEL + 2})
        pending = _begin(verifier, jobs, [(i, "k") for i in range(len(jobs))])
        assert pending is not None
        assert pending.covered == {(i, "k") for i in range(len(jobs))}
        assert pending.failures() == [(0, "k"), (MIN_PARALLEL + 2, "k")]
        assert _begin(verifier, jobs[:MIN_PARALLEL - 1], [(i, "k") for i in range(MIN_PARALLEL - 1)]) is None
    finally:
        verifier.close()


def test_a_task_that_is_never_answered_is_checked_by_the_writer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A worker died and the executor's thread stopped before failing this task's future:
    # it stays running for ever. The writer gives up waiting and checks the batch itself.
    monkeypatch.setattr(parallel, "ANSWER_WITHIN", 0.05)
    verifier = ParallelVerifier(1)
    jobs = _jobs(3, bad={1})
    stuck: Future[list[bool]] = Future()
    stuck.set_running_or_notify_cancel()
    pending = Pending(verifier, jobs, [stuck], [(i, "k") for i in range(3)], [(0, 3)])
    assert pending.failures() == [(1, "k")]
    assert verifier.workers == 0  # and no longer hands work to the workers
