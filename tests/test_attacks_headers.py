"""The server's edges under attack: pages framed or sniffed, HEAD refused, reads closed
to browser apps and writes open to them, a forged Host header printed into the QR code
of a real batch (PROTOCOL.md §5; the issue "The server's edges", items 5, 6 and 8).

The story: the demo ledger's bakery has a recalled loaf. A shopper scans it, a bank's
web app reads it, and an attacker tries to make the ledger's own answers point at
`evil.example`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import zxingcpp
from fastapi.testclient import TestClient
from PIL import Image

from api import demo
from api.app import create_app
from api.settings import Settings
from ledger import keys
from ledger.application import Ledger

RESOLVER = "https://id.example.cn"
LISTEN = "http://127.0.0.1:8000"  # where `qledger serve` listens (QLEDGER_LISTEN_URL)
EVIL = {"host": "evil.example"}
JSON = {"accept": "application/json"}
BANK = "https://bank.example"

Shop = tuple[TestClient, demo.Demo]


def _client(tmp_path: Path, **settings: object) -> Iterator[Shop]:
    db = str(tmp_path / "q.db")
    built = demo.build(db, tmp_path / "log.pem", tmp_path / "root.pem")
    ledger = Ledger(db, log_key=keys.load_private_key(tmp_path / "log.pem"))
    chosen = Settings(db=db, read_rate_per_minute=0, **settings)  # type: ignore[arg-type]
    with TestClient(create_app(ledger, chosen)) as client:
        yield client, built
    ledger.close()


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    """The demo ledger served with its resolver configured."""
    yield from _client(tmp_path, resolver=RESOLVER)


def _decode(png: bytes) -> str:
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(found) == 1
    return str(found[0].text)


# ---- headers ------------------------------------------------------------------------


def test_every_page_forbids_other_hosts_framing_and_sniffing(shop: Shop) -> None:
    """The scan page, the organization page, the blacklist, an error page and a JSON
    answer: none may load anything from another host, be framed, or be sniffed."""
    client, built = shop
    gtin, lot = built.recalled_bread
    answers = [client.get(f"/01/{gtin}/10/{lot}"), client.get(f"/orgs/{demo.BAKERY}"),
               client.get("/blacklist"), client.get("/orgs/nonsense", headers={"accept": "text/html"}),
               client.get(f"/01/{gtin}/10/{lot}", headers=JSON)]
    for answer in answers:
        csp = answer.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src" not in csp and "http" not in csp  # no script, no other host
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
    assert answers[0].headers["content-type"].startswith("text/html")
    assert answers[3].status_code == 400 and answers[3].headers["content-type"].startswith("text/html")


def test_a_write_and_an_unexpected_error_are_not_sniffed_either(shop: Shop) -> None:
    client, _ = shop
    refused = client.post("/v1/entries", content=b"not json")
    assert refused.status_code == 400
    assert refused.headers["x-content-type-options"] == "nosniff"

    def broken() -> None:
        raise RuntimeError("a bug")

    client.app.add_api_route("/v1/broken", broken)  # type: ignore[attr-defined]
    with TestClient(client.app, raise_server_exceptions=False) as plain:
        failed = plain.get("/v1/broken")
    assert failed.status_code == 500 and "a bug" not in failed.text
    assert failed.headers["x-content-type-options"] == "nosniff"  # outside the error middleware


def test_only_the_api_documentation_may_load_its_viewer_from_the_cdn(shop: Shop) -> None:
    """Swagger UI comes from jsDelivr until it is served from here: /docs names that one
    host, and no other page does."""
    client, _ = shop
    docs = client.get("/docs")
    assert docs.status_code == 200
    csp = docs.headers["content-security-policy"]
    assert "script-src 'unsafe-inline' https://cdn.jsdelivr.net;" in csp
    assert "frame-ancestors 'none'" in csp
    assert "cdn.jsdelivr.net" not in client.get("/blacklist").headers["content-security-policy"]


# ---- HEAD ---------------------------------------------------------------------------


def test_every_get_route_answers_head_with_the_same_headers_and_no_body(shop: Shop) -> None:
    client, built = shop
    gtin, lot = built.recalled_bread
    for path in (f"/01/{gtin}/10/{lot}", "/v1/checkpoint", "/v1/log-key", "/v1/entries/0",
                 f"/v1/qr/{gtin}/{lot}.png", "/healthz", "/blacklist", "/v1/entries/999999"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code, path
        assert head.content == b"", path
        for name in ("content-type", "content-length", "link", "content-security-policy"):
            assert head.headers.get(name) == got.headers.get(name), (path, name)
    refused = client.head("/v1/entries")  # a write route: HEAD is no way into it
    assert refused.status_code == 405 and refused.headers["allow"] == "POST"


def test_head_on_a_live_stream_ends_at_once(shop: Shop) -> None:
    """A stream of server-sent events never ends by itself; its HEAD must."""
    client, _ = shop
    head = client.head("/v1/feed/stream")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"].startswith("text/event-stream")


# ---- CORS ---------------------------------------------------------------------------


def test_a_bank_web_app_may_read_but_not_write(shop: Shop) -> None:
    """Reads carry `Access-Control-Allow-Origin: *`; a write's answer carries none, so a
    page of another origin cannot read it, and its preflight is not granted."""
    client, built = shop
    gtin, lot = built.recalled_bread
    origin = {"origin": BANK}
    scan = client.get(f"/01/{gtin}/10/{lot}", headers={**JSON, **origin})
    assert scan.headers["access-control-allow-origin"] == "*"
    assert "Link" in scan.headers["access-control-expose-headers"]
    missing = client.get("/v1/orgs/911101000000000000", headers=origin)
    assert missing.headers["access-control-allow-origin"] == "*"  # its problem is readable too

    preflight = client.options(f"/01/{gtin}/10/{lot}", headers={
        **origin, "access-control-request-method": "GET",
        "access-control-request-headers": "accept"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert set(preflight.headers["access-control-allow-methods"].split(", ")) == {"GET", "HEAD"}

    write = client.post("/v1/entries", content=b"{}", headers=origin)
    assert write.status_code == 400 and "access-control-allow-origin" not in write.headers
    write_preflight = client.options("/v1/entries", headers={
        **origin, "access-control-request-method": "POST"})
    assert write_preflight.status_code == 405
    assert "access-control-allow-origin" not in write_preflight.headers


# ---- the resolver host --------------------------------------------------------------


def test_a_forged_host_header_never_reaches_a_qr_code_or_a_link(tmp_path: Path) -> None:
    """No QLEDGER_RESOLVER, the server listening on LISTEN: `Host: evil.example` on every
    route that writes the resolver's host. The QR code decodes to LISTEN's URI, byte for
    byte the code any other request gets, and the link set, the Link header, the redirect
    of `?linkType=` and the label sheet all name LISTEN."""
    for client, built in _client(tmp_path, listen_url=LISTEN):
        gtin, lot = built.recalled_bread
        uri = f"{LISTEN}/01/{gtin}/10/{lot}"
        png = client.get(f"/v1/qr/{gtin}/{lot}.png", headers=EVIL)
        assert _decode(png.content) == uri
        assert png.content == client.get(f"/v1/qr/{gtin}/{lot}.png").content
        scan = client.get(f"/01/{gtin}/10/{lot}", headers={**JSON, **EVIL})
        assert scan.headers["link"].startswith(f"<{uri}?linkType=all>")
        linkset = client.get(f"/01/{gtin}/10/{lot}?linkType=all", headers=EVIL).text
        assert "evil.example" not in linkset and LISTEN in linkset
        moved = client.get(f"/01/{gtin}/10/{lot}?linkType=gs1:pip", headers=EVIL,
                           follow_redirects=False)
        assert moved.status_code == 307 and moved.headers["location"].startswith(LISTEN)
        sheet = client.get(f"/v1/labels/{gtin}/{lot}.svg?count=1", headers=EVIL)
        assert sheet.status_code == 200 and b"evil.example" not in sheet.content


def test_without_a_resolver_the_links_name_the_first_allowed_host(tmp_path: Path) -> None:
    """No QLEDGER_RESOLVER: the QR code names the first host of QLEDGER_ALLOWED_HOSTS,
    whatever the request says."""
    for client, built in _client(tmp_path, allowed_hosts=("id.example.cn", ".example.cn")):
        gtin, lot = built.recalled_bread
        png = client.get(f"/v1/qr/{gtin}/{lot}.png", headers={"host": "shop.example.cn"})
        assert png.status_code == 200
        assert _decode(png.content) == f"https://id.example.cn/01/{gtin}/10/{lot}"


def test_a_host_outside_the_allowed_list_is_refused(tmp_path: Path) -> None:
    for client, built in _client(tmp_path, resolver=RESOLVER, allowed_hosts=("id.example.cn",)):
        gtin, lot = built.recalled_bread
        refused = client.get(f"/01/{gtin}/10/{lot}", headers=EVIL)
        assert refused.status_code == 400
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"].endswith("/invalid-host")
        assert refused.headers["x-content-type-options"] == "nosniff"
        served = client.get(f"/01/{gtin}/10/{lot}", headers={"host": "id.example.cn:443"})
        assert served.status_code == 200
