"""A small judged plan and its report, shared by the report tests."""

from __future__ import annotations

from factories import NOW, T1, ccm_route, foreign_route, node
from nsx_route_gc.judge import judge
from nsx_route_gc.models import ClusterInventory, ClusterStatus, Plan, Policy, RouterListing
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


def report() -> dict[str, object]:
    info = RunInfo(
        "scan", NOW, NOW, "nsx.example.com", "config.yaml", operator="op@host", run_id="r1"
    )
    return build_report(info, seed_plan(), errors=["router /infra/tier-1s/broken not listed"])
