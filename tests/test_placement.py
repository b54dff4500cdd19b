"""Placement rules (placement.py), one plain case per rule: cluster flags, missing, misplaced."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta

import pytest

from factories import NOW, ccm_route, foreign_route
from nsx_route_gc.models import (
    CcmSettings,
    ClusterInventory,
    ClusterStatus,
    Node,
    Plan,
    Route,
    RouterListing,
    RouteVerdict,
    Verdict,
    ccm_router,
    manager_key,
)
from nsx_route_gc.placement import place

HOST = "nsx.example.com"
T1 = "/infra/tier-1s/tanzu-cl1"
T2 = "/infra/tier-1s/tanzu-cl2"
UID = "0b5e8a0e-6f1b-4b8e-9a0e-3c1d2e3f4a5b"
UID2 = "1c6f9b1f-7a2c-4c9f-8b1f-4d2e3f4a5b6c"
OLD = NOW - timedelta(days=2)
MIN_AGE = timedelta(hours=1)


def node(uid: str = UID, cidrs: tuple[str, ...] = ("172.16.144.0/24",), **kw: object) -> Node:
    fields: dict[str, object] = {"created": OLD, "addresses": ("172.16.128.10",)}
    fields.update(kw)
    return Node(uid=uid, name=f"n-{uid[:4]}", pod_cidrs=cidrs, **fields)  # type: ignore[arg-type]  # test builder


def settings(router: str | None = T1, host: str | None = HOST) -> CcmSettings:
    return CcmSettings(router_path=router, nsx_host=host, source="test")


@dataclass
class Case:
    name: str
    ccm: CcmSettings | None = field(default_factory=settings)
    nodes: tuple[Node, ...] = field(default_factory=lambda: (node(),))
    routes: dict[str, list[Route]] = field(default_factory=lambda: {T1: []})
    unlisted: tuple[str, ...] = ()
    status: ClusterStatus = ClusterStatus.OK
    flags: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()  # missing CIDRs
    misplaced: dict[str, str] = field(default_factory=dict)  # route id -> expected router


def route(uid: str = UID, cidr: str = "172.16.144.0/24", router: str = T1) -> Route:
    return ccm_route(uid, cidr, "172.16.128.10", router=router)


R_T1 = route()
R_T2 = route(router=T2)

CASES = [
    Case("route where the CCM writes: nothing to say", routes={T1: [R_T1]}),
    Case("no route on the CCM's router: missing", missing=("172.16.144.0/24",)),
    Case(
        "a dual-stack node missing one family: only that CIDR",
        nodes=(node(cidrs=("172.16.144.0/24", "fd00:10:244:1::/64")),),
        routes={T1: [R_T1]},
        missing=("fd00:10:244:1::/64",),
    ),
    Case(
        "a route id spelling the network another way (host bits, long IPv6) counts",
        nodes=(node(cidrs=("172.16.144.0/24", "fd00:10:244:1::/64")),),
        routes={T1: [route(cidr="172.16.144.7/24"), route(cidr="fd00:10:244:1:0:0:0:0/64")]},
    ),
    Case(
        "a route of the node's id for a neighbouring network does not count",
        routes={T1: [route(cidr="172.16.145.0/24"), route(cidr="172.16.144.0/25")]},
        missing=("172.16.144.0/24",),
    ),
    Case(
        "a node younger than the grace period: not yet",
        nodes=(node(created=NOW - timedelta(minutes=5)),),
    ),
    Case("a node without creation time: not judged", nodes=(node(created=None),)),
    Case("a node without podCIDR: nothing to route", nodes=(node(cidrs=()),)),
    Case("pod routing off: no expectation", ccm=settings(router=None)),
    Case(
        "settings unknown after a good inventory: flagged",
        ccm=None,
        flags=("ccm-settings-unknown",),
    ),
    Case(
        "settings unknown on a failed cluster: the failure says it",
        ccm=None,
        status=ClusterStatus.FAILED,
    ),
    Case(
        "another manager: flagged, nothing expected here",
        ccm=settings(host="nsx-b.example.com"),
        flags=("other-manager",),
    ),
    Case(
        "the same manager spelt differently",
        ccm=settings(host="https://NSX.example.com:443/"),
        routes={T1: [R_T1]},
    ),
    Case("no NSX host: flagged", ccm=settings(host=None), flags=("ccm-nsx-host-unknown",)),
    Case(
        "router not scanned: flagged, missing not judged",
        routes={T2: []},
        flags=("router-not-scanned",),
    ),
    Case(
        "router not listed whole: flagged, missing not judged",
        unlisted=(T1,),
        flags=("router-not-listed",),
    ),
    Case(
        "a project path: the CCM writes under /infra/tier-1s/<last segment>",
        ccm=settings(router="/orgs/default/projects/p/infra/tier-1s/tanzu-cl1"),
        routes={T1: [R_T1]},
        flags=("router-path-not-tier1",),
    ),
    Case(
        "route left on the old router after a router change: misplaced and missing",
        routes={T1: [R_T1], T2: []},
        ccm=settings(router=T2),
        missing=("172.16.144.0/24",),
        misplaced={R_T1.id: T2},
    ),
    Case(
        "misplaced is judged even when the CCM's router is not scanned",
        routes={T1: [R_T1]},
        ccm=settings(router=T2),
        flags=("router-not-scanned",),
        misplaced={R_T1.id: T2},
    ),
    Case("a deleting cluster: no expectation", status=ClusterStatus.DELETING),
    Case(
        "a route of the node's id counts without the CCM's tags (the CCM writes that id)",
        routes={T1: [foreign_route(R_T1.id, "172.16.144.0/24")]},
    ),
]


def _verdict(r: Route, clusters: dict[str, ClusterInventory]) -> RouteVerdict:
    """What judge() says of these routes: live for the node's own, foreign otherwise."""
    if not r.tags:
        return RouteVerdict(r, Verdict.FOREIGN, "not-managed")
    for c in clusters.values():
        for n in c.nodes:
            if r.id.startswith(n.uid):
                return RouteVerdict(r, Verdict.LIVE, "node-live", cluster=c.name, node=n.name)
    return RouteVerdict(r, Verdict.UNATTRIBUTED, "no-owner")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_placement_rules(case: Case) -> None:
    cluster = ClusterInventory("cl", "config", case.status, case.nodes, ccm=case.ccm)
    routers = tuple(
        RouterListing(path, tuple(rs), error="503" if path in case.unlisted else None)
        for path, rs in case.routes.items()
    )
    verdicts = tuple(_verdict(r, {"cl": cluster}) for rl in routers if rl.listed for r in rl.routes)
    plan = place(
        Plan(routers, (cluster,), verdicts), nsx_host=f"https://{HOST}", now=NOW, min_age=MIN_AGE
    )
    assert plan.clusters[0].flags == case.flags
    missing = [c for m in plan.missing for c in m.missing_cidrs]
    assert tuple(missing) == case.missing
    assert {v.route.id: v.expected_router for v in plan.verdicts if v.misplaced} == case.misplaced
    # Placement never changes what judgement decided.
    assert [(v.verdict, v.action) for v in plan.verdicts] == [
        (v.verdict, v.action) for v in verdicts
    ]


def test_a_missing_route_names_node_router_and_age() -> None:
    cluster = ClusterInventory(
        "cl2",
        "config",
        ClusterStatus.OK,
        (node(), node(UID2, ("172.16.145.0/24",))),
        ccm=settings(),
    )
    plan = place(
        Plan((RouterListing(T1, (R_T1,)),), (cluster,), ()), nsx_host=HOST, now=NOW, min_age=MIN_AGE
    )
    [missing] = plan.missing
    assert (missing.cluster, missing.uid, missing.pod_cidrs, missing.expected_router) == (
        "cl2",
        UID2,
        ("172.16.145.0/24",),
        T1,
    )
    assert missing.age == timedelta(days=2)
    assert missing.created == OLD


def test_clusters_sharing_a_router_are_each_checked_against_all_its_routes() -> None:
    # Clusters interleaved over two routers: each router's routes count for every cluster
    # writing to it, whichever comes first or last.
    uid3, uid4 = UID.replace("0b5e", "3a3a"), UID.replace("0b5e", "4b4b")
    clusters = [
        ClusterInventory("a", "config", ClusterStatus.OK, (node(UID),), ccm=settings(T1)),
        ClusterInventory("b", "config", ClusterStatus.OK, (node(uid3),), ccm=settings(T2)),
        ClusterInventory("c", "config", ClusterStatus.OK, (node(UID2),), ccm=settings(T1)),
        ClusterInventory("d", "config", ClusterStatus.OK, (node(uid4),), ccm=settings(T1)),
    ]
    routers = (
        RouterListing(T1, (route(UID), route(uid4), route(uid3))),
        RouterListing(T2, (route(UID2, router=T2),)),
    )
    plan = place(Plan(routers, tuple(clusters), ()), nsx_host=HOST, now=NOW, min_age=MIN_AGE)
    assert [(m.cluster, m.uid, m.expected_router) for m in plan.missing] == [
        ("b", uid3, T2),
        ("c", UID2, T1),
    ]


def test_flags_already_set_by_discovery_are_kept_and_retired_clusters_get_flags_too() -> None:
    retired = ClusterInventory(
        "gone",
        "memory",
        ClusterStatus.RETIRED,
        ccm=settings(host="other"),
        flags=("ccm-config-differs",),
    )
    plan = place(Plan((), (retired,), ()), nsx_host=HOST, now=NOW, min_age=MIN_AGE)
    assert plan.clusters[0].flags == ("ccm-config-differs", "other-manager")
    assert plan.missing == ()


@pytest.mark.parametrize(
    ("path", "router"),
    [
        ("/infra/tier-1s/t1", "/infra/tier-1s/t1"),
        ("/orgs/default/projects/p/infra/tier-1s/t1", "/infra/tier-1s/t1"),
        ("t1", "/infra/tier-1s/t1"),
        ("/infra/tier-1s/t1/", None),
        ("", None),
        (None, None),
    ],
)
def test_router_as_the_ccm_maps_it(path: str | None, router: str | None) -> None:
    assert ccm_router(path) == router


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("nsx.example.com", "https://NSX.example.com", True),
        ("nsx.example.com:443", "nsx.example.com", True),
        ("https://nsx.example.com/base/path", "nsx.example.com.", True),
        ("nsx.example.com:8443", "nsx.example.com", False),
        ("10.0.0.5", "nsx.example.com", False),
        ("[fd00::5]:443", "fd00::5", True),
    ],
)
def test_managers_compare_normalised(a: str, b: str, same: bool) -> None:
    assert (manager_key(a) == manager_key(b)) is same


def test_nothing_changes_without_settings() -> None:
    plan = Plan((RouterListing(T1, (R_T1,)),), (), ())
    assert place(plan, nsx_host=HOST, now=NOW, min_age=MIN_AGE) == replace(plan)
