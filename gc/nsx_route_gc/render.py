"""Human renderings of a report document: Markdown for a change ticket, a terminal summary."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Row = dict[str, Any]


def _cell(value: object) -> str:
    if value is None or value in ("", []):
        return "-"
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _owner(row: Row) -> str:
    if row["cluster"] and row["node"]:
        return f"{row['cluster']}/{row['node']}"
    if row["cluster"]:
        return str(row["cluster"])
    if row["checked_clusters"]:
        return "checked: " + ", ".join(row["checked_clusters"])
    return "-"


def _route_table(rows: Sequence[Row], *, with_action: bool = False) -> list[str]:
    headers = ["router", "route id", "network", "next hops", "created", "reason", "cluster/node"]
    if with_action:
        headers += ["action", "hold reason / error / note"]
    body = []
    for r in rows:
        cells: list[object] = [
            r["router_path"],
            f"`{r['id']}`",
            r["network"],
            r["next_hops"],
            r["create_time"],
            ("**HIGH** " if r["severity"] == "high" else "") + (r["reason"] or ""),
            _owner(r),
        ]
        if with_action:
            cells += [r["action"], r["hold_reason"] or r.get("error") or r.get("note")]
        body.append(cells)
    return _table(headers, body)


def _section(
    out: list[str], title: str, rows: Sequence[Row], render: Callable[[Sequence[Row]], list[str]]
) -> None:
    out += ["", f"## {title} ({len(rows)})", ""]
    out += render(rows) if rows else ["None."]


def problems(report: dict[str, Any]) -> list[str]:
    """What made the run partial, each once: unlisted routers, failed clusters, limits, errors."""
    found = [f"router {e['path']} not listed: {e['error']}" for e in report["nsx"]["router_errors"]]
    found += [
        f"cluster {c['name']} not inventoried: {c['error']}"
        for c in report["clusters"]
        if c["status"] == "failed"
    ]
    found += [f"deletions held on {h['router']}: {h['reason']}" for h in report["limit_holds"]]
    found += list(report.get("errors", []))
    return list(dict.fromkeys(found))


def to_markdown(report: dict[str, Any]) -> str:
    rows: list[Row] = report["routes"]
    mode = report["mode"]
    out = [
        f"# nsx-route-gc {mode} report",
        "",
        f"- **When:** {report['started_at']} to {report['finished_at']}",
        f"- **Who:** {report['operator']}",
        f"- **Tool version:** {report['tool_version']}",
        f"- **NSX manager:** {report['nsx']['host']}",
        f"- **Routers:** {', '.join(report['nsx']['routers']) or 'none'}",
        f"- **Plan SHA-256:** `{report['plan_sha256']}`",
    ]
    if report.get("run_id"):
        out.append(f"- **Run id:** {report['run_id']}")
    problems = [
        f"router {e['path']} not listed: {e['error']}" for e in report["nsx"]["router_errors"]
    ]
    problems += [f"{h['router']}: deletions held: {h['reason']}" for h in report["limit_holds"]]
    problems += list(report.get("errors", []))
    if problems:
        out += ["", "## Problems", ""] + [f"- {p}" for p in problems]
    out += ["", "## Clusters", ""]
    out += _table(
        ["cluster", "source", "status", "nodes", "pod CIDRs", "error / evidence"],
        [
            [
                c["name"],
                c["source"],
                c["status"],
                c["nodes"],
                c["pod_cidrs"],
                c["error"] or c.get("evidence"),
            ]
            for c in report["clusters"]
        ],
    )
    acted = [r for r in rows if r["action"] != "none"]
    title = "Routes to delete" if mode == "scan" else "Routes acted on"
    _section(out, title, acted, lambda rs: _route_table(rs, with_action=True))
    for verdict, heading in (
        ("stale-next-hop", "Stale next hops (reported, not deleted)"),
        ("conflict", "Conflicts: one network, several live routes (never deleted)"),
        ("unattributed", "Unattributed: no known cluster claims them (reported only)"),
        ("unverified", "Unverified: owner cluster not inventoried (judged later)"),
    ):
        _section(out, heading, [r for r in rows if r["verdict"] == verdict], _route_table)
    flagged = [r for r in rows if r["verdict"] == "foreign" and r["flag"]]
    if flagged:
        _section(out, "Foreign routes flagged for a human", flagged, _route_table)
    out += ["", "## Counts", ""]
    summary = report["summary"]
    out += _table(["verdict", "routes"], [[k, v] for k, v in summary["verdicts"].items() if v])
    out += [""]
    out += _table(["action", "routes"], [[k, v] for k, v in summary["actions"].items() if v])
    return "\n".join(out) + "\n"


def to_terminal(report: dict[str, Any], paths: Sequence[str] = ()) -> str:
    """The readable summary: counts per verdict, then the routes to delete, then problems."""
    summary = report["summary"]
    verdicts = ", ".join(f"{k} {v}" for k, v in summary["verdicts"].items() if v) or "no routes"
    lines = [
        f"nsx-route-gc {report['mode']} of {report['nsx']['host']}: "
        f"{len(report['nsx']['routers'])} router(s), {len(report['clusters'])} cluster(s)",
        f"Verdicts: {verdicts}",
    ]
    actions = ", ".join(f"{k} {v}" for k, v in summary["actions"].items() if v and k != "none")
    if actions:
        lines.append(f"Actions: {actions}")
    if report["mode"] == "scan":
        groups = [
            ("Routes to delete:", [r for r in report["routes"] if r["action"] == "delete"]),
            ("Orphaned but held:", [r for r in report["routes"] if r["action"] == "held"]),
        ]
    else:
        groups = [("Routes acted on:", [r for r in report["routes"] if r["action"] != "none"])]
    for title, rows in groups:
        if not rows:
            continue
        lines += ["", title]
        for r in rows:
            detail = r["hold_reason"] or r.get("error") or r.get("note")
            action = "" if r["action"] == "delete" else r["action"]
            extra = (
                f" [{action}: {detail}]" if action and detail else f" [{action}]" if action else ""
            )
            lines.append(
                f"  {r['router_path']}  {r['network']:<18}  {r['id']}  {r['reason']}{extra}"
            )
    trouble = problems(report)
    if trouble:
        lines += ["", "Problems:"] + [f"  {p}" for p in trouble]
    if paths:
        lines.append("")
        lines.append("Reports: " + ", ".join(paths))
    return "\n".join(lines) + "\n"
