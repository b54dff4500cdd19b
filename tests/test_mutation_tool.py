"""tools/mutation.py (make mutation): its notes and docs/mutation.md, without running mutmut."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation_tool", ROOT / "tools" / "mutation.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


tool = _tool()


def survivor(after: str, line: int = 7, function: str = "_hold") -> Any:
    return tool.Survivor("gc/nsx_route_gc/judge.py", line, function, "a < b", after, False)


def result(module: str, *survivors: Any, killed: int = 9) -> Any:
    counts = {"killed": killed, "survived": len(survivors)}
    return tool.Result(module, counts, list(survivors), 12.0, 1)


def test_every_module_and_test_file_of_the_mapping_exists() -> None:
    for module, tests in tool.MODULES.items():
        assert (ROOT / "gc" / module).is_file(), module
        for test in tests:
            assert (ROOT / test).is_file(), test


def test_the_shipped_notes_parse(tmp_path: Path) -> None:
    assert tool.load_notes()  # tools/mutation_notes.txt
    bad = tmp_path / "notes.txt"
    bad.write_text("# a comment\n\njudge.py::f: a → b  without a reason\n")
    with pytest.raises(SystemExit, match=r"notes\.txt:3: expected"):
        tool.load_notes(bad)


def test_mutant_names_give_the_function_or_method() -> None:
    assert tool.function_of("nsx_route_gc.judge.x__hold__mutmut_3") == "_hold"
    assert tool.function_of("nsx_route_gc.judge.xǁ_Indexǁ__init____mutmut_1") == "_Index.__init__"


def test_the_doc_gets_one_section_per_module_and_a_table_of_all() -> None:
    doc = "# Mutation\n\n<!-- table -->\n<!-- /table -->\n"
    explained = survivor("a <= b")
    notes = {explained.key: "equivalent: because"}
    doc = tool.update_doc(doc, result("judge.py", explained, survivor("a > b")), notes)
    doc = tool.update_doc(doc, result("apply.py"), notes)
    before = result("judge.py", survivor("a >= b"), survivor("a == b"), killed=1)
    doc = tool.update_doc(doc, before, notes, baseline="abc123")
    assert doc.count("<!-- module: judge.py -->") == 1
    assert "### judge.py: 2 surviving, 1 NOT EXPLAINED" in doc
    assert "`a < b` → `a <= b`: equivalent: because" in doc
    assert "`a < b` → `a > b`: NOT EXPLAINED" in doc
    assert "| judge.py | 3, 33.3% (abc123) | 11, 81.8% | 12 s |" in doc
    assert "| apply.py | - | 9, 100.0% | 12 s |" in doc
    assert "### apply.py: 0 surviving" in doc
