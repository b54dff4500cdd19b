"""Placement: is every live node's route where its cluster's CCM puts it? A pure function.

Judgement (judge.py) looks at the routes that exist; placement looks the other way, from each
cluster's CCM settings (``ClusterInventory.ccm``) to the routes that should exist:

- each cluster is flagged when its CCM settings are unknown, point at another NSX manager, at
  a path that is not ``/infra/tier-1s/<id>``, or at a router this run did not scan (whole);
- a live node of an inventoried cluster with pod routing on, whose CCM router on this manager
  was listed whole, that has a podCIDR without the route ``<node UID>_<cidr, / as _>`` there
  and is older than the grace period, is **missing** (``Plan.missing``);
- a managed route of such a live node found on another router is **misplaced**
  (``RouteVerdict.expected_router``): left behind by a router change. It keeps its verdict and
  action; nothing here makes anything deletable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from nsx_route_gc.judge import NetKey, network_key
from nsx_route_gc.models import (
    ClusterInventory,
    ClusterStatus,
    MissingRoute,
    Plan,
    Route,
    RouterListing,
    RouteVerdict,
    Verdict,
    manager_key,
    parse_managed_id,
)

FLAG_SETTINGS_UNKNOWN = "ccm-settings-unknown"
FLAG_HOST_UNKNOWN = "ccm-nsx-host-unknown"
FLAG_OTHER_MANAGER = "other-manager"
FLAG_NOT_TIER1_PATH = "router-path-not-tier1"
FLAG_ROUTER_NOT_SCANNED = "router-not-scanned"
FLAG_ROUTER_NOT_LISTED = "router-not-listed"

# Clusters whose nodes were read in this run: only their settings could have been read too.
_INVENTORIED = (ClusterStatus.OK, ClusterStatus.DELETING)


def place(plan: Plan, *, nsx_host: str, now: datetime, min_age: timedelta) -> Plan:
    """``plan`` with cluster flags, misplaced routes marked and the missing routes listed.

    ``now`` is the moment the inventory began (as for judgement's grace period): a node
    younger than ``min_age`` then may not have its route yet.
    """
    scanned = {r.path: r for r in plan.routers}
    ours = manager_key(nsx_host)
    clusters: list[ClusterInventory] = []
    # Cluster name -> the router its CCM writes to on this manager (where the rules apply).
    targets: dict[str, str] = {}
    for cluster in plan.clusters:
        flags, target = _cluster_flags(cluster, scanned, ours)
        merged = tuple(dict.fromkeys((*cluster.flags, *flags)))
        clusters.append(replace(cluster, flags=merged) if merged != cluster.flags else cluster)
        if target is not None and cluster.status is ClusterStatus.OK:
            targets[cluster.name] = target
    verdicts = _mark_misplaced(plan.verdicts, clusters, targets)
    missing = _missing(clusters, targets, scanned, now, min_age)
    return replace(plan, clusters=tuple(clusters), verdicts=verdicts, missing=tuple(missing))


def _cluster_flags(
    cluster: ClusterInventory, scanned: Mapping[str, RouterListing], ours: str | None
) -> tuple[list[str], str | None]:
    ccm = cluster.ccm
    if ccm is None:
        unknown = cluster.status in _INVENTORIED
        return ([FLAG_SETTINGS_UNKNOWN] if unknown else []), None
    if not ccm.pod_routing:
        return [], None
    flags: list[str] = []
    router = ccm.router
    if router is None or ccm.router_path != router:
        # A project path, a Tier-0 or a trailing slash: the CCM still writes under
        # /infra/tier-1s/<last segment> (or nowhere, for an empty segment).
        flags.append(FLAG_NOT_TIER1_PATH)
    host = manager_key(ccm.nsx_host)
    if host is None:
        return [*flags, FLAG_HOST_UNKNOWN], None
    if host != ours:
        return [*flags, FLAG_OTHER_MANAGER], None
    if router is None:
        return flags, None
    listing = scanned.get(router)
    if listing is None:
        flags.append(FLAG_ROUTER_NOT_SCANNED)
    elif not listing.listed:
        flags.append(FLAG_ROUTER_NOT_LISTED)
    return flags, router


def _mark_misplaced(
    verdicts: tuple[RouteVerdict, ...],
    clusters: Iterable[ClusterInventory],
    targets: Mapping[str, str],
) -> tuple[RouteVerdict, ...]:
    if not targets:
        return verdicts
    by_uid = {
        node.uid.lower(): targets[c.name] for c in clusters if c.name in targets for node in c.nodes
    }
    out: list[RouteVerdict] | None = None
    for i, v in enumerate(verdicts):
        # Only verdicts matched to a live node name its cluster: a cheap filter first.
        if v.cluster not in targets or v.verdict is Verdict.FOREIGN or v.node is None:
            continue
        parsed = parse_managed_id(v.route.id)
        target = by_uid.get(parsed[0]) if parsed else None
        if target is None or v.route.router_path == target:
            continue
        if out is None:
            out = list(verdicts)
        out[i] = replace(v, expected_router=target)
    return verdicts if out is None else tuple(out)


def _missing(
    clusters: Iterable[ClusterInventory],
    targets: Mapping[str, str],
    scanned: Mapping[str, RouterListing],
    now: datetime,
    min_age: timedelta,
) -> list[MissingRoute]:
    present: dict[str, set[tuple[str, NetKey | str]]] = {}
    out: list[MissingRoute] = []
    for cluster in clusters:
        router = targets.get(cluster.name)
        listing = scanned.get(router) if router else None
        if router is None or listing is None or not listing.listed:
            continue
        if router not in present:
            present[router] = _route_keys(listing.routes)
        routes = present[router]
        for node in cluster.nodes:
            if not node.pod_cidrs or node.created is None:
                continue
            age = now - node.created
            if age < min_age:
                continue
            uid = node.uid.lower()
            lacking = tuple(c for c in node.pod_cidrs if (uid, _cidr_key(c)) not in routes)
            if lacking:
                out.append(
                    MissingRoute(
                        cluster=cluster.name,
                        node=node.name,
                        uid=node.uid,
                        pod_cidrs=node.pod_cidrs,
                        missing_cidrs=lacking,
                        expected_router=router,
                        created=node.created,
                        age=age,
                    )
                )
    return out


def _cidr_key(cidr: str) -> NetKey | str:
    # The network as judgement keys it (equal exactly when ipaddress's networks are, without
    # ipaddress for plain IPv4: keying 100,000 route ids with ipaddress took 0.8 s); the
    # text itself when it is no network.
    key = network_key(cidr)
    return cidr if key is None else key


def _route_keys(routes: Iterable[Route]) -> set[tuple[str, NetKey | str]]:
    """(node UID, network) of every route whose id has the CCM's shape."""
    keys: set[tuple[str, NetKey | str]] = set()
    for route in routes:
        parsed = parse_managed_id(route.id)
        if parsed is not None:
            keys.add((parsed[0], _cidr_key(parsed[1])))
    return keys


__all__ = [
    "FLAG_HOST_UNKNOWN",
    "FLAG_NOT_TIER1_PATH",
    "FLAG_OTHER_MANAGER",
    "FLAG_ROUTER_NOT_LISTED",
    "FLAG_ROUTER_NOT_SCANNED",
    "FLAG_SETTINGS_UNKNOWN",
    "place",
]
