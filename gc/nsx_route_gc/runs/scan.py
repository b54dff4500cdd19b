"""Orchestration of a scan: list routes and inventory clusters, then judge.

A route must never be judged against a node list older than the route: its node may have
joined after the list was read. The grace period counts to the moment the inventory began,
so a route created after that is too young to delete, whatever the order. With a grace
period of at least ``OVERLAP_MIN_AGE`` (more than any sane clock skew between NSX and this
host), the clusters are inventoried while the routes are listed; with a shorter one, routes
are listed first and nodes after, which needs no clock at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from nsx_route_gc.config import Config
from nsx_route_gc.errors import NsxAccessError, NsxError
from nsx_route_gc.heap import collector_paused
from nsx_route_gc.judge import judge
from nsx_route_gc.logs import carry_context
from nsx_route_gc.models import (
    ClusterInventory,
    ClusterStatus,
    Plan,
    RouterListing,
)
from nsx_route_gc.nsx.concurrency import paced_map
from nsx_route_gc.placement import place
from nsx_route_gc.ports import ClusterDiscovery, ClusterSource, Paced, RouteSource
from nsx_route_gc.progress import NULL_PROGRESS, Progress

log = structlog.get_logger(__name__)

# The shortest grace period under which listing and inventory run at the same time.
OVERLAP_MIN_AGE = timedelta(minutes=5)


def nsx_threads(config: Config) -> int:
    """Threads for work that makes NSX calls: the most calls the transport lets be in flight."""
    return max(config.nsx.concurrency, config.nsx.max_concurrency)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ScanResult:
    plan: Plan
    started_at: datetime
    finished_at: datetime

    @property
    def failures(self) -> list[str]:
        """What makes the run partial: exit 1 even though a report was written."""
        out = [f"router {r.path} not listed: {r.error}" for r in self.plan.routers if r.error]
        out += [
            f"cluster {c.name} not inventoried: {c.error}"
            for c in self.plan.clusters
            if c.status is ClusterStatus.FAILED
        ]
        out += [f"deletions held on {r}: {why}" for r, why in self.plan.limit_holds]
        return out


class Scanner:
    def __init__(
        self,
        config: Config,
        routes: RouteSource,
        clusters: ClusterSource,
        *,
        discovery: ClusterDiscovery | None = None,
        clock: Callable[[], datetime] = utc_now,
        progress: Progress = NULL_PROGRESS,
    ) -> None:
        self.config = config
        self.routes = routes
        self.clusters = clusters
        self.discovery = discovery
        self.clock = clock
        self.progress = progress

    def scan(self) -> ScanResult:
        started = self.clock()
        routers = self.routes.list_routers()
        log.info("scan.started", routers=len(routers), clusters=len(self.config.clusters))
        if self.config.policy.min_age >= OVERLAP_MIN_AGE:
            # Inventory needs no NSX call: it runs while listing waits on the rate limit.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="inventory") as pool:
                inventory_started = self.clock()
                pending = pool.submit(carry_context(self.inventory))
                listings = self.list_routers(routers)
                inventories = pending.result()
        else:
            listings = self.list_routers(routers)
            inventory_started = self.clock()
            inventories = self.inventory()
        plan = judge(listings, inventories, self.config.policy, inventory_started)
        # The other direction: live nodes whose route is not where their CCM writes.
        plan = place(
            plan,
            nsx_host=self.config.nsx.host,
            now=inventory_started,
            min_age=self.config.policy.min_age,
        )
        by_cluster = Counter((m.cluster, m.expected_router) for m in plan.missing)
        for (cluster, router), count in by_cluster.items():
            log.warning("cluster.routes_missing", cluster=cluster, router=router, nodes=count)
        for c in plan.clusters:
            if c.flags:
                log.warning("cluster.flagged", cluster=c.name, flags=",".join(c.flags))
        for held_router, why in plan.limit_holds:
            log.warning("router.deletions_held", router=held_router, reason=why)
        return ScanResult(plan, started, self.clock())

    def list_routers(self, routers: Sequence[str]) -> list[RouterListing]:
        task = self.progress.task("routers listed", total=len(routers))

        def one(path: str) -> RouterListing:
            try:
                routes = self.routes.list_routes(path)
            except NsxAccessError:
                raise  # a refused login or an unreachable manager ends the run: no report
            except NsxError as exc:
                log.error("router.list_failed", router=path, error=str(exc))
                return RouterListing(path, (), error=str(exc))
            finally:
                task.advance()
            log.info("router.listed", router=path, routes=len(routes))
            return RouterListing(path, tuple(routes))

        # As many routers at once as the NSX client's adaptive limit lets calls be in flight
        # now (nsx.concurrency, growing up to nsx.max_concurrency on a slow manager).
        workers = max(1, min(nsx_threads(self.config), len(routers)))
        source = self.routes
        width = source.parallel_width if isinstance(source, Paced) else lambda: workers
        with collector_paused():
            return paced_map(
                carry_context(one),
                routers,
                width=width,
                max_workers=workers,
                thread_name_prefix="router",
            )

    def inventory(self) -> list[ClusterInventory]:
        configured = self.clusters.inventory(self.config.clusters)
        found = self.discovery.discover(configured) if self.discovery else []
        names = {c.name for c in configured}
        merged = configured + [c for c in found if c.name not in names]
        names |= {c.name for c in found}
        retired = [
            ClusterInventory(
                name=r.name,
                source="retired_clusters",
                status=ClusterStatus.RETIRED,
                pod_cidrs=r.pod_cidrs,
                evidence="declared in retired_clusters",
            )
            for r in self.config.retired_clusters
            if r.name not in names
        ]
        return merged + retired
