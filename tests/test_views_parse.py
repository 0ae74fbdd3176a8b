"""Reading the log's stored states for the views: the sliced read of a state in the
form the ledger writes gives what json.loads gives, and any other form is read the
long way, to the same entry."""

from __future__ import annotations

import json
import os

from ledger.domain.log import UNVERIFIED
from tests.support import World, make_gtin, make_uscc
from ledger.log.entry_format import read_stored_state as _written_state
from ledger.log.entry_format import written_parts as _as_written
from traceability.logreader import APPENDED_TOPIC
from traceability.views import Views

MILL = make_uscc(61)


def test_a_state_is_sliced_as_it_is_decoded_and_other_forms_are_decoded(tmp_path: str) -> None:
    world = World(os.path.join(tmp_path, "ledger.db"))
    try:
        world.register(MILL, "金穗面粉厂", "producer")
        world.produce(MILL, make_gtin(61), "F-1", 100)
        views = Views(world.ledger)
        states = world.ledger.recorder.select_states(0, 100, 10**9, APPENDED_TOPIC)
        assert states
        for recorded in states:
            text = recorded.state.decode()
            state = json.loads(text)
            assert _written_state(text) == (state["index"], *_as_written(state["entry"]))
            parsed = views._parse(recorded)
            # Each change keeps the state's meaning but not the form sliced (or makes
            # the entry unverified): read the long way, to the same entry.
            for other in (
                text.replace(',"index":', ', "index":'),
                text.replace('\\"recorded_at\\"', '\\"recorded\\u005fat\\"'),
                text.replace('\\"payload\\":\\"', '\\"payload\\":\\u0022'),
            ):
                assert _written_state(other) is None
                assert views._parse(recorded._replace(state=other.encode())) == parsed
            unverified = text.replace('"statement_id":"', f'"statement_id":"{UNVERIFIED}')
            assert _written_state(unverified) is None
            # A string escaping a backslash, or holding a raw quote, is not sliced.
            assert _written_state(text.replace('\\"payloadType', '\\\\\\"payloadType')) is None
            assert _written_state(text.replace('\\"payloadType', '"payloadType')) is None
        views.close()
    finally:
        world.ledger.close()
