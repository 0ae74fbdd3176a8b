"""The write side's edges that an ordinary member can push on (issue: the server's edges):
free text that would break exports or read differently from what was signed, a score
pushed beyond its bounds, a blacklisting's end date, an all-zero GTIN, and a CLI
pointed at a mistyped path. EVENTS.md "Roles" (free text), "Credit" (the clamp),
`blacklist.added` (`until`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.cli import main
from ledger import client
from ledger.errors import Rejection
from tests.support import ROOT, World, make_uscc
from tests.test_rejections import (  # noqa: F401 - `world` is a fixture
    FLOUR, FLOUR_MILL, batch_fields, refused, world)
from traceability.credit import credit
from traceability.views import Views

# Each breaks an export or misleads a reader: XML 1.0 cannot hold C0 controls, U+FFFE or
# U+FFFF (so neither can XLSX nor SVG); U+202E shows "gpj.exe" as "exe.jpg".
HOSTILE = {
    "NUL": "\x00", "tab": "\t", "newline": "\n", "DEL": "\x7f", "C1 NEL": "\x85",
    "U+FFFE": "\ufffe", "U+FFFF": "\uffff", "U+FDD0": "\ufdd0", "U+10FFFF": "\U0010ffff",
    "U+1FFFE": "\U0001fffe",
    "RLO": "\u202e", "LRE": "\u202a", "PDF": "\u202c", "RLI": "\u2067", "PDI": "\u2069",
}


@pytest.fixture
def views(world: World) -> Iterator[Views]:
    v = Views(world.ledger)
    yield v
    v.close()


@pytest.mark.parametrize("name", list(HOSTILE))
def test_free_text_with_a_character_that_breaks_exports_is_refused(
    world: World, name: str,
) -> None:
    char = HOSTILE[name]
    for fields in (
        batch_fields() | {"product": f"高筋{char}小麦粉"},
        batch_fields() | {"unit": f"k{char}g"},
        batch_fields() | {"standard": f"GB/T 1355{char}"},
    ):
        refused(world, [world.envelope("batch.produced", FLOUR_MILL, **fields)],
                Rejection.BAD_FIELDS, f"U+{ord(char):04X}")
    refused(world, [world.envelope("org.registered", ROOT, uscc=make_uscc(999),
                                   name=f"Mill{char}", roles=["producer"], region="350100")],
            Rejection.BAD_FIELDS)


def test_a_lone_surrogate_is_refused_even_if_it_got_past_the_canonical_form() -> None:
    """A lone surrogate has no canonical JSON form, so no envelope can carry one (the
    payload check refuses it first); the text rule names it all the same."""
    from ledger.statements import forbidden_text

    assert "unpaired surrogate (U+D800)" in (forbidden_text("面\ud800粉") or "")


def test_free_text_that_is_only_unusual_is_recorded(world: World) -> None:
    """Chinese, emoji with zero-width joiners, RTL scripts without overrides: all text."""
    world.submit("batch.produced", FLOUR_MILL,
                 **batch_fields() | {"product": "全麦面粉 👨‍👩‍👧 خبز ＝SUM(A1)"})


def test_awards_cannot_lift_a_score_above_100_and_the_clamp_is_a_line(
    world: World, views: Views,
) -> None:
    for i in range(30):
        world.submit("award.granted", ROOT, org=FLOUR_MILL, title=f"省名牌产品 {i}",
                     valid_until="2030-01-01T00:00:00Z")
    views.catch_up()
    c = credit(views, FLOUR_MILL)
    assert c.score == 100 and c.grade == "A"
    clamp = [line for line in c.explain if line.rule == "clamp"]
    assert len(clamp) == 1 and clamp[0].entry is None and clamp[0].delta == -150
    assert sum(line.delta for line in c.explain) == 100  # explain still adds up
    assert max(p.score for p in c.history) == 100


def test_adjustments_cannot_sink_a_score_below_0(world: World, views: Views) -> None:
    for _ in range(5):
        world.submit("credit.adjusted", ROOT, org=FLOUR_MILL, delta=-1000, reason="严重违法",
                     basis="《产品质量法》第五十条", refs=[])
    views.catch_up()
    c = credit(views, FLOUR_MILL)
    assert c.score == 0 and c.grade == "D"
    assert [line.delta for line in c.explain if line.rule == "clamp"] == [4900]
    assert min(p.score for p in c.history) == 0
    # The scan view's producer standing (kept ahead in the views) agrees.
    world.submit("batch.produced", FLOUR_MILL, **batch_fields())
    views.catch_up()
    from traceability.scan import scan
    assert scan(views, FLOUR, "L20261120").producer.score == 0


def test_a_listing_ends_at_its_until_and_can_then_be_made_again(world: World) -> None:
    now = world.clock.now
    # An end date in the past is refused: a listing cannot end before it starts.
    refused(world, [world.envelope("blacklist.added", ROOT, org=FLOUR_MILL, reason="掺假",
                                   basis="《产品质量法》", refs=[],
                                   until=client.format_time(now.replace(year=2025)))],
            Rejection.BAD_TIME, "until")
    world.submit("blacklist.added", ROOT, org=FLOUR_MILL, reason="掺假", basis="《产品质量法》",
                 refs=[], until=client.format_time(now.replace(day=now.day + 1)))
    refused(world, [world.envelope("blacklist.added", ROOT, org=FLOUR_MILL, reason="再犯",
                                   basis="《产品质量法》", refs=[])],
            Rejection.ALREADY_BLACKLISTED)
    world.clock.advance(days=2)  # the listing has ended
    refused(world, [world.envelope("blacklist.removed", ROOT, org=FLOUR_MILL, reason="信用修复",
                                   refs=[])],
            Rejection.NOT_BLACKLISTED)
    world.submit("blacklist.added", ROOT, org=FLOUR_MILL, reason="再犯", basis="《产品质量法》",
                 refs=[])


def test_an_all_zero_gtin_is_refused(world: World) -> None:
    for gtin in ("00000000000000", "0000000000000", "00000000"):
        refused(world, [world.envelope("batch.produced", FLOUR_MILL,
                                       **batch_fields(gtin=gtin))],
                Rejection.BAD_IDENTIFIER, "all zeros")


@pytest.mark.parametrize("command", [["blacklist"], ["org", ROOT], ["audit"], ["rebuild"]])
def test_the_cli_on_a_mistyped_path_says_so_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str],
) -> None:
    missing = tmp_path / "qledgr.db"
    code = main([command[0], "--db", str(missing), *command[1:]])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("qledger: no ledger at") and err.count("\n") == 1, err
    assert not os.path.exists(missing)


def test_the_free_text_rules_fast_path_misses_no_forbidden_character() -> None:
    """ledger.text skips its search for text Python calls printable; that is only right
    while every forbidden code point is non-printable. Checked over all of Unicode."""
    from ledger.text import _FORBIDDEN

    assert [hex(cp) for cp in range(0x110000)
            if chr(cp).isprintable() and _FORBIDDEN.match(chr(cp))] == []
