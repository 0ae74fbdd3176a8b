"""The `qledger` command line (CLI.md). Exit status: 0 done, 1 a verification failed,
2 bad input or usage (one line on stderr, nothing changed)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from api.remote import MAX_BODY, ServerError
from ledger.errors import LedgerError, Rejected, VerificationError

EXIT_OK, EXIT_VERIFY, EXIT_USAGE = 0, 1, 2
CHUNK = 1000


class UsageError(Exception):
    """Bad arguments or input files, reported in one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _db_option() -> _Parser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--db",
        help="SQLite file or postgresql:// URL (default: $QLEDGER_DB, else ./qledger.db)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    db = _db_option()
    parser = _Parser(prog="qledger", description="Event-sourced quality-traceability ledger.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = commands.add_parser("init", parents=[db], help="create an empty ledger")
    p.add_argument("--origin", required=True, help="log origin, e.g. ledger.quality.example/v1")
    p.add_argument("--root-org", required=True, help="USCC of the root regulator")
    p.add_argument("--root-name", required=True, help="name of the root regulator")
    p.add_argument("--root-region", default="110000", help="GB/T 2260 region code (default 110000)")
    p.add_argument("--root-key", type=Path, help="root regulator's key (PEM); generated if absent")
    p.add_argument("--log-key", type=Path, help="where to write the log signing key (PEM)")
    p.set_defaults(run=cmd_init)

    p = commands.add_parser("keygen", help="write a new Ed25519 private key")
    p.add_argument("out", type=Path)
    p.set_defaults(run=cmd_keygen)

    p = commands.add_parser("sign", help="sign a statement, print the DSSE envelope")
    p.add_argument("statement", help="statement JSON file, or - for standard input")
    p.add_argument("--key", type=Path, required=True, help="signer's private key (PEM)")
    p.add_argument("--cosign", type=Path, action="append", default=[], help="co-signer's key")
    p.set_defaults(run=cmd_sign)

    p = commands.add_parser("submit", parents=[db], help="record envelopes")
    p.add_argument("file", help="an envelope, a JSON array or JSON Lines of envelopes, or -")
    p.add_argument("--url", help="submit through a qledger server instead of the local database")
    p.add_argument("--quiet", action="store_true", help="no progress on standard error")
    p.set_defaults(run=cmd_submit)

    p = commands.add_parser("serve", parents=[db], help="serve the HTTP API")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--log-key", type=Path, help="the log signing key (PEM) `init` wrote (default: "
                   "$QLEDGER_LOG_KEY, else log-key.pem beside a SQLite file, else ./log-key.pem)")
    p.set_defaults(run=cmd_serve)

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

    p = commands.add_parser("trace", parents=[db], help="trace a batch up or down the chain")
    p.add_argument("gtin")
    p.add_argument("lot")
    way = p.add_mutually_exclusive_group(required=True)
    way.add_argument("--up", dest="direction", action="store_const", const="up")
    way.add_argument("--down", dest="direction", action="store_const", const="down")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_trace)

    p = commands.add_parser("org", parents=[db], help="an organization and its credit")
    p.add_argument("uscc")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_org)

    p = commands.add_parser("blacklist", parents=[db], help="the quality-dishonesty blacklist")
    p.add_argument("--history", action="store_true", help="every listing and delisting")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_blacklist)

    p = commands.add_parser("stats", parents=[db], help="supervisory check pass rates")
    p.add_argument("--period", choices=["month", "year"], default="year")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_stats)

    p = commands.add_parser("qr", help="the QR code of a batch's GS1 Digital Link URI")
    p.add_argument("gtin")
    p.add_argument("lot")
    p.add_argument("-o", "--out", type=Path, required=True, help="FILE.png or FILE.svg")
    p.add_argument("--resolver", default=os.environ.get("QLEDGER_RESOLVER", "https://id.qledger.example"),
                   help="scheme and host of the resolver (default $QLEDGER_RESOLVER)")
    p.set_defaults(run=cmd_qr)

    p = commands.add_parser("labels", parents=[db], help="an A4 label sheet for a production run")
    p.add_argument("gtin")
    p.add_argument("lot")
    p.add_argument("--count", type=int, default=24, help="how many labels (at most 1,000)")
    p.add_argument("--serial-from", help="first serial (digits): one label per item, counting up")
    p.add_argument("-o", "--out", type=Path, required=True,
                   help="FILE.pdf (any number of pages) or FILE.svg (one page, at most 24)")
    p.add_argument("--resolver", default=os.environ.get("QLEDGER_RESOLVER", "https://id.qledger.example"),
                   help="scheme and host of the resolver (default $QLEDGER_RESOLVER)")
    p.set_defaults(run=cmd_labels)

    p = commands.add_parser("rebuild", parents=[db], help="drop and rebuild every view")
    p.set_defaults(run=cmd_rebuild)

    p = commands.add_parser("demo", help="create a demo ledger with realistic data")
    p.add_argument("--dir", type=Path, default=Path("demo"),
                   help="folder for qledger.db and its keys (default ./demo)")
    p.set_defaults(run=cmd_demo)

    p = commands.add_parser("audit", parents=[db], help="re-verify the whole log")
    p.add_argument("--trusted-key", help="the log's verifier key string as you hold it "
                   "(default: the one recorded in the ledger)")
    p.add_argument("--quiet", action="store_true", help="no progress on standard error")
    p.add_argument("--no-views", action="store_true", help="leave out the second part: "
                   "rebuilding the views from the log to compare with the live ones")
    p.set_defaults(run=cmd_audit)

    p = commands.add_parser("case", parents=[db],
                            help="a dispute case's entries as CSV or XLSX, its batches as SVG")
    p.add_argument("case_id", metavar="ID")
    p.add_argument("--csv", type=Path, metavar="FILE", help="one row per entry (RFC 4180)")
    p.add_argument("--xlsx", type=Path, metavar="FILE", help="the same rows as a sortable sheet")
    p.add_argument("--svg", type=Path, metavar="FILE", help="the trace picture of its batches")
    p.add_argument("--lang", choices=["zh", "en"], default="zh",
                   help="language of the summaries and the picture's labels (default zh)")
    p.set_defaults(run=cmd_case)

    p = commands.add_parser("bundle", parents=[db],
                            help="write the evidence bundle of a case or a batch (DISPUTES.md)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--case", metavar="ID", help="a dispute case's id")
    what.add_argument("--batch", nargs=2, metavar=("GTIN", "LOT"), help="one batch")
    p.add_argument("-o", "--out", type=Path, required=True, help="the bundle file to write")
    p.set_defaults(run=cmd_bundle)

    p = commands.add_parser("verify-bundle",
                            help="verify an evidence bundle offline: no database, no network")
    p.add_argument("file", help="the bundle, or - for standard input")
    p.add_argument("--log-key", metavar="KEYSTRING",
                   help="the log's verifier key as you hold it: the bundle must be of that log")
    p.set_defaults(run=cmd_verify_bundle)

    p = commands.add_parser("export", parents=[db],
                            help="write the whole log as JSON Lines of entries (a backup)")
    p.add_argument("file", help="the file to write, or - for standard output")
    p.add_argument("--quiet", action="store_true", help="no progress on standard error")
    p.set_defaults(run=cmd_export)

    p = commands.add_parser("import", parents=[db],
                            help="re-verify an export and record it into an empty ledger")
    p.add_argument("file", help="a file written by `qledger export`, or - for standard input")
    p.add_argument("--log-key", type=Path, help="the new ledger's log signing key (PEM): "
                   "used if the file exists, else generated there (default: log-key.pem "
                   "beside the database)")
    p.add_argument("--trusted-key", help="the verifier key string the export's checkpoint "
                   "must be signed with (default: the one the file names)")
    p.add_argument("--quiet", action="store_true", help="no progress on standard error")
    p.set_defaults(run=cmd_import)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Every error the ledger raises is mapped here, once."""
    try:
        args = build_parser().parse_args(argv)
        code: int = args.run(args)
        return code
    except UsageError as e:
        return _fail(str(e), EXIT_USAGE)
    except ServerError as e:
        return _fail(str(e), EXIT_USAGE)
    except VerificationError as e:
        return _fail(str(e), EXIT_VERIFY)
    except LedgerError as e:
        return _fail(str(e), EXIT_USAGE)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_USAGE)
    except BrokenPipeError:
        return EXIT_OK


def _fail(message: str, code: int) -> int:
    print(f"qledger: {message.splitlines()[0] if message else 'error'}", file=sys.stderr)
    return code


def _open_ledger(args: argparse.Namespace, *, create: bool = False) -> Any:
    """The ledger at --db / $QLEDGER_DB. Only `init` and `import` may start a new SQLite
    file: anywhere else a mistyped path would open an empty ledger and answer as if it
    were the real one ("the blacklist is empty")."""
    from ledger.application import Ledger
    from ledger.errors import NotFound
    from ledger.store import Database

    database = Database.from_env(args.db)
    if not create and not database.is_postgres and not os.path.exists(database.url):
        raise NotFound(f"no ledger at {database.url}: the file does not exist "
                       "(check --db or QLEDGER_DB; `qledger init` creates one)")
    return Ledger(database)


def _beside_database(args: argparse.Namespace, name: str) -> Path:
    from ledger.store import Database

    database = Database.from_env(args.db)
    if database.is_postgres:
        return Path(name)
    return Path(os.path.dirname(os.path.abspath(database.url))) / name


def cmd_init(args: argparse.Namespace) -> int:
    from ledger import keys
    from ledger.genesis import genesis_envelopes
    from ledger.identifiers import validate_region, validate_uscc

    root = validate_uscc(args.root_org)
    validate_region(args.root_region)
    if not args.origin or any(c.isspace() for c in args.origin) or "+" in args.origin:
        raise UsageError("--origin must be non-empty, without spaces or '+'")
    ledger = _open_ledger(args, create=True)
    if ledger.size() > 0 or ledger.is_created():
        raise UsageError(f"{ledger.database.describe()} holds a ledger already; init refuses it")
    log_key_path = args.log_key or _beside_database(args, "log-key.pem")
    root_key_path = args.root_key or _beside_database(args, "root-key.pem")
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


def _read_text(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    try:
        return Path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{name}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{name}: cannot read: {e}") from None


def cmd_sign(args: argparse.Namespace) -> int:
    from ledger import client, keys

    text = _read_text(args.statement)
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
    text = stream.read() if stream is not None else _read_text(name)
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
        append = _open_ledger(args).append
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


SERVE_PROTOCOL = "api.timeouts:HeaderDeadlineProtocol"


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from api.settings import Settings

    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a TCP port")
    if args.db:
        os.environ["QLEDGER_DB"] = args.db  # where every worker's create_app() opens it
    if args.log_key is not None:
        if not args.log_key.is_file():
            raise UsageError(f"--log-key {args.log_key}: no such file")
        os.environ["QLEDGER_LOG_KEY"] = str(args.log_key.resolve())
    ledger = _open_ledger(args)
    ledger.config  # noqa: B018 - no ledger: one line and exit 2, before listening
    ledger.log_key()  # without it no append could be acknowledged; names the file it wanted
    if not os.environ.get("QLEDGER_LOG_KEY"):
        # Found where init writes it; the workers, started elsewhere, are told where.
        from ledger.application import default_log_key_path

        os.environ["QLEDGER_LOG_KEY"] = default_log_key_path(ledger.database)
    _announce_links(args)
    # httptools with a deadline for each request's headers (api/timeouts.py), named so
    # that each worker process of --workers N imports it.
    where = {"host": args.host, "port": args.port, "http": SERVE_PROTOCOL}
    try:
        if args.workers == 1:
            uvicorn.run(create_app(ledger, Settings.from_env()), **where)
        else:
            ledger.close()  # each worker opens its own
            uvicorn.run("api.app:create_app", factory=True, workers=args.workers, **where)
    except SystemExit as e:  # uvicorn exits when it cannot start (port taken …)
        if e.code not in (None, 0):
            raise UsageError(f"the server could not start on {args.host}:{args.port}") from None
    return EXIT_OK


def _announce_links(args: argparse.Namespace) -> None:
    """Links and QR codes never take their host from a request (api.settings): with no
    QLEDGER_RESOLVER nor QLEDGER_ALLOWED_HOSTS they name the address served here, which
    the workers learn from QLEDGER_LISTEN_URL."""
    wildcard = args.host in ("0.0.0.0", "::", "")
    host = "localhost" if wildcard else (f"[{args.host}]" if ":" in args.host else args.host)
    os.environ["QLEDGER_LISTEN_URL"] = f"http://{host}:{args.port}"
    if not (os.environ.get("QLEDGER_RESOLVER") or os.environ.get("QLEDGER_ALLOWED_HOSTS")):
        print(f"qledger: note: QR codes and links point at {os.environ['QLEDGER_LISTEN_URL']}; "
              "set QLEDGER_RESOLVER to the resolver's public https:// address", file=sys.stderr)


def cmd_checkpoint(args: argparse.Namespace) -> int:
    from api.remote import Server
    from api.witness import witness
    from ledger.log.verify import parse_verifier_key

    previous = _read_text(str(args.consistent_with)) if args.consistent_with else None
    given = args.log_key
    if args.log_key_file:
        given = _read_text(str(args.log_key_file)).strip()
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
        _write_atomically(args.output, seen.note)
    return EXIT_OK


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as e:
        raise UsageError(f"{path}: cannot write: {e}") from None


def _views(args: argparse.Namespace) -> Any:
    from traceability.views import Views

    return Views.open(_open_ledger(args))


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2))


def cmd_trace(args: argparse.Namespace) -> int:
    from traceability.trace import trace

    with _views(args) as views:
        graph = trace(views, args.gtin, args.lot, args.direction).to_json()
    if args.json:
        _print_json(graph)
        return EXIT_OK
    print(f"{graph['root']['gtin']}/{graph['root']['lot']}: {len(graph['nodes'])} batches")
    for edge in graph["edges"]:
        f, t = edge["from"], edge["to"]
        print(f"  {t['gtin']}/{t['lot']} made from "
              f"{f['gtin']}/{f['lot']} ({edge['quantity']}, entry {edge['entry']})")
    for s in graph["shipments"]:
        got = f"received at entry {s['received_entry']}" if s["received_entry"] is not None else "in transit"
        print(f"  shipped {s['quantity']} of {s['gtin']}/{s['lot']} {s['from']} -> {s['to']} "
              f"(entry {s['entry']}, {got})")
    print("organizations: " + ", ".join(graph["organizations"]))
    return EXIT_OK


def cmd_org(args: argparse.Namespace) -> int:
    from traceability.orgs import profile

    with _views(args) as views:
        org = profile(views, args.uscc).to_json()
    if args.json:
        _print_json(org)
        return EXIT_OK
    credit = org["credit"]
    listed = ", BLACKLISTED" if credit["blacklisted"] else ""
    print(f"{org['uscc']} {org['name']} ({'/'.join(org['roles'])}, region {org['region']})")
    print(f"credit: {credit['score']} grade {credit['grade']}{listed} [{credit['policy']}]")
    for line in credit["explain"]:
        entry = "" if line["entry"] is None else line["entry"]
        print(f"  entry {entry:>6}  {line['delta']:+4d}  {line['reason']}")
    return EXIT_OK


def cmd_blacklist(args: argparse.Namespace) -> int:
    from traceability import blacklist

    with _views(args) as views:
        rows = ([e.to_json() for e in blacklist.history(views)] if args.history
                else [listing.to_json() for listing in blacklist.current(views)])
    if args.json:
        _print_json(rows)
        return EXIT_OK
    for row in rows:
        print("  ".join(str(row.get(k, "")) for k in ("org", "name", "since", "reason") if k in row)
              if not args.history else json.dumps(row, ensure_ascii=False))
    if not rows:
        print("the blacklist is empty")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    from traceability.stats import pass_rates

    with _views(args) as views:
        rates = [r.to_json() for r in pass_rates(views, period=args.period)]
    if args.json:
        _print_json(rates)
        return EXIT_OK
    for r in rates:
        print(json.dumps(r, ensure_ascii=False))
    return EXIT_OK


def cmd_qr(args: argparse.Namespace) -> int:
    from traceability import qr

    suffix = args.out.suffix.lower()
    if suffix not in (".png", ".svg"):
        raise UsageError("-o must name a .png or .svg file")
    uri = qr.digital_link(args.resolver, args.gtin, args.lot)
    args.out.write_bytes(qr.qr_png(uri) if suffix == ".png" else qr.qr_svg(uri))
    print(uri)
    return EXIT_OK


def cmd_labels(args: argparse.Namespace) -> int:
    from ledger.identifiers import normalize_gtin, validate_lot
    from traceability import labels
    from traceability.scan import scan

    suffix = args.out.suffix.lower()
    if suffix not in (".pdf", ".svg"):
        raise UsageError("-o must name a .pdf or .svg file")
    gtin, lot = normalize_gtin(args.gtin), validate_lot(args.lot)
    with _views(args) as views:
        product = scan(views, gtin, lot).batch.product
    sheet = labels.run_labels(args.resolver, gtin, lot, product, args.count, args.serial_from)
    data = labels.sheet_pdf(sheet) if suffix == ".pdf" else labels.sheet_svg(sheet)
    args.out.write_bytes(data)
    print(f"{len(sheet)} labels for {sheet[0].uri if not args.serial_from else gtin + '/' + lot}"
          f" in {args.out}")
    return EXIT_OK


def cmd_rebuild(args: argparse.Namespace) -> int:
    from traceability.views import Views

    with Views(_open_ledger(args)) as views:
        count = views.rebuild()
    print(f"rebuilt every view from entry 0: {count} entries applied")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from api import demo

    db = args.dir / "qledger.db"
    if db.exists():
        raise UsageError(f"{db} exists; remove the folder {args.dir} to build the demo again")
    args.dir.mkdir(parents=True, exist_ok=True)
    built = demo.build(str(db), args.dir / "log-key.pem", args.dir / "root-key.pem")
    gtin, lot = built.recalled_bread
    print(f"demo ledger in {db}")
    print(f"a recalled batch: GTIN {gtin} lot {lot}; a clean one: lot {built.clean_bread[1]}")
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    from ledger.audit import audit

    ledger = _open_ledger(args)

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            print(f"qledger: audited {done}/{total} entries", file=sys.stderr)

    report = audit(ledger, trusted_log_key=args.trusted_key, progress=progress)
    # The views are rebuilt and compared even when the log has problems: an operator
    # wants every difference at once, and the rebuild reads the log as readers do.
    views_problems: list[str] = []
    if not args.no_views:
        from traceability.viewcheck import ViewsReport, check_views

        def step(what: str) -> None:
            if not args.quiet:
                print(f"qledger: views: {what}", file=sys.stderr)

        try:
            views = check_views(ledger, progress=step)
        except LedgerError as e:  # not checked is not passed: the operator must look
            views = ViewsReport(problems=[f"not checked: {e}"])
        views_problems = [f"views: {p}" for p in views.problems]
        if views.note:
            print(f"views: {views.note}")
    if report.ok and not views_problems:
        print(f"audit ok: {report.size} entries re-verified; tree and checkpoint at size "
              f"{report.checkpoint_size} agree"
              + ("" if args.no_views or views.note else
                 "; the views match a rebuild from the log"))
        return EXIT_OK
    for problem in report.problems:
        print(problem)
    for line in views_problems:
        print(line)
    bad = report.bad_indexes()
    print(f"audit FAILED: {len(report.problems) + len(views_problems)} problems"
          + (f"; bad entries: {', '.join(map(str, bad))}" if bad else ""))
    return EXIT_VERIFY


def cmd_case(args: argparse.Namespace) -> int:
    from traceability import exports, picture
    from traceability.cases import case_view

    if not (args.csv or args.xlsx or args.svg):
        raise UsageError("name at least one of --csv FILE, --xlsx FILE, --svg FILE")
    with _views(args) as views:
        case = case_view(views, args.case_id)  # NotFound: one line, exit 2
        rows = exports.case_sheet(views, args.case_id, args.lang) if args.csv or args.xlsx else []
        svg = (picture.render_svg(picture.case_picture(views, args.case_id), args.lang)
               if args.svg else "")
    outputs: list[tuple[Path, bytes]] = []
    if args.csv:
        outputs.append((args.csv, exports.to_csv_bytes(rows)))
    if args.xlsx:
        outputs.append((args.xlsx, exports.to_xlsx(rows)))
    if args.svg:
        outputs.append((args.svg, svg.encode("utf-8")))
    for path, body in outputs:
        try:
            path.write_bytes(body)
        except OSError as e:
            raise UsageError(f"{path}: cannot write: {e}") from None
        print(f"wrote {path}")
    print(f"case {case.case}: {case.status}" + (f", {case.finding}" if case.finding else "")
          + (f"; {len(rows)} entries" if rows else ""))
    return EXIT_OK



def cmd_bundle(args: argparse.Namespace) -> int:
    from traceability.bundle import batch_bundle, case_bundle
    from traceability.views import Views

    ledger = _open_ledger(args)
    try:
        with Views.open(ledger) as views:
            bundle = (case_bundle(views, args.case) if args.case is not None
                      else batch_bundle(views, *args.batch))
            data = bundle.to_bytes()
    finally:
        ledger.close()
    temporary = args.out.with_name(args.out.name + ".tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, args.out)
    except OSError as e:
        raise UsageError(f"{args.out}: cannot write: {e.strerror}") from None
    print(f"wrote {args.out}: {len(bundle.entries)} entries at tree size {bundle.tree_size}")
    return EXIT_OK


def cmd_verify_bundle(args: argparse.Namespace) -> int:
    # Only the standalone verifier: this command must work with no database at all.
    from ledger.bundle import verify_bundle
    from ledger.log.verify import parse_verifier_key

    if args.log_key is not None:
        try:
            parse_verifier_key(args.log_key)
        except VerificationError as e:
            raise UsageError(f"--log-key: {e}") from None
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as e:
        raise UsageError(f"{args.file}: cannot read: {e.strerror}") from None
    verdict = verify_bundle(data, log_key=args.log_key)
    if verdict.ok:
        print(verdict.summary())
        if args.log_key is None:
            # The bundle carries its own log key: a forger can swap both it and the checkpoint.
            log_key = json.loads(data)["log_key"]
            print(f"qledger: note: verified against the log key the bundle names ({log_key}); "
                  "compare it with the ledger's published key, or pin it with --log-key",
                  file=sys.stderr)
        return EXIT_OK
    for failure in verdict.failures:
        print(failure)
    return EXIT_VERIFY


def _progress(args: argparse.Namespace, verb: str) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        if not args.quiet:
            print(f"qledger: {verb} {done}/{total} entries", file=sys.stderr)

    return show


def cmd_export(args: argparse.Namespace) -> int:
    from ledger.backup import export

    ledger = _open_ledger(args)
    if args.file == "-":
        checkpoint = export(ledger, sys.stdout, _progress(args, "exported"))
    else:
        path = Path(args.file)
        temporary = path.with_name(path.name + ".tmp")
        try:
            with temporary.open("w", encoding="utf-8", newline="\n") as out:
                checkpoint = export(ledger, out, _progress(args, "exported"))
            os.replace(temporary, path)
        except OSError as e:
            raise UsageError(f"{path}: cannot write: {e}") from None
    print(f"qledger: exported {checkpoint.size} entries, root {checkpoint.root_hash.hex()}",
          file=sys.stderr)
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from ledger import keys
    from ledger.application import Ledger
    from ledger.backup import import_file, seekable

    if args.file != "-" and not Path(args.file).is_file():
        raise UsageError(f"{args.file}: no such file")
    path = args.log_key or _beside_database(args, "log-key.pem")
    generated = not path.exists()
    log_key = keys.generate_private_key() if generated else keys.load_private_key(path)
    ledger = Ledger(args.db, log_key=log_key)
    if ledger.size() > 0 or ledger.is_created():
        raise UsageError(f"{ledger.database.describe()} holds a ledger already; "
                         "import needs an empty one")
    try:
        stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8", newline="\n")
    except OSError as e:
        raise UsageError(f"{args.file}: cannot read: {e}") from None
    with stream, seekable(stream) as source:
        if generated:
            keys.write_private_key(path, log_key)
        try:
            done = import_file(source, ledger, trusted_log_key=args.trusted_key,
                               progress=_progress(args, "imported"))
        except BaseException:
            if generated:
                path.unlink(missing_ok=True)
            raise
    print(f"imported {done.size} entries into {ledger.database.describe()}; "
          f"root {done.root_hash.hex()} as signed in the export")
    if generated:
        print(f"generated a new log key: {path}; checkpoints are now signed with "
              f"{ledger.config.log_key}, not with the exporting ledger's {done.source_log_key}")
    else:
        print(f"checkpoints are signed with {ledger.config.log_key}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
