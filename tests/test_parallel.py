"""The writer hands signature checks to worker processes while it is still parsing a batch
(ledger/parallel.py Feed): each check is done exactly once, by a worker or by the writer,
and a failure is reported with the position and key it belongs to."""

from __future__ import annotations

import pytest

from ledger import keys
from ledger.parallel import FEED_TASK, MIN_PARALLEL, Job, ParallelVerifier


def _jobs(count: int, bad: set[int]) -> list[Job]:
    key = keys.generate_private_key()
    public = keys.public_bytes(key)
    jobs = []
    for i in range(count):
        message = f"message {i}".encode()
        sig = key.sign(message if i not in bad else b"something else")
        jobs.append((public, sig, message))
    return jobs


def test_a_fed_batch_goes_to_the_workers_in_tasks_as_it_is_read() -> None:
    verifier = ParallelVerifier(1)
    try:
        feed = verifier.feed()
        jobs = _jobs(2 * FEED_TASK + 30, bad={3, FEED_TASK + 7, 2 * FEED_TASK + 29})
        for i, job in enumerate(jobs):
            feed.add(job, (i, f"k{i}"))
            if i == FEED_TASK - 1:
                assert len(feed._futures) == 1  # the first task left before the rest was read
        pending = feed.finish()
        assert pending is not None
        assert len(pending._futures) == 3  # two full tasks, then the rest
        assert pending.covered == {(i, f"k{i}") for i in range(len(jobs))}
        assert pending.failures() == [(3, "k3"), (FEED_TASK + 7, f"k{FEED_TASK + 7}"),
                                      (2 * FEED_TASK + 29, f"k{2 * FEED_TASK + 29}")]
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
    for i, job in enumerate(_jobs(FEED_TASK * 2, bad=set())):
        feed.add(job, (i, "k"))
    assert feed.finish() is None


def test_when_the_workers_cannot_start_the_writer_checks_what_was_not_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = ParallelVerifier(1)
    try:
        feed = verifier.feed()
        jobs = _jobs(FEED_TASK * 2, bad={FEED_TASK + 1})
        for i, job in enumerate(jobs[:FEED_TASK]):
            feed.add(job, (i, "k"))
        monkeypatch.setattr(verifier, "_executor", lambda: (_ for _ in ()).throw(OSError("no")))
        for i, job in enumerate(jobs[FEED_TASK:], start=FEED_TASK):
            feed.add(job, (i, "k"))
        pending = feed.finish()
        assert pending is not None
        assert pending.covered == {(i, "k") for i in range(FEED_TASK)}  # the rest is the writer's
        assert pending.failures() == []
        assert verifier.workers == 0
    finally:
        verifier.close()
