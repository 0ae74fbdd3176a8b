"""Attacks an ordinary member can try with its own key: forged corrections, weak keys,
authority that runs sideways, and a stolen key made unrevocable (EVENTS.md "Roles",
`key.registered`, `key.revoked`, "Corrections").

Each story is told as the attacker would play it against the ledger; each ends with the
statement refused, nothing recorded, and `qledger audit` agreeing. The cast comes from
tests/test_rejections.py: a flour mill and a bakery (producers), a wholesaler, a shop, a
lab, and the root regulator; here a second, provincial regulator joins them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import client, keys
from ledger.audit import audit
from ledger.canonical import canonical_bytes
from ledger.envelope import PAYLOAD_TYPE
from ledger.errors import Rejected, Rejection
from tests.support import ROOT, World, make_uscc
from tests.test_cli_url import server  # noqa: F401 - the uvicorn fixture
from tests.test_rejections import (  # noqa: F401 - `world` is a fixture
    BAKERY, BREAD, FLOUR, FLOUR_MILL, LAB, WHOLESALER, check_fields, keyid, public, refused, world)

PROVINCE = make_uscc(501, "350000", "11")  # a provincial regulator, registered by the root
COUNTY = make_uscc(502, "350100", "11")  # a county regulator the province would like to make
LOT = "L20261120"
OTHER_LOT = "B20261121"  # the bakery's lot of the same GTIN (a co-packed flour)


@pytest.fixture
def province(world: World) -> World:
    world.register(PROVINCE, "福建省市场监督管理局（测试）", "regulator", region="350000")
    return world


def produced(world: World) -> None:
    """The mill makes lot L20261120 of FLOUR; the bakery makes its own lot of the same GTIN."""
    world.produce(FLOUR_MILL, FLOUR, LOT, 1000)
    world.produce(BAKERY, FLOUR, OTHER_LOT, 500)


def correct(world: World, by: str, corrects: int, replacement: dict[str, Any] | None,
            **extra: Any) -> dict[str, Any]:
    return world.envelope("correction", by, corrects=corrects, reason="更正",
                          replacement=replacement, **extra)


def statement_of(world: World, index: int) -> dict[str, Any]:
    envelope = world.ledger.entry(index).to_json()["envelope"]
    statement: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))
    return statement


def audited_clean(world: World) -> None:
    report = audit(world.ledger, workers=0)
    assert report.ok, [str(p) for p in report.problems]


# ---- 1. A correction may not rewrite someone else's record -------------------------------------


def test_a_self_check_corrected_into_a_supervisory_failure_of_another_firm(world: World) -> None:
    """The mill records a self check on its own flour, then 'corrects' it into a failed
    supervisory check of the bakery's lot, naming the bakery: the bakery would lose 10
    points and its lot would scan as failed, with the mill as the lab."""
    produced(world)
    own = world.submit("check.recorded", FLOUR_MILL, **check_fields(FLOUR_MILL, kind="self"))
    forged = {**statement_of(world, own.index), **check_fields(BAKERY, lot=OTHER_LOT),
              "verdict": "fail"}
    refused(world, [correct(world, FLOUR_MILL, own.index, forged)],
            Rejection.BAD_CORRECTION, "may not change")
    # Only the kind changed, the mill still the subject: a supervisory check is a lab's.
    supervisory = {**statement_of(world, own.index), "kind": "supervisory"}
    refused(world, [correct(world, FLOUR_MILL, own.index, supervisory)],
            Rejection.BAD_CORRECTION, "kind")
    # What a self check may honestly correct still goes through: its verdict.
    honest = {**statement_of(world, own.index), "verdict": "fail"}
    world.ledger.append([correct(world, FLOUR_MILL, own.index, honest)])
    audited_clean(world)


def test_a_recall_corrected_onto_another_producers_lot(world: World) -> None:
    """The mill recalls its own lot at level 3, then corrects the recall into a level-1
    recall of the bakery's lot of the same GTIN. Checked as if issued instead, by the
    mill, it is a recall of a batch the mill did not produce: refused."""
    produced(world)
    recall = world.submit("recall.issued", FLOUR_MILL, gtin=FLOUR, lots=[LOT], level=3,
                          reason="标签错印")
    original = statement_of(world, recall.index)
    onto_bakery = {**original, "lots": [OTHER_LOT], "level": 1}
    refused(world, [correct(world, FLOUR_MILL, recall.index, onto_bakery)],
            Rejection.ROLE_FORBIDDEN, "replacement", OTHER_LOT, BAKERY)
    # Through a correction of a correction, one level down, the same.
    first = world.submit("correction", FLOUR_MILL, corrects=recall.index, reason="等级有误",
                         replacement={**original, "level": 2})
    nested = {**statement_of(world, first.index), "replacement": onto_bakery}
    refused(world, [correct(world, FLOUR_MILL, first.index, nested)],
            Rejection.ROLE_FORBIDDEN, "replacement.replacement", OTHER_LOT)
    # A regulator correcting the mill's recall is held to what the mill could sign.
    refused(world, [correct(world, ROOT, recall.index, onto_bakery)],
            Rejection.ROLE_FORBIDDEN, OTHER_LOT)
    # Nor may the GTIN change, nor a lot that was never recorded appear.
    refused(world, [correct(world, FLOUR_MILL, recall.index, {**original, "gtin": BREAD})],
            Rejection.BAD_CORRECTION, "gtin")
    refused(world, [correct(world, FLOUR_MILL, recall.index, {**original, "lots": ["NOPE"]})],
            Rejection.UNKNOWN_BATCH, "NOPE")
    audited_clean(world)


def test_evidence_corrected_into_a_closed_case_where_the_signer_is_no_party(
    world: World,
) -> None:
    """The bakery is the respondent of case A and adds evidence there. Case B, between the
    regulator and the mill, was resolved. The bakery corrects its evidence into case B."""
    produced(world)
    world.submit("case.opened", ROOT, case="FZ-2026-A", respondent=BAKERY,
                 batches=[{"gtin": FLOUR, "lot": OTHER_LOT}], summary="面粉结块", channel="12315")
    world.submit("case.opened", ROOT, case="FZ-2026-B", respondent=FLOUR_MILL,
                 batches=[{"gtin": FLOUR, "lot": LOT}], summary="面粉异味", channel="12315")
    world.submit("case.resolved", ROOT, case="FZ-2026-B", finding="unsubstantiated",
                 summary="抽检合格", refs=[])
    evidence = world.submit("case.evidence", BAKERY, case="FZ-2026-A", refs=[], note="出厂检验报告")
    into_b = {**statement_of(world, evidence.index), "case": "FZ-2026-B"}
    refused(world, [correct(world, BAKERY, evidence.index, into_b)],
            Rejection.BAD_CORRECTION, "case")
    # Case A closes; the bakery's evidence there can no more be changed than added to.
    world.submit("case.resolved", ROOT, case="FZ-2026-A", finding="substantiated",
                 summary="结块属实", refs=[evidence.index])
    late = {**statement_of(world, evidence.index), "note": "补充：出厂检验报告已更正"}
    refused(world, [correct(world, BAKERY, evidence.index, late)],
            Rejection.CASE_CLOSED, "replacement")
    audited_clean(world)


def test_corrections_that_keep_their_subject_and_pass_their_rule_are_recorded(
    world: World,
) -> None:
    """The honest corrections the rule exists for: a lab fixes its report's verdict, the
    mill moves its recall to its own other lot, the regulator fixes a case summary."""
    produced(world)
    world.produce(FLOUR_MILL, FLOUR, "L20261121", 800)
    check = world.submit("check.recorded", LAB, **check_fields(FLOUR_MILL))
    world.submit("correction", LAB, corrects=check.index, reason="复检",
                 replacement={**statement_of(world, check.index), "verdict": "fail"})
    recall = world.submit("recall.issued", FLOUR_MILL, gtin=FLOUR, lots=[LOT], level=2,
                          reason="异物")
    world.submit("correction", FLOUR_MILL, corrects=recall.index, reason="批次有误",
                 replacement={**statement_of(world, recall.index), "lots": ["L20261121"]})
    world.submit("case.opened", ROOT, case="FZ-2026-C", respondent=FLOUR_MILL,
                 batches=[], summary="投诉", channel="12315")
    opened = world.ledger.size() - 1
    world.submit("correction", ROOT, corrects=opened, reason="摘要",
                 replacement={**statement_of(world, opened), "summary": "消费者投诉面粉异味",
                              "batches": [{"gtin": FLOUR, "lot": LOT}]})
    audited_clean(world)


def test_a_forged_correction_over_http_is_a_problem_and_records_nothing(
    world: World, server: str,
) -> None:
    produced(world)
    own = world.submit("check.recorded", FLOUR_MILL, **check_fields(FLOUR_MILL, kind="self"))
    forged = {**statement_of(world, own.index), **check_fields(BAKERY, lot=OTHER_LOT),
              "verdict": "fail"}
    before = world.ledger.size()
    r = httpx.post(server + "/v1/entries", json=correct(world, FLOUR_MILL, own.index, forged))
    assert r.status_code == 422, r.text
    assert r.json()["type"].endswith("/bad-correction")
    assert world.ledger.size() == before


# ---- 2. Weak keys ----------------------------------------------------------------------------

# A tiny reference of edwards25519 (RFC 8032 §5.1), independent of the code under test:
# decoding with its canonical check, addition, and scalar multiplication. Slow, exact.
P = 2**255 - 19
D = -121665 * pow(121666, P - 2, P) % P
L = 2**252 + 27742317777372353535851937790883648493
SQRT_M1 = pow(2, (P - 1) // 4, P)


def decode_point(raw: bytes) -> tuple[int, int] | None:
    """RFC 8032 §5.1.3, with every step that can fail; None for no (canonical) point."""
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    sign = raw[31] >> 7
    if y >= P:
        return None
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if v * x * x % P == (-u) % P:
        x = x * SQRT_M1 % P
    elif v * x * x % P != u:
        return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return x, y


def encode_point(pt: tuple[int, int]) -> bytes:
    x, y = pt
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    return ((x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P,
            (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P)


def times(n: int, pt: tuple[int, int]) -> tuple[int, int]:
    out, acc = (0, 1), pt
    while n:
        if n & 1:
            out = add(out, acc)
        acc, n = add(acc, acc), n >> 1
    return out


IDENTITY = (0, 1)

# The eight points of small order in their canonical encodings, as published in the
# Ed25519 validation literature (e.g. Chalkias, Garillot, Nikolaenko, "Taming the many
# EdDSAs", 2020, Table 6; libsodium's blocklist): orders 1, 2, 4, 4, 8, 8, 8, 8.
SMALL_ORDER = {
    "identity": "0100000000000000000000000000000000000000000000000000000000000000",
    "order 2 (y = -1)": "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "order 4, the all-zero string": "0000000000000000000000000000000000000000000000000000000000000000",
    "order 4, x negative": "0000000000000000000000000000000000000000000000000000000000000080",
    "order 8 (a)": "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "order 8 (b)": "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "order 8 (a, x negative)": "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "order 8 (b, x negative)": "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
}

# Non-canonical encodings: y >= p, or the sign bit set where x = 0.
NON_CANONICAL = {
    "y = p (0 again)": (P).to_bytes(32, "little").hex(),
    "y = p + 1 (the identity again)": (P + 1).to_bytes(32, "little").hex(),
    "y = p + 1, sign set": (P + 1 + (1 << 255)).to_bytes(32, "little").hex(),
    "identity with the sign bit": "0100000000000000000000000000000000000000000000000000000000000080",
    "y = -1 with the sign bit": "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "y = 2^255 - 1": "ff" * 31 + "7f",
}


def not_a_point() -> bytes:
    """The first y whose x is no square: a string that decodes to nothing."""
    y = 2
    while decode_point(y.to_bytes(32, "little")) is not None:
        y += 1
    return y.to_bytes(32, "little")


def mixed_order(key: Ed25519PrivateKey) -> bytes:
    """A real public key plus a point of order 8: on the curve, canonical, but outside
    the prime-order subgroup."""
    point = decode_point(keys.public_bytes(key))
    torsion = decode_point(bytes.fromhex(SMALL_ORDER["order 8 (a)"]))
    assert point is not None and torsion is not None
    return encode_point(add(point, torsion))


def test_the_published_small_order_points_are_what_they_claim() -> None:
    """The vectors themselves, checked by the reference: 8·P is the identity for each,
    and none is a multiple of a prime-order point except the identity."""
    for name, hex_point in SMALL_ORDER.items():
        pt = decode_point(bytes.fromhex(hex_point))
        assert pt is not None, name
        assert times(8, pt) == IDENTITY, name
        assert encode_point(pt).hex() == hex_point, name
    for name, hex_point in NON_CANONICAL.items():
        assert decode_point(bytes.fromhex(hex_point)) is None, name


def test_the_identity_key_signs_anything_which_is_why_it_is_refused() -> None:
    """Why this matters: under the identity key, R = identity and S = 0 make a signature
    that verifies for every message, so a registered identity key is a key for everyone."""
    identity = bytes.fromhex(SMALL_ORDER["identity"])
    forged = identity + bytes(32)
    assert keys.verify(identity, forged, b"any statement at all")
    with pytest.raises(Rejected) as caught:
        keys.check_prime_order(identity)
    assert caught.value.kind is Rejection.WEAK_KEY


def weak_keys() -> Iterator[tuple[str, bytes]]:
    for name, hex_point in {**SMALL_ORDER, **NON_CANONICAL}.items():
        yield name, bytes.fromhex(hex_point)
    yield "not a point", not_a_point()
    yield "mixed order", mixed_order(keys.generate_private_key())


@pytest.mark.parametrize("name,raw", list(weak_keys()), ids=[n for n, _ in weak_keys()])
def test_a_weak_key_is_refused_at_registration(world: World, name: str, raw: bytes) -> None:
    env = world.envelope("key.registered", ROOT, org=FLOUR_MILL,
                         public_key=base64.b64encode(raw).decode())
    refused(world, [env], Rejection.WEAK_KEY, "public_key")
    # The mill, registering the key for itself, is refused alike.
    env = world.envelope("key.registered", FLOUR_MILL, org=FLOUR_MILL,
                         public_key=base64.b64encode(raw).decode())
    refused(world, [env], Rejection.WEAK_KEY)


@pytest.mark.slow
def test_real_keys_pass_the_check() -> None:
    for _ in range(50):
        point = keys.public_bytes(keys.generate_private_key())
        keys.check_prime_order(point)
        assert times(L, decode_point(point) or IDENTITY) == IDENTITY  # type: ignore[arg-type]


def test_a_ledger_cannot_be_created_with_a_weak_root_key(tmp_path: Any) -> None:
    """`init` with the identity point as the root key: entry 1 registers it, signed by it
    (the forged signature verifies), and the ledger refuses to start."""
    from ledger.application import Ledger
    from tests.support import ORIGIN, Clock

    identity = bytes.fromhex(SMALL_ORDER["identity"])
    clock = Clock()
    ledger = Ledger(str(tmp_path / "weak.db"), clock=clock, log_key=keys.generate_private_key())

    def forged(statement: dict[str, Any]) -> dict[str, Any]:
        payload = canonical_bytes(statement)
        return {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode(),
                "signatures": [{"keyid": keys.key_id(identity),
                                "sig": base64.b64encode(identity + bytes(32)).decode()}]}

    genesis = [
        forged(client.new_statement("org.registered", ROOT, issued_at=clock.now, uscc=ROOT,
                                    name="伪造的监管机构", roles=["regulator"], region="110000")),
        forged(client.new_statement("key.registered", ROOT, issued_at=clock.now, org=ROOT,
                                    public_key=base64.b64encode(identity).decode())),
    ]
    with pytest.raises(Rejected) as caught:
        ledger.create(ORIGIN, keys.generate_private_key(), ROOT, genesis)
    assert caught.value.kind is Rejection.WEAK_KEY
    assert ledger.size() == 0 and not ledger.is_created()
    ledger.close()


def test_audit_flags_a_weak_key_recorded_by_older_code(
    world: World, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ledger written before the check holds an identity key and three forged entries
    under it; the audit replays the rules of today and names the registration."""
    identity = bytes.fromhex(SMALL_ORDER["identity"])
    with monkeypatch.context() as older:
        older.setattr("ledger.rules.check_prime_order", lambda raw, what="": None)
        registered = world.submit("key.registered", ROOT, org=FLOUR_MILL,
                                  public_key=base64.b64encode(identity).decode())
    report = audit(world.ledger, workers=0)
    assert registered.index in report.bad_indexes(), [str(p) for p in report.problems]


# ---- 5. Authority runs down from the root ------------------------------------------------------


def test_a_provincial_regulator_cannot_make_regulators_or_touch_the_roots_keys(
    province: World,
) -> None:
    world = province
    # It may not register another regulator.
    refused(world, [world.envelope("org.registered", PROVINCE, uscc=COUNTY, name="某县市场监管局",
                                   roles=["regulator"], region="350100")],
            Rejection.ROLE_FORBIDDEN, "root")
    refused(world, [world.envelope("org.registered", PROVINCE, uscc=COUNTY, name="某县市场监管局",
                                   roles=["producer", "regulator"], region="350100")],
            Rejection.ROLE_FORBIDDEN)
    # Nor add a key to the root, nor revoke the root's key.
    thief = keys.generate_private_key()
    refused(world, [world.envelope("key.registered", PROVINCE, org=ROOT, public_key=public(thief))],
            Rejection.ROLE_FORBIDDEN, ROOT)
    refused(world, [world.envelope("key.revoked", PROVINCE, org=ROOT, keyid=keyid(world.keys[ROOT]),
                                   reason="夺权", revoked_at=client.format_time(world.clock.now))],
            Rejection.ROLE_FORBIDDEN, ROOT)
    # The root makes the county a regulator; the province may not manage its keys.
    county_key = world.register(COUNTY, "某县市场监管局", "regulator", region="350100")
    refused(world, [world.envelope("key.registered", PROVINCE, org=COUNTY, public_key=public(thief))],
            Rejection.ROLE_FORBIDDEN, COUNTY)
    refused(world, [world.envelope("key.revoked", PROVINCE, org=COUNTY, keyid=keyid(county_key),
                                   reason="越权", revoked_at=client.format_time(world.clock.now))],
            Rejection.ROLE_FORBIDDEN, COUNTY)
    # Its own keys and those of firms below it, it manages.
    world.submit("key.registered", PROVINCE, org=PROVINCE,
                 public_key=public(keys.generate_private_key()))
    world.submit("key.registered", PROVINCE, org=FLOUR_MILL,
                 public_key=public(keys.generate_private_key()))
    world.submit("org.registered", PROVINCE, uscc=make_uscc(601), name="闽侯粮油厂（测试）",
                 roles=["producer"], region="350121")
    # The root manages everyone's, and its own.
    world.submit("key.registered", ROOT, org=COUNTY, public_key=public(keys.generate_private_key()))
    world.submit("key.registered", ROOT, org=ROOT, public_key=public(keys.generate_private_key()))
    audited_clean(world)


def test_a_registration_corrected_into_a_regulator_is_refused(province: World) -> None:
    world = province
    r = world.submit("org.registered", PROVINCE, uscc=make_uscc(601), name="闽侯粮油厂（测试）",
                     roles=["producer"], region="350121")
    promoted = {**statement_of(world, r.index), "roles": ["producer", "regulator"]}
    refused(world, [correct(world, PROVINCE, r.index, promoted)], Rejection.BAD_CORRECTION, "roles")


def test_audit_flags_authority_taken_sideways_by_older_code(
    province: World, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Recorded before the rule: the province adds a key to the root and signs as the root."""
    world = province
    thief = keys.generate_private_key()
    with monkeypatch.context() as older:
        older.setattr("ledger.rules.Context.check_authority_over",
                      lambda self, org, doing: None)
        taken = world.submit("key.registered", PROVINCE, org=ROOT, public_key=public(thief))
    world.keys[ROOT] = thief
    report = audit(world.ledger, workers=0)
    assert taken.index in report.bad_indexes(), [str(p) for p in report.problems]


# ---- 6. A stolen key cannot be made unrevocable ------------------------------------------------


def test_a_thief_revoking_the_stolen_key_far_in_the_future_does_not_block_the_real_revocation(
    world: World,
) -> None:
    stolen = world.keys[FLOUR_MILL]
    # The thief, with the mill's key, "revokes" it at the end of time: accepted, harmless.
    world.submit("key.revoked", FLOUR_MILL, org=FLOUR_MILL, keyid=keyid(stolen), reason="轮换",
                 revoked_at="9999-12-31T00:00:00Z")
    # The thief adds a key of its own for the mill and locks it the same way.
    second = keys.generate_private_key()
    world.submit("key.registered", FLOUR_MILL, org=FLOUR_MILL, public_key=public(second))
    world.submit("key.revoked", FLOUR_MILL, org=FLOUR_MILL, keyid=keyid(second), reason="轮换",
                 revoked_at="9999-12-31T00:00:00Z")
    # The regulator revokes both now: the earliest revocation wins.
    world.clock.advance(minutes=1)
    now = client.format_time(world.clock.now)
    for key in (stolen, second):
        world.submit("key.revoked", ROOT, org=FLOUR_MILL, keyid=keyid(key), reason="私钥泄露",
                     revoked_at=now)
    world.clock.advance(minutes=1)
    for key in (stolen, second):
        refused(world, [world.envelope("batch.produced", FLOUR_MILL, key=key, gtin=FLOUR, lot="X1",
                                       product="面粉", category="food", quantity=1, unit="kg",
                                       produced_at="2026-11-20T06:00:00Z", standard="GB/T 1355",
                                       inputs=[])],
                Rejection.KEY_REVOKED)
    # A later revocation no longer moves anything: refused, the earliest stands.
    refused(world, [world.envelope("key.revoked", ROOT, org=FLOUR_MILL, keyid=keyid(stolen),
                                   reason="再次", revoked_at="2030-01-01T00:00:00Z")],
            Rejection.KEY_REVOKED, "earlier")
    audited_clean(world)


def test_the_revocation_date_is_still_not_corrected_but_revoked_again_earlier(
    world: World,
) -> None:
    stolen = world.keys[FLOUR_MILL]
    r = world.submit("key.revoked", FLOUR_MILL, org=FLOUR_MILL, keyid=keyid(stolen), reason="轮换",
                     revoked_at="9999-12-31T00:00:00Z")
    moved = {**statement_of(world, r.index), "revoked_at": "2026-11-22T08:00:00Z"}
    refused(world, [correct(world, ROOT, r.index, moved)], Rejection.BAD_CORRECTION, "revoked_at")
    # The wholesaler (not a regulator, not the mill) cannot revoke the mill's key at all.
    refused(world, [world.envelope("key.revoked", WHOLESALER, org=FLOUR_MILL, keyid=keyid(stolen),
                                   reason="恶意", revoked_at=client.format_time(world.clock.now))],
            Rejection.ROLE_FORBIDDEN)


def test_a_bundle_whose_chain_of_trust_runs_sideways_fails_offline(
    province: World, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The offline verifier holds the same rule: a case bundle whose root-signed entries
    were signed by a key the province added to the root (under older code) fails, naming
    the registration, whoever checks it."""
    from ledger.bundle import verify_bundle
    from traceability.bundle import case_bundle
    from traceability.views import Views

    world = province
    thief = keys.generate_private_key()
    with monkeypatch.context() as older:
        older.setattr("ledger.rules.Context.check_authority_over", lambda self, org, doing: None)
        taken = world.submit("key.registered", PROVINCE, org=ROOT, public_key=public(thief))
    world.produce(FLOUR_MILL, FLOUR, LOT, 1000)
    world.submit("case.opened", ROOT, key=thief, case="FZ-2026-X", respondent=FLOUR_MILL,
                 batches=[{"gtin": FLOUR, "lot": LOT}], summary="伪造的投诉", channel="12315")
    views = Views(world.ledger)
    try:
        views.catch_up()
        verdict = verify_bundle(case_bundle(views, "FZ-2026-X").to_bytes())
    finally:
        views.close()
    assert any(f"entry {taken.index}:" in f and "root regulator" in f
               for f in verdict.failures), verdict.failures


def test_a_log_verifier_key_of_small_order_is_refused() -> None:
    """A witness pinned to the identity as the log key would accept any checkpoint: the
    identity signs every note. The key string is refused when it is read."""
    from ledger.log.checkpoint import verifier_key
    from ledger.log.verify import VerifierKeyError, parse_verifier_key

    for name, hex_point in SMALL_ORDER.items():
        with pytest.raises(VerifierKeyError):
            parse_verifier_key(verifier_key("ledger.quality.example/v1", bytes.fromhex(hex_point)))
    real = keys.public_bytes(keys.generate_private_key())
    assert parse_verifier_key(verifier_key("ledger.quality.example/v1", real)).public_key == real
