"""``explain``: the judgement of one route with every piece of evidence looked at, built from
a report document (a fresh scan's, or a saved report.json): its row, the clusters' state and
the policy in force. Judgement itself stays in ``judge``; this only reads what it recorded.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from nsx_route_gc.models import (
    CLUSTER_TAG_SCOPE,
    EVERY_CLUSTER,
    NODE_TAG_SCOPE,
    checked_names,
    parse_managed_id,
    parse_network,
)

Row = dict[str, Any]

_NODE_VERDICTS = {"live", "stale-next-hop"}


def find_routes(rows: Iterable[Row], query: str) -> list[Row]:
    """The rows a route id, a policy path or a network names."""
    text = query.strip()
    network = _network(text)
    found = []
    for row in rows:
        named = text in (row["id"], row.get("path"))
        if named or (network is not None and _network(str(row.get("network"))) == network):
            found.append(row)
    return found


def explain(report: dict[str, Any], row: Row) -> list[str]:
    """The lines that explain one row of ``report``."""
    lines = [f"Route {row['id']} on {row['router_path']}"]
    lines += [f"  path: {row.get('path')}"]
    lines += [
        f"  network {row['network']}, next hops {', '.join(row.get('next_hops') or []) or '-'}, "
        f"created {row.get('create_time') or '-'}, _revision {row.get('revision')}, "
        f"_protection {row.get('protection') or '-'}"
    ]
    tags = row.get("tags") or []
    lines += ["  tags: " + (", ".join(f"{t['scope']}={t['tag']}" for t in tags) or "none")]
    lines += _ownership(row)
    lines += _node(report, row)
    lines += _owners(report, row)
    lines += [f"Verdict: {row['verdict']}: {row.get('reason') or '-'}"]
    if row.get("shadows"):
        lines += [
            f"Same network on this router: a live route ({row['shadows']}) carries it too; "
            f"this one black-holes part of its traffic (severity {row.get('severity')})"
        ]
    if row.get("flag"):
        lines += [f"Flagged for a human: {row['flag']}"]
    lines += _guards(report, row)
    action = row["action"]
    why = row.get("hold_reason") or row.get("error") or row.get("note")
    lines += [f"Action: {action}" + (f": {why}" if why else "")]
    return lines


def _ownership(row: Row) -> list[str]:
    tagged = any(t.get("scope") == CLUSTER_TAG_SCOPE for t in row.get("tags") or [])
    parsed = parse_managed_id(row["id"])
    shape = parsed is not None and _same_network(parsed[1], str(row.get("network")))
    if tagged and shape:
        return ["Ownership: managed: a cluster-name tag and a CCM id <node uid>_<pod CIDR>"]
    missing = []
    if not tagged:
        missing.append(f"no {CLUSTER_TAG_SCOPE} tag")
    if not shape:
        missing.append("the id is not <node uid>_<its network>")
    return [f"Ownership: foreign ({'; '.join(missing)}): never changed, only reported"]


def _node(report: dict[str, Any], row: Row) -> list[str]:
    parsed = parse_managed_id(row["id"])
    if parsed is None:
        return []
    uid = parsed[0]
    node_tag = [t["tag"] for t in row.get("tags") or [] if t.get("scope") == NODE_TAG_SCOPE]
    named = f" (node-name tag {node_tag[0]})" if node_tag else ""
    if row.get("node") and row["verdict"] in _NODE_VERDICTS | {"orphaned"} and _matched(row):
        return [f"Node: UID {uid}{named} is node {row['node']} of cluster {row['cluster']}"]
    searched = [c["name"] for c in report["clusters"] if c["status"] == "ok"]
    return [
        f"Node: UID {uid}{named} searched for in the inventoried clusters "
        f"({', '.join(searched) or 'none'}): not found"
    ]


def _matched(row: Row) -> bool:
    """Whether judgement matched the route to a live node (not to its last known owner)."""
    reason = str(row.get("reason") or "")
    return row["verdict"] in _NODE_VERDICTS or reason.startswith("cidr-mismatch")


def _owners(report: dict[str, Any], row: Row) -> list[str]:
    network = _network(str(row.get("network")))
    containing = []
    for c in report["clusters"]:
        for cidr in c.get("pod_cidrs") or []:
            outer = _network(cidr)
            if network is not None and outer is not None and _within(network, outer):
                containing.append(c)
                break
    lines = [
        "Clusters whose pod CIDRs contain it: "
        + (", ".join(f"{c['name']} ({', '.join(c['pod_cidrs'])})" for c in containing) or "none")
    ]
    if row.get("checked_clusters"):
        names = [c["name"] for c in report["clusters"]]
        checked = checked_names(row["checked_clusters"], names)
        every = (
            " (every cluster of the run)" if tuple(row["checked_clusters"]) == EVERY_CLUSTER else ""
        )
        lines.append(f"Clusters checked{every}: " + (", ".join(checked) or "none"))
    lines.append("Inventories: " + ("; ".join(_state(c) for c in report["clusters"]) or "none"))
    return lines


def _state(c: dict[str, Any]) -> str:
    detail = c.get("error") or c.get("evidence")
    text = f"{c['name']} {c['status']}, {c['nodes']} node(s)"
    return f"{text} ({detail})" if detail else text


def _guards(report: dict[str, Any], row: Row) -> list[str]:
    """Each rule and guard of the policy in force, and whether it held this route."""
    policy = report.get("policy")
    if row["verdict"] != "orphaned" or not policy:
        return ["Guards: none apply (only orphaned routes are ever deleted)"]
    hold = str(row.get("hold_reason") or "")
    protect = policy["protect"]
    scopes = [t["scope"] for t in row.get("tags") or [] if t["scope"] in protect["tag_scopes"]]
    network = _network(str(row.get("network")))
    inside = [n for n in protect["networks"] if network and _within(network, _network(n))]
    created = _when(row.get("create_time"))
    started = _when(report.get("started_at"))
    age = f"{started - created} old at the scan" if created and started else "age unknown"
    limits = [
        h["reason"]
        for h in report.get("limit_holds") or []
        if h["router"] in {row["router_path"], "*"}
    ]
    protection = row.get("protection") or "NOT_PROTECTED"
    checks = [
        ("grace period", f"min_age {policy['min_age']}; {age}", hold.startswith("grace-period")),
        ("protection tag", f"scopes {', '.join(protect['tag_scopes']) or 'none'}; carries "
         f"{', '.join(scopes) or 'none'}", bool(scopes)),
        ("keep-list", "on policy.protect.route_ids" if row["id"] in protect["route_ids"]
         else "not on policy.protect.route_ids", row["id"] in protect["route_ids"]),
        ("protected networks", f"inside {', '.join(inside)}" if inside
         else "inside none of policy.protect.networks", bool(inside)),
        ("_protection", f"{protection}; allow_overwrite {str(policy['allow_overwrite']).lower()}",
         hold.startswith("protected-by")),
        ("limits", "; ".join(limits) or f"max_deletes {policy['max_deletes']}, "
         f"max_delete_percent {policy['max_delete_percent']:g}%: within", bool(limits)),
    ]  # fmt: skip
    lines = ["Guards:"]
    lines += [f"  {name}: {what} -> {'HOLDS' if held else 'passes'}" for name, what, held in checks]
    return lines


def _when(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return parse_network(text)
    except ValueError:
        return None


def _same_network(a: str, b: str) -> bool:
    first, second = _network(a), _network(b)
    return first is not None and first == second


def _within(
    inner: ipaddress.IPv4Network | ipaddress.IPv6Network,
    outer: ipaddress.IPv4Network | ipaddress.IPv6Network | None,
) -> bool:
    if outer is None or inner.version != outer.version:
        return False
    return inner.subnet_of(outer)  # type: ignore[arg-type]  # same version, checked above
