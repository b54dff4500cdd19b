"""The benchmark's minimum and time bound (bench/run.py) give issue 11's figures for its
slow-manager run: 206 calls, about 3 s for scan and 4 s for apply."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

from nsx_route_gc.simulator import scale_size

BENCH = Path(__file__).resolve().parents[1] / "bench"


def bench() -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_run"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def test_the_slow_manager_bounds_are_the_issues() -> None:
    run = bench()
    scenario = scale_size("W")
    scan = run.scan_bound(scenario, 0.5, 100.0, 40)
    deletions = Counter({router: 25 for router in scenario.tier1s})  # 5,000 in all
    apply = run.apply_bound(scan, deletions)

    assert (scan.nsx_calls, apply.nsx_calls) == (201, 206)  # 200 pages, 1 Tier-1 list, 5
    # 200 pages at 40 in flight (2.5 s) beat 100/s (2 s); a round trip for the Tier-1 list.
    assert scan.seconds == 3.0
    # Then 5 batches in one round trip, and one for the confirmation.
    assert apply.seconds == 4.0


def test_at_20_ms_the_rate_limit_is_the_bound() -> None:
    run = bench()
    scan = run.scan_bound(scale_size("W"), 0.02, 100.0, 40)
    assert scan.seconds == 200 / 100 + 0.02


def test_runs_parse_size_at_latency() -> None:
    assert bench().parse_runs("S,m,W@0.5", 0.02) == [("S", 0.02), ("M", 0.02), ("W", 0.5)]
