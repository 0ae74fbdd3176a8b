"""scripts/bench log: the verifiable log at scale.

- ingest with the Merkle tree maintained versus not (the tree's share of ingest time);
- a ledger of --entries entries (default 1,000,000): inclusion and consistency proof
  generation p50/p99 from the stored tree, and the proof verification rate;
- `audit` rate on a --audit-n entry ledger (or on a ledger given with --audit-on), as
  a share of the raw Ed25519 verify rate; and, apart, the rate of its second part, the
  views rebuilt from the log and compared with the live ones (traceability.viewcheck).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import statistics
import time
from typing import Any

from ledger.application import Ledger
from ledger.audit import audit
from ledger.log.verify import verify_checkpoint, verify_consistency, verify_inclusion
from scripts.benchmarks.common import database, machine, reachable_backends
from scripts.benchmarks.ingest import Workload, raw_verify_rate
from traceability.viewcheck import check_views
from traceability.views import Views


def _ingest(ledger: Any, work: Workload, count: int, start: int, chunk: int = 1000) -> float:
    stream = work.stream(count, start=start)
    began = time.perf_counter()
    done = 0
    while done < count:
        batch = [next(stream) for _ in range(min(chunk, count - done))]
        ledger.append(batch)
        done += len(batch)
    return count / (time.perf_counter() - began)


def _percentiles(samples: list[float]) -> dict[str, float]:
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples) * 1000, 4),
        "p99_ms": round(samples[int(len(samples) * 0.99) - 1] * 1000, 4),
    }


def run_backend(backend: str, entries: int, ratio_n: int, audit_n: int, verify: float,
                proofs_on: str | None = None, audit_on: str | None = None) -> dict[str, Any]:
    work = Workload()
    out: dict[str, Any] = {}
    # 1. What the tree costs at ingest: the same stream with and without it.
    rates = {}
    for maintain in (False, True):
        with database(backend) as db:
            ledger = work.create(db)
            ledger.maintain_tree = maintain
            rates[maintain] = _ingest(ledger, work, ratio_n, start=0)
            ledger.close()
    out["ingest_with_tree_per_s"] = round(rates[True])
    out["ingest_without_tree_per_s"] = round(rates[False])
    out["tree_share_of_ingest_time"] = round(1 - rates[True] / rates[False], 3)

    # 2. Audit rate against the raw verify rate; then its views part on its own.
    if audit_on is not None:
        out.update(_audit(Ledger(audit_on), verify))
    else:
        with database(backend) as db:
            ledger = work.create(db)
            _ingest(ledger, work, audit_n, start=0)
            out.update(_audit(ledger, verify))

    # 3. Proofs on a large ledger: built here, or one given (--proofs-on).
    if proofs_on is not None:
        ledger = Ledger(proofs_on)
        out.update(_proofs(ledger))
        ledger.close()
        return out
    with database(backend) as db:
        ledger = work.create(db)
        began = time.perf_counter()
        _ingest(ledger, work, entries - ledger.size(), start=0)
        out["large_ingest_per_s"] = round(ledger.size() / (time.perf_counter() - began))
        out.update(_proofs(ledger))
        ledger.close()
    return out


def _audit(ledger: Ledger, verify: float) -> dict[str, Any]:
    """The audit's two parts timed apart: the ledger (entries, tree, statements table,
    aggregates) as a share of the raw verify rate, and the views check. Views that do
    not exist yet are built first, untimed, so that there is something to compare."""
    out: dict[str, Any] = {"audit_entries": ledger.size()}
    began = time.perf_counter()
    report = audit(ledger)
    seconds = time.perf_counter() - began
    assert report.ok, [str(p) for p in report.problems[:3]]
    out["audit_s"] = round(seconds, 1)
    out["audit_entries_per_s"] = round(ledger.size() / seconds)
    out["audit_ratio_to_verify"] = round(ledger.size() / seconds / verify, 3)
    # The replay holds every aggregate in memory: the largest this process has been.
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    with Views(ledger) as views:
        if views.position() == 0:
            views.rebuild()
    gc.collect()
    began = time.perf_counter()
    views_report = check_views(ledger)
    seconds = time.perf_counter() - began
    assert views_report.checked and views_report.ok, views_report.problems[:3]
    out["views_check_s"] = round(seconds, 1)
    out["views_check_entries_per_s"] = round(ledger.size() / seconds)
    ledger.close()
    return out


def _proofs(ledger: Ledger) -> dict[str, Any]:
    """Inclusion and consistency proof generation p50/p99 at the ledger's size, and
    the inclusion proof verification rate."""
    out: dict[str, Any] = {}
    size = ledger.size()
    out["entries"] = size
    checkpoint = verify_checkpoint(ledger.checkpoint(), ledger.config.log_key)
    rng = random.Random(7)
    # The first proof of a process reads the tree's upper levels (ledger.store.recorder):
    # timed on its own, then the figures are those of a warm process, as a server is, with
    # the earlier steps' garbage collected first.
    ledger.recorder.forget_cached_nodes()
    began = time.perf_counter()
    ledger.inclusion_proof(rng.randrange(size), size)
    out["first_inclusion_proof_ms"] = round((time.perf_counter() - began) * 1000, 1)
    for _ in range(500):
        ledger.inclusion_proof(rng.randrange(size), size)
    gc.collect()
    samples, proofs = [], []
    for _ in range(3000):
        index = rng.randrange(size)
        began = time.perf_counter()
        proof = ledger.inclusion_proof(index, size)
        samples.append(time.perf_counter() - began)
        proofs.append((index, proof))
    out["inclusion_proof"] = _percentiles(samples)
    samples = []
    for _ in range(1000):
        first = rng.randrange(1, size)
        began = time.perf_counter()
        ledger.consistency_proof(first, size)
        samples.append(time.perf_counter() - began)
    out["consistency_proof"] = _percentiles(samples)
    leaves = {i: ledger.entry(i).leaf_hash for i, _ in proofs}
    began = time.perf_counter()
    for index, proof in proofs:
        verify_inclusion(index, size, leaves[index], proof, checkpoint.root_hash)
    out["inclusion_verify_per_s"] = round(len(proofs) / (time.perf_counter() - began))
    first = size // 3
    old_root = ledger.root_at(first)
    verify_consistency(first, size, old_root, checkpoint.root_hash,
                       ledger.consistency_proof(first, size))
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench log")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--ratio-n", type=int, default=20_000)
    parser.add_argument("--audit-n", type=int, default=20_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--proofs-on", action="append", default=[], metavar="DB",
                        help="measure the proofs on this existing ledger (a SQLite path or a "
                        "postgresql:// URL, for its backend) instead of building one of "
                        "--entries entries; may be given once per backend")
    parser.add_argument("--audit-on", action="append", default=[], metavar="DB",
                        help="audit this existing ledger instead of building one of --audit-n "
                        "entries; may be given once per backend")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    given = {("postgres" if db.startswith("postgresql://") else "sqlite"): db for db in args.proofs_on}
    audited = {("postgres" if db.startswith("postgresql://") else "sqlite"): db
               for db in args.audit_on}
    backends = reachable_backends(args.backends)
    work = Workload()
    verify = raw_verify_rate(list(work.stream(500)))
    result: dict[str, Any] = {"machine": machine(), "raw_verify_per_s": round(verify)}
    for backend in backends:
        result[backend] = run_backend(backend, args.entries, args.ratio_n, args.audit_n, verify,
                                      given.get(backend), audited.get(backend))
        if not args.json:
            print(backend, json.dumps(result[backend]), flush=True)
    print(json.dumps(result) if args.json else f"raw Ed25519 verify: {round(verify):,}/s")
    return 0
