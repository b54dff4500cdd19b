"""Benchmark scenarios: many Tier-1s, clusters, nodes and routes, generated fast and lean.

Address plan (all pod networks /24, as TKG assigns them):
- configured cluster ``c`` owns a block of 10.0.0.0/8 big enough for twice its nodes; its
  live nodes take the first /24s, node-gone orphans some of the free ones;
- retired clusters (cluster-gone orphans) take the blocks after the configured ones;
- the remaining routes belong to clusters nobody configured (unattributed): /24s of
  100.64.0.0/10, distinct on each router (reused across routers only beyond 16,384);
- node IPs come from 172.16.0.0/12.
"""

from __future__ import annotations

import random
import uuid

from nsx_route_gc.simulator.model import (
    DAY_MS,
    RetiredCluster,
    Scenario,
    SimCcm,
    SimCluster,
    SimNode,
    SimRoute,
    ccm_route,
)

SIZES: dict[str, dict[str, int]] = {
    "S": {"routers": 10, "routes": 1_000, "clusters": 5, "nodes_per_cluster": 20},
    "M": {"routers": 100, "routes": 10_000, "clusters": 50, "nodes_per_cluster": 50},
    "L": {"routers": 500, "routes": 100_000, "clusters": 200, "nodes_per_cluster": 100},
    # Issue 11's slow manager: 200 Tier-1s x 250 routes, orphans on every Tier-1.
    "W": {"routers": 200, "routes": 50_000, "clusters": 200, "nodes_per_cluster": 50},
}
_TEN = 10 << 24
_CGNAT = (100 << 24) | (64 << 16)
_CGNAT_SLOTS = 1 << 14  # /24s in 100.64.0.0/10
_NODE_IPS = (172 << 24) | (16 << 16)


def _ip(value: int) -> str:
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


def _net24(value: int) -> str:
    return f"{_ip(value)}/24"


def scale(
    routers: int,
    routes: int,
    clusters: int,
    nodes_per_cluster: int,
    orphan_fraction: float = 0.1,
    seed: int = 0,
) -> Scenario:
    """A benchmark scenario; ``expected`` gives the verdict counts a correct scan finds.

    ``routes`` = live routes (one per node, as many as fit) + orphans
    (``orphan_fraction`` of all, half node-gone, half cluster-gone) + unattributed filler.
    """
    if min(routers, routes, clusters, nodes_per_cluster) < 1 or not 0 <= orphan_fraction < 1:
        raise ValueError(
            "scale: routers, routes, clusters and nodes must be >= 1, 0 <= orphans < 1"
        )
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets

    def uid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def age() -> int:
        return rng.randrange(2 * DAY_MS, 60 * DAY_MS)

    block = 4  # /24s per cluster block: a power of two at least twice the nodes
    while block < 2 * nodes_per_cluster:
        block *= 2
    prefix = 24 - block.bit_length() + 1
    orphans = round(routes * orphan_fraction)
    node_gone = min(orphans // 2, clusters * (block - nodes_per_cluster))
    cluster_gone = orphans - node_gone
    retired_count = -(-cluster_gone // block)
    if (clusters + retired_count) * block > 1 << 16:
        raise ValueError(f"scale: {clusters} clusters of {nodes_per_cluster} nodes overflow 10/8")
    live = min(clusters * nodes_per_cluster, routes - orphans)
    filler = routes - live - orphans

    tier1s = [f"/infra/tier-1s/t1-{i:04d}" for i in range(routers)]
    sim_routes: list[SimRoute] = []
    sim_clusters: list[SimCluster] = []
    next_ip = _NODE_IPS + 10
    for c in range(clusters):
        base = _TEN + c * block * 256
        router = tier1s[c % routers]
        name = f"c{c:03d}"
        nodes = []
        for k in range(nodes_per_cluster):
            node = SimNode(
                name=f"{name}-md-0-{k:04d}",
                uid=uid(),
                pod_cidrs=(_net24(base + k * 256),),
                internal_ips=(_ip(next_ip),),
            )
            next_ip += 1
            nodes.append(node)
            if len(sim_routes) < live:
                sim_routes.append(
                    ccm_route(router, node.uid, node.name, node.pod_cidrs[0],
                              node.internal_ips[0], age_ms=age())
                )  # fmt: skip
        sim_clusters.append(SimCluster(name, (f"{_ip(base)}/{prefix}",), nodes, ccm=SimCcm(router)))
    for j in range(node_gone):
        c, slot = j % clusters, nodes_per_cluster + j // clusters
        base = _TEN + c * block * 256
        sim_routes.append(
            ccm_route(tier1s[c % routers], uid(), f"c{c:03d}-md-0-gone-{j:05d}",
                      _net24(base + slot * 256), _ip(next_ip + j), age_ms=age())
        )  # fmt: skip
    retired = []
    for r in range(retired_count):
        base = _TEN + (clusters + r) * block * 256
        retired.append(RetiredCluster(f"retired-{r:03d}", (f"{_ip(base)}/{prefix}",)))
    for j in range(cluster_gone):
        r, slot = divmod(j, block)
        base = _TEN + (clusters + r) * block * 256
        sim_routes.append(
            ccm_route(tier1s[(clusters + r) % routers], uid(), f"retired-{r:03d}-node-{slot:04d}",
                      _net24(base + slot * 256), _ip(next_ip + node_gone + j), age_ms=age())
        )  # fmt: skip
    per_router = [0] * routers
    stride = max(1, _CGNAT_SLOTS // routers)
    for j in range(filler):
        r = j % routers
        k = per_router[r]
        per_router[r] += 1
        if k >= _CGNAT_SLOTS:
            raise ValueError("scale: more than 16,384 unattributed routes on one router")
        network = _net24(_CGNAT + ((r * stride + k) % _CGNAT_SLOTS) * 256)
        sim_routes.append(
            ccm_route(tier1s[r], uid(), f"other-{j:06d}", network,
                      _ip((192 << 24) | (168 << 16) | (j & 0xFFFF)), age_ms=age())
        )  # fmt: skip
    return Scenario(
        name=f"scale-{routers}x{routes}",
        description=(
            f"{routes} routes on {routers} Tier-1s, {clusters} clusters x {nodes_per_cluster} "
            f"nodes, {orphans} orphaned ({node_gone} node-gone, {cluster_gone} cluster-gone), "
            f"{filler} unattributed"
        ),
        tier1s=tier1s,
        routes=sim_routes,
        clusters=sim_clusters,
        retired=retired,
        config_routers=None,
        policy={"min_age": "1h", "max_deletes": orphans, "max_delete_percent": 100},
        expected={"live": live, "orphaned": orphans, "unattributed": filler},
    )


def scale_size(size: str, *, orphan_fraction: float = 0.1, seed: int = 0) -> Scenario:
    """One of the benchmark sizes S, M, L, W."""
    params = SIZES[size.upper()]
    return scale(**params, orphan_fraction=orphan_fraction, seed=seed)
