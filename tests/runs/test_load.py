"""Issue 11 end to end, on the simulator: the least load on the manager, and fast on a slow one.

The real CLI code paths (``run_scan``, ``run_apply``) with the real NsxClient over HTTPS; the
simulator adds latency and answers 503 beyond its in-flight limit.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from applykit import Env, client, simulated
from structlog.testing import capture_logs

from nsx_route_gc.config import Config
from nsx_route_gc.runs import frame as app
from nsx_route_gc.simulator import scale


def with_nsx(config: Config, **settings: Any) -> Config:
    return replace(config, nsx=replace(config.nsx, **settings))


def changes(logs: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    return [(e["from"], e["to"], e["why"]) for e in logs if e["event"] == "nsx.concurrency.changed"]


def summary(logs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in logs if e["event"] == "run.summary")


def scan(env: Env, config: Config) -> app.Outcome:
    return app.run_scan(config, report_dir=env.tmp / "scan", nsx_factory=client)


def test_a_slow_manager_gets_more_calls_in_flight_up_to_the_maximum(tmp_path: Path) -> None:
    scenario = scale(routers=40, routes=400, clusters=4, nodes_per_cluster=5)
    with simulated(tmp_path, scenario) as env:
        env.sim.nsx.set_knobs(latency=0.2)
        config = with_nsx(env.config, concurrency=2, max_concurrency=8)
        with capture_logs() as logs:
            outcome = scan(env, config)

        assert outcome.exit_code == 0, outcome.error
        # Doubling per round trip while answers are slow, never past nsx.max_concurrency.
        assert changes(logs) == [(n, n + 1, "slow-answers") for n in range(2, 8)]
        assert summary(logs)["nsx_concurrency_peak"] == 8


def test_a_fast_manager_keeps_the_configured_width(tmp_path: Path) -> None:
    scenario = scale(routers=40, routes=400, clusters=4, nodes_per_cluster=5)
    with simulated(tmp_path, scenario) as env:
        with capture_logs() as logs:
            outcome = scan(env, with_nsx(env.config, concurrency=2, max_concurrency=8))

        assert outcome.exit_code == 0, outcome.error
        # Answers in milliseconds: 2 in flight already reach the token bucket's 90/s.
        assert changes(logs) == []
        assert summary(logs)["nsx_concurrency_peak"] == 2


def test_503_beyond_the_managers_in_flight_limit_halves_and_the_run_succeeds(
    tmp_path: Path,
) -> None:
    scenario = scale(routers=40, routes=400, clusters=4, nodes_per_cluster=5)
    with simulated(tmp_path, scenario) as env:
        env.sim.nsx.set_knobs(latency=0.15, concurrency_limit=4)
        config = with_nsx(env.config, concurrency=3, max_concurrency=16)
        with capture_logs() as logs:
            outcome = scan(env, config)

        assert outcome.exit_code == 0, outcome.error
        assert env.sim.nsx.counters["503"] >= 1
        seen = changes(logs)
        first_503 = next(i for i, c in enumerate(seen) if c[2] == "503")
        assert seen[first_503][1] == seen[first_503][0] // 2
        assert all(c[1] > c[0] for c in seen[:first_503])
        # After the first 503, growth is one per round trip: never a jump.
        assert all(c[1] - c[0] == 1 for c in seen[first_503:] if c[2] == "slow-answers")
        assert outcome.report is not None
        assert outcome.report["nsx"]["router_errors"] == []


def test_apply_batches_across_routers_and_confirms_with_a_few_searches(tmp_path: Path) -> None:
    """60 Tier-1s with orphans on every one: 1 hierarchical delete per 1,000 deletions across
    routers, not one per router, and searches instead of 60 confirmation listings."""
    scenario = scale(routers=60, routes=6000, clusters=60, nodes_per_cluster=10)
    with simulated(tmp_path, scenario) as env:
        env.sim.nsx.reset_counters()
        outcome = env.apply()

        assert outcome.exit_code == 0, outcome.error
        assert outcome.report is not None
        deleted = outcome.report["apply"]["deleted"]
        assert deleted == scenario.expected["orphaned"] == 600
        routers = {r["router_path"] for r in outcome.report["routes"] if r["action"] == "deleted"}
        assert len(routers) == 60
        counters = env.sim.nsx.counters
        assert counters["nsx_hierarchical"] == math.ceil(deleted / 1000)
        assert counters["nsx_list_routes"] == 60  # the scan's listing, no confirmation listing
        # One count of what is left on the 60 routers (they fit one query), no page.
        assert counters["nsx_search"] == 1
        assert counters["nsx_get"] == counters["nsx_delete"] == 0


def test_configured_routers_cost_no_tier1_or_project_listing(tmp_path: Path) -> None:
    scenario = scale(routers=6, routes=600, clusters=6, nodes_per_cluster=10)
    scenario.config_routers = list(scenario.tier1s[:4])
    with simulated(tmp_path, scenario) as env:
        env.sim.nsx.reset_counters()
        outcome = env.apply()

        assert outcome.exit_code == 0, outcome.error
        counters = env.sim.nsx.counters
        assert counters["nsx_list_tier1s"] == counters["nsx_list_projects"] == 0
        assert counters["nsx_list_routes"] == 4
        assert counters["nsx_hierarchical"] == 1
        # Login and logout: the logout frees the manager's session.
        assert counters["nsx_session"] == counters["nsx_session_destroy"] == 1


def test_confirmation_pages_through_real_search_paging(tmp_path: Path) -> None:
    """Pages of 100, an index that has not taken in the deletions: the count is over, so
    each confirming query takes several pages, ``result_count`` comes on the first page only
    and the last page carries a 0000 cursor, as on a real manager; the pages show the
    deleted routes, so each router is listed again, and every deletion is still confirmed."""
    scenario = scale(routers=20, routes=2000, clusters=20, nodes_per_cluster=10)
    with simulated(tmp_path, scenario) as env:
        env.sim.nsx.set_knobs(search_count_every_page=False, null_cursor=True)
        env.sim.nsx.freeze_search_index()
        config = with_nsx(env.config, page_size=100)
        pages = sum(math.ceil(env.sim.nsx.route_count(r) / 100) for r in scenario.tier1s)
        env.sim.nsx.reset_counters()
        with capture_logs() as logs:
            outcome = env.apply(config=config)

        assert outcome.exit_code == 0, outcome.error
        assert outcome.report is not None
        assert outcome.report["apply"]["deleted"] == 200
        counters = env.sim.nsx.counters
        left = sum(math.ceil(env.sim.nsx.route_count(r) / 100) for r in scenario.tier1s)
        assert counters["nsx_list_routes"] == pages + left  # the scan's listing, then again
        # One count, then the 2,000 routes the stale index holds in pages of 100, a few
        # queries side by side.
        assert 1 + 2000 // 100 <= counters["nsx_search"] <= 1 + 2000 // 100 + 20
        events = [e["event"] for e in logs]
        assert "routes.confirm_count_differs" in events
        assert "router.confirm_search_shows" in events
        assert not [e for e in logs if e["event"] == "router.confirm_search_untrusted"]
