"""Markdown for change tickets and the terminal summary."""

from __future__ import annotations

import pytest
from reportkit import UID1, report

from nsx_route_gc.reports import render
from nsx_route_gc.reports.render import to_markdown, to_terminal


def test_markdown_reads_like_a_ticket() -> None:
    md = to_markdown(report())
    for expected in (
        "# nsx-route-gc scan report",
        "**Who:** op@host",
        "**NSX manager:** nsx.example.com",
        "## Problems",
        "router /infra/tier-1s/broken not listed",
        "## Clusters",
        "| cl1 | retired_clusters | retired |",
        "## Routes to delete (1)",
        f"`{UID1}_172.16.136.0_24`",
        "cluster-gone",
        "## Stale next hops (reported, not deleted) (0)",
        "## Counts",
        "| orphaned | 1 |",
    ):
        assert expected in md, expected
    # Sections come in the order a reviewer reads them.
    assert md.index("## Clusters") < md.index("## Routes to delete") < md.index("## Counts")


def test_terminal_summary_counts_then_routes() -> None:
    text = to_terminal(report(), ["out/report.json"])
    lines = text.splitlines()
    assert lines[0].startswith("nsx-route-gc scan of nsx.example.com: 2 router(s), 2 cluster(s)")
    assert lines[1] == "Verdicts: live 1, orphaned 1, foreign 1"
    assert "Routes to delete:" in lines
    assert any(UID1 in line and "172.16.136.0/24" in line for line in lines)
    assert "Problems:" in lines
    assert "  router /infra/tier-1s/broken not listed: NSX GET ... failed: 500" in lines
    assert lines[-1] == "Reports: out/report.json"


def test_report_only_sections_are_capped_but_routes_to_delete_never(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(render, "SECTION_LIMIT", 0)
    md = render.to_markdown(report())
    assert "## Routes to delete (1)" in md
    assert f"`{UID1}_172.16.136.0_24`" in md
    assert "## Unattributed: no known cluster claims them (reported only) (0)" in md
    doc = report()
    doc["routes"] = [dict(r, verdict="unattributed", action="none") for r in doc["routes"]]
    capped = render.to_markdown(doc)
    assert "... and 3 more: see report.csv or report.json." in capped
