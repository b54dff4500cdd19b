"""The layering the tree shows is the layering the code has (docs/architecture.md).

Every import in every module is read from its syntax tree, including imports inside functions
and under ``TYPE_CHECKING``, so a shortcut cannot hide in a local import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gc" / "nsx_route_gc"

DOMAIN = {"models", "judge", "placement", "ports"}
# What the domain may lean on: our error types, the collector pause, and the validated settings
# that a port takes as arguments.
DOMAIN_MAY_USE = DOMAIN | {"errors", "heap", "config"}
CROSS_CUTTING = {"config", "tkg", "errors", "logs", "metrics", "progress", "heap", "untrusted"}
ADAPTERS = {"nsx", "clusters", "reports"}
CLI = {"cli", "__main__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or "__init__"


def modules() -> list[tuple[str, ast.Module]]:
    return [
        (module_name(p), ast.parse(p.read_text(), filename=str(p)))
        for p in sorted(PACKAGE.rglob("*.py"))
    ]


def imported(tree: ast.Module) -> Iterator[str]:
    """Our modules a module imports, relative to the package (``nsx.client``, ``models``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("nsx_route_gc."):
                yield name.removeprefix("nsx_route_gc.")


def top(name: str) -> str:
    return name.split(".", 1)[0]


def layer(name: str) -> str:
    head = top(name)
    if head in DOMAIN:
        return "domain"
    if head in CROSS_CUTTING:
        return "cross-cutting"
    if head in ADAPTERS:
        return "adapter"
    if head == "runs":
        return "run"
    if head in CLI:
        return "cli"
    if head == "simulator":
        return "simulator"
    return "package"


def allowed(importer: str, target: str) -> bool:
    source, wanted = layer(importer), layer(target)
    if source == "domain":
        return top(target) in DOMAIN_MAY_USE
    if source == "cross-cutting":
        return wanted in {"domain", "cross-cutting"}
    if source == "adapter":
        # An adapter uses the domain, the cross-cutting pieces and its own folder, never
        # another adapter, a run or the CLI.
        return wanted in {"domain", "cross-cutting", "package"} or top(target) == top(importer)
    if source == "run":
        return wanted != "cli"
    if source == "simulator":
        return wanted in {"domain", "simulator"}
    return True


def test_every_module_has_a_layer() -> None:
    unknown = [name for name, _ in modules() if layer(name) == "package" and name != "__init__"]
    assert unknown == []


@pytest.mark.parametrize(("importer", "tree"), [pytest.param(n, t, id=n) for n, t in modules()])
def test_imports_follow_the_layers(importer: str, tree: ast.Module) -> None:
    wrong = sorted({t for t in imported(tree) if not allowed(importer, t)})
    assert wrong == [], f"{importer} ({layer(importer)}) must not import {wrong}"


def test_the_rules_refuse_what_they_should() -> None:
    # The checks above must be able to fail: each forbidden direction is refused.
    assert not allowed("judge", "nsx.client")
    assert not allowed("models", "runs.scan")
    assert not allowed("nsx.deleter", "runs.apply")
    assert not allowed("clusters.capi", "runs.scan")
    assert not allowed("reports.rows", "nsx.client")
    assert not allowed("runs.apply", "cli")
    assert not allowed("config", "clusters.inventory")
    assert not allowed("simulator.nsx", "nsx.client")
    assert allowed("clusters.capi", "clusters.inventory")
    assert allowed("runs.apply", "nsx.deleter")


EXITS_AND_PRINTS = {"print", "exit", "quit", "input"}
OUTPUT_ATTRIBUTES = {("sys", "exit"), ("sys", "argv"), ("os", "_exit"), ("typer", "echo")}


def speaks_or_exits(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in EXITS_AND_PRINTS:
                found.append(f"{node.func.id}() at line {node.lineno}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in OUTPUT_ATTRIBUTES:
                found.append(f"{node.value.id}.{node.attr} at line {node.lineno}")
        elif isinstance(node, ast.Name) and node.id == "SystemExit":
            found.append(f"SystemExit at line {node.lineno}")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in {"Exit", "Abort"}
            and isinstance(node.value, ast.Name)
            and node.value.id == "typer"
        ):
            found.append(f"typer.{node.attr} at line {node.lineno}")
    return found


@pytest.mark.parametrize(
    ("name", "tree"), [pytest.param(n, t, id=n) for n, t in modules() if n not in CLI]
)
def test_only_the_cli_prints_reads_argv_and_exits(name: str, tree: ast.Module) -> None:
    assert speaks_or_exits(tree) == [], name


def test_the_cli_check_can_fail() -> None:
    tree = ast.parse("import sys\nprint('x')\nsys.exit(1)\nraise SystemExit(2)\n")
    assert len(speaks_or_exits(tree)) == 3
