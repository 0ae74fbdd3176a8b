"""Bad input, one story per test: what a careless client or an attacker tries, and how it fails.

Every refusal is checked three ways:

* the exact `Rejection` kind (the stable problem type an HTTP client sees);
* the message: one line, no surrounding whitespace, naming the problem (a field, a value);
* nothing recorded: the log size is unchanged, no statement id of the refused envelopes got
  a receipt, and (where it matters) the aggregates the statement touched are as before.

Every test runs on SQLite and on PostgreSQL (the `db_url` fixture).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.application import AggregateNotFoundError

from ledger import client, keys
from ledger.b64 import b64encode
from ledger.canonical import canonical_bytes
from ledger.domain.batch import Batch
from ledger.domain.organization import Organization
from ledger.envelope import MAX_PAYLOAD_BYTES, PAYLOAD_TYPE, pae
from ledger.errors import IdConflict, Rejected, Rejection
from tests.support import ROOT, World, make_gtin, make_uscc

# The cast: fictional organizations with valid codes (tests/support.py).
FLOUR_MILL = make_uscc(101)  # producer
BAKERY = make_uscc(102)  # producer that buys flour
WHOLESALER = make_uscc(201)  # distributor
SHOP = make_uscc(301)  # retailer
LAB = make_uscc(401)  # inspection and testing body

FLOUR = make_gtin(1)  # GTIN-14 with a leading zero, so FLOUR[1:] is the same item as GTIN-13
BREAD = make_gtin(2)

MAX_MESSAGE = 300


# ---- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    """A ledger with the cast registered, each organization with one key."""
    w = World(db_url)
    w.register(FLOUR_MILL, "闽江面粉厂（测试）", "producer")
    w.register(BAKERY, "榕城烘焙食品有限公司（测试）", "producer")
    w.register(WHOLESALER, "海峡食品批发有限公司（测试）", "distributor")
    w.register(SHOP, "鼓楼社区超市（测试）", "retailer")
    w.register(LAB, "福州食品检验检测中心（测试）", "lab")
    yield w
    w.ledger.close()  # give PostgreSQL its connections back before the schema is dropped


def statement_id(envelope: Any) -> str | None:
    """The statement id inside an envelope, if it can be read at all."""
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        sid = json.loads(payload)["id"]
    except (TypeError, KeyError, ValueError):  # not an envelope, not base64, not JSON
        return None
    return sid if isinstance(sid, str) else None


def refused(
    world: World,
    envelopes: list[Any],
    kind: Rejection,
    *mentions: str,
    position: int | None = None,
) -> Rejected:
    """Append `envelopes`, expect the whole call to be refused with `kind`, and check that
    the message is one clear line mentioning each of `mentions` and that nothing was recorded."""
    ledger = world.ledger
    size = ledger.size()
    ids = {sid for sid in map(statement_id, envelopes) if sid is not None}
    receipts = {sid: ledger.receipt(sid) for sid in ids}
    with pytest.raises(Rejected) as caught:
        ledger.append(envelopes)
    err = caught.value
    text = str(err)
    assert err.kind is kind, f"expected {kind.value}, got {err.kind.value}: {text}"
    assert err.position == position, text
    assert "\n" not in text and "\r" not in text, text
    assert text == text.strip() and 0 < len(text) <= MAX_MESSAGE, text
    assert text[0] not in ":;,.", f"message starts with punctuation: {text!r}"
    for word in mentions:
        assert word in text, f"{word!r} not in {text!r}"
    if position is not None:
        assert text.startswith(f"envelope {position}: "), text
    # Nothing recorded: the log did not grow, and no refused statement got a receipt
    # (a statement recorded before keeps exactly the receipt it had).
    assert ledger.size() == size
    assert {sid: ledger.receipt(sid) for sid in ids} == receipts
    return err


def signed(
    payload: bytes, key: Ed25519PrivateKey, payload_type: str = PAYLOAD_TYPE
) -> dict[str, Any]:
    """An envelope built by hand: exactly these payload bytes, properly signed."""
    return {
        "payloadType": payload_type,
        "payload": b64encode(payload),
        "signatures": [
            {
                "keyid": keys.key_id(keys.public_bytes(key)),
                "sig": b64encode(key.sign(pae(payload_type, payload))),
            }
        ],
    }


def keyid(key: Ed25519PrivateKey) -> str:
    return keys.key_id(keys.public_bytes(key))


def public(key: Ed25519PrivateKey) -> str:
    return keys.encode_public_key(keys.public_bytes(key))


def batch_fields(gtin: str = FLOUR, lot: str = "L20261120", quantity: int = 1000,
                 inputs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "gtin": gtin, "lot": lot, "product": "高筋小麦粉", "category": "food",
        "quantity": quantity, "unit": "kg", "produced_at": "2026-11-20T06:00:00Z",
        "standard": "GB/T 1355-2021", "inputs": inputs or [],
    }


def check_fields(subject: str, kind: str = "supervisory", gtin: str = FLOUR,
                 lot: str = "L20261120") -> dict[str, Any]:
    return {
        "gtin": gtin, "lot": lot, "subject": subject, "kind": kind, "stage": "production",
        "sampled_at": "2026-11-21T09:00:00Z", "standard": "GB 2762-2022",
        "items": [{"name": "铅（以Pb计）", "value": "0.05", "limit": "0.2", "unit": "mg/kg",
                   "verdict": "pass"}],
        "verdict": "pass", "report_no": "FZ-2026-0001",
    }


def holdings(world: World, gtin: str = FLOUR, lot: str = "L20261120") -> dict[str, Any]:
    b: Batch = world.ledger.repository.get(Batch.create_id(gtin, lot))
    return {"holdings": dict(b.holdings), "in_transit": b.in_transit, "consumed": b.consumed}


def flour(world: World, quantity: int = 1000, lot: str = "L20261120") -> None:
    world.produce(FLOUR_MILL, FLOUR, lot, quantity)


def wrong_check_character(code: str, alphabet: str) -> str:
    return code[:-1] + next(c for c in alphabet if c != code[-1])


# ---- envelopes that are not even well formed ----------------------------------------------------


def test_bytes_that_are_not_json(world: World) -> None:
    """A scanner app posts a truncated body."""
    refused(world, [b'{"payloadType": "application/vnd.qledger.statement+json", "payl'],
            Rejection.BAD_JSON, "not valid JSON")


def test_payload_that_is_not_base64(world: World) -> None:
    """A client puts the statement JSON into `payload` without encoding it."""
    env = world.envelope("batch.produced", FLOUR_MILL, **batch_fields())
    env["payload"] = '{"type": "batch.produced"}'
    refused(world, [env], Rejection.BAD_BASE64, "payload", "base64")


def test_payload_in_url_safe_or_unpadded_base64(world: World) -> None:
    """A client library strips the base64 padding: the same bytes, another spelling."""
    env = next(
        e for lot in ("L1", "L12", "L123")
        if (e := world.envelope("batch.produced", FLOUR_MILL, **batch_fields(lot=lot)))
        ["payload"].endswith("=")
    )
    env["payload"] = env["payload"].rstrip("=")
    refused(world, [env], Rejection.BAD_BASE64, "payload")


def test_wrong_payload_type(world: World) -> None:
    """An in-toto tool signs the statement as a generic JSON payload (correctly signed)."""
    payload = canonical_bytes(world.statement("batch.produced", FLOUR_MILL, **batch_fields()))
    env = signed(payload, world.keys[FLOUR_MILL], payload_type="application/json")
    refused(world, [env], Rejection.BAD_PAYLOAD_TYPE, "payloadType", "application/json")


@pytest.mark.parametrize(
    "dump",
    [
        pytest.param(lambda s: json.dumps(s, ensure_ascii=False, sort_keys=True), id="spaces"),
        pytest.param(
            lambda s: json.dumps(dict(reversed(list(s.items()))), ensure_ascii=False,
                                 separators=(",", ":")),
            id="unsorted-keys",
        ),
        pytest.param(lambda s: json.dumps(s, sort_keys=True, separators=(",", ":")),
                     id="escaped-unicode"),
    ],
)
def test_non_canonical_payload_signed_properly(world: World, dump: Any) -> None:
    """A client serialises with its own JSON settings and signs those bytes. The signature
    is good, but a statement must have one byte form: it is refused before anything else."""
    statement = world.statement("batch.produced", FLOUR_MILL, **batch_fields())
    payload = dump(statement).encode("utf-8")
    assert payload != canonical_bytes(statement)
    assert json.loads(payload) == statement
    refused(world, [signed(payload, world.keys[FLOUR_MILL])], Rejection.NON_CANONICAL,
            "canonical", "byte")


def test_payload_over_64_kib(world: World) -> None:
    """Someone stuffs a whole PDF report into a statement: 1 byte over the limit is refused
    as too large; at exactly the limit the envelope passes and the field rule speaks."""
    key = world.keys[FLOUR_MILL]
    statement = world.statement("batch.produced", FLOUR_MILL, **{**batch_fields(), "product": ""})
    room = MAX_PAYLOAD_BYTES - len(canonical_bytes(statement))
    statement["product"] = "x" * (room + 1)
    big = canonical_bytes(statement)
    assert len(big) == MAX_PAYLOAD_BYTES + 1
    refused(world, [signed(big, key)], Rejection.PAYLOAD_TOO_LARGE, str(MAX_PAYLOAD_BYTES))

    statement["product"] = "x" * room
    just_fits = canonical_bytes(statement)
    assert len(just_fits) == MAX_PAYLOAD_BYTES
    refused(world, [signed(just_fits, key)], Rejection.BAD_FIELDS, "product")


def test_more_than_a_thousand_envelopes(world: World) -> None:
    """An integrator uploads a whole day's shipments in one request."""
    env = world.envelope("batch.produced", FLOUR_MILL, **batch_fields())
    refused(world, [env] * 1001, Rejection.TOO_MANY, "1000", "1001")


# ---- statements with the wrong fields ----------------------------------------------------------


def test_unknown_statement_type(world: World) -> None:
    """A producer invents `batch.destroyed` to make stock disappear."""
    env = world.envelope("batch.destroyed", FLOUR_MILL, gtin=FLOUR, lot="L1", quantity=5)
    refused(world, [env], Rejection.UNKNOWN_TYPE, "batch.destroyed")


def test_missing_field(world: World) -> None:
    """A shipment without a receiver: the goods would be in transit to nobody."""
    flour(world)
    env = world.envelope("batch.shipped", FLOUR_MILL, gtin=FLOUR, lot="L20261120", quantity=10,
                         shipment="S-1")
    refused(world, [env], Rejection.BAD_FIELDS, "missing", "'to'")
    assert holdings(world)["holdings"] == {FLOUR_MILL: 1000}


def test_missing_common_field(world: World) -> None:
    """A hand-written statement without `issued_at`."""
    statement = world.statement("batch.produced", FLOUR_MILL, **batch_fields())
    del statement["issued_at"]
    env = client.sign(statement, world.keys[FLOUR_MILL])
    refused(world, [env], Rejection.BAD_FIELDS, "missing", "'issued_at'")


def test_extra_unknown_field(world: World) -> None:
    """A producer adds `"organic": "yes"`: unknown fields are refused, not silently kept."""
    env = world.envelope("batch.produced", FLOUR_MILL, **batch_fields(), organic="yes")
    refused(world, [env], Rejection.BAD_FIELDS, "unknown field", "'organic'")


def test_bad_uscc_check_digit_in_by(world: World) -> None:
    """A typo in the signer's own USCC (last character)."""
    bad = wrong_check_character(FLOUR_MILL, "0123456789ABCDEFGHJKLMNPQRTUWXY")
    env = world.envelope("batch.produced", bad, key=world.keys[FLOUR_MILL], **batch_fields())
    refused(world, [env], Rejection.BAD_IDENTIFIER, "by", bad, "check digit")


def test_bad_uscc_check_digit_in_to(world: World) -> None:
    """A shipment to a receiver whose USCC was mistyped."""
    flour(world)
    bad = wrong_check_character(WHOLESALER, "0123456789ABCDEFGHJKLMNPQRTUWXY")
    env = world.envelope("batch.shipped", FLOUR_MILL, gtin=FLOUR, lot="L20261120", quantity=10,
                         to=bad, shipment="S-1")
    refused(world, [env], Rejection.BAD_IDENTIFIER, "to", bad, "check digit")
    assert holdings(world)["holdings"] == {FLOUR_MILL: 1000}


def test_bad_gtin_check_digit(world: World) -> None:
    """A barcode number copied by hand with the last digit wrong."""
    bad = wrong_check_character(FLOUR, "0123456789")
    env = world.envelope("batch.produced", FLOUR_MILL, **batch_fields(gtin=bad))
    refused(world, [env], Rejection.BAD_IDENTIFIER, "gtin", bad, "check digit")


@pytest.mark.parametrize(
    "lot",
    [
        pytest.param("L2026112\u0431", id="cyrillic-be"),
        pytest.param("L2026112\u041e", id="cyrillic-O"),  # looks like the Latin O
        pytest.param("\uff2c20261120", id="fullwidth-L"),
        pytest.param("L2026\u20121120", id="figure-dash"),
    ],
)
def test_lot_with_a_unicode_look_alike(world: World, lot: str) -> None:
    """A lot that prints like L20261120-ish but is not GS1-encodable: two lots that look alike
    would compare unequal, and no barcode could carry it."""
    flour(world)
    env = world.envelope("batch.produced", FLOUR_MILL, **batch_fields(lot=lot))
    refused(world, [env], Rejection.BAD_IDENTIFIER, "lot", "GS1")


@pytest.mark.parametrize("quantity", [0, -1, -500])
@pytest.mark.parametrize("where", ["batch.produced", "input", "batch.shipped", "batch.received"])
def test_zero_or_negative_quantity(world: World, where: str, quantity: int) -> None:
    """Negative shipments would move goods backwards; zero ones create paper trails of nothing."""
    flour(world)
    world.ship(FLOUR_MILL, FLOUR, "L20261120", 100, BAKERY, "S-1")
    if where == "batch.produced":
        env = world.envelope(where, FLOUR_MILL, **batch_fields(lot="L2", quantity=quantity))
    elif where == "input":
        inputs = [{"gtin": FLOUR, "lot": "L20261120", "quantity": quantity}]
        env = world.envelope("batch.produced", FLOUR_MILL,
                             **batch_fields(gtin=BREAD, lot="B1", inputs=inputs))
    elif where == "batch.shipped":
        env = world.envelope(where, FLOUR_MILL, gtin=FLOUR, lot="L20261120", quantity=quantity,
                             to=WHOLESALER, shipment="S-2")
    else:
        env = world.envelope(where, BAKERY, shipment="S-1", quantity=quantity)
    refused(world, [env], Rejection.BAD_QUANTITY, "quantity", str(quantity))
    assert holdings(world) == {"holdings": {FLOUR_MILL: 900}, "in_transit": 100, "consumed": 0}


def test_issued_in_the_future(world: World) -> None:
    """A client with a fast clock. Up to 5 minutes ahead is tolerated, more is not."""
    now = world.clock.now
    for ahead in (timedelta(minutes=6), timedelta(minutes=5, seconds=1)):
        env = world.envelope("batch.produced", FLOUR_MILL, issued_at=now + ahead,
                             **batch_fields())
        refused(world, [env], Rejection.FUTURE_STATEMENT, "issued_at", "5 minutes")
    size = world.ledger.size()
    world.submit("batch.produced", FLOUR_MILL, issued_at=now + timedelta(minutes=4),
                 **batch_fields())
    assert world.ledger.size() == size + 1


# ---- keys and signatures ------------------------------------------------------------------------


def test_key_never_registered(world: World) -> None:
    """An impostor signs in the flour mill's name with a key of its own."""
    impostor = keys.generate_private_key()
    env = world.envelope("batch.produced", FLOUR_MILL, key=impostor, **batch_fields())
    refused(world, [env], Rejection.UNKNOWN_KEY, keyid(impostor), "not registered")


def test_signature_with_a_flipped_bit(world: World) -> None:
    """A signature damaged in transit (one bit)."""
    env = world.envelope("batch.produced", FLOUR_MILL, **batch_fields())
    sig = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
    sig[10] ^= 0x01
    env["signatures"][0]["sig"] = b64encode(bytes(sig))
    refused(world, [env], Rejection.BAD_SIGNATURE, "signature", keyid(world.keys[FLOUR_MILL]))


def test_payload_changed_after_signing(world: World) -> None:
    """A middleman raises the quantity in a signed statement (still canonical JSON)."""
    env = world.envelope("batch.produced", FLOUR_MILL, **batch_fields(quantity=1000))
    payload = base64.b64decode(env["payload"])
    assert b'"quantity":1000' in payload
    env["payload"] = b64encode(payload.replace(b'"quantity":1000', b'"quantity":9000'))
    refused(world, [env], Rejection.BAD_SIGNATURE, "does not verify")


def test_key_of_another_organization_than_by(world: World) -> None:
    """The wholesaler signs, with its own valid key, a statement in the flour mill's name."""
    env = world.envelope("batch.produced", FLOUR_MILL, key=world.keys[WHOLESALER],
                         **batch_fields())
    refused(world, [env], Rejection.KEY_NOT_OF_SIGNER, FLOUR_MILL, "by")


def test_revoked_key(world: World) -> None:
    """The flour mill's key leaks. What it signed before stays; nothing new gets in with it,
    not even a statement backdated to before the revocation."""
    key = world.keys[FLOUR_MILL]
    size = world.ledger.size()
    before = world.submit("batch.produced", FLOUR_MILL, **batch_fields(lot="OLD"))
    assert world.ledger.size() == size + 1

    world.clock.advance(minutes=30)
    revoked_at = world.clock.now
    world.submit("key.revoked", ROOT, org=FLOUR_MILL, keyid=keyid(key), reason="私钥泄露",
                 revoked_at=client.format_time(revoked_at))
    world.clock.advance(minutes=1)

    env = world.envelope("batch.produced", FLOUR_MILL, **batch_fields(lot="NEW"))
    refused(world, [env], Rejection.KEY_REVOKED, keyid(key), "revoked")
    backdated = world.envelope("batch.produced", FLOUR_MILL,
                               issued_at=revoked_at - timedelta(minutes=10),
                               **batch_fields(lot="BACKDATED"))
    refused(world, [backdated], Rejection.KEY_REVOKED, "time of recording")

    # The statement issued and recorded before the revocation is still entry `before.index`,
    # and still counts: its batch exists.
    assert world.ledger.statement_at(before.index).body["lot"] == "OLD"
    assert holdings(world, lot="OLD")["holdings"] == {FLOUR_MILL: 1000}
    assert world.ledger.size() == before.index + 2  # the batch, then the revocation


def test_key_rotation(world: World) -> None:
    """The flour mill rotates its key itself: the old key registers the new one, the new one
    revokes the old. Afterwards the new key signs; the old one cannot, not even to sneak in
    yet another key of the thief's."""
    old = world.keys[FLOUR_MILL]
    new = keys.generate_private_key()
    world.submit("key.registered", FLOUR_MILL, org=FLOUR_MILL, public_key=public(new))
    world.clock.advance(minutes=1)
    revoke = world.envelope("key.revoked", FLOUR_MILL, key=new, org=FLOUR_MILL,
                            keyid=keyid(old), reason="例行轮换",
                            revoked_at=client.format_time(world.clock.now))
    world.ledger.append([revoke])
    world.clock.advance(minutes=1)

    size = world.ledger.size()
    ok = world.envelope("batch.produced", FLOUR_MILL, key=new, **batch_fields(lot="NEWKEY"))
    world.ledger.append([ok])
    assert world.ledger.size() == size + 1

    stale = world.envelope("batch.produced", FLOUR_MILL, key=old, **batch_fields(lot="OLDKEY"))
    refused(world, [stale], Rejection.KEY_REVOKED, keyid(old))
    thief = keys.generate_private_key()
    sneak = world.envelope("key.registered", FLOUR_MILL, key=old, org=FLOUR_MILL,
                           public_key=public(thief))
    refused(world, [sneak], Rejection.KEY_REVOKED, keyid(old))


def test_key_not_yet_valid(world: World) -> None:
    """A regulator registers the shop's next key, valid from tomorrow; the shop uses it today."""
    nxt = keys.generate_private_key()
    world.submit("key.registered", ROOT, org=SHOP, public_key=public(nxt),
                 valid_from=client.format_time(world.clock.now + timedelta(days=1)))
    env = world.envelope("case.opened", SHOP, key=nxt, case="C-1", respondent=FLOUR_MILL,
                         batches=[], summary="包装破损", channel="letter")
    refused(world, [env], Rejection.KEY_NOT_YET_VALID, keyid(nxt), "valid from")


def test_revoking_another_organizations_key(world: World) -> None:
    """The wholesaler tries to cut the mill off the ledger by revoking the mill's key: once in
    the mill's name (forbidden), once claiming the key is its own (it is not)."""
    mill_key = keyid(world.keys[FLOUR_MILL])
    revoked_at = client.format_time(world.clock.now)
    env = world.envelope("key.revoked", WHOLESALER, org=FLOUR_MILL, keyid=mill_key,
                         reason="恶意吊销", revoked_at=revoked_at)
    refused(world, [env], Rejection.ROLE_FORBIDDEN, WHOLESALER, "regulator")
    env = world.envelope("key.revoked", WHOLESALER, org=WHOLESALER, keyid=mill_key,
                         reason="恶意吊销", revoked_at=revoked_at)
    refused(world, [env], Rejection.UNKNOWN_KEY, mill_key, WHOLESALER)
    world.submit("batch.produced", FLOUR_MILL, **batch_fields())  # the mill's key still works


def test_registering_another_organizations_public_key(world: World) -> None:
    """The mill registers the wholesaler's public key as its own: the key's organization would
    become ambiguous."""
    env = world.envelope("key.registered", FLOUR_MILL, org=FLOUR_MILL,
                         public_key=public(world.keys[WHOLESALER]))
    refused(world, [env], Rejection.DUPLICATE_KEY, keyid(world.keys[WHOLESALER]))


# ---- roles ------------------------------------------------------------------------------------


def test_retailer_may_not_produce(world: World) -> None:
    """A supermarket records a batch of its own-brand flour as if it had milled it."""
    env = world.envelope("batch.produced", SHOP, **batch_fields())
    refused(world, [env], Rejection.ROLE_FORBIDDEN, SHOP, "batch.produced", "producer")


def test_producer_may_not_record_a_supervisory_check_on_itself(world: World) -> None:
    """The flour mill records a passed *supervisory* spot check of its own flour; only a
    self check is its to record."""
    flour(world)
    env = world.envelope("check.recorded", FLOUR_MILL, **check_fields(FLOUR_MILL))
    refused(world, [env], Rejection.ROLE_FORBIDDEN, FLOUR_MILL, "supervisory")
    size = world.ledger.size()
    world.submit("check.recorded", FLOUR_MILL, **check_fields(FLOUR_MILL, kind="self"))
    assert world.ledger.size() == size + 1


def test_lab_may_not_register_a_key_for_another_organization(world: World) -> None:
    """A lab registers a key for the flour mill, so that it could sign in the mill's name."""
    lab_held = keys.generate_private_key()
    env = world.envelope("key.registered", LAB, org=FLOUR_MILL, public_key=public(lab_held))
    refused(world, [env], Rejection.ROLE_FORBIDDEN, LAB, "regulator")


def test_only_a_regulator_blacklists(world: World) -> None:
    """A wholesaler blacklists a competing flour mill."""
    env = world.envelope("blacklist.added", WHOLESALER, org=FLOUR_MILL, reason="质量失信",
                         basis="《产品质量法》第四十九条", refs=[])
    refused(world, [env], Rejection.ROLE_FORBIDDEN, WHOLESALER, "regulator")
    org: Organization = world.ledger.repository.get(Organization.create_id(FLOUR_MILL))
    assert org.blacklisted is False


def test_blacklisting_twice(world: World) -> None:
    """A second regulator office lists an organization that is already listed."""
    world.submit("blacklist.added", ROOT, org=FLOUR_MILL, reason="质量失信",
                 basis="《产品质量法》第四十九条", refs=[])
    env = world.envelope("blacklist.added", ROOT, org=FLOUR_MILL, reason="质量失信",
                         basis="《产品质量法》第四十九条", refs=[])
    refused(world, [env], Rejection.ALREADY_BLACKLISTED, FLOUR_MILL)


def test_recall_by_someone_who_did_not_produce_the_batch(world: World) -> None:
    """The bakery "recalls" the mill's flour to damage the mill's credit."""
    flour(world)
    env = world.envelope("recall.issued", BAKERY, gtin=FLOUR, lots=["L20261120"],
                         reason="疑似霉变", level=1)
    refused(world, [env], Rejection.ROLE_FORBIDDEN, "lots[0]", FLOUR_MILL)


def test_delisting_an_organization_that_is_not_listed(world: World) -> None:
    """A regulator "repairs the credit" of a mill that was never blacklisted."""
    env = world.envelope("blacklist.removed", ROOT, org=FLOUR_MILL, reason="信用修复", refs=[])
    refused(world, [env], Rejection.NOT_BLACKLISTED, FLOUR_MILL, "not on the blacklist")


# ---- batches and shipments ----------------------------------------------------------------------


def test_input_batch_that_does_not_exist(world: World) -> None:
    """The bakery claims its bread is made from a flour batch that was never recorded."""
    inputs = [{"gtin": FLOUR, "lot": "GHOST", "quantity": 10}]
    env = world.envelope("batch.produced", BAKERY, **batch_fields(gtin=BREAD, lot="B1",
                                                                  inputs=inputs))
    refused(world, [env], Rejection.UNKNOWN_BATCH, "inputs[0]", "GHOST")


def test_input_not_held_by_the_producer(world: World) -> None:
    """The bakery uses flour that is still all at the mill."""
    flour(world)
    inputs = [{"gtin": FLOUR, "lot": "L20261120", "quantity": 10}]
    env = world.envelope("batch.produced", BAKERY, **batch_fields(gtin=BREAD, lot="B1",
                                                                  inputs=inputs))
    refused(world, [env], Rejection.NOT_HELD, "inputs[0]", BAKERY)
    assert holdings(world)["holdings"] == {FLOUR_MILL: 1000}


def test_inputs_need_more_than_is_held(world: World) -> None:
    """The bakery received 100 kg of flour and claims to have baked with 150 kg, once in one
    line and once split over two lines of the same batch. Nothing is consumed either time."""
    flour(world)
    world.ship(FLOUR_MILL, FLOUR, "L20261120", 100, BAKERY, "S-1")
    world.receive(BAKERY, "S-1", 100)
    state = holdings(world)

    one_line = [{"gtin": FLOUR, "lot": "L20261120", "quantity": 150}]
    env = world.envelope("batch.produced", BAKERY, **batch_fields(gtin=BREAD, lot="B1",
                                                                  inputs=one_line))
    refused(world, [env], Rejection.INSUFFICIENT_QUANTITY, "inputs[0]", "100", "150")
    assert holdings(world) == state

    two_lines = [{"gtin": FLOUR[1:], "lot": "L20261120", "quantity": 75},
                 {"gtin": FLOUR, "lot": "L20261120", "quantity": 75}]
    env = world.envelope("batch.produced", BAKERY, **batch_fields(gtin=BREAD, lot="B1",
                                                                  inputs=two_lines))
    refused(world, [env], Rejection.INSUFFICIENT_QUANTITY, "inputs[1]", "25", "75")
    # The first line's 75 were taken from the cached aggregate before the second failed:
    # they must be back.
    assert holdings(world) == state


def test_over_shipping(world: World) -> None:
    """The mill ships 600 kg, then another 600 kg of a 1000 kg batch."""
    flour(world)
    world.ship(FLOUR_MILL, FLOUR, "L20261120", 600, WHOLESALER, "S-1")
    env = world.envelope("batch.shipped", FLOUR_MILL, gtin=FLOUR, lot="L20261120", quantity=600,
                         to=SHOP, shipment="S-2")
    refused(world, [env], Rejection.INSUFFICIENT_QUANTITY, FLOUR_MILL, "400", "600")
    assert holdings(world) == {"holdings": {FLOUR_MILL: 400}, "in_transit": 600, "consumed": 0}


def test_shipping_what_one_does_not_hold(world: World) -> None:
    """The wholesaler resells flour before receiving it."""
    flour(world)
    world.ship(FLOUR_MILL, FLOUR, "L20261120", 600, WHOLESALER, "S-1")
    env = world.envelope("batch.shipped", WHOLESALER, gtin=FLOUR, lot="L20261120", quantity=10,
                         to=SHOP, shipment="S-2")
    refused(world, [env], Rejection.NOT_HELD, WHOLESALER, "holds none")


def test_receiving_a_shipment_twice(world: World) -> None:
    """The wholesaler's warehouse books the same delivery twice, to double its stock; then
    tries again with both receipts in one batch."""
    flour(world)
    world.ship(FLOUR_MILL, FLOUR, "L20261120", 600, WHOLESALER, "S-1")
    world.receive(WHOLESALER, "S-1", 600)
    env = world.envelope("batch.received", WHOLESALER, shipment="S-1", quantity=600)
    refused(world, [env], Rejection.ALREADY_RECEIVED, "S-1", "received")
    assert holdings(world)["holdings"] == {FLOUR_MILL: 400, WHOLESALER: 600}

    world.ship(FLOUR_MILL, FLOUR, "L20261120", 100, WHOLESALER, "S-2")
    twice = [world.envelope("batch.received", WHOLESALER, shipment="S-2", quantity=100)
             for _ in range(2)]
    refused(world, twice, Rejection.ALREADY_RECEIVED, "S-2", position=1)
    assert holdings(world) == {"holdings": {FLOUR_MILL: 300, WHOLESALER: 600},
                               "in_transit": 100, "consumed": 0}


def test_receiving_a_shipment_addressed_to_someone_else(world: World) -> None:
    """The shop intercepts a delivery meant for the wholesaler."""
    flour(world)
    world.ship(FLOUR_MILL, FLOUR, "L20261120", 600, WHOLESALER, "S-1")
    env = world.envelope("batch.received", SHOP, shipment="S-1", quantity=600)
    refused(world, [env], Rejection.WRONG_RECEIVER, "S-1", WHOLESALER, SHOP)
    assert holdings(world)["in_transit"] == 600


def test_shipping_to_oneself(world: World) -> None:
    """Shipping to oneself would park stock "in transit" forever."""
    flour(world)
    env = world.envelope("batch.shipped", FLOUR_MILL, gtin=FLOUR, lot="L20261120", quantity=10,
                         to=FLOUR_MILL, shipment="S-1")
    refused(world, [env], Rejection.BAD_FIELDS, "to", "itself")


def test_reusing_a_shipment_id(world: World) -> None:
    """A second shipment under an id already used: the receiver could not tell them apart."""
    flour(world)
    world.ship(FLOUR_MILL, FLOUR, "L20261120", 10, WHOLESALER, "S-1")
    env = world.envelope("batch.shipped", FLOUR_MILL, gtin=FLOUR, lot="L20261120", quantity=20,
                         to=SHOP, shipment="S-1")
    refused(world, [env], Rejection.DUPLICATE_SHIPMENT, "S-1")
    assert holdings(world) == {"holdings": {FLOUR_MILL: 990}, "in_transit": 10, "consumed": 0}


def test_receiving_another_quantity_than_was_shipped(world: World) -> None:
    """The wholesaler books 500 kg of a 600 kg delivery: a short delivery is a case, not a
    receipt, so quantities stay conserved."""
    flour(world)
    world.ship(FLOUR_MILL, FLOUR, "L20261120", 600, WHOLESALER, "S-1")
    env = world.envelope("batch.received", WHOLESALER, shipment="S-1", quantity=500)
    refused(world, [env], Rejection.BAD_QUANTITY, "600", "500")
    assert holdings(world)["in_transit"] == 600


def test_receiving_a_shipment_that_was_never_sent(world: World) -> None:
    """The wholesaler books a delivery under a shipment id nobody shipped."""
    env = world.envelope("batch.received", WHOLESALER, shipment="S-404", quantity=1)
    refused(world, [env], Rejection.UNKNOWN_SHIPMENT, "S-404")


def test_same_batch_twice_even_as_gtin13(world: World) -> None:
    """The mill records lot L20261120 again — once with the GTIN-14, once with the same
    item number written as GTIN-13 — to double its stock."""
    flour(world)
    for gtin in (FLOUR, FLOUR[1:]):
        env = world.envelope("batch.produced", FLOUR_MILL, **batch_fields(gtin=gtin))
        refused(world, [env], Rejection.DUPLICATE_BATCH, FLOUR, "L20261120")
    assert holdings(world)["holdings"] == {FLOUR_MILL: 1000}


# ---- ids and batches of envelopes -----------------------------------------------------------


def test_same_statement_id_with_other_content(world: World) -> None:
    """A client retries a shipment with a changed quantity but the same id. The exact same
    envelope again is a harmless retry; a different one under that id is a conflict."""
    flour(world)
    fields: dict[str, Any] = {"gtin": FLOUR, "lot": "L20261120", "to": WHOLESALER,
                              "shipment": "S-1"}
    first = world.envelope("batch.shipped", FLOUR_MILL, quantity=100, **fields)
    sid = statement_id(first)
    assert sid is not None
    [receipt] = world.ledger.append([first])
    size = world.ledger.size()

    [again] = world.ledger.append([first])
    assert again.duplicate and again.index == receipt.index and world.ledger.size() == size

    changed = world.envelope("batch.shipped", FLOUR_MILL, quantity=200, id=sid, **fields)
    err = refused(world, [changed], Rejection.ID_CONFLICT, sid, f"entry {receipt.index}")
    assert isinstance(err, IdConflict)
    assert holdings(world)["in_transit"] == 100


def test_batch_with_a_bad_fourth_envelope_records_nothing(world: World) -> None:
    """An ERP uploads produce, ship, receive, and a fourth, over-shipping statement. Nothing
    of the four is recorded, the error names envelope 3, and the good three go in later."""
    def good() -> list[dict[str, Any]]:
        return [
            world.envelope("batch.produced", FLOUR_MILL, **batch_fields(lot="L9", quantity=500)),
            world.envelope("batch.shipped", FLOUR_MILL, gtin=FLOUR, lot="L9", quantity=300,
                           to=WHOLESALER, shipment="S-9"),
            world.envelope("batch.received", WHOLESALER, shipment="S-9", quantity=300),
        ]

    three = good()
    over = world.envelope("batch.shipped", FLOUR_MILL, gtin=FLOUR, lot="L9", quantity=201,
                          to=SHOP, shipment="S-10")
    refused(world, [*three, over], Rejection.INSUFFICIENT_QUANTITY, "200", "201", position=3)
    with pytest.raises(AggregateNotFoundError):
        world.ledger.repository.get(Batch.create_id(FLOUR, "L9"))

    garbage = b"not json"
    refused(world, [*three, garbage], Rejection.BAD_JSON, position=3)

    size = world.ledger.size()
    receipts = world.ledger.append(three)
    assert [r.index for r in receipts] == [size, size + 1, size + 2]
    assert holdings(world, lot="L9")["holdings"] == {FLOUR_MILL: 200, WHOLESALER: 300}


def test_same_id_twice_in_one_batch_with_other_content(world: World) -> None:
    """A buggy ERP reuses one statement id for two different lines of one upload."""
    flour(world)
    a = world.envelope("batch.shipped", FLOUR_MILL, gtin=FLOUR, lot="L20261120", quantity=1,
                       to=SHOP, shipment="S-1")
    b = world.envelope("batch.shipped", FLOUR_MILL, gtin=FLOUR, lot="L20261120", quantity=2,
                       to=SHOP, shipment="S-1", id=statement_id(a))
    err = refused(world, [a, b], Rejection.ID_CONFLICT, statement_id(a) or "", position=1)
    assert isinstance(err, IdConflict)


# ---- references, corrections, cases ---------------------------------------------------------


def test_refs_to_a_future_entry(world: World) -> None:
    """A regulator's credit deduction cites evidence that is not (yet) in the log — including
    the entry the deduction itself would become."""
    size = world.ledger.size()
    for ref in (size + 10, size):
        env = world.envelope("credit.adjusted", ROOT, org=FLOUR_MILL, delta=-5,
                             reason="抽检不合格", basis="信用分类规则 v1 第3条", refs=[0, ref])
        refused(world, [env], Rejection.UNKNOWN_ENTRY, "refs[1]", f"entry {ref}")


def test_correction_by_neither_signer_nor_regulator(world: World) -> None:
    """The wholesaler "corrects" the mill's batch record to rename the product."""
    original = world.statement("batch.produced", FLOUR_MILL, **batch_fields())
    [r] = world.ledger.append([client.sign(original, world.keys[FLOUR_MILL])])
    replacement = dict(original, product="普通小麦粉")
    env = world.envelope("correction", WHOLESALER, corrects=r.index, reason="品名有误",
                         replacement=replacement)
    refused(world, [env], Rejection.ROLE_FORBIDDEN, FLOUR_MILL, f"entry {r.index}")


def test_correction_changing_a_batch_quantity(world: World) -> None:
    """The mill "corrects" its 1000 kg batch to 5000 kg: stock would appear from nowhere.
    Renaming the product in a correction is fine."""
    original = world.statement("batch.produced", FLOUR_MILL, **batch_fields())
    [r] = world.ledger.append([client.sign(original, world.keys[FLOUR_MILL])])

    env = world.envelope("correction", FLOUR_MILL, corrects=r.index, reason="数量笔误",
                         replacement=dict(original, quantity=5000))
    refused(world, [env], Rejection.BAD_CORRECTION, "quantity")
    assert holdings(world)["holdings"] == {FLOUR_MILL: 1000}

    withdraw = world.envelope("correction", FLOUR_MILL, corrects=r.index, reason="撤回",
                              replacement=None)
    refused(world, [withdraw], Rejection.BAD_CORRECTION, "withdrawn")

    size = world.ledger.size()
    world.submit("correction", FLOUR_MILL, corrects=r.index, reason="品名有误",
                 replacement=dict(original, product="特一等小麦粉"))
    assert world.ledger.size() == size + 1


def test_correction_of_a_future_entry(world: World) -> None:
    """A regulator "corrects" an entry that does not exist yet."""
    size = world.ledger.size()
    env = world.envelope("correction", ROOT, corrects=size + 3, reason="预先更正",
                         replacement=None)
    refused(world, [env], Rejection.UNKNOWN_ENTRY, "corrects", f"entry {size + 3}")


def test_case_evidence_by_a_non_party(world: World) -> None:
    """The shop complains about the mill's flour; the wholesaler, no party to the case, adds
    "evidence". The respondent itself may."""
    flour(world)
    world.submit("case.opened", SHOP, case="C-2026-001", respondent=FLOUR_MILL,
                 batches=[{"gtin": FLOUR, "lot": "L20261120"}], summary="面粉有异味",
                 channel="12315")
    env = world.envelope("case.evidence", WHOLESALER, case="C-2026-001", refs=[0],
                         note="我们也收到过投诉")
    refused(world, [env], Rejection.NOT_A_PARTY, WHOLESALER, "C-2026-001")
    size = world.ledger.size()
    world.submit("case.evidence", FLOUR_MILL, case="C-2026-001", refs=[size - 1],
                 note="出厂检验报告见附件")
    assert world.ledger.size() == size + 1


def test_evidence_for_a_closed_case(world: World) -> None:
    """The complaining shop adds evidence after the regulator has closed the case."""
    world.submit("case.opened", SHOP, case="C-1", respondent=FLOUR_MILL, batches=[],
                 summary="面粉有异味", channel="12315")
    world.submit("case.resolved", ROOT, case="C-1", finding="unsubstantiated",
                 summary="复检合格", refs=[])
    env = world.envelope("case.evidence", SHOP, case="C-1", refs=[], note="补充照片")
    refused(world, [env], Rejection.CASE_CLOSED, "C-1", "unsubstantiated")


def test_unknown_organization_as_receiver(world: World) -> None:
    """A shipment to a valid-looking USCC that was never registered."""
    flour(world)
    stranger = make_uscc(999)
    env = world.envelope("batch.shipped", FLOUR_MILL, gtin=FLOUR, lot="L20261120", quantity=1,
                         to=stranger, shipment="S-1")
    refused(world, [env], Rejection.UNKNOWN_ORG, stranger)
    assert holdings(world)["in_transit"] == 0


def test_a_correction_of_a_correction_cannot_withdraw_what_a_direct_one_could_not(
    db_url: str,
) -> None:
    """The regulator corrects a registration's name, then 'corrects that correction' to
    withdraw the registration altogether, or to swap in another organization: both are
    refused, as they would be if done directly."""
    world = World(db_url)
    mill = make_uscc(4242)
    world.submit("org.registered", ROOT, uscc=mill, name="Old name", roles=["producer"],
                 region="350100")
    registration = world.ledger.size() - 1
    original = world.ledger.statement_at(registration)
    raw = json.loads(base64.b64decode(
        world.ledger.entry(registration).to_json()["envelope"]["payload"]))
    first = world.submit("correction", ROOT, corrects=registration, reason="typo",
                         replacement={**raw, "name": "New name"}).index
    first_raw = json.loads(base64.b64decode(
        world.ledger.entry(first).to_json()["envelope"]["payload"]))
    size = world.ledger.size()
    for replacement in (
        {**first_raw, "replacement": None},
        {**first_raw, "replacement": {**raw, "uscc": make_uscc(4343)}},
    ):
        with pytest.raises(Rejected) as e:
            world.submit("correction", ROOT, corrects=first, reason="again",
                         replacement=replacement)
        assert e.value.kind is Rejection.BAD_CORRECTION
        assert "replacement.replacement" in e.value.detail
    assert world.ledger.size() == size
    assert original.body["uscc"] == mill
    world.ledger.close()
