"""Kubernetes inventory: the nodes of each configured cluster, read whole or not at all.

Every cluster gets its own ApiClient (kubeconfig.py); clusters are read concurrently, and a
failure stays with its cluster: a FAILED ClusterInventory whose one-line error says what failed
and never carries a credential.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from http import HTTPStatus
from ipaddress import ip_address
from typing import Any

import structlog
import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from nsx_route_gc.clusters.ccm import CcmReadError, read_ccm_configmap
from nsx_route_gc.clusters.kubeconfig import (
    api_client_from_kubeconfig,
    one_line,
    safe_url,
    scrub,
    status_message,
)
from nsx_route_gc.config import ClusterConfig
from nsx_route_gc.errors import KubeError
from nsx_route_gc.logs import carry_context
from nsx_route_gc.models import (
    CcmSettings,
    ClusterInventory,
    ClusterStatus,
    Node,
    parse_network,
)
from nsx_route_gc.progress import NULL_PROGRESS, Progress

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
    return api_client_from_kubeconfig(
        cluster.kubeconfig,
        cluster.context,
        credentials_only=cluster.from_secret,
        allow_http=cluster.allow_http or not cluster.from_secret,
    )


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
    server = safe_url(api.configuration.host)
    restarts = 0
    while True:
        try:
            return _list_once(api, server, page_size, request_timeout)
        except _ContinueExpiredError as exc:
            restarts += 1
            if restarts > max_restarts:
                raise KubeError(
                    f"listing nodes on {server}: continue token expired (410 Gone) "
                    f"{restarts} times in a row"
                ) from exc
            log.info("cluster.node_list_restarted", server=server, restart=restarts)


def _list_once(
    api: ApiClient, server: str, page_size: int, request_timeout: float | tuple[float, float]
) -> list[Node]:
    nodes: list[Node] = []
    token: str | None = None
    while True:
        try:
            page = _read_page(api, page_size, token, request_timeout)
        except ApiException as exc:
            if exc.status == 410 and token is not None:
                raise _ContinueExpiredError from exc
            raise KubeError(scrub(_api_error(exc, server), _client_secrets(api))) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise KubeError(f"cannot reach {server}: {_transport_error(exc)}") from exc
        except ValueError as exc:  # the body is not JSON
            raise KubeError(f"malformed node list from {server}: {_value_error(exc)}") from exc
        except (ConfigException, OSError) as exc:  # mostly a token refresh (in-cluster, exec)
            detail = scrub(one_line(f"{type(exc).__name__}: {exc}"), _client_secrets(api))
            raise KubeError(f"listing nodes on {server} failed: {detail}") from exc
        items, metadata = _page_parts(page, server)
        nodes.extend(_to_node(item, server) for item in items)
        previous, token = token, metadata.get("continue") or None
        if not token:
            return nodes
        if not isinstance(token, str):
            raise KubeError(f"malformed node list from {server}: metadata.continue")
        if token == previous:
            raise KubeError(f"listing nodes on {server}: the server repeated its continue token")


def _read_page(
    api: ApiClient, page_size: int, token: str | None, request_timeout: float | tuple[float, float]
) -> Any:
    """One NodeList page as parsed JSON.

    Sent through the ApiClient as the generated CoreV1Api.list_node sends it (same query,
    headers and authentication), without that class: importing it builds validators for a
    thousand methods (a third of a second and 20 MB), for this one call. The client's own
    models are skipped too: building them costs more than the request itself, for the
    handful of fields judgement reads.
    """
    query: list[tuple[str, object]] = [("limit", page_size)]
    if token is not None:
        query.append(("continue", token))
    request = api.param_serialize(
        method="GET",
        resource_path="/api/v1/nodes",
        query_params=query,
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    answer = api.call_api(*request, _request_timeout=request_timeout)
    try:
        if not 200 <= answer.status <= 299:
            answer.read()  # type: ignore[no-untyped-call]  # untyped library method
            raise ApiException.from_response(http_resp=answer, body=None, data=None)
        try:
            return json.loads(answer.response.data)
        except RecursionError:
            # A node list nests a few levels; a server's answer nested deeper is malformed.
            raise ValueError("nested too deeply") from None
    finally:
        answer.response.release_conn()


def _page_parts(page: Any, server: str) -> tuple[list[Any], dict[str, Any]]:
    if not isinstance(page, dict):
        raise KubeError(f"malformed node list from {server}: not a NodeList")
    items = page.get("items") or []
    metadata = page.get("metadata") or {}
    if not isinstance(items, list) or not isinstance(metadata, dict):
        raise KubeError(f"malformed node list from {server}: not a NodeList")
    return items, metadata


def _to_node(item: Any, server: str) -> Node:
    def bad(problem: str) -> KubeError:
        return KubeError(f"malformed node list from {server}: {problem}")

    if not isinstance(item, dict):
        raise bad("an item that is not an object")
    meta, spec, status = (item.get(k) or {} for k in ("metadata", "spec", "status"))
    if not isinstance(meta, dict) or not isinstance(spec, dict) or not isinstance(status, dict):
        raise bad("a node whose metadata, spec or status is not an object")
    name = meta.get("name")
    uid = meta.get("uid")
    if not name or not uid or not isinstance(name, str) or not isinstance(uid, str):
        missing = "metadata.name" if not isinstance(name, str) or not name else "metadata.uid"
        raise bad(f"a node without {missing}")
    # podCIDR alone is what pre-dual-stack nodes have.
    cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    raw_addresses = status.get("addresses") or []
    if not isinstance(cidrs, list) or not isinstance(raw_addresses, list):
        raise bad(f"node {name}: spec.podCIDRs or status.addresses is not a list")
    found: list[str] = []
    for i, entry in enumerate(raw_addresses):
        kind = entry.get("type") if isinstance(entry, dict) else None
        address = entry.get("address") if isinstance(entry, dict) else None
        if not isinstance(kind, str) or not isinstance(address, str):
            raise bad(f"node {name}: status.addresses[{i}] needs a type and an address")
        if kind in NODE_ADDRESS_TYPES and address:
            found.append(address)
    addresses = tuple(dict.fromkeys(found))
    if not all(isinstance(cidr, str) for cidr in cidrs):
        raise bad(f"node {name}: a podCIDR that is not a string")
    stamp = meta.get("creationTimestamp")
    if stamp is not None and not isinstance(stamp, str):
        raise bad(f"node {name}: creationTimestamp is not a string")
    try:
        for cidr in cidrs:
            parse_network(cidr)
        for address in addresses:
            ip_address(address)
        # RFC 3339 as the API server writes it; fromisoformat reads the trailing Z since 3.11.
        created = datetime.fromisoformat(stamp) if stamp else None
    except ValueError as exc:
        raise bad(f"node {name}: {exc}") from exc
    return Node(
        uid=uid.lower(),
        name=name,
        pod_cidrs=tuple(cidrs),
        addresses=addresses,
        created=created,
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


def _client_secrets(api: ApiClient) -> set[str]:
    cfg = api.configuration
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
        progress: Progress = NULL_PROGRESS,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._factory = client_factory
        self._max_workers = max_workers
        self._page_size = page_size
        self._request_timeout = request_timeout
        self._progress = progress

    def inventory(self, clusters: Sequence[ClusterConfig]) -> list[ClusterInventory]:
        """One ClusterInventory per cluster, in the order given; never raises for a cluster."""
        if not clusters:
            return []
        workers = min(self._max_workers, len(clusters))
        task = self._progress.task("clusters inventoried", total=len(clusters))

        def one(cluster: ClusterConfig) -> ClusterInventory:
            try:
                return self.inventory_one(cluster)
            finally:
                task.advance()

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube-inventory") as pool:
            return list(pool.map(carry_context(one), clusters))

    def inventory_one(self, cluster: ClusterConfig) -> ClusterInventory:
        try:
            nodes, ccm, warnings = self._read(cluster)
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
            ccm=ccm,
            warnings=warnings,
        )

    def _read(
        self, cluster: ClusterConfig
    ) -> tuple[list[Node], CcmSettings | None, tuple[str, ...]]:
        api = self._factory(cluster)
        try:
            nodes = list_nodes(
                api, page_size=self._page_size, request_timeout=self._request_timeout
            )
            if not nodes:
                # A cluster always has a node: none means a wrong or broken kubeconfig.
                raise KubeError(f"node list is empty on {safe_url(api.configuration.host)}")
            # The CCM's settings only once the nodes are read: a failed cluster is failed already.
            ccm, warnings = self._ccm(api, cluster)
        finally:
            api.close()  # type: ignore[no-untyped-call]  # untyped library method
        return nodes, ccm, warnings

    def _ccm(
        self, api: ApiClient, cluster: ClusterConfig
    ) -> tuple[CcmSettings | None, tuple[str, ...]]:
        """The CCM's settings, or None with a warning: never a failed inventory."""
        try:
            ccm, problems = read_ccm_configmap(api, request_timeout=self._request_timeout)
        except CcmReadError as exc:
            error = scrub(str(exc), _client_secrets(api))
            log.warning("cluster.ccm_settings_unknown", cluster=cluster.name, error=error)
            return None, (error,)
        except Exception as exc:
            # As for the nodes: a bug stays with this cluster, and its message is left out.
            error = f"reading the CCM settings: unexpected {type(exc).__name__} (a bug)"
            log.warning("cluster.ccm_settings_unknown", cluster=cluster.name, error=error)
            return None, (error,)
        for problem in problems:
            log.warning("cluster.ccm_settings_odd", cluster=cluster.name, problem=problem)
        log.info(
            "cluster.ccm_settings",
            cluster=cluster.name,
            pod_routing=ccm.pod_routing,
            router=ccm.router,
            nsx_host=ccm.nsx_host,
            source=ccm.source,
        )
        return ccm, problems

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
