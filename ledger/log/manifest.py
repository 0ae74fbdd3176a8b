"""The bundle manifest (DISPUTES.md, "a bundle cannot be cut"): a C2SP signed note by the log key.

An inclusion proof shows that an entry is in the log, not that none was left out of a
bundle. So the ledger signs what it selected, with the key, key name (its origin) and key
hash it signs checkpoints with (PROTOCOL.md §4), over exactly this text:

    <origin>/bundle
    <kind> <subject>        case <case id> | batch <GTIN-14> <lot> | org <USCC>
    <tree size>
    <base64 of the root hash at that size>
    <base64 of SHA-256 over the selected indexes, ascending, each 8-byte big-endian>

The writer and the reader of that text live here together. Signing goes through the
checkpoint's signed-note writer and checking through the standalone signed-note verifier,
so the note format itself has one home. Nothing here touches storage or the web.

A manifest cannot pass for a checkpoint, nor a checkpoint for a manifest: a checkpoint's
second line is a decimal tree size, a manifest's a kind and a subject.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.log.checkpoint import note_text, sign_note
from ledger.log.verify import (
    MAX_TREE_SIZE,
    Checkpoint,
    MalformedNoteError,
    VerifierKey,
    _b64decode_canonical,
    parse_checkpoint_text,
    verify_note,
)

__all__ = [
    "KINDS",
    "Manifest",
    "index_differences",
    "indexes_hash",
    "manifest_failures",
    "sign_manifest",
    "verify_manifest",
]

ORIGIN_SUFFIX = "/bundle"

KINDS = {"case": 1, "batch": 2, "org": 1}
"""The kinds of bundle and how many space-separated fields name their subject:
a case id; a GTIN-14 and a lot; a USCC."""

_SEARCH_BUDGET = 1 << 26
"""Bytes hashed at most when looking for the one index a bundle lacks or adds (see
index_differences): a fraction of a second, spent only on a bundle that already failed."""


def indexes_hash(indexes: Iterable[int]) -> bytes:
    """SHA-256 over the set of `indexes`, ascending, each as 8 bytes big-endian.

    Precondition (ValueError): every index is in [0, 2^64).
    """
    ordered = sorted(set(indexes))
    if ordered and not (0 <= ordered[0] and ordered[-1] <= MAX_TREE_SIZE):
        raise ValueError(f"indexes must be in [0, 2^64), got {ordered[0]}..{ordered[-1]}")
    return hashlib.sha256(b"".join(i.to_bytes(8, "big") for i in ordered)).digest()


def _is_field(value: str) -> bool:
    # Fields are joined with one space: one holding white space (or any control character)
    # would make the subject line mean two things.
    return bool(value) and not any(ch.isspace() or ch < " " or ch == "\x7f" for ch in value)


@dataclass(frozen=True)
class Manifest:
    """What a bundle holds: the subject it is about, and the indexes hashed, at one tree head.

    `origin` is the log's origin (the checkpoint's first line), without "/bundle".
    Preconditions (ValueError): `kind` is one of KINDS and `subject` has its number of
    fields, each non-empty without white space or control characters; origin, size and
    root as a Checkpoint takes them; `indexes_hash` is 32 bytes.
    """

    origin: str
    kind: str
    subject: tuple[str, ...]
    size: int
    root_hash: bytes
    indexes_hash: bytes

    def __post_init__(self) -> None:
        Checkpoint(self.origin, self.size, self.root_hash)  # the same rules for the same values
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if len(self.subject) != KINDS[self.kind] or not all(
            isinstance(f, str) and _is_field(f) for f in self.subject
        ):
            raise ValueError(
                f"a {self.kind} manifest names its subject in {KINDS[self.kind]} field(s) "
                f"without white space, got {self.subject!r}"
            )
        if len(self.indexes_hash) != 32:
            raise ValueError(f"indexes_hash must be 32 bytes, got {len(self.indexes_hash)}")

    @classmethod
    def of(
        cls, checkpoint: Checkpoint, kind: str, subject: Sequence[str], indexes: Iterable[int]
    ) -> Manifest:
        """The manifest of a bundle holding `indexes` with proofs against `checkpoint`.

        Precondition (ValueError): every index is below the checkpoint's size.
        """
        selected = set(indexes)
        outside = sorted(i for i in selected if not 0 <= i < checkpoint.size)
        if outside:
            raise ValueError(f"indexes {outside[:5]} are not in the tree of {checkpoint.size}")
        return cls(checkpoint.origin, kind, tuple(subject), checkpoint.size,
                   checkpoint.root_hash, indexes_hash(selected))

    @property
    def subject_line(self) -> str:
        return " ".join((self.kind, *self.subject))

    def text(self) -> str:
        """The note text that is signed, every line ending in a newline."""
        # Size and root are written as a checkpoint writes them: the lines after its origin.
        head = note_text(Checkpoint(self.origin, self.size, self.root_hash))
        size_and_root = head[len(self.origin) + 1 :]
        indexes = base64.b64encode(self.indexes_hash).decode("ascii")
        return f"{self.origin}{ORIGIN_SUFFIX}\n{self.subject_line}\n{size_and_root}{indexes}\n"

    @classmethod
    def from_text(cls, text: str) -> Manifest:
        """Read a manifest note text; unverified (use verify_manifest for anything received).

        Raises MalformedNoteError for anything but exactly the five lines above.
        """
        if not text.endswith("\n"):
            raise MalformedNoteError("manifest text does not end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) != 5:
            raise MalformedNoteError(
                f"manifest has {len(lines)} lines, needs origin, subject, size, root and indexes")
        origin_line, subject_line, size_line, root_line, indexes_line = lines
        if not origin_line.endswith(ORIGIN_SUFFIX) or origin_line == ORIGIN_SUFFIX:
            raise MalformedNoteError(
                f"manifest origin line {origin_line!r} is not <origin>{ORIGIN_SUFFIX}")
        origin = origin_line[: -len(ORIGIN_SUFFIX)]
        # Size and root are read by the checkpoint parser: one reading of those two lines.
        head = parse_checkpoint_text(f"{origin}\n{size_line}\n{root_line}\n")
        kind, *subject = subject_line.split(" ")
        if kind not in KINDS:
            raise MalformedNoteError(
                f"manifest subject line {subject_line!r} is not of a kind of "
                f"{', '.join(KINDS)}")
        if len(subject) != KINDS[kind] or not all(_is_field(f) for f in subject):
            raise MalformedNoteError(
                f"manifest subject line {subject_line!r} does not name a {kind} in "
                f"{KINDS[kind]} field(s) separated by single spaces")
        digest = _b64decode_canonical(indexes_line)
        if digest is None or len(digest) != 32:
            raise MalformedNoteError(
                f"manifest indexes line {indexes_line!r} is not base64 of a SHA-256 hash")
        return cls(origin, kind, tuple(subject), head.size, head.root_hash, digest)


def sign_manifest(manifest: Manifest, private_key: Ed25519PrivateKey) -> str:
    """The signed note of `manifest`, under the log's key name (its origin), as checkpoints."""
    return sign_note(manifest.text(), manifest.origin, private_key)


def verify_manifest(note: str, verifier_key: str | VerifierKey) -> Manifest:
    """Verify a signed manifest note with the log's verifier key and return what it states.

    The signature is checked before the text is read. Raises MalformedNoteError,
    VerifierKeyError or SignatureError (all VerificationError).
    """
    return Manifest.from_text(verify_note(note, verifier_key))


def index_differences(
    expected_hash: bytes, indexes: Sequence[int], size: int
) -> tuple[list[int], list[int]] | None:
    """(missing, extra): how `indexes` differ from the set hashing to `expected_hash`, or None.

    A hash names a set without listing it, so the difference can only be found by trying.
    This tries one index left out (any index below `size` not in `indexes`) and one index
    added (any of `indexes`), within a budget of bytes hashed; a larger difference, or one
    beyond the budget, answers None. `indexes` is sorted without repeats.
    """
    n = len(indexes)
    joined = memoryview(b"".join(i.to_bytes(8, "big") for i in indexes))
    # SHA-256 reads left to right: the state after each prefix is kept and only the rest
    # hashed per try. Costs are bounded first so a large bundle spends nothing.
    extra_cost = 4 * n * n
    missing_cost = (size - n) * 8 * (n + 1)
    if min(extra_cost, missing_cost) > _SEARCH_BUDGET:
        return None
    prefixes = [hashlib.sha256()]
    for position in range(n):
        state = prefixes[-1].copy()
        state.update(joined[8 * position : 8 * position + 8])
        prefixes.append(state)
    if extra_cost <= _SEARCH_BUDGET:
        for position, index in enumerate(indexes):
            state = prefixes[position].copy()
            state.update(joined[8 * position + 8 :])
            if state.digest() == expected_hash:
                return [], [index]
    if missing_cost <= _SEARCH_BUDGET:
        present = set(indexes)
        for index in range(size):
            if index in present:
                continue
            position = bisect.bisect_left(indexes, index)
            state = prefixes[position].copy()
            state.update(index.to_bytes(8, "big"))
            state.update(joined[8 * position :])
            if state.digest() == expected_hash:
                return [index], []
    return None


def manifest_failures(
    manifest: Manifest, checkpoint: Checkpoint | None, indexes: Iterable[int]
) -> list[str]:
    """One line for each way `manifest` disagrees with a bundle whose proofs are against
    `checkpoint` (verified; None when it did not verify, and then only the entries are
    compared) and which holds the entries at `indexes`: another log, another tree head,
    other entries than those it hashes. Empty when it agrees.

    The subject is the caller's to compare: which member of a bundle names it depends on
    the bundle. Precondition (ValueError): every index is in [0, 2^64).
    """
    out = _head_failures(manifest, checkpoint) if checkpoint is not None else []
    ordered = sorted(set(indexes))
    if indexes_hash(ordered) != manifest.indexes_hash:
        found = index_differences(manifest.indexes_hash, ordered, manifest.size)
        if found is None:
            out.append(f"manifest: the bundle's {len(ordered)} entries are not the entries "
                       "it lists (more than one differs, or too many to try)")
        else:
            missing, extra = found
            out += [f"manifest: it lists entry {i}, which the bundle lacks" for i in missing]
            out += [f"manifest: the bundle holds entry {i}, which it does not list"
                    for i in extra]
    return out


def _head_failures(manifest: Manifest, checkpoint: Checkpoint) -> list[str]:
    out: list[str] = []
    if manifest.origin != checkpoint.origin:
        out.append(f"manifest: it is of log {manifest.origin!r}, "
                   f"the checkpoint of {checkpoint.origin!r}")
    if manifest.size != checkpoint.size:
        out.append(f"manifest: it is at tree size {manifest.size}, "
                   f"the checkpoint at {checkpoint.size}")
    elif manifest.root_hash != checkpoint.root_hash:
        out.append(f"manifest: its root hash at tree size {manifest.size} is "
                   f"{manifest.root_hash.hex()}, the checkpoint's {checkpoint.root_hash.hex()}")
    return out
