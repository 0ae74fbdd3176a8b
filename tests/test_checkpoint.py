"""C2SP tlog-checkpoints in Ed25519 signed notes: exact layout, external vectors, mutations."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.errors import VerificationError
from ledger.log.checkpoint import (
    Checkpoint,
    key_hash,
    note_text,
    parse_checkpoint,
    sign_checkpoint,
    sign_note,
    verifier_key,
)
from ledger.log.verify import (
    MalformedNoteError,
    OriginMismatchError,
    SignatureError,
    VerifierKeyError,
    parse_verifier_key,
    split_signed_note,
    verify_checkpoint,
    verify_note,
)

# RFC 8032 §7.1 TEST 1: a published Ed25519 key pair, so the bytes below can be checked anywhere.
SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
KEY = Ed25519PrivateKey.from_private_bytes(SECRET)
NAME = "example.com/qledger"

# Root of the 8-leaf RFC 6962 test tree (see test_merkle_vectors.py).
ROOT8 = bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
CP = Checkpoint(NAME, 8, ROOT8)

OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
EM = "\u2014"
ED25519 = b"\x01"  # the signature type byte of Ed25519 keys in C2SP signed-note


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def signed() -> str:
    return sign_checkpoint(CP, NAME, KEY)


def vkey() -> str:
    return verifier_key(NAME, PUBLIC)


# ---------------------------------------------------------------------------------------------
# Layout, byte for byte


def test_the_rfc_8032_secret_key_gives_its_published_public_key() -> None:
    assert KEY.public_key().public_bytes_raw() == PUBLIC


def test_the_verifier_key_is_name_plus_key_id_plus_typed_public_key() -> None:
    key_id = hashlib.sha256(NAME.encode() + b"\n" + b"\x01" + PUBLIC).digest()[:4]
    assert key_hash(NAME, PUBLIC) == key_id
    assert vkey() == f"{NAME}+{key_id.hex()}+{b64(ED25519 + PUBLIC)}"
    # Pinned: clients configure this string; it must never drift.
    assert vkey() == "example.com/qledger+fcca0622+AddamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea"


def test_the_signed_note_is_three_lines_an_empty_line_and_one_em_dash_signature_line() -> None:
    text = f"{NAME}\n8\n{b64(ROOT8)}\n"
    assert (
        note_text(CP)
        == text
        == "example.com/qledger\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n"
    )
    # Ed25519 is deterministic (RFC 8032), so the whole note is fixed by key and text.
    signature = KEY.sign(text.encode())
    key_id = hashlib.sha256(NAME.encode() + b"\n\x01" + PUBLIC).digest()[:4]
    expected = text + "\n" + "\u2014 " + NAME + " " + b64(key_id + signature) + "\n"
    assert signed() == expected
    assert signed() == (
        "example.com/qledger\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n"
        "\u2014 example.com/qledger /MoGIuUny6fG++SG7bYYmIv5qiVd6J08+Exe/v30rOuCJoTFyPmDqR1ObjbXs"
        "UgoRd+o16CBBy6KdEwU14h1Xdsrrgc=\n"
    )


def test_sign_then_verify_gives_back_the_checkpoint() -> None:
    assert verify_checkpoint(signed(), vkey()) == CP
    assert verify_checkpoint(signed(), parse_verifier_key(vkey()), origin=NAME) == CP
    assert parse_checkpoint(signed()) == CP
    assert parse_checkpoint(note_text(CP)) == CP


def test_the_empty_tree_and_a_huge_tree_round_trip() -> None:
    for cp in [Checkpoint(NAME, 0, hashlib.sha256().digest()), Checkpoint(NAME, 2**64 - 1, ROOT8)]:
        assert verify_checkpoint(sign_checkpoint(cp, NAME, KEY), vkey()) == cp


# ---------------------------------------------------------------------------------------------
# Other implementations' vectors

# golang.org/x/mod/sumdb/note (note_test.go and its package documentation): a note signed by
# "PeterNeumann" and by "EnochRoot", with their verifier keys and the signer key of the former
# (PRIVATE+KEY+PeterNeumann+c74f20a3+ then base64 of 0x01 || the Ed25519 seed).
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_PETER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_PETER_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
GO_PETER_SIG = (
    f"{EM} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotp"
    "RZb6KE6RyyBwJnAM=\n"
)
GO_ENOCH_KEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_ENOCH_SIG = (
    f"{EM} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox"
    "33WWd1RvMc+QQ=\n"
)


def test_we_sign_exactly_as_the_go_note_package_does() -> None:
    peter = Ed25519PrivateKey.from_private_bytes(GO_PETER_SEED)
    assert verifier_key("PeterNeumann", peter.public_key().public_bytes_raw()) == GO_PETER_KEY
    assert sign_note(GO_TEXT, "PeterNeumann", peter) == GO_TEXT + "\n" + GO_PETER_SIG


def test_a_go_note_with_two_signers_verifies_with_either_key() -> None:
    note = GO_TEXT + "\n" + GO_PETER_SIG + GO_ENOCH_SIG
    assert verify_note(note, GO_PETER_KEY) == GO_TEXT
    assert verify_note(note, GO_ENOCH_KEY) == GO_TEXT


# Two checkpoints of the Go checksum database as served by sum.golang.org, and its public
# verifier key (the default GOSUMDB key built into the go command).
SUMDB_KEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_31700353 = (
    "go.sum database tree\n31700353\nqINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=\n\n"
    f"{EM} sum.golang.org Az3grnmrIUEDFqHzAElIQCPNoRFRAAdFo47fooyWKMHb89k11GJh5zHIfNCOBmwn/C3Y"
    "I8oW9/C8DJ87F61QqspBYwM=\n"
)
SUMDB_65209736 = (
    "go.sum database tree\n65209736\n5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=\n\n"
    f"{EM} sum.golang.org Az3grnbssgK7ubgFX36gVETtNv0U23qxyAhAMai2QUfeGa3nB/akvkMdlUErfcZz7l/R"
    "3cVtYspg3dxXABkGZZKdsQ8=\n"
)
SUMDB_CHECKPOINTS = [
    (SUMDB_31700353, 31700353, "qINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs="),
    (SUMDB_65209736, 65209736, "5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo="),
]


@pytest.mark.parametrize(("note", "size", "root"), SUMDB_CHECKPOINTS)
def test_real_checkpoints_of_the_go_checksum_database_verify(
    note: str, size: int, root: str
) -> None:
    assert verify_checkpoint(note, SUMDB_KEY, origin="go.sum database tree") == Checkpoint(
        "go.sum database tree", size, base64.b64decode(root)
    )
    with pytest.raises(SignatureError):
        verify_checkpoint(note.replace(f"\n{size}\n", f"\n{size + 1}\n"), SUMDB_KEY)


# ---------------------------------------------------------------------------------------------
# Mutations: every one of these must be refused, for the reason named.

OTHER_SIGNED = sign_checkpoint(CP, NAME, OTHER_KEY)
OTHER_LINE = OTHER_SIGNED.split("\n\n")[1]


def forge_with_our_key_id(note: str) -> str:
    """Our name and key ID in front of a signature made by another key."""
    other_sig = base64.b64decode(OTHER_LINE.split(" ")[2])[4:]
    return note_text(CP) + f"\n{EM} {NAME} {b64(key_hash(NAME, PUBLIC) + other_sig)}\n"


def flip_signature_byte(note: str) -> str:
    line = note.split("\n\n")[1]
    raw = bytearray(base64.b64decode(line.split(" ")[2]))
    raw[10] ^= 0x01
    return note.replace(line, f"{EM} {NAME} {b64(bytes(raw))}\n")


SIGNATURE_MUTATIONS: dict[str, Callable[[str], str]] = {
    "changed origin": lambda n: n.replace(f"{NAME}\n8\n", "example.com/other\n8\n", 1),
    "changed size": lambda n: n.replace("\n8\n", "\n9\n", 1),
    "changed root": lambda n: n.replace(b64(ROOT8), b64(bytes(32)), 1),
    "flipped signature byte": flip_signature_byte,
    "changed key name": lambda n: n.replace(f"{EM} {NAME} ", f"{EM} example.com/other ", 1),
    "signed by another key": lambda n: OTHER_SIGNED,
    "another key's signature under our key ID": forge_with_our_key_id,
    "extension line added after signing": lambda n: n.replace("\n\n", "\nextra\n\n", 1),
}


@pytest.mark.parametrize("mutation", SIGNATURE_MUTATIONS)
def test_a_note_whose_signature_no_longer_matches_is_refused(mutation: str) -> None:
    with pytest.raises(SignatureError):
        verify_checkpoint(SIGNATURE_MUTATIONS[mutation](signed()), vkey())


FORMAT_MUTATIONS: dict[str, Callable[[str], str]] = {
    "missing trailing newline": lambda n: n[:-1],
    "signature line with a hyphen instead of an em dash": lambda n: n.replace(f"{EM} ", "- ", 1),
    "signature line with an en dash": lambda n: n.replace(f"{EM} ", "\u2013 ", 1),
    "signature line without the space after the dash": lambda n: n.replace(f"{EM} ", EM, 1),
    "no empty line before the signatures": lambda n: n.replace("\n\n", "\n", 1),
    "no signature lines at all": lambda n: note_text(CP) + "\n",
    "an unknown line after the signatures": lambda n: n + "Unexpected line.\n",
    "an empty line after the signatures": lambda n: n + "\n",
    "a control character in the text": lambda n: "\x01" + n,
    "a tab in the text": lambda n: n.replace("\n8\n", "\n\t8\n", 1),
    "carriage-return line endings": lambda n: n.replace("\n", "\r\n"),
    "a lone surrogate in the text": lambda n: "\ud800" + n,
    "a key name with a plus": lambda n: n.replace(f"{EM} {NAME} ", f"{EM} a+b ", 1),
    "a signature that is not base64": lambda n: n[:-3] + "!!\n",
    "a signature too short to hold a key ID": lambda n: note_text(CP) + f"\n{EM} {NAME} AAAA\n",
    "101 signature lines": lambda n: n + OTHER_LINE * 100,
}


@pytest.mark.parametrize("mutation", FORMAT_MUTATIONS)
def test_a_note_not_shaped_as_c2sp_requires_is_refused(mutation: str) -> None:
    with pytest.raises(MalformedNoteError):
        verify_checkpoint(FORMAT_MUTATIONS[mutation](signed()), vkey())


def test_signatures_by_unknown_keys_are_ignored_when_ours_verifies() -> None:
    ours = signed()
    block = ours.split("\n\n")[1]
    witness = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    witness_line = sign_checkpoint(CP, "witness.example", witness).split("\n\n")[1]
    garbage_line = f"{EM} unknown.example {b64(bytes(68))}\n"
    for lines in [
        witness_line + block,
        block + witness_line,
        garbage_line + block + OTHER_LINE,  # OTHER_LINE: our name, another key ID
        GO_PETER_SIG + block + GO_ENOCH_SIG,
        block * 2,  # a repeated valid signature is still a valid signature
        (witness_line * 15) + block,  # 16 signatures: C2SP says they MUST be accepted
    ]:
        assert verify_checkpoint(note_text(CP) + "\n" + lines, vkey()) == CP


def test_only_unknown_signatures_is_refused() -> None:
    with pytest.raises(SignatureError, match="no signature"):
        verify_checkpoint(note_text(CP) + "\n" + GO_PETER_SIG + OTHER_LINE, vkey())


def test_a_bad_signature_by_our_key_spoils_the_note_even_next_to_a_good_one() -> None:
    bad = flip_signature_byte(signed()).split("\n\n")[1]
    with pytest.raises(SignatureError, match="does not verify"):
        verify_checkpoint(signed() + bad, vkey())


def test_a_checkpoint_for_another_log_is_refused_when_the_origin_is_pinned() -> None:
    other_log = Checkpoint("example.com/other", 8, ROOT8)
    with pytest.raises(OriginMismatchError) as caught:
        verify_checkpoint(sign_checkpoint(other_log, NAME, KEY), vkey(), origin=NAME)
    assert (caught.value.expected, caught.value.found) == (NAME, "example.com/other")


# ---------------------------------------------------------------------------------------------
# The checkpoint body: signed correctly but not a checkpoint


def signed_text(text: str) -> str:
    return sign_note(text, NAME, KEY)


ROOT_LINE = b64(ROOT8)


@pytest.mark.parametrize(
    ("why", "text"),
    [
        ("size with a leading zero", f"{NAME}\n08\n{ROOT_LINE}\n"),
        ("size with a plus sign", f"{NAME}\n+8\n{ROOT_LINE}\n"),
        ("negative size", f"{NAME}\n-1\n{ROOT_LINE}\n"),
        ("size with a space", f"{NAME}\n 8\n{ROOT_LINE}\n"),
        ("size with an underscore", f"{NAME}\n1_000\n{ROOT_LINE}\n"),
        ("size in Arabic-Indic digits", f"{NAME}\n\u0668\n{ROOT_LINE}\n"),
        ("size beyond uint64", f"{NAME}\n{2**64}\n{ROOT_LINE}\n"),
        ("root of 31 bytes", f"{NAME}\n8\n{b64(ROOT8[:31])}\n"),
        ("root without padding", f"{NAME}\n8\n{ROOT_LINE.rstrip('=')}\n"),
        (
            "root in URL-safe base64",
            f"{NAME}\n8\n{base64.urlsafe_b64encode(bytes([0xFB] * 32)).decode()}\n",
        ),
        ("root in non-canonical base64", f"{NAME}\n8\n{ROOT_LINE[:-2]}h=\n"),
        ("two lines only", f"{NAME}\n8\n"),
        ("empty extension line", f"{NAME}\n8\n{ROOT_LINE}\n\nmore\n"),
    ],
)
def test_a_signed_text_that_is_not_a_checkpoint_is_refused(why: str, text: str) -> None:
    with pytest.raises(MalformedNoteError):
        verify_checkpoint(signed_text(text), vkey())


def test_an_empty_origin_is_refused() -> None:
    with pytest.raises(MalformedNoteError):
        parse_checkpoint(f"\n8\n{ROOT_LINE}\n")


def test_extension_lines_are_accepted_but_not_kept() -> None:
    note = signed_text(f"{NAME}\n8\n{ROOT_LINE}\nextension one\nextension two\n")
    assert verify_checkpoint(note, vkey()) == CP


def test_a_checkpoint_cannot_hold_what_its_text_could_not_carry() -> None:
    for origin, size, root in [
        ("", 1, ROOT8),
        ("two\nlines", 1, ROOT8),
        (NAME, -1, ROOT8),
        (NAME, 2**64, ROOT8),
        (NAME, 1, ROOT8[:31]),
    ]:
        with pytest.raises(ValueError):
            Checkpoint(origin, size, root)


# ---------------------------------------------------------------------------------------------
# Verifier keys

GOOD_KEY = "example.com/qledger+fcca0622+AddamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea"


@pytest.mark.parametrize(
    ("why", "key"),
    [
        ("wrong key ID", GOOD_KEY.replace("+fcca0622+", "+fcca0623+")),
        ("upper-case key ID", GOOD_KEY.replace("+fcca0622+", "+FCCA0622+")),
        ("short key ID", GOOD_KEY.replace("+fcca0622+", "+cca0622+")),
        ("another name for the same key", GOOD_KEY.replace(NAME, "example.com/other")),
        ("another public key", verifier_key(NAME, PUBLIC)[:-4] + "AAAA"),
        ("not Ed25519", f"{NAME}+{key_hash(NAME, PUBLIC).hex()}+{b64(bytes([2]) + PUBLIC)}"),
        ("truncated key", GOOD_KEY[:-4]),
        ("missing parts", NAME),
        ("empty name", GOOD_KEY[len(NAME) :]),
        ("name with a space", "a b" + GOOD_KEY[len(NAME) :]),
    ],
)
def test_a_bad_verifier_key_is_refused(why: str, key: str) -> None:
    with pytest.raises(VerifierKeyError):
        parse_verifier_key(key)
    with pytest.raises(VerificationError):
        verify_checkpoint(signed(), key)


def test_a_note_split_shows_every_signature_without_trusting_any() -> None:
    text, signatures = split_signed_note(GO_TEXT + "\n" + GO_PETER_SIG + GO_ENOCH_SIG)
    assert text == GO_TEXT
    assert [(s.key_name, s.key_id.hex(), len(s.signature)) for s in signatures] == [
        ("PeterNeumann", "c74f20a3", 64),
        ("EnochRoot", "af0cfe78", 64),
    ]


def test_signing_refuses_what_could_not_be_verified() -> None:
    with pytest.raises(ValueError):
        sign_checkpoint(CP, "bad name", KEY)
    with pytest.raises(ValueError):
        sign_checkpoint(CP, "a+b", KEY)
    with pytest.raises(ValueError):
        sign_note("no final newline", NAME, KEY)
    with pytest.raises(ValueError):  # a control character: no verifier would accept the note
        sign_note("bell\x07\n", NAME, KEY)
