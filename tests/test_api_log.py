"""The HTTP API's log and entries (PROTOCOL.md §5), as a scanner app, a bank's system and an
auditor call it: submit envelopes, read entries, and check every answer with the standalone
verifier against the signed checkpoint. Every test runs on SQLite and on PostgreSQL.

The story: the regulator registers a farm and a mill; the farm submits its wheat batch over
HTTP, then ships to the mill in batches of envelopes. Errors come back as RFC 9457 problems
with a stable `type`, and a refused request records nothing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.problems import PROBLEM_BASE
from api.settings import Settings
from ledger import keys
from ledger.canonical import canonical_bytes
from ledger.errors import StorageError
from ledger.log.hasher import leaf_hash
from ledger.log.verify import verify_checkpoint, verify_consistency, verify_inclusion
from tests.support import ROOT, World, make_gtin, make_uscc

FARM, MILL = make_uscc(11), make_uscc(12)
WHEAT = make_gtin(1)
MiB = 1 << 20


@pytest.fixture
def world(db_url: str) -> World:
    world = World(db_url)
    world.register(FARM, "青禾农场", "producer")
    world.register(MILL, "金穗面粉厂", "producer")
    return world


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with TestClient(create_app(world.ledger, Settings())) as client:
        yield client


def wheat(world: World, lot: str = "W1", quantity: int = 1000) -> dict[str, Any]:
    return world.envelope(
        "batch.produced", FARM, gtin=WHEAT, lot=lot, product="小麦", category="agricultural",
        quantity=quantity, unit="kg", produced_at="2026-11-20T06:00:00Z",
        standard="GB 1351-2023", inputs=[])


def shipment(world: World, n: int, quantity: int = 10) -> dict[str, Any]:
    return world.envelope("batch.shipped", FARM, gtin=WHEAT, lot="W1", quantity=quantity,
                          to=MILL, shipment=f"S-{n}")


def broken_signature(envelope: dict[str, Any]) -> dict[str, Any]:
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[0] ^= 0x01
    return dict(envelope, signatures=[{"keyid": envelope["signatures"][0]["keyid"],
                                       "sig": base64.b64encode(bytes(sig)).decode()}])


def post(client: TestClient, path: str, body: Any) -> Any:
    return client.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})


def assert_problem(response: Any, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["type"] == PROBLEM_BASE + kind
    assert problem["status"] == status
    assert problem["title"] and problem["detail"]
    return problem


# ---- POST /v1/entries ----------------------------------------------------------------------


def test_an_envelope_is_recorded_once_and_the_same_envelope_gets_its_first_receipt(
    world: World, client: TestClient
) -> None:
    envelope = wheat(world)
    first = post(client, "/v1/entries", envelope)
    assert first.status_code == 201, first.text
    receipt = first.json()
    assert set(receipt) == {"index", "recorded_at", "leaf_hash"}
    assert receipt["index"] == world.ledger.size() - 1
    assert first.headers["location"] == f"/v1/entries/{receipt['index']}"
    # The farm's system times out and sends the same envelope again.
    world.clock.advance(minutes=1)
    again = post(client, "/v1/entries", envelope)
    assert again.status_code == 200
    assert again.json() == receipt
    assert world.ledger.size() == receipt["index"] + 1


def test_the_same_statement_id_with_other_content_is_a_conflict(
    world: World, client: TestClient
) -> None:
    original = wheat(world)
    assert post(client, "/v1/entries", original).status_code == 201
    statement_id = json.loads(base64.b64decode(original["payload"]))["id"]
    size = world.ledger.size()
    other = world.envelope("batch.produced", FARM, id=statement_id, gtin=WHEAT, lot="W1",
                           product="小麦", category="agricultural", quantity=9999, unit="kg",
                           produced_at="2026-11-20T06:00:00Z", standard="GB 1351-2023",
                           inputs=[])
    problem = assert_problem(post(client, "/v1/entries", other), 409, "id-conflict")
    assert statement_id in problem["detail"]
    assert world.ledger.size() == size


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (b"{not json", 400, "bad-json"),
        (b"\xff\xfe", 400, "bad-json"),
        (b"[]", 400, "bad-envelope"),
        (b'{"payloadType": "x"}', 400, "bad-envelope"),
        (b"", 400, "bad-json"),
    ],
    ids=["syntax", "not-utf8", "array", "missing-fields", "empty"],
)
def test_a_body_that_is_not_an_envelope_is_a_400_problem(
    world: World, client: TestClient, body: bytes, status: int, kind: str
) -> None:
    size = world.ledger.size()
    assert_problem(client.post("/v1/entries", content=body), status, kind)
    assert world.ledger.size() == size


def test_a_rule_or_signature_rejection_is_a_422_problem(world: World, client: TestClient) -> None:
    size = world.ledger.size()
    assert_problem(post(client, "/v1/entries", broken_signature(wheat(world))), 422,
                   "bad-signature")
    stranger = keys.generate_private_key()
    problem = assert_problem(post(client, "/v1/entries", world.envelope(
        "org.registered", ROOT, key=stranger, uscc=make_uscc(99), name="冒名", roles=["producer"],
        region="350100")), 422, "unknown-key")
    assert "is not registered" in problem["detail"]
    assert "position" not in problem  # one envelope: no position to name
    assert world.ledger.size() == size


# ---- the 1 MiB body limit -----------------------------------------------------------------


def padded(envelope: dict[str, Any], size: int) -> bytes:
    """The envelope's JSON followed by white space, `size` bytes in all: still valid JSON."""
    text = json.dumps(envelope).encode()
    return text + b" " * (size - len(text))


def test_a_body_of_exactly_1_mib_is_read(world: World, client: TestClient) -> None:
    response = client.post("/v1/entries", content=padded(wheat(world), MiB))
    assert response.status_code == 201, response.text


def test_a_body_over_1_mib_is_413_and_records_nothing(world: World, client: TestClient) -> None:
    size = world.ledger.size()
    body = padded(wheat(world), MiB + 1)
    problem = assert_problem(client.post("/v1/entries", content=body), 413, "payload-too-large")
    assert str(MiB) in problem["detail"]
    batch = b"[" + body + b"]"
    assert_problem(client.post("/v1/entries/batch", content=batch), 413, "payload-too-large")
    assert world.ledger.size() == size


def test_a_streamed_body_without_content_length_is_cut_off_at_1_mib(
    world: World, client: TestClient
) -> None:
    size = world.ledger.size()
    body = padded(wheat(world), MiB + 1)
    chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
    response = client.post("/v1/entries", content=chunks)  # sent chunked: no Content-Length
    assert_problem(response, 413, "payload-too-large")
    assert world.ledger.size() == size


# ---- POST /v1/entries/batch -----------------------------------------------------------------


def test_a_batch_is_recorded_in_order_and_again_answers_its_first_receipts(
    world: World, client: TestClient
) -> None:
    batch = [wheat(world)] + [shipment(world, n) for n in range(3)]
    size = world.ledger.size()
    response = post(client, "/v1/entries/batch", batch)
    assert response.status_code == 201, response.text
    receipts = response.json()
    assert [r["index"] for r in receipts] == list(range(size, size + 4))
    assert all(r["duplicate"] is False for r in receipts)
    for r in receipts:  # each receipt is the entry's
        entry = client.get(f"/v1/entries/{r['index']}").json()
        assert entry["leaf_hash"] == r["leaf_hash"] and entry["recorded_at"] == r["recorded_at"]
    again = post(client, "/v1/entries/batch", batch)
    assert again.status_code == 200
    assert [dict(r, duplicate=False) for r in again.json()] == receipts
    assert all(r["duplicate"] for r in again.json())
    assert world.ledger.size() == size + 4


def test_a_batch_with_a_bad_envelope_at_position_2_records_nothing_and_names_it(
    world: World, client: TestClient
) -> None:
    size = world.ledger.size()
    batch = [wheat(world), shipment(world, 1), broken_signature(shipment(world, 2)),
             shipment(world, 3)]
    problem = assert_problem(post(client, "/v1/entries/batch", batch), 422, "bad-signature")
    assert problem["position"] == 2
    assert problem["detail"].startswith("envelope 2: ")
    assert problem["errors"] == [{"position": 2, "type": PROBLEM_BASE + "bad-signature",
                                  "detail": problem["detail"].removeprefix("envelope 2: ")}]
    assert world.ledger.size() == size
    # Nothing of the batch was kept: the good envelopes are new when sent alone.
    assert post(client, "/v1/entries", batch[0]).status_code == 201


def test_a_batch_names_every_malformed_envelope(world: World, client: TestClient) -> None:
    size = world.ledger.size()
    batch = [wheat(world), shipment(world, 1), {"payloadType": "x"}, shipment(world, 3), 17]
    problem = assert_problem(post(client, "/v1/entries/batch", batch), 400, "bad-envelope")
    assert problem["position"] == 2
    assert [(e["position"], e["type"]) for e in problem["errors"]] == [
        (2, PROBLEM_BASE + "bad-envelope"), (4, PROBLEM_BASE + "bad-envelope")]
    assert world.ledger.size() == size


def test_a_rule_broken_inside_a_batch_is_named_by_position(
    world: World, client: TestClient
) -> None:
    """The farm ships more wheat than it made: the third shipment over-draws the lot."""
    assert post(client, "/v1/entries", wheat(world, quantity=25)).status_code == 201
    size = world.ledger.size()
    batch = [shipment(world, n, quantity=10) for n in range(4)]
    problem = assert_problem(post(client, "/v1/entries/batch", batch), 422,
                             "insufficient-quantity")
    assert problem["position"] == 2 and problem["errors"][0]["position"] == 2
    assert world.ledger.size() == size


@pytest.mark.parametrize(
    ("body", "status", "kind", "position"),
    [
        (b'{"payloadType": "x"}', 400, "bad-envelope", None),
        (b"[{}, {]", 400, "bad-json", 1),
        (b"[{} {}]", 400, "bad-json", 0),
        (b"[{}] x", 400, "bad-json", None),
        (b"[" + b",".join([b"{}"] * 1001) + b"]", 413, "too-many-envelopes", None),
        (b"[{}]", 400, "bad-envelope", 0),
    ],
    ids=["object", "broken-item", "missing-comma", "trailing-text", "1001-items", "one-bad"],
)
def test_a_batch_that_is_not_an_array_of_envelopes(
    world: World, client: TestClient, body: bytes, status: int, kind: str, position: int | None
) -> None:
    size = world.ledger.size()
    problem = assert_problem(client.post("/v1/entries/batch", content=body), status, kind)
    assert problem.get("position") == position
    assert world.ledger.size() == size


def test_an_empty_batch_records_nothing(world: World, client: TestClient) -> None:
    response = client.post("/v1/entries/batch", content=b" [ ] ")
    assert response.status_code == 200 and response.json() == []


# ---- reading entries, with proofs ------------------------------------------------------------


def test_an_entry_is_the_logged_object_with_its_index_and_leaf_hash(
    world: World, client: TestClient
) -> None:
    envelope = wheat(world)
    receipt = post(client, "/v1/entries", envelope).json()
    response = client.get(f"/v1/entries/{receipt['index']}")
    assert response.status_code == 200
    entry = response.json()
    assert set(entry) == {"envelope", "recorded_at", "index", "leaf_hash"}
    assert entry["envelope"] == envelope  # exactly as accepted
    logged = {"envelope": entry["envelope"], "recorded_at": entry["recorded_at"]}
    assert leaf_hash(canonical_bytes(logged)).hex() == entry["leaf_hash"] == receipt["leaf_hash"]


def test_asking_for_an_entry_that_does_not_exist(world: World, client: TestClient) -> None:
    size = world.ledger.size()
    for path in (f"/v1/entries/{size}", f"/v1/entries/{size}/proof"):
        assert_problem(client.get(path), 404, "not-found")
    problem = assert_problem(client.get("/v1/entries/first"), 400, "invalid-request")
    assert problem["invalid-params"][0]["name"] == "index"
    assert_problem(client.get("/v1/entries/-1"), 400, "invalid-request")
    assert_problem(client.get(f"/v1/entries/{1 << 70}"), 400, "invalid-request")


def test_every_entry_proof_verifies_against_the_checkpoint_it_travels_with(
    world: World, client: TestClient
) -> None:
    post(client, "/v1/entries/batch", [wheat(world)] + [shipment(world, n) for n in range(4)])
    log_key = client.get("/v1/log-key").text
    assert log_key == world.ledger.config.log_key
    size = world.ledger.size()
    for index in range(size):
        proof = client.get(f"/v1/entries/{index}/proof").json()
        assert set(proof) == {"index", "entry", "leaf_hash", "inclusion", "checkpoint"}
        checkpoint = verify_checkpoint(proof["checkpoint"], log_key)
        assert checkpoint.size == size
        leaf = leaf_hash(canonical_bytes(proof["entry"]))
        assert leaf.hex() == proof["leaf_hash"]
        verify_inclusion(index, checkpoint.size, leaf,
                         [bytes.fromhex(h) for h in proof["inclusion"]], checkpoint.root_hash)


def test_the_feed_follows_the_log_in_pages(world: World, client: TestClient) -> None:
    post(client, "/v1/entries/batch", [wheat(world)] + [shipment(world, n) for n in range(4)])
    size = world.ledger.size()
    seen: list[dict[str, Any]] = []
    after = -1
    while True:
        page = client.get("/v1/feed", params={"after": after, "limit": 3}).json()
        if not page["entries"]:
            assert page["next_after"] == after
            break
        seen += page["entries"]
        after = page["next_after"]
        assert after == page["entries"][-1]["index"]
    assert [e["index"] for e in seen] == list(range(size))
    for e in seen:
        entry = client.get(f"/v1/entries/{e['index']}").json()
        assert e["entry"] == {"envelope": entry["envelope"], "recorded_at": entry["recorded_at"]}
        assert e["leaf_hash"] == entry["leaf_hash"]
    default = client.get("/v1/feed").json()
    assert [e["index"] for e in default["entries"]] == list(range(size))
    for params in ({"limit": 1001}, {"limit": 0}, {"after": -2}, {"after": "x"}):
        assert_problem(client.get("/v1/feed", params=params), 400, "invalid-request")


# ---- the log: checkpoint, key, proofs -------------------------------------------------------


def test_the_checkpoint_is_signed_text_for_the_current_size(
    world: World, client: TestClient
) -> None:
    response = client.get("/v1/checkpoint")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    key = client.get("/v1/log-key")
    assert key.headers["content-type"] == "text/plain; charset=utf-8"
    checkpoint = verify_checkpoint(response.text, key.text)
    assert checkpoint.size == world.ledger.size()
    assert checkpoint.root_hash == world.ledger.root_at(checkpoint.size)


def test_inclusion_and_consistency_proofs_verify(world: World, client: TestClient) -> None:
    post(client, "/v1/entries/batch", [wheat(world)] + [shipment(world, n) for n in range(6)])
    size = world.ledger.size()
    roots = {n: world.ledger.root_at(n) for n in range(1, size + 1)}
    for n in range(1, size + 1):
        for index in range(n):
            answer = client.get("/v1/proof/inclusion", params={"index": index, "tree_size": n})
            assert answer.status_code == 200
            proof = answer.json()
            assert (proof["index"], proof["tree_size"]) == (index, n)
            leaf = bytes.fromhex(client.get(f"/v1/entries/{index}").json()["leaf_hash"])
            verify_inclusion(index, n, leaf, [bytes.fromhex(h) for h in proof["hashes"]], roots[n])
        for m in range(1, n + 1):
            proof = client.get("/v1/proof/consistency", params={"first": m, "second": n}).json()
            assert (proof["first"], proof["second"]) == (m, n)
            hashes = [bytes.fromhex(h) for h in proof["hashes"]]
            verify_consistency(m, n, roots[m], roots[n], hashes)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/proof/inclusion", {"index": 0, "tree_size": 10_000}),
        ("/v1/proof/inclusion", {"index": 5, "tree_size": 5}),
        ("/v1/proof/inclusion", {"index": -1, "tree_size": 3}),
        ("/v1/proof/inclusion", {"index": 0, "tree_size": "big"}),
        ("/v1/proof/inclusion", {"index": 0}),
        ("/v1/proof/consistency", {"first": 0, "second": 3}),
        ("/v1/proof/consistency", {"first": 4, "second": 3}),
        ("/v1/proof/consistency", {"first": 1, "second": 10_000}),
        ("/v1/proof/consistency", {"second": 3}),
    ],
    ids=["size-beyond-log", "index-not-below-size", "negative-index", "size-not-a-number",
         "size-missing", "first-zero", "first-after-second", "second-beyond-log", "first-missing"],
)
def test_a_proof_asked_wrongly_is_a_400_problem(
    client: TestClient, path: str, params: dict[str, Any]
) -> None:
    assert_problem(client.get(path, params=params), 400, "invalid-request")


def test_health(world: World, client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "tree_size": world.ledger.size()}


# ---- errors from below become problems, never stack traces ------------------------------------


def test_unknown_routes_and_methods_are_problems(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404, "not-found")
    response = client.delete("/v1/checkpoint")
    assert_problem(response, 405, "method-not-allowed")
    assert response.headers["allow"] == "GET"


def test_an_unexpected_error_is_a_500_problem_without_a_stack_trace(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(index: int) -> Any:
        raise RuntimeError("secret detail at /srv/qledger/internal.py")

    monkeypatch.setattr(world.ledger, "entry", explode)
    with TestClient(create_app(world.ledger, Settings()), raise_server_exceptions=False) as client:
        response = client.get("/v1/entries/0")
    problem = assert_problem(response, 500, "internal-error")
    assert "secret" not in response.text and "Traceback" not in response.text
    assert set(problem) == {"type", "title", "status", "detail"}


def test_a_database_that_cannot_be_used_is_a_503_problem(
    world: World, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable() -> Any:
        raise StorageError("cannot reach PostgreSQL at postgresql://db:5432/qledger")

    def broken() -> Any:
        raise OSError("disk I/O error")

    monkeypatch.setattr(world.ledger, "checkpoint", unavailable)
    assert_problem(client.get("/v1/checkpoint"), 503, "storage")
    monkeypatch.setattr(world.ledger, "size", broken)
    assert_problem(client.get("/healthz"), 503, "storage")


# ---- the app factory and its documentation ----------------------------------------------------


def test_the_factory_opens_the_ledger_named_by_qledger_db(
    world: World, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QLEDGER_DB", db_url)
    with TestClient(create_app()) as client:
        assert client.get("/v1/log-key").text == world.ledger.config.log_key
        assert client.get("/healthz").json()["tree_size"] == world.ledger.size()


def test_the_openapi_document_shows_examples_and_problem_answers(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    operations = [(path, method, op) for path, ops in document["paths"].items()
                  for method, op in ops.items()]
    assert {path for path, _, _ in operations} >= {
        "/v1/entries", "/v1/entries/batch", "/v1/entries/{index}", "/v1/entries/{index}/proof",
        "/v1/feed", "/v1/checkpoint", "/v1/log-key", "/v1/proof/inclusion",
        "/v1/proof/consistency", "/healthz"}
    schemas = document["components"]["schemas"]
    for path, method, op in operations:
        success = op["responses"].get("201") or op["responses"]["200"]
        content = next(iter(success["content"].values()))
        example = content.get("example") or _schema_examples(schemas, content["schema"])
        assert example, f"{path} has no example"
        for status, answer in op["responses"].items():
            if status[0] in "45":
                assert list(answer["content"]) == ["application/problem+json"], (path, status)
        # Invalid parameters are 400 problems; 422 is only a rule rejecting an envelope.
        assert "422" not in op["responses"] or method == "post", path
    assert "example" in document["paths"]["/v1/entries"]["post"]["requestBody"]["content"][
        "application/json"]


def _schema_examples(schemas: dict[str, Any], schema: dict[str, Any]) -> Any:
    if "$ref" in schema:
        return schemas[schema["$ref"].rsplit("/", 1)[-1]].get("examples")
    if schema.get("type") == "array":
        return _schema_examples(schemas, schema["items"])
    return schema.get("examples")
