"""The demo and the long-running simulator: the real scan against the bundled simulator."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nsx_route_gc.config import load_config
from nsx_route_gc.runs.frame import Outcome, run_scan
from nsx_route_gc.simulator import Simulator, load_scenario

DEMO_SCENARIO = "seed"


def run_demo(directory: Path, scenario: str = DEMO_SCENARIO) -> tuple[Outcome, Path]:
    """Start the scenario in-process, scan it over HTTPS, stop. Returns the outcome and config.

    The environment is deliberately not applied to the demo's configuration: an operator's
    NSXT_MANAGER_HOST must never point the demo at a real manager.
    """
    with Simulator(load_scenario(scenario)) as sim:
        config_path = sim.write_config(directory)
        config = load_config(config_path, {}).config
        outcome = run_scan(config, report_dir=directory / "reports")
    return outcome, config_path


def serve(scenario: str, directory: Path, on_ready: Callable[[Path, Simulator], None]) -> None:
    """Run the scenario until interrupted; ``on_ready`` is told where its configuration is."""
    with Simulator(load_scenario(scenario)) as sim:
        on_ready(sim.write_config(directory), sim)
        try:
            sim.wait()
        except KeyboardInterrupt:
            return
