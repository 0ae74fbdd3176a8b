"""Envelopes: what an organization signs, what the ledger accepts, and why it refuses.

Each refusal test names the rule broken and asserts the Rejection kind, so a
client can tell "fix your JSON" from "fix your signature".
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from ledger import client, keys
from ledger.canonical import canonical_bytes, parse_canonical_statement, parse_statement_json
from ledger.envelope import MAX_PAYLOAD_BYTES, PAYLOAD_TYPE, Envelope, Signature, pae
from ledger.errors import Rejected, Rejection
from ledger.timefmt import format_time, parse_time

FARM = "91350100M000100Y43"
KEY = keys.generate_private_key()
CO_SIGNER = keys.generate_private_key()


def keyid_of(key: Any) -> str:
    return keys.key_id(keys.public_bytes(key))


def a_statement(**fields: Any) -> dict[str, Any]:
    content: dict[str, Any] = {"gtin": "06901234567892", "lot": "W-2026-11", "quantity": 400}
    content.update(fields)
    return client.new_statement(
        "batch.shipped", FARM, issued_at=datetime(2026, 11, 22, 10, 0, tzinfo=UTC), **content
    )


def signed_payload(payload: bytes, payload_type: str = PAYLOAD_TYPE) -> dict[str, Any]:
    """An envelope around arbitrary payload bytes, correctly signed over them.

    For testing payload rules in isolation: client.sign would refuse to make
    most of these.
    """
    sig = KEY.sign(pae(payload_type, payload))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": keyid_of(KEY), "sig": base64.b64encode(sig).decode()}],
    }


def refusal(data: Any) -> Rejection:
    with pytest.raises(Rejected) as refused:
        Envelope.from_json(data)
    assert refused.value.detail and "\n" not in refused.value.detail
    return refused.value.kind


def payload_refusal(payload: bytes) -> Rejection:
    return refusal(signed_payload(payload))


def altered(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    envelope = json.loads(json.dumps(client.sign(a_statement(), KEY)))
    change(envelope)
    return envelope


# ---------------------------------------------------------------------------
# The happy path
# ---------------------------------------------------------------------------


def test_a_farm_signs_a_shipment_and_the_ledger_accepts_and_verifies_it() -> None:
    statement = a_statement()
    sent = client.sign(statement, KEY)
    assert sent["payloadType"] == PAYLOAD_TYPE
    assert base64.b64decode(sent["payload"]) == canonical_bytes(statement)

    for form in (sent, json.dumps(sent), json.dumps(sent, indent=2).encode()):
        envelope = Envelope.from_json(form)
        assert envelope.statement == statement
        assert envelope.to_json() == sent  # stored exactly as accepted
        envelope.verify(keyid_of(KEY), keys.public_bytes(KEY))
    assert envelope.message() == pae(PAYLOAD_TYPE, envelope.payload)
    assert envelope.signatures == (Signature(keyid_of(KEY), envelope.signatures[0].sig),)


def test_co_signed_envelopes_carry_one_signature_per_key_primary_first() -> None:
    envelope = Envelope.from_json(client.sign(a_statement(), KEY, CO_SIGNER))
    assert [s.keyid for s in envelope.signatures] == [keyid_of(KEY), keyid_of(CO_SIGNER)]
    envelope.verify(keyid_of(KEY), keys.public_bytes(KEY))
    envelope.verify(keyid_of(CO_SIGNER), keys.public_bytes(CO_SIGNER))


def test_envelopes_compare_by_their_bytes_not_their_parsed_statement() -> None:
    sent = client.sign(a_statement(), KEY)
    first, second = Envelope.from_json(sent), Envelope.from_json(json.dumps(sent))
    assert first == second and hash(first) == hash(second)
    assert "statement=" not in repr(first)


def test_chinese_names_and_full_width_punctuation_are_fine() -> None:
    statement = a_statement(site="上海工厂（浦东）", note="批次😀")
    envelope = Envelope.from_json(client.sign(statement, KEY))
    assert envelope.statement["site"] == "上海工厂（浦东）"


# ---------------------------------------------------------------------------
# The envelope's own JSON and shape
# ---------------------------------------------------------------------------


def test_bad_json_is_refused() -> None:
    assert refusal(b'{"payloadType": ') is Rejection.BAD_JSON
    assert refusal("not json") is Rejection.BAD_JSON
    assert refusal(b"\xff\xfe{}") is Rejection.BAD_JSON  # not UTF-8


def test_an_envelope_with_a_key_twice_is_refused() -> None:
    sent = json.dumps(client.sign(a_statement(), KEY))
    assert refusal(sent[:-1] + ', "payloadType": "x"}') is Rejection.BAD_JSON


def test_an_envelope_nested_100000_deep_is_refused_without_crashing() -> None:
    assert refusal(b"[" * 100_000) is Rejection.BAD_JSON


@pytest.mark.parametrize("data", [b"[]", "42", '"envelope"', b"null", [1], "true"])
def test_an_envelope_must_be_an_object(data: Any) -> None:
    assert refusal(data) is Rejection.BAD_ENVELOPE


@pytest.mark.parametrize(
    "change",
    [
        lambda e: e.pop("payload"),
        lambda e: e.pop("signatures"),
        lambda e: e.pop("payloadType"),
        lambda e: e.update(extra=1),
        lambda e: e.update(payload=42),
        lambda e: e.update(payloadType=None),
    ],
    ids=["no-payload", "no-signatures", "no-payloadType", "extra-field", "payload-number",
         "payloadType-null"],
)
def test_missing_extra_or_mistyped_fields_are_refused(
    change: Callable[[dict[str, Any]], object],
) -> None:
    assert refusal(altered(change)) is Rejection.BAD_ENVELOPE


def test_the_refusal_names_the_fields() -> None:
    with pytest.raises(Rejected) as refused:
        Envelope.from_json(altered(lambda e: (e.pop("payload"), e.update(extra=1))))
    assert "payload" in refused.value.detail and "'extra'" in refused.value.detail


@pytest.mark.parametrize(
    "change",
    [
        lambda e: e.update(signatures=[]),
        lambda e: e.update(signatures=e["signatures"][0]),
        lambda e: e.update(signatures="sig"),
        lambda e: e["signatures"].append("sig"),
        lambda e: e["signatures"][0].update(extra="x"),
        lambda e: e["signatures"][0].pop("sig"),
        lambda e: e["signatures"][0].update(keyid=e["signatures"][0]["keyid"].upper()),
        lambda e: e["signatures"][0].update(keyid=e["signatures"][0]["keyid"][:63]),
        lambda e: e["signatures"][0].update(keyid=e["signatures"][0]["keyid"] + "\n"),
        lambda e: e["signatures"][0].update(keyid=7),
        lambda e: e["signatures"][0].update(sig=None),
    ],
    ids=["empty", "object-not-list", "string-not-list", "non-object-item", "extra-field",
         "no-sig", "keyid-uppercase", "keyid-short", "keyid-newline", "keyid-number", "sig-null"],
)
def test_signatures_must_be_a_non_empty_list_of_exact_keyid_sig_objects(
    change: Callable[[dict[str, Any]], None],
) -> None:
    assert refusal(altered(change)) is Rejection.BAD_ENVELOPE


@pytest.mark.parametrize("size", [63, 65, 32, 0])
def test_a_signature_must_be_64_bytes(size: int) -> None:
    sig = base64.b64encode(bytes(size)).decode()
    assert refusal(altered(lambda e: e["signatures"][0].update(sig=sig))) is Rejection.BAD_SIGNATURE


def test_an_overlong_signature_is_refused_before_decoding() -> None:
    sig = "A" * 10_000_000
    assert refusal(altered(lambda e: e["signatures"][0].update(sig=sig))) is Rejection.BAD_SIGNATURE


def test_a_key_signs_an_envelope_at_most_once() -> None:
    twice = altered(lambda e: e["signatures"].append(dict(e["signatures"][0])))
    assert refusal(twice) is Rejection.BAD_ENVELOPE
    with pytest.raises(Rejected) as refused:
        client.sign(a_statement(), KEY, KEY)
    assert refused.value.kind is Rejection.BAD_ENVELOPE


def test_the_payload_type_is_fixed() -> None:
    statement = canonical_bytes(a_statement())
    envelope = signed_payload(statement, payload_type="application/json")
    envelope["payloadType"] = "application/json"
    assert refusal(envelope) is Rejection.BAD_PAYLOAD_TYPE
    assert refusal(altered(lambda e: e.update(payloadType=PAYLOAD_TYPE.upper()))) is (
        Rejection.BAD_PAYLOAD_TYPE
    )


# ---------------------------------------------------------------------------
# Base64: one spelling per value
# ---------------------------------------------------------------------------


def payload_text_with(predicate: Callable[[str], bool]) -> dict[str, Any]:
    """A valid envelope whose payload's base64 satisfies `predicate`."""
    for n in range(60):
        for m in range(3):
            envelope = client.sign(a_statement(note="?>" * n + "~" * m), KEY)
            if predicate(envelope["payload"]):
                return envelope
    raise AssertionError("no such payload found")


def test_url_safe_base64_is_refused() -> None:
    envelope = payload_text_with(lambda t: "+" in t or "/" in t)
    envelope["payload"] = envelope["payload"].replace("+", "-").replace("/", "_")
    assert refusal(envelope) is Rejection.BAD_BASE64


def test_unpadded_base64_is_refused() -> None:
    envelope = payload_text_with(lambda t: t.endswith("="))
    envelope["payload"] = envelope["payload"].rstrip("=")
    assert refusal(envelope) is Rejection.BAD_BASE64
    signature = envelope["signatures"][0]
    assert signature["sig"].endswith("==")
    envelope = client.sign(a_statement(), KEY)
    envelope["signatures"][0]["sig"] = signature["sig"].rstrip("=")
    assert refusal(envelope) is Rejection.BAD_BASE64


@pytest.mark.parametrize("where", [0, 40, -1])
def test_base64_with_whitespace_is_refused(where: int) -> None:
    envelope = client.sign(a_statement(), KEY)
    text = envelope["payload"]
    envelope["payload"] = (text + "\n") if where == -1 else text[:where] + " " + text[where:]
    assert refusal(envelope) is Rejection.BAD_BASE64


def test_base64_with_non_zero_unused_bits_is_refused() -> None:
    # With one byte in the last group ("xy=="), the low 4 bits of y are unused:
    # setting one decodes to the same bytes, so it must be refused.
    envelope = payload_text_with(lambda t: t.endswith("=="))
    text = envelope["payload"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(text[-3])
    assert last & 0b1111 == 0
    mutated = text[:-3] + alphabet[last | 1] + "=="
    assert base64.b64decode(mutated) == base64.b64decode(text)  # a lenient decoder agrees
    envelope["payload"] = mutated
    assert refusal(envelope) is Rejection.BAD_BASE64


def test_surplus_padding_is_refused() -> None:
    envelope = payload_text_with(lambda t: not t.endswith("="))
    envelope["payload"] += "===="
    assert refusal(envelope) is Rejection.BAD_BASE64


# ---------------------------------------------------------------------------
# The payload: canonical JSON of one statement object, integers only
# ---------------------------------------------------------------------------


def test_a_canonical_statement_is_accepted() -> None:
    payload = canonical_bytes(a_statement())
    assert Envelope.from_json(signed_payload(payload)).payload == payload


@pytest.mark.parametrize(
    "serialize",
    [
        lambda s: json.dumps(s, sort_keys=True, ensure_ascii=False).encode(),  # spaces
        lambda s: json.dumps(s, separators=(",", ":"), ensure_ascii=False).encode(),  # unsorted
        lambda s: json.dumps(s, sort_keys=True, separators=(",", ":")).encode(),  # \u00e9
        lambda s: b" " + canonical_bytes(s),
        lambda s: canonical_bytes(s) + b"\n",
        lambda s: canonical_bytes(s).replace(b":400", b":0400"),
    ],
    ids=["spaces", "unsorted-keys", "escaped-unicode", "leading-space", "trailing-newline",
         "leading-zero"],
)
def test_a_non_canonical_payload_is_refused(serialize: Callable[[dict[str, Any]], bytes]) -> None:
    statement = a_statement(site="Café")
    payload = serialize(statement)
    assert payload != canonical_bytes(statement)
    kind = payload_refusal(payload)
    # A leading zero is not JSON at all; everything else is JSON in the wrong form.
    assert kind is (Rejection.BAD_JSON if b"0400" in payload else Rejection.NON_CANONICAL)


def test_escaped_unicode_is_refused_as_non_canonical() -> None:
    assert payload_refusal(b'{"site":"Caf\\u00e9"}') is Rejection.NON_CANONICAL
    Envelope.from_json(signed_payload('{"site":"Café"}'.encode()))
    assert payload_refusal(b'{"e":"\\ud83d\\ude00"}') is Rejection.NON_CANONICAL
    assert payload_refusal(b'{"e":"\\ud800"}') is Rejection.NON_CANONICAL  # lone surrogate
    assert payload_refusal(b'{"e":"\\/"}') is Rejection.NON_CANONICAL
    assert payload_refusal(b'{"-0":-0}') is Rejection.NON_CANONICAL


@pytest.mark.parametrize("payload", [b"[1]", b"42", b'"statement"', b"null", b"true", b"[]"])
def test_a_payload_must_be_an_object(payload: bytes) -> None:
    assert payload_refusal(payload) is Rejection.BAD_JSON


@pytest.mark.parametrize("payload", [b"", b"{", b'{"a":1', b'{"a":}', b"\xff", b"\xef\xbb\xbf{}"])
def test_a_payload_must_be_utf8_json(payload: bytes) -> None:
    assert payload_refusal(payload) is Rejection.BAD_JSON


def test_json_errors_say_where() -> None:
    with pytest.raises(Rejected) as refused:
        parse_statement_json(b'{"site":"\xe5\xb7\xa5",}')
    assert "at byte 14" in refused.value.detail  # bytes, not characters (12)


@pytest.mark.parametrize(
    "payload",
    [b'{"q":1.5}', b'{"q":1.0}', b'{"q":1e3}', b'{"q":-0.0}', b'{"q":[1,2.5]}'],
)
def test_numbers_must_be_integers(payload: bytes) -> None:
    assert payload_refusal(payload) is Rejection.BAD_JSON


@pytest.mark.parametrize("payload", [b'{"q":NaN}', b'{"q":Infinity}', b'{"q":-Infinity}'])
def test_nan_and_infinity_are_refused(payload: bytes) -> None:
    assert payload_refusal(payload) is Rejection.BAD_JSON


def test_integers_must_be_exact_in_a_double() -> None:
    top = 2**53 - 1
    Envelope.from_json(signed_payload(b'{"q":%d}' % top))
    Envelope.from_json(signed_payload(b'{"q":%d}' % -top))
    assert payload_refusal(b'{"q":%d}' % (top + 1)) is Rejection.BAD_JSON
    assert payload_refusal(b'{"q":%d}' % -(top + 1)) is Rejection.BAD_JSON
    assert payload_refusal(b'{"q":1' + b"0" * 5000 + b"}") is Rejection.BAD_JSON  # no int() blow-up
    with pytest.raises(Rejected) as refused:
        client.sign(a_statement(quantity=top + 1), KEY)
    assert refused.value.kind is Rejection.BAD_JSON


@pytest.mark.parametrize("payload", [b'{"a":1,"a":1}', b'{"a":1,"a":2}', b'{"a":{"b":1,"b":1}}'])
def test_duplicate_keys_are_refused(payload: bytes) -> None:
    assert payload_refusal(payload) is Rejection.BAD_JSON


def test_nesting_is_limited_to_16_levels() -> None:
    sixteen = b'{"a":' + b"[" * 15 + b"]" * 15 + b"}"
    assert parse_canonical_statement(sixteen)
    Envelope.from_json(signed_payload(sixteen))
    seventeen = b'{"a":' + b"[" * 16 + b"]" * 16 + b"}"
    assert payload_refusal(seventeen) is Rejection.BAD_JSON
    many_shallow = b'{"a":[' + b",".join([b"[]"] * 100) + b"]}"
    Envelope.from_json(signed_payload(many_shallow))
    brackets_in_strings = b'{"a":"' + b"[{" * 100 + b'"}'
    Envelope.from_json(signed_payload(brackets_in_strings))


def test_100000_nested_brackets_are_refused_without_crashing() -> None:
    for payload in (b"[" * 100_000, b'{"a":' + b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000):
        for parse in (parse_statement_json, parse_canonical_statement):
            with pytest.raises(Rejected) as refused:
                parse(payload)
            assert refused.value.kind is Rejection.BAD_JSON
    # Within the size limit, the envelope refuses it as JSON; beyond, as too large.
    assert payload_refusal(b'{"a":' + b"[" * 60_000) is Rejection.BAD_JSON
    assert payload_refusal(b"[" * 100_000) is Rejection.PAYLOAD_TOO_LARGE


def test_payloads_up_to_64_kib_are_accepted_and_larger_ones_refused() -> None:
    def of_size(n: int) -> bytes:
        payload = b'{"pad":"' + b"x" * (n - 10) + b'"}'
        assert len(payload) == n
        return payload

    exactly = Envelope.from_json(signed_payload(of_size(MAX_PAYLOAD_BYTES)))
    assert len(exactly.payload) == MAX_PAYLOAD_BYTES
    assert payload_refusal(of_size(MAX_PAYLOAD_BYTES + 1)) is Rejection.PAYLOAD_TOO_LARGE
    with pytest.raises(Rejected) as refused:
        client.sign({"pad": "x" * MAX_PAYLOAD_BYTES}, KEY)
    assert refused.value.kind is Rejection.PAYLOAD_TOO_LARGE


def test_a_huge_payload_is_refused_before_decoding() -> None:
    envelope = client.sign(a_statement(), KEY)
    envelope["payload"] = "!" * 50_000_000  # not even base64: size is checked first
    assert refusal(envelope) is Rejection.PAYLOAD_TOO_LARGE


def test_client_sign_refuses_what_the_ledger_would_refuse() -> None:
    with pytest.raises(Rejected) as refused:
        client.sign(a_statement(weight=1.5), KEY)
    assert refused.value.kind is Rejection.BAD_JSON


# ---------------------------------------------------------------------------
# Signatures
# ---------------------------------------------------------------------------


def test_a_flipped_bit_in_a_signature_is_caught_by_verify() -> None:
    for bit in (0, 255, 256, 511):
        def flip(e: dict[str, Any], bit: int = bit) -> None:
            sig = bytearray(base64.b64decode(e["signatures"][0]["sig"]))
            sig[bit // 8] ^= 1 << (bit % 8)
            e["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()

        envelope = Envelope.from_json(altered(flip))  # well-formed, so accepted …
        with pytest.raises(Rejected) as refused:  # … until checked
            envelope.verify(keyid_of(KEY), keys.public_bytes(KEY))
        assert refused.value.kind is Rejection.BAD_SIGNATURE
        assert keyid_of(KEY) in refused.value.detail


def test_a_signature_does_not_carry_over_to_a_changed_payload() -> None:
    original = client.sign(a_statement(), KEY)
    changed = client.sign(a_statement(), KEY)
    changed["payload"] = base64.b64encode(
        base64.b64decode(original["payload"]).replace(b'"quantity":400', b'"quantity":900')
    ).decode()
    changed["signatures"] = original["signatures"]
    with pytest.raises(Rejected) as refused:
        Envelope.from_json(changed).verify(keyid_of(KEY), keys.public_bytes(KEY))
    assert refused.value.kind is Rejection.BAD_SIGNATURE


def test_a_signature_over_another_payload_type_is_refused() -> None:
    payload = canonical_bytes(a_statement())
    for signed_as in ("application/json", "application/vnd.in-toto+json"):
        envelope = Envelope.from_json(signed_payload(payload, payload_type=signed_as))
        with pytest.raises(Rejected) as refused:
            envelope.verify(keyid_of(KEY), keys.public_bytes(KEY))
        assert refused.value.kind is Rejection.BAD_SIGNATURE


def test_a_signature_over_the_bare_payload_instead_of_the_pae_is_refused() -> None:
    payload = canonical_bytes(a_statement())
    envelope = signed_payload(payload)
    envelope["signatures"][0]["sig"] = base64.b64encode(KEY.sign(payload)).decode()
    with pytest.raises(Rejected) as refused:
        Envelope.from_json(envelope).verify(keyid_of(KEY), keys.public_bytes(KEY))
    assert refused.value.kind is Rejection.BAD_SIGNATURE


def test_verify_needs_the_signers_keyid_and_its_own_key() -> None:
    envelope = Envelope.from_json(client.sign(a_statement(), KEY))
    with pytest.raises(Rejected) as refused:
        envelope.verify(keyid_of(CO_SIGNER), keys.public_bytes(CO_SIGNER))
    assert refused.value.kind is Rejection.BAD_ENVELOPE
    with pytest.raises(Rejected) as refused:
        envelope.verify(keyid_of(KEY), keys.public_bytes(CO_SIGNER))
    assert refused.value.kind is Rejection.BAD_SIGNATURE


def test_a_co_signature_cannot_be_moved_to_another_keyid() -> None:
    sent = client.sign(a_statement(), KEY, CO_SIGNER)
    sent["signatures"][0]["sig"], sent["signatures"][1]["sig"] = (
        sent["signatures"][1]["sig"], sent["signatures"][0]["sig"])
    envelope = Envelope.from_json(sent)
    for signer in (KEY, CO_SIGNER):
        with pytest.raises(Rejected) as refused:
            envelope.verify(keyid_of(signer), keys.public_bytes(signer))
        assert refused.value.kind is Rejection.BAD_SIGNATURE


# ---------------------------------------------------------------------------
# Building statements, and their times
# ---------------------------------------------------------------------------


def test_new_statements_get_an_id_and_a_whole_second_utc_time() -> None:
    statement = client.new_statement("batch.shipped", FARM, quantity=3)
    assert set(statement) == {"type", "by", "id", "issued_at", "quantity"}
    assert len(statement["id"]) == 36 and statement["id"].count("-") == 4
    assert statement["id"] != client.new_statement("batch.shipped", FARM)["id"]
    issued = parse_time(statement["issued_at"])
    assert abs(issued - datetime.now(UTC)) < timedelta(minutes=1)
    assert statement["issued_at"].endswith("Z") and "." not in statement["issued_at"]
    beijing = timezone(timedelta(hours=8))
    given = client.new_statement("t", FARM, id="fixed",
                                 issued_at=datetime(2026, 11, 22, 18, 0, 0, 999_999, tzinfo=beijing))
    assert given["id"] == "fixed" and given["issued_at"] == "2026-11-22T10:00:00Z"


def test_times_have_one_written_form() -> None:
    assert format_time(datetime(2026, 11, 22, 10, 0, tzinfo=UTC)) == "2026-11-22T10:00:00Z"
    assert format_time(datetime(99, 1, 2, 3, 4, 5, tzinfo=UTC)) == "0099-01-02T03:04:05Z"
    with pytest.raises(ValueError):
        format_time(datetime(2026, 11, 22, 10, 0))  # naive: zone unknown
    assert parse_time("2026-11-22T10:00:00Z") == datetime(2026, 11, 22, 10, tzinfo=UTC)
    assert parse_time("2026-11-22T10:00:00.5Z") == datetime(2026, 11, 22, 10, 0, 0, 500_000, tzinfo=UTC)
    assert parse_time("2026-11-22T10:00:00.123456789Z").microsecond == 123_456


@pytest.mark.parametrize(
    "text",
    ["2026-11-22T10:00:00+00:00", "2026-11-22 10:00:00Z", "2026-11-22t10:00:00z", "2026-11-22T10:00Z",
     "2026-11-22T10:00:00", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-22T24:00:00Z",
     "2016-12-31T23:59:60Z", "２０２６-11-22T10:00:00Z", "2026-11-22T10:00:00.Z", " 2026-11-22T10:00:00Z",
     "0000-01-01T00:00:00Z"],
)
def test_other_time_forms_are_refused(text: str) -> None:
    with pytest.raises(Rejected) as refused:
        parse_time(text)
    assert refused.value.kind is Rejection.BAD_TIME
