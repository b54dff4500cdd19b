"""report.json schema 2 at size (issue 13, "report.json <= 50 MB at size L"): bodies only
where a reviewer or a restore needs them, ``checked_clusters`` ``["*"]`` for every cluster of
the run, compact rows one a line, null fields and a made path left out, and every reader
filling them back."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from reportkit import UID1

from factories import NOW, T1, ccm_route, foreign_route, node
from nsx_route_gc.judge import judge
from nsx_route_gc.models import (
    EVERY_CLUSTER,
    Action,
    ClusterInventory,
    ClusterStatus,
    Plan,
    Policy,
    RouterListing,
    RouteVerdict,
    Verdict,
)
from nsx_route_gc.reports.explain import explain
from nsx_route_gc.reports.files import to_csv, to_json, write_reports
from nsx_route_gc.reports.render import to_markdown
from nsx_route_gc.reports.rows import ROW_FIELDS, Noted, RunInfo, build_report, route_row
from nsx_route_gc.reports.saved_plan import read_report

COMPACT = (",", ":")
UID9 = "99999999-0000-4000-8000-000000000009"
ROUTE = ccm_route(UID9, "10.9.0.0/24", "10.0.0.9")


def info() -> RunInfo:
    return RunInfo("scan", NOW, NOW, "nsx.example.com", "config.yaml", operator="op@host")


def doc_of(*sources: RouteVerdict | Noted, clusters: int = 2) -> dict[str, Any]:
    inventories = tuple(
        ClusterInventory(f"c{i:03}", "config", ClusterStatus.OK) for i in range(clusters)
    )
    verdicts = [s.verdict if isinstance(s, Noted) else s for s in sources]
    plan = Plan((RouterListing(T1),), inventories, tuple(verdicts))
    return build_report(info(), plan, rows=list(map(_row, sources)))


def _row(source: RouteVerdict | Noted) -> dict[str, Any]:
    if isinstance(source, Noted):
        return route_row(source.verdict, error=source.error, note=source.note)
    return route_row(source)


def live_cluster(name: str, uid: str, cidr: str, ip: str) -> ClusterInventory:
    nodes = (node(uid, cidr, ip),)
    return ClusterInventory(name, "config", ClusterStatus.OK, nodes, (cidr.replace("/24", "/21"),))


def row_lines(text: str) -> list[str]:
    """The lines of report.json's routes list, as written (one row a line)."""
    head, _, rest = text.partition('"routes": [\n')
    assert head.startswith('{\n  "schema_version": 2,\n')  # the header stays indented
    body, _, tail = rest.rpartition("\n  ]")
    assert tail == "\n}\n"
    return [line.removeprefix("    ").removesuffix(",") for line in body.split("\n")]


UNATTRIBUTED = RouteVerdict(
    ROUTE, Verdict.UNATTRIBUTED, "no-owner: no known cluster claims 10.9.0.0/24",
    checked_clusters=EVERY_CLUSTER,
)  # fmt: skip

BODIES: list[tuple[str, RouteVerdict | Noted, bool]] = [
    ("unattributed, report-only", UNATTRIBUTED, False),
    ("unverified, judged later", replace(UNATTRIBUTED, verdict=Verdict.UNVERIFIED), False),
    ("live", replace(UNATTRIBUTED, verdict=Verdict.LIVE, checked_clusters=()), False),
    ("foreign", RouteVerdict(foreign_route(), Verdict.FOREIGN), False),
    ("to delete", replace(UNATTRIBUTED, verdict=Verdict.ORPHANED, action=Action.DELETE), True),
    ("held", replace(UNATTRIBUTED, verdict=Verdict.ORPHANED, action=Action.HELD), True),
    ("deleted", replace(UNATTRIBUTED, verdict=Verdict.ORPHANED, action=Action.DELETED), True),
    ("delete failed", replace(UNATTRIBUTED, action=Action.DELETE_FAILED), True),
    ("restored", replace(UNATTRIBUTED, action=Action.RESTORED), True),
    ("conflict", replace(UNATTRIBUTED, verdict=Verdict.CONFLICT), True),
    ("stale next hop", replace(UNATTRIBUTED, verdict=Verdict.STALE_NEXT_HOP), True),
    ("flagged", replace(UNATTRIBUTED, flag="managed-tag-without-ccm-id"), True),
    ("shadowing, high severity", replace(UNATTRIBUTED, severity="high", shadows="x"), True),
    ("misplaced", replace(UNATTRIBUTED, verdict=Verdict.LIVE, expected_router=T1), True),
    ("an error", Noted(UNATTRIBUTED, error="NSX said no"), True),
]


@pytest.mark.parametrize(("case", "source", "kept"), BODIES, ids=[b[0] for b in BODIES])
def test_bodies_only_where_a_reviewer_or_a_restore_needs_them(
    case: str, source: RouteVerdict | Noted, kept: bool
) -> None:
    doc = doc_of(source)
    row = doc["routes"][0]
    assert (row["nsx_object"] is not None) is kept, case
    [line] = row_lines(to_json(doc))
    written = json.loads(line)
    assert ("nsx_object" in written) is kept, case
    if kept:
        assert written["nsx_object"]["id"] == ROUTE.id


def test_a_route_checked_against_every_cluster_says_star_and_readers_spell_it_out(
    tmp_path: Path,
) -> None:
    clusters = [
        live_cluster("cl2", UID1, "172.16.144.0/24", "172.16.128.20"),
        live_cluster("cl3", UID1.replace("1", "3"), "172.16.152.0/24", "172.16.128.30"),
    ]
    plan = judge([RouterListing(T1, (ROUTE,))], clusters, Policy(), NOW)
    [v] = plan.verdicts
    assert v.verdict is Verdict.UNATTRIBUTED
    assert v.checked_clusters == EVERY_CLUSTER
    doc = build_report(info(), plan)
    [line] = row_lines(to_json(doc))
    assert '"checked_clusters":["*"]' in line
    [record] = csv.DictReader(io.StringIO(to_csv(doc)))
    assert record["checked_clusters"] == "*"
    # report.md and explain name the clusters; a saved report's readers get their names.
    assert "checked: cl2, cl3" in to_markdown(doc)
    lines = explain(doc, doc["routes"][0])
    assert "Clusters checked (every cluster of the run): cl2, cl3" in lines
    write_reports(doc, tmp_path)
    [read] = read_report(tmp_path / "report.json", mode="scan")["routes"]
    assert read["checked_clusters"] == ["cl2", "cl3"]
    assert "Clusters checked: cl2, cl3" in explain(doc, read)


def test_an_unattributed_row_is_the_same_line_whatever_the_number_of_clusters() -> None:
    # The size regression of issue 13: 200 cluster names on each of 70,000 rows were 133 MB.
    few = row_lines(to_json(doc_of(UNATTRIBUTED, clusters=2)))
    many = row_lines(to_json(doc_of(UNATTRIBUTED, clusters=200)))
    assert few == many
    [line] = many
    # No body, no null, no path its router and id make, nothing between the tokens.
    assert "nsx_object" not in line
    assert "null" not in line
    assert '"path"' not in line
    assert json.dumps(json.loads(line), separators=COMPACT) == line


def test_rows_are_compact_json_one_a_line_and_parse(tmp_path: Path) -> None:
    doc = doc_of(*(source for _, source, _ in BODIES))
    write_reports(doc, tmp_path)
    text = (tmp_path / "report.json").read_text()
    lines = row_lines(text)
    assert len(lines) == len(BODIES)
    for line in lines:
        assert json.dumps(json.loads(line), separators=COMPACT) == line
    assert [r["id"] for r in json.loads(text)["routes"]] == [r["id"] for r in doc["routes"]]


def test_null_fields_and_a_made_path_are_left_out_and_every_reader_fills_them_back(
    tmp_path: Path,
) -> None:
    odd_path = replace(ROUTE, id="elsewhere", path="/infra/tier-0s/t0/static-routes/x")
    held = replace(UNATTRIBUTED, verdict=Verdict.ORPHANED, action=Action.HELD, hold_reason="young")
    doc = doc_of(UNATTRIBUTED, held, replace(UNATTRIBUTED, route=odd_path))
    write_reports(doc, tmp_path)
    written = [json.loads(line) for line in row_lines((tmp_path / "report.json").read_text())]
    assert "cluster" not in written[0]
    assert "path" not in written[0]
    assert written[1]["hold_reason"] == "young"
    # A path that is not its router's and id's stays: it is evidence.
    assert written[2]["path"] == "/infra/tier-0s/t0/static-routes/x"
    read = read_report(tmp_path / "report.json", mode="scan")["routes"]
    for row, made in zip(read, doc["routes"], strict=True):
        assert set(row) == set(ROW_FIELDS)
        assert {k: v for k, v in row.items() if k != "nsx_object"} == {
            k: (["c000", "c001"] if k == "checked_clusters" and v == ["*"] else v)
            for k, v in made.items()
            if k != "nsx_object"
        }
    assert read[0]["path"] == f"{T1}/static-routes/{ROUTE.id}"
    assert read[0]["cluster"] is None
    assert read[0]["nsx_object"] is None
    assert read[1]["nsx_object"] == json.loads(ROUTE.raw or "")
