"""scripts/bench soak: a served ledger under a steady mixed load for many minutes.

`qledger serve` runs as a subprocess over the demo ledger (api/demo.py) plus a soak cast
(a producer and a retailer whose keys this script holds). Client threads send a mix of
requests the way the public and the chain's systems would:

    scan     GET /01/{gtin}/10/{lot} (JSON and HTML)        40 %
    credit   GET /v1/orgs/{uscc}                            25 %
    trace    GET /v1/batches/{gtin}/{lot}/trace up / down   25 %
    write    POST /v1/entries/batch: produce, ship, receive 10 %, at most --write-rate/s

Every --sample-seconds (default 60) it records the server's resident memory (VmRSS of the
server process and its children, from /proc/PID/status) and the latency percentiles of
the requests answered in that interval.

It fails (exit 1) on any answer with status >= 500 or a failed request, and on an upward
memory trend: the least-squares slope of RSS over the second half of the samples (the
first half is warm-up: caches filling, the allocator finding its size) above
--max-slope MiB per minute (default 1.0: 30 MiB over a 30-minute run would be a leak, not
noise). Prints a table, or --json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from api import demo
from ledger import client, keys
from ledger.application import Ledger
from ledger.statement_types import StatementType as T
from scripts.benchmarks.common import database, machine, reachable_backends, uscc

ROOT_DIR = Path(__file__).resolve().parents[2]
SOAK_PRODUCER = uscc("91350100MC0000001")
SOAK_RETAILER = uscc("91350100MC0000002")
SOAK_GTIN = demo._gtin("692009", "900010")  # noqa: SLF001 - the demo's GTIN helper
MIX = [("scan", 40), ("credit", 25), ("trace", 25), ("write", 10)]


@dataclass
class Sample:
    minute: float
    rss_mib: float
    requests: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    by_op: dict[str, int] = field(default_factory=dict)


class Load:
    """The client side: threads sending the mix, results gathered per interval."""

    def __init__(self, url: str, cast: dict[str, Any], clients: int, write_rate: float) -> None:
        self.url, self.cast = url, cast
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.results: list[tuple[str, float, int]] = []  # op, seconds, status (0: failed)
        self.errors: list[str] = []
        self.write_interval = 1.0 / write_rate if write_rate > 0 else float("inf")
        self.next_write = time.monotonic()
        self.lots = 0
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                        for n in range(clients)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def drain(self) -> list[tuple[str, float, int]]:
        with self.lock:
            out, self.results = self.results, []
        return out

    def _run(self, n: int) -> None:
        rng = random.Random(n)
        ops, weights = zip(*MIX, strict=True)
        with httpx.Client(base_url=self.url, timeout=60) as http:
            while not self.stop.is_set():
                op = rng.choices(ops, weights)[0]
                if op == "write" and not self._may_write():
                    op = "scan"
                started = time.perf_counter()
                try:
                    status = getattr(self, f"_{op}")(http, rng)
                except httpx.HTTPError as e:
                    status = 0
                    with self.lock:
                        self.errors.append(f"{op}: {type(e).__name__}: {e}")
                elapsed = time.perf_counter() - started
                with self.lock:
                    self.results.append((op, elapsed, status))
                    if status >= 500:
                        self.errors.append(f"{op}: HTTP {status}")

    def _may_write(self) -> bool:
        with self.lock:
            now = time.monotonic()
            if now < self.next_write:
                return False
            self.next_write = max(now, self.next_write + self.write_interval)
            self.lots += 1
            return True

    def _batch(self, rng: random.Random) -> tuple[str, str]:
        gtin, lot = rng.choice(self.cast["batches"])
        return gtin, lot

    def _scan(self, http: httpx.Client, rng: random.Random) -> int:
        gtin, lot = self._batch(rng)
        accept = "application/json" if rng.random() < 0.5 else "text/html"
        return http.get(f"/01/{gtin}/10/{lot}", headers={"Accept": accept}).status_code

    def _credit(self, http: httpx.Client, rng: random.Random) -> int:
        return http.get(f"/v1/orgs/{rng.choice(self.cast['orgs'])}").status_code

    def _trace(self, http: httpx.Client, rng: random.Random) -> int:
        gtin, lot = self._batch(rng)
        direction = rng.choice(("up", "down"))
        return http.get(f"/v1/batches/{gtin}/{lot}/trace", params={"direction": direction}).status_code

    def _write(self, http: httpx.Client, rng: random.Random) -> int:
        with self.lock:
            lot = f"S{self.lots}-{rng.randrange(1 << 30):x}"  # GS1 lots: at most 20 characters
        producer, retailer = self.cast["producer_key"], self.cast["retailer_key"]
        shipment = "SH-" + lot

        def sign(type: str, by: str, key: Any, **fields: Any) -> dict[str, Any]:
            return client.sign(client.new_statement(type, by, **fields), key)

        batch = [
            sign(T.BATCH_PRODUCED, SOAK_PRODUCER, producer, gtin=SOAK_GTIN, lot=lot,
                 product="soak test flour", category="food", quantity=100, unit="bag",
                 produced_at=client.format_time(datetime.now(UTC)), standard="GB/T 1355-2021",
                 inputs=[]),
            sign(T.BATCH_SHIPPED, SOAK_PRODUCER, producer, gtin=SOAK_GTIN, lot=lot, quantity=10,
                 to=SOAK_RETAILER, shipment=shipment),
            sign(T.BATCH_RECEIVED, SOAK_RETAILER, retailer, shipment=shipment, quantity=10),
        ]
        response = http.post("/v1/entries/batch", json=batch)
        status = response.status_code
        if 400 <= status < 500:  # the load is valid: a refusal is a fault of this script or the server
            with self.lock:
                self.errors.append(f"write: HTTP {status}: {response.text[:300]}")
        if status == 201:
            with self.lock:
                self.cast["batches"].append((SOAK_GTIN, lot))
        return status


# ---- the server ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def server_pids(pid: int) -> list[int]:
    """The server process and its descendants (uvicorn's workers)."""
    found = [pid]
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children[int(stat.rsplit(")", 1)[1].split()[1])].append(int(entry))
    for p in found:
        found.extend(c for c in children.get(p, []) if c not in found)
    return found


def rss_mib(pids: list[int]) -> float:
    total_kib = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except OSError:  # a process that ended between listing and reading
            pass
    return total_kib / 1024


@contextmanager
def served(db: str, log_key: Path, workers: int) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT_DIR), "QLEDGER_LOG_KEY": str(log_key),
           "QLEDGER_READ_RATE_PER_MINUTE": "0", "QLEDGER_WRITE_RATE_PER_MINUTE": "0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--db", db, "--port", str(port),
         "--workers", str(workers)],
        cwd=ROOT_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited: {process.stderr.read().decode()[-500:]}"
                                   if process.stderr else "the server exited")
            try:
                if httpx.get(url + "/v1/checkpoint", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        yield url, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def build_ledger(db: str, folder: Path) -> dict[str, Any]:
    """The demo ledger, plus a producer and a retailer whose keys the load signs with."""
    demo.build(db, folder / "log-key.pem", folder / "root-key.pem")
    root_key = keys.load_private_key(folder / "root-key.pem")
    producer, retailer = keys.generate_private_key(), keys.generate_private_key()
    ledger = Ledger(db, log_key=keys.load_private_key(folder / "log-key.pem"))
    statements = []
    for org, name, role, key in ((SOAK_PRODUCER, "soak producer", "producer", producer),
                                 (SOAK_RETAILER, "soak retailer", "retailer", retailer)):
        statements += [
            client.new_statement(T.ORG_REGISTERED, demo.REGULATOR, uscc=org, name=name,
                                 roles=[role], region="350100"),
            client.new_statement(T.KEY_REGISTERED, demo.REGULATOR, org=org,
                                 public_key=keys.encode_public_key(keys.public_bytes(key))),
        ]
    ledger.append([client.sign(s, root_key) for s in statements])
    ledger.close()
    return {
        "producer_key": producer, "retailer_key": retailer,
        "orgs": [demo.REGULATOR, demo.FARM, demo.MILL, demo.DECOY_MILL, demo.BAKERY,
                 demo.DISTRIBUTOR, demo.MART_A, demo.MART_B, demo.LAB, demo.WORKSHOP,
                 SOAK_PRODUCER, SOAK_RETAILER],
        "batches": [(demo.BREAD, "BR20261028-A"), (demo.BREAD, "BR20261028-B"),
                    (demo.FLOUR, "FL20261025-1"), (demo.FLOUR, "FL20261025-2"),
                    (demo.WHEAT, "WH2026-10A"), (demo.SNACK, "MH-1101")],
    }


# ---- the run ---------------------------------------------------------------------------------


def slope_per_minute(samples: list[Sample]) -> float:
    """Least-squares slope of RSS (MiB per minute) over the second half of the samples."""
    half = samples[len(samples) // 2:]
    if len(half) < 2:
        return 0.0
    xs, ys = [s.minute for s in half], [s.rss_mib for s in half]
    return statistics.linear_regression(xs, ys).slope


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def soak(backend: str, minutes: float, sample_seconds: float, clients: int, workers: int,
         write_rate: float, quiet: bool) -> dict[str, Any]:
    with database(backend) as db, tempfile.TemporaryDirectory(prefix="qledger-soak-") as d:
        cast = build_ledger(db, Path(d))
        with served(db, Path(d) / "log-key.pem", workers) as (url, process):
            load = Load(url, cast, clients, write_rate)
            samples: list[Sample] = []
            started = time.monotonic()
            load.start()
            try:
                end = started + minutes * 60
                while (now := time.monotonic()) < end:
                    time.sleep(min(sample_seconds, end - now))
                    results = load.drain()
                    latencies = [r[1] for r in results]
                    by_op: dict[str, int] = defaultdict(int)
                    for op, _, _ in results:
                        by_op[op] += 1
                    sample = Sample(
                        minute=round((time.monotonic() - started) / 60, 2),
                        rss_mib=round(rss_mib(server_pids(process.pid)), 1),
                        requests=len(results),
                        errors=sum(1 for r in results if r[2] >= 500 or r[2] == 0),
                        p50_ms=round(_percentile(latencies, 0.50), 1),
                        p95_ms=round(_percentile(latencies, 0.95), 1),
                        p99_ms=round(_percentile(latencies, 0.99), 1),
                        by_op=dict(by_op))
                    samples.append(sample)
                    if not quiet:
                        print(_row(sample), file=sys.stderr, flush=True)
                    if process.poll() is not None:
                        load.errors.append(f"the server exited with {process.returncode}")
                        break
            finally:
                load.finish()
            size = httpx.get(url + "/v1/checkpoint").text.split("\n")[1]
    return {"samples": samples, "errors": load.errors, "log_size": int(size),
            "slope_mib_per_min": round(slope_per_minute(samples), 3)}


HEADER = f"{'minute':>7} {'RSS MiB':>8} {'requests':>9} {'errors':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}"


def _row(s: Sample) -> str:
    return (f"{s.minute:>7} {s.rss_mib:>8} {s.requests:>9} {s.errors:>7} {s.p50_ms:>7} "
            f"{s.p95_ms:>7} {s.p99_ms:>7}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench soak")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--sample-seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=4, help="client threads")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--write-rate", type=float, default=2.0,
                        help="most write batches (3 entries each) per second")
    parser.add_argument("--max-slope", type=float, default=1.0,
                        help="RSS slope over the second half, MiB/minute, above which it fails")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not reachable_backends(args.backend):
        return 2
    result = soak(args.backend, args.minutes, args.sample_seconds, args.clients, args.workers,
                  args.write_rate, quiet=args.json)
    samples: list[Sample] = result["samples"]
    failures = []
    if result["errors"]:
        failures.append(f"{len(result['errors'])} failed requests or answers >= 500, first: "
                        f"{result['errors'][0]}")
    if result["slope_mib_per_min"] > args.max_slope:
        failures.append(f"RSS rises {result['slope_mib_per_min']} MiB/min over the second half "
                        f"(limit {args.max_slope})")
    summary = {
        "machine": machine(), "backend": args.backend, "minutes": args.minutes,
        "clients": args.clients, "workers": args.workers, "write_rate": args.write_rate,
        "max_slope_mib_per_min": args.max_slope, "slope_mib_per_min": result["slope_mib_per_min"],
        "requests": sum(s.requests for s in samples), "log_size": result["log_size"],
        "errors": result["errors"][:20], "samples": [s.__dict__ for s in samples],
        "ok": not failures, "failures": failures,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(HEADER)
        for s in samples:
            print(_row(s))
        print(f"requests {summary['requests']}, log size {result['log_size']}, RSS slope over "
              f"the second half {result['slope_mib_per_min']} MiB/min (limit {args.max_slope})")
        print("soak OK" if not failures else "soak FAILED: " + "; ".join(failures))
    return 0 if not failures else 1
