"""Floods at the server's edge: writes under made-up or borrowed key ids, idle streams by
the hundred, and clients that send their requests a byte at a time.

The story: the flour mill (FLOUR_MILL) records its batches; a bakery's system follows the
ledger live; shoppers scan loaves. An attacker without any key of the ledger posts
batches of envelopes under key ids nobody registered, then under the mill's real key id
(public, it is in the log) with garbage signatures; opens hundreds of streams it never
reads; and trickles headers and bodies to hold connections. Each must cost the server
little, answer a clear problem (or a closed connection for a request never finished),
and leave the shoppers' scans about as fast as before.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

import ledger.keys
from api.app import create_app
from api.settings import DEFAULT_WRITE_RATE, Settings
from api.timeouts import MAX_HEADER_BYTES, HeaderDeadlineProtocol
from ledger import client, keys
from ledger.b64 import b64encode
from ledger.errors import Rejected, Rejection
from tests.server_process import ServerProcess
from tests.support import World
from tests.test_rejections import (  # noqa: F401 - `world` is a fixture
    BAKERY, BREAD, FLOUR, FLOUR_MILL, batch_fields, keyid, world)

PROBLEM = "application/problem+json"
BOUND = 20.0  # seconds: generous bounds on waits, never asserted as speed


def produced(world: World, lot: str, key: Any = None, sig: bytes | None = None) -> dict[str, Any]:
    """The mill's batch.produced for `lot`, signed by `key` (the mill's own by default) or
    carrying the garbage signature `sig` under the mill's key id."""
    envelope = world.envelope("batch.produced", FLOUR_MILL, key=key, **batch_fields(lot=lot))
    if sig is not None:
        envelope["signatures"][0]["sig"] = b64encode(sig)
    return envelope


def garbage_under(keyid_: str, statement: dict[str, Any]) -> dict[str, Any]:
    """An envelope of `statement` with 64 bytes of garbage as the signature by `keyid_`."""
    envelope = client.sign(statement, keys.generate_private_key())
    envelope["signatures"] = [{"keyid": keyid_, "sig": b64encode(os.urandom(64))}]
    return envelope


def assert_problem(r: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"].startswith(PROBLEM)
    problem: dict[str, Any] = r.json()
    assert problem["type"].endswith("/" + kind) and problem["status"] == status, problem
    return problem


def retry_after(r: httpx.Response) -> int:
    value = r.headers["Retry-After"]
    assert value.isdigit() and int(value) >= 1, value  # whole seconds (RFC 9110 §10.2.3)
    return int(value)


# ---- refused before any signature work: keys nobody registered --------------------------------


def test_a_batch_under_an_unregistered_key_is_refused_before_any_signature_is_checked(
    world: World, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The mill has written before, so its key is one whose signatures the ledger would
    # hand to its worker processes while still reading the batch.
    world.submit("batch.produced", FLOUR_MILL, **batch_fields(lot="FIRST"))
    stranger = keys.generate_private_key()  # registered nowhere
    batch = [produced(world, f"L{i}") for i in range(299)] + [produced(world, "LAST", stranger)]

    checked: list[str] = []
    monkeypatch.setattr(ledger.keys, "verify", lambda *a: checked.append("here") or True)
    verifier = world.ledger.intake.verifier
    monkeypatch.setattr(verifier, "workers", 1)
    monkeypatch.setattr(verifier, "submit", lambda jobs: checked.append("worker") and None)
    monkeypatch.setattr(verifier, "start", lambda jobs: checked.append("worker") and [])
    size = world.ledger.size()

    with pytest.raises(Rejected) as refused:
        world.ledger.append(batch)
    assert refused.value.kind is Rejection.UNKNOWN_KEY and refused.value.position == 299
    assert keyid(stranger) in refused.value.detail
    assert checked == []  # not one signature verified, here or handed to a worker
    assert world.ledger.size() == size


def _watch_reading_and_sending(world: World, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the writer does, in order: 'read' for each envelope it validates, 'sent' for
    each task handed to a worker (none is run: the writer checks them all itself)."""
    seen: list[str] = []
    ledger_ = world.ledger
    validate = ledger_.intake.validate
    monkeypatch.setattr(ledger_.intake, "validate",
                        lambda *a: seen.append("read") or validate(*a))
    monkeypatch.setattr(ledger_.intake.verifier, "workers", 1)
    monkeypatch.setattr(ledger_.intake.verifier, "submit", lambda jobs: seen.append("sent") and None)
    return seen


def test_an_admitted_batch_goes_to_the_workers_while_it_is_still_being_read(
    world: World, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every key id of the batch is registered, so its JSON alone admits it: the workers
    # start on its first envelopes while the writer validates the rest.
    world.submit("batch.produced", FLOUR_MILL, **batch_fields(lot="FIRST"))
    batch = [produced(world, f"O{i}") for i in range(300)]
    seen = _watch_reading_and_sending(world, monkeypatch)
    world.ledger.append(batch)
    assert seen.count("read") == 300 and "sent" in seen
    assert seen.index("sent") < len(seen) - 1 - seen[::-1].index("read")


def test_a_batch_with_an_unknown_key_is_read_whole_and_refused_before_any_is_sent(
    world: World, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The same batch with one made-up key id at its end: read whole, refused, nothing sent.
    world.submit("batch.produced", FLOUR_MILL, **batch_fields(lot="FIRST"))
    batch = [produced(world, f"U{i}") for i in range(299)]
    batch.append(garbage_under(os.urandom(32).hex(), world.statement(
        "batch.produced", FLOUR_MILL, **batch_fields(lot="U299"))))
    seen = _watch_reading_and_sending(world, monkeypatch)
    with pytest.raises(Rejected) as refused:
        world.ledger.append(batch)
    assert refused.value.kind is Rejection.UNKNOWN_KEY and refused.value.position == 299
    assert seen == ["read"] * 300


def test_a_key_registered_earlier_in_the_same_batch_is_not_unknown(world: World) -> None:
    # The regulator registers a second key of the mill and the mill uses it at once.
    from tests.support import ROOT

    second = keys.generate_private_key()
    register = world.envelope("key.registered", ROOT, org=FLOUR_MILL,
                              public_key=keys.encode_public_key(keys.public_bytes(second)))
    used = produced(world, "NEWKEY", second)
    with pytest.raises(Rejected) as refused:  # used before it is registered: unknown
        world.ledger.append([used, register])
    assert refused.value.kind is Rejection.UNKNOWN_KEY and refused.value.position == 0
    receipts = world.ledger.append([register, used])
    assert [r.duplicate for r in receipts] == [False, False]


def test_a_flood_under_made_up_key_ids_names_every_envelope_in_one_answer(
    world: World, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 1,000 envelopes, each under its own made-up key id: each is named, from one look-up,
    # instead of the batch being parsed again envelope by envelope to find them.
    statements = [world.statement("batch.produced", FLOUR_MILL, **batch_fields(lot=f"X{i}"))
                  for i in range(1000)]
    batch = [garbage_under(os.urandom(32).hex(), s) for s in statements]
    app = create_app(world.ledger, Settings(read_rate_per_minute=0, write_rate_per_minute=0))
    size = world.ledger.size()
    recorder = world.ledger.recorder
    look_ups: list[int] = []
    look_up = recorder.select_events_after
    monkeypatch.setattr(recorder, "select_events_after",
                        lambda pairs: look_ups.append(len(pairs)) or look_up(pairs))
    r = TestClient(app).post("/v1/entries/batch", content=json.dumps(batch))
    problem = assert_problem(r, 422, "unknown-key")
    assert problem["position"] == 0
    assert [e["position"] for e in problem["errors"]] == list(range(1000))
    assert look_ups == [1000]  # the key ids asked for once, all together
    assert world.ledger.size() == size


# ---- write rates per address and per key --------------------------------------------------------


def test_a_client_over_its_write_allowance_gets_429_before_its_body_is_read(world: World) -> None:
    # 6 envelopes a minute: one at a time, every ten seconds.
    app = create_app(world.ledger, Settings(read_rate_per_minute=0, write_rate_per_minute=6))
    http = TestClient(app)
    size = world.ledger.size()
    batch = [produced(world, f"R{i}") for i in range(10)]
    assert http.post("/v1/entries/batch", content=json.dumps(batch)).status_code == 201

    # A batch is let through whole, and its ten envelopes cost ten times one: the next
    # request, of any size, waits for the debt to be repaid (90 s and more).
    r = http.post("/v1/entries", content=json.dumps(produced(world, "R10")))
    assert_problem(r, 429, "rate-limited")
    assert 60 <= retry_after(r) <= 100
    # Refused before the body is read: not even its JSON is looked at, and the connection
    # is closed after the answer, so the rest of a large upload is not read either.
    r = http.post("/v1/entries/batch", content=b"[not json")
    assert_problem(r, 429, "rate-limited")
    assert r.headers["connection"] == "close"
    assert world.ledger.size() == size + 10

    # The bakery, from another address and with its own key, has its own allowance.
    bakery = TestClient(app, client=("192.0.2.7", 40000))
    bread = world.envelope("batch.produced", BAKERY, **batch_fields(gtin=BREAD, lot="B1"))
    assert bakery.post("/v1/entries", content=json.dumps(bread)).status_code == 201


def test_a_real_key_id_with_garbage_signatures_is_held_to_the_keys_allowance(
    world: World, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The attacker copies the mill's key id from the log and signs nothing: each envelope
    # still costs a signature check. Changing address does not reset the key's allowance.
    verified: list[int] = []
    real_verify = ledger.keys.verify
    monkeypatch.setattr(ledger.keys, "verify", lambda *a: verified.append(1) or real_verify(*a))
    # Every check in this process, where it is counted.
    monkeypatch.setattr(world.ledger.intake.verifier, "workers", 0)
    # 6 envelopes a minute per address and per key: one at a time, every ten seconds.
    app = create_app(world.ledger, Settings(read_rate_per_minute=0, write_rate_per_minute=6))
    mill = keyid(world.keys[FLOUR_MILL])
    size = world.ledger.size()

    first = TestClient(app, client=("198.51.100.1", 40000))
    batch = [produced(world, f"G1-{i}", sig=os.urandom(64)) for i in range(5)]
    assert_problem(first.post("/v1/entries/batch", content=json.dumps(batch)),
                   422, "bad-signature")
    spent = len(verified)
    assert spent >= 1

    fresh = TestClient(app, client=("198.51.100.3", 40000))
    batch = [produced(world, f"G3-{i}", sig=os.urandom(64)) for i in range(5)]
    r = fresh.post("/v1/entries/batch", content=json.dumps(batch))
    problem = assert_problem(r, 429, "rate-limited")
    assert mill in problem["detail"] and retry_after(r) >= 1
    assert len(verified) == spent  # refused before a single signature was checked
    assert world.ledger.size() == size


# ---- real servers: streams and slow clients ------------------------------------------------------


@contextmanager
def serve(app: Any, protocol: Any = "auto") -> Iterator[int]:
    """uvicorn over `app` in a thread on a free loopback port; yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", http=protocol))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + BOUND
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        server.force_exit = True  # connections a test left open are not waited for
        thread.join(BOUND)
        sock.close()


def app_of(world: World, **settings: Any) -> FastAPI:
    app = create_app(world.ledger, Settings(read_rate_per_minute=0, **settings))
    app.state.feed_keepalive = 0.2  # a stream notices a departed client quickly
    return app


def open_stream(port: int, source: str = "127.0.0.1") -> tuple[socket.socket, bytes]:
    """A raw connection from `source` (any 127/8 address is this machine) asking for the
    stream; returns it with the start of the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=BOUND, source_address=(source, 0))
    sock.sendall(b"GET /v1/feed/stream?after=1000000 HTTP/1.1\r\nHost: ledger\r\n\r\n")
    return sock, sock.recv(4096)


def refused_stream(port: int, source: str) -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=BOUND) as c:
        with c.stream("GET", f"http://127.0.0.1:{port}/v1/feed/stream") as r:
            if r.status_code != 200:  # a stream let through never ends: only its head
                r.read()
            return r


def test_streams_are_capped_per_address_and_per_worker(world: World) -> None:
    with serve(app_of(world, streams_per_client=2, streams=3)) as port:
        first, head = open_stream(port)
        second, head2 = open_stream(port)
        assert head.startswith(b"HTTP/1.1 200") and head2.startswith(b"HTTP/1.1 200")

        r = refused_stream(port, "127.0.0.1")  # a third from the same address
        assert_problem(r, 429, "too-many-streams") and retry_after(r)

        other, head3 = open_stream(port, "127.0.0.2")  # another address: the last place
        assert head3.startswith(b"HTTP/1.1 200")
        r = refused_stream(port, "127.0.0.3")
        assert_problem(r, 503, "too-many-streams") and retry_after(r)

        # A follower that leaves gives its place back.
        first.close()
        deadline = time.monotonic() + BOUND
        while True:
            again, head = open_stream(port)
            if head.startswith(b"HTTP/1.1 200") or time.monotonic() > deadline:
                break
            again.close()
            time.sleep(0.1)
        assert head.startswith(b"HTTP/1.1 200")
        for sock in (second, other, again):
            sock.close()


def closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing the connection, or None if it held it open."""
    sock.settimeout(seconds)
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
    except TimeoutError:
        return None
    return got


def still_open_after(sock: socket.socket, seconds: float) -> bool:
    """Whether the server kept the connection open for `seconds` (reading what it sends)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(4096):
                return False
        except TimeoutError:
            break
    return True


class QuickHeaderDeadline(HeaderDeadlineProtocol):
    header_timeout = 0.5


def test_a_client_trickling_its_headers_is_cut_off(world: World) -> None:
    with serve(app_of(world), QuickHeaderDeadline) as port:
        silent = socket.create_connection(("127.0.0.1", port), timeout=BOUND)
        slow = socket.create_connection(("127.0.0.1", port), timeout=BOUND)
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: led")  # ... and the rest never comes
        assert closed_within(silent, 5) == b""
        assert closed_within(slow, 5) == b""

        # Headers without end are refused once past the limit, not held in memory (the
        # server may reset the connection before the client reads its 431).
        endless = socket.create_connection(("127.0.0.1", port), timeout=BOUND)
        try:
            endless.sendall(b"GET /healthz HTTP/1.1\r\nHost: ledger\r\n"
                            + (b"X-Pad: " + b"a" * 1000 + b"\r\n") * (MAX_HEADER_BYTES // 1000 + 2))
            answer = closed_within(endless, 5)
        except ConnectionResetError:
            answer = b"HTTP/1.1 431 (reset before it was read)"
        assert answer is not None and answer.startswith(b"HTTP/1.1 431"), answer

        # A client that asks in time is served, on the same kind of connection.
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=BOUND).status_code == 200


def test_a_client_trickling_its_body_gets_408_and_nothing_is_recorded(world: World) -> None:
    size = world.ledger.size()
    body = json.dumps(produced(world, "SLOW")).encode()
    with serve(app_of(world, body_timeout=0.5)) as port:
        sock = socket.create_connection(("127.0.0.1", port), timeout=BOUND)
        sock.sendall(b"POST /v1/entries HTTP/1.1\r\nHost: ledger\r\nContent-Type: "
                     b"application/json\r\nContent-Length: " + str(len(body)).encode()
                     + b"\r\n\r\n" + body[:10])
        answer = closed_within(sock, 5)
        assert answer is not None and answer.startswith(b"HTTP/1.1 408"), answer
        assert b"request-timeout" in answer and b"connection: close" in answer.lower()
        # A stream, which waits on its request for hours, is not cut off by the deadline.
        stream, head = open_stream(port)
        assert head.startswith(b"HTTP/1.1 200")
        assert still_open_after(stream, 1.5)
        stream.close()
    assert world.ledger.size() == size


# ---- floods against a real server: scans stay fast ----------------------------------------------

SCANS = 400  # scans per measurement at least: the p99 is the fourth slowest
FLOOD_SECONDS = 8.0  # the longest a flood is let run: less than the 10 s of writes a
# client's allowance holds (api/settings.py), so that the flood gets nothing more through


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def scan_latencies(url: str, path: str, count: int = SCANS,
                   until: Callable[[], bool] = lambda: False) -> list[float]:
    """Seconds each of `count` scans took, one after another (fewer if `until` says stop)."""
    out: list[float] = []
    with httpx.Client(base_url=url, timeout=BOUND, headers={"Accept": "application/json"}) as c:
        while len(out) < count and not until():
            start = time.perf_counter()
            r = c.get(path)
            out.append(time.perf_counter() - start)
            assert r.status_code == 200, r.text[:300]
    return out


@pytest.fixture
def mill_server(tmp_path: Path) -> Iterator[tuple[World, ServerProcess]]:
    """The mill's ledger (SQLite: the floods test the HTTP edge, not the storage) served by
    `qledger serve` in its own process, with the default write and stream limits."""
    world = World(str(tmp_path / "ledger.db"))
    world.register(FLOUR_MILL, "闽江面粉厂（测试）", "producer")
    world.submit("batch.produced", FLOUR_MILL, **batch_fields())
    keys.write_private_key(tmp_path / "log.pem", world.log_key)
    server = ServerProcess(str(tmp_path / "ledger.db"), tmp_path / "log.pem",
                           env={"QLEDGER_WRITE_RATE_PER_MINUTE": str(DEFAULT_WRITE_RATE)})
    yield world, server
    server.stop()
    world.ledger.close()


SCAN = f"/01/{FLOUR}/10/L20261120"


def unloaded_p99(url: str) -> float:
    scan_latencies(url, SCAN, 20)  # warm: connection, caches
    return p99(scan_latencies(url, SCAN))


# One post of the body; then, once told on its input, the 40 batches of the flood: four
# posters, each posting it ten times over FLOOD_SECONDS. Prints the first answer's status,
# then the others'.
FLOOD = f"""
import concurrent.futures, json, os, sys, time, httpx
os.nice(19)
url, body = sys.argv[1], open(sys.argv[2], "rb").read()
def post():
    return httpx.post(url + "/v1/entries/batch", content=body, timeout=60).status_code
def flood(_):
    statuses = []
    for i in range(10):
        time.sleep(max(0, started + i * {FLOOD_SECONDS} / 10 - time.monotonic()))
        statuses.append(post())
    return statuses
print(post(), flush=True)
sys.stdin.readline()
started = time.monotonic()
with concurrent.futures.ThreadPoolExecutor(4) as pool:
    print(json.dumps([s for part in pool.map(flood, range(4)) for s in part]), flush=True)
"""


def test_a_flood_of_bad_signature_batches_leaves_scans_fast(
    mill_server: tuple[World, ServerProcess], tmp_path: Path,
) -> None:
    world, server = mill_server
    # Batches of 1,000 envelopes under the mill's real key id, garbage signed: one, then 40.
    statements = [world.statement("batch.produced", FLOUR_MILL, **batch_fields(lot=f"F{i}"))
                  for i in range(1000)]
    body = json.dumps([garbage_under(keyid(world.keys[FLOUR_MILL]), s) for s in statements])
    size = world.ledger.size()
    server.start()
    before = unloaded_p99(server.url)

    # The attacker is another process, so that its uploads do not slow this one's scans,
    # and a low-priority one: on the Internet its own work would be done on its own
    # machine, not on the server's two cores. Its first batch is what any client may send at once (a full batch, checked and
    # refused: 422); the flood is what follows it, measured while it runs.
    (tmp_path / "flood.json").write_text(body)
    attacker = subprocess.Popen(
        [sys.executable, "-c", FLOOD, server.url, str(tmp_path / "flood.json")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert attacker.stdin is not None and attacker.stdout is not None
    assert attacker.stdout.readline().strip() == "422"
    attacker.stdin.write("go\n")
    attacker.stdin.flush()
    during = scan_latencies(server.url, SCAN, 10 * SCANS, until=lambda: attacker.poll() is not None)
    out, _ = attacker.communicate(timeout=FLOOD_SECONDS + 60)
    statuses: list[int] = json.loads(out)
    after = unloaded_p99(server.url)

    assert len(during) >= SCANS, "the flood ended before the scans could be measured"
    assert len(statuses) == 40 and set(statuses) == {429}, statuses
    baseline = max(before, after)  # the machine is shared: the quieter of the two is not it
    assert p99(during) < 3 * baseline, (
        f"scan p99 {p99(during) * 1000:.1f} ms under the flood, {baseline * 1000:.1f} ms without")
    assert world.ledger.size() == size


def test_hundreds_of_idle_streams_leave_scans_fast(
    mill_server: tuple[World, ServerProcess],
) -> None:
    world, server = mill_server
    # A log long enough that a stream from the start has pages to catch up on.
    for page in range(3):
        world.ledger.append([produced(world, f"P{page}-{i}") for i in range(1000)])
    server.start()
    before = unloaded_p99(server.url)

    # 300 streams from the start of the log, never read, from 30 addresses.
    sockets: list[socket.socket] = []
    answers: list[bytes] = []
    try:
        for i in range(300):
            sock = socket.socket()
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a reader that stalls
            sock.settimeout(BOUND)
            sock.bind((f"127.0.1.{1 + i % 30}", 0))
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(b"GET /v1/feed/stream HTTP/1.1\r\nHost: ledger\r\n\r\n")
        answers = [sock.recv(12) for sock in sockets]
        # Each stream admitted sends its first page and then waits on its reader, which
        # never reads: idle. Wait (bounded) for that, then measure with all of them open.
        deadline, settled = time.monotonic() + 3 * BOUND, 0
        while settled < 3 and time.monotonic() < deadline:
            quiet = max(scan_latencies(server.url, SCAN, 20)) < 2 * before
            settled = settled + 1 if quiet else 0
        during = scan_latencies(server.url, SCAN)
    finally:
        for sock in sockets:
            sock.close()
    after = unloaded_p99(server.url)

    assert answers.count(b"HTTP/1.1 200") == 240  # 8 per address
    assert answers.count(b"HTTP/1.1 429") == 60
    baseline = max(before, after)
    assert p99(during) < 3 * baseline, (
        f"scan p99 {p99(during) * 1000:.1f} ms with the streams, {baseline * 1000:.1f} ms without")
