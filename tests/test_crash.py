"""Crash safety: the server is killed with SIGKILL while batches are arriving.

The story: a farm's system sends its day's records to the ledger server in batches of
twelve (each batch produces a lot and ships parts of it to the mill: later envelopes
depend on the first). Part-way, the server's machine loses power: SIGKILL, no shutdown
code. The server is started again, and the farm's system resends the batch it had no
answer for. Then:

- every batch that was acknowledged is in the log, at the indexes and with the leaf
  hashes of its receipts;
- every batch is in the log entirely or not at all: never half of one;
- the resent batch is recorded once (or answered with its first receipts if it had made
  it before the crash);
- `qledger audit` finds the log, the stored tree and the latest checkpoint in agreement;
- the views, caught up by the restarted server, equal the views rebuilt from entry 0.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.cli import main
from ledger import keys
from ledger.application import Ledger
from ledger.audit import audit
from tests.server_process import ServerProcess
from tests.support import World, make_gtin, make_uscc
from traceability.views import Views

FARM, MILL = make_uscc(11), make_uscc(12)
WHEAT = make_gtin(1)
BATCH = 12


def farm_batch(world: World, n: int) -> list[dict[str, Any]]:
    lot = f"W-{n:04d}"
    envelopes = [world.envelope(
        "batch.produced", FARM, gtin=WHEAT, lot=lot, product="小麦", category="agricultural",
        quantity=1000, unit="kg", produced_at="2026-11-20T06:00:00Z", standard="GB 1351-2023",
        inputs=[])]
    envelopes += [world.envelope("batch.shipped", FARM, gtin=WHEAT, lot=lot, quantity=10, to=MILL,
                                 shipment=f"S-{n:04d}-{k}") for k in range(BATCH - 1)]
    return envelopes


class Sender(threading.Thread):
    """The farm's system: sends batch after batch, keeps what was acknowledged."""

    def __init__(self, url: str, batches: list[list[dict[str, Any]]]) -> None:
        super().__init__(daemon=True)
        self.url, self.batches = url, batches
        self.acknowledged: dict[int, list[dict[str, Any]]] = {}  # batch number -> receipts
        self.unanswered: list[int] = []
        self.other: list[str] = []

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            for n, batch in enumerate(self.batches):
                try:
                    response = client.post(self.url + "/v1/entries/batch", json=batch)
                except httpx.HTTPError:
                    self.unanswered.append(n)  # the server died with it in flight
                    return
                if response.status_code != 201:
                    self.other.append(f"batch {n}: {response.status_code} {response.text}")
                    return
                self.acknowledged[n] = response.json()


def test_a_server_killed_mid_write_loses_nothing_acknowledged_and_records_no_half_batch(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    world = World(db_url)
    world.register(FARM, "青禾农场", "producer")
    world.register(MILL, "金穗面粉厂", "producer")
    log_key = tmp_path / "log-key.pem"
    keys.write_private_key(log_key, world.log_key)
    start_size = world.ledger.size()
    world.ledger.close()
    batches = [farm_batch(world, n) for n in range(60)]

    server = ServerProcess(db_url, log_key, log=tmp_path / "server.log").start()
    sender = Sender(server.url, batches)
    try:
        sender.start()
        # Kill once a few batches are through, while the next is on its way.
        deadline = time.monotonic() + 120
        while len(sender.acknowledged) < 4 and sender.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        server.kill()
        sender.join(30)
        assert not sender.other, sender.other
        assert 4 <= len(sender.acknowledged) < len(batches), "the kill came too late to mean anything"

        server.start()  # the same database, a new process
        ledger = Ledger(db_url)
        size = ledger.size()
        # Every acknowledged receipt is in the log, at its index, with its leaf hash.
        for receipts in sender.acknowledged.values():
            for r in receipts:
                assert ledger.entry(r["index"]).leaf_hash.hex() == r["leaf_hash"]
        # Every batch is in the log entirely or not at all.
        whole = []
        for n, batch in enumerate(batches):
            present = [ledger.receipt(json.loads(_statement(e))["id"]) is not None for e in batch]
            assert all(present) or not any(present), f"batch {n} is half recorded: {present}"
            whole.append(all(present))
        recorded = [n for n, ok in enumerate(whole) if ok]
        assert recorded == list(range(len(recorded)))  # in order, no hole
        assert size == start_size + BATCH * len(recorded)
        assert set(sender.acknowledged) <= set(recorded)

        # The farm resends what it had no answer for: recorded once, whatever happened.
        with httpx.Client(timeout=30) as client:
            for n in sender.unanswered:
                response = client.post(server.url + "/v1/entries/batch", json=batches[n])
                assert response.status_code == (200 if whole[n] else 201), response.text
            # A read through the restarted server: its views catch up first.
            assert client.get(server.url + f"/v1/orgs/{FARM}").status_code == 200
        resent_new = sum(1 for n in sender.unanswered if not whole[n])
        after = Ledger(db_url).size()
        assert after == start_size + BATCH * (len(recorded) + resent_new)

        server.stop()
        # Tree, checkpoint and entries agree; every entry verifies on replay.
        report = audit(Ledger(db_url))
        assert report.ok, [str(p) for p in report.problems]
        assert report.checkpoint_size == after
        assert main(["audit", "--db", db_url, "--quiet"]) == 0
        capsys.readouterr()
        # The views the server kept equal views rebuilt from entry 0.
        ledger = Ledger(db_url)
        with Views(ledger) as views:  # opened without catching up: as the server left them
            kept = views.dump()
            assert views.position() == ledger.recorder.max_notification_id()
            views.rebuild()
            assert views.dump() == kept
    finally:
        server.kill()


def _statement(envelope: dict[str, Any]) -> str:
    import base64

    return base64.b64decode(envelope["payload"]).decode()
