"""Ed25519 keys: generation, files, key ids, encoding and verification.

Standards followed:

* RFC 8032 §5.1 — Ed25519 (PureEdDSA over edwards25519): 32-byte public keys,
  64-byte signatures.
* RFC 5958 / RFC 8410 — private keys on disk as unencrypted PKCS#8 in PEM
  (RFC 7468) armour.
* FIPS 180-4 — SHA-256, for key ids: lowercase hex of SHA-256 over the 32 raw
  public key bytes (PROTOCOL.md §2).
* RFC 4648 §4 — public keys in statements are padded standard base64.
* EVENTS.md `key.registered` — a registered key must be the canonical encoding of a
  point of the prime-order subgroup (RFC 8032 §5.1.3 decoding, then [L]A = identity).
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from nacl.bindings import crypto_core_ed25519_is_valid_point

from ledger.b64 import b64decode, b64encode
from ledger.errors import LedgerError, Rejected, Rejection

__all__ = [
    "PUBLIC_KEY_BYTES",
    "SIGNATURE_BYTES",
    "check_prime_order",
    "decode_public_key",
    "encode_public_key",
    "generate_private_key",
    "key_id",
    "load_private_key",
    "public_bytes",
    "verify",
    "write_private_key",
]

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


def key_id(public_key: bytes) -> str:
    """Lowercase hex SHA-256 of the raw 32-byte public key."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(public_key)}")
    return hashlib.sha256(public_key).hexdigest()


def public_bytes(private_key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key of `private_key`."""
    return private_key.public_key().public_bytes_raw()


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write `key` as unencrypted PKCS#8 PEM to a new file readable by its owner only.

    The file is created with O_EXCL and mode 0600 in one system call, so the
    key is never readable by others, even briefly, and an existing file (or a
    symlink planted in its place) is never overwritten.
    """
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise LedgerError(f"refusing to overwrite existing file {path}") from None
    except OSError as exc:
        raise LedgerError(f"cannot create key file {path}: {exc.strerror}") from None
    try:
        # The umask can only narrow the mode; set it exactly in case it was odd.
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        # A half-written key file would later fail to load with a confusing
        # message; remove it (we created it, so it is ours to remove).
        try:
            os.unlink(path)
        except OSError:
            pass
        raise LedgerError(f"cannot write key file {path}: {exc.strerror}") from None


_KEY_KINDS: tuple[tuple[type, str], ...] = (
    (rsa.RSAPrivateKey, "an RSA"),
    (ec.EllipticCurvePrivateKey, "an elliptic-curve (ECDSA)"),
    (dsa.DSAPrivateKey, "a DSA"),
    (ed448.Ed448PrivateKey, "an Ed448"),
    (x25519.X25519PrivateKey, "an X25519"),
    (x448.X448PrivateKey, "an X448"),
)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read an unencrypted PEM Ed25519 private key, with a clear error for each way it can fail."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise LedgerError(f"private key file {path} does not exist") from None
    except OSError as exc:
        raise LedgerError(f"cannot read private key file {path}: {exc.strerror}") from None
    if b"-----BEGIN " not in data:
        raise LedgerError(f"{path} is not a PEM file (expected a '-----BEGIN PRIVATE KEY-----' block)")
    if b"-----BEGIN PUBLIC KEY-----" in data and b"PRIVATE KEY-----" not in data:
        raise LedgerError(f"{path} holds a public key; a private key is needed to sign")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # cryptography raises TypeError when the key needs a password.
        raise LedgerError(f"{path} holds an encrypted private key; qledger keys are unencrypted PKCS#8") from None
    except (ValueError, UnsupportedAlgorithm):
        raise LedgerError(f"{path} does not hold a readable PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        kind = next((name for cls, name in _KEY_KINDS if isinstance(key, cls)), "a non-Ed25519")
        raise LedgerError(f"{path} holds {kind} key; qledger keys are Ed25519")
    return key


def decode_public_key(b64: str) -> bytes:
    """Raw bytes of a public key given as padded standard base64 of exactly 32 bytes.

    Raises Rejected(BAD_FIELDS) otherwise.
    """
    if not isinstance(b64, str):
        raise Rejected(Rejection.BAD_FIELDS, f"public key must be a base64 string, not {type(b64).__name__}")
    try:
        raw = b64decode(b64, "public key")
    except Rejected as exc:
        raise Rejected(Rejection.BAD_FIELDS, exc.detail) from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise Rejected(
            Rejection.BAD_FIELDS,
            f"public key must be 32 bytes (Ed25519, RFC 8032), got {len(raw)}",
        )
    return raw


def check_prime_order(raw: bytes, what: str = "public key") -> None:
    """Refuse a public key that is not the canonical encoding of a point of the
    prime-order subgroup of edwards25519 (Rejected(WEAK_KEY)).

    Why: RFC 8032 verification (as OpenSSL does it) accepts small-order keys. Under the
    identity point, the signature R = identity, S = 0 verifies for every message, so a
    registered identity key lets anyone who reads the log sign as its organization;
    the other small-order and mixed-order points weaken it likewise. libsodium's
    check (canonical y < 2^255 - 19, on the curve, not of small order, [L]A = identity)
    is the well-kept implementation of exactly this test.
    """
    if len(raw) != PUBLIC_KEY_BYTES or not crypto_core_ed25519_is_valid_point(bytes(raw)):
        raise Rejected(
            Rejection.WEAK_KEY,
            f"{what} is not the canonical encoding of a point of the Ed25519 prime-order "
            "subgroup (small-order, mixed-order, non-canonical or not on the curve)",
        )


def encode_public_key(raw: bytes) -> str:
    """Padded standard base64 of a raw 32-byte public key."""
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
    return b64encode(raw)


# Loading a public key into OpenSSL costs more than hashing a small message, and
# ingest verifies the same few organisation keys over and over: keep the loaded
# objects. Keyed by the raw bytes, so a cached object always matches its key.
@lru_cache(maxsize=1024)
def _public_key(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True if `signature` is a valid Ed25519 signature of `message` by `public_key`."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        _public_key(bytes(public_key)).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
