"""Small builders for domain objects shared by the tests."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

from werkzeug import Response

from nsx_route_gc.models import CLUSTER_TAG_SCOPE, NODE_TAG_SCOPE, Node, Route
from nsx_route_gc.simulator.kube import status_body

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


class FakeTime:
    """A clock that only moves when somebody sleeps; sleeps are recorded. Thread-safe."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds


def kube_json(code: int, body: dict[str, Any]) -> Response:
    """A Kubernetes API answer; the reason phrase as Go's net/http writes it ("403 Forbidden")."""
    status = f"{code} {HTTPStatus(code).phrase}"
    return Response(json.dumps(body), status, content_type="application/json")


def kube_status(code: int, reason: str, message: str) -> Response:
    """A Kubernetes Status error answer."""
    return kube_json(code, status_body(code, reason, message))
