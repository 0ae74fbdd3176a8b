"""The recorder contract: what the ledger's own queries promise, written once and run on
every backend (ledger/store/sqlite.py and ledger/store/postgres.py must agree).

The story: a mill's ledger with its cast registered and a few batches made and shipped.
Each of the queries the writer, the audit, the proofs and the views make of the
recorder is asked of it, and its answer is checked against what the log itself says:
the entries read back the slow way, the tree recomputed from their leaves, the
statements table counted.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from ledger.domain.ids import LEDGER_ID, LOG_ID
from ledger.domain.log import APPENDED_TOPIC
from ledger.intake import statement_key
from ledger.log.tree import Frontier
from tests.support import World
from tests.test_rejections import (  # noqa: F401 - `world` is a fixture
    BAKERY, FLOUR, FLOUR_MILL, batch_fields, world)


def _story(world: World) -> None:
    for i in range(5):
        world.submit("batch.produced", FLOUR_MILL, **batch_fields(lot=f"C{i}"))
    world.ship(FLOUR_MILL, FLOUR, "C0", 10, BAKERY, "SHIP-C0")


def test_every_statement_has_its_row_and_the_table_holds_no_other(world: World) -> None:
    _story(world)
    ledger, recorder = world.ledger, world.ledger.recorder
    size = ledger.size()
    entries = ledger.entries(0, size)
    keys = [statement_key(ledger.statement_at(e.index).id) for e in entries]
    rows = recorder.find_statements(keys)
    assert len(rows) == size
    for e, key in zip(entries, keys, strict=True):
        found_key, index, digest, recorded_at, leaf = rows[key]
        assert (found_key, index, leaf) == (key, e.index, e.leaf_hash)
        assert len(digest) == 32 and recorded_at == e.to_json()["recorded_at"]
    assert recorder.find_statements([]) == {}
    assert recorder.find_statements([bytes(16)]) == {}
    assert recorder.count_statements() == size
    # Read through in id order, a page at a time: each row once.
    seen: list[bytes] = []
    after = b""
    while page := recorder.statement_rows_after(after, 3):
        seen.extend(row[0] for row in page)
        after = page[-1][0]
    assert seen == sorted(keys)


def test_versions_and_streams_are_read_in_order_and_gaps_left_out(world: World) -> None:
    _story(world)
    ledger, recorder = world.ledger, world.ledger.recorder
    size = ledger.size()
    wanted = [size, 1, 3, size + 5]  # unordered, and one past the end
    found = recorder.select_versions(LOG_ID, wanted)
    assert [e.originator_version for e in found] == [1, 3, size]
    # Events after a version, for several streams at once: each stream's in order.
    after = recorder.select_events_after([(LOG_ID, size - 2), (LEDGER_ID, 0)])
    by_stream: dict[UUID, list[int]] = {}
    for e in after:
        by_stream.setdefault(e.originator_id, []).append(e.originator_version)
    assert by_stream[LOG_ID] == [size - 1, size]
    assert by_stream[LEDGER_ID] == sorted(by_stream[LEDGER_ID]) and by_stream[LEDGER_ID]


def test_every_aggregate_event_is_read_through_once_but_the_streams_skipped(
    world: World,
) -> None:
    _story(world)
    recorder = world.ledger.recorder
    seen: list[tuple[Any, int]] = []
    after: tuple[Any, int] = (UUID(int=0), 0)
    while page := recorder.aggregate_events_after(after, (LOG_ID, LEDGER_ID), 4):
        seen.extend((row[0], row[1]) for row in page)
        after = (page[-1][0], page[-1][1])
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    ids = {UUID(str(i)) if not isinstance(i, UUID) else i for i, _ in seen}
    assert LOG_ID not in ids and LEDGER_ID not in ids and len(ids) > 5


def test_the_stored_tree_is_the_tree_of_the_entries_and_nothing_more(world: World) -> None:
    _story(world)
    ledger, recorder = world.ledger, world.ledger.recorder
    size = ledger.size()
    frontier, expected = Frontier(), {}
    for e in ledger.entries(0, size):
        expected.update({(level, idx): value for level, idx, value in frontier.append(e.leaf_hash)})
    assert recorder.nodes_completed_in(0, size) == expected
    assert recorder.nodes_completed_in(size, size) == {}
    assert recorder.nodes_beyond(size, 10) == []
    # The checkpoint of the latest size is the latest, and found by its size.
    latest_size, note = recorder.latest_checkpoint()
    assert latest_size == size and recorder.checkpoint_at(size) == note
    assert recorder.checkpoint_at(size + 1) is None


def test_the_log_states_are_read_by_notification_in_order(world: World) -> None:
    _story(world)
    recorder = world.ledger.recorder
    states = recorder.select_states(0, 1000, 10**9, APPENDED_TOPIC)
    assert len(states) == world.ledger.size()
    ids = [s.id for s in states]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # A window and a limit: only what lies in (start, stop], at most `limit`.
    window = recorder.select_states(ids[1], 2, ids[4], APPENDED_TOPIC)
    assert [s.id for s in window] == ids[2:4]
