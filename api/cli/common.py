"""What every command shares: the exit statuses, usage errors, the database option,
opening the ledger and its views, and writing files and progress."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

EXIT_OK, EXIT_VERIFY, EXIT_USAGE = 0, 1, 2

CHUNK = 1000


class UsageError(Exception):
    """Bad arguments or input files, reported in one line with exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def db_option() -> Parser:
    common = Parser(add_help=False)
    common.add_argument(
        "--db",
        help="SQLite file or postgresql:// URL (default: $QLEDGER_DB, else ./qledger.db)",
    )
    return common


def fail(message: str, code: int) -> int:
    print(f"qledger: {message.splitlines()[0] if message else 'error'}", file=sys.stderr)
    return code


def open_ledger(args: argparse.Namespace, *, create: bool = False) -> Any:
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


def beside_database(args: argparse.Namespace, name: str) -> Path:
    from ledger.store import Database

    database = Database.from_env(args.db)
    if database.is_postgres:
        return Path(name)
    return Path(os.path.dirname(os.path.abspath(database.url))) / name


def read_text(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    try:
        return Path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{name}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{name}: cannot read: {e}") from None


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as e:
        raise UsageError(f"{path}: cannot write: {e}") from None


def open_views(args: argparse.Namespace) -> Any:
    from traceability.views import Views

    return Views.open(open_ledger(args))


def print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2))


def progress(args: argparse.Namespace, verb: str) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        if not args.quiet:
            print(f"qledger: {verb} {done}/{total} entries", file=sys.stderr)

    return show
