"""One home for the statement types: ledger/statement_types.py names every type of
EVENTS.md once, and every table that treats types differently is keyed by it.

The story: a new type is about to arrive (EVENTS.md already describes `gln.registered`,
`case.accepted` and `batch.disposed`). Whoever adds it adds a member to StatementType
and its facts to FACTS; these tests then name each table that still lacks it, and
refuse a type spelled out as a string anywhere else in the production code.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from ledger.rules import RULES, may_withdraw
from ledger.statement_types import FACTS, StatementType
from ledger.statements import TYPES
from ledger.timeline import _SUMMARIES
from traceability.exports.rows import _SAY
from traceability.projector import _HANDLERS

ROOT = Path(__file__).resolve().parent.parent
EVERY = set(StatementType)
# Types whose statements change no view row of their own: keys live in the write side's
# aggregates, and a correction is applied by the projector as the type it corrects.
NOT_PROJECTED = {StatementType.KEY_REGISTERED, StatementType.KEY_REVOKED,
                 StatementType.CORRECTION}


def test_every_type_has_its_fields_its_rule_and_its_facts() -> None:
    assert set(TYPES) == EVERY
    assert set(RULES) == EVERY
    assert set(FACTS) == EVERY
    assert all(FACTS[kind].label_zh.strip() for kind in EVERY)


def test_every_type_is_told_on_the_timeline_and_in_the_exports() -> None:
    assert set(_SUMMARIES) == EVERY
    for lang, says in _SAY.items():  # a correction is said on its own
        assert EVERY - {StatementType.CORRECTION} <= set(says), lang


def test_every_type_is_projected_or_known_not_to_be() -> None:
    assert set(_HANDLERS) == EVERY - NOT_PROJECTED


def test_a_member_is_its_wire_name_in_every_table() -> None:
    # A parsed statement's type is a plain string: it must find the member's entries.
    for kind in EVERY:
        wire = str(kind.value)
        assert type(wire) is str and wire == kind and hash(wire) == hash(kind)
        assert RULES[wire] is RULES[kind] and FACTS[wire] is FACTS[kind]


def test_only_statements_the_write_side_did_not_act_on_may_be_withdrawn() -> None:
    withdrawable = {kind for kind in EVERY if may_withdraw(kind)}
    assert withdrawable == {StatementType.CHECK_RECORDED, StatementType.RECALL_ISSUED,
                            StatementType.CREDIT_ADJUSTED, StatementType.AWARD_GRANTED,
                            StatementType.CASE_EVIDENCE, StatementType.CORRECTION}
    for kind in EVERY:  # the subject is always among the fixed fields
        assert FACTS[kind].fixed[: len(FACTS[kind].subject)] == FACTS[kind].subject


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _spelled_out(path: Path) -> list[str]:
    """Where a production module spells a type's wire name in a string literal (not in
    a docstring or a comment, which describe EVENTS.md in its own words)."""
    names = "|".join(re.escape(k.value) for k in sorted(EVERY, key=len, reverse=True)
                     if "." in k.value)
    pattern = re.compile(rf"(?<![\w.])({names})(?![\w])")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in docs and pattern.search(node.value)):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:60]!r}")
        elif (isinstance(node, ast.Constant) and node.value == StatementType.CORRECTION.value
                and id(node) not in docs):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: 'correction'")
    return found


@pytest.mark.parametrize("package", ["ledger", "traceability", "api"])
def test_type_names_are_spelled_out_only_in_the_registry(package: str) -> None:
    found = [where for path in sorted((ROOT / package).rglob("*.py"))
             if path.name != "statement_types.py" for where in _spelled_out(path)]
    assert found == []


def test_the_scan_finds_a_type_spelled_out(tmp_path: Path) -> None:
    # The scan itself can fail: a module comparing with a literal is caught.
    module = ROOT / "ledger" / "_scan_probe.py"
    module.write_text('"""Mentions batch.shipped in a docstring, which is fine."""\n'
                      'SQL = "WHERE rule = \'credit.adjusted\'"\n'
                      'def f(s):\n    return s.type == "batch.shipped"\n', encoding="utf-8")
    try:
        found = _spelled_out(module)
    finally:
        module.unlink()
    assert [w.split(":")[1] for w in found] == ["2", "4"]
