"""Cluster API discovery: the workload clusters a management cluster knows, inventoried like
configured ones, plus the remembered clusters that have left it (retired).

Nothing here makes routes deletable on a failure: a Cluster list that fails or finds no
Cluster at all yields one FAILED marker (so the run is partial and "no owner" never becomes
"orphaned") and retires nobody; a cluster whose kubeconfig Secret (refused when it carries
more than certificate, token and CA data) or API server fails is FAILED alone; a cluster
being deleted stays DELETING (its routes unverified) until its Cluster object is gone.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import structlog
from kubernetes.client import ApiClient

from nsx_route_gc.clusters.capi_objects import (
    CAPI_GROUP,
    CAPI_VERSION,
    PAGE_SIZE,
    CapiCluster,
    list_capi_clusters,
    read_kubeconfig_secret,
)
from nsx_route_gc.clusters.ccm import CcmReadError, read_cpi_config
from nsx_route_gc.clusters.inventory import Inventory
from nsx_route_gc.clusters.kubeconfig import api_client_from_kubeconfig, safe_url
from nsx_route_gc.clusters.memory import ClusterMemory, Scope, Sighting
from nsx_route_gc.clusters.memory_store import ConfigMapStore, FileStore
from nsx_route_gc.config import ClusterApiConfig, ClusterConfig, Config
from nsx_route_gc.errors import KubeError
from nsx_route_gc.logs import carry_context
from nsx_route_gc.models import CcmSettings, ClusterInventory, ClusterStatus, Policy
from nsx_route_gc.ports import ClusterDiscovery

log = structlog.get_logger(__name__)

SOURCE = "cluster-api"
FLAG_CCM_CONFIG_DIFFERS = "ccm-config-differs"

# What the management cluster says of a workload cluster's CCM: its VSphereCPIConfig (None:
# there is none), or why it could not be read.
_Cpi = tuple[CcmSettings | None, str | None]

ManagementClientFactory = Callable[[ClusterApiConfig], ApiClient]


def default_management_client(config: ClusterApiConfig) -> ApiClient:
    return api_client_from_kubeconfig(config.kubeconfig, config.context)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ClusterApiDiscovery:
    """Implements scan.ClusterDiscovery from one management cluster and its memory."""

    def __init__(
        self,
        config: ClusterApiConfig,
        memory: ClusterMemory | None,
        policy: Policy,
        *,
        client_factory: ManagementClientFactory = default_management_client,
        inventory: Inventory | None = None,
        clock: Callable[[], datetime] = _utc_now,
        max_workers: int = 8,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.config = config
        self.memory = memory
        self.policy = policy
        self._factory = client_factory
        self._inventory = inventory or Inventory(max_workers=max_workers)
        self._clock = clock
        self._max_workers = max_workers
        self._page_size = page_size

    @property
    def label(self) -> str:
        """The management cluster as the configuration names it."""
        if self.config.context:
            return self.config.context
        return "in-cluster" if self.config.kubeconfig is None else str(self.config.kubeconfig)

    def discover(self, configured: Sequence[ClusterInventory]) -> list[ClusterInventory]:
        try:
            api = self._factory(self.config)
        except KubeError as exc:
            return [self._list_failed(str(exc))]
        try:
            return self._discover(api, configured)
        finally:
            api.close()  # type: ignore[no-untyped-call]  # untyped library method

    def _discover(
        self, api: ApiClient, configured: Sequence[ClusterInventory]
    ) -> list[ClusterInventory]:
        server = safe_url(api.configuration.host)
        try:
            clusters = list_capi_clusters(api, self.config.namespaces, page_size=self._page_size)
        except KubeError as exc:
            return [self._list_failed(str(exc))]
        log.info("capi.listed", server=server, clusters=len(clusters))
        if not clusters:
            # No evidence, like a cluster with no nodes: a namespace typo or the wrong
            # management cluster finds nothing, and nothing found must neither make every
            # route "no-owner" nor retire every remembered cluster.
            where = ", ".join(self.config.namespaces) or "all namespaces"
            return [
                self._list_failed(
                    f"no Cluster found on {server} ({where}): a wrong namespace or "
                    "management cluster? Zero clusters is not taken as evidence"
                )
            ]
        configured_names = {c.name for c in configured}
        names = _display_names(clusters)
        wanted = [c for c in clusters if names[c] not in configured_names]
        for c in clusters:
            if names[c] in configured_names:
                log.info("capi.cluster_configured", cluster=names[c], namespace=c.namespace)
        found = self._inventory_all(api, wanted, names)
        if self.memory is None:
            return found
        now = self._clock()
        scope = Scope(management=server, namespaces=frozenset(self.config.namespaces))
        ccm = {c.name: c.ccm for c in (*configured, *found)}
        self.memory.update(
            [Sighting(c.name, c.namespace, c.pod_cidrs, ccm.get(names[c])) for c in clusters],
            now,
            scope,
        )
        present = {c.name for c in clusters} | set(names.values()) | configured_names
        retired = self.memory.retired(present, now, self.policy.cluster_gone_after, scope)
        return found + retired

    def _list_failed(self, error: str) -> ClusterInventory:
        log.error("capi.list_failed", management=self.label, error=error)
        return ClusterInventory(
            name=f"{SOURCE}:{self.label}",
            source=SOURCE,
            status=ClusterStatus.FAILED,
            error=f"Cluster API discovery failed: {error}",
        )

    def _inventory_all(
        self, api: ApiClient, clusters: Sequence[CapiCluster], names: dict[CapiCluster, str]
    ) -> list[ClusterInventory]:
        if not clusters:
            return []
        # Kubeconfigs live in a private temp dir (0700, files 0600) only while clients are made.
        with tempfile.TemporaryDirectory(prefix="nsx-route-gc-capi-") as tmp:
            workers = max(1, min(self._max_workers, len(clusters)))
            with ThreadPoolExecutor(workers, thread_name_prefix="capi-secret") as pool:

                def prepare(c: CapiCluster) -> tuple[ClusterConfig | ClusterInventory, _Cpi]:
                    return self._prepare(api, c, names[c], Path(tmp)), self._cpi(api, c)

                prepared = list(pool.map(carry_context(prepare), clusters))
            configs = [p for p, _ in prepared if isinstance(p, ClusterConfig)]
            results = iter(self._inventory.inventory(configs))
            out: list[ClusterInventory] = []
            for cluster, (item, cpi) in zip(clusters, prepared, strict=True):
                inv = next(results) if isinstance(item, ClusterConfig) else item
                inv = _with_cpi(inv, cpi, names[cluster])
                out.append(self._finish(cluster, inv, item, names[cluster]))
        return out

    def _cpi(self, api: ApiClient, cluster: CapiCluster) -> _Cpi:
        """The cluster's VSphereCPIConfig (TKG 2.x: named after the cluster, in its namespace,
        referenced by its ClusterBootstrap), read on the management cluster."""
        try:
            return read_cpi_config(api, cluster.namespace, cluster.name), None
        except CcmReadError as exc:
            return None, str(exc)
        except Exception as exc:
            return None, f"reading its VSphereCPIConfig: unexpected {type(exc).__name__} (a bug)"

    def _prepare(
        self, api: ApiClient, cluster: CapiCluster, name: str, tmp: Path
    ) -> ClusterConfig | ClusterInventory:
        def failed(error: str) -> ClusterInventory:
            return ClusterInventory(
                name=name, source=SOURCE, status=ClusterStatus.FAILED,
                pod_cidrs=cluster.pod_cidrs, error=error,
            )  # fmt: skip

        try:
            text = read_kubeconfig_secret(api, cluster)
        except KubeError as exc:
            return failed(str(exc))
        except Exception as exc:
            # A bug must not take the other clusters down; its message may quote anything.
            return failed(f"reading its kubeconfig secret: unexpected {type(exc).__name__} (a bug)")
        path = tmp / f"{cluster.namespace}.{cluster.name}.kubeconfig"
        try:
            path.touch(mode=0o600)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            return failed(
                f"cannot write a temporary kubeconfig: {exc.strerror or type(exc).__name__}"
            )
        return ClusterConfig(
            name=name,
            kubeconfig=path,
            pod_cidrs=cluster.pod_cidrs,
            from_secret=True,
            allow_http=self.config.allow_http,
        )

    def _finish(
        self,
        cluster: CapiCluster,
        inv: ClusterInventory,
        item: ClusterConfig | ClusterInventory,
        name: str,
    ) -> ClusterInventory:
        error = inv.error
        if error and isinstance(item, ClusterConfig) and item.kubeconfig is not None:
            # Name the Secret, not the temp file that is gone by the time anyone reads this.
            secret = f"secret {cluster.namespace}/{cluster.name}-kubeconfig"
            error = error.replace(f"kubeconfig {item.kubeconfig}", secret)
            error = error.replace(str(item.kubeconfig), secret)
        evidence = f"Cluster API {cluster.namespace}/{cluster.name}"
        status = inv.status
        if cluster.deleting:
            status = ClusterStatus.DELETING
            evidence += f", deletionTimestamp {cluster.deletion_timestamp}"
            log.info("capi.cluster_deleting", cluster=name, since=cluster.deletion_timestamp)
        if status is ClusterStatus.FAILED:
            log.warning("capi.cluster_failed", cluster=name, error=error)
        return replace(inv, name=name, source=SOURCE, status=status, error=error, evidence=evidence)


def _with_cpi(inv: ClusterInventory, cpi: _Cpi, name: str) -> ClusterInventory:
    """The workload cluster's own ConfigMap is what its CCM reads, so it wins; the
    VSphereCPIConfig fills in when the ConfigMap could not be read, and a difference between
    the two (an addon not reconciled yet, an edited ConfigMap) is flagged."""
    settings, error = cpi
    if error is not None:
        log.warning("capi.cpi_config_unreadable", cluster=name, error=error)
        return replace(inv, warnings=(*inv.warnings, error))
    if settings is None:
        return inv
    if inv.ccm is None:
        return replace(inv, ccm=settings)
    mine, theirs = inv.ccm, settings
    if (mine.router, mine.nsx_host) == (theirs.router, theirs.nsx_host):
        return inv
    differs = (
        f"{theirs.source} says router {theirs.router or 'none'} on {theirs.nsx_host or '?'}, "
        f"{mine.source} says router {mine.router or 'none'} on {mine.nsx_host or '?'}"
    )
    log.warning("capi.ccm_config_differs", cluster=name, detail=differs)
    return replace(
        inv, warnings=(*inv.warnings, differs), flags=(*inv.flags, FLAG_CCM_CONFIG_DIFFERS)
    )


def _display_names(clusters: Sequence[CapiCluster]) -> dict[CapiCluster, str]:
    """The bare name, or namespace/name when two namespaces use the same name."""
    counts = Counter(c.name for c in clusters)
    return {c: c.name if counts[c.name] == 1 else f"{c.namespace}/{c.name}" for c in clusters}


def build_discovery(
    config: Config,
    *,
    client_factory: ManagementClientFactory = default_management_client,
    inventory: Inventory | None = None,
    clock: Callable[[], datetime] = _utc_now,
) -> ClusterDiscovery | None:
    """Cluster API discovery with its memory, as the configuration asks; None without it."""
    capi = config.cluster_api
    if capi is None:
        return None
    client: list[ApiClient] = []

    def management(_config: ClusterApiConfig = capi) -> ApiClient:
        # One client for discovery and the state ConfigMap, made at first use, not here.
        if not client:
            client.append(client_factory(capi))
        return client[0]

    memory: ClusterMemory | None = None
    if config.state.configmap:
        namespace, _, name = config.state.configmap.partition("/")
        memory = ClusterMemory(ConfigMapStore(management, namespace, name, clock=clock))
    elif config.state.file is not None:
        memory = ClusterMemory(FileStore(config.state.file, clock=clock))
    else:
        log.info("capi.no_memory", hint="set state.configmap or state.file to retire clusters")
    return ClusterApiDiscovery(
        capi,
        memory,
        config.policy,
        client_factory=management,
        inventory=inventory or Inventory(max_workers=config.cluster_concurrency),
        clock=clock,
        max_workers=config.cluster_concurrency,
    )


__all__ = [
    "CAPI_GROUP",
    "CAPI_VERSION",
    "CapiCluster",
    "ClusterApiDiscovery",
    "build_discovery",
    "default_management_client",
    "list_capi_clusters",
    "read_kubeconfig_secret",
]
