"""What README.md and docs/ quote of the tool's output is its output, byte for byte.

A quoted block follows a marker line ``<!-- output: NAME -->``; this test makes NAME's output
again (a run against the simulator's seed scenario; the parts that differ from run to run,
the manager's address, times, operator, run id and the paths, are those of the example
below) and compares. A line ``...`` in a quote stands for lines left out. With
NSX_ROUTE_GC_UPDATE_DOCS=1 the blocks are written instead of compared.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from applykit import simulated
from typer.testing import CliRunner

from nsx_route_gc.cli import cli
from nsx_route_gc.models import plan_sha256
from nsx_route_gc.reports.render import to_markdown, to_terminal
from nsx_route_gc.reports.rows import fill_rows
from nsx_route_gc.reports.saved_plan import DELETED_BY_THIS_TOOL, restore_sha256
from nsx_route_gc.runs import frame as app
from nsx_route_gc.runs.apply import run_apply

ROOT = Path(__file__).resolve().parents[1]
QUOTING = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# The fence may be longer than three backticks, to quote Markdown that has fences itself.
MARKER = re.compile(r"^<!-- output: ([\w-]+) -->\n(`{3,})\w*\n(.*?)^\2$", re.M | re.S)

HOST = "nsx.example.com"
WHEN = "2026-11-26T01:50:11Z"
CREATED = "2026-11-23T01:50:11Z"
CREATED_MS = 1795398611000  # CREATED, in NSX epoch milliseconds
SCAN_DIR = "CHG-1234/scan"
APPLY_DIR = "CHG-1234/apply"


def pinned(report: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The report as the example shows it: the run-to-run parts fixed, digests made again."""
    report = json.loads(json.dumps(report))
    fill_rows(report["routes"], report["clusters"])  # as every reader of a report.json does
    report.update(started_at=WHEN, finished_at=WHEN, operator="operator@laptop", run_id=run_id)
    report["config"] = "cfg.yaml"
    report["nsx"]["host"] = HOST
    for cluster in report["clusters"]:
        if cluster.get("nsx_host"):  # the simulator's, as the cluster's CCM names it
            cluster["nsx_host"] = HOST
    for row in report["routes"]:
        row["create_time"] = CREATED
        body = row.get("nsx_object")
        if isinstance(body, dict):  # the simulator stamps each route with the test's clock
            body.update(_create_time=CREATED_MS, _last_modified_time=CREATED_MS)
    applied = report.get("apply")
    if isinstance(applied, dict) and applied.get("restore_sha256"):
        ours = [
            (r["router_path"], r["id"], r["nsx_object"])
            for r in report["routes"]
            if str(r.get("note") or "").startswith(DELETED_BY_THIS_TOOL)
        ]
        applied["restore_sha256"] = restore_sha256(HOST, ours)
    deletions = [
        (r["router_path"], r["id"], r["revision"])
        for r in report["routes"]
        if r["action"] == "delete"
    ]
    report["plan_sha256"] = plan_sha256(HOST, deletions)
    if report.get("apply_command"):
        report["apply_command"] = (
            f"nsx-route-gc apply --config cfg.yaml --plan {SCAN_DIR}/report.json "
            f"--plan-sha256 {report['plan_sha256']} --report-dir {APPLY_DIR}"
        )
    return report


def paths(directory: str) -> list[str]:
    return [f"{directory}/report.{ext}" for ext in ("json", "md", "csv")]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("docs")
    with simulated(tmp) as env:
        scanned = app.run_scan(env.config, report_dir=tmp / "scan")
        assert scanned.report is not None
        scan = pinned(json.loads((tmp / "scan" / "report.json").read_text()), "3f2a9c1e7b44")
        applied = run_apply(
            env.config,
            confirm=lambda _: True,
            plan_path=tmp / "scan" / "report.json",
            plan_sha256=scanned.report["plan_sha256"],
            report_dir=tmp / "apply",
        )
        assert applied.exit_code == 0, applied.error
        evidence = pinned(json.loads((tmp / "apply" / "report.json").read_text()), "8d1e0b6a2c57")
        deleted = [
            (r["router_path"], r["id"], r["revision"])
            for r in evidence["routes"]
            if r["action"] == "deleted"
        ]
        evidence["apply"].update(
            source=f"{SCAN_DIR}/report.json",
            plan_sha256=scan["plan_sha256"],
            approved_sha256=scan["plan_sha256"],
            deleted_sha256=plan_sha256(HOST, deleted),
        )
    listing = CliRunner().invoke(cli, ["simulate", "--list"])
    assert listing.exit_code == 0
    return {
        "scan-terminal": to_terminal(scan, paths(SCAN_DIR)),
        "scan-report-md": to_markdown(scan),
        "apply-terminal": to_terminal(evidence, paths(APPLY_DIR)),
        "simulate-list": listing.stdout,
    }


def quotes() -> Iterator[tuple[Path, str, str]]:
    for path in QUOTING:
        for match in MARKER.finditer(path.read_text(encoding="utf-8")):
            yield path, match.group(1), match.group(3)


def matches(quote: str, output: str) -> bool:
    """Each run of lines between ``...`` lines appears in the output, in order."""
    chunks = re.split(r"^\.\.\.\n", quote, flags=re.M)
    at = 0
    for chunk in chunks:
        found = output.find(chunk, at)
        if found < 0:
            return False
        at = found + len(chunk)
    return True


def test_the_quoted_outputs_are_the_tools(outputs: dict[str, str]) -> None:
    if os.environ.get("NSX_ROUTE_GC_UPDATE_DOCS") == "1":
        _update(outputs)
    found = list(quotes())
    assert {name for _, name, _ in found} == set(outputs), "every output quoted somewhere"
    for path, name, quote in found:
        assert matches(quote, outputs[name]), f"{path.name}: {name} differs from the output"


def _update(outputs: dict[str, str]) -> None:
    def fill(match: re.Match[str]) -> str:
        head = match.group(0)[: match.start(3) - match.start(0)]
        return f"{head}{outputs[match.group(1)]}{match.group(2)}"

    replace: Callable[[re.Match[str]], str] = fill
    for path in QUOTING:
        text = path.read_text(encoding="utf-8")
        path.write_text(MARKER.sub(replace, text), encoding="utf-8")


def test_an_edited_quote_is_caught() -> None:
    assert matches("a\n...\nc\n", "a\nb\nc\n")
    assert not matches("a\nc\n", "a\nb\nc\n")
    assert not matches("c\n...\na\n", "a\nb\nc\n")
