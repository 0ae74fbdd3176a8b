"""scripts/bench bundle: an evidence bundle of a large case, made and verified offline.

The national ledger of `scripts/bench trace` (its Nation generator, same seed, same
shape) at --entries entries (default 1,000,000), kept at --ledger so later runs reuse it
(generating a million entries takes minutes). In it the root regulator opens a case
naming the batches with the widest retail fan-out until the case touches about
--target entries (default 10,000). Then: the time to select and bundle the case (target
< 2 s), the time to verify the bundle offline (target < 3 s), and the raw Ed25519 verify
rate on this machine in the same run, with the bundle verification's entries per second
as a share of it. SQLite only: a ledger at a path.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

from ledger import client, keys
from ledger.application import Ledger
from ledger.statement_types import StatementType as T
from scripts.benchmarks.common import machine
from scripts.benchmarks.trace import T0, Nation, generate
from traceability.views import Views

CASE_ID = "BENCH-CASE-1"


def _paths(ledger_path: Path) -> tuple[Path, Path]:
    """The root regulator's key and the log key, kept beside the ledger to add a case later."""
    return (ledger_path.with_name(ledger_path.name + ".root-key.pem"),
            ledger_path.with_name(ledger_path.name + ".log-key.pem"))


def prepare(ledger_path: Path, entries: int, orgs: int, seed: int) -> dict[str, Any]:
    """Generate the national ledger at `ledger_path` unless a ledger is there already."""
    root_key_path, log_key_path = _paths(ledger_path)
    if ledger_path.exists():
        return {"generated": False}
    ledger_path.parent.mkdir(parents=True, exist_ok=True)
    nation = Nation(seed, orgs)
    began = time.perf_counter()
    ledger = generate(nation, str(ledger_path), entries)
    keys.write_private_key(root_key_path, nation.keys[nation.root])
    keys.write_private_key(log_key_path, nation.log_key)
    generated = time.perf_counter() - began
    began = time.perf_counter()
    with Views.open(ledger):
        pass
    ledger.close()
    return {"generated": True, "generate_and_ingest_s": round(generated, 1),
            "views_s": round(time.perf_counter() - began, 1)}


def open_case(ledger: Ledger, views: Views, root_key_path: Path, target: int) -> None:
    """The root regulator opens CASE_ID over the widest-reaching batches, once."""
    with views.reading() as tx:
        if tx.row("SELECT case_id FROM v_cases WHERE case_id = ?", (CASE_ID,)):
            return
        root = tx.value("SELECT signer FROM v_entries WHERE entry = 0")
        wide = tx.rows(
            "SELECT gtin, lot, COUNT(*) AS n FROM v_shipments GROUP BY gtin, lot "
            "ORDER BY n DESC, gtin, lot LIMIT 200"
        )
        if not wide:
            # Registrations come first (two entries an organization): a small ledger
            # may hold no shipment yet, and so no case worth bundling.
            raise SystemExit("bench bundle: the ledger has no shipments yet; "
                             "use --entries well above 2 × --orgs")
        producers = {
            (r["gtin"], r["lot"]): r["producer"]
            for r in tx.rows("SELECT gtin, lot, producer FROM v_batches WHERE lot IN ("
                             + ",".join("?" for _ in wide) + ")", [w["lot"] for w in wide])
        }
    # A retail shipment brings about four entries: itself, its receipt and the
    # retailer's two registrations (fewer when a retailer recurs).
    batches, estimate = [], 0
    for w in wide:
        if estimate >= target:
            break
        batches.append({"gtin": w["gtin"], "lot": w["lot"]})
        estimate += 4 * w["n"]
    respondent = producers[(batches[0]["gtin"], batches[0]["lot"])]
    statement = client.new_statement(
        T.CASE_OPENED, root, issued_at=T0, case=CASE_ID, respondent=respondent,
        batches=batches, summary="benchmark: contested recall reach", channel="inspection")
    ledger.append([client.sign(statement, keys.load_private_key(root_key_path))])
    views.catch_up()


def run(ledger_path: Path, entries: int, orgs: int, seed: int, target: int,
        save: Path | None = None) -> dict[str, Any]:
    # Imported here so that --prepare-only needs nothing but the generator.
    from ledger.bundle import verify_bundle
    from scripts.benchmarks.ingest import raw_verify_rate
    from traceability.bundle import case_bundle, serialize
    from traceability.evidence import case_entries

    out: dict[str, Any] = prepare(ledger_path, entries, orgs, seed)
    root_key_path, log_key_path = _paths(ledger_path)
    ledger = Ledger(str(ledger_path), log_key=keys.load_private_key(log_key_path))
    views = Views.open(ledger)
    open_case(ledger, views, root_key_path, target)
    out["ledger_entries"] = ledger.size()

    began = time.perf_counter()
    selected = case_entries(views, CASE_ID)
    out["select_s"] = round(time.perf_counter() - began, 3)
    began = time.perf_counter()
    data = serialize(case_bundle(views, CASE_ID))
    out["bundle_s"] = round(time.perf_counter() - began, 3)
    out["bundle_entries"] = len(selected)
    out["bundle_mb"] = round(len(data) / 2**20, 1)
    views.close()
    ledger.close()
    if save is not None:
        save.write_bytes(data)

    began = time.perf_counter()
    verdict = verify_bundle(data)
    verify_s = time.perf_counter() - began
    if verdict.failures:
        raise SystemExit("the benchmark's bundle did not verify:\n" + "\n".join(verdict.failures))
    out["verify_s"] = round(verify_s, 3)
    out["verified"] = verdict.summary()
    signatures = verdict.signatures
    out["signatures_verified"] = signatures
    out["verify_signatures_per_s"] = round(signatures / verify_s)
    envelopes = [entry["entry"]["envelope"] for entry in json.loads(data)["entries"][:500]]
    raw = raw_verify_rate(envelopes)
    out["raw_ed25519_verify_per_s"] = round(raw)
    out["verify_share_of_raw_rate"] = round(signatures / verify_s / raw, 3)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench bundle")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--orgs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--target", type=int, default=10_000,
                        help="about how many entries the case should touch")
    parser.add_argument("--ledger", type=Path, default=None,
                        help="SQLite ledger to reuse or create "
                             "(default ./bench-bundle-ENTRIES.db)")
    parser.add_argument("--prepare-only", action="store_true",
                        help="generate the ledger and its views, measure nothing")
    parser.add_argument("--save-bundle", type=Path, default=None,
                        help="also write the bundle there (to profile the verifier alone)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    path = args.ledger or Path(f"bench-bundle-{args.entries}.db")
    path = Path(os.path.abspath(path))
    if args.prepare_only:
        print(json.dumps(prepare(path, args.entries, args.orgs, args.seed)), flush=True)
        return 0
    result = {"machine": machine(), "sqlite": run(path, args.entries, args.orgs, args.seed,
                                                  args.target, args.save_bundle)}
    print(json.dumps(result) if args.json else f"sqlite {json.dumps(result['sqlite'])}")
    return 0
