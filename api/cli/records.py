"""Commands that make and record statements: init, keygen, sign, submit, and checkpoint
(a server's signed checkpoint, verified and checked to extend an older one)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from api.cli.common import (
    CHUNK,
    EXIT_OK,
    UsageError,
    beside_database,
    open_ledger,
    read_text,
    write_atomically,
)
from api.remote import MAX_BODY
from ledger.errors import Rejected, VerificationError


def cmd_init(args: argparse.Namespace) -> int:
    from ledger import keys
    from ledger.genesis import genesis_envelopes
    from ledger.identifiers import validate_region, validate_uscc

    root = validate_uscc(args.root_org)
    validate_region(args.root_region)
    if not args.origin or any(c.isspace() for c in args.origin) or "+" in args.origin:
        raise UsageError("--origin must be non-empty, without spaces or '+'")
    ledger = open_ledger(args, create=True)
    if ledger.size() > 0 or ledger.is_created():
        raise UsageError(f"{ledger.database.describe()} holds a ledger already; init refuses it")
    log_key_path = args.log_key or beside_database(args, "log-key.pem")
    root_key_path = args.root_key or beside_database(args, "root-key.pem")
    for path, given in ((log_key_path, False), (root_key_path, args.root_key is not None)):
        if path.exists() and not given:
            raise UsageError(f"{path} exists; move it away or name another file")
    root_key = keys.load_private_key(root_key_path) if args.root_key else None

    # The root key is generated after the checks above, so a refused init writes nothing.
    if root_key is None:
        root_key = keys.generate_private_key()
    public = keys.public_bytes(root_key)
    log_key = keys.generate_private_key()
    genesis = genesis_envelopes(root, args.root_name, args.root_region, root_key)
    ledger.prepare(genesis)  # every stateless check, before any file is written
    keys.write_private_key(log_key_path, log_key)
    if args.root_key is None:
        keys.write_private_key(root_key_path, root_key)
    receipts = ledger.create(args.origin, log_key, root, genesis)
    print(f"created ledger {args.origin} in {ledger.database.describe()}")
    print(f"log key:  {log_key_path}")
    print(f"root key: {root_key_path} (key id {keys.key_id(public)})")
    for r in receipts:
        print(json.dumps(r.to_json()))
    return EXIT_OK


def cmd_keygen(args: argparse.Namespace) -> int:
    from ledger import keys

    key = keys.generate_private_key()
    keys.write_private_key(args.out, key)
    public = keys.public_bytes(key)
    print(f"key id:     {keys.key_id(public)}")
    print(f"public key: {keys.encode_public_key(public)}")
    return EXIT_OK


def cmd_sign(args: argparse.Namespace) -> int:
    from ledger import client, keys

    text = read_text(args.statement)
    try:
        statement = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{args.statement}: not JSON: {e}") from None
    if not isinstance(statement, dict):
        raise UsageError(f"{args.statement}: a statement is a JSON object")
    # Filled in only when missing, so a statement can be written once and signed later.
    filled = client.new_statement(statement.get("type", ""), statement.get("by", ""))
    statement.setdefault("id", filled["id"])
    statement.setdefault("issued_at", filled["issued_at"])
    key = keys.load_private_key(args.key)
    cosigners = [keys.load_private_key(p) for p in args.cosign]
    print(json.dumps(client.sign(statement, key, *cosigners), ensure_ascii=False))
    return EXIT_OK


def iter_envelopes(name: str, stream: TextIO | None = None) -> Iterator[Any]:
    """One envelope, a JSON array of envelopes, or JSON Lines, read lazily where possible."""
    text = stream.read() if stream is not None else read_text(name)
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise UsageError(f"{name}: not a JSON array: {e}") from None
        yield from items
        return
    try:
        yield json.loads(text)
        return
    except json.JSONDecodeError:
        pass
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as e:
            raise UsageError(f"{name}: line {number} is not JSON: {e}") from None


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _body_chunks(texts: Iterator[str], size: int, max_bytes: int) -> Iterator[list[str]]:
    """Chunks of at most `size` ASCII JSON texts that fit a `[a,b,…]` body of `max_bytes`."""
    chunk: list[str] = []
    used = 1  # "["
    for text in texts:
        if chunk and (len(chunk) == size or used + len(text) + 1 > max_bytes):
            yield chunk
            chunk, used = [], 1
        chunk.append(text)
        used += len(text) + 1  # the text and its "," or "]"
    if chunk:
        yield chunk


def cmd_submit(args: argparse.Namespace) -> int:
    if args.file != "-" and not Path(args.file).exists():
        raise UsageError(f"{args.file}: no such file")  # before the ledger: the first mistake
    envelopes = iter_envelopes(args.file)
    if args.url:
        from api.remote import Server, dumps

        server = Server(args.url)
        # A chunk is one all-or-nothing request, so it must also fit the server's body limit.
        chunks: Iterator[list[Any]] = _body_chunks((dumps(e) for e in envelopes), CHUNK, MAX_BODY)
        append: Callable[[list[Any]], list[Any]] = server.append
    else:
        chunks = _chunks(envelopes, CHUNK)
        append = open_ledger(args).append
    done = recorded = 0
    for chunk in chunks:
        try:
            receipts = append(chunk)
        except Rejected as e:
            where = done + (e.position or 0)
            raise UsageError(
                f"envelope {where} (counting from 0) rejected [{e.kind.value}]: {e.detail}; "
                f"the {done} before it are recorded, so fix it and run the same command again"
            ) from None
        for r in receipts:
            print(json.dumps({**r.to_json(), "duplicate": r.duplicate}))
            recorded += not r.duplicate
        done += len(chunk)
        if not args.quiet:
            print(f"qledger: {done} envelopes submitted, {recorded} newly recorded", file=sys.stderr)
    if done == 0:
        raise UsageError(f"{args.file}: no envelopes")
    return EXIT_OK


def cmd_checkpoint(args: argparse.Namespace) -> int:
    from api.remote import Server
    from api.witness import witness
    from ledger.log.verify import parse_verifier_key

    previous = read_text(str(args.consistent_with)) if args.consistent_with else None
    given = args.log_key
    if args.log_key_file:
        given = read_text(str(args.log_key_file)).strip()
    if given is not None:
        try:
            parse_verifier_key(given)
        except VerificationError as e:
            raise UsageError(f"--log-key: {e}") from None
    with Server(args.url) as server:
        key = given
        if key is None:
            key = server.log_key()
            print(f"qledger: warning: trusting the log key the server sent ({key}); "
                  "pin it with --log-key or --log-key-file", file=sys.stderr)
        seen = witness(server, key, previous)
    cp = seen.checkpoint
    print(f"checkpoint ok: {cp.origin}, tree size {cp.size}, root {cp.root_hash.hex()}")
    if seen.previous is not None:
        print(f"consistent with {args.consistent_with} (tree size {seen.previous.size})")
    if args.output:
        write_atomically(args.output, seen.note)
    return EXIT_OK


def add_init(commands: Any, db: argparse.ArgumentParser) -> None:
    p = commands.add_parser("init", parents=[db], help="create an empty ledger")
    p.add_argument("--origin", required=True, help="log origin, e.g. ledger.quality.example/v1")
    p.add_argument("--root-org", required=True, help="USCC of the root regulator")
    p.add_argument("--root-name", required=True, help="name of the root regulator")
    p.add_argument("--root-region", default="110000", help="GB/T 2260 region code (default 110000)")
    p.add_argument("--root-key", type=Path, help="root regulator's key (PEM); generated if absent")
    p.add_argument("--log-key", type=Path, help="where to write the log signing key (PEM)")
    p.set_defaults(run=cmd_init)


def add_keygen(commands: Any, db: argparse.ArgumentParser) -> None:
    p = commands.add_parser("keygen", help="write a new Ed25519 private key")
    p.add_argument("out", type=Path)
    p.set_defaults(run=cmd_keygen)


def add_sign(commands: Any, db: argparse.ArgumentParser) -> None:
    p = commands.add_parser("sign", help="sign a statement, print the DSSE envelope")
    p.add_argument("statement", help="statement JSON file, or - for standard input")
    p.add_argument("--key", type=Path, required=True, help="signer's private key (PEM)")
    p.add_argument("--cosign", type=Path, action="append", default=[], help="co-signer's key")
    p.set_defaults(run=cmd_sign)


def add_submit(commands: Any, db: argparse.ArgumentParser) -> None:
    p = commands.add_parser("submit", parents=[db], help="record envelopes")
    p.add_argument("file", help="an envelope, a JSON array or JSON Lines of envelopes, or -")
    p.add_argument("--url", help="submit through a qledger server instead of the local database")
    p.add_argument("--quiet", action="store_true", help="no progress on standard error")
    p.set_defaults(run=cmd_submit)


def add_checkpoint(commands: Any, db: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "checkpoint", help="fetch and verify a server's checkpoint, and that it extends an old one")
    p.add_argument("--url", required=True, help="the qledger server")
    p.add_argument("--consistent-with", type=Path, metavar="OLD_CHECKPOINT_FILE",
                   help="a signed checkpoint seen before: the new one must extend it")
    key = p.add_mutually_exclusive_group()
    key.add_argument("--log-key", metavar="KEYSTRING", help="the log's verifier key as you hold it")
    key.add_argument("--log-key-file", type=Path, metavar="FILE", help="a file holding it")
    p.add_argument("-o", "--output", type=Path, metavar="NEW_FILE",
                   help="write the new checkpoint there, once verified, for the next run")
    p.set_defaults(run=cmd_checkpoint)
