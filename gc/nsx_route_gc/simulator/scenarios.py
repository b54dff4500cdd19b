"""Named scenarios: the seed article's set-up and one scenario per judgement case.

Every scenario is built fresh by a function (scenarios are mutated by the simulator's
runtime mutators, never shared). ``expected`` counts the verdicts a correct scan finds.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from nsx_route_gc.simulator.model import (
    DAY_MS,
    TANZU_CL1,
    CapiCluster,
    RetiredCluster,
    Scenario,
    SimCcm,
    SimCluster,
    SimNode,
    SimRoute,
    node_routes,
)
from nsx_route_gc.simulator.scale import scale_size

T1 = TANZU_CL1
T1_CL5 = "/infra/tier-1s/tanzu-cl5"
_NS = uuid.UUID("0d7a3a52-5d0c-4a8e-9a43-2f7d6b1c9e10")


def node_uid(name: str) -> str:
    """A stable UID per node name, so scenario data is the same on every run."""
    return str(uuid.uuid5(_NS, name))


def _node(
    name: str, cidr: str | tuple[str, ...], ip: str | tuple[str, ...], uid: str = ""
) -> SimNode:
    cidrs = (cidr,) if isinstance(cidr, str) else cidr
    ips = (ip,) if isinstance(ip, str) else ip
    return SimNode(
        name=name, uid=uid or node_uid(name), pod_cidrs=cidrs, internal_ips=ips, external_ips=ips
    )


def _cl1_nodes() -> list[SimNode]:
    """The article's cl1 (CLUSTER_CIDR 172.16.136.0/21), deleted since."""
    return [
        _node("cl1-control-plane-nh9n7", "172.16.136.0/24", "172.16.128.63"),
        _node("cl1-md-0-5789bbcb76-hbnqz", "172.16.137.0/24", "172.16.128.126"),
        _node(
            "cl1-md-0-5789bbcb76-vvrjv",
            "172.16.138.0/24",
            "172.16.128.35",
            uid="a57a555e-e4eb-49ad-af74-e11a7d7a8ad8",
        ),
    ]


def _cl2() -> SimCluster:
    """The article's cl2 (CLUSTER_CIDR 172.16.144.0/21), alive."""
    nodes = [
        _node("cl2-control-plane-7xq2k", "172.16.144.0/24", "172.16.128.71"),
        _node("cl2-md-0-6d8f9c7b5-2lmwp", "172.16.145.0/24", "172.16.128.88"),
        _node("cl2-md-0-6d8f9c7b5-x9ktr", "172.16.146.0/24", "172.16.128.142"),
    ]
    return SimCluster("cl2", ("172.16.144.0/21",), nodes)


def _routes(
    nodes: list[SimNode],
    router: str = T1,
    *,
    age_ms: int = 3 * DAY_MS,
    protection: str = "NOT_PROTECTED",
) -> list[SimRoute]:
    out: list[SimRoute] = []
    for node in nodes:
        out += node_routes(router, node, age_ms=age_ms, protection=protection)
    return out


def _foreign(router: str = T1) -> list[SimRoute]:
    """Routes nobody's CCM wrote: a default route and a hand-made one without tags."""
    return [
        SimRoute(router, "default-route", "0.0.0.0/0", ("172.16.128.1",), display_name="default"),
        SimRoute(
            router,
            "to-backup-net",
            "192.168.100.0/24",
            ("172.16.128.250",),
            display_name="backup network (manual)",
        ),
    ]


def seed(*, retired: bool = True) -> Scenario:
    cl2 = _cl2()
    return Scenario(
        name="seed" if retired else "seed-unretired",
        description=(
            "The article: cl1 deleted and cl2 alive on the shared Tier-1 tanzu-cl1"
            if retired
            else "The article without retired_clusters: cl1's routes are unattributed"
        ),
        tier1s=[T1],
        routes=_routes(_cl1_nodes()) + _routes(cl2.nodes) + _foreign(),
        clusters=[cl2],
        retired=[RetiredCluster("cl1", ("172.16.136.0/21",))] if retired else [],
        config_routers=[T1],
        expected=(
            {"orphaned": 3, "live": 3, "foreign": 2}
            if retired
            else {"unattributed": 3, "live": 3, "foreign": 2}
        ),
    )


def stale_next_hop() -> Scenario:
    cl2 = _cl2()
    routes = _routes(cl2.nodes)
    moved = cl2.nodes[1]
    moved.internal_ips = moved.external_ips = ("172.16.128.201",)  # DHCP gave it a new IP
    return Scenario(
        name="stale-next-hop",
        description="cl2's node cl2-md-0-6d8f9c7b5-2lmwp changed IP; its route keeps the old one",
        tier1s=[T1],
        routes=routes,
        clusters=[cl2],
        config_routers=[T1],
        expected={"live": 2, "stale-next-hop": 1},
    )


def shadow() -> Scenario:
    cl3 = SimCluster(
        "cl3",
        ("172.16.136.0/21",),
        [
            _node("cl3-control-plane-p4b8s", "172.16.136.0/24", "172.16.128.44"),
            _node("cl3-md-0-7c9d8b6f4-qw2zx", "172.16.137.0/24", "172.16.128.57"),
        ],
    )
    return Scenario(
        name="shadow",
        description="cl3 reuses deleted cl1's CIDR on the same Tier-1; cl1's routes shadow cl3's",
        tier1s=[T1],
        routes=_routes(_cl1_nodes()) + _routes(cl3.nodes),
        clusters=[cl3],
        config_routers=[T1],
        expected={"live": 2, "orphaned": 3},  # two of them shadow live routes
    )


def conflict() -> Scenario:
    cl2 = _cl2()
    cl2.nodes = cl2.nodes[:2]
    cl4 = SimCluster(
        "cl4",
        ("172.16.144.0/20",),
        [
            _node("cl4-control-plane-h2v6n", "172.16.144.0/24", "172.16.128.160"),
            _node("cl4-md-0-5f7c9d8b4-m3kpl", "172.16.150.0/24", "172.16.128.161"),
        ],
    )
    return Scenario(
        name="conflict",
        description="cl2 and cl4 have overlapping CIDRs; both route 172.16.144.0/24 live",
        tier1s=[T1],
        routes=_routes(cl2.nodes) + _routes(cl4.nodes),
        clusters=[cl2, cl4],
        config_routers=[T1],
        expected={"conflict": 2, "live": 2},
    )


def unreachable_cluster() -> Scenario:
    cl2 = _cl2()
    cl2.unreachable = True
    cl6 = SimCluster(
        "cl6",
        ("172.16.152.0/21",),
        [
            _node("cl6-control-plane-b7x4m", "172.16.152.0/24", "172.16.128.90"),
            _node("cl6-md-0-8b6c5d4f7-t6rjw", "172.16.153.0/24", "172.16.128.91"),
        ],
    )
    return Scenario(
        name="unreachable-cluster",
        description="cl2's API server is down: its routes cannot be judged; cl6 is fine",
        tier1s=[T1],
        routes=_routes(cl2.nodes) + _routes(cl6.nodes),
        clusters=[cl2, cl6],
        config_routers=[T1],
        expected={"unverified": 3, "live": 2},
    )


def project() -> Scenario:
    router = "/orgs/default/projects/dev/infra/tier-1s/dev-t1"
    cl7 = SimCluster(
        "cl7",
        ("172.16.160.0/21",),
        [
            _node("cl7-control-plane-z8c2d", "172.16.160.0/24", "172.16.129.10"),
            _node("cl7-md-0-6b5c4d7f8-k2mnb", "172.16.161.0/24", "172.16.129.11"),
        ],
        # The CCM takes only a router path's last segment and writes under /infra/tier-1s
        # (nsxtbroker.go getRouterID): its router is /infra/tier-1s/dev-t1, which NSX does not
        # have, so cl7 is flagged and its routes on the project's Tier-1 are misplaced.
        ccm=SimCcm(router),
    )
    gone = _node("cl7-md-0-6b5c4d7f8-old01", "172.16.162.0/24", "172.16.129.12")
    return Scenario(
        name="project",
        description="cl7 routes on a Tier-1 of NSX project 'dev'; routers are discovered",
        tier1s=[T1, router],
        routes=_routes([*cl7.nodes, gone], router),
        clusters=[cl7],
        config_routers=None,
        expected={"live": 2, "orphaned": 1},
        expected_misplaced=2,
    )


def young() -> Scenario:
    cl2 = _cl2()
    minutes_ago = _node("cl2-md-0-6d8f9c7b5-young", "172.16.147.0/24", "172.16.128.150")
    days_ago = _node("cl2-md-0-6d8f9c7b5-old00", "172.16.148.0/24", "172.16.128.151")
    return Scenario(
        name="young",
        description="two routes of cl2's gone nodes: one created minutes ago (held), one days ago",
        tier1s=[T1],
        routes=_routes(cl2.nodes) + _routes([minutes_ago], age_ms=5 * 60_000) + _routes([days_ago]),
        clusters=[cl2],
        config_routers=[T1],
        expected={"live": 3, "orphaned": 2},
    )


def principal() -> Scenario:
    scenario = seed()
    cl2 = scenario.clusters[0]
    scenario.name = "principal"
    scenario.description = "the CCM authenticated as a principal identity: routes REQUIRE_OVERRIDE"
    scenario.routes = _routes(_cl1_nodes(), protection="REQUIRE_OVERRIDE") + _routes(
        cl2.nodes, protection="REQUIRE_OVERRIDE"
    )
    scenario.expected = {"orphaned": 3, "live": 3}
    return scenario


def ipv6() -> Scenario:
    def dual(name: str, n: int) -> SimNode:
        return _node(
            name,
            (f"172.16.{168 + n}.0/24", f"fd00:10:244:{n + 1:x}::/64"),
            (f"172.16.129.{40 + n}", f"fd00:172:16:129::{40 + n:x}"),
        )

    cl8 = SimCluster(
        "cl8",
        ("172.16.168.0/21", "fd00:10:244::/56"),
        [dual("cl8-control-plane-r5t7y", 0), dual("cl8-md-0-7d6c5b4f9-u8iop", 1)],
    )
    gone = dual("cl8-md-0-7d6c5b4f9-gone1", 2)
    return Scenario(
        name="ipv6",
        description="dual-stack cl8: an IPv4 and an IPv6 route per node; one node gone",
        tier1s=[T1],
        routes=_routes([*cl8.nodes, gone]),
        clusters=[cl8],
        config_routers=[T1],
        expected={"live": 4, "orphaned": 2},
    )


def vmc() -> Scenario:
    """VMware Cloud on AWS: NSX behind the reverse proxy, CSP tokens, no projects."""
    cgw = "/infra/tier-1s/cgw"
    scenario = seed()
    cl2 = scenario.clusters[0]
    scenario.name = "vmc"
    scenario.description = (
        "the seed set-up on VMware Cloud on AWS: the compute gateway cgw behind the reverse "
        "proxy, auth: vmc with a CSP API token, no projects API; routers discovered"
    )
    scenario.tier1s = [cgw]
    cl2.ccm = SimCcm(cgw)  # the CCM's vsphere.conf names the manager with the proxy's path
    scenario.routes = _routes(_cl1_nodes(), cgw) + _routes(cl2.nodes, cgw) + _foreign(cgw)
    scenario.config_routers = None
    scenario.nsx_auth = "vmc"
    # The last page of each listing ends with a "0000" cursor, as nsxlib expects managers to.
    scenario.nsx_knobs = {"null_cursor": True}
    return scenario


def management() -> Scenario:
    mgmt = SimCluster(
        "mgmt",
        ("100.96.0.0/11",),
        [_node("mgmt-control-plane-s9d8f", "100.96.0.0/24", "172.16.130.5")],
        in_config=False,
    )
    wl1 = SimCluster(
        "wl1",
        ("172.16.176.0/21",),
        [
            _node("wl1-control-plane-a1b2c", "172.16.176.0/24", "172.16.130.11"),
            _node("wl1-md-0-5d4c3b2a1-d4e5f", "172.16.177.0/24", "172.16.130.12"),
        ],
        in_config=False,
    )
    wl2 = SimCluster(
        "wl2",
        ("172.16.184.0/21",),
        [
            _node("wl2-control-plane-g7h8i", "172.16.184.0/24", "172.16.130.21"),
            _node("wl2-md-0-9f8e7d6c5-j1k2l", "172.16.185.0/24", "172.16.130.22"),
        ],
        in_config=False,
        namespace="tkg-prod",
        # No `get` on the ConfigMap: its VSphereCPIConfig on the management cluster says.
        ccm=SimCcm(configmap_status=403),
    )
    gone = _node("wl2-md-0-9f8e7d6c5-gone1", "172.16.186.0/24", "172.16.130.23")
    return Scenario(
        name="management",
        description="a TKG management cluster whose Cluster API lists workload clusters wl1, wl2",
        tier1s=[T1],
        routes=_routes([*wl1.nodes, *wl2.nodes, gone]),
        clusters=[mgmt, wl1, wl2],
        management_cluster="mgmt",
        capi_clusters=[
            CapiCluster("wl1", "default", wl1.pod_cidrs, cpi=SimCcm()),
            CapiCluster("wl2", "tkg-prod", wl2.pod_cidrs, cpi=SimCcm()),
        ],
        config_routers=[T1],
        expected={"live": 4, "orphaned": 1},
    )


def tkg() -> Scenario:
    scenario = seed()
    scenario.name = "tkg"
    scenario.description = (
        "the seed set-up configured by TKG cluster configuration files alone "
        "(NSX host, user, password and CA from them)"
    )
    scenario.tkg_files = ["cl1", "cl2"]
    return scenario


def tkg_cert() -> Scenario:
    scenario = tkg()
    scenario.name = "tkg-cert"
    scenario.description = (
        "the tkg scenario with a client certificate (principal identity) instead of a password"
    )
    scenario.tkg_auth = "certificate"
    return scenario


def missing_route() -> Scenario:
    """Both directions: each cluster's CCM router read from the cluster, and the routes that
    should be there and are not."""
    cl2 = _cl2()
    # Joined two days ago; its CCM never wrote its route (down, or failing to reach NSX).
    lost = _node("cl2-md-0-6d8f9c7b5-n0rt3", "172.16.147.0/24", "172.16.128.143")
    cl2.nodes.append(lost)
    cl5 = SimCluster(
        "cl5",
        ("172.16.192.0/21",),
        [
            _node("cl5-control-plane-q2w3e", "172.16.192.0/24", "172.16.131.10"),
            _node("cl5-md-0-4c5d6e7f8-r4t5y", "172.16.193.0/24", "172.16.131.11"),
        ],
        # Moved from tanzu-cl1 to its own Tier-1; the CCM (YAML form) writes there now.
        ccm=SimCcm(T1_CL5, form="yaml", inline_credentials=True),
    )
    cl6 = SimCluster(
        "cl6",
        ("172.16.152.0/21",),
        [
            _node("cl6-control-plane-b7x4m", "172.16.152.0/24", "172.16.128.90"),
            _node("cl6-md-0-8b6c5d4f7-t6rjw", "172.16.153.0/24", "172.16.128.91"),
        ],
        ccm=SimCcm(configmap_status=403),  # the kubeconfig may not read the ConfigMap
    )
    cl9 = SimCluster(
        "cl9",
        ("172.16.200.0/21",),
        [_node("cl9-control-plane-u7i8o", "172.16.200.0/24", "172.16.132.10")],
        # Its CCM writes to another NSX manager: none of its routes are here.
        ccm=SimCcm("/infra/tier-1s/tanzu-cl9", nsx_host="nsx-b.example.com"),
    )
    return Scenario(
        name="missing-route",
        description=(
            "cl2's node cl2-md-0-6d8f9c7b5-n0rt3 has no route; cl5 moved to tanzu-cl5 and left "
            "its routes on tanzu-cl1; cl6's ConfigMap is forbidden; cl9 is on another manager"
        ),
        tier1s=[T1, T1_CL5],
        routes=_routes(cl2.nodes[:3])
        + _routes(cl5.nodes, T1_CL5)
        + _routes(cl5.nodes)
        + _routes(cl6.nodes),
        clusters=[cl2, cl5, cl6, cl9],
        config_routers=None,
        expected={"live": 9},
        expected_missing=(lost.name,),
        expected_misplaced=2,
    )


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "seed": seed,
    "seed-unretired": lambda: seed(retired=False),
    "stale-next-hop": stale_next_hop,
    "shadow": shadow,
    "conflict": conflict,
    "unreachable-cluster": unreachable_cluster,
    "project": project,
    "young": young,
    "principal": principal,
    "ipv6": ipv6,
    "management": management,
    "tkg": tkg,
    "tkg-cert": tkg_cert,
    "vmc": vmc,
    "missing-route": missing_route,
    "scale-s": lambda: scale_size("S"),
    "scale-m": lambda: scale_size("M"),
    "scale-l": lambda: scale_size("L"),
}


def load_scenario(name: str) -> Scenario:
    try:
        factory = SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
    return factory()
