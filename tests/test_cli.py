"""The `qledger` command as an operator scripts it (CLI.md): init, keygen, sign, submit."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from api.cli import main
from ledger import client, keys
from ledger.application import Ledger
from ledger.envelope import Envelope
from tests.support import make_gtin, make_uscc

ROOT = make_uscc(1, "110000", "11")
MILL = make_uscc(12)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _init(capsys: pytest.CaptureFixture[str], db: str, *extra: str) -> tuple[int, str, str]:
    return run(capsys, "init", "--db", db, "--origin", "ledger.quality.example/v1",
               "--root-org", ROOT, "--root-name", "国家市场监督管理总局", *extra)


def test_init_creates_the_ledger_and_writes_private_keys_only_for_the_owner(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    log_key, root_key = tmp_path / "log.pem", tmp_path / "keys" / "root.pem"
    root_key.parent.mkdir()
    keys.write_private_key(root_key, keys.generate_private_key())
    code, out, err = _init(capsys, db_url, "--log-key", str(log_key), "--root-key", str(root_key))
    assert code == 0, err
    assert stat.S_IMODE(log_key.stat().st_mode) == 0o600
    ledger = Ledger(db_url)
    assert ledger.size() == 2
    assert ledger.statement_at(0).body["uscc"] == ROOT
    # The root key registered in entry 1 is the one we gave.
    registered = ledger.statement_at(1).body["public_key"]
    assert registered == keys.public_bytes(keys.load_private_key(root_key))
    assert ledger.config.log_key.startswith("ledger.quality.example/v1+")


def test_init_writes_the_keys_beside_a_sqlite_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "data" / "qledger.db"
    db.parent.mkdir()
    code, out, err = _init(capsys, str(db))
    assert code == 0, err
    for name in ("log-key.pem", "root-key.pem"):
        assert stat.S_IMODE((db.parent / name).stat().st_mode) == 0o600


def test_init_refuses_a_ledger_that_is_not_empty(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _init(capsys, db_url, "--log-key", str(tmp_path / "a.pem"),
                 "--root-key", _new_key(tmp_path / "r.pem"))[0] == 0
    code, out, err = _init(capsys, db_url, "--log-key", str(tmp_path / "b.pem"),
                           "--root-key", str(tmp_path / "r.pem"))
    assert code == 2
    assert "holds a ledger already" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b.pem").exists()


def test_init_refuses_a_bad_root_uscc_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "q.db"
    code, out, err = run(capsys, "init", "--db", str(db), "--origin", "x.example/v1",
                         "--root-org", ROOT[:-1] + ("0" if ROOT[-1] != "0" else "1"),
                         "--root-name", "R")
    assert code == 2 and "check digit" in err
    assert not (tmp_path / "log-key.pem").exists() and not (tmp_path / "root-key.pem").exists()


def _new_key(path: Path) -> str:
    keys.write_private_key(path, keys.generate_private_key())
    return str(path)


def test_keygen_prints_the_key_id_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "mill.pem"
    code, out, err = run(capsys, "keygen", str(out_file))
    assert code == 0
    public = keys.public_bytes(keys.load_private_key(out_file))
    assert keys.key_id(public) in out and keys.encode_public_key(public) in out
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    before = out_file.read_bytes()
    code, out, err = run(capsys, "keygen", str(out_file))
    assert code == 2 and out_file.read_bytes() == before


def test_sign_prints_an_envelope_that_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = Path(_new_key(tmp_path / "k.pem"))
    statement = {"type": "batch.shipped", "by": MILL, "gtin": make_gtin(1), "lot": "L1",
                 "quantity": 5, "to": ROOT, "shipment": "S-9"}
    (tmp_path / "s.json").write_text(json.dumps(statement), encoding="utf-8")
    code, out, err = run(capsys, "sign", str(tmp_path / "s.json"), "--key", str(key_file))
    assert code == 0, err
    envelope = Envelope.from_json(out)
    public = keys.public_bytes(keys.load_private_key(key_file))
    envelope.verify(keys.key_id(public), public)
    assert envelope.statement["quantity"] == 5 and "id" in envelope.statement


def test_sign_rejects_a_file_that_is_not_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "s.json").write_text("{not json", encoding="utf-8")
    code, out, err = run(capsys, "sign", str(tmp_path / "s.json"), "--key", _new_key(tmp_path / "k.pem"))
    assert code == 2 and err.startswith("qledger: ") and len(err.splitlines()) == 1


class Operator:
    """A regulator's operator with a fresh ledger and the root key on disk."""

    def __init__(self, tmp_path: Path, db: str, capsys: pytest.CaptureFixture[str],
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.db, self.capsys, self.dir = db, capsys, tmp_path
        monkeypatch.setenv("QLEDGER_LOG_KEY", str(tmp_path / "log.pem"))
        self.root_key = keys.generate_private_key()
        keys.write_private_key(tmp_path / "root.pem", self.root_key)
        assert _init(capsys, db, "--log-key", str(tmp_path / "log.pem"),
                     "--root-key", str(tmp_path / "root.pem"))[0] == 0

    def org(self, n: int) -> dict[str, Any]:
        statement = client.new_statement("org.registered", ROOT, uscc=make_uscc(100 + n),
                                         name=f"超市 {n}", roles=["retailer"], region="350100")
        return client.sign(statement, self.root_key)

    def submit(self, *args: str) -> tuple[int, str, str]:
        return run(self.capsys, "submit", "--db", self.db, *args)


def test_submit_takes_one_envelope_an_array_or_json_lines(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    op = Operator(tmp_path, db_url, capsys, monkeypatch)
    (tmp_path / "one.json").write_text(json.dumps(op.org(1)))
    (tmp_path / "many.json").write_text(json.dumps([op.org(2), op.org(3)]))
    (tmp_path / "many.jsonl").write_text("\n".join(json.dumps(op.org(n)) for n in (4, 5, 6)) + "\n")
    for name, count in (("one.json", 1), ("many.json", 2), ("many.jsonl", 3)):
        code, out, err = op.submit(str(tmp_path / name), "--quiet")
        assert code == 0, err
        receipts = [json.loads(line) for line in out.splitlines()]
        assert len(receipts) == count and all(set(r) >= {"index", "recorded_at", "leaf_hash"}
                                              for r in receipts)
    assert Ledger(db_url).size() == 2 + 6


@pytest.mark.slow
def test_submit_stops_at_a_bad_envelope_and_resumes_after_the_fix(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """2,500 registrations in chunks of 1,000; number 1,500 has a broken signature. The first
    chunk is recorded, the second is not, and running the same command after fixing the
    file records the rest without recording anything twice."""
    op = Operator(tmp_path, db_url, capsys, monkeypatch)
    envelopes = [op.org(n) for n in range(2500)]
    good = envelopes[1500]
    sig = bytearray(base64.b64decode(good["signatures"][0]["sig"]))
    sig[10] ^= 0x01
    broken = dict(good, signatures=[{"keyid": good["signatures"][0]["keyid"],
                                     "sig": base64.b64encode(bytes(sig)).decode()}])
    file = tmp_path / "orgs.jsonl"
    file.write_text("\n".join(json.dumps(e) for e in envelopes[:1500] + [broken] + envelopes[1501:]))
    code, out, err = op.submit(str(file))
    assert code == 2
    assert "envelope 1500" in err and "bad-signature" in err
    assert "1000 envelopes submitted" in err  # progress was shown for the first chunk
    assert Ledger(db_url).size() == 2 + 1000
    file.write_text("\n".join(json.dumps(e) for e in envelopes))
    code, out, err = op.submit(str(file), "--quiet")
    assert code == 0, err
    receipts = [json.loads(line) for line in out.splitlines()]
    assert sum(r["duplicate"] for r in receipts) == 1000
    assert [r["index"] for r in receipts] == list(range(2, 2502))
    assert Ledger(db_url).size() == 2 + 2500


def test_submit_names_a_missing_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "submit", "--db", str(tmp_path / "q.db"), str(tmp_path / "nope.json"))
    assert code == 2 and "no such file" in err and len(err.splitlines()) == 1


def test_usage_errors_are_one_line_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "trace-everything")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_the_console_script_is_installed() -> None:
    result = subprocess.run([sys.executable, "-m", "api.cli", "keygen", "--help"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "OUT" in result.stdout.upper()
