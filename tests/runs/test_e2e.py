"""End to end: the CLI as a subprocess against the simulator, one test per scenario."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from nsx_route_gc.simulator import Simulator, load_scenario

# Exit codes a correct scan gives; every other scenario completes with 0. In `shadow` three of
# the router's five managed routes are orphaned: over max_delete_percent, so all are held.
EXIT_CODES = {"unreachable-cluster": 1, "shadow": 1}
SCENARIOS = [
    "seed",
    "seed-unretired",
    "stale-next-hop",
    "shadow",
    "conflict",
    "unreachable-cluster",
    "project",
    "young",
    "principal",
    "ipv6",
    "management",
    "tkg",
    "tkg-cert",
    "scale-s",
]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NSXT_", "NSX_ROUTE_GC_"))}
    return subprocess.run(
        [sys.executable, "-m", "nsx_route_gc", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("name", SCENARIOS)
def test_scan_scenario(name: str, tmp_path: Path) -> None:
    scenario = load_scenario(name)
    with Simulator(scenario) as sim:
        config = sim.write_config(tmp_path / "sim")
        # The tkg scenarios: the NSX settings come from TKG cluster configuration files alone.
        tkg = [a for f in sim.tkg_config_files(tmp_path / "sim") for a in ("--tkg-config", str(f))]
        result = cli(
            "--log-format",
            "json",
            "scan",
            "--config",
            str(config),
            *tkg,
            "--report-dir",
            str(tmp_path / "r"),
        )
        deletes = sim.nsx.counters.get("nsx_delete", 0) + sim.nsx.counters.get(
            "nsx_hierarchical", 0
        )
    assert result.returncode == EXIT_CODES.get(name, 0), result.stderr[-2000:]
    report = json.loads((tmp_path / "r/report.json").read_text())
    found = {k: v for k, v in report["summary"]["verdicts"].items() if v}
    assert found == scenario.expected
    assert deletes == 0
    log_lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert log_lines[-1]["event"] == "run.summary"
    assert {
        entry.get("run_id") for entry in log_lines if entry["logger"].startswith("nsx_route_gc")
    } == {report["run_id"]}


def test_management_cluster_memory_retires_a_deleted_cluster_across_runs(tmp_path: Path) -> None:
    """Discovery finds the workload clusters through Cluster API; a cluster deleted between
    runs is remembered, and once gone longer than cluster_gone_after its routes are orphaned."""
    with Simulator(load_scenario("management")) as sim:
        config = sim.write_config(tmp_path / "sim")
        data = yaml.safe_load(config.read_text())
        data["policy"].update(cluster_gone_after="2s", max_delete_percent=100)
        config.write_text(yaml.safe_dump(data))

        def scan(run: str) -> dict[str, object]:
            result = cli(
                "--log-format",
                "json",
                "scan",
                "--config",
                str(config),
                "--report-dir",
                str(tmp_path / run),
            )
            assert result.returncode == 0, result.stderr[-2000:]
            for line in result.stderr.splitlines():
                json.loads(line)  # every log line is JSON
            report: dict[str, object] = json.loads((tmp_path / run / "report.json").read_text())
            return report

        first = scan("1")
        assert {c["name"]: c["status"] for c in first["clusters"]} == {"wl1": "ok", "wl2": "ok"}
        sim.delete_workload_cluster("wl1")
        second = scan("2")  # noticed missing: its routes are nobody's yet
        assert second["summary"]["verdicts"]["unattributed"] == 2
        time.sleep(2.5)  # longer than cluster_gone_after
        third = scan("3")
    statuses = {c["name"]: c["status"] for c in third["clusters"]}
    assert statuses == {"wl1": "retired", "wl2": "ok"}
    gone = [r for r in third["routes"] if (r["reason"] or "").startswith("cluster-gone")]
    assert len(gone) == 2
    assert all(r["action"] == "delete" for r in gone)


def test_simulate_tkg_prints_the_scan_with_its_tkg_files(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NSXT_", "NSX_ROUTE_GC_"))}
    command = ["simulate", "--scenario", "tkg", "--dir", str(tmp_path)]
    with subprocess.Popen(
        [sys.executable, "-m", "nsx_route_gc", "--log-format", "json", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    ) as process:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(2)]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) in (0, 130)  # Ctrl-C ends it
    directory = tmp_path.resolve()
    assert lines[1].split() == [
        "Try:",
        "nsx-route-gc",
        "scan",
        "--config",
        str(directory / "config.yaml"),
        "--tkg-config",
        str(directory / "tkg-cl1.yaml"),
        "--tkg-config",
        str(directory / "tkg-cl2.yaml"),
        "--report-dir",
        f"{tmp_path}/reports",
    ]
