"""The Cluster API objects discovery reads from a management cluster: the ``clusters`` of
``cluster.x-k8s.io`` (paged, whole or not at all) and the ``<name>-kubeconfig`` Secrets.

Failures are KubeError of one line naming the call; nothing here quotes a credential.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
import urllib3
from kubernetes import client as k8s
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from nsx_route_gc.clusters.kubeconfig import one_line, safe_url, status_message
from nsx_route_gc.errors import KubeError
from nsx_route_gc.models import parse_network

log = structlog.get_logger(__name__)

CAPI_GROUP = "cluster.x-k8s.io"
CAPI_VERSION = "v1beta1"
CAPI_PLURAL = "clusters"
KUBECONFIG_KEY = "value"  # the data key of Cluster API's <cluster>-kubeconfig Secrets
PAGE_SIZE = 500
REQUEST_TIMEOUT = (10.0, 60.0)  # seconds: connect, read
MAX_LIST_RESTARTS = 3


@dataclass(frozen=True)
class CapiCluster:
    """What discovery needs of one ``clusters.cluster.x-k8s.io`` object."""

    namespace: str
    name: str
    pod_cidrs: tuple[str, ...] = ()
    deletion_timestamp: str | None = None
    phase: str | None = None

    @property
    def deleting(self) -> bool:
        return bool(self.deletion_timestamp)


def list_capi_clusters(
    api: ApiClient,
    namespaces: Sequence[str] = (),
    *,
    page_size: int = PAGE_SIZE,
    request_timeout: float | tuple[float, float] = REQUEST_TIMEOUT,
) -> list[CapiCluster]:
    """Every Cluster object (in ``namespaces``, or all), read whole or not at all. KubeError."""
    custom = k8s.CustomObjectsApi(api)
    server = safe_url(api.configuration.host)
    out: list[CapiCluster] = []
    for namespace in namespaces or (None,):
        where = f"namespace {namespace}" if namespace else "all namespaces"

        def page(token: str | None, ns: str | None = namespace) -> Any:
            common: dict[str, Any] = {
                "limit": page_size,
                "_continue": token,
                "_request_timeout": request_timeout,
            }
            if ns is None:
                return custom.list_custom_object_for_all_namespaces(
                    CAPI_GROUP, CAPI_VERSION, CAPI_PLURAL, **common
                )
            return custom.list_namespaced_custom_object(
                CAPI_GROUP, CAPI_VERSION, ns, CAPI_PLURAL, **common
            )

        items = _paged(page, f"listing {CAPI_PLURAL}.{CAPI_GROUP} in {where} on {server}")
        out.extend(_to_capi_cluster(item, server) for item in items)
    return out


def _paged(page: Callable[[str | None], Any], what: str) -> list[Any]:
    for _ in range(MAX_LIST_RESTARTS + 1):
        items: list[Any] = []
        token: str | None = None
        try:
            while True:
                body = _kube_call(functools.partial(page, token), what)
                if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                    raise KubeError(f"{what}: the answer is not a list")
                items.extend(body["items"])
                previous, token = token, (body.get("metadata") or {}).get("continue") or None
                if not token:
                    return items
                if token == previous:
                    raise KubeError(f"{what}: the server repeated its continue token")
        except _GoneError:
            # A continue token expired: a consistent list must start over, not carry on.
            log.info("capi.list_restarted", what=what)
    raise KubeError(f"{what}: continue token expired (410 Gone) {MAX_LIST_RESTARTS + 1} times")


class _GoneError(Exception):
    pass


class _NotFoundError(KubeError):
    pass


def _kube_call(call: Callable[[], Any], what: str) -> Any:
    try:
        return call()
    except ApiException as exc:
        if exc.status == 410:
            raise _GoneError from exc
        error = _NotFoundError if exc.status == 404 else KubeError
        if not exc.status:
            raise KubeError(f"{what} failed: {one_line(str(exc.reason or ''))}") from exc
        detail = f"{exc.status} {exc.reason or ''}".rstrip()
        message = status_message(exc.body)
        raise error(f"{detail} {what}" + (f": {message}" if message else "")) from exc
    except urllib3.exceptions.HTTPError as exc:
        reason = getattr(exc, "reason", None) or exc
        raise KubeError(f"{what}: cannot reach the server ({type(reason).__name__})") from exc
    except ValueError as exc:
        raise KubeError(f"{what}: malformed answer") from exc


def _dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _to_capi_cluster(item: Any, server: str) -> CapiCluster:
    name = _dig(item, "metadata", "name")
    namespace = _dig(item, "metadata", "namespace")
    if not isinstance(name, str) or not name or not isinstance(namespace, str) or not namespace:
        raise KubeError(f"malformed Cluster list from {server}: an item without name or namespace")
    blocks = _dig(item, "spec", "clusterNetwork", "pods", "cidrBlocks")
    cidrs: list[str] = []
    for block in blocks if isinstance(blocks, list) else ():
        try:
            parse_network(str(block))
        except ValueError:
            # CAPI's webhooks validate these; a bad one is skipped, its routes unattributed.
            log.warning("capi.invalid_cidr", cluster=f"{namespace}/{name}", cidr=str(block)[:64])
            continue
        cidrs.append(str(block))
    deletion = _dig(item, "metadata", "deletionTimestamp")
    phase = _dig(item, "status", "phase")
    return CapiCluster(
        namespace=namespace,
        name=name,
        pod_cidrs=tuple(cidrs),
        deletion_timestamp=str(deletion) if deletion else None,
        phase=phase if isinstance(phase, str) else None,
    )


def read_kubeconfig_secret(api: ApiClient, cluster: CapiCluster) -> str:
    """The kubeconfig of a workload cluster, from ``<name>-kubeconfig``. Raises KubeError."""
    secret_name = f"{cluster.name}-kubeconfig"
    what = f"reading secret {cluster.namespace}/{secret_name}"
    core = k8s.CoreV1Api(api)
    try:
        secret = _kube_call(
            lambda: core.read_namespaced_secret(
                secret_name, cluster.namespace, _request_timeout=REQUEST_TIMEOUT
            ),
            what,
        )
    except _GoneError as exc:  # 410 on a GET: nothing to retry
        raise KubeError(f"410 Gone {what}") from exc
    except _NotFoundError as exc:
        # Normal while a cluster is still being provisioned; the phase says so.
        phase = f" (cluster phase {cluster.phase})" if cluster.phase else ""
        raise KubeError(f"secret {cluster.namespace}/{secret_name} not found{phase}") from exc
    encoded = (secret.data or {}).get(KUBECONFIG_KEY)
    if not encoded:
        raise KubeError(f"secret {cluster.namespace}/{secret_name} has no key {KUBECONFIG_KEY!r}")
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        # Not chained: the decoder's message may quote part of the credential.
        raise KubeError(
            f"secret {cluster.namespace}/{secret_name} key {KUBECONFIG_KEY!r} is not a "
            "base64-encoded kubeconfig"
        ) from None
