"""Kubernetes inventory: the nodes of each configured cluster, read whole or not at all.

Every cluster gets its own ApiClient (kubeconfig.py); clusters are read concurrently, and a
failure stays with its cluster: a FAILED ClusterInventory whose one-line error says what failed
and never carries a credential.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from ipaddress import ip_address
from typing import Any

import structlog
import urllib3
from kubernetes import client as k8s
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from nsx_route_gc.config import ClusterConfig
from nsx_route_gc.errors import KubeError
from nsx_route_gc.kubeconfig import (
    api_client_from_kubeconfig,
    one_line,
    safe_url,
    scrub,
    status_message,
)
from nsx_route_gc.logs import carry_context
from nsx_route_gc.models import ClusterInventory, ClusterStatus, Node, parse_network

__all__ = [
    "ApiClientFactory",
    "Inventory",
    "api_client_from_kubeconfig",
    "default_factory",
    "list_nodes",
]

log = structlog.get_logger(__name__)

ApiClientFactory = Callable[[ClusterConfig], ApiClient]

DEFAULT_PAGE_SIZE = 500
DEFAULT_REQUEST_TIMEOUT = (10.0, 60.0)  # seconds: connect, read (between bytes)
MAX_LIST_RESTARTS = 3
NODE_ADDRESS_TYPES = ("InternalIP", "ExternalIP")  # what the CCM may use as next hop


def default_factory(cluster: ClusterConfig) -> ApiClient:
    return api_client_from_kubeconfig(cluster.kubeconfig, cluster.context)


class _ContinueExpiredError(Exception):
    """A continue token expired (410 Gone) mid-list: the list must start over."""


def list_nodes(
    api: ApiClient,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    request_timeout: float | tuple[float, float] = DEFAULT_REQUEST_TIMEOUT,
    max_restarts: int = MAX_LIST_RESTARTS,
) -> list[Node]:
    """Every node, read page by page as one consistent list. Raises KubeError.

    Always a quorum read (no resourceVersion): a list served from the watch cache may be stale,
    and this list decides which routes are deleted.
    """
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    core = k8s.CoreV1Api(api)
    server = safe_url(api.configuration.host)
    restarts = 0
    while True:
        try:
            return _list_once(core, server, page_size, request_timeout)
        except _ContinueExpiredError as exc:
            restarts += 1
            if restarts > max_restarts:
                raise KubeError(
                    f"listing nodes on {server}: continue token expired (410 Gone) "
                    f"{restarts} times in a row"
                ) from exc
            log.info("cluster.node_list_restarted", server=server, restart=restarts)


def _list_once(
    core: Any, server: str, page_size: int, request_timeout: float | tuple[float, float]
) -> list[Node]:
    nodes: list[Node] = []
    token: str | None = None
    while True:
        try:
            page = core.list_node(
                limit=page_size, _continue=token, _request_timeout=request_timeout
            )
        except ApiException as exc:
            if exc.status == 410 and token is not None:
                raise _ContinueExpiredError from exc
            raise KubeError(scrub(_api_error(exc, server), _client_secrets(core))) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise KubeError(f"cannot reach {server}: {_transport_error(exc)}") from exc
        except ValueError as exc:  # the body is not JSON, or not a NodeList
            raise KubeError(f"malformed node list from {server}: {_value_error(exc)}") from exc
        except (ConfigException, OSError) as exc:  # mostly a token refresh (in-cluster, exec)
            detail = scrub(one_line(f"{type(exc).__name__}: {exc}"), _client_secrets(core))
            raise KubeError(f"listing nodes on {server} failed: {detail}") from exc
        nodes.extend(_to_node(item, server) for item in page.items or ())
        previous, token = token, page.metadata._continue if page.metadata else None
        if not token:
            return nodes
        if token == previous:
            raise KubeError(f"listing nodes on {server}: the server repeated its continue token")


def _to_node(item: Any, server: str) -> Node:
    meta, spec, status = item.metadata, item.spec, item.status
    name = getattr(meta, "name", None)
    uid = getattr(meta, "uid", None)
    if not name or not uid:
        missing = "metadata.name" if not name else "metadata.uid"
        raise KubeError(f"malformed node list from {server}: a node without {missing}")
    # Older clients call podCIDRs pod_cid_rs; podCIDR alone is what pre-dual-stack nodes have.
    cidrs = tuple(getattr(spec, "pod_cidrs", None) or getattr(spec, "pod_cid_rs", None) or ())
    if not cidrs and getattr(spec, "pod_cidr", None):
        cidrs = (spec.pod_cidr,)
    addresses = tuple(
        dict.fromkeys(
            a.address
            for a in (getattr(status, "addresses", None) or ())
            if a.type in NODE_ADDRESS_TYPES and a.address
        )
    )
    try:
        for cidr in cidrs:
            parse_network(cidr)
        for address in addresses:
            ip_address(address)
    except ValueError as exc:
        raise KubeError(f"malformed node list from {server}: node {name}: {exc}") from exc
    return Node(
        uid=uid.lower(),
        name=name,
        pod_cidrs=cidrs,
        addresses=addresses,
        created=meta.creation_timestamp,
    )


def _api_error(exc: ApiException, server: str) -> str:
    if not exc.status:  # no HTTP answer: TLS failure, or a body the client cannot decode
        reason = str(exc.reason or "")
        if reason.startswith("SSLError"):
            return f"cannot reach {server}: TLS error: {one_line(reason.removeprefix('SSLError'))}"
        return f"listing nodes on {server} failed: {one_line(reason)}"
    try:  # the standard phrase: servers and proxies spell reasons differently
        reason = HTTPStatus(exc.status).phrase
    except ValueError:
        reason = one_line(str(exc.reason or ""))
    text = f"{exc.status} {reason}".rstrip() + f" listing nodes on {server}"
    message = status_message(exc.body)
    if message and message.lower() != reason.lower():
        text += f": {message}"
    return text


def _transport_error(exc: BaseException) -> str:
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    errors = urllib3.exceptions
    if isinstance(exc, errors.NewConnectionError):
        cause = _root_cause(exc)
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if type(exc).__name__ == "NameResolutionError" or "gaierror" in type(cause).__name__:
            return "cannot resolve the host name"
        return one_line(getattr(cause, "strerror", None) or str(cause)).lower()
    if isinstance(exc, errors.ConnectTimeoutError):
        return "connect timed out"
    if isinstance(exc, errors.ReadTimeoutError):
        return "read timed out"
    if isinstance(exc, errors.SSLError | errors.ProxyError):
        cause = _root_cause(exc)
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate verify failed: {cause.verify_message}"
        kind = "TLS" if isinstance(exc, errors.SSLError) else "proxy"
        return f"{kind} error: {one_line(str(cause))}"
    if isinstance(exc, errors.ProtocolError):
        return "connection broken"
    return type(exc).__name__


def _root_cause(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while (nested := exc.__cause__ or exc.__context__) is not None and id(nested) not in seen:
        seen.add(id(nested))
        exc = nested
    return exc


def _value_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):  # a model validation error: name the first field and problem
        first = (errors() or [{}])[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{getattr(exc, 'title', 'object')}.{where}: {first.get('msg', 'invalid')}"
    if type(exc).__name__ == "JSONDecodeError":
        return "the answer is not JSON"
    return one_line(str(exc))[:300]


def _client_secrets(core: Any) -> set[str]:
    cfg = core.api_client.configuration
    found = {str(v) for v in (cfg.api_key or {}).values() if v}
    found |= {v.split(None, 1)[-1] for v in found}
    if cfg.password:
        found.add(str(cfg.password))
    return found


class Inventory:
    """Inventories the configured clusters, each with its own client, several at once."""

    def __init__(
        self,
        client_factory: ApiClientFactory = default_factory,
        *,
        max_workers: int = 8,
        page_size: int = DEFAULT_PAGE_SIZE,
        request_timeout: float | tuple[float, float] = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._factory = client_factory
        self._max_workers = max_workers
        self._page_size = page_size
        self._request_timeout = request_timeout

    def inventory(self, clusters: Sequence[ClusterConfig]) -> list[ClusterInventory]:
        """One ClusterInventory per cluster, in the order given; never raises for a cluster."""
        if not clusters:
            return []
        workers = min(self._max_workers, len(clusters))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube-inventory") as pool:
            return list(pool.map(carry_context(self.inventory_one), clusters))

    def inventory_one(self, cluster: ClusterConfig) -> ClusterInventory:
        try:
            nodes = self._nodes(cluster)
        except KubeError as exc:
            return self._failed(cluster, str(exc))
        except Exception as exc:
            # A bug must not take the other clusters down with it. The message is left out: an
            # unexpected exception may quote anything, credentials included.
            return self._failed(cluster, f"unexpected {type(exc).__name__} (a bug)")
        log.info("cluster.inventoried", cluster=cluster.name, nodes=len(nodes))
        return ClusterInventory(
            name=cluster.name,
            source="config",
            status=ClusterStatus.OK,
            nodes=tuple(nodes),
            pod_cidrs=cluster.pod_cidrs,
        )

    def _nodes(self, cluster: ClusterConfig) -> list[Node]:
        api = self._factory(cluster)
        try:
            nodes = list_nodes(
                api, page_size=self._page_size, request_timeout=self._request_timeout
            )
            if not nodes:
                # A cluster always has a node: none means a wrong or broken kubeconfig.
                raise KubeError(f"node list is empty on {safe_url(api.configuration.host)}")
        finally:
            api.close()  # type: ignore[no-untyped-call]  # untyped library method
        return nodes

    @staticmethod
    def _failed(cluster: ClusterConfig, error: str) -> ClusterInventory:
        log.warning("cluster.inventory_failed", cluster=cluster.name, error=error)
        # pod_cidrs stay: judgement finds this cluster's routes by them and holds them unverified.
        return ClusterInventory(
            name=cluster.name,
            source="config",
            status=ClusterStatus.FAILED,
            pod_cidrs=cluster.pod_cidrs,
            error=error,
        )
