"""Backups and migration: `qledger export` and `qledger import`.

The story: the provincial regulator runs the demo ledger on SQLite and moves it to
PostgreSQL (and, to check the tool on its own, to another SQLite file). The export is
copied over; the import re-verifies every entry as of its recording time and must end at
the same root hash, and the moved ledger must answer every question the same. Then the
file is damaged in transit in every way we could think of, and the import refuses it,
names the line, and leaves the target empty.
"""

from __future__ import annotations

import base64
import io
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from api import demo
from api.cli import main
from ledger import client, keys
from ledger.application import Ledger
from ledger.backup import BadBackup, export, import_file
from ledger.log.checkpoint import Checkpoint, sign_checkpoint, verifier_key
from ledger.log.hasher import leaf_hash
from ledger.log.tree import Frontier
from ledger.log.verify import parse_checkpoint_text, verify_checkpoint
from traceability import blacklist
from traceability.orgs import profile
from traceability.scan import scan
from traceability.stats import pass_rates
from traceability.trace import trace
from traceability.views import Views

AT = datetime(2030, 1, 1, tzinfo=UTC)  # credit and blacklist answered at one fixed time


@pytest.fixture(scope="module")
def demo_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    demo.build(str(folder / "qledger.db"), folder / "log-key.pem", folder / "root-key.pem")
    return folder


@pytest.fixture(scope="module")
def exported(demo_ledger: Path) -> Path:
    out = demo_ledger / "export.jsonl"
    assert main(["export", "--db", str(demo_ledger / "qledger.db"), str(out), "--quiet"]) == 0
    return out


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def answers(ledger: Ledger) -> dict[str, Any]:
    """Every question the read side answers about the demo, as JSON."""
    with Views.open(ledger, clock=lambda: AT) as views:
        out: dict[str, Any] = {}
        for gtin, lot in ((demo.BREAD, "BR20261028-B"), (demo.BREAD, "BR20261028-A"),
                          (demo.FLOUR, "FL20261025-2"), (demo.WHEAT, "WH2026-10A"),
                          (demo.SNACK, "MH-1101")):
            for direction in ("up", "down"):
                out[f"trace {gtin}/{lot} {direction}"] = trace(views, gtin, lot, direction).to_json()
            out[f"scan {gtin}/{lot}"] = scan(views, gtin, lot, at=AT).to_json()
        for uscc in (demo.REGULATOR, demo.FARM, demo.MILL, demo.DECOY_MILL, demo.BAKERY,
                     demo.DISTRIBUTOR, demo.MART_A, demo.MART_B, demo.LAB, demo.WORKSHOP):
            out[f"org {uscc}"] = profile(views, uscc, at=AT).to_json()
        out["blacklist"] = [listing.to_json() for listing in blacklist.current(views, at=AT)]
        out["blacklist history"] = [e.to_json() for e in blacklist.history(views)]
        for period in ("month", "year"):
            out[f"stats {period}"] = [r.to_json() for r in pass_rates(views, period=period)]
        out["views"] = views.dump()
    return out


# ---- the move --------------------------------------------------------------------------------


def test_a_ledger_moved_by_export_and_import_has_the_same_root_and_answers_the_same(
    demo_ledger: Path, exported: Path, db_url: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = Ledger(str(demo_ledger / "qledger.db"))
    size = source.size()
    old = verify_checkpoint(source.checkpoint(), source.config.log_key)

    key_file = tmp_path / "new-log-key.pem"
    code, out, err = run(capsys, "import", "--db", db_url, str(exported),
                         "--log-key", str(key_file), "--quiet")
    assert code == 0, err
    assert f"imported {size} entries" in out and old.root_hash.hex() in out
    assert "generated a new log key" in out and key_file.exists()

    moved = Ledger(db_url, log_key=keys.load_private_key(key_file))
    new = verify_checkpoint(moved.checkpoint(), moved.config.log_key)
    assert (new.origin, new.size, new.root_hash) == (old.origin, old.size, old.root_hash)
    assert moved.config.log_key != source.config.log_key  # a new key, said so above
    assert moved.config.root_org == source.config.root_org == demo.REGULATOR
    # Entry by entry, byte for byte, recorded_at included.
    assert [e.text for e in moved.entries(0, size)] == [e.text for e in source.entries(0, size)]
    assert answers(moved) == answers(source)
    assert run(capsys, "audit", "--db", db_url, "--quiet",
               "--trusted-key", moved.config.log_key)[0] == 0


def test_import_with_the_old_log_key_keeps_checkpoints_verifying_for_witnesses(
    demo_ledger: Path, exported: Path, db_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    source = Ledger(str(demo_ledger / "qledger.db"))
    code, out, err = run(capsys, "import", "--db", db_url, str(exported), "--quiet",
                         "--log-key", str(demo_ledger / "log-key.pem"),
                         "--trusted-key", source.config.log_key)
    assert code == 0, err
    assert "generated" not in out
    moved = Ledger(db_url, log_key=keys.load_private_key(demo_ledger / "log-key.pem"))
    # A witness holding the old ledger's checkpoint verifies the new one with the same key.
    assert verify_checkpoint(moved.checkpoint(), source.config.log_key).root_hash == \
        verify_checkpoint(source.checkpoint(), source.config.log_key).root_hash


def test_export_and_import_through_standard_output_and_input(
    demo_ledger: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, _err = run(capsys, "export", "--db", str(demo_ledger / "qledger.db"), "-", "--quiet")
    assert code == 0
    lines = out.splitlines()
    source = Ledger(str(demo_ledger / "qledger.db"))
    assert len(lines) == source.size() + 1
    assert [json.loads(line)["index"] for line in lines[:-1]] == list(range(source.size()))
    assert set(json.loads(lines[-1])) == {"checkpoint", "log_key"}

    class Pipe(io.StringIO):  # standard input cannot seek; the import copies it aside
        def seekable(self) -> bool:
            return False

    monkeypatch.setattr(sys, "stdin", Pipe(out))
    target = tmp_path / "piped.db"
    code, _out, err = run(capsys, "import", "--db", str(target), "-", "--quiet")
    assert code == 0, err
    assert Ledger(str(target)).size() == source.size()


def test_export_stops_at_the_latest_checkpoint(demo_ledger: Path, exported: Path) -> None:
    lines = exported.read_text().splitlines()
    trailer = json.loads(lines[-1])
    checkpoint = verify_checkpoint(trailer["checkpoint"], trailer["log_key"])
    assert checkpoint.size == len(lines) - 1
    # Each line is the entry's exact bytes with its index spliced in where JCS sorts it.
    source = Ledger(str(demo_ledger / "qledger.db"))
    first = json.loads(lines[3])
    del first["index"]
    assert leaf_hash(json.dumps(first, separators=(",", ":"), sort_keys=True).encode()) == \
        source.entry(3).leaf_hash


# ---- damaged files: refused, line named, nothing imported ------------------------------------


def damaged(exported: Path, tmp_path: Path, change: Any) -> Path:
    lines = exported.read_text().splitlines(keepends=True)
    change(lines)
    out = tmp_path / "damaged.jsonl"
    out.write_text("".join(lines))
    return out


def flip_signature(line: str) -> str:
    entry = json.loads(line)
    sig = bytearray(base64.b64decode(entry["envelope"]["signatures"][0]["sig"]))
    sig[7] ^= 0x10
    entry["envelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    return json.dumps(entry, separators=(",", ":"), sort_keys=True) + "\n"


def swap(lines: list[str], a: int, b: int) -> None:
    lines[a], lines[b] = lines[b], lines[a]


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (lambda lines: lines.pop(20), 21, "index 21 where 20 was due"),
        (lambda lines: swap(lines, 30, 31), 31, "index 31 where 30 was due"),
        (lambda lines: lines.insert(12, lines[11]), 13, "index 11 where 12 was due"),
        (lambda lines: lines.__setitem__(9, lines[9].replace(":", ": ", 1)), 10,
         "not in canonical form"),
        (lambda lines: lines.__setitem__(40, flip_signature(lines[40])), 41, "bad-signature"),
        (lambda lines: lines.__setitem__(
            33, lines[33].replace('"recorded_at":"20', '"recorded_at":"19')), 34, "fails"),
        (lambda lines: lines.__setitem__(5, lines[5][:-20] + "\n"), 6, "not JSON"),
        (lambda lines: lines.pop(), None, "cut short"),
        (lambda lines: lines.pop(-2), None, "covers 57 entries but the file holds 56"),
    ],
    ids=["gap", "reordered", "duplicated", "changed-whitespace", "bad-signature",
         "changed-recorded-at", "truncated-line", "no-trailer", "last-entry-dropped"],
)
def test_a_damaged_export_is_refused_naming_the_line_and_nothing_is_imported(
    exported: Path, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    change: Any, line: int | None, message: str,
) -> None:
    assert len(exported.read_text().splitlines()) == 58  # the parameters count on it
    bad = damaged(exported, tmp_path, change)
    key_file = tmp_path / "new-log-key.pem"
    code, out, err = run(capsys, "import", "--db", db_url, str(bad), "--quiet",
                         "--log-key", str(key_file))
    assert code == 1, out + err
    assert len(err.strip().splitlines()) == 1 and message in err
    if line is not None:
        assert f"line {line}:" in err
    target = Ledger(db_url)
    assert target.size() == 0 and not target.is_created()
    assert not key_file.exists()  # the key generated for it is removed too


def test_a_file_re_signed_by_another_key_is_verified_entry_by_entry_and_rolled_back(
    exported: Path, db_url: str, tmp_path: Path,
) -> None:
    """A forger changes entry 40's signature and re-signs a checkpoint over the changed
    file with a log key of their own. Pass 1 is satisfied (the file is self-consistent);
    replay finds the bad signature at line 41, after 40 entries were written, and the
    import erases them."""
    lines = exported.read_text().splitlines(keepends=True)
    lines[40] = flip_signature(lines[40])
    frontier = Frontier()
    for text in lines[:-1]:
        entry = json.loads(text)
        del entry["index"]
        frontier.append(leaf_hash(json.dumps(entry, separators=(",", ":"), sort_keys=True).encode()))
    origin = parse_checkpoint_text(json.loads(lines[-1])["checkpoint"].split("\n\n")[0] + "\n").origin
    forger = keys.generate_private_key()
    note = sign_checkpoint(Checkpoint(origin, frontier.size, frontier.root()), origin, forger)
    forger_key = verifier_key(origin, forger.public_key().public_bytes_raw())
    lines[-1] = json.dumps({"checkpoint": note, "log_key": forger_key}) + "\n"
    target = Ledger(db_url, log_key=keys.generate_private_key())
    with pytest.raises(BadBackup, match="line 41: entry 40 fails verification: .bad-signature."):
        import_file(io.StringIO("".join(lines)), target)
    target.close()
    target = Ledger(db_url, log_key=keys.generate_private_key())
    assert target.size() == 0 and not target.is_created()
    # The database is usable afterwards: the genuine file goes in.
    with exported.open() as f:
        assert import_file(f, target).size == 57
    # And a trusted key given to the import refuses the forger's checkpoint outright.
    fresh = tmp_path / "fresh.db"
    with pytest.raises(BadBackup, match="another key than the trusted one"):
        import_file(io.StringIO("".join(lines)), Ledger(str(fresh), log_key=forger),
                    trusted_log_key=target.config.log_key)


def test_import_refuses_a_ledger_that_is_not_empty_and_a_missing_file(
    demo_ledger: Path, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    code, _out, err = run(capsys, "import", "--db", str(demo_ledger / "qledger.db"),
                          str(exported), "--log-key", str(demo_ledger / "log-key.pem"))
    assert code == 2 and "holds a ledger already" in err
    code, _out, err = run(capsys, "import", "--db", str(tmp_path / "x.db"), str(tmp_path / "nope"))
    assert code == 2 and "no such file" in err


def test_an_export_of_an_appended_ledger_includes_new_entries(
    demo_ledger: Path, tmp_path: Path,
) -> None:
    """Export is a snapshot at the latest checkpoint; after an append the next export grows."""
    db = tmp_path / "copy.db"
    with (demo_ledger / "export.jsonl").open() as f:
        ledger = Ledger(str(db), log_key=keys.generate_private_key())
        import_file(f, ledger)
    root_key = keys.load_private_key(demo_ledger / "root-key.pem")
    statement = client.new_statement("award.granted", demo.REGULATOR, org=demo.MILL,
                                     title="诚信企业", valid_until="2030-01-01T00:00:00Z")
    ledger.append([client.sign(statement, root_key)])
    out = io.StringIO()
    checkpoint = export(ledger, out)
    assert checkpoint.size == 58 and len(out.getvalue().splitlines()) == 59
