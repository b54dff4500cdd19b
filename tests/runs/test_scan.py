"""Scan orchestration with fakes for the NSX and Kubernetes adapters."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from factories import NOW, T1, ccm_route, foreign_route, node
from nsx_route_gc.config import ClusterConfig, Config, NsxSettings, RetiredCluster
from nsx_route_gc.errors import NsxError
from nsx_route_gc.models import Action, ClusterInventory, ClusterStatus, Policy, Route, Verdict
from nsx_route_gc.runs.scan import OVERLAP_MIN_AGE, Scanner

UID1 = "11111111-0000-4000-8000-000000000001"
UID2 = "22222222-0000-4000-8000-000000000002"
OTHER = "/infra/tier-1s/other"


class FakeNsx:
    def __init__(
        self, routes: dict[str, list[Route]], failing: frozenset[str] = frozenset()
    ) -> None:
        self.routes = routes
        self.failing = failing
        self.calls: list[str] = []

    def list_routers(self) -> list[str]:
        self.calls.append("routers")
        return sorted(self.routes)

    def list_routes(self, router_path: str) -> list[Route]:
        self.calls.append(f"routes {router_path}")
        if router_path in self.failing:
            raise NsxError(f"NSX GET {router_path} failed: 500")
        return self.routes[router_path]


class FakeInventory:
    def __init__(self, nsx: FakeNsx, result: list[ClusterInventory]) -> None:
        self.nsx = nsx
        self.result = result

    def inventory(self, clusters: Sequence[ClusterConfig]) -> list[ClusterInventory]:
        self.nsx.calls.append("nodes")
        return self.result


def config(min_age: timedelta = timedelta(hours=1)) -> Config:
    nsx = NsxSettings(base_url="https://nsx", routers=())
    return Config(
        nsx=nsx,
        clusters=(ClusterConfig("cl2", Path("k")),),
        retired_clusters=(RetiredCluster("cl1", ("172.16.136.0/21",)),),
        policy=Policy(min_age=min_age),
    )


def test_short_grace_period_lists_routes_before_nodes_and_failed_router_is_not_judged() -> None:
    live = ccm_route(UID2, "172.16.144.0/24", "172.16.128.20")
    nsx = FakeNsx(
        {
            T1: [ccm_route(UID1, "172.16.136.0/24", "172.16.128.63"), live, foreign_route()],
            OTHER: [ccm_route(UID1, "172.16.137.0/24", "172.16.128.64", router=OTHER)],
        },
        failing=frozenset({OTHER}),
    )
    inv = FakeInventory(
        nsx,
        [
            ClusterInventory(
                "cl2", "config", ClusterStatus.OK, (node(UID2, "172.16.144.0/24", "172.16.128.20"),)
            )
        ],
    )
    short = OVERLAP_MIN_AGE - timedelta(seconds=1)
    result = Scanner(config(short), nsx, inv, clock=lambda: NOW).scan()
    assert nsx.calls.index("nodes") > max(
        i for i, c in enumerate(nsx.calls) if c.startswith("routes")
    )
    assert [v.verdict for v in result.plan.verdicts] == [
        Verdict.ORPHANED,
        Verdict.LIVE,
        Verdict.FOREIGN,
    ]
    assert result.plan.verdicts[0].reason is not None
    assert result.plan.verdicts[0].reason.startswith("cluster-gone")
    assert [r.path for r in result.plan.routers if r.error] == [OTHER]
    assert any(OTHER in f for f in result.failures)


def test_failed_cluster_is_a_failure_of_the_run() -> None:
    nsx = FakeNsx({T1: [ccm_route(UID1, "172.16.144.0/24", "172.16.128.63")]})
    inv = FakeInventory(
        nsx,
        [
            ClusterInventory(
                "cl2", "config", ClusterStatus.FAILED, (), ("172.16.144.0/21",), "401 Unauthorized"
            )
        ],
    )
    result = Scanner(config(), nsx, inv, clock=lambda: NOW).scan()
    assert result.plan.verdicts[0].verdict is Verdict.UNVERIFIED
    assert result.failures == ["cluster cl2 not inventoried: 401 Unauthorized"]


def test_retired_cluster_also_discovered_is_not_retired() -> None:
    class Discovery:
        def discover(self, configured: Sequence[ClusterInventory]) -> list[ClusterInventory]:
            return [
                ClusterInventory(
                    "cl1", "cluster-api", ClusterStatus.DELETING, (), ("172.16.136.0/21",)
                )
            ]

    nsx = FakeNsx({T1: [ccm_route(UID1, "172.16.136.0/24", "172.16.128.63")]})
    inv = FakeInventory(
        nsx,
        [
            ClusterInventory(
                "cl2", "config", ClusterStatus.OK, (node(UID2, "172.16.144.0/24", "1.1.1.1"),)
            )
        ],
    )
    result = Scanner(config(), nsx, inv, discovery=Discovery(), clock=lambda: NOW).scan()
    assert [c.name for c in result.plan.clusters] == ["cl2", "cl1"]
    assert result.plan.verdicts[0].verdict is Verdict.UNVERIFIED


class BlockingNsx(FakeNsx):
    """Lists a router only once the inventory has begun: a scan that inventoried only after
    listing would wait here for ever (bounded by the timeout)."""

    def __init__(self, routes: dict[str, list[Route]], inventory_began: threading.Event) -> None:
        super().__init__(routes)
        self.inventory_began = inventory_began
        self.waited: list[bool] = []

    def list_routes(self, router_path: str) -> list[Route]:
        self.waited.append(self.inventory_began.wait(timeout=5))
        return super().list_routes(router_path)


class SignallingInventory(FakeInventory):
    def __init__(
        self, nsx: FakeNsx, result: list[ClusterInventory], began: threading.Event
    ) -> None:
        super().__init__(nsx, result)
        self.began = began

    def inventory(self, clusters: Sequence[ClusterConfig]) -> list[ClusterInventory]:
        self.began.set()
        return super().inventory(clusters)


def test_long_grace_period_inventories_while_routes_are_listed() -> None:
    began = threading.Event()
    nsx = BlockingNsx({T1: [ccm_route(UID1, "172.16.136.0/24", "172.16.128.63")]}, began)
    inv = SignallingInventory(nsx, [], began)
    result = Scanner(config(OVERLAP_MIN_AGE), nsx, inv, clock=lambda: NOW).scan()
    assert nsx.waited == [True]
    assert result.plan.verdicts[0].verdict is Verdict.ORPHANED


def test_grace_period_counts_to_the_start_of_the_inventory() -> None:
    """A route created after the inventory began may belong to a node that list missed: it
    is held, even though by the end of a long run it is older than min_age."""
    after_inventory = int((NOW + timedelta(seconds=1)).timestamp() * 1000)
    young = dataclasses.replace(
        ccm_route(UID1, "172.16.136.0/24", "172.16.128.63"), create_time_ms=after_inventory
    )
    old = ccm_route(UID1, "172.16.137.0/24", "172.16.128.64")
    nsx = FakeNsx({T1: [young, old]})
    inv = FakeInventory(nsx, [])

    def clock() -> datetime:
        # Listing the routes takes two hours.
        listed = any(c.startswith("routes") for c in nsx.calls)
        return NOW + (timedelta(hours=2) if listed else timedelta(0))

    result = Scanner(config(OVERLAP_MIN_AGE), nsx, inv, clock=clock).scan()
    by_network = {v.route.network: v for v in result.plan.verdicts}
    assert by_network["172.16.136.0/24"].verdict is Verdict.ORPHANED
    assert by_network["172.16.136.0/24"].action is Action.HELD
    assert (by_network["172.16.136.0/24"].hold_reason or "").startswith("grace-period")
    assert by_network["172.16.137.0/24"].action is Action.DELETE
