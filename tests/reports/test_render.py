"""Markdown for change tickets and the terminal summary."""

from __future__ import annotations

import pytest
from reportkit import OLD_T1, T5, UID1, UID3, UID4, placed_report, report

from factories import T1
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
        "## To be deleted (1)",
        f"`{UID1}_172.16.136.0_24`",
        "cluster-gone",
        "## Stale next hops (reported, not deleted) (0)",
        "## Counts",
        "| orphaned | 1 |",
    ):
        assert expected in md, expected
    # Sections come in the order a reviewer reads them: what will happen first.
    order = [
        "## What will happen",
        "## To be deleted",
        "## Held",
        "## Problems",
        "## Clusters",
        "## Live and foreign routes",
        "## Counts",
    ]
    assert [md.index(h) for h in order] == sorted(md.index(h) for h in order)


def test_terminal_summary_counts_then_routes() -> None:
    text = to_terminal(report(), ["out/report.json"])
    lines = text.splitlines()
    assert lines[0].startswith("nsx-route-gc scan of nsx.example.com: 2 router(s), 2 cluster(s)")
    assert lines[1] == "Verdicts: live 1, orphaned 1, foreign 1"
    assert "To be deleted (1):" in lines
    assert any(UID1 in line and "172.16.136.0/24" in line for line in lines)
    assert "Problems (2):" in lines
    assert "  router /infra/tier-1s/broken not listed: NSX GET ... failed: 500" in lines
    assert lines[-1] == "Reports: out/report.json"


def test_report_only_sections_are_capped_but_routes_to_delete_never(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(render, "SECTION_LIMIT", 0)
    md = render.to_markdown(report())
    assert "## To be deleted (1)" in md
    assert f"`{UID1}_172.16.136.0_24`" in md
    assert "## Unattributed: no known cluster claims them (reported only) (0)" in md
    doc = report()
    doc["routes"] = [dict(r, verdict="unattributed", action="none") for r in doc["routes"]]
    capped = render.to_markdown(doc)
    assert "... and 3 more: see report.csv or report.json." in capped


# --------------------------------------------------------------------------- both directions


def test_report_json_carries_clusters_routers_missing_nodes_and_misplaced_routes() -> None:
    doc = placed_report()
    clusters = {c["name"]: c for c in doc["clusters"]}  # type: ignore[attr-defined]  # test data
    assert {k: clusters["cl2"][k] for k in ("pod_routing", "router_path", "nsx_host", "flags")} == {
        "pod_routing": True,
        "router_path": T1,
        "nsx_host": "nsx.example.com",
        "flags": [],
    }
    assert clusters["cl9"]["flags"] == ["other-manager"]
    assert clusters["cl9"]["warnings"] == ["odd"]
    [missing] = doc["nodes_without_route"]  # type: ignore[misc]  # test data
    assert missing == {
        "cluster": "cl2",
        "node": "lost",
        "uid": UID3,
        "pod_cidrs": ["172.16.145.0/24"],
        "missing_cidrs": ["172.16.145.0/24"],
        "expected_router": T1,
        "expected_route_ids": [f"{UID3}_172.16.145.0_24"],
        "node_created": "2026-11-22T12:00:00Z",
        "node_age_seconds": 3 * 86400,
    }
    rows = {(r["router_path"], r["id"]): r for r in doc["routes"]}  # type: ignore[attr-defined]  # test data
    left = rows[OLD_T1, f"{UID4}_172.16.192.0_24"]
    assert (left["verdict"], left["action"], left["misplaced"], left["expected_router"]) == (
        "live",
        "none",
        True,
        T5,
    )
    assert not rows[T5, f"{UID4}_172.16.192.0_24"]["misplaced"]
    # A misplaced live route keeps its body (evidence for moving it); a plain live one not.
    assert left["nsx_object"]["id"] == f"{UID4}_172.16.192.0_24"
    assert rows[T5, f"{UID4}_172.16.192.0_24"]["nsx_object"] is None
    assert doc["summary"]["nodes_without_route"] == 1  # type: ignore[index]  # test data
    assert doc["summary"]["misplaced_routes"] == 1  # type: ignore[index]  # test data


def test_markdown_has_a_section_for_routers_missing_nodes_and_misplaced_routes() -> None:
    md = to_markdown(placed_report())
    for expected in (
        "## Cluster routers (what each cluster's CCM is configured with)",
        f"| cl2 | on | {T1} | nsx.example.com | configmap (ini) | - | - |",
        "| cl9 | on | /infra/tier-1s/t9 | nsx-b.example.com | configmap (ini) | other-manager "
        "| odd |",
        "## Misplaced: routes of live nodes on a router other than their cluster's CCM router",
        f"| {OLD_T1} | `{UID4}_172.16.192.0_24` |",
        f"| cl5/n | {T5} |",
        "## Nodes without their route (missing: pods not reachable from outside) (1)",
        f"| cl2 | lost | `{UID3}` | 172.16.145.0/24 | {T1} | 2026-11-22T12:00:00Z | 3d |",
    ):
        assert expected in md, expected
    assert (
        md.index("## Clusters") < md.index("## Cluster routers") < md.index("## Live and foreign")
    )


def test_terminal_names_each_clusters_router_and_counts_missing_and_misplaced() -> None:
    lines = to_terminal(placed_report()).splitlines()
    assert "CCM routers:" in lines
    assert f"  cl2: {T1} on nsx.example.com" in lines
    assert "  cl9: /infra/tier-1s/t9 on nsx-b.example.com [other-manager]" in lines
    assert "Nodes without their route: 1" in lines
    assert f"  cl2/lost  {UID3}  172.16.145.0/24  expected on {T1}" in lines
    assert "Misplaced routes (kept): 1" in lines
    assert any(OLD_T1 in line and f"expected on {T5}" in line for line in lines)


def test_a_report_without_placement_says_so_plainly() -> None:
    lines = to_terminal(report()).splitlines()
    assert "  cl2: unknown [ccm-settings-unknown]" not in lines  # judged without place()
    assert "  cl2: unknown" in lines
    assert not any(line.startswith(("Nodes without", "Misplaced")) for line in lines)


def _policy_doc() -> dict[str, object]:
    return {
        "min_age": "1h",
        "cluster_gone_after": "1h",
        "allow_overwrite": False,
        "unattributed": "report",
        "max_deletes": 100,
        "max_delete_percent": 50.0,
        "protect": {"tag_scopes": ["nsx-route-gc/keep"], "route_ids": [], "networks": []},
    }


def test_held_routes_are_not_among_those_to_be_deleted_and_say_why() -> None:
    doc = report()
    routes = list(doc["routes"])
    routes[0] = dict(routes[0], action="held", hold_reason="grace-period: created 5m ago")
    doc["routes"] = routes
    md = to_markdown(doc)
    to_delete = md[md.index("## To be deleted") : md.index("## Held")]
    assert "None." in to_delete
    held_section = md[md.index("## Held (1)") : md.index("## Problems")]
    assert "grace-period: created 5m ago" in held_section
    assert "- To be deleted: 0 route(s)\n- Held: 1 route(s)\n- Problems: 2" in md
    terminal = to_terminal(doc)
    assert "  To be deleted: 0 route(s)" in terminal
    assert "Held (1):" in terminal
    assert "[grace-period: created 5m ago]" in terminal


def test_policy_in_force_and_the_apply_command_in_both_renderings() -> None:
    doc = report()
    doc["policy"] = _policy_doc()
    doc["apply_command"] = "nsx-route-gc apply --config c.yaml --plan s/report.json"
    md = to_markdown(doc)
    terminal = to_terminal(doc)
    for line in render.policy_lines(doc):
        assert f"- {line}" in md
        assert f"  {line}" in terminal
    assert "grace period (min_age): 1h; younger routes are held" in render.policy_lines(doc)
    assert "```sh\nnsx-route-gc apply --config c.yaml --plan s/report.json\n```" in md
    assert "  nsx-route-gc apply --config c.yaml --plan s/report.json" in terminal


def test_live_and_foreign_routes_are_listed_collapsed() -> None:
    md = to_markdown(report())
    details = md[md.index("## Live and foreign routes") : md.index("## Counts")]
    assert "<details><summary>2 route(s), not up for deletion</summary>" in details
    assert details.rstrip().endswith("</details>")
    assert "Live and foreign routes: 2 (listed in report.md and report.csv)" in to_terminal(
        report()
    )


def test_high_severity_is_shown_on_the_terminal_too() -> None:
    doc = report()
    routes = list(doc["routes"])
    routes[0] = dict(routes[0], severity="high", shadows="live-id")
    doc["routes"] = routes
    line = next(x for x in to_terminal(doc).splitlines() if UID1 in x)
    assert line.startswith("  [HIGH] ")
    assert "**HIGH**" in to_markdown(doc)


def test_an_apply_report_names_the_approved_plan_beside_its_own_digest() -> None:
    doc = report()
    doc["mode"] = "apply"
    doc["apply"] = {
        "source": "CHG-1/scan/report.json",
        "plan_sha256": "a" * 64,
        "approved_sha256": "a" * 64,
        "deleted_sha256": "a" * 64,
        "targeted": [],
    }
    md = to_markdown(doc)
    assert "- **Approved plan:** `CHG-1/scan/report.json`" in md
    assert f"- **Approved plan SHA-256:** `{'a' * 64} (equal to --plan-sha256)`" in md
    assert "every approved route is gone" in md
    terminal = to_terminal(doc)
    assert "Approved plan: CHG-1/scan/report.json" in terminal
    assert f"Approved plan SHA-256: {'a' * 64} (equal to --plan-sha256)" in terminal
    doc["apply"]["deleted_sha256"] = "b" * 64
    assert "not every approved route was deleted" in to_terminal(doc)


def test_a_restore_report_names_its_source_not_a_plan_digest() -> None:
    doc = report()
    doc["mode"] = "restore"
    doc["restore"] = {"source": "CHG-1/apply/report.json"}
    assert "- **Restored from:** `CHG-1/apply/report.json`" in to_markdown(doc)
    terminal = to_terminal(doc)
    assert "Restored from: CHG-1/apply/report.json" in terminal
    assert "Plan SHA-256" not in terminal
