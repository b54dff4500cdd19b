"""A small judged plan and its report, shared by the report tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from factories import NOW, T1, ccm_route, foreign_route, node
from nsx_route_gc.judge import judge
from nsx_route_gc.models import (
    CcmSettings,
    ClusterInventory,
    ClusterStatus,
    Plan,
    Policy,
    RouterListing,
)
from nsx_route_gc.placement import place
from nsx_route_gc.reports.rows import RunInfo, build_report

UID1 = "11111111-0000-4000-8000-000000000001"
UID2 = "22222222-0000-4000-8000-000000000002"


def seed_plan() -> Plan:
    routers = [
        RouterListing(
            T1,
            (
                ccm_route(UID1, "172.16.136.0/24", "172.16.128.63"),
                ccm_route(UID2, "172.16.144.0/24", "172.16.128.20"),
                foreign_route(),
            ),
        ),
        RouterListing("/infra/tier-1s/broken", error="NSX GET ... failed: 500"),
    ]
    clusters = [
        ClusterInventory(
            "cl2",
            "config",
            ClusterStatus.OK,
            (node(UID2, "172.16.144.0/24", "172.16.128.20"),),
            ("172.16.144.0/21",),
        ),
        ClusterInventory(
            "cl1",
            "retired_clusters",
            ClusterStatus.RETIRED,
            (),
            ("172.16.136.0/21",),
            evidence="declared",
        ),
    ]
    return judge(routers, clusters, Policy(), NOW)


UID3 = "33333333-0000-4000-8000-000000000003"
UID4 = "44444444-0000-4000-8000-000000000004"
OLD_T1 = "/infra/tier-1s/old"
T5 = "/infra/tier-1s/tanzu-cl5"


def placed_plan() -> Plan:
    """cl2 on T1 with a node whose route is missing; cl5 moved from OLD_T1 to T5, a route
    left behind; cl9 on another manager."""
    aged = timedelta(days=3)
    cl2 = ClusterInventory(
        "cl2",
        "config",
        ClusterStatus.OK,
        (
            replace(node(UID2, "172.16.144.0/24", "172.16.128.20"), created=NOW - aged),
            replace(node(UID3, "172.16.145.0/24", "172.16.128.21", "lost"), created=NOW - aged),
        ),
        ccm=CcmSettings(T1, "nsx.example.com", "configmap (ini)"),
    )
    cl5 = ClusterInventory(
        "cl5",
        "config",
        ClusterStatus.OK,
        (replace(node(UID4, "172.16.192.0/24", "172.16.131.10"), created=NOW - aged),),
        ccm=CcmSettings(T5, "nsx.example.com", "configmap (yaml)"),
    )
    cl9 = ClusterInventory(
        "cl9",
        "config",
        ClusterStatus.OK,
        (node(UID1, "172.16.200.0/24", "172.16.132.10"),),
        ccm=CcmSettings("/infra/tier-1s/t9", "nsx-b.example.com", "configmap (ini)"),
        warnings=("odd",),
    )
    routers = [
        RouterListing(T1, (ccm_route(UID2, "172.16.144.0/24", "172.16.128.20"),)),
        RouterListing(T5, (ccm_route(UID4, "172.16.192.0/24", "172.16.131.10", router=T5),)),
        RouterListing(
            OLD_T1, (ccm_route(UID4, "172.16.192.0/24", "172.16.131.10", router=OLD_T1),)
        ),
    ]
    plan = judge(routers, [cl2, cl5, cl9], Policy(), NOW)
    return place(plan, nsx_host="nsx.example.com", now=NOW, min_age=timedelta(hours=1))


def info() -> RunInfo:
    return RunInfo(
        "scan", NOW, NOW, "nsx.example.com", "config.yaml", operator="op@host", run_id="r1"
    )


def report() -> dict[str, object]:
    return build_report(info(), seed_plan(), errors=["router /infra/tier-1s/broken not listed"])


def placed_report() -> dict[str, object]:
    return build_report(info(), placed_plan())
