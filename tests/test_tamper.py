"""Tampering with the database directly (sqlite3 / psql), seen from both sides.

tests/test_audit.py shows `audit()` finding an edited entry, a careful forger, a swap and
a deleted last entry, and tests/test_cli_url.py a witness noticing a deleted last entry.
Here every kind of change (edit, delete from the middle, reorder) is made the way an
insider with database access would make it, and shown to be found twice over:

- by the operator's own `qledger audit`: exit 1, the entry named by its index;
- by an outside client that kept an older signed checkpoint: once the ledger grows,
  `qledger checkpoint --url … --consistent-with OLD` exits 1; and an entry edited without
  rewriting the tree fails its inclusion proof against any checkpoint the client holds.

The insider's ways, from careless to careful: change the row only; or change the row,
its leaf hash and every Merkle node (`rebuild_tree`), and drop the checkpoints signed
after the change, so that the ledger's own code carries on from the forged state.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.cli import main
from ledger.application import Ledger
from ledger.domain.ids import LOG_ID
from ledger.log.hasher import leaf_hash
from ledger.log.tree import Frontier
from ledger.log.verify import RootMismatchError, verify_checkpoint, verify_inclusion
from tests.support import World
from tests.test_audit import delete_checkpoints_from
from tests.test_cli_url import FARM, MILL, WHEAT, server, world  # noqa: F401 - fixtures

State = dict[str, Any]


# ---- what the insider does, with plain SQL ----------------------------------------------------


def _pg(db_url: str) -> tuple[str, str]:
    url, schema = db_url.split("?schema=")
    return url, schema


def read_log(db_url: str) -> tuple[str, list[State]]:
    """The log's rows in version order: (topic, [state, …])."""
    if db_url.startswith("postgresql://"):
        url, schema = _pg(db_url)
        with psycopg.connect(url) as conn:
            rows = conn.execute(f"SELECT topic, state FROM {schema}.qledger_events WHERE "
                                "originator_id=%s ORDER BY originator_version", (LOG_ID,)).fetchall()
    else:
        with sqlite3.connect(db_url) as conn:
            rows = conn.execute("SELECT topic, state FROM stored_events WHERE originator_id=? "
                                "ORDER BY originator_version", (LOG_ID.hex,)).fetchall()
    return rows[0][0], [json.loads(bytes(r[1])) for r in rows]


def write_log(db_url: str, topic: str, states: list[State]) -> None:
    """Replace the log's rows with `states`, numbered 1, 2, … as the library numbers them."""
    rows = [(i + 1, topic, json.dumps(s).encode()) for i, s in enumerate(states)]
    if db_url.startswith("postgresql://"):
        url, schema = _pg(db_url)
        with psycopg.connect(url) as conn, conn.cursor() as cur:
            cur.execute(f"DELETE FROM {schema}.qledger_events WHERE originator_id=%s", (LOG_ID,))
            cur.executemany(f"INSERT INTO {schema}.qledger_events (originator_id, "
                            "originator_version, topic, state) VALUES (%s,%s,%s,%s)",
                            [(LOG_ID, *r) for r in rows])
        return
    with sqlite3.connect(db_url) as conn:
        conn.execute("DELETE FROM stored_events WHERE originator_id=?", (LOG_ID.hex,))
        conn.executemany("INSERT INTO stored_events VALUES (?,?,?,?)",
                         [(LOG_ID.hex, *r) for r in rows])


def rebuild_tree(db_url: str, states: list[State]) -> None:
    """The careful insider recomputes every Merkle node from the (forged) leaf hashes."""
    frontier = Frontier()
    nodes = [n for s in states for n in frontier.append(bytes.fromhex(s["leaf_hash"]))]
    if db_url.startswith("postgresql://"):
        url, schema = _pg(db_url)
        with psycopg.connect(url) as conn, conn.cursor() as cur:
            cur.execute(f"DELETE FROM {schema}.merkle_nodes")
            cur.executemany(f"INSERT INTO {schema}.merkle_nodes VALUES (%s,%s,%s)", nodes)
        return
    with sqlite3.connect(db_url) as conn:
        conn.execute("DELETE FROM merkle_nodes")
        conn.executemany("INSERT INTO merkle_nodes VALUES (?,?,?)", nodes)


def reseal(state: State, text: str, index: int) -> State:
    """A row holding `text` at `index`, its leaf hash made to match."""
    return {**state, "entry": text, "index": index,
            "leaf_hash": leaf_hash(text.encode()).hex()}


def edit(states: list[State], at: int) -> int:
    """Lower a shipment's recording time by a year: a backdated record."""
    text = states[at]["entry"].replace('"recorded_at":"2026', '"recorded_at":"2025')
    assert text != states[at]["entry"]
    states[at] = reseal(states[at], text, at)
    return at


def delete(states: list[State], at: int) -> int:
    """Remove an entry and close the gap, renumbering the ones after it."""
    del states[at]
    for i in range(at, len(states)):
        states[i] = reseal(states[i], states[i]["entry"], i)
    return at


def reorder(states: list[State], at: int) -> int:
    """Swap two neighbours, each renumbered to its new place."""
    states[at], states[at + 1] = states[at + 1], states[at]
    for i in (at, at + 1):
        states[i] = reseal(states[i], states[i]["entry"], i)
    return at


def tamper(db_url: str, change: Callable[[list[State], int], int], at: int) -> int:
    """The careful way: rows, leaf hashes, tree, and the checkpoints signed since."""
    topic, states = read_log(db_url)
    changed = change(states, at)
    write_log(db_url, topic, states)
    rebuild_tree(db_url, states)
    delete_checkpoints_from(db_url, changed + 1)
    return changed


# ---- the stories ------------------------------------------------------------------------------


def grow(world: World, db_url: str, n: int) -> None:
    """The ledger carries on after the tampering: a fresh process, so no cache remembers
    the truth, records more shipments."""
    world.ledger = Ledger(db_url, clock=world.clock, log_key=world.log_key)
    for k in range(n):
        world.ship(FARM, WHEAT, "W1", 1, MILL, f"S-after-{k}")


def audit_cli(capsys: pytest.CaptureFixture[str], db_url: str, key: str) -> tuple[int, str]:
    code = main(["audit", "--db", db_url, "--quiet", "--trusted-key", key])
    return code, capsys.readouterr().out


def witness(capsys: pytest.CaptureFixture[str], url: str, key: str, old: Path) -> tuple[int, str]:
    code = main(["checkpoint", "--url", url, "--log-key", key, "--consistent-with", str(old)])
    out, err = capsys.readouterr()
    return code, out + err


@pytest.mark.parametrize(("change", "at", "bad"), [
    (edit, 6, {6}),
    (delete, 6, {6}),
    (reorder, 6, {6}),  # a shipment moved before the production it ships from
], ids=["edited", "deleted-from-the-middle", "reordered"])
def test_careful_tampering_is_found_by_audit_and_by_a_witness_with_an_older_checkpoint(
    world: World, server: str, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    change: Callable[[list[State], int], int], at: int, bad: set[int],
) -> None:
    # The story so far: four shipments from the farm to the mill, received.
    for n in range(4):
        world.ship(FARM, WHEAT, "W1", 100, MILL, f"S-{n}")
        world.receive(MILL, f"S-{n}", 100)
    key = world.ledger.config.log_key
    # A bank's system keeps the checkpoint it saw.
    old = tmp_path / "bank.txt"
    old.write_text(httpx.get(server + "/v1/checkpoint").text)
    old_size = verify_checkpoint(old.read_text(), key).size
    assert witness(capsys, server, key, old)[0] == 0
    assert audit_cli(capsys, db_url, key)[0] == 0

    tamper(db_url, change, at)
    grow(world, db_url, 2)

    code, out = audit_cli(capsys, db_url, key)
    assert code == 1, out
    named = {int(line.split(":")[0].removeprefix("entry ")) for line in out.splitlines()
             if line.startswith("entry ")}
    assert bad <= named, out
    assert "audit FAILED" in out

    code, said = witness(capsys, server, key, old)
    assert code == 1, said
    assert "not consistent" in said or "shrank" in said, said
    assert world.ledger.size() >= old_size


def test_an_edit_that_leaves_the_tree_alone_fails_the_inclusion_proof(
    world: World, server: str, db_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """The careless insider edits only the row. The tree and the checkpoints still commit
    to the true entry, so the witness sees nothing odd; but a client that fetches the
    entry with its proof finds that the bytes it was given are not in the signed tree, and
    the audit names it."""
    target = world.ship(FARM, WHEAT, "W1", 100, MILL, "S-1").index
    world.receive(MILL, "S-1", 100)
    key = world.ledger.config.log_key
    topic, states = read_log(db_url)
    states[target]["entry"] = states[target]["entry"].replace('"recorded_at":"2026',
                                                              '"recorded_at":"2025')
    write_log(db_url, topic, states)

    answer = httpx.get(f"{server}/v1/entries/{target}/proof").json()
    checkpoint = verify_checkpoint(answer["checkpoint"], key)
    entry = json.dumps(answer["entry"], separators=(",", ":"), sort_keys=True).encode()
    with pytest.raises(RootMismatchError):
        verify_inclusion(target, checkpoint.size, leaf_hash(entry),
                         [bytes.fromhex(h) for h in answer["inclusion"]], checkpoint.root_hash)
    # The leaf hash the server sends along is the true one: the proof holds for it.
    verify_inclusion(target, checkpoint.size, bytes.fromhex(answer["leaf_hash"]),
                     [bytes.fromhex(h) for h in answer["inclusion"]], checkpoint.root_hash)
    code, out = audit_cli(capsys, db_url, key)
    assert code == 1 and f"entry {target}:" in out
