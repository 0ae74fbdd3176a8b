"""The database goes away under a running server (the issue "The server's edges", item 6).

The ledger is served through a relay (tests/outage.py) in front of the shared PostgreSQL
server, which is never stopped: the relay then refuses every connection (a server that
is down) or takes every byte and answers nothing (a server that hangs). A monitor's
`/healthz` must answer 503 within the storage timeout, and the answer must not tell an
anonymous client where the database lives or what its driver said; the log does.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from tests.conftest import require_postgres
from tests.outage import Relay
from tests.support import World

pytestmark = pytest.mark.postgres

TIMEOUT = 2  # seconds: QLEDGER_STORAGE_TIMEOUT for these tests
SLACK = 3  # what a loaded two-core machine may add


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, Relay]]:
    """A ledger on a fresh schema, reached only through a relay, and served."""
    monkeypatch.setenv("QLEDGER_STORAGE_TIMEOUT", str(TIMEOUT))
    server = require_postgres()
    schema = "t_" + uuid.uuid4().hex[:16]
    relay = Relay(server)
    world = World(f"{relay.url}?schema={schema}")
    app = create_app(world.ledger, Settings(db=world.ledger.database.url, read_rate_per_minute=0))
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.get("/healthz").json()["status"] == "ok"
            yield client, relay
    finally:
        relay.close()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _says_only_unavailable(answer_text: str, relay: Relay) -> None:
    parts = urlsplit(relay.url)
    assert "storage unavailable" in answer_text
    for secret in (str(relay.port), "127.0.0.1", parts.path.strip("/"), "postgresql", "server",
                   "connection"):
        assert secret not in answer_text, secret


@pytest.mark.parametrize("outage", ["refuse", "hang"])
def test_health_answers_503_within_the_bound_and_keeps_the_details_for_the_log(
        served: tuple[TestClient, Relay], outage: str, caplog: pytest.LogCaptureFixture) -> None:
    client, relay = served
    getattr(relay, outage)()
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="qledger.api"):
        answer = client.get("/healthz")
    took = time.monotonic() - began
    assert answer.status_code == 503 and took < TIMEOUT + SLACK, took
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["type"] == "https://qledger.example/problems/storage"
    assert body["detail"] == "storage unavailable"
    _says_only_unavailable(answer.text, relay)
    assert any("storage unavailable" in r.getMessage() for r in caplog.records)


def test_a_read_while_the_server_is_down_says_storage_unavailable_and_nothing_more(
        served: tuple[TestClient, Relay], caplog: pytest.LogCaptureFixture) -> None:
    """The relay closes every connection: the views' pooled connection fails at once, and
    the driver's message, which names host and port, goes to the log only."""
    client, relay = served
    relay.refuse()
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="qledger.api"):
        answer = client.get("/v1/blacklist")
    assert answer.status_code == 503 and time.monotonic() - began < TIMEOUT * 10 + SLACK
    _says_only_unavailable(answer.text, relay)
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert str(relay.port) in logged  # the operator learns where
