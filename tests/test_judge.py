"""Judgement, one plain case per rule of the brief."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from nsx_route_gc.judge import judge, narrow
from nsx_route_gc.models import (
    CLUSTER_TAG_SCOPE,
    EVERY_CLUSTER,
    NODE_TAG_SCOPE,
    Action,
    ClusterInventory,
    ClusterStatus,
    Node,
    Policy,
    Route,
    RouterListing,
    RouteVerdict,
    Verdict,
    parse_managed_id,
    plan_sha256,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
OLD_MS = int((NOW - timedelta(days=30)).timestamp() * 1000)
T1 = "/infra/tier-1s/tanzu-cl1"

UID_A = "a57a555e-e4eb-49ad-af74-e11a7d7a8ad8"
UID_B = "1455b87f-8fbe-4cfd-b43c-fdfb822acfc7"
UID_C = "0c1b2a3d-0000-4000-8000-000000000003"


def route(
    uid: str = UID_A,
    network: str = "172.16.144.0/24",
    hop: str = "172.16.128.10",
    *,
    cluster_tag: str | None = "kubernetes",
    rid: str | None = None,
    created_ms: int | None = OLD_MS,
    protection: str = "NOT_PROTECTED",
    extra_tags: tuple[tuple[str, str], ...] = (),
    router: str = T1,
) -> Route:
    rid = rid or f"{uid}_{network.replace('/', '_')}"
    tags: tuple[tuple[str, str], ...] = extra_tags
    if cluster_tag is not None:
        tags = ((CLUSTER_TAG_SCOPE, cluster_tag), (NODE_TAG_SCOPE, "n"), *tags)
    return Route(
        router_path=router,
        id=rid,
        path=f"{router}/static-routes/{rid}",
        network=network,
        next_hops=(hop,),
        tags=tags,
        create_time_ms=created_ms,
        revision=0,
        protection=protection,
    )


def node(uid: str = UID_A, cidr: str = "172.16.144.0/24", ip: str = "172.16.128.10") -> Node:
    return Node(uid=uid, name=f"node-{uid[:4]}", pod_cidrs=(cidr,), addresses=(ip,))


def cluster(
    name: str = "cl2",
    *nodes: Node,
    status: ClusterStatus = ClusterStatus.OK,
    cidrs: tuple[str, ...] = ("172.16.144.0/21",),
) -> ClusterInventory:
    return ClusterInventory(name, "config", status, tuple(nodes), cidrs)


def retired(name: str = "cl1", cidrs: tuple[str, ...] = ("172.16.136.0/21",)) -> ClusterInventory:
    return ClusterInventory(name, "retired", ClusterStatus.RETIRED, (), cidrs)


@dataclass
class Case:
    name: str
    routes: list[Route]
    clusters: list[ClusterInventory]
    verdict: Verdict
    reason: str | None = None
    action: Action = Action.NONE
    policy: Policy = field(default_factory=Policy)
    hold: str | None = None
    flag: str | None = None


LIVE_CL2 = cluster("cl2", node())
CASES = [
    # Rule 1: ownership.
    Case(
        "no cluster tag is foreign",
        [route(cluster_tag=None)],
        [LIVE_CL2],
        Verdict.FOREIGN,
        "not-managed: no cluster-name tag",
    ),
    Case(
        "an invalid network without a cluster tag is foreign, not flagged",
        [route(network="not-a-cidr", cluster_tag=None)],
        [LIVE_CL2],
        Verdict.FOREIGN,
        "invalid-network: 'not-a-cidr'",
    ),
    Case(
        "tag without the CCM id shape is foreign and flagged",
        [route(rid="manual-route")],
        [LIVE_CL2],
        Verdict.FOREIGN,
        "not-managed: cluster-name tag but id",
        flag="managed-tag-without-ccm-id",
    ),
    Case(
        "id cidr differing from network is foreign",
        [route(rid=f"{UID_A}_10.0.0.0_24")],
        [LIVE_CL2],
        Verdict.FOREIGN,
        flag="managed-tag-without-ccm-id",
    ),
    Case(
        "an invalid network is foreign, never judged",
        [route(network="not-a-cidr", rid=f"{UID_A}_x_24")],
        [LIVE_CL2],
        Verdict.FOREIGN,
        "invalid-network",
        flag="invalid-network",
    ),
    # Rule 2: a live node.
    Case("node, cidr and next hop match: live", [route()], [LIVE_CL2], Verdict.LIVE, "node-live"),
    Case(
        "next hop no longer the node's address: stale-next-hop",
        [route(hop="172.16.128.99")],
        [LIVE_CL2],
        Verdict.STALE_NEXT_HOP,
        "next-hop-mismatch",
    ),
    Case(
        "network not the node's podCIDR: orphaned cidr-mismatch",
        [route(network="172.16.145.0/24")],
        [LIVE_CL2],
        Verdict.ORPHANED,
        "cidr-mismatch",
        Action.DELETE,
        policy=Policy(max_delete_percent=100),
    ),
    Case(
        "node without any podCIDR: unverified, not cidr-mismatch",
        [route()],
        [cluster("cl2", Node(UID_A, "n", (), ("172.16.128.10",)))],
        Verdict.UNVERIFIED,
        "node-without-podcidr",
    ),
    # Rule 3: no live node.
    Case(
        "owner inventory failed: unverified",
        [route(uid=UID_B)],
        [cluster("cl2", status=ClusterStatus.FAILED)],
        Verdict.UNVERIFIED,
        "inventory-failed",
    ),
    Case(
        "owner found by cluster tag (not 'kubernetes') and failed: unverified",
        [route(uid=UID_B, network="10.9.0.0/24", cluster_tag="cl9")],
        [LIVE_CL2, cluster("cl9", status=ClusterStatus.FAILED, cidrs=())],
        Verdict.UNVERIFIED,
        "inventory-failed",
    ),
    Case(
        "owner being deleted: unverified",
        [route(uid=UID_B)],
        [cluster("cl2", node(UID_C, "172.16.145.0/24"), status=ClusterStatus.DELETING)],
        Verdict.UNVERIFIED,
        "cluster-deleting",
    ),
    Case(
        "owner inventoried, node gone: orphaned node-gone",
        [route(uid=UID_B, network="172.16.146.0/24"), route()],
        [LIVE_CL2],
        Verdict.ORPHANED,
        "node-gone",
        Action.DELETE,
    ),
    Case(
        "owner retired: orphaned cluster-gone",
        [route(uid=UID_B, network="172.16.138.0/24"), route()],
        [LIVE_CL2, retired()],
        Verdict.ORPHANED,
        "cluster-gone",
        Action.DELETE,
    ),
    Case(
        "no owner: unattributed",
        [route(uid=UID_B, network="172.16.138.0/24"), route()],
        [LIVE_CL2],
        Verdict.UNATTRIBUTED,
        "no-owner",
    ),
    Case(
        "no owner, list declared complete and every inventory ok: orphaned no-owner",
        [route(uid=UID_B, network="172.16.138.0/24"), route()],
        [LIVE_CL2],
        Verdict.ORPHANED,
        "no-owner",
        Action.DELETE,
        policy=Policy(unattributed="delete"),
    ),
    Case(
        "no owner, list declared complete but an inventory failed: unattributed",
        [route(uid=UID_B, network="172.16.138.0/24"), route()],
        [LIVE_CL2, cluster("cl3", status=ClusterStatus.FAILED, cidrs=("10.0.0.0/16",))],
        Verdict.UNATTRIBUTED,
        "no-owner",
        policy=Policy(unattributed="delete"),
    ),
    # Rule 4: same network twice on one router.
    Case(
        "orphan sharing a live route's network shadows it",
        [route(uid=UID_B), route()],
        [LIVE_CL2],
        Verdict.ORPHANED,
        "node-gone",
        Action.DELETE,
    ),
    # Rule 5: holds.
    Case(
        "younger than min_age: held",
        [
            route(
                uid=UID_B,
                network="172.16.146.0/24",
                created_ms=int(NOW.timestamp() * 1000) - 60_000,
            ),
            route(),
        ],
        [LIVE_CL2],
        Verdict.ORPHANED,
        "node-gone",
        Action.HELD,
        hold="grace-period",
    ),
    Case(
        "protection tag: held",
        [
            route(uid=UID_B, network="172.16.146.0/24", extra_tags=(("nsx-route-gc/keep", "x"),)),
            route(),
        ],
        [LIVE_CL2],
        Verdict.ORPHANED,
        "node-gone",
        Action.HELD,
        hold="protected-tag",
    ),
    Case(
        "keep-list id: held",
        [route(uid=UID_B, network="172.16.146.0/24"), route()],
        [LIVE_CL2],
        Verdict.ORPHANED,
        "node-gone",
        Action.HELD,
        policy=Policy(protect_route_ids=(f"{UID_B}_172.16.146.0_24",)),
        hold="keep-list",
    ),
    Case(
        "protected network: held",
        [route(uid=UID_B, network="172.16.146.0/24"), route()],
        [LIVE_CL2],
        Verdict.ORPHANED,
        "node-gone",
        Action.HELD,
        policy=Policy(protect_networks=("172.16.146.0/23",)),
        hold="protected-network",
    ),
    Case(
        "REQUIRE_OVERRIDE without allow_overwrite: held",
        [route(uid=UID_B, network="172.16.146.0/24", protection="REQUIRE_OVERRIDE"), route()],
        [LIVE_CL2],
        Verdict.ORPHANED,
        "node-gone",
        Action.HELD,
        hold="protected-by-principal",
    ),
    Case(
        "REQUIRE_OVERRIDE with allow_overwrite: deleted",
        [route(uid=UID_B, network="172.16.146.0/24", protection="REQUIRE_OVERRIDE"), route()],
        [LIVE_CL2],
        Verdict.ORPHANED,
        "node-gone",
        Action.DELETE,
        policy=Policy(allow_overwrite=True),
    ),
    Case(
        "more than max_delete_percent of a router's managed routes: held",
        [
            route(uid=UID_B, network="172.16.146.0/24"),
            route(uid=UID_C, network="172.16.147.0/24"),
            route(),
        ],
        [LIVE_CL2],
        Verdict.ORPHANED,
        "node-gone",
        Action.HELD,
        hold="max-delete-percent",
    ),
    Case(
        "more than max_deletes in the run: held",
        [route(uid=UID_B, network="172.16.146.0/24"), route()],
        [LIVE_CL2],
        Verdict.ORPHANED,
        "node-gone",
        Action.HELD,
        policy=Policy(max_deletes=0),
        hold="max-deletes",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rule(case: Case) -> None:
    plan = judge([RouterListing(T1, tuple(case.routes))], case.clusters, case.policy, NOW)
    first = plan.verdicts[0]
    assert first.verdict is case.verdict, first.reason
    assert first.route == case.routes[0]  # every verdict carries the route it is about
    if case.reason:
        assert first.reason is not None
        assert first.reason.startswith(case.reason), first.reason
    assert first.action is case.action
    if case.hold:
        assert first.hold_reason is not None
        assert first.hold_reason.startswith(case.hold), first.hold_reason
    else:
        assert first.hold_reason is None
    assert first.flag == case.flag


def test_shadowing_route_names_the_live_route_and_is_high_severity() -> None:
    orphan, live = route(uid=UID_B), route()
    plan = judge([RouterListing(T1, (orphan, live))], [LIVE_CL2], Policy(), NOW)
    v = plan.verdicts[0]
    assert v.shadows == live.id
    assert v.severity == "high"
    assert v.reason is not None
    assert live.id in v.reason
    assert plan.verdicts[1].verdict is Verdict.LIVE


def test_unattributed_route_shadowing_a_live_one_becomes_orphaned_when_inventories_ok() -> None:
    stray = route(uid=UID_B, network="172.16.144.0/24", hop="10.1.1.1")
    plan = judge(
        [RouterListing(T1, (stray, route()))],
        [cluster("cl2", node(), cidrs=())],
        Policy(max_delete_percent=100),
        NOW,
    )
    # Found by the node's exact podCIDR, the owner inventoried fine: node-gone and shadows.
    assert plan.verdicts[0].verdict is Verdict.ORPHANED
    assert plan.verdicts[0].shadows == route().id


def test_two_live_routes_for_one_network_conflict_and_are_never_deleted() -> None:
    other = node(UID_B, "172.16.144.0/24", "172.16.129.5")
    routes = (route(), route(uid=UID_B, hop="172.16.129.5"))
    plan = judge(
        [RouterListing(T1, routes)],
        [LIVE_CL2, cluster("cl3", other, cidrs=("172.16.144.0/22",))],
        Policy(),
        NOW,
    )
    assert [v.verdict for v in plan.verdicts] == [Verdict.CONFLICT, Verdict.CONFLICT]
    assert all(v.action is Action.NONE for v in plan.verdicts)
    assert plan.verdicts[0].reason is not None
    assert routes[1].id in plan.verdicts[0].reason
    assert {v.severity for v in plan.verdicts} == {"high"}
    assert plan.verdicts[1].reason == f"conflict: network also carried by live route {routes[0].id}"


def test_unlisted_router_is_not_judged() -> None:
    plan = judge(
        [
            RouterListing(T1, (route(uid=UID_B),), error="500 on page 2"),
            RouterListing("/infra/tier-1s/b"),
        ],
        [LIVE_CL2],
        Policy(),
        NOW,
    )
    assert plan.verdicts == ()


def test_router_limit_holds_everything_on_that_router_only() -> None:
    other = "/infra/tier-1s/other"
    routes_a = (
        route(uid=UID_B, network="172.16.146.0/24"),
        route(uid=UID_C, network="172.16.147.0/24"),
        route(),
    )
    routes_b = (
        route(uid=UID_B, network="172.16.146.0/24", router=other),
        route(router=other),
    )
    plan = judge(
        [RouterListing(T1, routes_a), RouterListing(other, routes_b)],
        [LIVE_CL2],
        Policy(),
        NOW,
    )
    on_a = [v.action for v in plan.verdicts if v.route.router_path == T1]
    on_b = [v.action for v in plan.verdicts if v.route.router_path == other]
    assert on_a == [Action.HELD, Action.HELD, Action.NONE]
    assert on_b == [Action.DELETE, Action.NONE]
    assert [r for r, _ in plan.limit_holds] == [T1]


def test_seed_setup_retired_or_not() -> None:
    """The article: cl1 deleted and cl2 live on one shared Tier-1."""
    cl2_nodes = [
        node(
            f"00000000-0000-4000-8000-00000000000{i}",
            f"172.16.14{4 + i}.0/24",
            f"172.16.128.{20 + i}",
        )
        for i in range(3)
    ]
    cl1_routes = [
        route(
            f"11111111-0000-4000-8000-00000000000{i}",
            f"172.16.13{6 + i}.0/24",
            f"172.16.128.{30 + i}",
        )
        for i in range(3)
    ]
    cl2_routes = [route(n.uid, n.pod_cidrs[0], n.addresses[0]) for n in cl2_nodes]
    default = route(cluster_tag=None, rid="default", network="0.0.0.0/0", hop="172.16.128.1")
    listing = RouterListing(T1, (*cl1_routes, *cl2_routes, default))
    live = cluster("cl2", *cl2_nodes)

    with_retired = judge([listing], [live, retired()], Policy(), NOW)
    verdicts = [v.verdict for v in with_retired.verdicts]
    assert verdicts == [Verdict.ORPHANED] * 3 + [Verdict.LIVE] * 3 + [Verdict.FOREIGN]
    assert [v.action for v in with_retired.deletions] == [Action.DELETE] * 3
    assert all(v.reason and v.reason.startswith("cluster-gone") for v in with_retired.deletions)

    without = judge([listing], [live], Policy(), NOW)
    assert [v.verdict for v in without.verdicts][:3] == [Verdict.UNATTRIBUTED] * 3
    assert without.deletions == ()
    # Looked for in every cluster of the run: the report says "*" (the report's clusters).
    assert without.verdicts[0].checked_clusters == EVERY_CLUSTER


def test_ipv6_routes_parse_and_judge() -> None:
    uid = UID_A
    v6 = "fd00:10:244:1::/64"
    r = route(uid, v6, "fd00::10", rid=f"{uid}_fd00:10:244:1::_64")
    n = Node(uid, "n6", ("172.16.144.0/24", v6), ("172.16.128.10", "fd00::10"))
    plan = judge(
        [RouterListing(T1, (r,))], [cluster("cl2", n, cidrs=("fd00:10:244::/56",))], Policy(), NOW
    )
    assert plan.verdicts[0].verdict is Verdict.LIVE
    gone = route(UID_B, "fd00:10:244:2::/64", "fd00::11", rid=f"{UID_B}_fd00:10:244:2::_64")
    plan = judge(
        [RouterListing(T1, (gone, r))],
        [cluster("cl2", n, cidrs=("fd00:10:244::/56",))],
        Policy(),
        NOW,
    )
    assert plan.verdicts[0].reason is not None
    assert plan.verdicts[0].reason.startswith("node-gone")


@pytest.mark.parametrize(
    ("rid", "expected"),
    [
        (f"{UID_A}_172.16.138.0_24", (UID_A, "172.16.138.0/24")),
        (f"{UID_A.upper()}_10.0.0.0_8", (UID_A, "10.0.0.0/8")),
        (f"{UID_A}_fd00::_64", (UID_A, "fd00::/64")),
        ("not-a-uuid_10.0.0.0_8", None),
        (f"{UID_A}_10.0.0.0", None),
        (f"{UID_A}", None),
    ],
)
def test_parse_managed_id(rid: str, expected: tuple[str, str] | None) -> None:
    assert parse_managed_id(rid) == expected


def test_plan_digest_depends_on_host_and_revisions_not_order() -> None:
    a = [("/r", "x", 1), ("/r", "y", 2)]
    assert plan_sha256("h", a) == plan_sha256("h", list(reversed(a)))
    assert plan_sha256("h", a) != plan_sha256("other", a)
    assert plan_sha256("h", a) != plan_sha256("h", [("/r", "x", 2), ("/r", "y", 2)])


def test_narrow_judges_the_limits_again_on_what_is_kept() -> None:
    """scan --cluster: two orphans of retired cl1 and one of cl3 on a router with two live
    routes: 3 of 5 breaks max_delete_percent 50; cl1's two alone (2 of 5) do not."""
    routes = [
        route(),
        route(uid=UID_B, network="172.16.136.0/24"),
        route(uid=UID_C, network="172.16.137.0/24"),
        route(uid="0c1b2a3d-0000-4000-8000-000000000004", network="172.16.152.0/24"),
        route(
            uid="0c1b2a3d-0000-4000-8000-000000000005",
            network="172.16.145.0/24",
            hop="172.16.128.11",
        ),
    ]
    live = cluster(
        "cl2",
        node(),
        node("0c1b2a3d-0000-4000-8000-000000000005", "172.16.145.0/24", "172.16.128.11"),
    )
    clusters = [live, retired(), retired("cl3", ("172.16.152.0/21",))]
    plan = judge([RouterListing(T1, tuple(routes))], clusters, Policy(), NOW)
    assert {v.action for v in plan.verdicts if v.verdict is Verdict.ORPHANED} == {Action.HELD}
    assert plan.limit_holds

    narrowed = narrow(plan, lambda v: v.cluster == "cl1", Policy())
    assert {v.route.id.split("_")[0] for v in narrowed.verdicts} == {UID_B, UID_C}
    assert {(v.action, v.hold_reason) for v in narrowed.verdicts} == {(Action.DELETE, None)}
    assert narrowed.limit_holds == ()
    # Still judged against every managed route of the router: 2 of 5 > 30%.
    strict = narrow(plan, lambda v: v.cluster == "cl1", Policy(max_delete_percent=30))
    assert {v.action for v in strict.verdicts} == {Action.HELD}
    ((router, why),) = strict.limit_holds
    assert router == T1
    assert why.startswith(f"max-delete-percent: 2 of 5 managed routes on {T1}")
    # And the run-wide limit on what is kept, held under "*".
    capped = narrow(plan, lambda v: v.cluster == "cl1", Policy(max_deletes=1))
    assert {v.action for v in capped.verdicts} == {Action.HELD}
    assert [(r, w.split(":")[0]) for r, w in capped.limit_holds] == [("*", "max-deletes")]
    # A route held for another reason than a limit stays held whatever is narrowed.
    keep = Policy(protect_route_ids=(f"{UID_B}_172.16.136.0_24",))
    kept = narrow(
        judge([RouterListing(T1, tuple(routes))], clusters, keep, NOW),
        lambda v: v.cluster == "cl1",
        keep,
    )
    actions = {
        v.route.id.split("_")[0]: (v.action, (v.hold_reason or "").split(":")[0])
        for v in kept.verdicts
    }
    assert actions == {UID_B: (Action.HELD, "keep-list"), UID_C: (Action.DELETE, "")}


def test_a_route_whose_path_is_not_under_its_router_is_flagged_never_deleted() -> None:
    # Listed on T1, its own path (or parent_path) names a Tier-0: an orphan by every other
    # rule, it is foreign, flagged for a human, and never deleted.
    r = route("0c1b2a3d-0000-4000-8000-0000000000aa", "172.16.137.0/24")
    claims_t0 = Route(
        router_path=r.router_path,
        id=r.id,
        path=f"/infra/tier-0s/t0/static-routes/{r.id}",
        network=r.network,
        next_hops=r.next_hops,
        tags=r.tags,
        create_time_ms=r.create_time_ms,
        revision=r.revision,
        protection=r.protection,
    )
    plan = judge([RouterListing(T1, (claims_t0,))], [retired()], Policy(), NOW)
    (v,) = plan.verdicts
    assert v.verdict is Verdict.FOREIGN
    assert v.flag == "path-not-under-router"
    assert v.action is Action.NONE
    assert plan.deletions == ()
    control = judge([RouterListing(T1, (r,))], [retired()], Policy(), NOW)
    assert [v.verdict for v in control.verdicts] == [Verdict.ORPHANED]


# The guards, one operator rule each (issue 16: each of these survived a hand-made bug).


def _orphan_plan(r: Route, policy: Policy | None = None) -> RouteVerdict:
    """Judge ``r`` (node gone, owner cl2 inventoried) beside a live route; its verdict."""
    plan = judge(
        [RouterListing(T1, (r, route()))],
        [LIVE_CL2],
        policy or Policy(max_delete_percent=100),
        NOW,
    )
    return plan.verdicts[0]


@pytest.mark.parametrize("allow_overwrite", [False, True])
def test_a_route_protected_by_nsx_is_never_deleted_even_when_orphaned(
    allow_overwrite: bool,
) -> None:
    gone = route(uid=UID_B, network="172.16.146.0/24", protection="PROTECTED")
    v = _orphan_plan(gone, Policy(max_delete_percent=100, allow_overwrite=allow_overwrite))
    assert v.verdict is Verdict.ORPHANED
    assert v.action is Action.HELD
    assert v.hold_reason is not None
    assert v.hold_reason.startswith("protected-by-nsx")


def test_a_route_without_a_creation_time_is_not_old_enough_to_delete() -> None:
    v = _orphan_plan(route(uid=UID_B, network="172.16.146.0/24", created_ms=None))
    assert v.verdict is Verdict.ORPHANED
    assert v.action is Action.HELD
    assert v.hold_reason is not None
    assert v.hold_reason.startswith("grace-period")


@pytest.mark.parametrize(
    ("status", "reason"),
    [(ClusterStatus.FAILED, "inventory-failed"), (ClusterStatus.DELETING, "cluster-deleting")],
)
@pytest.mark.parametrize("healthy_first", [True, False])
def test_a_network_claimed_by_a_healthy_and_a_doubtful_cluster_stays_unverified(
    status: ClusterStatus, reason: str, healthy_first: bool
) -> None:
    # cl2 is inventoried and has no such node; cl3 claims the same CIDR but could not be read
    # (or is being deleted): the node may be cl3's, so the route is nobody's to delete.
    healthy = cluster("cl2", node())
    doubtful = cluster("cl3", status=status)
    clusters = [healthy, doubtful] if healthy_first else [doubtful, healthy]
    gone = route(uid=UID_B, network="172.16.146.0/24")
    plan = judge(
        [RouterListing(T1, (gone, route()))], clusters, Policy(max_delete_percent=100), NOW
    )
    v = plan.verdicts[0]
    assert v.verdict is Verdict.UNVERIFIED, v.reason
    assert v.action is Action.NONE
    assert v.reason is not None
    assert v.reason.startswith(reason)
    assert v.checked_clusters == ("cl2", "cl3")


@pytest.mark.parametrize(
    ("protected", "action"),
    [
        ("172.16.146.0/24", Action.HELD),  # exactly the route's network
        ("172.16.0.0/16", Action.HELD),
        ("172.16.146.128/25", Action.DELETE),  # inside the route's network: not covering it
        ("10.0.0.0/8", Action.DELETE),
        ("fd00::/8", Action.DELETE),
    ],
)
def test_a_protected_network_holds_every_route_inside_it_and_only_those(
    protected: str, action: Action
) -> None:
    v = _orphan_plan(
        route(uid=UID_B, network="172.16.146.0/24"),
        Policy(max_delete_percent=100, protect_networks=(protected,)),
    )
    assert v.action is action, v.hold_reason
    if action is Action.HELD:
        assert v.hold_reason == f"protected-network: {protected}"


@pytest.mark.parametrize(("max_deletes", "action"), [(3, Action.DELETE), (2, Action.HELD)])
def test_max_deletes_allows_exactly_that_many_deletions_in_a_run(
    max_deletes: int, action: Action
) -> None:
    orphans = [route(uid=UID_B, network=f"172.16.{n}.0/24") for n in (146, 147, 148)]
    plan = judge(
        [RouterListing(T1, (*orphans, route()))],
        [LIVE_CL2],
        Policy(max_deletes=max_deletes, max_delete_percent=100),
        NOW,
    )
    assert [v.action for v in plan.verdicts[:3]] == [action] * 3
    assert plan.verdicts[3].action is Action.NONE
    if action is Action.HELD:
        reason = f"max-deletes: 3 deletions > max_deletes {max_deletes}"
        assert plan.limit_holds == (("*", reason),)
        assert {v.hold_reason for v in plan.verdicts[:3]} == {reason}
    else:
        assert plan.limit_holds == ()


def test_the_per_router_hold_names_the_router_and_its_numbers() -> None:
    orphans = [
        route(uid=UID_B, network="172.16.146.0/24"),
        route(uid=UID_C, network="172.16.147.0/24"),
    ]
    plan = judge([RouterListing(T1, (*orphans, route()))], [LIVE_CL2], Policy(), NOW)
    reason = f"max-delete-percent: 2 of 3 managed routes on {T1} (67%) > 50%"
    assert plan.limit_holds == ((T1, reason),)
    assert plan.verdicts[0].hold_reason == reason


@pytest.mark.parametrize(
    ("age_s", "action", "said"),
    [
        (3600, Action.DELETE, None),  # exactly min_age: old enough
        (3599, Action.HELD, "created 59m ago, min_age 60m"),
        (0, Action.HELD, "created 0s ago, min_age 60m"),
        (59, Action.HELD, "created 59s ago, min_age 60m"),
        (119, Action.HELD, "created 119s ago, min_age 60m"),
        (120, Action.HELD, "created 2m ago, min_age 60m"),
        (-300, Action.HELD, "created -5m ago, min_age 60m"),  # NSX's clock ahead of ours
    ],
)
def test_the_grace_period_holds_a_route_younger_than_min_age_and_says_how_old(
    age_s: int, action: Action, said: str | None
) -> None:
    created = int((NOW - timedelta(seconds=age_s)).timestamp() * 1000)
    v = _orphan_plan(route(uid=UID_B, network="172.16.146.0/24", created_ms=created))
    assert v.action is action, v.hold_reason
    if said is not None:
        assert v.hold_reason == f"grace-period: {said}"


@pytest.mark.parametrize(
    ("age", "min_age", "said"),
    [
        (timedelta(seconds=7199), timedelta(days=30), "created 119m ago, min_age 30d"),
        (timedelta(hours=2), timedelta(days=30), "created 2h ago, min_age 30d"),
        (timedelta(seconds=172799), timedelta(days=30), "created 47h ago, min_age 30d"),
        (timedelta(days=2), timedelta(days=3), "created 2d ago, min_age 3d"),
        (timedelta(days=2), timedelta(seconds=172801), "created 2d ago, min_age 2d"),
    ],
)
def test_the_grace_period_counts_in_the_largest_whole_unit(
    age: timedelta, min_age: timedelta, said: str
) -> None:
    created = int((NOW - age).timestamp() * 1000)
    v = _orphan_plan(
        route(uid=UID_B, network="172.16.146.0/24", created_ms=created),
        Policy(max_delete_percent=100, min_age=min_age),
    )
    assert v.hold_reason == f"grace-period: {said}"


def _one(r: Route, *clusters: ClusterInventory, policy: Policy | None = None) -> RouteVerdict:
    plan = judge([RouterListing(T1, (r,))], list(clusters), policy or Policy(), NOW)
    return plan.verdicts[0]


def test_a_verdict_about_a_live_node_names_its_cluster_and_node() -> None:
    live = _one(route(), LIVE_CL2)
    assert (live.verdict, live.reason, live.cluster, live.node) == (
        Verdict.LIVE,
        "node-live",
        "cl2",
        "node-a57a",
    )
    moved = _one(route(network="172.16.145.0/24"), LIVE_CL2)
    assert (moved.reason, moved.cluster, moved.node) == (
        "cidr-mismatch: node node-a57a has podCIDRs 172.16.144.0/24",
        "cl2",
        "node-a57a",
    )
    stale = _one(route(hop="172.16.128.99"), LIVE_CL2)
    assert (stale.reason, stale.cluster, stale.node) == (
        "next-hop-mismatch: node node-a57a has addresses 172.16.128.10",
        "cl2",
        "node-a57a",
    )
    bare = Node(UID_A, "bare", ("172.16.144.0/24",), ())
    unknown = _one(route(), cluster("cl2", bare))
    assert unknown.reason == "next-hop-mismatch: node bare has addresses none"
    empty = _one(route(), cluster("cl2", Node(UID_A, "empty", (), ("172.16.128.10",))))
    assert (empty.verdict, empty.cluster, empty.node) == (Verdict.UNVERIFIED, "cl2", "empty")


def test_a_verdict_without_a_live_node_names_the_owner_the_tagged_node_and_who_was_asked() -> None:
    gone = _one(route(uid=UID_B, network="172.16.146.0/24"), LIVE_CL2)
    assert (gone.reason, gone.cluster, gone.node, gone.checked_clusters) == (
        f"node-gone: no node with uid {UID_B} in cluster cl2",
        "cl2",
        "n",
        ("cl2",),
    )
    failed = _one(
        route(uid=UID_B, network="172.16.146.0/24"),
        LIVE_CL2,
        cluster("cl3", status=ClusterStatus.FAILED),
    )
    assert (failed.reason, failed.cluster, failed.node, failed.checked_clusters) == (
        "inventory-failed: owner cluster cl3 could not be inventoried",
        "cl2,cl3",
        "n",
        ("cl2", "cl3"),
    )
    deleting = _one(
        route(uid=UID_B, network="172.16.146.0/24"),
        LIVE_CL2,
        cluster("cl3", status=ClusterStatus.DELETING),
    )
    assert (deleting.reason, deleting.cluster, deleting.node) == (
        "cluster-deleting: owner cluster cl3 is being deleted",
        "cl2,cl3",
        "n",
    )
    old = ClusterInventory(
        "cl1", "retired", ClusterStatus.RETIRED, (), ("172.16.136.0/21",), evidence="gone 3d"
    )
    retired_gone = _one(route(uid=UID_B, network="172.16.138.0/24"), LIVE_CL2, old)
    assert (retired_gone.reason, retired_gone.cluster, retired_gone.node) == (
        "cluster-gone: cluster cl1 is retired (gone 3d)",
        "cl1",
        "n",
    )
    assert retired_gone.checked_clusters == ("cl1",)
    two = _one(
        route(uid=UID_B, network="172.16.138.0/24"),
        LIVE_CL2,
        retired("cl1"),
        retired("cl0", ("172.16.138.0/24",)),
    )
    assert (two.reason, two.cluster) == ("cluster-gone: cluster cl0,cl1 is retired", "cl0,cl1")
    nobody = _one(
        route(uid=UID_B, network="10.9.0.0/24"), LIVE_CL2, policy=Policy(unattributed="delete")
    )
    assert (nobody.verdict, nobody.node, nobody.checked_clusters) == (
        Verdict.ORPHANED,
        "n",
        ("*",),  # every cluster of the run was asked
    )
    assert nobody.reason is not None
    assert nobody.reason.startswith("no-owner")


def test_a_cluster_tag_naming_no_known_cluster_attributes_nothing() -> None:
    """Only a tag naming a known cluster makes it an owner; the CCM's default tag value
    "kubernetes" names no cluster, even one called so."""
    unknown = _one(route(uid=UID_B, network="10.9.0.0/24", cluster_tag="cl9"), LIVE_CL2)
    assert (unknown.verdict, unknown.node) == (Verdict.UNATTRIBUTED, "n")
    assert unknown.reason == "no-owner: no known cluster claims 10.9.0.0/24"
    named = cluster("kubernetes", cidrs=())
    default = _one(route(uid=UID_B, network="10.9.0.0/24"), LIVE_CL2, named)
    assert default.verdict is Verdict.UNATTRIBUTED
    assert default.cluster is None


def test_owners_are_found_by_any_cluster_cidr_or_live_node_podcidr_covering_the_network() -> None:
    # A network equal to the cluster CIDR itself.
    whole = _one(route(uid=UID_B, network="172.16.144.0/21"), LIVE_CL2)
    assert (whole.verdict, whole.cluster) == (Verdict.ORPHANED, "cl2")
    # Clusters whose CIDRs are longer than the route's, or of the other family, come first.
    small = cluster("cl0", cidrs=("172.16.146.0/28", "fd00::/48"))
    behind = _one(route(uid=UID_B, network="172.16.146.0/24"), small, LIVE_CL2)
    assert (behind.verdict, behind.cluster) == (Verdict.ORPHANED, "cl2")
    # No cluster CIDR configured: a live node's podCIDR names the owner.
    by_node = _one(
        route(uid=UID_B, network="172.16.150.0/24"),
        cluster("cl2", node(UID_C, "172.16.150.0/24", "172.16.128.11"), cidrs=()),
    )
    assert (by_node.verdict, by_node.cluster) == (Verdict.ORPHANED, "cl2")


def test_a_doubtful_route_sharing_a_live_routes_network_keeps_its_doubt() -> None:
    """A route for a node without podCIDR, beside a live route for the same network: it
    stays unverified (never deletable) and is marked as shadowing the live route."""
    empty = Node(UID_B, "empty", (), ("172.16.129.1",))
    plan = judge(
        [RouterListing(T1, (route(uid=UID_B, hop="172.16.129.1"), route()))],
        [cluster("cl2", node(), empty)],
        Policy(max_delete_percent=100),
        NOW,
    )
    doubtful = plan.verdicts[0]
    assert doubtful.verdict is Verdict.UNVERIFIED
    assert doubtful.action is Action.NONE
    assert doubtful.shadows == route().id
    assert doubtful.severity == "high"
    assert doubtful.reason is not None
    assert doubtful.reason.startswith("node-without-podcidr")
    assert doubtful.reason.endswith(f"; shadows live route {route().id}")


def test_a_reason_names_every_cidr_address_and_cluster_it_rests_on() -> None:
    dual = Node(UID_A, "dual", ("172.16.144.0/24", "fd00::/64"), ("172.16.128.10", "fd00::10"))
    moved = _one(route(network="172.16.145.0/24"), cluster("cl2", dual))
    assert moved.reason == "cidr-mismatch: node dual has podCIDRs 172.16.144.0/24, fd00::/64"
    stale = _one(route(hop="172.16.128.99"), cluster("cl2", dual))
    assert stale.reason == "next-hop-mismatch: node dual has addresses 172.16.128.10, fd00::10"
    gone = route(uid=UID_B, network="172.16.146.0/24")
    two_failed = _one(
        gone, *(cluster(n, status=ClusterStatus.FAILED) for n in ("cl3", "cl4")), LIVE_CL2
    )
    assert two_failed.reason == "inventory-failed: owner cluster cl3,cl4 could not be inventoried"
    two_deleting = _one(gone, *(cluster(n, status=ClusterStatus.DELETING) for n in ("cl3", "cl4")))
    assert two_deleting.reason == "cluster-deleting: owner cluster cl3,cl4 is being deleted"
    two_live = _one(gone, LIVE_CL2, cluster("cl3"))
    assert two_live.reason == f"node-gone: no node with uid {UID_B} in cluster cl2,cl3"
    assert two_live.cluster == "cl2,cl3"
    evidenced = [
        ClusterInventory(n, "retired", ClusterStatus.RETIRED, (), ("172.16.136.0/21",), evidence=e)
        for n, e in (("cl0", "gone 2d"), ("cl1", "gone 3d"))
    ]
    both = _one(route(uid=UID_B, network="172.16.138.0/24"), *evidenced)
    assert both.reason == "cluster-gone: cluster cl0,cl1 is retired (gone 2d; gone 3d)"


def test_a_conflict_names_every_other_live_route_for_the_network() -> None:
    uids = (UID_A, UID_B, UID_C)
    hops = ("172.16.128.10", "172.16.129.5", "172.16.129.6")
    nodes = [node(u, "172.16.144.0/24", h) for u, h in zip(uids, hops, strict=True)]
    routes = tuple(route(uid=u, hop=h) for u, h in zip(uids, hops, strict=True))
    plan = judge([RouterListing(T1, routes)], [cluster("cl2", *nodes)], Policy(), NOW)
    assert plan.verdicts[0].reason == (
        f"conflict: network also carried by live route {routes[1].id},{routes[2].id}"
    )


def test_a_managed_route_without_a_node_name_tag_is_still_judged() -> None:
    bare = route(uid=UID_B, network="172.16.146.0/24")
    untagged = Route(
        bare.router_path,
        bare.id,
        bare.path,
        bare.network,
        bare.next_hops,
        ((CLUSTER_TAG_SCOPE, "kubernetes"),),
        create_time_ms=OLD_MS,
        revision=0,
    )
    v = _orphan_plan(untagged)
    assert (v.verdict, v.node, v.action) == (Verdict.ORPHANED, None, Action.DELETE)


def test_a_route_whose_path_is_elsewhere_says_where_it_was_listed_and_where_nsx_puts_it() -> None:
    r = route(uid=UID_B, network="172.16.146.0/24")
    elsewhere = dataclasses.replace(r, path=f"/infra/tier-0s/t0/static-routes/{r.id}")
    (v, _) = judge([RouterListing(T1, (elsewhere, route()))], [LIVE_CL2], Policy(), NOW).verdicts
    assert v.route == elsewhere
    assert v.reason == f"path-elsewhere: listed on {T1}, NSX gives its path as {elsewhere.path}"
