"""``validate``: check a configuration before a run, one line per check.

``file_checks`` are what needs no server: every kubeconfig file and its context. ``scan``
and ``apply`` run them before they start, so a missing file or an unknown context is a
usage error (exit 2) before anything is listed, not a failed cluster mid-run.
``run_validate`` adds the servers: the NSX login (one attempt; NSX locks an account after
five failures), TLS, the configured routers, and the Cluster API management cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from nsx_route_gc.clusters.kubeconfig import check_kubeconfig
from nsx_route_gc.config import ClusterApiConfig, Config
from nsx_route_gc.errors import KubeError, NsxAccessError, NsxError
from nsx_route_gc.nsx.client import NsxClient
from nsx_route_gc.runs.frame import NsxFactory

if TYPE_CHECKING:
    from nsx_route_gc.clusters.capi import ManagementClientFactory

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Check:
    subject: str  # what was checked: "kubeconfig of cl2", "NSX login", "router /infra/..."
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.subject}: {self.detail}"


def file_checks(config: Config) -> list[Check]:
    """Every configured kubeconfig file and context (in-cluster ones are the pod's)."""
    checks = []
    wanted = [(f"kubeconfig of {c.name}", c.kubeconfig, c.context) for c in config.clusters]
    if config.cluster_api is not None:
        capi = config.cluster_api
        wanted.append(("kubeconfig of cluster_api", capi.kubeconfig, capi.context))
    for subject, path, context in wanted:
        if path is None:
            continue
        try:
            checks.append(Check(subject, True, f"{path}: {check_kubeconfig(path, context)}"))
        except KubeError as exc:
            checks.append(Check(subject, False, str(exc)))
    return checks


def run_validate(
    config: Config,
    *,
    nsx_factory: NsxFactory = NsxClient,
    management_factory: ManagementClientFactory | None = None,
) -> list[Check]:
    """``management_factory``: the Cluster API management cluster's client (None: from its
    kubeconfig)."""
    checks = [Check("configuration", True, config.source), *file_checks(config)]
    checks += _nsx_checks(config, nsx_factory)
    if config.cluster_api is not None:
        if management_factory is None:
            # Imported here: the Kubernetes client is not needed at start-up (kubeconfig).
            from nsx_route_gc.clusters.capi import default_management_client  # noqa: PLC0415

            management_factory = default_management_client
        checks.append(_capi_check(config.cluster_api, management_factory))
    for check in checks:
        log.info("validate.check", subject=check.subject, ok=check.ok, detail=check.detail)
    return checks


def _nsx_checks(config: Config, nsx_factory: NsxFactory) -> list[Check]:
    host = config.nsx.host
    try:
        with nsx_factory(config.nsx) as nsx:
            # One login (list_routers authenticates first); configured routers need no call.
            routers = nsx.list_routers()
            tls = "TLS NOT verified: nsx.insecure" if config.nsx.insecure else "TLS verified"
            checks = [Check("NSX login", True, f"{host} as {_who(config)} ({tls})")]
            if not config.nsx.routers:
                detail = f"{len(routers)} Tier-1(s) found (nsx.routers not set: every one)"
                return [*checks, Check("routers", bool(routers), detail)]
            for router in routers:
                found = nsx.router_exists(router)
                checks.append(
                    Check(f"router {router}", found, "exists" if found else "not found on NSX")
                )
            return checks
    except NsxAccessError as exc:
        # A TLS failure names nsx.ca_file; a refused login is not tried again.
        return [Check("NSX login", False, str(exc))]
    except NsxError as exc:
        return [Check("NSX", False, str(exc))]


def _who(config: Config) -> str:
    if config.nsx.auth in {"session", "basic", "remote"}:
        return f"user {config.nsx.username}"
    return f"auth {config.nsx.auth}"


def _capi_check(capi: ClusterApiConfig, factory: ManagementClientFactory) -> Check:
    from nsx_route_gc.clusters.capi_objects import list_capi_clusters  # noqa: PLC0415 - lazy

    try:
        api = factory(capi)
        try:
            clusters = list_capi_clusters(api, capi.namespaces)
        finally:
            api.close()  # type: ignore[no-untyped-call]  # untyped library method
    except KubeError as exc:
        return Check("Cluster API", False, str(exc))
    return Check("Cluster API", True, f"{len(clusters)} workload cluster(s) listed")
