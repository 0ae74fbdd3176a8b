"""Property-based tests of the whole HTTP API against its own OpenAPI document
(schemathesis, in-process over ASGI, on the demo ledger): whatever a client sends that
the document allows (and much that it does not), no answer is a 5xx, and every answer
matches what the document says: status code, content type, headers and body schema.

Not run here: `/v1/feed/stream`, an endless stream (tests/test_feed_stream.py covers it).
Long polls are cut to 0.1 s so that the run stays short.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api import demo
from api.app import create_app
from api.settings import Settings
from ledger import keys
from ledger.application import Ledger

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    db = str(tmp / "q.db")
    demo.build(db, tmp / "log.pem", tmp / "root.pem")
    ledger = Ledger(db, log_key=keys.load_private_key(tmp / "log.pem"))
    app = create_app(ledger, Settings(db=db, read_rate_per_minute=0))
    return schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path="/v1/feed/stream")


def test_every_route_answers_within_its_documented_contract(api_schema: Any) -> None:
    """Each operation in turn, with a bounded number of generated requests; a failure
    names the operation and the request that broke it."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 15  # the whole API, not an empty document

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=50, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def answers_within_contract(case: Any) -> None:
            if case.query and "wait" in case.query:
                case.query["wait"] = 0.1
            case.call_and_validate(checks=CHECKS)

        answers_within_contract()
