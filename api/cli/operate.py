"""Commands that run and keep a ledger: serve, rebuild, demo, audit, export and import."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from api.cli.common import (
    EXIT_OK,
    EXIT_VERIFY,
    UsageError,
    beside_database,
    open_ledger,
    progress,
)
from ledger.errors import LedgerError

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
    ledger = open_ledger(args)
    ledger.config  # noqa: B018 - no ledger: one line and exit 2, before listening
    ledger.log_key()  # without it no append could be acknowledged; names the file it wanted
    if not os.environ.get("QLEDGER_LOG_KEY"):
        # Found where init writes it; the workers, started elsewhere, are told where.
        from ledger.provable_log import default_log_key_path

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


def cmd_rebuild(args: argparse.Namespace) -> int:
    from traceability.views import Views

    with Views(open_ledger(args)) as views:
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

    ledger = open_ledger(args)

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


def cmd_export(args: argparse.Namespace) -> int:
    from ledger.backup import export

    ledger = open_ledger(args)
    if args.file == "-":
        checkpoint = export(ledger, sys.stdout, progress(args, "exported"))
    else:
        path = Path(args.file)
        temporary = path.with_name(path.name + ".tmp")
        try:
            with temporary.open("w", encoding="utf-8", newline="\n") as out:
                checkpoint = export(ledger, out, progress(args, "exported"))
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
    path = args.log_key or beside_database(args, "log-key.pem")
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
                               progress=progress(args, "imported"))
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


def add_serve(commands: Any, db: argparse.ArgumentParser) -> None:
    p = commands.add_parser("serve", parents=[db], help="serve the HTTP API")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--log-key", type=Path, help="the log signing key (PEM) `init` wrote (default: "
                   "$QLEDGER_LOG_KEY, else log-key.pem beside a SQLite file, else ./log-key.pem)")
    p.set_defaults(run=cmd_serve)


def add_rebuild(commands: Any, db: argparse.ArgumentParser) -> None:
    p = commands.add_parser("rebuild", parents=[db], help="drop and rebuild every view")
    p.set_defaults(run=cmd_rebuild)


def add_demo(commands: Any, db: argparse.ArgumentParser) -> None:
    p = commands.add_parser("demo", help="create a demo ledger with realistic data")
    p.add_argument("--dir", type=Path, default=Path("demo"),
                   help="folder for qledger.db and its keys (default ./demo)")
    p.set_defaults(run=cmd_demo)


def add_audit(commands: Any, db: argparse.ArgumentParser) -> None:
    p = commands.add_parser("audit", parents=[db], help="re-verify the whole log")
    p.add_argument("--trusted-key", help="the log's verifier key string as you hold it "
                   "(default: the one recorded in the ledger)")
    p.add_argument("--quiet", action="store_true", help="no progress on standard error")
    p.add_argument("--no-views", action="store_true", help="leave out the second part: "
                   "rebuilding the views from the log to compare with the live ones")
    p.set_defaults(run=cmd_audit)


def add_export(commands: Any, db: argparse.ArgumentParser) -> None:
    p = commands.add_parser("export", parents=[db],
                            help="write the whole log as JSON Lines of entries (a backup)")
    p.add_argument("file", help="the file to write, or - for standard output")
    p.add_argument("--quiet", action="store_true", help="no progress on standard error")
    p.set_defaults(run=cmd_export)


def add_import(commands: Any, db: argparse.ArgumentParser) -> None:
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
