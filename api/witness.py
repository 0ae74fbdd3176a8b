"""What a witness checks: a log's latest checkpoint is signed by the log key and extends the
checkpoint the witness saw before (C2SP tlog-checkpoint, RFC 9162 §2.1.4).

A log that rewrote or forked its history cannot pass both: either it signs a checkpoint
whose root is not an extension of the old one, or it cannot prove consistency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ledger.errors import VerificationError
from ledger.log.verify import Checkpoint, verify_checkpoint, verify_consistency


class Log(Protocol):
    """Where the witness reads a log: a server (api.remote.Server) or anything alike."""

    def checkpoint(self) -> str: ...

    def consistency_proof(self, first: int, second: int) -> list[bytes]: ...


@dataclass(frozen=True, slots=True)
class Witnessed:
    note: str  # the new signed checkpoint, verified
    checkpoint: Checkpoint
    previous: Checkpoint | None  # the old one it was shown consistent with


def witness(log: Log, log_key: str, previous_note: str | None = None) -> Witnessed:
    """Fetch and verify the latest checkpoint of `log`; with `previous_note` (a signed
    checkpoint seen before), also verify it and that the new tree extends it.

    Raises VerificationError, with a message for the operator, when a checkpoint does not
    verify, the origins differ, the log shrank, or the consistency proof fails.
    """
    # 1. The new checkpoint is signed by the log key.
    note = log.checkpoint()
    try:
        new = verify_checkpoint(note, log_key)
    except VerificationError as e:
        raise VerificationError(f"the log's checkpoint does not verify: {e}") from None
    if previous_note is None:
        return Witnessed(note, new, None)
    # 2. So is the old one, and it is of the same log.
    try:
        old = verify_checkpoint(previous_note, log_key)
    except VerificationError as e:
        raise VerificationError(
            f"the old checkpoint does not verify with the log key: {e}") from None
    if old.origin != new.origin:
        raise VerificationError(f"the old checkpoint is of log {old.origin!r}, "
                                f"the new one of {new.origin!r}")
    # 3. The log only grows, and the new tree has the old one as its prefix.
    if old.size > new.size:
        raise VerificationError(f"the log shrank from {old.size} to {new.size} entries: "
                                "it was rewritten")
    proof = [] if old.size in (0, new.size) else log.consistency_proof(old.size, new.size)
    try:
        verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)
    except VerificationError as e:
        raise VerificationError(
            f"the checkpoint at tree size {new.size} is not consistent with the one at "
            f"{old.size} ({e}): the log was rewritten or forked") from None
    return Witnessed(note, new, old)
