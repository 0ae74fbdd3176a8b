"""Standalone verifier: RFC 9162 §2.1.3.2/§2.1.4.2 proofs, C2SP signed-note and tlog-checkpoint.

Everything a client needs to check what the log hands out, and nothing that signs or stores.
It depends only on the standard library, `cryptography` (Ed25519), the error tree and the
two RFC 9162 hash functions. Every check raises a VerificationError subclass naming the values
involved; a function that returns has verified.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.bindings import crypto_core_ed25519_is_valid_point

from ledger.errors import VerificationError
from ledger.log.hasher import EMPTY_ROOT, HASH_SIZE, node_hash

# --------------------------------------------------------------------------------------------
# Errors


class ProofShapeError(VerificationError):
    """The proof cannot be for the claimed positions: bad index or sizes, length or hash width."""


class RootMismatchError(VerificationError):
    """A hash computed from a proof differs from the one it must equal."""

    def __init__(self, expected: bytes, calculated: bytes, *, what: str = "root") -> None:
        super().__init__(
            f"{what} mismatch: expected {expected.hex()}, calculated {calculated.hex()}"
        )
        self.expected = expected
        self.calculated = calculated
        self.what = what


class MalformedNoteError(VerificationError):
    """The text is not a well-formed C2SP signed note or tlog-checkpoint."""


class VerifierKeyError(VerificationError):
    """The verifier key string is malformed, of another algorithm, or its key ID does not match."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"verifier key {key!r}: {reason}")
        self.key = key


class SignatureError(VerificationError):
    """The note has no valid signature by the verifier key (or carries a bad one by it)."""

    def __init__(self, key_name: str, key_id: bytes, reason: str) -> None:
        super().__init__(f"key {key_name}+{key_id.hex()}: {reason}")
        self.key_name = key_name
        self.key_id = key_id


class OriginMismatchError(VerificationError):
    """The checkpoint is for another log than the one expected."""

    def __init__(self, expected: str, found: str) -> None:
        super().__init__(f"checkpoint origin {found!r} is not the expected {expected!r}")
        self.expected = expected
        self.found = found


# --------------------------------------------------------------------------------------------
# RFC 9162 §2.1.3.2: inclusion


def _require_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofShapeError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def _inclusion_path_length(index: int, size: int) -> int:
    """len(PATH(index, D[size])) for 0 <= index < size."""
    # Below the level where the path to `index` parts from the path to the last leaf, every
    # level has a sibling. Above it the path runs along the right edge, where a level has a
    # sibling only when `index` is in the right half there: one per remaining 1 bit.
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that `proof` (PATH, deepest sibling first) yields for leaf hash `leaf` at `index`.

    `leaf` is the 32-byte leaf hash, SHA-256(0x00 || entry), not the entry itself.
    Preconditions, raising ProofShapeError: 0 <= index < size; `leaf` and every proof element
    are 32 bytes; len(proof) is the length of PATH(index, D[size]).
    """
    if not 0 <= index < size:
        raise ProofShapeError(f"leaf index {index} is not in a tree of size {size}")
    _require_hash(leaf, "leaf hash")
    for position, element in enumerate(proof):
        _require_hash(element, f"proof[{position}]")
    expected_length = _inclusion_path_length(index, size)
    if len(proof) != expected_length:
        raise ProofShapeError(
            f"inclusion proof for leaf {index} of {size} has {len(proof)} hashes, "
            f"expected {expected_length}"
        )
    # The algorithm of §2.1.3.2, step by step. fn walks up from the leaf, sn from the last leaf;
    # where they coincide the sibling is to the left and the levels it spans are skipped.
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:  # step 4a; unreachable once the length matched, kept to mirror the RFC
            raise ProofShapeError("inclusion proof is longer than the path")
        fn, sn, r = inclusion_step(fn, sn, r, p)
    if sn != 0:  # step 5; likewise unreachable after the length check
        raise ProofShapeError("inclusion proof is shorter than the path")
    return r


def inclusion_step(fn: int, sn: int, r: bytes, p: bytes) -> tuple[int, int, bytes]:
    """Step 4 of RFC 9162 §2.1.3.2 for one proof hash `p` (the caller checks 4a, sn > 0):
    hash `p` in on the side the path takes at this level, then go up one level; where
    `fn` is a right-edge left child, skip the levels its sibling spans."""
    if fn & 1 or fn == sn:
        r = node_hash(p, r)
        if not fn & 1:
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
    else:
        r = node_hash(r, p)
    return fn >> 1, sn >> 1, r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that leaf hash `leaf` is entry `index` of the `size`-leaf tree whose root is `root`.

    Raises ProofShapeError (see root_from_inclusion_proof; also a root that is not 32 bytes)
    or RootMismatchError(expected=root, calculated=...).
    """
    _require_hash(root, "root")
    calculated = root_from_inclusion_proof(index, size, leaf, proof)
    if calculated != root:
        raise RootMismatchError(root, calculated)


# --------------------------------------------------------------------------------------------
# RFC 9162 §2.1.4.2: consistency


def _consistency_proof_length(first: int, second: int) -> int:
    """len(PROOF(first, D[second])) for 0 < first < second."""
    # The proof is the inclusion path of the old tree's last leaf with the levels inside the
    # largest perfect subtree ending at `first` replaced by that subtree's hash; the hash is
    # left out when that subtree is the whole old tree (the verifier already has first_root).
    shift = (first & -first).bit_length() - 1
    length = _inclusion_path_length(first - 1, second) - shift
    return length if first == 1 << shift else length + 1


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of `first` leaves with `first_root` is a prefix of the tree of `second`.

    Preconditions, raising ProofShapeError: 0 <= first <= second; roots and proof elements are
    32 bytes; the proof has the length of PROOF(first, D[second]), which is 0 when first == 0 or
    first == second. Then: first == second needs equal roots; first == 0 needs first_root to be
    the empty-tree hash (stricter than implementations that ignore it: a size-0 checkpoint with
    any other root is bogus). A mismatch raises RootMismatchError.
    """
    _require_hash(first_root, "first root")
    _require_hash(second_root, "second root")
    if not 0 <= first <= second:
        raise ProofShapeError(f"need 0 <= first <= second, got first {first}, second {second}")
    for position, element in enumerate(proof):
        _require_hash(element, f"proof[{position}]")

    if first == 0 or first == second:
        # Nothing to prove: the empty tree is a prefix of every tree, a tree of itself.
        if proof:
            raise ProofShapeError(
                f"consistency proof from {first} to {second} must be empty, has {len(proof)} hashes"
            )
        if first == 0 and first_root != EMPTY_ROOT:
            raise RootMismatchError(EMPTY_ROOT, first_root, what="empty tree root")
        if first == second and first_root != second_root:
            raise RootMismatchError(first_root, second_root, what="second root")
        return

    expected_length = _consistency_proof_length(first, second)
    if len(proof) != expected_length:
        raise ProofShapeError(
            f"consistency proof from {first} to {second} has {len(proof)} hashes, "
            f"expected {expected_length}"
        )
    # The algorithm of §2.1.4.2, step by step: fr rebuilds the old root, sr the new one.
    path = list(proof)
    if first & (first - 1) == 0:  # step 2: a power of two, the old root is the first node
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:  # step 6a; unreachable once the length matched, kept to mirror the RFC
            raise ProofShapeError("consistency proof is longer than needed")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # step 7; likewise unreachable after the length check
        raise ProofShapeError("consistency proof is shorter than needed")
    if fr != first_root:
        raise RootMismatchError(first_root, fr, what="first root")
    if sr != second_root:
        raise RootMismatchError(second_root, sr, what="second root")


# --------------------------------------------------------------------------------------------
# C2SP signed-note and tlog-checkpoint

ED25519_TYPE = 0x01
"""Signature type byte of Ed25519 in c2sp.org/signed-note, part of key IDs and verifier keys."""

MAX_SIGNATURES = 100
"""Signature lines accepted per note (C2SP: a limit SHOULD exist and MUST be at least 16)."""

MAX_NOTE_LENGTH = 1 << 20
"""Characters accepted per note, so a hostile note cannot make us scan without bound."""

MAX_TREE_SIZE = (1 << 64) - 1
"""Largest tree size accepted, the uint64 range of other implementations."""

_SIGNATURE_PREFIX = "\u2014 "  # EM DASH, SPACE
# Signed notes MUST NOT contain ASCII controls other than newline; lone surrogates are refused
# too because a str holding one is not valid UTF-8 and could not be the text that was signed.
_FORBIDDEN = re.compile("[\x00-\x09\x0b-\x1f\ud800-\udfff]")
_DECIMAL = re.compile("0|[1-9][0-9]{0,19}")  # ASCII only: str.isdigit would admit other scripts
_KEY_ID_HEX = re.compile("[0-9a-f]{8}")


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint body: the log's origin line, a tree size and the RFC 9162 root at it.

    Preconditions: origin is a non-empty line without control characters; 0 <= size <=
    MAX_TREE_SIZE; root_hash is 32 bytes (TypeError for a wrong type, ValueError for a wrong
    value). Extension lines are not kept: we never make them.
    """

    origin: str
    size: int
    root_hash: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str):
            raise TypeError(f"origin must be a str, got {self.origin!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise TypeError(f"size must be an int, got {self.size!r}")
        if not isinstance(self.root_hash, bytes):
            raise TypeError(f"root_hash must be bytes, got {self.root_hash!r}")
        # Notes may hold newlines, but the origin is exactly the first line of the text.
        if not self.origin or "\n" in self.origin or _FORBIDDEN.search(self.origin):
            raise ValueError(f"origin must be a non-empty line, got {self.origin!r}")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise ValueError(f"size must be in [0, 2^64), got {self.size}")
        if len(self.root_hash) != HASH_SIZE:
            raise ValueError(f"root_hash must be {HASH_SIZE} bytes, got {len(self.root_hash)}")


@dataclass(frozen=True)
class VerifierKey:
    """A parsed `<name>+<key ID hex>+<base64(0x01 || public key)>` Ed25519 verifier key."""

    name: str
    key_id: bytes
    public_key: bytes


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a signed note, decoded but not verified."""

    key_name: str
    key_id: bytes
    signature: bytes


def _b64decode_canonical(text: str) -> bytes | None:
    """Standard padded base64, or None; only the canonical form, so every value has one spelling."""
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded if base64.b64encode(decoded).decode("ascii") == text else None


def is_valid_key_name(name: str) -> bool:
    """C2SP signed-note key names: non-empty, without Unicode spaces or '+' (nor controls)."""
    return (
        bool(name)
        and not any(ch.isspace() or ch == "+" for ch in name)
        and not (_FORBIDDEN.search(name))
    )


def key_hash(key_name: str, public_key: bytes) -> bytes:
    """C2SP signed-note Ed25519 key ID: SHA-256(key name || 0x0A || 0x01 || public key)[:4].

    Preconditions (ValueError): is_valid_key_name(key_name); public_key is 32 bytes.
    """
    if not is_valid_key_name(key_name):
        raise ValueError(f"invalid key name {key_name!r}")
    if len(public_key) != 32:
        raise ValueError(f"Ed25519 public key must be 32 bytes, got {len(public_key)}")
    material = key_name.encode("utf-8") + b"\n" + bytes([ED25519_TYPE]) + public_key
    return hashlib.sha256(material).digest()[:4]


def parse_verifier_key(key: str) -> VerifierKey:
    """Parse `<name>+<8 lowercase hex key ID>+<base64(0x01 || 32-byte Ed25519 public key)>`.

    Raises VerifierKeyError when malformed, not Ed25519, or when the key ID is not the one the
    name and public key hash to (a typo or a swapped key must not pass silently).
    """
    # The name and the hex ID hold no '+', the base64 may: split at the first two only.
    name, plus1, rest = key.partition("+")
    key_id_hex, plus2, key_b64 = rest.partition("+")
    if not plus1 or not plus2:
        raise VerifierKeyError(key, "expected <name>+<key ID>+<base64 key>")
    if not is_valid_key_name(name):
        raise VerifierKeyError(key, f"invalid key name {name!r}")
    if not _KEY_ID_HEX.fullmatch(key_id_hex):
        raise VerifierKeyError(key, f"key ID {key_id_hex!r} is not 8 lowercase hex digits")
    material = _b64decode_canonical(key_b64)
    if material is None:
        raise VerifierKeyError(key, "key is not canonical standard base64")
    if len(material) != 33 or material[0] != ED25519_TYPE:
        raise VerifierKeyError(key, "key is not 0x01 (Ed25519) followed by a 32-byte public key")
    public_key = material[1:]
    key_id = bytes.fromhex(key_id_hex)
    computed = key_hash(name, public_key)
    if computed != key_id:
        raise VerifierKeyError(key, f"key ID is {key_id.hex()}, the key hashes to {computed.hex()}")
    try:
        Ed25519PublicKey.from_public_bytes(public_key)  # refuse now what verify_note could not use
    except ValueError as error:
        raise VerifierKeyError(key, f"not an Ed25519 public key: {error}") from None
    # A small-order key verifies forged signatures (under the identity, R = identity and
    # S = 0 sign every note): a verifier pinned to one would accept any checkpoint.
    if not crypto_core_ed25519_is_valid_point(public_key):
        raise VerifierKeyError(key, "not a canonical point of the Ed25519 prime-order subgroup")
    return VerifierKey(name, key_id, public_key)


def split_signed_note(note: str) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its text (with final newline) and decoded signature lines.

    Nothing is verified; the text MUST be ignored until verify_note accepts it. Raises
    MalformedNoteError for anything C2SP signed-note does not allow.
    """
    if len(note) > MAX_NOTE_LENGTH:
        raise MalformedNoteError(f"note is {len(note)} characters, limit {MAX_NOTE_LENGTH}")
    forbidden = _FORBIDDEN.search(note)
    if forbidden:
        raise MalformedNoteError(
            f"note contains forbidden character {forbidden.group()!r} at {forbidden.start()}"
        )
    if not note.endswith("\n"):
        raise MalformedNoteError("note does not end with a newline")
    # The text ends at the last empty line; the text itself may contain empty lines.
    cut = note.rfind("\n\n")
    if cut < 0:
        raise MalformedNoteError("note has no empty line before its signatures")
    text, block = note[: cut + 1], note[cut + 2 :]
    lines = block.split("\n")[:-1]  # `block` ends with the note's final newline
    if not lines:
        raise MalformedNoteError("note has no signature lines")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError(f"note has {len(lines)} signature lines, limit {MAX_SIGNATURES}")
    signatures: list[NoteSignature] = []
    for number, line in enumerate(lines, 1):
        if not line.startswith(_SIGNATURE_PREFIX):
            raise MalformedNoteError(
                f"signature line {number} does not start with an em dash and a space: {line!r}"
            )
        name, space, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
        if not space or not is_valid_key_name(name):
            raise MalformedNoteError(f"signature line {number} has no valid key name: {line!r}")
        raw = _b64decode_canonical(encoded)
        if raw is None or len(raw) < 5:  # a 4-byte key ID and a non-empty signature
            raise MalformedNoteError(f"signature line {number} has no valid signature: {line!r}")
        signatures.append(NoteSignature(name, raw[:4], raw[4:]))
    return text, signatures


def verify_note(note: str, verifier_key: str | VerifierKey) -> str:
    """Return the text of `note` once a signature by `verifier_key` verifies over it.

    Lines by other keys (another name or another key ID) are ignored, as C2SP requires. A line
    by this key that does not verify rejects the whole note (C2SP: SHOULD), so a forged line is
    never silently skipped. Raises MalformedNoteError, VerifierKeyError or SignatureError.
    """
    key = parse_verifier_key(verifier_key) if isinstance(verifier_key, str) else verifier_key
    text, signatures = split_signed_note(note)
    message = text.encode("utf-8")
    public_key = Ed25519PublicKey.from_public_bytes(key.public_key)
    verified = False
    for signature in signatures:
        if signature.key_name != key.name or signature.key_id != key.key_id:
            continue
        try:
            public_key.verify(signature.signature, message)
        except InvalidSignature:
            raise SignatureError(key.name, key.key_id, "signature does not verify") from None
        verified = True
    if not verified:
        raise SignatureError(key.name, key.key_id, "note carries no signature by this key")
    return text


def parse_checkpoint_text(text: str) -> Checkpoint:
    """Parse a tlog-checkpoint note text: origin, size, base64 root, optional extension lines.

    Unverified: use verify_checkpoint for anything received. Raises MalformedNoteError when the
    origin is empty, the size is not decimal without leading zeros (or beyond uint64), the root
    is not canonical base64 of 32 bytes, or any line is empty or holds control characters.
    """
    forbidden = _FORBIDDEN.search(text)
    if forbidden:
        raise MalformedNoteError(f"checkpoint contains forbidden character {forbidden.group()!r}")
    if not text.endswith("\n"):
        raise MalformedNoteError("checkpoint text does not end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedNoteError(f"checkpoint has {len(lines)} lines, needs origin, size and root")
    for number, line in enumerate(lines, 1):
        if not line:
            raise MalformedNoteError(f"checkpoint line {number} is empty")
    origin, size_line, root_line = lines[:3]
    if not _DECIMAL.fullmatch(size_line) or int(size_line) > MAX_TREE_SIZE:
        raise MalformedNoteError(f"checkpoint size {size_line!r} is not a uint64 in plain decimal")
    root_hash = _b64decode_canonical(root_line)
    if root_hash is None or len(root_hash) != HASH_SIZE:
        raise MalformedNoteError(
            f"checkpoint root {root_line!r} is not base64 of {HASH_SIZE} bytes"
        )
    return Checkpoint(origin, int(size_line), root_hash)


def verify_checkpoint(
    note: str, verifier_key: str | VerifierKey, *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint note with `verifier_key` and return what it states.

    The signature is checked before the body is read (C2SP: unverified text MUST be ignored).
    With `origin`, the checkpoint must also be for that log (OriginMismatchError otherwise).
    Raises MalformedNoteError, VerifierKeyError, SignatureError or OriginMismatchError.
    """
    checkpoint = parse_checkpoint_text(verify_note(note, verifier_key))
    if origin is not None and checkpoint.origin != origin:
        raise OriginMismatchError(origin, checkpoint.origin)
    return checkpoint
