"""The command line against a running server: `submit --url`, `checkpoint --url` (a witness in
another department) and `serve`. The server is a real uvicorn on 127.0.0.1 in a thread.

The story: the regulator's operator submits registrations through the server; an auditor's
witness keeps the last checkpoint it saw and checks each new one extends it. Then someone
with database access deletes the last entry behind the server's back and records others in
its place: the witness notices.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from api.cli import records as submitting  # where `submit` reads CHUNK and MAX_BODY
from api.app import create_app
from api.cli import SERVE_PROTOCOL, main
from api.settings import Settings
from ledger import client, keys
from ledger.application import Ledger
from ledger.log.verify import verify_checkpoint
from tests.support import ROOT, World, make_gtin, make_uscc
from tests.test_audit import delete_checkpoints_from, delete_log_row

FARM, MILL = make_uscc(11), make_uscc(12)
WHEAT = make_gtin(1)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def world(db_url: str) -> World:
    world = World(db_url)
    world.register(FARM, "青禾农场", "producer")
    world.register(MILL, "金穗面粉厂", "producer")
    world.produce(FARM, WHEAT, "W1", 1000, product="小麦", category="agricultural")
    return world


@pytest.fixture
def server(world: World) -> Iterator[str]:
    """A uvicorn server over the world's ledger, on a free loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(world.ledger, Settings()), log_level="warning",
                            lifespan="off")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(10)
    sock.close()


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def registration(world: World, n: int) -> dict[str, Any]:
    statement = client.new_statement("org.registered", ROOT, issued_at=world.clock.now,
                                     uscc=make_uscc(100 + n), name=f"超市 {n}",
                                     roles=["retailer"], region="350100")
    return client.sign(statement, world.keys[ROOT])


def broken_signature(envelope: dict[str, Any]) -> dict[str, Any]:
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[10] ^= 0x01
    return dict(envelope, signatures=[{"keyid": envelope["signatures"][0]["keyid"],
                                       "sig": base64.b64encode(bytes(sig)).decode()}])


# ---- submit --url -----------------------------------------------------------------------------


def test_submit_through_the_server_stops_at_a_bad_envelope_and_resumes_after_the_fix(
    world: World, server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Eight registrations in chunks of three; number 5 has a broken signature. The first
    chunk is recorded, the second is not; after the fix the same command records the rest."""
    monkeypatch.setattr(submitting, "CHUNK", 3)
    size = world.ledger.size()
    envelopes = [registration(world, n) for n in range(8)]
    file = tmp_path / "orgs.jsonl"
    bad = envelopes[:5] + [broken_signature(envelopes[5])] + envelopes[6:]
    file.write_text("\n".join(json.dumps(e) for e in bad))
    code, out, err = run(capsys, "submit", str(file), "--url", server)
    assert code == 2
    message = err.strip().splitlines()[-1]
    assert "envelope 5 (counting from 0) rejected [bad-signature]" in message
    assert "the 3 before it are recorded" in message
    assert "3 envelopes submitted, 3 newly recorded" in err
    assert len(out.splitlines()) == 3
    assert world.ledger.size() == size + 3

    file.write_text("\n".join(json.dumps(e) for e in envelopes))
    code, out, err = run(capsys, "submit", str(file), "--url", server + "/", "--quiet")
    assert code == 0, err
    receipts = [json.loads(line) for line in out.splitlines()]
    assert [r["duplicate"] for r in receipts] == [True] * 3 + [False] * 5
    assert [r["index"] for r in receipts] == list(range(size, size + 8))
    assert all(set(r) == {"index", "recorded_at", "leaf_hash", "duplicate"} for r in receipts)
    assert world.ledger.size() == size + 8


def test_submit_splits_chunks_to_fit_the_servers_body_limit(
    world: World, server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(submitting, "MAX_BODY", 2000)  # about two registrations a request
    size = world.ledger.size()
    file = tmp_path / "orgs.json"
    file.write_text(json.dumps([registration(world, n) for n in range(7)]))
    code, out, err = run(capsys, "submit", str(file), "--url", server)
    assert code == 0, err
    assert len(out.splitlines()) == 7 and world.ledger.size() == size + 7
    assert err.count("envelopes submitted") > 2  # several requests, each within the limit


def test_submit_to_a_server_that_is_not_there_is_one_line_with_status_2(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "one.json"
    file.write_text(json.dumps(registration(world, 1)))
    code, _out, err = run(capsys, "submit", str(file), "--url", f"http://127.0.0.1:{closed_port()}")
    assert code == 2 and "cannot reach" in err and len(err.strip().splitlines()) == 1
    code, _out, err = run(capsys, "submit", str(file), "--url", "ftp://127.0.0.1/")
    assert code == 2 and "not an http" in err and len(err.strip().splitlines()) == 1


# ---- checkpoint --url: the witness --------------------------------------------------------------


def witness(capsys: pytest.CaptureFixture[str], server: str, *extra: str) -> tuple[int, str, str]:
    return run(capsys, "checkpoint", "--url", server, *extra)


def test_a_witness_follows_an_honest_log(
    world: World, server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = world.ledger.config.log_key
    first, second = tmp_path / "cp-1.txt", tmp_path / "cp-2.txt"
    code, out, err = witness(capsys, server, "--log-key", key, "-o", str(first))
    assert code == 0, err
    old = verify_checkpoint(first.read_text(encoding="utf-8"), key)
    assert old.size == world.ledger.size()
    assert f"tree size {old.size}, root {old.root_hash.hex()}" in out and err == ""

    world.ship(FARM, WHEAT, "W1", 100, MILL, "S-1")
    world.receive(MILL, "S-1", 100)
    key_file = tmp_path / "log-key.txt"
    key_file.write_text(key + "\n")
    code, out, err = witness(capsys, server, "--log-key-file", str(key_file),
                             "--consistent-with", str(first), "-o", str(second))
    assert code == 0, err
    assert f"consistent with {first} (tree size {old.size})" in out
    assert verify_checkpoint(second.read_text(encoding="utf-8"), key).size == old.size + 2
    # Nothing new: the same size is consistent with itself, and a witness may overwrite its file.
    code, out, err = witness(capsys, server, "--log-key", key, "--consistent-with", str(second),
                             "-o", str(second))
    assert code == 0, err


def test_a_witness_without_a_pinned_key_trusts_the_server_and_says_so(
    world: World, server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = witness(capsys, server)
    assert code == 0, err
    assert err.startswith("qledger: warning: trusting the log key the server sent")
    assert world.ledger.config.log_key in err and len(err.strip().splitlines()) == 1


def test_a_checkpoint_under_another_key_fails_verification(
    world: World, server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ledger.log.checkpoint import verifier_key

    impostor = verifier_key("ledger.quality.example/v1",
                            keys.generate_private_key().public_key().public_bytes_raw())
    code, _out, err = witness(capsys, server, "--log-key", impostor)
    assert code == 1 and "does not verify" in err and len(err.strip().splitlines()) == 1
    code, _out, err = witness(capsys, server, "--log-key", "not-a-key")
    assert code == 2 and "--log-key" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("recorded_after", "message"),
    [(0, "the log shrank"), (1, "not consistent"), (2, "not consistent")],
    ids=["shrunk", "same-size-fork", "rewritten-and-grown"],
)
def test_a_witness_detects_a_log_rewritten_behind_the_servers_back(
    world: World, server: str, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    recorded_after: int, message: str,
) -> None:
    """With SQL, someone deletes the last entry, its tree nodes and its checkpoint, and records
    other entries through a ledger of their own. The server keeps serving the database."""
    key = world.ledger.config.log_key
    seen = tmp_path / "seen.txt"
    assert witness(capsys, server, "--log-key", key, "-o", str(seen))[0] == 0
    old = verify_checkpoint(seen.read_text(encoding="utf-8"), key)

    delete_log_row(db_url, old.size)  # entry old.size - 1
    delete_checkpoints_from(db_url, old.size)
    world.ledger = Ledger(db_url, clock=world.clock, log_key=world.log_key)
    for n in range(recorded_after):
        world.ship(FARM, WHEAT, "W1", 1, MILL, f"S-other-{n}")

    code, out, err = witness(capsys, server, "--log-key", key, "--consistent-with", str(seen),
                             "-o", str(tmp_path / "new.txt"))
    assert code == 1, out + err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "new.txt").exists()  # a witness does not advance past a fork


def test_a_witness_that_cannot_reach_the_server_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = witness(capsys, f"http://127.0.0.1:{closed_port()}")
    assert code == 2 and "cannot reach" in err and len(err.strip().splitlines()) == 1
    code, _out, err = witness(capsys, "http://127.0.0.1:1", "--consistent-with",
                             str(tmp_path / "missing.txt"))
    assert code == 2 and "no such file" in err


# ---- serve -------------------------------------------------------------------------------


def test_serve_runs_one_app_or_a_factory_per_worker(
    world: World, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys.write_private_key(tmp_path / "log.pem", world.log_key)
    monkeypatch.setenv("QLEDGER_LOG_KEY", str(tmp_path / "log.pem"))
    monkeypatch.setenv("QLEDGER_DB", "restored-after-the-test")
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))

    code, _out, err = run(capsys, "serve", "--db", db_url, "--port", "8123")
    assert code == 0, err
    app, options = calls.pop()
    assert options == {"host": "127.0.0.1", "port": 8123, "http": SERVE_PROTOCOL}
    assert app.state.ledger.config.log_key == world.ledger.config.log_key

    code, _out, err = run(capsys, "serve", "--db", db_url, "--workers", "3", "--host", "127.0.0.1")
    assert code == 0, err
    app, options = calls.pop()
    assert app == "api.app:create_app"
    assert options == {"host": "127.0.0.1", "port": 8000, "http": SERVE_PROTOCOL, "factory": True,
                       "workers": 3}
    assert os.environ["QLEDGER_DB"] == db_url  # where each worker's create_app() looks


def test_serve_refuses_what_it_cannot_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: pytest.fail("must not start"))
    code, _out, err = run(capsys, "serve", "--db", str(tmp_path / "empty.db"))
    assert code == 2 and "no ledger" in err and len(err.strip().splitlines()) == 1
    code, _out, err = run(capsys, "serve", "--workers", "0")
    assert code == 2 and "--workers" in err
