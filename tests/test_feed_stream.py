"""A bank's system follows the ledger live: Server-Sent Events and long polling on a real
server (uvicorn in a thread), while entries are recorded through the same server and by
another process's ledger (another `Ledger` on the same database)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from api.app import create_app
from api.settings import Settings
from ledger.application import Ledger
from tests.support import ROOT, World, make_uscc

BOUND = 20.0  # seconds: generous bounds on waits, never asserted as speed


@dataclass
class Served:
    url: str
    world: World  # writes through its own Ledger: "another process"
    app: FastAPI


@pytest.fixture
def served(db_url: str) -> Iterator[Served]:
    world = World(db_url)
    app = create_app(Ledger(db_url, log_key=world.log_key),
                     Settings(db=db_url, read_rate_per_minute=0))
    app.state.feed_keepalive = 0.2  # so that a stream notices a departed client quickly
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + BOUND
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield Served(f"http://127.0.0.1:{port}", world, app)
    server.should_exit = True
    thread.join(BOUND)
    app.state.views.close()
    app.state.ledger.close()
    world.ledger.close()


def events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The SSE events of a streamed response, as {"id", "event", "data"} (comments skipped)."""
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if "event" in event:
                yield event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            event[name] = value


def stream(url: str, **kwargs: Any) -> Any:
    return httpx.stream("GET", url + "/v1/feed/stream", timeout=BOUND, **kwargs)


def register_later(world: World, serial: int, delay: float = 0.3) -> threading.Thread:
    def write() -> None:
        time.sleep(delay)  # after the follower is waiting, whatever the scheduling
        world.register(make_uscc(serial), f"测试企业{serial}", "producer")
    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_a_follower_receives_entries_recorded_by_another_process_and_by_the_server(
    served: Served,
) -> None:
    world = served.world
    last = world.ledger.size() - 1
    with stream(served.url, params={"after": last}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        received = events(response)
        writer = register_later(world, 77)  # org.registered + key.registered
        first, second = next(received), next(received)
        writer.join()
        assert [first["id"], second["id"]] == [str(last + 1), str(last + 2)]
        assert first["event"] == "entry"
        data = json.loads(first["data"])
        assert data["index"] == last + 1
        assert data == httpx.get(served.url + "/v1/feed", params={"after": last, "limit": 1}
                                 ).json()["entries"][0]
        # Now through the server itself (its after-commit hook).
        envelope = world.envelope("org.registered", ROOT, uscc=make_uscc(78),
                                  name="测试企业78", roles=["producer"], region="350100")
        posted = httpx.post(served.url + "/v1/entries", json=envelope, timeout=BOUND)
        assert posted.status_code == 201
        third = next(received)
        assert int(third["id"]) == posted.json()["index"] == last + 3


def test_a_follower_resumes_after_the_last_event_id(served: Served) -> None:
    size = served.world.ledger.size()
    with stream(served.url, headers={"Last-Event-ID": "0"}) as response:
        ids = [int(next(events(response))["id"])]
    assert ids == [1]
    with stream(served.url, params={"after": 0}, headers={"Last-Event-ID": str(size - 2)}) as r:
        assert next(events(r))["id"] == str(size - 1)
    bad = httpx.get(served.url + "/v1/feed/stream", headers={"Last-Event-ID": "x"})
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"


def test_a_client_that_leaves_does_not_leave_a_stream_behind(served: Served) -> None:
    for _ in range(3):
        with stream(served.url) as response:
            next(events(response))
    deadline = time.monotonic() + BOUND
    while served.app.state.log_watch.streams and time.monotonic() < deadline:
        time.sleep(0.05)
    assert served.app.state.log_watch.streams == 0


def test_long_polling_answers_when_an_entry_arrives_and_blocks_nobody(served: Served) -> None:
    world = served.world
    last = world.ledger.size() - 1
    answers: list[httpx.Response] = []
    poller = threading.Thread(target=lambda: answers.append(httpx.get(
        served.url + "/v1/feed", params={"after": last, "wait": BOUND}, timeout=2 * BOUND)))
    poller.start()
    # While the long poll waits, the server answers other requests.
    assert httpx.get(served.url + "/v1/checkpoint", timeout=BOUND).status_code == 200
    assert answers == []
    register_later(world, 79, delay=0).join()
    poller.join(2 * BOUND)
    (answer,) = answers
    assert [e["index"] for e in answer.json()["entries"]] == [last + 1, last + 2]
    empty = httpx.get(served.url + "/v1/feed", params={"after": last + 2, "wait": 0.2}).json()
    assert empty == {"entries": [], "next_after": last + 2}
    too_long = httpx.get(served.url + "/v1/feed", params={"wait": 31})
    assert too_long.status_code == 400
