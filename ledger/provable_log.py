"""The verifiable log (PROTOCOL.md §3-4) as the Ledger serves it: the Merkle tree's
frontier, signed checkpoints, inclusion and consistency proofs read from the stored tree,
and the log signing key that signs checkpoints. A mixin of the Ledger application; the
tree arithmetic itself is ledger/log/tree.py and stands alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.errors import InvalidRequest, NotFound, StorageError
from ledger.keys import load_private_key
from ledger.log import tree
from ledger.log.checkpoint import Checkpoint, sign_checkpoint
from ledger.log.tree import Frontier
from ledger.log.verify import parse_verifier_key
from ledger.store import Database


def default_log_key_path(database: Database) -> str:
    """Where `qledger init` writes the log key when not told: beside a SQLite file, else
    (PostgreSQL) log-key.pem in the current folder (CLI.md)."""
    folder = os.getcwd() if database.is_postgres else os.path.dirname(os.path.abspath(database.url))
    return os.path.join(folder, "log-key.pem")


class ProvableLog:
    """The Ledger's tree, checkpoints and proofs (a mixin: `recorder`, `database`,
    `config`, `size` and `_appended` are the application's)."""

    recorder: Any
    database: Database
    config: Any
    _log_key: Ed25519PrivateKey | None
    _frontier: Frontier | None
    _known_size: int

    size: Callable[[], int]
    _appended: Callable[..., list[Any]]

    def frontier(self) -> Frontier:
        """The right edge of the Merkle tree, brought up to date with the log."""
        if self._frontier is None:
            size = self.size()
            self._frontier = Frontier.load(size, self.recorder)  # type: ignore[arg-type]
        for e in self._appended(self._frontier.size):
            self._frontier.append(bytes.fromhex(e.leaf_hash))
        return self._frontier

    def log_key(self) -> Ed25519PrivateKey:
        """The log signing key: given, else $QLEDGER_LOG_KEY, else log-key.pem where
        `qledger init` writes it (beside a SQLite database; for PostgreSQL, in the
        current folder). Raises StorageError naming the file looked for."""
        if self._log_key is None:
            path = os.environ.get("QLEDGER_LOG_KEY") or default_log_key_path(self.database)
            if not os.path.exists(path):
                raise StorageError(
                    f"no log signing key at {path}: pass --log-key or set QLEDGER_LOG_KEY "
                    "to the PEM file `qledger init` wrote"
                )
            key = load_private_key(Path(path))
            expected = parse_verifier_key(self.config.log_key).public_key
            if key.public_key().public_bytes_raw() != expected:
                raise StorageError(f"{path} is not this ledger's log key")
            self._log_key = key
        return self._log_key

    def _sign_checkpoint(self, size: int, root: bytes) -> str:
        origin = self.config.origin
        return sign_checkpoint(Checkpoint(origin, size, root), origin, self.log_key())

    def checkpoint(self) -> str:
        """The latest signed checkpoint (C2SP signed note)."""
        latest = self.recorder.latest_checkpoint()  # type: ignore[attr-defined]
        if latest is None:
            raise NotFound("the ledger has no checkpoint yet")
        return str(latest[1])

    def checkpoint_at(self, size: int) -> str:
        note = self.recorder.checkpoint_at(size)  # type: ignore[attr-defined]
        if note is None:
            raise NotFound(f"no checkpoint was signed at tree size {size}")
        return str(note)

    def root_at(self, size: int) -> bytes:
        self._check_size(size)
        return tree.root_at(size, self.recorder)  # type: ignore[arg-type]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3 proof that entry `index` is in the tree of `size` entries."""
        self._check_size(size)
        if not 0 <= index < size:
            raise InvalidRequest(f"index {index} is not below tree size {size}")
        return tree.inclusion_proof(index, size, self.recorder)  # type: ignore[arg-type]

    def inclusion_proofs(self, indexes: Sequence[int], size: int) -> dict[int, list[bytes]]:
        """inclusion_proof for many entries of the tree of `size` entries, in a few reads."""
        self._check_size(size)
        for index in indexes:
            if not 0 <= index < size:
                raise InvalidRequest(f"index {index} is not below tree size {size}")
        return tree.inclusion_proofs(indexes, size, self.recorder)  # type: ignore[arg-type]

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """RFC 9162 §2.1.4 proof that the tree of `first` entries is a prefix of `second`."""
        self._check_size(second)
        if not 0 < first <= second:
            raise InvalidRequest(f"need 0 < first <= second, not first={first}, second={second}")
        return tree.consistency_proof(first, second, self.recorder)  # type: ignore[arg-type]

    def _check_size(self, size: int) -> None:
        # The log only grows, so a size seen once stays valid: ask the database only
        # for sizes beyond it.
        if 0 <= size <= self._known_size:
            return
        current = self._known_size = self.size()
        if not 0 <= size <= current:
            raise InvalidRequest(f"tree size {size} is beyond the log's {current} entries")
