"""scripts/bench trace: a synthetic national-scale ledger and the questions people ask of it.

Generated from a seed, so a run can be repeated: ≥ 10,000 organizations (farms,
processors, distributors, retailers, labs), supply chains 1 to 12 tiers deep (each tier
a shipment, its receipt and a batch made from the one before), finished goods fanned
out through distributors to retailers (a few to thousands), spot checks on a tenth of
the batches. Then: trace p50/p99 up and down, credit and scan view p99, rebuild rate
(and the raw Ed25519 verify rate just before it, as the host's speed), database size
and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import client, keys
from ledger.application import Ledger
from ledger.genesis import genesis_envelopes
from ledger.statement_types import StatementType as T
from scripts.benchmarks import common
from scripts.benchmarks.common import database, machine, reachable_backends
from scripts.benchmarks.ingest import Workload, raw_verify_rate
from traceability import credit, scan, trace
from traceability.views import Views

T0 = datetime(2026, 6, 1, tzinfo=UTC)
REGIONS = ("110000", "310000", "330100", "350100", "440300", "510100", "610100", "420100")


def _uscc(serial: int, prefix: str = "91") -> str:
    return common.uscc(f"{prefix}{REGIONS[serial % len(REGIONS)]}MC{serial:07d}")


def _gtin(serial: int) -> str:
    return common.gtin(f"0693{serial:09d}")


class Nation:
    def __init__(self, seed: int, orgs: int) -> None:
        self.rng = random.Random(seed)
        self.root = _uscc(0, "11")
        # One key per role group keeps signing fast; each organization still signs
        # with a key registered to it (keys are per organization below).
        self.keys: dict[str, Ed25519PrivateKey] = {self.root: keys.generate_private_key()}
        n = orgs
        self.farms = [_uscc(1 + i) for i in range(n * 20 // 100)]
        self.processors = [_uscc(100_000 + i) for i in range(n * 20 // 100)]
        self.distributors = [_uscc(200_000 + i) for i in range(n * 5 // 100)]
        self.retailers = [_uscc(300_000 + i) for i in range(n * 54 // 100)]
        self.labs = [_uscc(400_000 + i, "12") for i in range(max(10, n // 100))]
        self.log_key = keys.generate_private_key()
        self.batches: list[tuple[str, str, str]] = []  # (gtin, lot, producer)
        self.serial = 0

    def orgs(self) -> Iterator[tuple[str, str]]:
        for role, group in (("producer", self.farms), ("producer", self.processors),
                            ("distributor", self.distributors), ("retailer", self.retailers),
                            ("lab", self.labs)):
            for org in group:
                yield org, role

    def _sign(self, type: str, by: str, **fields: Any) -> dict[str, Any]:
        return client.sign(client.new_statement(type, by, issued_at=T0, **fields), self.keys[by])

    def create(self, db: str) -> Ledger:
        ledger = Ledger(db, log_key=self.log_key)
        ledger.create("nation.example/v1", self.log_key, self.root, genesis_envelopes(
            self.root, "SAMR", "110000", self.keys[self.root], issued_at=T0))
        chunk: list[dict[str, Any]] = []
        for org, role in self.orgs():
            self.keys[org] = keys.generate_private_key()
            chunk.append(self._sign(T.ORG_REGISTERED, self.root, uscc=org, name=f"{role} {org}",
                                    roles=[role], region=org[2:8]))
            chunk.append(self._sign(T.KEY_REGISTERED, self.root, org=org, public_key=keys.
                                    encode_public_key(keys.public_bytes(self.keys[org]))))
            if len(chunk) >= 1000:
                ledger.append(chunk)
                chunk = []
        if chunk:
            ledger.append(chunk)
        return ledger

    def _produce(self, by: str, inputs: list[dict[str, Any]]) -> tuple[dict[str, Any], str, str]:
        self.serial += 1
        gtin, lot = _gtin(self.serial % 50_000), f"N{self.serial}"
        self.batches.append((gtin, lot, by))
        return self._sign(T.BATCH_PRODUCED, by, gtin=gtin, lot=lot, product="商品", category="food",
                          quantity=1_000_000, unit="kg", produced_at="2026-06-01T00:00:00Z",
                          standard="GB 2762-2022", inputs=inputs), gtin, lot

    def _ship(self, by: str, gtin: str, lot: str, qty: int, to: str) -> list[dict[str, Any]]:
        self.serial += 1
        sid = f"S{self.serial}"
        return [self._sign(T.BATCH_SHIPPED, by, gtin=gtin, lot=lot, quantity=qty, to=to, shipment=sid),
                self._sign(T.BATCH_RECEIVED, to, shipment=sid, quantity=qty)]

    def chains(self) -> Iterator[dict[str, Any]]:
        rng = self.rng
        while True:
            farm = rng.choice(self.farms)
            envelope, gtin, lot = self._produce(farm, [])
            yield envelope
            holder = farm
            for _ in range(rng.choice((1, 1, 2, 2, 3, 3, 4, 5, 6, 8, 10, 12))):
                maker = rng.choice(self.processors)
                if maker == holder:
                    continue
                yield from self._ship(holder, gtin, lot, 1000, maker)
                envelope, gtin, lot = self._produce(maker, [{"gtin": gtin, "lot": lot, "quantity": 1000}])
                yield envelope
                holder = maker
                if rng.random() < 0.1:
                    yield self._sign(
                        T.CHECK_RECORDED, rng.choice(self.labs), gtin=gtin, lot=lot, subject=maker,
                        kind="supervisory", stage="production", sampled_at="2026-06-02T00:00:00Z",
                        standard="GB 2762-2022",
                        items=[{"name": "铅", "value": "0.1", "limit": "0.2", "unit": "mg/kg",
                                "verdict": "pass"}],
                        verdict="pass" if rng.random() < 0.96 else "fail", report_no=f"R{self.serial}")
            distributor = rng.choice(self.distributors)
            yield from self._ship(holder, gtin, lot, 100_000, distributor)
            fan = rng.randint(1, 3) if rng.random() > 0.002 else rng.randint(200, 2000)
            for retailer in rng.sample(self.retailers, min(fan, len(self.retailers))):
                yield from self._ship(distributor, gtin, lot, 10, retailer)


def _p(samples: list[float]) -> dict[str, float]:
    samples.sort()
    return {"p50_ms": round(statistics.median(samples) * 1000, 3),
            "p99_ms": round(samples[max(0, int(len(samples) * 0.99) - 1)] * 1000, 3)}


def _size(db: str) -> int:
    if not db.startswith("postgresql://"):
        return sum(os.path.getsize(db + suffix) for suffix in ("", "-wal") if os.path.exists(db + suffix))
    import psycopg

    url, schema = db.split("?schema=")
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
            (schema,)).fetchone()
    return int(row[0]) if row else 0


def generate(nation: Nation, db: str, entries: int) -> Ledger:
    """A new ledger at `db` with `entries` entries of the nation's supply chains."""
    ledger = nation.create(db)
    stream = nation.chains()
    chunk: list[dict[str, Any]] = []
    while ledger.size() + len(chunk) < entries:
        chunk.append(next(stream))
        if len(chunk) == 1000:
            ledger.append(chunk)
            chunk = []
    # A chain cut mid-way could leave a receipt without its shipment: finish cleanly.
    if chunk:
        ledger.append(chunk)
    return ledger


@contextmanager
def _kept(backend: str, keep: str, entries: int, orgs: int, seed: int) -> Iterator[str]:
    """A database that outlives the run, named after what generated it, to measure again
    without generating again (generation is most of a run at a million entries)."""
    name = f"trace_{entries}_{orgs}_{seed}"
    if backend == "sqlite":
        os.makedirs(keep, exist_ok=True)
        yield os.path.join(keep, name + ".db")
    else:
        yield f"{common.PG_URL}?schema=bench_{name}"


def run_backend(
    backend: str, entries: int, orgs: int, seed: int, samples: int, keep: str | None = None,
    only_rebuild: bool = False,
) -> dict[str, Any]:
    nation = Nation(seed, orgs)
    out: dict[str, Any] = {}
    place = _kept(backend, keep, entries, orgs, seed) if keep else database(backend)
    with place as db:
        ledger = Ledger(db)
        reused = ledger.is_created() and ledger.size() >= entries
        if only_rebuild and not reused:
            raise SystemExit(f"--only rebuild: no kept ledger of {entries} entries at {db}; "
                             "run once with --keep to make it")
        if not reused:
            if ledger.is_created():
                raise SystemExit(f"{db} holds an unfinished ledger: remove it first")
            ledger.close()
            began = time.perf_counter()
            ledger = generate(nation, db, entries)
            out["generate_and_ingest_s"] = round(time.perf_counter() - began, 1)
        out["reused"] = reused
        out["entries"] = ledger.size()
        out["organizations"] = sum(1 for _ in nation.orgs()) + 1
        views = Views(ledger)
        # The host's speed, just before: the rebuild's target is a rate, and the same
        # code on the same ledger rebuilt at half the rate on a slower night.
        verify = raw_verify_rate(list(Workload().stream(500)))
        began = time.perf_counter()
        applied = views.rebuild()
        rate = applied / (time.perf_counter() - began)
        out["rebuild_entries_per_s"] = round(rate)
        out["raw_verify_per_s"] = round(verify)
        out["rebuild_ratio_to_verify"] = round(rate / verify, 2)
        # The processes that read the log ahead during the rebuild (their largest).
        out["readers_peak_rss_mb"] = round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
        # The machine is shared: the load says how much a rate can be trusted.
        out["load_1m"] = round(os.getloadavg()[0], 2)
        if only_rebuild:
            views.close()
            ledger.close()
            return out
        # The batches in the order they were made: the generator's list, or the same
        # list read back from the views of a kept ledger.
        with views.reading() as tx:
            batches = [(r["gtin"], r["lot"], r["producer"]) for r in
                       tx.rows("SELECT gtin, lot, producer FROM v_batches ORDER BY entry")]
        assert reused or batches == nation.batches
        out["batches"] = len(batches)
        rng = random.Random(seed + 1)
        picks = [rng.choice(batches) for _ in range(samples)]
        for direction in ("up", "down"):
            times = []
            for gtin, lot, _ in picks:
                t = time.perf_counter()
                trace.trace(views, gtin, lot, direction)
                times.append(time.perf_counter() - t)
            out[f"trace_{direction}"] = _p(times)
        times = []
        for gtin, lot, _ in picks:
            t = time.perf_counter()
            scan.scan(views, gtin, lot)
            times.append(time.perf_counter() - t)
        out["scan_view"] = _p(times)
        producers = [p for _, _, p in picks]
        times = []
        for org in producers:
            t = time.perf_counter()
            credit.credit(views, org)
            times.append(time.perf_counter() - t)
        out["credit"] = _p(times)
        out["database_mb"] = round(_size(db) / 2**20)
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        views.close()
        ledger.close()
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench trace")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--orgs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--keep", metavar="DIR",
                        help="keep the generated ledger (SQLite: in DIR; PostgreSQL: in a "
                             "schema named after entries, orgs and seed) and reuse it when "
                             "it is there already")
    parser.add_argument("--only", choices=["rebuild"],
                        help="measure only this on a ledger kept by an earlier run (--keep)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.only and not args.keep:
        parser.error("--only needs --keep DIR: it measures a ledger kept by an earlier run")
    result: dict[str, Any] = {"machine": machine()}
    for backend in reachable_backends(args.backends):
        result[backend] = run_backend(backend, args.entries, args.orgs, args.seed, args.samples,
                                      args.keep, only_rebuild=args.only == "rebuild")
        if not args.json:
            print(backend, json.dumps(result[backend]), flush=True)
    if args.json:
        print(json.dumps(result))
    return 0
