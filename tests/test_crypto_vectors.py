"""Cryptographic building blocks against published vectors, and against mutation.

* RFC 8032 §7.1 — Ed25519 TEST 1, 2, 3, 1024 and SHA(abc).
* RFC 8785 §3.2.2, §3.2.3 — JCS samples; §3.2.2.2 string escaping.
* DSSE v1 protocol.md — the PAE example.
* Key ids — SHA-256 of the raw public key, computed independently here.
* The JCS fast path against the rfc8785 package, for arbitrary JSON values.
* Key files and public-key encoding.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ledger import keys
from ledger.b64 import b64decode, b64encode
from ledger.canonical import (
    MAX_SAFE_INTEGER,
    _fast,
    _needs_reference,
    canonical_bytes,
    parse_canonical_statement,
    parse_statement_json,
)
from ledger.envelope import pae
from ledger.errors import LedgerError, Rejected, Rejection

# ---------------------------------------------------------------------------
# RFC 8032 §7.1: Ed25519 test vectors (secret key, public key, message, signature)
# ---------------------------------------------------------------------------

TEST_1024_MESSAGE = (
    "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98fa6e264bf09efe12ee50f8f54e9f77b1"
    "e355f6c50544e23fb1433ddf73be84d879de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d"
    "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc1a858efcb8550ee3a5e1998bd177e93a"
    "7363c344fe6b199ee5d02e82d522c4feba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e"
    "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbefefd75499da96bd68a8a97b928a8bbc10"
    "3b6621fcde2beca1231d206be6cd9ec7aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1"
    "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2d17ba70eb6248e594e1a2297acbbb39d"
    "502f1a8c6eb6f1ce22b3de1a1f40cc24554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270"
    "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc2732e69485bbc9c90bfbd62481d9089b"
    "eccf80cfe2df16a2cf65bd92dd597b0707e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
    "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51addd3b75a2b1ae0784504df543af8969b"
    "e3ea7082ff7fc9888c144da2af58429ec96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7"
    "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c42f58c30c04aafdb038dda0847dd988d"
    "cda6f3bfd15c4b4c4525004aa06eeff8ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df"
    "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08d78ff4ef5d63653a65040cf9bfd4aca7"
    "984a74d37145986780fc0b16ac451649de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4"
    "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a32ef5b52a1ecc820e308aa342721aac09"
    "43bf6686b64b2579376504ccc493d97e6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f"
    "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b50d334ba77c225bc307ba537152f3f161"
    "0e4eafe595f6d9d90d11faa933a15ef1369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d"
    "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c0618983f8741c5ef68d3a101e8a3b8ca"
    "c60c905c15fc910840b94c00a0b9d0"
)

RFC8032_VECTORS = {
    "TEST 1": (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    "TEST 2": (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    "TEST 3": (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    "TEST 1024": (
        "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
        "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
        TEST_1024_MESSAGE,
        "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03",
    ),
    "TEST SHA(abc)": (
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        # The message is SHA-512("abc"), which the test also recomputes.
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
}


def _vector(name: str) -> tuple[Ed25519PrivateKey, bytes, bytes, bytes]:
    secret, public, message, signature = RFC8032_VECTORS[name]
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret))
    return key, bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_the_rfc8032_messages_are_as_described() -> None:
    assert len(bytes.fromhex(TEST_1024_MESSAGE)) == 1023
    assert bytes.fromhex(RFC8032_VECTORS["TEST SHA(abc)"][2]) == hashlib.sha512(b"abc").digest()


@pytest.mark.parametrize("name", list(RFC8032_VECTORS))
def test_signing_reproduces_the_rfc8032_public_key_and_signature(name: str) -> None:
    key, public, message, signature = _vector(name)
    assert keys.public_bytes(key) == public
    # Ed25519 is deterministic: the same secret and message give the same bytes.
    assert key.sign(message) == signature
    assert keys.verify(public, signature, message)


@pytest.mark.parametrize("name", list(RFC8032_VECTORS))
def test_a_flipped_bit_anywhere_makes_an_rfc8032_signature_fail(name: str) -> None:
    _, public, message, signature = _vector(name)
    for bit in (0, 7, 255, 256, 300, 511):  # R half and S half
        assert not keys.verify(public, _flip(signature, bit), message), f"signature bit {bit}"
    for bit in (0, 100, 255):
        assert not keys.verify(_flip(public, bit), signature, message), f"key bit {bit}"
    if message:
        for bit in (0, len(message) * 8 - 1):
            assert not keys.verify(public, signature, _flip(message, bit)), f"message bit {bit}"
    assert not keys.verify(public, signature, message + b"\x00")


def test_verify_says_no_to_keys_and_signatures_of_the_wrong_size() -> None:
    _, public, message, signature = _vector("TEST 1")
    assert not keys.verify(public[:31], signature, message)
    assert not keys.verify(public, signature[:63], message)
    assert not keys.verify(public, signature + b"\x00", message)


def test_a_key_id_is_the_sha256_of_the_raw_public_key() -> None:
    _, public, _, _ = _vector("TEST 1")
    independent = hashlib.sha256(bytes.fromhex(RFC8032_VECTORS["TEST 1"][1])).hexdigest()
    assert keys.key_id(public) == independent
    # Pinned, as computed by `xxd -r -p | sha256sum`, so the definition cannot drift.
    assert independent == "21fe31dfa154a261626bf854046fd2271b7bed4b6abe45aa58877ef47f9721b9"


# ---------------------------------------------------------------------------
# DSSE v1: PAE
# ---------------------------------------------------------------------------


def test_pae_matches_the_dsse_example() -> None:
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_lengths_count_bytes_not_characters() -> None:
    assert pae("t/é", "ü".encode()) == "DSSEv1 4 t/é 2 ü".encode()
    assert pae("", b"") == b"DSSEv1 0  0 "


# ---------------------------------------------------------------------------
# RFC 8785: JCS
# ---------------------------------------------------------------------------

# §3.2.2, input as printed in the RFC (floats included).
RFC8785_SAMPLE_INPUT = r"""{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"""
RFC8785_SAMPLE_OUTPUT = (
    r"""{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"""
    r""""string":"€$\u000f\nA'B\"\\\\\"/"}"""
).encode()
# The same sample without its "numbers" member: what survives in a statement.
RFC8785_SAMPLE_INTEGER_OUTPUT = r"""{"literals":[null,true,false],"string":"€$\u000f\nA'B\"\\\\\"/"}""".encode()

# §3.2.3
RFC8785_SORTING_INPUT = r"""{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}"""
RFC8785_SORTED_VALUES = [
    "Carriage Return",
    "One",
    "Control",
    "Latin Small Letter O With Diaeresis",
    "Euro Sign",
    "Emoji: Grinning Face",
    "Hebrew Letter Dalet With Dagesh",
]


def test_the_rfc8785_sample_with_floats_canonicalizes_as_printed_but_is_no_statement() -> None:
    value = json.loads(RFC8785_SAMPLE_INPUT)
    assert rfc8785.dumps(value) == RFC8785_SAMPLE_OUTPUT
    assert canonical_bytes(value) == RFC8785_SAMPLE_OUTPUT  # floats go to the reference
    with pytest.raises(Rejected) as refused:
        parse_statement_json(RFC8785_SAMPLE_INPUT.encode())
    assert refused.value.kind is Rejection.BAD_JSON
    assert "integers" in str(refused.value)
    with pytest.raises(Rejected) as refused:
        parse_canonical_statement(RFC8785_SAMPLE_OUTPUT)
    assert refused.value.kind is Rejection.BAD_JSON


def test_the_rfc8785_sample_without_its_numbers_is_a_canonical_statement() -> None:
    value = json.loads(RFC8785_SAMPLE_INPUT)
    del value["numbers"]
    assert canonical_bytes(value) == RFC8785_SAMPLE_INTEGER_OUTPUT
    assert parse_canonical_statement(RFC8785_SAMPLE_INTEGER_OUTPUT) == value
    # The pretty-printed, escaped input parses but is not the canonical form.
    pretty = RFC8785_SAMPLE_INPUT.replace('"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, '
                                          '0.000000000000000000000000001],\n', "")
    assert json.loads(pretty) == value
    with pytest.raises(Rejected) as refused:
        parse_canonical_statement(pretty.encode())
    assert refused.value.kind is Rejection.NON_CANONICAL


def test_rfc8785_sorting_orders_keys_by_utf16_code_units() -> None:
    value = json.loads(RFC8785_SORTING_INPUT)
    out = canonical_bytes(value)
    assert out == rfc8785.dumps(value)
    assert [v for v in json.loads(out, object_pairs_hook=lambda p: [v for _, v in p])] == (
        RFC8785_SORTED_VALUES
    )
    assert out == (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"ö":"Latin Small Letter O With Diaeresis","€":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    ).encode()
    # The reason for the fallback: sorting by code point puts U+FB33 before
    # U+1F600, so the plain encoder gets exactly this example wrong.
    assert _needs_reference(value)
    assert _fast(value) != out
    # And the ledger accepts the RFC's order, not Python's.
    assert parse_canonical_statement(out) == value
    with pytest.raises(Rejected) as refused:
        parse_canonical_statement(_fast(value))
    assert refused.value.kind is Rejection.NON_CANONICAL


@pytest.mark.parametrize(
    ("text", "serialized"),
    [
        ("\b", r'"\b"'),
        ("\t", r'"\t"'),
        ("\n", r'"\n"'),
        ("\f", r'"\f"'),
        ("\r", r'"\r"'),
        ("\x00", r'"\u0000"'),
        ("\x0f", r'"\u000f"'),
        ("\x1f", r'"\u001f"'),
        ('"', r'"\""'),
        ("\\", r'"\\"'),
        ("/", '"/"'),
        ("\x7f", '"\x7f"'),
        ("\u2028\u2029", '"\u2028\u2029"'),
        ("é€\U0001f600", '"é€\U0001f600"'),
        ("<script>&'", "\"<script>&'\""),
    ],
)
def test_rfc8785_string_escaping(text: str, serialized: str) -> None:
    # §3.2.2.2: only '"', '\' and U+0000-U+001F are escaped, with the short
    # forms where JSON has them and lowercase \u00xx otherwise.
    assert canonical_bytes(text) == serialized.encode()
    assert rfc8785.dumps(text) == serialized.encode()
    assert canonical_bytes({"k": text}) == b'{"k":' + serialized.encode() + b"}"


@pytest.mark.parametrize(
    "value",
    [
        "\ud800",
        {"\udfff": 1},
        ["ok", "a\ud83d"],
        2**53,
        -(2**53),
        float("nan"),
        {1: "non-string key"},
        {"a": object()},
    ],
    ids=["lone-surrogate", "surrogate-key", "half-pair", "2^53", "-2^53", "nan", "int-key", "object"],
)
def test_values_without_a_canonical_form_are_refused(value: Any) -> None:
    with pytest.raises(Rejected) as refused:
        canonical_bytes(value)
    assert refused.value.kind is Rejection.BAD_JSON


def test_self_referencing_values_are_refused_not_looped_over() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(Rejected):
        canonical_bytes(loop)


def test_integers_at_the_edge_of_the_safe_range() -> None:
    assert canonical_bytes([MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER]) == (
        b"[9007199254740991,-9007199254740991]"
    )


# --- the fast path against the reference, for arbitrary values --------------

# Code points where the fast path could go wrong: escapes, the U+E000-U+FFFF
# versus astral ordering, surrogates, and the edges of each range.
TRICKY = list(
    "\x00\x08\x1f\x7f\"\\/\u2028é€\ud7ff\ue000\ufb33\uffff\U00010000\U0001f600\U0010ffff\ud800\udfff"
)
_chars = st.one_of(st.characters(exclude_categories=()), st.sampled_from(TRICKY))
_text = st.text(_chars, max_size=6)
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
    st.sampled_from([0, -1, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 2**53, -(2**53)]),
    _text,
)
json_values = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(_text, inner, max_size=5),
    ),
    max_leaves=20,
)


def _reference_or_none(value: Any) -> bytes | None:
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError):
        return None


def _ours_or_none(value: Any) -> bytes | None:
    try:
        return canonical_bytes(value)
    except Rejected:
        return None


@pytest.mark.slow
@settings(max_examples=1500)
@given(json_values)
@example({"\ufb33": 1, "\U0001f600": 2})
@example({"\uffff": 1, "\U00010000": 2, "a": [{"\ue000": None, "\U0010ffff": True}]})
@example(["\ud800"])
def test_canonical_bytes_equals_rfc8785(value: Any) -> None:
    expected = _reference_or_none(value)
    assert _ours_or_none(value) == expected
    # The fast path on its own, wherever canonical_bytes would use it.
    try:
        fast_path_applies = not _needs_reference(value)
    except Rejected:  # out of the JSON domain: the reference refuses too
        assert expected is None
        return
    if fast_path_applies:
        try:
            fast: bytes | None = _fast(value)
        except Rejected:
            fast = None
        assert fast == expected


@pytest.mark.slow
@settings(max_examples=500)
@given(st.dictionaries(_text, json_values, max_size=6))
def test_the_ledger_accepts_exactly_the_canonical_bytes_of_a_statement(value: dict[str, Any]) -> None:
    canonical = _reference_or_none(value)
    if canonical is None:
        return
    try:
        parsed = parse_canonical_statement(canonical)
    except Rejected as refused:  # only nesting can refuse a canonical value here
        assert refused.kind is Rejection.BAD_JSON and "levels" in refused.detail
        return
    assert parsed == value
    # Python's own key order is accepted only where it is also the JCS order.
    python_order = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    if python_order != canonical:
        with pytest.raises(Rejected) as refused_python:
            parse_canonical_statement(python_order)
        assert refused_python.value.kind is Rejection.NON_CANONICAL


# ---------------------------------------------------------------------------
# Strict base64 (RFC 4648)
# ---------------------------------------------------------------------------


@given(st.binary(max_size=40))
def test_base64_round_trips(data: bytes) -> None:
    assert b64decode(b64encode(data), "x") == data


@pytest.mark.parametrize(
    "text",
    ["QQ", "QQ=", "QR==", "QUJD====", "QUJ D", "QUJD\n", "Q-_D", "=QUJ", "QQ==QQ==", "QUJDé==="],
    ids=["unpadded", "short-padding", "trailing-bits", "extra-padding", "space", "newline",
         "urlsafe", "leading-padding", "data-after-padding", "non-ascii"],
)
def test_base64_has_one_spelling_per_value(text: str) -> None:
    with pytest.raises(Rejected) as refused:
        b64decode(text, "thing")
    assert refused.value.kind is Rejection.BAD_BASE64
    assert str(refused.value).startswith("thing is not")


# ---------------------------------------------------------------------------
# Keys: files and encodings
# ---------------------------------------------------------------------------


def test_a_written_key_is_private_to_its_owner_and_loads_back(tmp_path: Path) -> None:
    key = keys.generate_private_key()
    path = tmp_path / "org.pem"
    keys.write_private_key(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = keys.load_private_key(path)
    assert keys.public_bytes(loaded) == keys.public_bytes(key)


def test_writing_a_key_never_overwrites_a_file(tmp_path: Path) -> None:
    path = tmp_path / "org.pem"
    path.write_text("precious")
    with pytest.raises(LedgerError) as refused:
        keys.write_private_key(path, keys.generate_private_key())
    assert str(path) in str(refused.value)
    assert path.read_text() == "precious"


def test_writing_a_key_never_follows_a_planted_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    link = tmp_path / "org.pem"
    os.symlink(target, link)
    with pytest.raises(LedgerError):
        keys.write_private_key(link, keys.generate_private_key())
    assert not target.exists()


def test_loading_a_key_explains_what_is_wrong(tmp_path: Path) -> None:
    def problem(path: Path) -> str:
        with pytest.raises(LedgerError) as refused:
            keys.load_private_key(path)
        message = str(refused.value)
        assert str(path) in message
        return message

    assert "does not exist" in problem(tmp_path / "missing.pem")
    (tmp_path / "notes.txt").write_text("hello")
    assert "not a PEM file" in problem(tmp_path / "notes.txt")

    ec_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.pem").write_bytes(ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    assert "elliptic-curve" in problem(tmp_path / "ec.pem")

    ed = keys.generate_private_key()
    (tmp_path / "locked.pem").write_bytes(ed.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    assert "encrypted" in problem(tmp_path / "locked.pem")

    (tmp_path / "public.pem").write_bytes(ed.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert "public key" in problem(tmp_path / "public.pem")

    (tmp_path / "garbled.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    assert "readable" in problem(tmp_path / "garbled.pem")


def test_public_keys_travel_as_strict_base64_of_32_bytes() -> None:
    _, public, _, _ = _vector("TEST 1")
    text = keys.encode_public_key(public)
    assert text == "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
    assert keys.decode_public_key(text) == public
    for bad in [text.rstrip("="), text.replace("/", "_"), " " + text, b64encode(public[:31]),
                b64encode(public + b"\x00"), "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURp="]:
        with pytest.raises(Rejected) as refused:
            keys.decode_public_key(bad)
        assert refused.value.kind is Rejection.BAD_FIELDS, bad
