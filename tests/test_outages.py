"""The database goes away under a running server (the issue "The server's edges", item 6).

The ledger is served through a relay (tests/outage.py) in front of the shared PostgreSQL
server, which is never stopped: the relay then refuses every connection (a server that
is down) or takes every byte and answers nothing (a server that hangs). A monitor's
`/healthz` must answer 503 within the storage timeout, and the answer must not tell an
anonymous client where the database lives or what its driver said; the log does.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from eventsourcing.persistence import OperationalError
from fastapi.testclient import TestClient

from api.app import create_app
from api.cli import main
from api.settings import Settings
from tests.conftest import require_postgres
from ledger import client, keys
from ledger.store import ServerSilent
from tests.outage import Relay
from tests.server_process import ROOT as SOURCE, ServerProcess, free_port
from tests.support import ROOT, World, make_uscc

TIMEOUT = 2  # seconds: QLEDGER_STORAGE_TIMEOUT for these tests
SLACK = 3  # what a loaded two-core machine may add


@pytest.fixture
def serving(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, Relay, World]]:
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
            yield client, relay, world
    finally:
        relay.close()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def served(serving: tuple[TestClient, Relay, World]) -> tuple[TestClient, Relay]:
    return serving[0], serving[1]


def _says_only_unavailable(answer_text: str, relay: Relay) -> None:
    parts = urlsplit(relay.url)
    assert "storage unavailable" in answer_text
    for secret in (str(relay.port), "127.0.0.1", parts.path.strip("/"), "postgresql", "server",
                   "connection"):
        assert secret not in answer_text, secret


@pytest.mark.postgres
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


@pytest.mark.postgres
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


@pytest.mark.postgres
@pytest.mark.parametrize("request_kind", ["views", "log", "write"])
def test_a_request_on_an_open_connection_to_a_hung_server_says_unavailable_within_the_bound(
        serving: tuple[TestClient, Relay, World], request_kind: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """The pools' connections are open and have been answered; then the server hangs (the
    relay takes every byte and answers nothing, as a server paused with SIGSTOP does: its
    kernel still acknowledges the bytes and the keepalives). A read of the views, a read of
    the log and a write each wait at most the bound, then as long again for a new
    connection to show the server alive, and answer "storage unavailable"."""
    client, relay, world = serving
    mill = world.envelope("org.registered", ROOT, uscc=make_uscc(12), name="磨坊",
                          roles=["producer"], region="350100")
    send = {
        "views": lambda: client.get("/v1/blacklist"),
        "log": lambda: client.get("/v1/checkpoint"),
        "write": lambda: client.post("/v1/entries", json=mill),
    }[request_kind]
    assert send().status_code in (200, 201)  # the pooled connections are open and answer
    mill = world.envelope("org.registered", ROOT, uscc=make_uscc(13), name="面粉厂",
                          roles=["producer"], region="350100")
    relay.hang()
    answers: list[httpx.Response] = []
    began = time.monotonic()
    request = threading.Thread(target=lambda: answers.append(send()), daemon=True)
    with caplog.at_level(logging.WARNING, logger="qledger.api"):
        request.start()
        request.join(2 * TIMEOUT + SLACK)
        took = time.monotonic() - began
        waiting = request.is_alive()
        relay.refuse()  # ends a wait that would never end, so the test fails, not hangs
        request.join(30)
    assert not waiting, f"still waiting for the hung server after {took:.1f} s"
    assert answers[0].status_code == 503, answers[0].text
    _says_only_unavailable(answers[0].text, relay)
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert f"127.0.0.1:{relay.port} did not answer within {TIMEOUT} s" in logged, logged


@pytest.mark.postgres
def test_a_read_the_library_retries_gives_up_on_a_hung_server_within_the_bound(
        serving: tuple[TestClient, Relay, World]) -> None:
    """The library retries a read that failed with an OperationalError ten times, each on
    another pooled connection to the same server: once the server is found silent, those
    fail at once instead of each waiting the bound again."""
    _, relay, world = serving
    recorder: Any = world.ledger.recorder
    assert recorder.max_notification_id()  # the pool's connections are open and answer
    relay.hang()
    failed: list[BaseException] = []

    def read() -> None:
        try:
            recorder.max_notification_id()
        except BaseException as e:  # noqa: BLE001 - what it raised is the point
            failed.append(e)

    began = time.monotonic()
    reading = threading.Thread(target=read, daemon=True)
    reading.start()
    reading.join(2 * TIMEOUT + 2 + SLACK)  # 2: the library's ten retries pause 0.2 s each
    took = time.monotonic() - began
    waiting = reading.is_alive()
    relay.refuse()  # ends a wait that would never end, so the test fails, not hangs
    reading.join(60)
    assert not waiting, f"still retrying on the hung server after {took:.1f} s"
    assert isinstance(failed[0], OperationalError), repr(failed[0])  # the library's, then
    assert isinstance(failed[0].__cause__, ServerSilent), repr(failed[0].__cause__)


@pytest.mark.postgres
def test_a_statement_slower_than_the_bound_on_a_live_server_is_waited_for(
        serving: tuple[TestClient, Relay, World]) -> None:
    """The bound is for a server that hangs, not for one that works: a writer queued behind
    another's lock, or an index being built, may take longer than the storage timeout, and
    the server shows it is alive by answering a connection of its own meanwhile."""
    _, _, world = serving
    with world.ledger.recorder.datastore.get_connection() as conn:  # type: ignore[attr-defined]
        began = time.monotonic()
        row = conn.execute("SELECT pg_sleep(%s), 42 AS answer", (TIMEOUT * 2.5,)).fetchone()
        assert row["answer"] == 42 and time.monotonic() - began >= TIMEOUT * 2.5
        assert conn.execute("SELECT 7 AS again").fetchone()["again"] == 7  # still in order


# ---- `serve --workers N` on a fresh database -------------------------------------------


@pytest.mark.postgres
def test_four_workers_on_a_fresh_schema_all_start_and_serve(
        pg_schema_url: str, tmp_path: Path) -> None:
    """`init` makes the ledger's tables but not the views': the four workers of `serve`
    create those at once. Each must come up (none dies on the views' tracking table, whose
    creation they race for), and every request then gets an answer."""
    world = World(pg_schema_url)
    key_file = tmp_path / "log-key.pem"
    keys.write_private_key(key_file, world.log_key)
    world.ledger.close()
    log = tmp_path / "serve.log"
    server = ServerProcess(pg_schema_url, key_file, workers=4, log=log).start()
    try:
        answers = [httpx.get(server.url + "/v1/blacklist", timeout=10) for _ in range(20)]
        assert {a.status_code for a in answers} == {200}
        time.sleep(1)  # a worker that died late would have logged it by now
    finally:
        server.stop()
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "IntegrityError" not in text, text[-3000:]
    assert text.count("Started server process") == 4  # none died and was started again


# ---- `serve` finds the log key `init` wrote ------------------------------------------


def _serve(db: str, cwd: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """`qledger serve` started in `cwd` with no QLEDGER_LOG_KEY, and its URL once it
    answers (or the process, exited, for the caller to read)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "QLEDGER_LOG_KEY"}
    env.update(PYTHONPATH=str(SOURCE), QLEDGER_READ_RATE_PER_MINUTE="0")
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--db", db, "--port", str(port), *extra],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(url + "/v1/checkpoint", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    return process, url


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)


def test_serve_finds_the_log_key_where_init_wrote_it(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The operator runs `init` and then `serve` in the ledger's folder, with nothing
    else set: two workers sign checkpoints with the key init wrote (beside a SQLite
    file; in that folder for PostgreSQL). Elsewhere, `serve` says in one line which
    file it looked for and what to set; `--log-key` names it."""
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    site.mkdir(), elsewhere.mkdir()
    db = db_url if db_url.startswith("postgresql") else str(site / "qledger.db")
    monkeypatch.delenv("QLEDGER_LOG_KEY", raising=False)
    monkeypatch.setenv("QLEDGER_DB", db)  # serve sets it; restored after the test
    monkeypatch.chdir(site)
    assert main(["init", "--db", db, "--origin", "ledger.quality.example/v1",
                 "--root-org", ROOT, "--root-name", "国家市场监督管理总局"]) == 0
    assert (site / "log-key.pem").exists()

    process, url = _serve(db, site, "--workers", "2")
    try:
        assert process.poll() is None, process.communicate()[1].decode()
        root_key = keys.load_private_key(site / "root-key.pem")
        mill = client.new_statement("org.registered", ROOT, uscc=make_uscc(12), name="磨坊",
                                    roles=["producer"], region="350100")
        submitted = httpx.post(url + "/v1/entries", json=client.sign(mill, root_key))
        assert submitted.status_code == 201, submitted.text  # a checkpoint was signed
    finally:
        _stop(process)

    if db.startswith("postgresql"):
        monkeypatch.chdir(elsewhere)
        capsys.readouterr()
        assert main(["serve", "--db", db, "--port", str(free_port())]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "QLEDGER_LOG_KEY" in err
        assert str(elsewhere / "log-key.pem") in err and "--log-key" in err
        process, url = _serve(db, elsewhere, "--log-key", str(site / "log-key.pem"))
        try:
            assert process.poll() is None, process.communicate()[1].decode()
            assert httpx.get(url + "/v1/checkpoint").status_code == 200
        finally:
            _stop(process)


# ---- a client that drops its upload ----------------------------------------------------


def test_a_client_that_drops_its_upload_leaves_no_traceback_and_no_entry(
        db_url: str, tmp_path: Path) -> None:
    """Half a batch, then the connection closes: the server's log holds at most one line
    about it, no traceback, and the log of entries is as it was."""
    world = World(db_url)
    size = world.ledger.size()
    key_file = tmp_path / "log-key.pem"
    keys.write_private_key(key_file, world.log_key)
    body = json.dumps([world.envelope("org.registered", ROOT, uscc=make_uscc(12), name="磨坊",
                                      roles=["producer"], region="350100")]).encode()
    log = tmp_path / "serve.log"
    server = ServerProcess(db_url, key_file, log=log).start()
    try:
        before = log.read_text(errors="replace")
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(b"POST /v1/entries/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"Content-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(body) + body[: len(body) // 2])
                time.sleep(0.2)
        time.sleep(1)
        assert httpx.get(server.url + "/healthz").status_code == 200
    finally:
        server.stop()
    added = log.read_text(errors="replace")[len(before):]
    assert "Traceback" not in added and "ClientDisconnect" not in added, added
    assert len([line for line in added.splitlines() if "POST" in line]) <= 3
    assert world.ledger.size() == size
