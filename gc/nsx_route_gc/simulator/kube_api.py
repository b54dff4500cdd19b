"""HTTP side of the simulated Kubernetes API servers, all behind one port.

``https://127.0.0.1:PORT/clusters/<name>`` is the server URL of cluster ``<name>``; the real
``kubernetes`` client appends its API paths to a server URL with a path, so each cluster
looks like a server of its own. Errors are ``Status`` objects like the real API server's.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any
from urllib.parse import unquote

from nsx_route_gc.simulator.http import Request, Response
from nsx_route_gc.simulator.kube import (
    CAPI_GROUP,
    CAPI_VERSION,
    CPI_GROUP,
    CPI_VERSION,
    KubeClusterState,
    KubeFault,
    status_body,
)

_CLUSTER = re.compile(r"^/clusters/(?P<cluster>[^/]+)(?P<rest>/.*)?$")
_CONFIGMAPS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/configmaps(?:/(?P<name>[^/]+))?$")
_SECRET = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/secrets/(?P<name>[^/]+)$")
_CAPI = re.compile(
    rf"^/apis/{re.escape(CAPI_GROUP)}/{CAPI_VERSION}"
    r"(?:/namespaces/(?P<ns>[^/]+))?/clusters(?:/(?P<name>[^/]+))?$"
)
_CPI = re.compile(
    rf"^/apis/{re.escape(CPI_GROUP)}/{CPI_VERSION}/namespaces/(?P<ns>[^/]+)"
    r"/vspherecpiconfigs/(?P<name>[^/]+)$"
)
_REASONS = {
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    410: "Expired",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}
VERSION = {
    "major": "1",
    "minor": "28",
    "gitVersion": "v1.28.7+vmware.1",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-03-01T00:00:00Z",
    "goVersion": "go1.21.7",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def handle(clusters: dict[str, KubeClusterState], req: Request) -> Response:
    match = _CLUSTER.match(req.path)
    cluster = clusters.get(unquote(match["cluster"])) if match else None
    if match is None or cluster is None:
        return Response.json(404, _status(404, f"no cluster at {req.path}"))
    if cluster.unreachable:
        return Response(0, hang_up=True)
    if req.header("authorization") != f"Bearer {cluster.token}":
        return Response.json(401, _status(401, "Unauthorized"))
    failure = cluster.fail_status
    if failure is not None:
        return Response.json(failure, _status(failure, f"injected failure {failure}"))
    try:
        return _route(cluster, req, match["rest"] or "/")
    except KubeFault as fault:
        return Response.json(fault.code, fault.body)


def _status(code: int, message: str) -> dict[str, Any]:
    return status_body(code, _REASONS.get(code, "Unknown"), message)


def _list_meta(cluster: KubeClusterState) -> dict[str, Any]:
    return {"resourceVersion": cluster.next_resource_version()}


def _route(cluster: KubeClusterState, req: Request, path: str) -> Response:
    if path in ("/version", "/version/") and req.method == "GET":
        cluster.counters["version"] += 1
        return Response.json(200, VERSION)
    if path == "/api/v1/nodes" and req.method == "GET":
        cluster.counters["list_nodes"] += 1
        return Response.json(200, _list_nodes(cluster, req))
    if match := _CAPI.match(path):
        cluster.counters["capi"] += 1
        return _capi(cluster, req, match["ns"], match["name"])
    if (match := _SECRET.match(path)) and req.method == "GET":
        cluster.counters["secret"] += 1
        with cluster.lock:
            secret = cluster.secrets.get((match["ns"], match["name"]))
        if secret is None:
            raise KubeFault(404, "NotFound", f'secrets "{match["name"]}" not found')
        return Response.json(200, secret)
    if match := _CONFIGMAPS.match(path):
        cluster.counters["configmap"] += 1
        return _configmaps(cluster, req, match["ns"], match["name"])
    if (match := _CPI.match(path)) and req.method == "GET":
        cluster.counters["cpi_config"] += 1
        with cluster.lock:
            obj = cluster.cpi_configs.get((match["ns"], match["name"]))
        if obj is None:
            # Without the CRD the real server says "could not find the requested resource".
            raise KubeFault(
                404,
                "NotFound",
                f'vspherecpiconfigs.{CPI_GROUP} "{match["name"]}" not found',
                name=match["name"],
                group=CPI_GROUP,
                kind="vspherecpiconfigs",
            )
        return Response.json(200, obj)
    raise KubeFault(404, "NotFound", "the server could not find the requested resource")


def _list_nodes(cluster: KubeClusterState, req: Request) -> dict[str, Any]:
    token = req.query.get("continue")
    after = None
    if token:
        with cluster.lock:
            expire = cluster.expire_continue > 0
            if expire:
                cluster.expire_continue -= 1
        if expire:
            raise KubeFault(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list "
                "result. You can start a new list without the continue parameter.",
            )
        try:
            after = str(json.loads(base64.urlsafe_b64decode(token.encode()))["start"])
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise KubeFault(400, "BadRequest", "invalid continue token") from exc
    try:
        limit = int(req.query["limit"]) if req.query.get("limit") else None
    except ValueError as exc:
        raise KubeFault(400, "BadRequest", "limit must be an integer") from exc
    items, last = cluster.node_page(after, limit if limit and limit > 0 else None)
    meta = _list_meta(cluster)
    if last is not None:
        raw = json.dumps({"v": "meta.k8s.io/v1", "rv": meta["resourceVersion"], "start": last})
        meta["continue"] = base64.urlsafe_b64encode(raw.encode()).decode()
        with cluster.lock:
            meta["remainingItemCount"] = sum(1 for n in cluster.nodes if n > last)
    return {"kind": "NodeList", "apiVersion": "v1", "metadata": meta, "items": items}


def _capi(cluster: KubeClusterState, req: Request, ns: str | None, name: str | None) -> Response:
    if req.method != "GET":
        raise KubeFault(405, "MethodNotAllowed", f"{req.method} is not simulated for clusters")
    with cluster.lock:
        if name is not None:
            obj = cluster.capi_clusters.get((ns or "", name))
            if obj is None:
                raise KubeFault(404, "NotFound", f'clusters.{CAPI_GROUP} "{name}" not found')
            return Response.json(200, obj)
        items = [o for (n, _), o in sorted(cluster.capi_clusters.items()) if ns in (None, n)]
        body = {
            "apiVersion": f"{CAPI_GROUP}/{CAPI_VERSION}",
            "kind": "ClusterList",
            "metadata": {**_list_meta(cluster), "continue": ""},
            "items": items,
        }
        return Response.json(200, body)


def _configmaps(cluster: KubeClusterState, req: Request, ns: str, name: str | None) -> Response:
    if name is None:
        if req.method == "POST":
            return Response.json(201, cluster.create_configmap(ns, _body(req)))
        if req.method == "GET":
            with cluster.lock:
                items = [o for (n, _), o in sorted(cluster.configmaps.items()) if n == ns]
                body = {
                    "kind": "ConfigMapList",
                    "apiVersion": "v1",
                    "metadata": _list_meta(cluster),
                    "items": items,
                }
                return Response.json(200, body)
    elif req.method == "GET":
        return Response.json(200, cluster.get_configmap(ns, name))
    elif req.method in ("PUT", "PATCH"):
        merge = req.method == "PATCH"
        return Response.json(200, cluster.replace_configmap(ns, name, _body(req), merge=merge))
    elif req.method == "DELETE":
        cluster.delete_configmap(ns, name)
        return Response.json(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
    raise KubeFault(405, "MethodNotAllowed", f"{req.method} is not simulated for configmaps")


def _body(req: Request) -> Any:
    try:
        return req.json()
    except ValueError as exc:
        raise KubeFault(400, "BadRequest", "the body is not valid JSON") from exc
