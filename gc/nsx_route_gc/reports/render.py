"""Human renderings of a report document: Markdown for a change ticket, a terminal summary.

Both list a few rows out of possibly 100,000: which ones, and the counts, come from the rows'
``Census`` (one pass over a few fields of each row), and only the rows listed are made.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from nsx_route_gc.models import checked_names

Row = dict[str, Any]
# What the counts and the choice of listed rows need of a row: router path, route id,
# revision, verdict, action, flag and whether it is misplaced. Read straight from a verdict
# (``rows.Rows``), these cost a tuple; a whole row costs twenty-odd fields and a date.
Facts = tuple[str, str, int | None, str, str, str | None, bool]


def _cell(value: object) -> str:
    if value is None or value in ("", []):
        return "-"
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table_row(row: Sequence[object]) -> str:
    return "| " + " | ".join(_cell(v) for v in row) + " |"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += [_table_row(row) for row in rows]
    return lines


def _owner(row: Row, names: Sequence[str]) -> str:
    if row["cluster"] and row["node"]:
        return f"{row['cluster']}/{row['node']}"
    if row["cluster"]:
        return str(row["cluster"])
    checked = checked_names(row["checked_clusters"], names)
    if checked:
        if len(checked) > 5:
            return f"checked {len(checked)} clusters"
        return "checked: " + ", ".join(checked)
    return "-"


def _route_headers(with_action: bool) -> list[str]:
    headers = ["router", "route id", "network", "next hops", "created", "reason", "cluster/node"]
    if with_action:
        headers += ["action", "hold reason / error / note"]
    return headers


def _route_cells(r: Row, with_action: bool, names: Sequence[str]) -> list[object]:
    cells: list[object] = [
        r["router_path"],
        f"`{r['id']}`",
        r["network"],
        r["next_hops"],
        r["create_time"],
        ("**HIGH** " if r["severity"] == "high" else "") + (r["reason"] or ""),
        _owner(r, names),
    ]
    if with_action:
        cells += [r["action"], r["hold_reason"] or r.get("error") or r.get("note")]
    return cells


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
    (
        "misplaced",
        "Misplaced: routes of live nodes on a router other than their cluster's CCM router "
        "(never deleted by this tool)",
    ),
)


_LISTED_VERDICTS = frozenset({"stale-next-hop", "conflict", "unattributed", "unverified"})
_QUIET_VERDICTS = frozenset({"live", "foreign"})
# What a run does or did, in the order report.md and the terminal list it, per mode.
_OUTCOMES = {
    "scan": (("delete", "To be deleted"), ("held", "Held")),
    "apply": (("deleted", "Deleted"), ("held", "Held"), ("delete-failed", "Delete failed")),
    "restore": (("restored", "Restored"), ("held", "Held")),
}


def _indices() -> array[int]:
    # Positions of 100,000 rows: 8 bytes each in an array, 36 as a list of ints.
    return array("q")


@dataclass(frozen=True, slots=True)
class Census:
    """What the summary, the metrics, report.md and the terminal need of the rows, gathered
    in one pass: the counts, the planned deletions, and the positions of the rows they list
    (so that only those rows are ever made)."""

    # (router path, verdict, action) -> routes, in the order first seen.
    tally: Counter[tuple[str, str, str]]
    deletions: list[tuple[str, str, int | None]]
    acted: array[int]  # rows whose action is not "none"
    by_action: dict[str, array[int]]  # the same, per action
    sections: dict[str, array[int]]  # the report-only sections of report.md
    quiet: array[int]  # live routes and foreign ones nobody flagged: report.md's <details>

    @classmethod
    def of(cls, facts: Iterable[Facts]) -> Census:
        tally: Counter[tuple[str, str, str]] = Counter()
        deletions: list[tuple[str, str, int | None]] = []
        acted = _indices()
        by_action: dict[str, array[int]] = {}
        sections = {key: _indices() for key, _ in _SECTIONS}
        quiet = _indices()
        count = tally.get
        for i, (router, route_id, revision, verdict, action, flag, misplaced) in enumerate(facts):
            key = (router, verdict, action)
            tally[key] = count(key, 0) + 1
            if action != "none":
                acted.append(i)
                same = by_action.get(action)
                if same is None:
                    same = by_action[action] = _indices()
                same.append(i)
                if action == "delete":
                    deletions.append((router, route_id, revision))
            if verdict in _LISTED_VERDICTS:
                sections[verdict].append(i)
            elif flag and verdict == "foreign":
                sections["flagged"].append(i)
            elif verdict in _QUIET_VERDICTS and action == "none":
                quiet.append(i)
            if misplaced:
                sections["misplaced"].append(i)
        return cls(tally, deletions, acted, by_action, sections, quiet)

    def verdicts(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for (_, verdict, _), n in self.tally.items():
            counts[verdict] += n
        return counts

    def actions(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for (_, _, action), n in self.tally.items():
            counts[action] += n
        return counts

    def router_verdicts(self) -> Counter[tuple[str, str]]:
        counts: Counter[tuple[str, str]] = Counter()
        for (router, verdict, _), n in self.tally.items():
            counts[router, verdict] += n
        return counts


@runtime_checkable
class Counted(Protocol):
    """Rows that take their census without making every row, and keep it (``rows.Rows``)."""

    def census(self) -> Census: ...


def dict_facts(rows: Iterable[Row]) -> Iterator[Facts]:
    """The facts of rows that are dictionaries already (restore's, tests', a saved plan's)."""
    for r in rows:
        yield (
            r["router_path"],
            r["id"],
            r.get("revision"),
            r["verdict"],
            r["action"],
            r.get("flag"),
            bool(r.get("misplaced")),
        )


def census(rows: Iterable[Row]) -> Census:
    """The census of a report's rows: kept by ``rows.Rows``, taken afresh of a plain list."""
    if isinstance(rows, Counted):
        return rows.census()
    return Census.of(dict_facts(rows))


def policy_lines(report: dict[str, Any]) -> list[str]:
    """The policy in force, in the words report.md and the terminal both use."""
    policy = report.get("policy")
    if not policy:
        return []
    protect = policy["protect"]

    def listed(values: Sequence[str]) -> str:
        return ", ".join(values) if values else "none"

    return [
        f"grace period (min_age): {policy['min_age']}; younger routes are held",
        f"limits: at most {policy['max_deletes']} deletions a run (max_deletes), at most "
        f"{policy['max_delete_percent']:g}% of a router's managed routes (max_delete_percent)",
        f"unattributed routes: {policy['unattributed']} (unattributed)",
        f"protected tag scopes: {listed(protect['tag_scopes'])}; route ids: "
        f"{listed(protect['route_ids'])}; networks: {listed(protect['networks'])}",
        "REQUIRE_OVERRIDE routes: "
        + ("deleted with X-Allow-Overwrite" if policy["allow_overwrite"] else "held")
        + " (allow_overwrite)",
    ]


def digest_lines(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs naming the digests: the plan's own, and for an apply the approved
    plan's beside the digest of what this run deleted."""
    applied = report.get("apply") or {}
    if report["mode"] == "restore":
        # A restore deletes nothing: its source, not a plan digest, says what it put back.
        return [("Restored from", (report.get("restore") or {}).get("source") or "-")]
    if report["mode"] != "apply":
        return [("Plan SHA-256", report["plan_sha256"])]
    if not applied.get("plan_sha256"):
        return [("Approved plan", "none: a fresh scan's (no --plan)")]
    approved = applied.get("approved_sha256")
    check = (
        "equal to --plan-sha256" if approved else "no --plan-sha256 given: checked against itself"
    )
    deleted = applied.get("deleted_sha256")
    same = (
        "equal to the approved plan's: every approved route is gone"
        if deleted == applied["plan_sha256"]
        else "not the approved plan's: not every approved route was deleted"
    )
    lines = [
        ("Approved plan", applied.get("source") or "-"),
        ("Approved plan SHA-256", f"{applied['plan_sha256']} ({check})"),
    ]
    if applied.get("targeted"):
        lines.append(("Only", ", ".join(applied["targeted"]) + " (--route/--router)"))
    lines.append(("Deleted SHA-256", f"{deleted} ({same})"))
    if applied.get("restore_sha256"):
        # What `restore --plan-sha256` takes: the ticket records it with the evidence.
        lines.append(("Restore SHA-256", applied["restore_sha256"]))
    return lines


def outcome_counts(report: dict[str, Any], found: Census) -> list[str]:
    """The opening lines: what will happen (scan) or what happened, then the problems."""
    lines = []
    for action, title in _OUTCOMES.get(report["mode"], ()):
        lines.append(f"{title}: {len(found.by_action.get(action, ()))} route(s)")
    lines.append(f"Problems: {len(problems(report))}")
    return lines


def iter_markdown(report: dict[str, Any]) -> Iterator[str]:
    """report.md line by line; rows are walked, never all held at once."""
    rows: Sequence[Row] = report["routes"]
    mode = report["mode"]
    # What a row's checked_clusters ["*"] stands for.
    names = [c["name"] for c in report["clusters"]]
    header = [
        f"# nsx-route-gc {mode} report",
        "",
        f"- **When:** {report['started_at']} to {report['finished_at']}",
        f"- **Who:** {report['operator']}",
        f"- **Tool version:** {report['tool_version']}",
        f"- **NSX manager:** {report['nsx']['host']}",
        f"- **Routers:** {', '.join(report['nsx']['routers']) or 'none'}",
    ]
    header += [f"- **{label}:** `{value}`" for label, value in digest_lines(report)]
    if report.get("run_id"):
        header.append(f"- **Run id:** {report['run_id']}")
    # Which rows go where comes from the census; only the rows listed are made.
    found = census(rows)
    title = "What will happen" if mode == "scan" else "What happened"
    header += ["", f"## {title}", ""] + [f"- {line}" for line in outcome_counts(report, found)]
    if report.get("apply_command"):
        header += ["", "Apply exactly this plan:", "", "```sh", report["apply_command"], "```"]
    yield from (line + "\n" for line in header)
    for action, heading in _OUTCOMES.get(mode, ()):
        indices = found.by_action.get(action, _indices())
        yield from _section_lines(
            heading, rows, indices, names, with_action=action != "delete", limit=None
        )
    trouble = problems(report)
    lines = ["", f"## Problems ({len(trouble)})", ""]
    lines += [f"- {p}" for p in trouble] or ["None."]
    policy = policy_lines(report)
    if policy:
        lines += ["", "## Policy in force", ""] + [f"- {p}" for p in policy]
    lines += ["", "## Clusters", ""]
    lines += _table(
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
    yield from (line + "\n" for line in lines)
    yield from _router_lines(report["clusters"])
    sections = found.sections
    for key, heading in _SECTIONS:
        if key == "flagged" and not sections[key]:
            continue
        yield from _section_lines(
            heading,
            rows,
            sections[key],
            names,
            with_action=False,
            limit=SECTION_LIMIT,
            expected=key == "misplaced",
        )
    yield from _missing_lines(report.get("nodes_without_route", []))
    yield from _details_lines(rows, found.quiet, names)
    summary = report["summary"]
    counts = ["", "## Counts", ""]
    counts += _table(["verdict", "routes"], [[k, v] for k, v in summary["verdicts"].items() if v])
    counts += [""]
    counts += _table(["action", "routes"], [[k, v] for k, v in summary["actions"].items() if v])
    yield from (line + "\n" for line in counts)


def _details_lines(
    rows: Sequence[Row], indices: Sequence[int], names: Sequence[str]
) -> Iterator[str]:
    """Live and foreign routes, collapsed: nothing hidden, nothing in the reviewer's way."""
    yield f"\n## {QUIET_TITLE} ({len(indices)})\n\n"
    if not indices:
        yield "None.\n"
        return
    yield f"<details><summary>{len(indices)} route(s), not up for deletion</summary>\n\n"
    shown = indices[:SECTION_LIMIT]
    yield from (line + "\n" for line in _table(_route_headers(False), []))
    for i in shown:
        yield _table_row(_route_cells(rows[i], False, names)) + "\n"
    if len(indices) > len(shown):
        yield f"\n... and {len(indices) - len(shown)} more: see report.csv or report.json.\n"
    yield "\n</details>\n"


QUIET_TITLE = "Live and foreign routes"


def _section_lines(
    title: str,
    rows: Sequence[Row],
    indices: Sequence[int],
    names: Sequence[str],
    *,
    with_action: bool,
    limit: int | None,
    expected: bool = False,
) -> Iterator[str]:
    yield f"\n## {title} ({len(indices)})\n\n"
    if not indices:
        yield "None.\n"
        return
    shown = indices if limit is None else indices[:limit]
    headers = _route_headers(with_action) + (["expected router"] if expected else [])
    yield from (line + "\n" for line in _table(headers, []))
    for i in shown:
        cells = _route_cells(rows[i], with_action, names)
        if expected:
            cells.append(rows[i].get("expected_router"))
        yield _table_row(cells) + "\n"
    if len(indices) > len(shown):
        yield f"\n... and {len(indices) - len(shown)} more: see report.csv or report.json.\n"


def _router_lines(clusters: Sequence[dict[str, Any]]) -> Iterator[str]:
    """Per cluster: the router its CCM writes to, the manager, where that was read, flags."""
    yield "\n## Cluster routers (what each cluster's CCM is configured with)\n\n"
    if not clusters:
        yield "None.\n"
        return
    rows = []
    for c in clusters:
        routing = c.get("pod_routing")
        rows.append(
            [
                c["name"],
                "unknown" if routing is None else ("on" if routing else "off"),
                c.get("router_path"),
                c.get("nsx_host"),
                c.get("ccm_source"),
                c.get("flags", []),
                "; ".join(c.get("warnings", [])),
            ]
        )
    headers = ["cluster", "pod routing", "CCM router", "NSX manager", "read from", "flags"]
    yield from (line + "\n" for line in _table([*headers, "warnings"], rows))


def _missing_lines(missing: Sequence[dict[str, Any]]) -> Iterator[str]:
    yield (
        f"\n## Nodes without their route (missing: pods not reachable from outside) "
        f"({len(missing)})\n\n"
    )
    if not missing:
        yield "None.\n"
        return
    headers = ["cluster", "node", "node UID", "podCIDRs without route", "expected router"]
    rows = [
        [
            m["cluster"],
            m["node"],
            f"`{m['uid']}`",
            m["missing_cidrs"],
            m["expected_router"],
            m["node_created"],
            _age(m["node_age_seconds"]),
        ]
        for m in missing[:SECTION_LIMIT]
    ]
    yield from (line + "\n" for line in _table([*headers, "node created", "node age"], rows))
    if len(missing) > SECTION_LIMIT:
        yield f"\n... and {len(missing) - SECTION_LIMIT} more: see report.json.\n"


def _age(seconds: int) -> str:
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def to_markdown(report: dict[str, Any]) -> str:
    return "".join(iter_markdown(report))


def _terminal_placement(report: dict[str, Any], found: Census) -> list[str]:
    """The other direction: each cluster's CCM router, missing routes, misplaced routes."""
    lines: list[str] = []
    clusters = report["clusters"]
    if clusters:
        lines += ["", "CCM routers:"]
        for c in clusters[:TERMINAL_LIMIT]:
            routing = c.get("pod_routing")
            if routing is None:
                where = "unknown"
            elif routing:
                where = f"{c.get('router_path') or '?'} on {c.get('nsx_host') or '?'}"
            else:
                where = "pod routing off"
            flags = f" [{', '.join(c['flags'])}]" if c.get("flags") else ""
            lines.append(f"  {c['name']}: {where}{flags}")
        if len(clusters) > TERMINAL_LIMIT:
            lines.append(f"  ... and {len(clusters) - TERMINAL_LIMIT} more (see the reports)")
    missing = report.get("nodes_without_route", [])
    if missing:
        lines += ["", f"Nodes without their route: {len(missing)}"]
        for m in missing[:TERMINAL_LIMIT]:
            lines.append(
                f"  {m['cluster']}/{m['node']}  {m['uid']}  {', '.join(m['missing_cidrs'])}"
                f"  expected on {m['expected_router']}"
            )
        if len(missing) > TERMINAL_LIMIT:
            lines.append(f"  ... and {len(missing) - TERMINAL_LIMIT} more (see the reports)")
    misplaced = found.sections["misplaced"]
    if misplaced:
        rows: Sequence[Row] = report["routes"]
        lines += ["", f"Misplaced routes (kept): {len(misplaced)}"]
        for i in misplaced[:TERMINAL_LIMIT]:
            r = rows[i]
            lines.append(
                f"  {r['router_path']}  {r['network']:<18}  {r['id']}"
                f"  expected on {r['expected_router']}"
            )
        if len(misplaced) > TERMINAL_LIMIT:
            lines.append(f"  ... and {len(misplaced) - TERMINAL_LIMIT} more (see the reports)")
    return lines


def to_terminal(report: dict[str, Any], paths: Sequence[str] = ()) -> str:
    """The readable summary: the facts of report.md's opening, in the same words."""
    summary = report["summary"]
    mode = report["mode"]
    verdicts = ", ".join(f"{k} {v}" for k, v in summary["verdicts"].items() if v) or "no routes"
    lines = [
        f"nsx-route-gc {mode} of {report['nsx']['host']}: "
        f"{len(report['nsx']['routers'])} router(s), {len(report['clusters'])} cluster(s)",
        f"Verdicts: {verdicts}",
    ]
    actions = ", ".join(f"{k} {v}" for k, v in summary["actions"].items() if v and k != "none")
    if actions:
        lines.append(f"Actions: {actions}")
    lines += [f"{label}: {value}" for label, value in digest_lines(report)]
    rows: Sequence[Row] = report["routes"]
    found = census(rows)
    lines += ["", ("What will happen:" if mode == "scan" else "What happened:")]
    lines += [f"  {line}" for line in outcome_counts(report, found)]
    for action, title in _OUTCOMES.get(mode, ()):
        indices = found.by_action.get(action, ())
        if not indices:
            continue
        lines += ["", f"{title} ({len(indices)}):"]
        for i in indices[:TERMINAL_LIMIT]:
            r = rows[i]
            detail = r["hold_reason"] or r.get("error") or r.get("note")
            extra = f" [{detail}]" if detail else ""
            high = "[HIGH] " if r["severity"] == "high" else ""
            lines.append(
                f"  {high}{r['router_path']}  {r['network']:<18}  {r['id']}  {r['reason']}{extra}"
            )
        if len(indices) > TERMINAL_LIMIT:
            lines.append(f"  ... and {len(indices) - TERMINAL_LIMIT} more (see the reports)")
    lines += _terminal_placement(report, found)
    trouble = problems(report)
    if trouble:
        lines += ["", f"Problems ({len(trouble)}):"] + [f"  {p}" for p in trouble]
    policy = policy_lines(report)
    if policy:
        lines += ["", "Policy in force:"] + [f"  {p}" for p in policy]
    if found.quiet:
        lines += ["", f"{QUIET_TITLE}: {len(found.quiet)} (listed in report.md and report.csv)"]
    if report.get("apply_command"):
        lines += ["", "Apply exactly this plan:", f"  {report['apply_command']}"]
    if paths:
        lines.append("")
        lines.append("Reports: " + ", ".join(paths))
    return "\n".join(lines) + "\n"
