"""scripts/bench NAME [options]: the project's benchmarks; figures go into BENCHMARKS.md."""

from __future__ import annotations

import sys

from scripts.benchmarks import bundle, http, ingest, log, soak, trace

BENCHES = {"ingest": ingest.main, "log": log.main, "trace": trace.main, "bundle": bundle.main,
           "http": http.main, "soak": soak.main}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHES:
        print(f"usage: scripts/bench {{{','.join(BENCHES)}}} [--json] [options]", file=sys.stderr)
        return 2
    return BENCHES[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
