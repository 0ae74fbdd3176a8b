"""The HTTP API's settings: read from the environment, and put to work in each worker."""

from __future__ import annotations

from pathlib import Path

import anyio.to_thread
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import DEFAULT_THREADS, Settings
from ledger.application import Ledger


def test_settings_come_from_the_environment_and_nonsense_falls_back_to_the_defaults() -> None:
    chosen = Settings.from_env({"QLEDGER_DB": "x.db", "QLEDGER_RESOLVER": "https://id.example.cn",
                                "QLEDGER_READ_RATE_PER_MINUTE": "60", "QLEDGER_THREADS": "6"})
    assert (chosen.db, chosen.resolver, chosen.read_rate_per_minute, chosen.threads) == (
        "x.db", "https://id.example.cn", 60, 6)
    for nonsense in ("", "0", "-3", "many", "2.5"):
        assert Settings.from_env({"QLEDGER_THREADS": nonsense}).threads == DEFAULT_THREADS
    assert Settings.from_env({}).read_rate_per_minute == 600


def test_the_worker_runs_as_many_requests_at_once_as_its_threads_setting_says(tmp_path: Path) -> None:
    # An empty ledger: the pool is set up before any ledger is created.
    with TestClient(create_app(Ledger(str(tmp_path / "l.db")), Settings(threads=3))) as client:
        assert client.portal is not None
        tokens = client.portal.call(
            lambda: anyio.to_thread.current_default_thread_limiter().total_tokens)
        assert tokens == 3
        assert client.get("/healthz").status_code == 200
