"""Scenario data: what the simulated NSX manager and Kubernetes clusters hold at start.

Plain data, no I/O: a scenario is built once and loaded into a :class:`Simulator`. Slotted
classes keep a 100,000-route benchmark scenario small in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nsx_route_gc.models import CLUSTER_TAG_SCOPE, DEFAULT_CCM_CLUSTER_NAME, NODE_TAG_SCOPE

DAY_MS = 86_400_000


@dataclass(slots=True)
class SimNode:
    name: str
    uid: str
    pod_cidrs: tuple[str, ...]
    internal_ips: tuple[str, ...]
    external_ips: tuple[str, ...] = ()
    created: float = 0.0  # epoch seconds; 0: days before the simulator starts


@dataclass(slots=True)
class SimRoute:
    """A static route as stored on a Tier-1 at scenario start."""

    router: str  # Tier-1 policy path
    id: str
    network: str
    next_hops: tuple[str, ...]
    tags: tuple[tuple[str, str], ...] = ()
    display_name: str | None = None
    age_ms: int = 3 * DAY_MS  # how long before the simulator's start it was created
    protection: str = "NOT_PROTECTED"
    revision: int = 0
    create_user: str = "admin"


TANZU_CL1 = "/infra/tier-1s/tanzu-cl1"


@dataclass(slots=True)
class SimCcm:
    """What a cluster's CCM is configured with: served as ConfigMap
    ``kube-system/vsphere-cloud-config`` (key ``vsphere.conf``) of the workload cluster, or as
    a VSphereCPIConfig on the management cluster (``CapiCluster.cpi``)."""

    router_path: str | None = TANZU_CL1  # None: pod routing off (no [Route], no [NSXT])
    nsx_host: str | None = None  # None: the simulator's own NSX manager
    form: str = "ini"  # ini (what TKG renders) | yaml (newer CPI versions)
    # Credentials written in the file (user/password) instead of a Secret reference.
    inline_credentials: bool = False
    configmap_status: int | None = None  # answer GETs of the ConfigMap with this error (403)


@dataclass(slots=True)
class SimCluster:
    """A workload cluster whose Kubernetes API the simulator serves."""

    name: str
    pod_cidrs: tuple[str, ...]
    nodes: list[SimNode] = field(default_factory=list)
    in_config: bool = True  # listed under `clusters:` of the written config
    unreachable: bool = False
    empty: bool = False
    fail_status: int | None = None
    namespace: str = "default"  # Cluster API namespace (management scenario)
    ccm: SimCcm | None = field(default_factory=SimCcm)  # None: no CCM ConfigMap (404)


@dataclass(slots=True)
class CapiCluster:
    """A Cluster API Cluster object on the management cluster."""

    name: str
    namespace: str
    pod_cidrs: tuple[str, ...]
    deleting: bool = False
    cpi: SimCcm | None = None  # its VSphereCPIConfig (TKG 2.x), named after the cluster


@dataclass(slots=True)
class RetiredCluster:
    name: str
    pod_cidrs: tuple[str, ...]


@dataclass(slots=True)
class Scenario:
    name: str
    description: str
    tier1s: list[str]  # policy paths, /infra/tier-1s/x or /orgs/default/projects/p/infra/...
    routes: list[SimRoute] = field(default_factory=list)
    clusters: list[SimCluster] = field(default_factory=list)
    retired: list[RetiredCluster] = field(default_factory=list)
    # The cluster (one of ``clusters``) serving Cluster API objects ``capi_clusters`` and
    # their kubeconfig Secrets; the config then uses `cluster_api:` with its kubeconfig.
    management_cluster: str | None = None
    capi_clusters: list[CapiCluster] = field(default_factory=list)
    # Written as nsx.routers; None: omitted, the tool discovers every Tier-1.
    config_routers: list[str] | None = None
    policy: dict[str, object] = field(default_factory=lambda: {"min_age": "1h"})
    # Clusters (live or retired) that get a TKG cluster configuration file carrying the NSX
    # connection; when any do, config.yaml has no `nsx:` and takes their pod CIDRs from them.
    tkg_files: list[str] = field(default_factory=list)
    # How those files authenticate: "password" (NSXT_USERNAME/NSXT_PASSWORD) or "certificate"
    # (NSXT_CLIENT_CERT_DATA/NSXT_CLIENT_CERT_KEY_DATA of a principal identity).
    tkg_auth: str = "password"
    # "session", or "vmc": NSX behind the VMC reverse proxy with CSP tokens (enable_vmc);
    # the config then uses auth: vmc with a token file and the simulator as auth host.
    nsx_auth: str = "session"
    nsx_knobs: dict[str, object] = field(default_factory=dict)  # NsxState.set_knobs
    # What a correct judgement finds, by verdict (documentation for demo, tests, benchmark).
    expected: dict[str, int] = field(default_factory=dict)
    # Names of the live nodes a correct scan reports without their route, and how many
    # routes it reports misplaced.
    expected_missing: tuple[str, ...] = ()
    expected_misplaced: int = 0


def ccm_route(
    router: str,
    node_uid: str,
    node_name: str,
    cidr: str,
    next_hop: str,
    *,
    cluster_name: str = DEFAULT_CCM_CLUSTER_NAME,
    age_ms: int = 3 * DAY_MS,
    protection: str = "NOT_PROTECTED",
) -> SimRoute:
    """A route exactly as the vSphere CCM route controller writes it."""
    return SimRoute(
        router=router,
        id=f"{node_uid}_{cidr.replace('/', '_')}",
        network=cidr,
        next_hops=(next_hop,),
        tags=((CLUSTER_TAG_SCOPE, cluster_name), (NODE_TAG_SCOPE, node_name)),
        display_name=f"{cluster_name}_{node_name}_{cidr}",
        age_ms=age_ms,
        protection=protection,
        create_user="admin" if protection == "NOT_PROTECTED" else "tkg-ccm-principal",
    )


def node_routes(
    router: str,
    node: SimNode,
    *,
    age_ms: int = 3 * DAY_MS,
    protection: str = "NOT_PROTECTED",
) -> list[SimRoute]:
    """One CCM route per podCIDR of a node, next hop the InternalIP of the CIDR's family."""
    routes = []
    for cidr in node.pod_cidrs:
        v6 = ":" in cidr
        hop = next((ip for ip in (*node.internal_ips, *node.external_ips) if (":" in ip) == v6), "")
        routes.append(
            ccm_route(router, node.uid, node.name, cidr, hop, age_ms=age_ms, protection=protection)
        )
    return routes
