"""`python -m api.cli`: the `qledger` command line, for tests and servers started by path."""

import sys

from api.cli import main

sys.exit(main())
