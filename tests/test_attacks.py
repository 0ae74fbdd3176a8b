"""Attacks at the HTTP edge: a real uvicorn server, a hostile client, and the log size.

tests/test_rejections.py shows the ledger refusing these statements when called
directly. Here the same attacks come over HTTP, as they would from the internet: each
must be a clear RFC 9457 problem (4xx, a stable `type`, one line of `detail`) and leave
the log exactly as it was, except the replay, which is answered with its first receipt.
"""

from __future__ import annotations

import base64
import json
import select
import socket
import unicodedata
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest

from ledger import client, keys
from ledger.b64 import b64encode
from ledger.canonical import canonical_bytes
from ledger.envelope import PAYLOAD_TYPE, pae
from tests.support import ROOT, World, make_uscc
from tests.test_cli_url import server  # noqa: F401 - the uvicorn fixture
from tests.test_rejections import (  # noqa: F401 - `world` is a fixture
    FLOUR, FLOUR_MILL, LAB, SHOP, WHOLESALER, batch_fields, check_fields, keyid, public,
    signed, world)

PROBLEM = "application/problem+json"


def size(world: World) -> int:
    return world.ledger.size()


def refused(url: str, world: World, body: Any, status: int, kind: str, *,
            path: str = "/v1/entries", raw: bytes | None = None,
            headers: dict[str, str] | None = None) -> dict[str, Any]:
    """POST, expect a problem of `status` and `kind`, and a log that did not grow."""
    before = size(world)
    content = raw if raw is not None else json.dumps(body).encode()
    r = httpx.post(url + path, content=content, timeout=60,
                   headers={"Content-Type": "application/json", **(headers or {})})
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"].startswith(PROBLEM)
    problem = r.json()
    assert problem["type"].endswith("/" + kind), problem
    assert problem["status"] == status and "\n" not in problem["detail"], problem
    assert size(world) == before
    return problem


# ---- signatures and keys ----------------------------------------------------------------------


def test_a_forged_signature(world: World, server: str) -> None:
    env = world.envelope("batch.produced", FLOUR_MILL, **batch_fields())
    sig = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
    sig[0] ^= 0x80
    env["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    refused(server, world, env, 422, "bad-signature")
    # Signed by a key of the forger's own making, under the mill's key id.
    forger = keys.generate_private_key()
    payload = base64.b64decode(env["payload"])
    env["signatures"][0]["sig"] = b64encode(forger.sign(pae(PAYLOAD_TYPE, payload)))
    refused(server, world, env, 422, "bad-signature")


def test_a_valid_signature_over_another_payload_type(world: World, server: str) -> None:
    """The mill signed these bytes for another system (payloadType application/json);
    someone relabels the envelope as a ledger statement, or submits it as it is."""
    statement = world.statement("batch.produced", FLOUR_MILL, **batch_fields())
    payload = canonical_bytes(statement)
    other = signed(payload, world.keys[FLOUR_MILL], payload_type="application/json")
    refused(server, world, other, 422, "bad-payload-type")
    relabelled = dict(other, payloadType=PAYLOAD_TYPE)
    refused(server, world, relabelled, 422, "bad-signature")


def test_a_replayed_envelope_is_answered_with_its_first_receipt_and_recorded_once(
    world: World, server: str,
) -> None:
    env = world.envelope("batch.produced", FLOUR_MILL, **batch_fields())
    first = httpx.post(server + "/v1/entries", json=env)
    assert first.status_code == 201
    after = size(world)
    for _ in range(3):
        again = httpx.post(server + "/v1/entries", json=env)
        assert again.status_code == 200 and again.json() == first.json()
    # In a batch too, even beside a new envelope: the new one is recorded, the old one not.
    new = world.envelope("batch.shipped", FLOUR_MILL, gtin=FLOUR, lot="L20261120", quantity=1,
                         to=SHOP, shipment="S-1")
    batch = httpx.post(server + "/v1/entries/batch", json=[env, new])
    assert batch.status_code == 201
    assert batch.json()[0]["index"] == first.json()["index"] and batch.json()[0]["duplicate"]
    assert size(world) == after + 1
    # Replaying the statement with a fresh signature is a different envelope: 409, nothing.
    resigned = client.sign(json.loads(base64.b64decode(env["payload"])), world.keys[FLOUR_MILL])
    resigned["signatures"].append(world.envelope("batch.produced", LAB)["signatures"][0])
    refused(server, world, resigned, 409, "id-conflict")


def test_a_key_used_after_its_revocation(world: World, server: str) -> None:
    key = world.keys[FLOUR_MILL]
    world.clock.advance(minutes=1)
    world.submit("key.revoked", ROOT, org=FLOUR_MILL, keyid=keyid(key), reason="私钥泄露",
                 revoked_at=client.format_time(world.clock.now))
    world.clock.advance(minutes=1)
    refused(server, world, world.envelope("batch.produced", FLOUR_MILL, **batch_fields()),
            422, "key-revoked")
    backdated = world.envelope("batch.produced", FLOUR_MILL, **batch_fields(lot="OLD"),
                               issued_at=world.clock.now - timedelta(hours=1))
    refused(server, world, backdated, 422, "key-revoked")


def test_a_producer_recording_a_supervisory_check_on_itself(world: World, server: str) -> None:
    world.produce(FLOUR_MILL, FLOUR, "L20261120", 1000)
    env = world.envelope("check.recorded", FLOUR_MILL, **check_fields(FLOUR_MILL))
    refused(server, world, env, 422, "role-forbidden")


def test_a_lab_registering_a_key_for_another_organization(world: World, server: str) -> None:
    env = world.envelope("key.registered", LAB, org=FLOUR_MILL,
                         public_key=public(keys.generate_private_key()))
    refused(server, world, env, 422, "role-forbidden")


def test_by_naming_another_organization(world: World, server: str) -> None:
    """The wholesaler signs a production in the mill's name with its own key."""
    env = world.envelope("batch.produced", FLOUR_MILL, key=world.keys[WHOLESALER],
                         **batch_fields())
    refused(server, world, env, 422, "key-not-of-signer")


# ---- the size and shape of what is sent -------------------------------------------------------


def _raw_request(url: str, head: str, chunks: list[bytes]) -> bytes:
    """Send `head` and `chunks` on a plain socket, then read the answer. Whatever the
    server does not need is never sent: a server waiting for it would hang this test."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head.encode())
        for chunk in chunks:
            # Stop sending once the server has answered: it closes the connection with
            # our unread chunks in its buffer, which resets it and would drop the answer
            # from ours before we read it.
            if select.select([sock], [], [], 0.05)[0]:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        return answer


def test_a_ten_megabyte_body_is_refused_without_being_read(world: World, server: str) -> None:
    ten_mb = 10 * 1024 * 1024
    # Declared: refused on the header alone; not one byte of the body is sent.
    head = (f"POST /v1/entries HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {ten_mb}\r\nConnection: close\r\n\r\n")
    before = size(world)
    assert _raw_request(server, head, []).startswith(b"HTTP/1.1 413")
    # Chunked, size unknown: refused once past the limit. Only 1.25 MiB of the 10 MB is
    # ever sent, so an answer proves the server stopped reading there.
    head = ("POST /v1/entries/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    piece = b"[" + b" " * (64 * 1024 - 1)
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] + \
        [b"%x\r\n%s\r\n" % (64 * 1024, b" " * 64 * 1024)] * 19
    assert _raw_request(server, head, chunks).startswith(b"HTTP/1.1 413")
    # And through an ordinary client, the whole 10 MB offered.
    r = httpx.post(server + "/v1/entries", content=b"{" + b" " * ten_mb + b"}", timeout=60)
    assert r.status_code == 413 and r.json()["type"].endswith("/payload-too-large")
    assert size(world) == before


@pytest.mark.parametrize("path", ["/v1/entries", "/v1/entries/batch"])
@pytest.mark.parametrize("shape", ["arrays", "objects", "inside-the-payload"])
def test_deeply_nested_json_is_a_400_not_a_crash(
    world: World, server: str, path: str, shape: str,
) -> None:
    depth = 100_000
    if shape == "arrays":
        raw = b"[" * depth + b"]" * depth
    elif shape == "objects":
        raw = b'{"a":' * depth + b"1" + b"}" * depth
    else:
        # A properly signed envelope whose statement is 100,000 arrays deep.
        payload = b'{"type":' + b"[" * depth + b"]" * depth + b"}"
        env = signed(payload, world.keys[FLOUR_MILL])
        raw = json.dumps([env] if path.endswith("batch") else env).encode()
    kind = "bad-json" if shape != "inside-the-payload" else None
    before = size(world)
    r = httpx.post(server + path, content=raw, headers={"Content-Type": "application/json"},
                   timeout=60)
    assert 400 <= r.status_code < 500, r.text[:300]
    assert r.headers["content-type"].startswith(PROBLEM)
    if kind:
        assert r.json()["type"].endswith("/" + kind), r.text[:300]
    assert size(world) == before
    assert httpx.get(server + "/v1/checkpoint").status_code == 200  # still serving


# ---- look-alikes ------------------------------------------------------------------------------


LOOK_ALIKES = {
    "fullwidth-digits": "L２０２６１１２０",
    "cyrillic-a-and-o": "L2026112\u0430\u043e",  # а, о
    "cyrillic-capital-L": "\u04c020261120",  # Ӏ (palochka) for I / l
    "nfkc-ligature": "\ufb01L20261120",  # ﬁ, NFKC "fi"
    "nfd-combining-accent": "Le\u030120261120",  # e + combining acute = é
    "zero-width-space": "L2026\u200b1120",
    "superscript-two": "L\u00b2026",  # ² is NFKC "2"
}


@pytest.mark.parametrize("lot", LOOK_ALIKES.values(), ids=LOOK_ALIKES.keys())
def test_lots_that_differ_only_by_look_alikes_or_normalization_are_refused(
    world: World, server: str, lot: str,
) -> None:
    """A lot L20261120 exists; a second that prints the same, or normalizes to something
    else, would split one batch's history in two. Each is refused."""
    world.produce(FLOUR_MILL, FLOUR, "L20261120", 1000)
    assert unicodedata.normalize("NFKC", lot) != lot or not lot.isascii()
    env = world.envelope("batch.produced", FLOUR_MILL, **batch_fields(lot=lot))
    problem = refused(server, world, env, 422, "bad-identifier")
    assert "lot" in problem["detail"]
    # Shipping from it, or scanning it, finds nothing either.
    ship = world.envelope("batch.shipped", FLOUR_MILL, gtin=FLOUR, lot=lot, quantity=1, to=SHOP,
                          shipment="S-x")
    refused(server, world, ship, 422, "bad-identifier")
    r = httpx.get(f"{server}/01/{FLOUR}/10/{quote(lot)}", headers={"Accept": "application/json"})
    assert 400 <= r.status_code < 500


@pytest.mark.parametrize("gtin", ["\uff10" + FLOUR[1:], FLOUR[:5] + "\u0663" + FLOUR[6:]],
                         ids=["fullwidth-zero", "arabic-indic-three"])
def test_gtins_and_codes_with_non_ascii_digits_are_refused(
    world: World, server: str, gtin: str,
) -> None:
    env = world.envelope("batch.produced", FLOUR_MILL, **batch_fields(gtin=gtin))
    refused(server, world, env, 422, "bad-identifier")
    uscc = FLOUR_MILL[:4] + "\uff10" + FLOUR_MILL[5:]  # a fullwidth 0 in the USCC
    env = world.envelope("org.registered", ROOT, uscc=uscc, name="仿冒企业", roles=["producer"],
                         region="350100")
    refused(server, world, env, 422, "bad-identifier")


# ---- script and SQL in every free-text field ---------------------------------------------------

SHORT = "<b>'\";--</b>"  # for fields of at most 20 characters
FRAGMENT = "<script>alert(1)</script><img src=x onerror=alert(1)>\"'; DROP TABLE v_batches;--"


def test_script_and_sql_in_free_text_are_recorded_as_text_and_shown_escaped(
    world: World, server: str,
) -> None:
    """A hostile producer fills every free-text field it can sign with HTML and SQL. It is
    all recorded as plain text (201), the JSON gives it back byte for byte, the scan page
    shows it escaped, and the views are intact afterwards."""
    evil = make_uscc(666)
    world.register(evil, FRAGMENT, "producer", region="350100")
    lot = "EVIL-1"
    world.produce(evil, FLOUR, lot, 100, product=FRAGMENT, standard="Q/" + FRAGMENT)
    world.ship(evil, FLOUR, lot, 50, FLOUR_MILL, "S-EVIL")
    world.receive(FLOUR_MILL, "S-EVIL", 50)
    world.produce(FLOUR_MILL, FLOUR, "L20261120", 1000,
                  inputs=[{"gtin": FLOUR, "lot": lot, "quantity": 10}])
    check = check_fields(evil, gtin=FLOUR, lot=lot)
    check["items"][0].update(name=FRAGMENT, unit=SHORT)
    check["standard"] = FRAGMENT  # report_no is an identifier (letters, digits, . _ : / -)
    world.submit("check.recorded", LAB, **check)
    world.submit("recall.issued", evil, gtin=FLOUR, lots=[lot], level=3, reason=FRAGMENT)
    world.submit("case.opened", SHOP, case="C-1", respondent=evil,
                 batches=[{"gtin": FLOUR, "lot": lot}], summary=FRAGMENT, channel="12315")
    world.submit("case.evidence", LAB, case="C-1", refs=[], note=FRAGMENT)
    world.submit("credit.adjusted", ROOT, org=evil, delta=-1, reason=FRAGMENT, basis=FRAGMENT,
                 refs=[])
    world.submit("blacklist.added", ROOT, org=evil, reason=FRAGMENT, basis=FRAGMENT, refs=[])
    world.submit("award.granted", ROOT, org=FLOUR_MILL, title=FRAGMENT,
                 valid_until="2030-01-01T00:00:00Z")
    world.submit("key.revoked", ROOT, org=evil, keyid=keyid(world.keys[evil]), reason=FRAGMENT,
                 revoked_at=client.format_time(world.clock.now))

    # The JSON answers give the text back exactly.
    scan = httpx.get(f"{server}/01/{FLOUR}/10/{lot}", headers={"Accept": "application/json"})
    assert scan.status_code == 200
    view = scan.json()
    assert view["batch"]["product"] == FRAGMENT and view["producer"]["name"] == FRAGMENT
    assert view["recalls"][0]["reason"] == FRAGMENT
    org = httpx.get(f"{server}/v1/orgs/{evil}").json()
    assert org["name"] == FRAGMENT
    assert any(line["reason"].endswith(FRAGMENT) or FRAGMENT in line["reason"]
               for line in org["credit"]["explain"]), org["credit"]["explain"]
    (listed,) = httpx.get(f"{server}/v1/blacklist").json()["blacklist"]
    assert listed["name"] == listed["reason"] == listed["basis"] == FRAGMENT

    # The scan pages (the batch, and the one made from it, whose origin names the evil
    # producer) show every fragment escaped and never as markup.
    for path in (f"/01/{FLOUR}/10/{lot}", f"/01/{FLOUR}/10/L20261120"):
        for lang in ("zh", "en"):
            page = httpx.get(f"{server}{path}?lang={lang}", headers={"Accept": "text/html"})
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            html = page.text
            assert "<script" not in html and "<img" not in html
            assert "&lt;script&gt;alert(" in html
            assert "&lt;img src=x onerror=alert(1)&gt;" in html
    # SQL in the text did nothing: every view table is there and answers.
    assert httpx.get(f"{server}/v1/batches/{FLOUR}/L20261120/trace?direction=up").json()[
        "nodes"][-1]["lot"] in (lot, "L20261120")
    assert httpx.get(f"{server}/01/{FLOUR}/10/L20261120",
                     headers={"Accept": "application/json"}).json()["status"] == "recalled"
