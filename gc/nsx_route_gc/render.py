"""Human renderings of a report document: Markdown for a change ticket, a terminal summary."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
    checked = row["checked_clusters"]
    if checked:
        if len(checked) > 5:
            return f"checked {len(checked)} clusters"
        return "checked: " + ", ".join(checked)
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


# Report-only sections list at most this many rows in report.md; report.csv and report.json
# have them all. Routes to delete (the evidence for an approval) are never cut.
SECTION_LIMIT = 1000
# The terminal summary lists at most this many routes per group.
TERMINAL_LIMIT = 50
_SECTIONS = (
    ("stale-next-hop", "Stale next hops (reported, not deleted)"),
    ("conflict", "Conflicts: one network, several live routes (never deleted)"),
    ("unattributed", "Unattributed: no known cluster claims them (reported only)"),
    ("unverified", "Unverified: owner cluster not inventoried (judged later)"),
    ("flagged", "Foreign routes flagged for a human"),
)


def _section_of(row: Row) -> str | None:
    if row["verdict"] == "foreign":
        return "flagged" if row["flag"] else None
    return (
        row["verdict"]
        if row["verdict"] in {"stale-next-hop", "conflict", "unattributed", "unverified"}
        else None
    )


def iter_markdown(report: dict[str, Any]) -> Iterator[str]:
    """report.md line by line; rows are walked, never all held at once."""
    rows: Sequence[Row] = report["routes"]
    mode = report["mode"]
    header = [
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
        header.append(f"- **Run id:** {report['run_id']}")
    trouble = problems(report)
    if trouble:
        header += ["", "## Problems", ""] + [f"- {p}" for p in trouble]
    header += ["", "## Clusters", ""]
    header += _table(
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
    yield from (line + "\n" for line in header)
    # One pass to find which rows go where (indices only), then each section's rows again.
    acted: list[int] = []
    sections: dict[str, list[int]] = {key: [] for key, _ in _SECTIONS}
    for i, row in enumerate(rows):
        if row["action"] != "none":
            acted.append(i)
        key = _section_of(row)
        if key is not None:
            sections[key].append(i)
    title = "Routes to delete" if mode == "scan" else "Routes acted on"
    yield from _section_lines(title, rows, acted, with_action=True, limit=None)
    for key, heading in _SECTIONS:
        if key == "flagged" and not sections[key]:
            continue
        yield from _section_lines(
            heading, rows, sections[key], with_action=False, limit=SECTION_LIMIT
        )
    summary = report["summary"]
    counts = ["", "## Counts", ""]
    counts += _table(["verdict", "routes"], [[k, v] for k, v in summary["verdicts"].items() if v])
    counts += [""]
    counts += _table(["action", "routes"], [[k, v] for k, v in summary["actions"].items() if v])
    yield from (line + "\n" for line in counts)


def _section_lines(
    title: str, rows: Sequence[Row], indices: Sequence[int], *, with_action: bool, limit: int | None
) -> Iterator[str]:
    yield f"\n## {title} ({len(indices)})\n\n"
    if not indices:
        yield "None.\n"
        return
    shown = indices if limit is None else indices[:limit]
    table = _route_table([rows[i] for i in shown[:1]], with_action=with_action)
    yield from (line + "\n" for line in table[:2])
    for i in shown:
        yield _route_table([rows[i]], with_action=with_action)[2] + "\n"
    if len(indices) > len(shown):
        yield f"\n... and {len(indices) - len(shown)} more: see report.csv or report.json.\n"


def to_markdown(report: dict[str, Any]) -> str:
    return "".join(iter_markdown(report))


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
    acted = [r for r in report["routes"] if r["action"] != "none"]
    if report["mode"] == "scan":
        groups = [
            ("Routes to delete:", [r for r in acted if r["action"] == "delete"]),
            ("Orphaned but held:", [r for r in acted if r["action"] == "held"]),
        ]
    else:
        groups = [("Routes acted on:", acted)]
    for title, rows in groups:
        if not rows:
            continue
        lines += ["", title]
        for r in rows[:TERMINAL_LIMIT]:
            detail = r["hold_reason"] or r.get("error") or r.get("note")
            action = "" if r["action"] == "delete" else r["action"]
            if detail and action and not detail.startswith(action):
                detail = f"{action}: {detail}"
            extra = f" [{detail or action}]" if detail or action else ""
            lines.append(
                f"  {r['router_path']}  {r['network']:<18}  {r['id']}  {r['reason']}{extra}"
            )
        if len(rows) > TERMINAL_LIMIT:
            lines.append(f"  ... and {len(rows) - TERMINAL_LIMIT} more (see the reports)")
    trouble = problems(report)
    if trouble:
        lines += ["", "Problems:"] + [f"  {p}" for p in trouble]
    if paths:
        lines.append("")
        lines.append("Reports: " + ", ".join(paths))
    return "\n".join(lines) + "\n"
