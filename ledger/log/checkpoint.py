"""Signing side of C2SP tlog-checkpoint and signed-note: note text, Ed25519 signature, key."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.log.verify import (
    ED25519_TYPE,
    Checkpoint,
    MalformedNoteError,
    is_valid_key_name,
    key_hash,
    parse_checkpoint_text,
    split_signed_note,
)

# Re-exported so the signing side and the verifier share one model, one parser and one key ID.
__all__ = [
    "Checkpoint",
    "key_hash",
    "note_text",
    "parse_checkpoint",
    "sign_checkpoint",
    "sign_note",
    "verifier_key",
]


def note_text(cp: Checkpoint) -> str:
    """The checkpoint's note text: `<origin>\\n<size>\\n<base64 root>\\n`, no extension lines."""
    root = base64.b64encode(cp.root_hash).decode("ascii")
    return f"{cp.origin}\n{cp.size}\n{root}\n"


def sign_note(text: str, key_name: str, private_key: Ed25519PrivateKey) -> str:
    """A signed note: `text`, an empty line, and one `— <key name> <base64(key ID || sig)>` line.

    Preconditions (ValueError): is_valid_key_name(key_name); `text` ends with a newline and is
    text a verifier accepts (no control characters but newline, within the size limit).
    """
    if not is_valid_key_name(key_name):
        raise ValueError(f"invalid key name {key_name!r}")
    if not text.endswith("\n"):
        raise ValueError("note text must end with a newline")
    # Never sign what verify_note would refuse: parse the note this text would become first,
    # with a placeholder (4-byte key ID, 64-byte signature) where the signature line goes.
    try:
        split_signed_note(_signed(text, key_name, bytes(68)))
    except MalformedNoteError as error:
        raise ValueError(f"text {text!r} cannot be signed: {error}") from None
    public_key = private_key.public_key().public_bytes_raw()
    signature = private_key.sign(text.encode("utf-8"))
    return _signed(text, key_name, key_hash(key_name, public_key) + signature)


def _signed(text: str, key_name: str, key_id_and_signature: bytes) -> str:
    encoded = base64.b64encode(key_id_and_signature).decode("ascii")
    return f"{text}\n\u2014 {key_name} {encoded}\n"


def sign_checkpoint(cp: Checkpoint, key_name: str, private_key: Ed25519PrivateKey) -> str:
    """The full signed checkpoint note for `cp`, signed by `private_key` under `key_name`.

    Precondition: is_valid_key_name(key_name) (ValueError otherwise).
    """
    return sign_note(note_text(cp), key_name, private_key)


def verifier_key(key_name: str, public_key: bytes) -> str:
    """`<key name>+<8 lowercase hex key ID>+<base64(0x01 || public key)>` for clients to pin.

    Preconditions (ValueError): is_valid_key_name(key_name); public_key is the raw 32 bytes.
    """
    key_id = key_hash(key_name, public_key)
    encoded = base64.b64encode(bytes([ED25519_TYPE]) + public_key).decode("ascii")
    return f"{key_name}+{key_id.hex()}+{encoded}"


def parse_checkpoint(note_text_or_signed_note: str) -> Checkpoint:
    """Read a checkpoint from its note text or from a whole signed note, WITHOUT verifying it.

    For display and for our own stored checkpoints only; anything received goes through
    verify.verify_checkpoint. A checkpoint text has no empty line, so one marks a signed note.
    Raises MalformedNoteError (a VerificationError) for malformed input.
    """
    text = note_text_or_signed_note
    if "\n\n" in text:
        text, _ = split_signed_note(text)
    return parse_checkpoint_text(text)
