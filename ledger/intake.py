"""What the writer does with a batch before any rule runs: every check that needs no
ledger state (`prepare`), the cheap ones that need a little (every key named is
registered, the HTTP API's `admit`), and the signatures by keys seen before handed to
worker processes (ledger/parallel.py), which verify them while the writer applies the
rules. A flood of batches under made-up key ids, or over a key's rate, costs parsing and
one query, never an Ed25519 verification.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from ledger.domain.key import Key
from ledger.envelope import Envelope, signer_ids
from ledger.envelope import load_json as load_envelope_json
from ledger.errors import Rejected, Rejection
from ledger.keys import key_id
from ledger.log.entry_format import envelope_jcs
from ledger.parallel import Feed, ParallelVerifier, Pending
from ledger.statement_types import StatementType as T
from ledger.statements import Statement, parse_statement

MAX_BATCH = 1000
# Called with the number of a batch's envelopes signed by each key id, once every key is
# known to be registered and before any signature is checked; raises to refuse the batch.
Admit = Callable[[Mapping[str, int]], None]


def statement_key(statement_id: str) -> bytes:
    # The id was checked to be a lowercase hyphenated UUID; a UUID object costs more.
    return bytes.fromhex(statement_id.replace("-", ""))


@dataclass(frozen=True, slots=True)
class Submission:
    """An envelope that passed every check that needs no ledger state."""

    envelope: Envelope
    statement: Statement
    digest: bytes  # SHA-256 of the envelope's canonical bytes: same id, same digest, same envelope
    envelope_bytes: bytes  # JCS of the envelope
    key: bytes  # the statement id as 16 bytes, how the statements table keys it


class UnknownKeys(Rejected):
    """Rejected(UNKNOWN_KEY) for a batch: the first envelope signed by an unregistered key,
    and the others (`others`), all found by one look-up (Intake.check_keys_registered)."""

    def __init__(self, first: Rejected, others: Sequence[Rejected]) -> None:
        super().__init__(first.kind, first.detail, position=first.position)
        self.others = list(others)


class Intake:
    """The writer's intake: its worker processes, and the keys it has learnt.

    `public_keys`: key id -> raw public key, of keys whose signatures the writer has
    checked (a key id is the SHA-256 of its key, so the pair is fixed for ever).
    `registered_keys`: key ids found registered (registration is for ever: revocation is
    an event of the same key), so only ids not in here cost a query."""

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder
        self.verifier = ParallelVerifier()
        self.public_keys: dict[str, bytes] = {}
        self.registered_keys: set[str] = set()

    def prepare_verifying(
        self, envelopes: Sequence[Any], admit: Admit | None = None, *, submitted: bool = False,
    ) -> tuple[list[Submission], Pending | None]:
        """`prepare`, and the signatures by keys seen before handed to the worker
        processes, which verify them while the writer applies the rules.

        A `submitted` batch passes the cheap checks that need the ledger first (every key
        named is registered; `admit`): a batch under made-up key ids, or over its key's
        rate, costs parsing and one query, never an Ed25519 verification, here or in a
        worker. Those checks need only the key ids, which the envelopes' JSON names
        before anything else is validated: when every id is known to be registered, the
        batch is admitted from its JSON, and the workers start on the first envelopes
        while the writer still validates the rest. Otherwise (a key unknown, or one the
        batch itself registers) the whole batch is validated first and checked after.

        A replay (audit, import) is not checked ahead: its genesis is signed by the key
        its second entry registers, and its rules say the same in their turn."""
        if not submitted:
            submissions = self.prepare(envelopes)
            return submissions, self._feed_all(submissions)
        self._check_batch_size(envelopes)
        read = self._load(envelopes)
        if read is None:
            submissions = self.prepare(envelopes)  # names the envelope at fault, in order
            self.check_keys_registered(submissions)
        else:
            loaded, signers = read
            self._look_up_keys(signers)
            if self.registered_keys.issuperset(signers):
                if admit is not None:
                    admit(signers)
                return self._prepare_feeding(loaded)
            # A key not known here (or one the batch registers): validated whole first,
            # from the JSON already parsed, and the keys not asked for again.
            submissions = self.prepare(loaded)
            self.check_keys_registered(submissions, look_up=False)
        if admit is not None:
            admit(Counter(sig.keyid for sub in submissions for sig in sub.envelope.signatures))
        return submissions, self._feed_all(submissions)

    @staticmethod
    def _load(envelopes: Sequence[Any]) -> tuple[list[Any], Counter[str]] | None:
        """The envelopes' JSON, parsed, and how many of them each key id signs, when each
        names its key ids as an envelope does; None when one does not (`prepare` then
        says which, at its position)."""
        loaded, signers = [], Counter[str]()
        for item in envelopes:
            try:
                obj = load_envelope_json(item)
            except Rejected:
                return None
            ids = signer_ids(obj)
            if ids is None:
                return None
            signers.update(ids)
            loaded.append(obj)
        return loaded, signers

    def _feed_all(self, submissions: list[Submission]) -> Pending | None:
        feed = self.verifier.feed()
        for position, sub in enumerate(submissions):
            self._feed(feed, position, sub)
        return feed.finish()

    def _prepare_feeding(self, loaded: list[Any]) -> tuple[list[Submission], Pending | None]:
        """`prepare` of an admitted batch, handing each envelope's signatures to the workers
        as soon as it is read; what they have not begun is dropped if the batch is refused."""
        feed = self.verifier.feed()
        submissions = []
        try:
            for position, obj in enumerate(loaded):
                sub = self.validate(obj, position, len(loaded))
                self._feed(feed, position, sub)
                submissions.append(sub)
        except BaseException:
            feed.cancel()
            raise
        return submissions, feed.finish()

    def _feed(self, feed: Feed, position: int, sub: Submission) -> None:
        message = None
        for sig in sub.envelope.signatures:
            public_key = self.public_keys.get(sig.keyid)
            if public_key is not None:
                message = message or sub.envelope.message()
                feed.add((public_key, sig.sig, message), (position, sig.keyid))

    @staticmethod
    def _check_batch_size(envelopes: Sequence[Any]) -> None:
        if len(envelopes) > MAX_BATCH:
            raise Rejected(
                Rejection.TOO_MANY, f"a batch holds at most {MAX_BATCH} envelopes, not {len(envelopes)}"
            )

    def prepare(self, envelopes: Sequence[Any]) -> list[Submission]:
        """Every check that needs no ledger state: shape, encoding, canonical form, fields."""
        self._check_batch_size(envelopes)
        return [self.validate(item, position, len(envelopes))
                for position, item in enumerate(envelopes)]

    @staticmethod
    def validate(item: Any, position: int, batch: int) -> Submission:
        try:
            envelope = Envelope.from_json(item)
            statement = parse_statement(envelope.statement)
        except Rejected as e:
            raise e.at(position) if batch > 1 else e
        envelope_bytes = envelope_jcs(envelope)
        digest = hashlib.sha256(envelope_bytes).digest()
        return Submission(envelope, statement, digest, envelope_bytes, statement_key(statement.id))

    def _look_up_keys(self, keyids: Iterable[str]) -> None:
        """Adds to the key ids known registered those of `keyids` the ledger holds, with one
        query for the ids not known already."""
        unseen = {keyid for keyid in keyids if keyid not in self.registered_keys}
        if unseen:
            ids = {Key.create_id(keyid): keyid for keyid in unseen}
            stored = self.recorder.select_events_after(
                [(uid, 0) for uid in ids]
            )
            self.registered_keys.update(ids[s.originator_id] for s in stored)

    def check_keys_registered(self, submissions: Sequence[Submission], *,
                              look_up: bool = True) -> None:
        """Raises Rejected(UNKNOWN_KEY) naming every envelope signed by a key that is not
        registered, neither in the ledger nor by an earlier envelope of the batch.

        The rules say the same later, envelope by envelope, after the signatures before
        it were checked; this says it first, with one query for the keys not seen before.
        Revocation and validity are left to the rules: a registered key stays registered.
        `look_up` False: the batch's key ids were looked up already."""
        if look_up:
            self._look_up_keys(sig.keyid for sub in submissions for sig in sub.envelope.signatures)
        in_batch: dict[str, int] = {}  # key id -> position of the envelope registering it
        unknown: list[Rejected] = []
        for position, sub in enumerate(submissions):
            for sig in sub.envelope.signatures:
                if sig.keyid not in self.registered_keys and in_batch.get(sig.keyid, position) >= position:
                    unknown.append(Rejected(Rejection.UNKNOWN_KEY,
                                            f"key {sig.keyid} is not registered", position=position))
                    break
            if sub.statement.type == T.KEY_REGISTERED:
                with suppress(ValueError):  # a malformed key is the rules' to refuse
                    in_batch.setdefault(key_id(sub.statement.body["public_key"]), position)
        if unknown:
            first = unknown[0]
            if len(submissions) == 1:
                first.position = None  # as every refusal of a single envelope
                raise first
            raise UnknownKeys(first, unknown[1:])
