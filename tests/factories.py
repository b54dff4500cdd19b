"""Small builders for domain objects shared by the tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from nsx_route_gc.models import CLUSTER_TAG_SCOPE, NODE_TAG_SCOPE, Node, Route

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
OLD_MS = int((NOW - timedelta(days=30)).timestamp() * 1000)
T1 = "/infra/tier-1s/tanzu-cl1"


def ccm_route(uid: str, network: str, hop: str, *, node: str = "n", router: str = T1) -> Route:
    """A route exactly as the vSphere CCM writes it."""
    rid = f"{uid}_{network.replace('/', '_')}"
    path = f"{router}/static-routes/{rid}"
    body = {
        "resource_type": "StaticRoutes",
        "id": rid,
        "display_name": f"kubernetes_{node}_{network}",
        "path": path,
        "parent_path": router,
        "network": network,
        "next_hops": [{"ip_address": hop, "admin_distance": 1}],
        "tags": [
            {"scope": CLUSTER_TAG_SCOPE, "tag": "kubernetes"},
            {"scope": NODE_TAG_SCOPE, "tag": node},
        ],
        "_create_time": OLD_MS,
        "_revision": 0,
        "_protection": "NOT_PROTECTED",
    }
    return Route(
        router_path=router,
        id=rid,
        path=path,
        network=network,
        next_hops=(hop,),
        tags=((CLUSTER_TAG_SCOPE, "kubernetes"), (NODE_TAG_SCOPE, node)),
        create_time_ms=OLD_MS,
        revision=0,
        protection="NOT_PROTECTED",
        display_name=f"kubernetes_{node}_{network}",
        raw=json.dumps(body, separators=(",", ":"), sort_keys=True),
    )


def foreign_route(rid: str = "default", network: str = "0.0.0.0/0", router: str = T1) -> Route:
    return Route(router, rid, f"{router}/static-routes/{rid}", network, ("172.16.128.1",), ())


def node(uid: str, cidr: str, ip: str, name: str = "n") -> Node:
    return Node(uid=uid, name=name, pod_cidrs=(cidr,), addresses=(ip,))
