"""Keeping the views: each entry applied exactly once, whatever crashes or races.

The view rows of a chunk and the tracking position after it commit in one transaction,
and the transaction starts by moving the position from where the chunk starts. So a
crash half-way through a chunk leaves neither rows nor position; a process that read
its position before another moved it applies nothing; and processes catching up side
by side share the log between them without applying any entry twice.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ledger import client
from ledger.application import Ledger
from tests.support import ROOT, World, make_gtin, make_uscc
from traceability import projector
from ledger.store import Database
from traceability import views as views_module
from traceability.credit import credit
from traceability.logreader import APPENDED_TOPIC, LogReader, ReadAhead, _pack, _unpack
from traceability.policy import CreditPolicy
from traceability.scan import scan
from traceability.views import Views

MILL, LAB = make_uscc(51), make_uscc(52)
FLOUR = make_gtin(51)


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    """A mill with 150 lots of flour, a failed check on lot 1, and its correction to a pass."""
    w = World(db_url)
    w.register(MILL, "金穗面粉厂", "producer")
    w.register(LAB, "海峡检测中心", "lab")
    w.ledger.append([
        w.envelope("batch.produced", MILL, gtin=FLOUR, lot=f"F-{n:03d}", product="小麦粉",
                   category="food", quantity=100, unit="kg", produced_at="2026-11-20T06:00:00Z",
                   standard="GB/T 1355-2021", inputs=[])
        for n in range(1, 151)
    ])
    check = w.statement(
        "check.recorded", LAB, gtin=FLOUR, lot="F-001", subject=MILL, kind="supervisory",
        stage="production", sampled_at="2026-11-21T09:00:00Z", standard="GB 2715-2016",
        items=[{"name": "灰分", "value": "0.9", "limit": "0.7", "unit": "%", "verdict": "fail"}],
        verdict="fail", report_no="R-1")
    index = w.ledger.append([client.sign(check, w.keys[LAB])])[0].index
    w.submit("correction", LAB, corrects=index, reason="复检合格",
             replacement={**check, "verdict": "pass"})
    yield w
    w.ledger.close()


@pytest.fixture
def views_of() -> Iterator[Callable[..., Views]]:
    """Views over a ledger, closed after the test."""
    made: list[Views] = []

    def make(ledger: Ledger, **options: Any) -> Views:
        made.append(Views(ledger, **options))
        return made[-1]

    yield make
    for views in made:
        views.close()


def reference(views: Views) -> dict[str, list[tuple[Any, ...]]]:
    views.rebuild()
    return views.dump()


def test_a_rebuild_read_ahead_by_other_processes_gives_the_views_built_entry_by_entry(
    world: World, monkeypatch: pytest.MonkeyPatch, views_of: Callable[..., Views]
) -> None:
    views = views_of(world.ledger)
    views.catch_up()
    incremental = views.dump()
    # A short log, read ahead as a long one is: in many small chunks, by the processes.
    monkeypatch.setattr(views_module, "READ_AHEAD_FROM", 1)
    from_processes: list[bool] = []
    real = ReadAhead._result

    def result(self: ReadAhead, start: int, stop: int, future: Any) -> Any:
        if future is not None:
            from_processes.append(future.exception() is None)
        return real(self, start, stop, future)

    monkeypatch.setattr(ReadAhead, "_result", result)
    assert views.rebuild(chunk_size=7) == world.ledger.size()
    assert views.dump() == incremental
    assert len(from_processes) > 5 and all(from_processes)
    # The correction's replacement crossed between processes and was applied.
    assert credit(views, MILL).score == 100
    # Every field of a parsed entry survives the crossing.
    parsed = LogReader(world.ledger).between(0, world.ledger.recorder.max_notification_id())
    assert any(p.statement is not None and p.statement.replacement is not None for p in parsed)
    assert [_unpack(_pack(p)) for p in parsed] == parsed


def test_read_ahead_from_a_database_that_is_not_the_ledger_reads_here_instead(
    world: World, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = LogReader(world.ledger)
    horizon = world.ledger.recorder.max_notification_id()
    expected = [(reader.between(lo, min(lo + 50, horizon)), min(lo + 50, horizon))
                for lo in range(0, horizon, 50)]
    # The processes would open an empty ledger of the same kind: they refuse to start,
    # and every chunk is read here, the same.
    monkeypatch.setattr(world.ledger, "database", Database(str(tmp_path / "empty.db")))
    ahead = ReadAhead(reader, horizon, processes=1)
    try:
        assert list(ahead.chunks(0, horizon, 50)) == expected
        assert ahead._pool is None  # given up after the first chunk
    finally:
        ahead.close()


def test_a_crash_half_way_through_a_chunk_leaves_neither_rows_nor_position(
    world: World, monkeypatch: pytest.MonkeyPatch, views_of: Callable[..., Views]
) -> None:
    views = views_of(world.ledger, chunk_size=20)
    before, empty = views.position(), views.dump()
    applied = 0
    real = projector.Projector.entry

    def crash_on_the_fifth(self: projector.Projector, parsed: projector.Parsed) -> None:
        nonlocal applied
        applied += 1
        if applied == 5:
            raise RuntimeError("the power went out")
        real(self, parsed)

    monkeypatch.setattr(projector.Projector, "entry", crash_on_the_fifth)
    with pytest.raises(RuntimeError):
        views.catch_up()
    assert (views.position(), views.dump()) == (before, empty)  # four entries rolled back
    monkeypatch.undo()
    views.catch_up()
    caught_up = views.dump()
    assert caught_up == reference(views)
    assert credit(views, MILL).score == 100  # the corrected check: a pass, no points lost


def test_a_process_that_lost_the_race_applies_nothing(
    world: World, db_url: str, views_of: Callable[..., Views]
) -> None:
    winner = views_of(world.ledger, chunk_size=500)
    other = Ledger(db_url)
    try:
        loser = views_of(other, chunk_size=500)
        # The loser reads the log from its position (0) ...
        stale = other.recorder.select_notifications(0, 500, topics=[APPENDED_TOPIC],
                                                    inclusive_of_start=False)
        # ... but the winner applies it first, the correction of the check included.
        assert winner.catch_up() == world.ledger.size()
        done = winner.dump()
        # Applying the stale chunk again would put the original failed verdict back.
        assert loser._apply_chunk(0, stale) is False
        assert loser.dump() == done
        assert [c.verdict for c in scan(loser, FLOUR, "F-001").checks] == ["pass"]
        assert loser.catch_up() == 0
    finally:
        other.close()


def test_a_chunk_overlapping_one_applied_elsewhere_is_refused(
    world: World, db_url: str, views_of: Callable[..., Views]
) -> None:
    first = views_of(world.ledger, chunk_size=10)
    other = Ledger(db_url)
    try:
        second = views_of(other, chunk_size=30)
        chunk = other.recorder.select_notifications(0, 30, topics=[APPENDED_TOPIC],
                                                    inclusive_of_start=False)
        first._apply_chunk(0, chunk[:10])  # ends inside the second's chunk, not at its end
        assert second._apply_chunk(0, chunk) is False
        assert second.catch_up() == world.ledger.size() - 10  # it goes on from there
        assert second.dump() == reference(first)
    finally:
        other.close()


def _catch_up_in_a_process(db_url: str, chunk_size: int, ready: Any, start: Any,
                           out: Any) -> None:
    ledger = Ledger(db_url)
    try:
        with Views(ledger, chunk_size=chunk_size) as views:
            ready.put(chunk_size)
            start.wait()
            out.put(views.catch_up())
    finally:
        ledger.close()


def test_processes_catching_up_side_by_side_apply_every_entry_exactly_once(
    world: World, db_url: str, views_of: Callable[..., Views]
) -> None:
    views = views_of(world.ledger)  # the tables exist before the race, as in a deployment
    ctx = multiprocessing.get_context("spawn")
    ready, start, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_catch_up_in_a_process, args=(db_url, size, ready, start, out))
               for size in (3, 4, 7)]
    for w in workers:
        w.start()
    for _ in workers:
        ready.get(timeout=60)
    start.set()  # all three at once
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    applied = [out.get(timeout=5) for _ in workers]
    assert sum(applied) == world.ledger.size()
    assert views.catch_up() == 0
    raced = views.dump()
    assert raced == reference(views)


def test_an_unreadable_entry_is_set_aside_and_the_rest_applied(
    world: World, views_of: Callable[..., Views]
) -> None:
    views = views_of(world.ledger)
    bad = world.ledger.size()
    world.ledger.record_unverified(bad, "not an entry", world.clock())
    world.submit("credit.adjusted", ROOT, org=MILL, delta=-2, reason="提醒", basis="规则", refs=[])
    views.catch_up()
    assert views.dump()["v_skipped"][0][0] == bad
    assert credit(views, MILL).score == 98


def test_views_built_under_another_policy_are_rebuilt_under_the_new_one(
    world: World, views_of: Callable[..., Views]
) -> None:
    world.submit("check.recorded", LAB, gtin=FLOUR, lot="F-002", subject=MILL, kind="supervisory",
                 stage="production", sampled_at="2026-11-21T09:00:00Z", standard="GB 2715-2016",
                 items=[{"name": "灰分", "value": "0.9", "limit": "0.7", "unit": "%",
                         "verdict": "fail"}], verdict="fail", report_no="R-2")
    default = views_of(world.ledger)
    default.catch_up()
    assert credit(default, MILL).score == 90
    strict = CreditPolicy(name="strict-2027.1", failed_check={"production": -20,
                                                              "circulation": -10})
    views = views_of(world.ledger, policy=strict)
    views.catch_up()
    c = credit(views, MILL)
    assert (c.score, c.policy, {line.policy for line in c.explain}) == (
        80, "strict-2027.1", {"strict-2027.1"})


def test_a_follower_catches_up_in_the_background(
    world: World, views_of: Callable[..., Views]
) -> None:
    views = views_of(world.ledger)
    stop = threading.Event()
    follower = threading.Thread(target=views.follow, args=(stop, 0.01))
    follower.start()
    try:
        world.submit("credit.adjusted", ROOT, org=MILL, delta=-1, reason="提醒", basis="规则",
                     refs=[])
        # Wait on the notification id, not on a clock.
        views.wait(world.ledger.recorder.max_notification_id() or 0, timeout=10)
    finally:
        stop.set()
        follower.join()
    assert credit(views, MILL).score == 99


def test_views_left_by_an_older_release_are_rebuilt_when_opened(
    world: World, views_of: Callable[..., Views]
) -> None:
    views = views_of(world.ledger)
    views.catch_up()
    kept = views.dump()
    with views.recorder.write() as tx:  # tables of schema version 0, and not the same rows
        tx.execute("UPDATE v_meta SET value = '0' WHERE name = 'schema'")
        tx.execute("DELETE FROM v_batches")
    again = views_of(world.ledger)
    assert again.position() == 0
    again.catch_up()
    assert again.dump() == kept


def test_a_write_succeeds_even_when_the_views_fail_to_follow_it(
    world: World, views_of: Callable[..., Views], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    views = views_of(world.ledger)
    views.catch_up()
    views.attach(world.ledger)

    def broken(self: projector.Projector, parsed: projector.Parsed) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(projector.Projector, "entry", broken)
    receipt = world.submit("credit.adjusted", ROOT, org=MILL, delta=-4, reason="提醒",
                           basis="规则", refs=[])
    assert receipt.index == world.ledger.size() - 1  # recorded, and the writer got its receipt
    assert "views did not catch up" in caplog.text
    assert credit(views, MILL).score == 100  # not yet in the views ...
    monkeypatch.undo()
    views.catch_up()
    assert credit(views, MILL).score == 96  # ... until the next catch-up


def test_reading_threads_hold_their_own_connection_only_while_they_live(db_url: str,
                                                                        world: World) -> None:
    """On SQLite each reading thread keeps a connection (and its compiled statements);
    a server's thread pool ends idle threads, and their connections must go with them."""
    import gc

    views = Views.open(world.ledger, fresh_reads=True)
    counts: list[int] = []

    def read() -> None:
        with views.reading() as tx:
            counts.append(tx.value("SELECT COUNT(*) FROM v_batches WHERE gtin = ?", (FLOUR,)))

    threads = [threading.Thread(target=read) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gc.collect()
    assert counts == [150] * 20
    readers = getattr(views.recorder, "_readers", None)  # SQLite only
    assert readers is None or len(readers) == 0
    read()  # this thread's connection, closed with the views
    if readers is not None:
        assert len(readers) == 1
        conn = next(iter(readers)).conn
        views.close()
        with pytest.raises(Exception, match="closed"):
            conn.execute("SELECT 1")
    else:
        views.close()



def test_one_statement_reads_in_its_own_snapshot_and_says_whether_the_views_hold_it(
        world: World) -> None:
    """`Views.statement` does not catch up: a statement selecting `log_horizon` lets its
    caller tell whether the views it read hold every entry of the log it saw."""
    views = Views.open(world.ledger, fresh_reads=True)
    views.catch_up()
    horizon_sql = f"SELECT {views.log_horizon}, COUNT(*) FROM v_credit_lines WHERE org = ?"
    [(horizon, lines)] = views.statement(horizon_sql, (MILL,))
    assert views.holds(horizon)
    world.submit("credit.adjusted", ROOT, org=MILL, delta=4, reason="示范", basis="规则",
                 refs=[])  # not followed by these views
    [(later, same)] = views.statement(horizon_sql, (MILL,))
    assert later > horizon and not views.holds(later) and same == lines
    views.catch_up()
    [(again, more)] = views.statement(horizon_sql, (MILL,))
    assert (again, more) == (later, lines + 1) and views.holds(again)
    # Without fresh reads (one process, views that follow its own writes) it always holds.
    assert Views.open(world.ledger).holds(later + 1000)
    views.close()


def test_a_scan_finds_a_batch_its_views_had_not_taken_in_yet(world: World) -> None:
    """The scan's one statement sees the log past the views (another worker's write):
    it reads again after catching up, rather than answering from the stale rows that
    did not have the batch."""
    views = Views.open(world.ledger, fresh_reads=True)
    views.catch_up()
    assert scan(views, FLOUR, "F-001").batch.lot == "F-001"
    world.submit("batch.produced", MILL, gtin=FLOUR, lot="F-NEW", product="小麦粉",
                 category="food", quantity=5, unit="kg", produced_at="2026-11-21T06:00:00Z",
                 standard="GB/T 1355-2021", inputs=[])  # not followed by these views
    view = scan(views, FLOUR, "F-NEW")
    assert (view.batch.lot, view.batch.entry) == ("F-NEW", world.ledger.size() - 1)
    assert view.checkpoint is not None and view.checkpoint.tree_size == world.ledger.size()
    views.close()


def _analysed(url: str, schema: str, table: str) -> bool:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s", (schema, table)).fetchone()
    return row is not None and row[0] >= 0  # -1: never analysed


@pytest.mark.postgres
def test_postgres_view_tables_are_analysed_after_a_rebuild(pg_schema_url: str) -> None:
    # A server without autovacuum never gathers statistics of the tables a rebuild has
    # just filled: the trace and scan queries would be planned from guesses.
    url, _, schema = pg_schema_url.partition("?schema=")
    world = World(pg_schema_url)
    with Views(world.ledger) as views:
        views.catch_up()
        assert not _analysed(url, schema, "v_batches")
        views.rebuild()
        assert _analysed(url, schema, "v_batches") and _analysed(url, schema, "v_entries")


@pytest.mark.postgres
def test_postgres_rebuild_first_analyses_a_log_never_analysed(pg_schema_url: str) -> None:
    # A few entries, below the ledger's first doubling: the log's table has no
    # statistics, and reading it whole in order could be planned as a sort of it all.
    url, _, schema = pg_schema_url.partition("?schema=")
    world = World(pg_schema_url)
    table = world.ledger.recorder.events_table_name
    with Views(world.ledger) as views:
        assert not _analysed(url, schema, table)
        views.rebuild()
        assert _analysed(url, schema, table)


@pytest.mark.postgres
def test_postgres_view_tables_are_analysed_as_the_log_doubles(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ledger import application

    url, _, schema = pg_schema_url.partition("?schema=")
    world = World(pg_schema_url)
    with Views(world.ledger) as views:
        views.catch_up()  # a few notification ids: below the threshold
        assert not _analysed(url, schema, "v_organizations")
        next_power = 1 << views.position().bit_length()
        monkeypatch.setattr(application, "STATISTICS_FROM", next_power)
        serial = 21
        while (world.ledger.recorder.max_notification_id() or 0) < next_power:
            world.register(make_uscc(serial), f"统计测试{serial}厂", "producer")
            serial += 1
        views.catch_up()  # the notification ids pass a power of two here
        assert _analysed(url, schema, "v_organizations")
