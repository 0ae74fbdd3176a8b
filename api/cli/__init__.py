"""The `qledger` command line (CLI.md). Exit status: 0 done, 1 a verification failed,
2 bad input or usage (one line on stderr, nothing changed).

Each command lives beside its arguments in one of three modules: `records` (init, keygen,
sign, submit, checkpoint), `reads` (trace, org, blacklist, stats, qr, labels, case,
bundle, verify-bundle) and `operate` (serve, rebuild, demo, audit, export, import);
`common` holds what they share. Errors are mapped to exit statuses once, in `main`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from api.cli import operate, reads, records
from api.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    EXIT_VERIFY,
    Parser,
    UsageError,
    db_option,
    fail,
)
from api.cli.operate import SERVE_PROTOCOL
from api.remote import ServerError
from ledger.errors import LedgerError, VerificationError

__all__ = ["SERVE_PROTOCOL", "build_parser", "main"]


# The commands in the order `qledger --help` lists them.
COMMANDS = (
    records.add_init,
    records.add_keygen,
    records.add_sign,
    records.add_submit,
    operate.add_serve,
    records.add_checkpoint,
    reads.add_trace,
    reads.add_org,
    reads.add_blacklist,
    reads.add_stats,
    reads.add_qr,
    reads.add_labels,
    operate.add_rebuild,
    operate.add_demo,
    operate.add_audit,
    reads.add_case,
    reads.add_bundle,
    reads.add_verify_bundle,
    operate.add_export,
    operate.add_import,
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="qledger", description="Event-sourced quality-traceability ledger.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    db = db_option()
    for add in COMMANDS:
        add(commands, db)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Every error the ledger raises is mapped here, once."""
    try:
        args = build_parser().parse_args(argv)
        code: int = args.run(args)
        return code
    except UsageError as e:
        return fail(str(e), EXIT_USAGE)
    except ServerError as e:
        return fail(str(e), EXIT_USAGE)
    except VerificationError as e:
        return fail(str(e), EXIT_VERIFY)
    except LedgerError as e:
        return fail(str(e), EXIT_USAGE)
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_USAGE)
    except BrokenPipeError:
        return EXIT_OK
