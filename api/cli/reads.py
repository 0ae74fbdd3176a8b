"""Commands that read the views and the log: trace, org, blacklist, stats, qr, labels,
case, bundle, and verify-bundle (offline: no database, no network)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from api.cli.common import (
    EXIT_OK,
    EXIT_VERIFY,
    UsageError,
    open_ledger,
    open_views,
    print_json,
)
from ledger.errors import VerificationError


def cmd_trace(args: argparse.Namespace) -> int:
    from traceability.trace import trace

    with open_views(args) as views:
        graph = trace(views, args.gtin, args.lot, args.direction).to_json()
    if args.json:
        print_json(graph)
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

    with open_views(args) as views:
        org = profile(views, args.uscc).to_json()
    if args.json:
        print_json(org)
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

    with open_views(args) as views:
        rows = ([e.to_json() for e in blacklist.history(views)] if args.history
                else [listing.to_json() for listing in blacklist.current(views)])
    if args.json:
        print_json(rows)
        return EXIT_OK
    for row in rows:
        print("  ".join(str(row.get(k, "")) for k in ("org", "name", "since", "reason") if k in row)
              if not args.history else json.dumps(row, ensure_ascii=False))
    if not rows:
        print("the blacklist is empty")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    from traceability.stats import pass_rates

    with open_views(args) as views:
        rates = [r.to_json() for r in pass_rates(views, period=args.period)]
    if args.json:
        print_json(rates)
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
    with open_views(args) as views:
        product = scan(views, gtin, lot).batch.product
    sheet = labels.run_labels(args.resolver, gtin, lot, product, args.count, args.serial_from)
    data = labels.sheet_pdf(sheet) if suffix == ".pdf" else labels.sheet_svg(sheet)
    args.out.write_bytes(data)
    print(f"{len(sheet)} labels for {sheet[0].uri if not args.serial_from else gtin + '/' + lot}"
          f" in {args.out}")
    return EXIT_OK


def cmd_case(args: argparse.Namespace) -> int:
    from traceability import exports, picture
    from traceability.cases import case_view

    if not (args.csv or args.xlsx or args.svg):
        raise UsageError("name at least one of --csv FILE, --xlsx FILE, --svg FILE")
    with open_views(args) as views:
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

    ledger = open_ledger(args)
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


def add_trace(commands: Any, db: argparse.ArgumentParser) -> None:
    p = commands.add_parser("trace", parents=[db], help="trace a batch up or down the chain")
    p.add_argument("gtin")
    p.add_argument("lot")
    way = p.add_mutually_exclusive_group(required=True)
    way.add_argument("--up", dest="direction", action="store_const", const="up")
    way.add_argument("--down", dest="direction", action="store_const", const="down")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_trace)


def add_org(commands: Any, db: argparse.ArgumentParser) -> None:
    p = commands.add_parser("org", parents=[db], help="an organization and its credit")
    p.add_argument("uscc")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_org)


def add_blacklist(commands: Any, db: argparse.ArgumentParser) -> None:
    p = commands.add_parser("blacklist", parents=[db], help="the quality-dishonesty blacklist")
    p.add_argument("--history", action="store_true", help="every listing and delisting")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_blacklist)


def add_stats(commands: Any, db: argparse.ArgumentParser) -> None:
    p = commands.add_parser("stats", parents=[db], help="supervisory check pass rates")
    p.add_argument("--period", choices=["month", "year"], default="year")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_stats)


def add_qr(commands: Any, db: argparse.ArgumentParser) -> None:
    p = commands.add_parser("qr", help="the QR code of a batch's GS1 Digital Link URI")
    p.add_argument("gtin")
    p.add_argument("lot")
    p.add_argument("-o", "--out", type=Path, required=True, help="FILE.png or FILE.svg")
    p.add_argument("--resolver", default=os.environ.get("QLEDGER_RESOLVER", "https://id.qledger.example"),
                   help="scheme and host of the resolver (default $QLEDGER_RESOLVER)")
    p.set_defaults(run=cmd_qr)


def add_labels(commands: Any, db: argparse.ArgumentParser) -> None:
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


def add_case(commands: Any, db: argparse.ArgumentParser) -> None:
    p = commands.add_parser("case", parents=[db],
                            help="a dispute case's entries as CSV or XLSX, its batches as SVG")
    p.add_argument("case_id", metavar="ID")
    p.add_argument("--csv", type=Path, metavar="FILE", help="one row per entry (RFC 4180)")
    p.add_argument("--xlsx", type=Path, metavar="FILE", help="the same rows as a sortable sheet")
    p.add_argument("--svg", type=Path, metavar="FILE", help="the trace picture of its batches")
    p.add_argument("--lang", choices=["zh", "en"], default="zh",
                   help="language of the summaries and the picture's labels (default zh)")
    p.set_defaults(run=cmd_case)


def add_bundle(commands: Any, db: argparse.ArgumentParser) -> None:
    p = commands.add_parser("bundle", parents=[db],
                            help="write the evidence bundle of a case or a batch (DISPUTES.md)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--case", metavar="ID", help="a dispute case's id")
    what.add_argument("--batch", nargs=2, metavar=("GTIN", "LOT"), help="one batch")
    p.add_argument("-o", "--out", type=Path, required=True, help="the bundle file to write")
    p.set_defaults(run=cmd_bundle)


def add_verify_bundle(commands: Any, db: argparse.ArgumentParser) -> None:
    p = commands.add_parser("verify-bundle",
                            help="verify an evidence bundle offline: no database, no network")
    p.add_argument("file", help="the bundle, or - for standard input")
    p.add_argument("--log-key", metavar="KEYSTRING",
                   help="the log's verifier key as you hold it: the bundle must be of that log")
    p.set_defaults(run=cmd_verify_bundle)
