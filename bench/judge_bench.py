"""Judgement alone, no I/O: 100,000 routes against 20,000 nodes (the L scenario's data).

Time: the median of three runs, each with judgement's CIDR cache emptied first (a run of the
tool judges once, cold). Memory: a fourth run under tracemalloc, whose peak is what judgement
allocates on top of its inputs (the inputs are built before tracing starts).

    .venv/bin/python bench/judge_bench.py
"""

from __future__ import annotations

import gc
import json
import statistics
import time
import tracemalloc
from dataclasses import dataclass
from datetime import UTC, datetime

from nsx_route_gc import judge as judge_module
from nsx_route_gc.config import parse_duration
from nsx_route_gc.models import ClusterInventory, ClusterStatus, Node, Policy, Route, RouterListing
from nsx_route_gc.simulator import Scenario, scale_size
from nsx_route_gc.simulator.nsx_store import StoredRoute, render_route

RUNS = 3


@dataclass
class Result:
    routes: int
    nodes: int
    seconds: float
    runs: list[float]
    peak_mb: float
    verdicts: dict[str, int]

    def markdown(self) -> str:
        runs = ", ".join(f"{s:.3f}" for s in self.runs)
        verdicts = ", ".join(f"{k} {v:,}" for k, v in sorted(self.verdicts.items()))
        return (
            f"`judge()` on {self.routes:,} routes and {self.nodes:,} nodes: "
            f"**{self.seconds:.3f} s** (median of {len(self.runs)} cold runs: {runs} s), "
            f"peak traced memory **{self.peak_mb:.0f} MB** (tracemalloc, inputs excluded). "
            f"Verdicts: {verdicts}."
        )


def inputs(scenario: Scenario, now: datetime) -> tuple[list[RouterListing], list[ClusterInventory]]:
    """The scenario as the tool would hold it after listing and inventory."""
    now_ms = int(now.timestamp() * 1000)
    by_router: dict[str, list[Route]] = {t: [] for t in scenario.tier1s}
    for r in scenario.routes:
        created = now_ms - r.age_ms
        stored = StoredRoute.of(r, created_ms=created, serial=0)
        body = render_route(r.router, stored)
        by_router[r.router].append(
            Route(
                router_path=r.router,
                id=r.id,
                path=body["path"],
                network=r.network,
                next_hops=r.next_hops,
                tags=r.tags,
                create_time_ms=created,
                revision=r.revision,
                protection=r.protection,
                display_name=body["display_name"],
                raw=json.dumps(body, separators=(",", ":"), sort_keys=True),
            )
        )
    listings = [RouterListing(path, tuple(routes)) for path, routes in by_router.items()]
    clusters = [
        ClusterInventory(
            name=c.name,
            source="config",
            status=ClusterStatus.OK,
            nodes=tuple(
                Node(n.uid.lower(), n.name, n.pod_cidrs, n.internal_ips + n.external_ips)
                for n in c.nodes
            ),
            pod_cidrs=c.pod_cidrs,
        )
        for c in scenario.clusters
    ]
    clusters += [
        ClusterInventory(r.name, "retired_clusters", ClusterStatus.RETIRED, pod_cidrs=r.pod_cidrs)
        for r in scenario.retired
    ]
    return listings, clusters


def policy_of(scenario: Scenario) -> Policy:
    p = scenario.policy
    return Policy(
        min_age=parse_duration(p.get("min_age", "1h")),
        max_deletes=int(p.get("max_deletes", 100)),
        max_delete_percent=float(p.get("max_delete_percent", 50)),
    )


def clear_caches() -> None:
    """Empty judgement's parse caches (whichever it has), so that each run starts cold."""
    for name in ("_net", "_addr"):
        cache_clear = getattr(getattr(judge_module, name, None), "cache_clear", None)
        if cache_clear is not None:
            cache_clear()


def measure(size: str = "L") -> Result:
    scenario = scale_size(size)
    now = datetime.now(UTC)
    listings, clusters = inputs(scenario, now)
    policy = policy_of(scenario)
    runs = []
    plan = None
    for _ in range(RUNS):
        clear_caches()
        gc.collect()
        started = time.perf_counter()
        plan = judge_module.judge(listings, clusters, policy, now)
        runs.append(time.perf_counter() - started)
        del plan
    clear_caches()
    gc.collect()
    tracemalloc.start()
    plan = judge_module.judge(listings, clusters, policy, now)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    verdicts: dict[str, int] = {}
    for v in plan.verdicts:
        verdicts[v.verdict.value] = verdicts.get(v.verdict.value, 0) + 1
    return Result(
        routes=len(scenario.routes),
        nodes=sum(len(c.nodes) for c in scenario.clusters),
        seconds=statistics.median(runs),
        runs=runs,
        peak_mb=peak / 1024 / 1024,
        verdicts=verdicts,
    )


if __name__ == "__main__":
    print(measure().markdown())
