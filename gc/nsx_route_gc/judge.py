"""Judgement: what each route is and what is to be done with it. A pure function, no I/O.

The rules are the product brief's, in its order: ownership, live node, no live node (owner by
network or cluster tag), same network twice on one router, then actions and their holds.
"""

from __future__ import annotations

import functools
import ipaddress
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from nsx_route_gc.heap import collector_paused
from nsx_route_gc.models import (
    CLUSTER_TAG_SCOPE,
    DEFAULT_CCM_CLUSTER_NAME,
    EVERY_CLUSTER,
    LIMIT_HOLDS,
    NODE_TAG_SCOPE,
    STATIC_ROUTES,
    Action,
    ClusterInventory,
    ClusterStatus,
    Node,
    Plan,
    Policy,
    Route,
    RouterListing,
    RouteVerdict,
    Verdict,
    parse_managed_id,
    parse_network,
)

FLAG_TAG_WITHOUT_ID = "managed-tag-without-ccm-id"
FLAG_BAD_NETWORK = "invalid-network"
FLAG_PATH_ELSEWHERE = "path-not-under-router"
SEVERITY_HIGH = "high"


# A network as (IP version, network address as an int, prefix length): equal exactly when the
# ipaddress objects are, hashed and compared far faster, and built without ipaddress for the
# common IPv4 form. Judging 100,000 routes parses about as many networks.
NetKey = tuple[int, int, int]
_BITS = {4: 32, 6: 128}


def network_key(text: str) -> NetKey | None:
    """A network's key, None when ipaddress refuses the text (placement keys routes with it)."""
    fast = _ipv4_key(text)
    if fast is not None:
        return fast
    try:
        net = parse_network(text)
    except ValueError:
        return None
    return (net.version, int(net.network_address), net.prefixlen)


# Cached: each network is looked at by several rules (and node CIDRs by every route).
_net = functools.lru_cache(maxsize=1 << 18)(network_key)


def _ipv4_key(text: str) -> NetKey | None:
    """``a.b.c.d/n`` in the canonical form ipaddress accepts, else None (ipaddress decides)."""
    address, sep, length = text.partition("/")
    if not sep or not (length.isascii() and length.isdigit()) or len(length) > 2:
        return None
    prefixlen = int(length)
    octets = address.split(".")
    if prefixlen > 32 or len(octets) != 4:
        return None
    value = 0
    for octet in octets:
        # ipaddress refuses leading zeros and non-ASCII digits; leave those to it.
        if not (octet.isascii() and octet.isdigit()) or len(octet) > 3:
            return None
        if len(octet) > 1 and octet[0] == "0":
            return None
        number = int(octet)
        if number > 255:
            return None
        value = value << 8 | number
    return (4, value & _mask(32, prefixlen), prefixlen)


def _mask(bits: int, prefixlen: int) -> int:
    return ((1 << bits) - 1) ^ ((1 << (bits - prefixlen)) - 1)


def _subnet_of(net: NetKey, of: NetKey) -> bool:
    version, address, prefixlen = net
    if version != of[0] or prefixlen < of[2]:
        return False
    return address & _mask(_BITS[version], of[2]) == of[1]


@functools.lru_cache(maxsize=1 << 16)
def _addr(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _tag_values(route: Route, scope: str) -> list[str]:
    # Route.tag_values, without its generator: this runs twice for most of 100,000 routes.
    return [tag for s, tag in route.tags if s == scope]


@dataclass(frozen=True, slots=True)
class _Owner:
    cluster: ClusterInventory
    node: Node


class _Index:
    """Dictionary lookups over the inventories, built once, so judging is linear in routes."""

    def __init__(self, clusters: Sequence[ClusterInventory]) -> None:
        self.clusters = clusters
        self.by_uid: dict[str, _Owner] = {}
        self.by_name: dict[str, ClusterInventory] = {c.name: c for c in clusters}
        # The exact networks of live nodes' pod CIDRs.
        self.node_cidrs: dict[NetKey, ClusterInventory] = {}
        # Cluster CIDRs keyed by (family, prefix length) then network address: a route's owners
        # are found by masking its address at each known prefix length, not by scanning CIDRs.
        self.cluster_cidrs: dict[tuple[int, int], dict[int, list[ClusterInventory]]] = {}
        for cluster in clusters:
            if cluster.status in (ClusterStatus.OK, ClusterStatus.DELETING):
                for node in cluster.nodes:
                    self.by_uid[node.uid.lower()] = _Owner(cluster, node)
                    for cidr in node.pod_cidrs:
                        net = _net(cidr)
                        if net is not None:
                            self.node_cidrs.setdefault(net, cluster)
            for cidr in cluster.pod_cidrs:
                net = _net(cidr)
                if net is not None:
                    by_len = self.cluster_cidrs.setdefault((net[0], net[2]), {})
                    by_len.setdefault(net[1], []).append(cluster)
        self.all_inventories_ok = all(
            c.status is ClusterStatus.OK for c in clusters if c.status is not ClusterStatus.RETIRED
        )

    def owners_by_network(self, network: NetKey) -> list[ClusterInventory]:
        found: dict[str, ClusterInventory] = {}
        exact = self.node_cidrs.get(network)
        if exact is not None:
            found[exact.name] = exact
        version, address, prefixlen = network
        bits = _BITS[version]
        for (cidr_version, cidr_len), nets in self.cluster_cidrs.items():
            if cidr_version != version or cidr_len > prefixlen:
                continue
            for cluster in nets.get(address & _mask(bits, cidr_len), ()):
                found.setdefault(cluster.name, cluster)
        return list(found.values())


def judge(
    routers: Sequence[RouterListing],
    clusters: Sequence[ClusterInventory],
    policy: Policy,
    now: datetime,
) -> Plan:
    """Judge every route of every router listed whole against the clusters' inventories."""
    with collector_paused():
        plan = _judge(routers, clusters, policy, now)
    # The caches hold an entry per network judged: free them for the rest of the run.
    _net.cache_clear()
    _addr.cache_clear()
    return plan


def _judge(
    routers: Sequence[RouterListing],
    clusters: Sequence[ClusterInventory],
    policy: Policy,
    now: datetime,
) -> Plan:
    index = _Index(clusters)
    verdicts: list[RouteVerdict] = []
    limit_holds: list[tuple[str, str]] = []
    for router in routers:
        if not router.listed:
            continue  # never judge a router from a partial list
        judged = [_judge_route(route, index, policy) for route in router.routes]
        judged = _apply_same_network_rule(judged, index)
        judged = [_hold(v, policy, now) for v in judged]
        judged, hold = _apply_router_limit(router.path, judged, policy)
        if hold:
            limit_holds.append((router.path, hold))
        verdicts.extend(judged)
    verdicts, run_hold = _apply_run_limit(verdicts, policy)
    if run_hold:
        limit_holds.append(("*", run_hold))
    return Plan(tuple(routers), tuple(clusters), tuple(verdicts), tuple(limit_holds))


def _judge_route(route: Route, index: _Index, policy: Policy) -> RouteVerdict:
    if route.path != route.router_path + STATIC_ROUTES + route.id:
        # Listed on one router, claiming to live somewhere else (a Tier-0, another Tier-1):
        # not ours to touch, whatever its tags say, and worth a human's look.
        return RouteVerdict(
            route,
            Verdict.FOREIGN,
            f"path-elsewhere: listed on {route.router_path}, NSX gives its path as {route.path}",
            flag=FLAG_PATH_ELSEWHERE,
        )
    network = _net(route.network)
    cluster_tags = _tag_values(route, CLUSTER_TAG_SCOPE)
    parsed = parse_managed_id(route.id)
    if network is None:
        flag = FLAG_BAD_NETWORK if cluster_tags else None
        return RouteVerdict(
            route, Verdict.FOREIGN, f"invalid-network: {route.network!r}", flag=flag
        )
    if not cluster_tags:
        return RouteVerdict(route, Verdict.FOREIGN, "not-managed: no cluster-name tag")
    id_network = _net(parsed[1]) if parsed else None
    if parsed is None or id_network != network:
        return RouteVerdict(
            route,
            Verdict.FOREIGN,
            "not-managed: cluster-name tag but id is not <node uid>_<network>",
            flag=FLAG_TAG_WITHOUT_ID,
        )
    uid = parsed[0]
    owner = index.by_uid.get(uid)
    if owner is not None:
        return _judge_live_node(route, network, owner)
    return _judge_without_node(route, uid, network, cluster_tags, index, policy)


def _judge_live_node(route: Route, network: NetKey, owner: _Owner) -> RouteVerdict:
    node, cluster = owner.node, owner.cluster
    if not node.pod_cidrs:
        # The CCM wrote this route for this very node: a node without any podCIDR now is
        # something to look at, not proof that the route is stale.
        return RouteVerdict(
            route,
            Verdict.UNVERIFIED,
            f"node-without-podcidr: node {node.name} has no podCIDR",
            cluster=cluster.name,
            node=node.name,
        )
    node_nets = {_net(c) for c in node.pod_cidrs}
    if network not in node_nets:
        cidrs = ", ".join(node.pod_cidrs)
        return RouteVerdict(
            route,
            Verdict.ORPHANED,
            f"cidr-mismatch: node {node.name} has podCIDRs {cidrs}",
            cluster=cluster.name,
            node=node.name,
        )
    addresses = {_addr(a) for a in node.addresses} - {None}
    hops = [_addr(h) for h in route.next_hops]
    if hops and all(h in addresses for h in hops):
        return RouteVerdict(route, Verdict.LIVE, "node-live", cluster=cluster.name, node=node.name)
    known = ", ".join(node.addresses) or "none"
    return RouteVerdict(
        route,
        Verdict.STALE_NEXT_HOP,
        f"next-hop-mismatch: node {node.name} has addresses {known}",
        cluster=cluster.name,
        node=node.name,
    )


def _judge_without_node(
    route: Route,
    uid: str,
    network: NetKey,
    cluster_tags: Iterable[str],
    index: _Index,
    policy: Policy,
) -> RouteVerdict:
    # The node-name tag is evidence, not proof: it names the node the route was written for.
    tagged_node = next(iter(_tag_values(route, NODE_TAG_SCOPE)), None)
    owners = {c.name: c for c in index.owners_by_network(network)}
    for tag in cluster_tags:
        tagged = index.by_name.get(tag)
        if tag != DEFAULT_CCM_CLUSTER_NAME and tagged is not None:
            owners.setdefault(tagged.name, tagged)
    if not owners:
        if policy.unattributed == "delete" and index.all_inventories_ok:
            return RouteVerdict(
                route,
                Verdict.ORPHANED,
                "no-owner: no known cluster claims this network and the cluster list is complete",
                node=tagged_node,
                checked_clusters=EVERY_CLUSTER,
            )
        return RouteVerdict(
            route,
            Verdict.UNATTRIBUTED,
            f"no-owner: no known cluster claims {route.network}",
            node=tagged_node,
            checked_clusters=EVERY_CLUSTER,
        )
    names = ",".join(sorted(owners))
    by_status: dict[ClusterStatus, list[str]] = defaultdict(list)
    for cluster in owners.values():
        by_status[cluster.status].append(cluster.name)
    # Any doubt about a possible owner keeps the route: failed or deleting owners win.
    if by_status[ClusterStatus.FAILED]:
        failed = ",".join(sorted(by_status[ClusterStatus.FAILED]))
        return RouteVerdict(
            route,
            Verdict.UNVERIFIED,
            f"inventory-failed: owner cluster {failed} could not be inventoried",
            cluster=names,
            node=tagged_node,
            checked_clusters=tuple(sorted(owners)),
        )
    if by_status[ClusterStatus.DELETING]:
        deleting = ",".join(sorted(by_status[ClusterStatus.DELETING]))
        return RouteVerdict(
            route,
            Verdict.UNVERIFIED,
            f"cluster-deleting: owner cluster {deleting} is being deleted",
            cluster=names,
            node=tagged_node,
            checked_clusters=tuple(sorted(owners)),
        )
    if by_status[ClusterStatus.OK]:
        live = ",".join(sorted(by_status[ClusterStatus.OK]))
        return RouteVerdict(
            route,
            Verdict.ORPHANED,
            f"node-gone: no node with uid {uid} in cluster {live}",
            cluster=live,
            node=tagged_node,
            checked_clusters=tuple(sorted(owners)),
        )
    retired = sorted(by_status[ClusterStatus.RETIRED])
    evidence = "; ".join(e for e in (owners[n].evidence for n in retired) if e)
    return RouteVerdict(
        route,
        Verdict.ORPHANED,
        f"cluster-gone: cluster {','.join(retired)} is retired"
        + (f" ({evidence})" if evidence else ""),
        cluster=",".join(retired),
        node=tagged_node,
        checked_clusters=tuple(sorted(owners)),
    )


def _apply_same_network_rule(judged: list[RouteVerdict], index: _Index) -> list[RouteVerdict]:
    """Rule 4: a second route for a live network black-holes traffic; two live ones conflict."""
    live_by_net: dict[NetKey, list[RouteVerdict]] = defaultdict(list)
    for v in judged:
        if v.verdict is Verdict.LIVE:
            net = _net(v.route.network)
            if net is not None:
                live_by_net[net].append(v)
    if not live_by_net:
        return judged
    out: list[RouteVerdict] = []
    for v in judged:
        net = _net(v.route.network)
        lives = live_by_net.get(net) if net is not None else None
        if not lives or v.verdict is Verdict.FOREIGN:
            out.append(v)
        elif v.verdict is Verdict.LIVE:
            if len(lives) > 1:
                others = ",".join(o.route.id for o in lives if o is not v)
                out.append(
                    replace(
                        v,
                        verdict=Verdict.CONFLICT,
                        reason=f"conflict: network also carried by live route {others}",
                        severity=SEVERITY_HIGH,
                    )
                )
            else:
                out.append(v)
        else:
            out.append(_shadowing(v, lives[0], index))
    return out


def _shadowing(v: RouteVerdict, live: RouteVerdict, index: _Index) -> RouteVerdict:
    shadowed = replace(v, shadows=live.route.id, severity=SEVERITY_HIGH)
    suffix = f"; shadows live route {live.route.id}"
    if v.verdict is Verdict.ORPHANED:
        return replace(shadowed, reason=f"{v.reason}{suffix}")
    if v.verdict is Verdict.UNATTRIBUTED and index.all_inventories_ok:
        return replace(
            shadowed,
            verdict=Verdict.ORPHANED,
            reason=f"shadows-live-route: no known node owns it{suffix}",
            cluster=live.cluster,
        )
    # Unverified and stale-next-hop routes keep their verdict: the doubt is not ours to settle.
    return replace(shadowed, reason=f"{v.reason}{suffix}")


def _hold(v: RouteVerdict, policy: Policy, now: datetime) -> RouteVerdict:
    if v.verdict is not Verdict.ORPHANED:
        return v
    reason = _hold_reason(v.route, policy, now)
    if reason:
        return replace(v, action=Action.HELD, hold_reason=reason)
    return replace(v, action=Action.DELETE)


def _hold_reason(route: Route, policy: Policy, now: datetime) -> str | None:
    for scope, tag in route.tags:
        if scope in policy.protect_tag_scopes:
            return f"protected-tag: {scope}={tag}"
    if route.id in policy.protect_route_ids:
        return "keep-list: route id"
    net = _net(route.network)
    for protected in policy.protect_networks:
        pnet = _net(protected)
        if net is not None and pnet is not None and _subnet_of(net, pnet):
            return f"protected-network: {protected}"
    if route.protection == "PROTECTED":
        return "protected-by-nsx: _protection PROTECTED"
    if route.protection == "REQUIRE_OVERRIDE" and not policy.allow_overwrite:
        return "protected-by-principal: REQUIRE_OVERRIDE and policy.allow_overwrite is false"
    if route.create_time_ms is None:
        return "grace-period: route has no _create_time"
    age = now - datetime.fromtimestamp(route.create_time_ms / 1000, tz=now.tzinfo)
    if age < policy.min_age:
        return f"grace-period: created {_human(age)} ago, min_age {_human(policy.min_age)}"
    return None


def narrow(plan: Plan, keep: Callable[[RouteVerdict], bool], policy: Policy) -> Plan:
    """The plan with only the verdicts ``keep`` selects (``scan --cluster``), the blast-radius
    limits judged again on what it deletes: each router's share against all its managed
    routes, not only the ones kept."""
    managed = Counter(
        v.route.router_path for v in plan.verdicts if v.verdict is not Verdict.FOREIGN
    )
    kept = [_unlimited(v) for v in plan.verdicts if keep(v)]
    by_router: dict[str, list[RouteVerdict]] = {}
    for v in kept:
        by_router.setdefault(v.route.router_path, []).append(v)
    verdicts: list[RouteVerdict] = []
    limit_holds: list[tuple[str, str]] = []
    for router, routes in by_router.items():
        limited, hold = _apply_router_limit(router, routes, policy, managed[router])
        if hold:
            limit_holds.append((router, hold))
        verdicts.extend(limited)
    verdicts, run_hold = _apply_run_limit(verdicts, policy)
    if run_hold:
        limit_holds.append(("*", run_hold))
    return replace(plan, verdicts=tuple(verdicts), limit_holds=tuple(limit_holds))


def _unlimited(v: RouteVerdict) -> RouteVerdict:
    """A verdict as it was before a blast-radius limit held it (limits hold only deletions)."""
    if v.action is Action.HELD and (v.hold_reason or "").startswith(LIMIT_HOLDS):
        return replace(v, action=Action.DELETE, hold_reason=None)
    return v


def _apply_router_limit(
    router: str, judged: list[RouteVerdict], policy: Policy, managed: int | None = None
) -> tuple[list[RouteVerdict], str | None]:
    if managed is None:
        managed = sum(1 for v in judged if v.verdict is not Verdict.FOREIGN)
    deleting = sum(1 for v in judged if v.action is Action.DELETE)
    if not deleting or not managed:
        return judged, None
    percent = 100.0 * deleting / managed
    if percent <= policy.max_delete_percent:
        return judged, None
    hold = (
        f"max-delete-percent: {deleting} of {managed} managed routes on {router} "
        f"({percent:.0f}%) > {policy.max_delete_percent:g}%"
    )
    return _hold_all(judged, hold), hold


def _apply_run_limit(
    verdicts: list[RouteVerdict], policy: Policy
) -> tuple[list[RouteVerdict], str | None]:
    deleting = sum(1 for v in verdicts if v.action is Action.DELETE)
    if deleting <= policy.max_deletes:
        return verdicts, None
    hold = f"max-deletes: {deleting} deletions > max_deletes {policy.max_deletes}"
    return _hold_all(verdicts, hold), hold


def _hold_all(verdicts: list[RouteVerdict], hold: str) -> list[RouteVerdict]:
    return [
        replace(v, action=Action.HELD, hold_reason=hold) if v.action is Action.DELETE else v
        for v in verdicts
    ]


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return f"-{_human(-delta)}"
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"
