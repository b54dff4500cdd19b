"""End to end: the CLI as a subprocess against the simulator, one test per scenario."""

from __future__ import annotations

import base64
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
    "vmc",
    "missing-route",
    "scale-s",
]


def cli(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NSXT_", "NSX_ROUTE_GC_"))}
    env.update(extra_env or {})
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
            extra_env=sim.client_env(tmp_path / "sim"),
        )
        deletes = sim.nsx.counters.get("nsx_delete", 0) + sim.nsx.counters.get(
            "nsx_hierarchical", 0
        )
    assert result.returncode == EXIT_CODES.get(name, 0), result.stderr[-2000:]
    report = json.loads((tmp_path / "r/report.json").read_text())
    found = {k: v for k, v in report["summary"]["verdicts"].items() if v}
    assert found == scenario.expected
    missing = [m["node"] for m in report["nodes_without_route"]]
    assert missing == list(scenario.expected_missing)
    assert report["summary"]["misplaced_routes"] == scenario.expected_misplaced
    assert sum(1 for r in report["routes"] if r["misplaced"]) == scenario.expected_misplaced
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
    # The deleted cluster's router is still known, from the memory.
    wl1 = next(c for c in third["clusters"] if c["name"] == "wl1")
    assert wl1["router_path"] == "/infra/tier-1s/tanzu-cl1"
    assert "remembered by" in wl1["ccm_source"]
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


# --- issue 10: the manager as it really answers ---------------------------------------------


def run_json(
    *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return cli("--log-format", "json", *args, extra_env=extra_env)


def test_a_vmc_configuration_scans_and_applies(tmp_path: Path) -> None:
    """auth: vmc through the reverse proxy path, the CSP token from the simulator's auth host
    (trusted through REQUESTS_CA_BUNDLE, as the system trust store would be), no projects."""
    with Simulator(load_scenario("vmc")) as sim:
        config = sim.write_config(tmp_path / "sim")
        env = sim.client_env(tmp_path / "sim")
        scan = run_json("scan", "--config", str(config), "--report-dir", str(tmp_path / "scan"),
                        extra_env=env)  # fmt: skip
        assert scan.returncode == 0, scan.stderr[-2000:]
        plan = tmp_path / "scan" / "report.json"
        apply = run_json("apply", "--config", str(config), "--plan", str(plan), "--yes",
                         "--report-dir", str(tmp_path / "apply"), extra_env=env)  # fmt: skip
        counters = dict(sim.nsx.counters)
        remaining = {r["id"] for r in sim.nsx.routes("/infra/tier-1s/cgw")}
        token = sim.nsx.vmc.refresh_token if sim.nsx.vmc else ""
    assert apply.returncode == 0, apply.stderr[-2000:]
    report = json.loads((tmp_path / "apply" / "report.json").read_text())
    assert report["summary"]["actions"]["deleted"] == 3
    assert len(remaining) == 5
    assert counters["csp_token"] == 2  # one exchange a run
    assert counters.get("csp_token_refused", 0) == 0
    assert counters.get("nsx_session", 0) == 0  # no session login through the proxy
    assert counters["nsx_list_projects"] == 1  # scan discovered; 403 there: no projects
    for text in (scan.stderr, apply.stderr, apply.stdout, json.dumps(report)):
        assert token not in text


def test_two_transaction_aborts_on_a_listing_cost_nothing(tmp_path: Path) -> None:
    with Simulator(load_scenario("seed")) as sim:
        config = sim.write_config(tmp_path / "sim")
        sim.nsx.fail_next("nsx_list_routes", 2, status=500, error_code=607)
        result = run_json("scan", "--config", str(config), "--report-dir", str(tmp_path / "r"))
        counters = dict(sim.nsx.counters)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert {k: v for k, v in report["summary"]["verdicts"].items() if v} == {
        "orphaned": 3,
        "live": 3,
        "foreign": 2,
    }
    assert report["nsx"]["router_errors"] == []
    assert counters["injected_500"] == 2
    assert counters["nsx_list_routes"] == 3


@pytest.mark.parametrize("auth", ["session", "basic"])
def test_a_wrong_password_makes_one_login_attempt_a_run(tmp_path: Path, auth: str) -> None:
    scenario = load_scenario("seed")
    routers = [f"/infra/tier-1s/tanzu-cl{n}" for n in range(1, 11)]
    scenario.tier1s = routers
    scenario.config_routers = routers
    with Simulator(scenario) as sim:
        config = sim.write_config(tmp_path / "sim")
        text = config.read_text().replace("auth: session", f"auth: {auth}")
        config.write_text(text)
        (tmp_path / "sim" / "nsx-password").write_text("not-the-password\n")
        result = run_json("scan", "--config", str(config), "--report-dir", str(tmp_path / "r"))
        counters = dict(sim.nsx.counters)
    assert result.returncode == 1
    assert not (tmp_path / "r" / "report.json").exists()  # no report of routes
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("nsx-route-gc: error: NSX at ")
    assert "check nsx.username (NSXT_USERNAME) and its password" in error
    assert "nsx.password_file or NSXT_PASSWORD" in error
    assert counters["nsx_login_failed"] == 1
    assert counters.get("nsx_session", 0) == (1 if auth == "session" else 0)
    # Basic auth: the first call is the login, and no other call follows it.
    assert counters.get("nsx_list_routes", 0) == (0 if auth == "session" else 1)


def test_scan_then_apply_confirms_deletions_with_search_not_listings(tmp_path: Path) -> None:
    """The default grace period (1h): the deleted routes were indexed long ago, so the
    search vouches for them: one count of what is left, at page size 1."""
    with Simulator(load_scenario("seed")) as sim:
        config = sim.write_config(tmp_path / "sim")
        config.write_text(
            config.read_text().replace("  auth: session", "  page_size: 2\n  auth: session")
        )
        assert "min_age: 1h" in config.read_text()
        scan = run_json("scan", "--config", str(config), "--report-dir", str(tmp_path / "scan"))
        assert scan.returncode == 0, scan.stderr[-2000:]
        sim.nsx.reset_counters()
        plan = tmp_path / "scan" / "report.json"
        apply = run_json("apply", "--config", str(config), "--plan", str(plan), "--yes",
                         "--report-dir", str(tmp_path / "apply"))  # fmt: skip
        counters = dict(sim.nsx.counters)
    assert apply.returncode == 0, apply.stderr[-2000:]
    report = json.loads((tmp_path / "apply" / "report.json").read_text())
    assert report["summary"]["actions"]["deleted"] == 3
    assert {r["note"] for r in report["routes"] if r["action"] == "deleted"} == {
        "deleted: confirmed gone"
    }
    # 8 routes in pages of 2: the apply's own listing; the 5 left are counted in one search.
    assert counters["nsx_list_routes"] == 4
    assert counters["nsx_search"] == 1
    assert counters["nsx_hierarchical"] == 1
    assert counters.get("nsx_get", 0) == counters.get("nsx_delete", 0) == 0
    events = [json.loads(line)["event"] for line in apply.stderr.splitlines()]
    assert "routes.confirm_counted" in events
    assert "router.confirm_search_untrusted" not in events
    assert "routes.confirm_search_failed" not in events


def test_a_stale_index_makes_apply_page_the_search_then_list(tmp_path: Path) -> None:
    """The index has not taken in the deletions: the count is over, the search pages (whose
    later ones carry no result_count) show the deleted routes, their routers are listed."""
    with Simulator(load_scenario("seed")) as sim:
        config = sim.write_config(tmp_path / "sim")
        config.write_text(
            config.read_text().replace("  auth: session", "  page_size: 2\n  auth: session")
        )
        sim.nsx.freeze_search_index()
        apply = run_json("apply", "--config", str(config), "--yes",
                         "--report-dir", str(tmp_path / "apply"))  # fmt: skip
        counters = dict(sim.nsx.counters)
    assert apply.returncode == 0, apply.stderr[-2000:]
    report = json.loads((tmp_path / "apply" / "report.json").read_text())
    assert report["summary"]["actions"]["deleted"] == 3
    events = [json.loads(line)["event"] for line in apply.stderr.splitlines()]
    assert "routes.confirm_count_differs" in events
    assert "router.confirm_search_shows" in events
    assert "routes.confirm_counted" not in events
    # 4 pages of the 8 routes the stale index holds, after the count.
    assert counters["nsx_search"] == 5
    assert counters["nsx_list_routes"] > 4


def test_a_tkg_file_of_a_vmc_cluster_alone_scans(tmp_path: Path) -> None:
    """TKG on VMC: the file's NSXT_VMC_ACCESS_TOKEN and NSXT_VMC_AUTH_HOST reach auth: vmc
    (the environment names the TKG reader maps them to), the CA from NSXT_ROOT_CA_DATA_B64;
    the configuration file has no nsx: at all."""
    with Simulator(load_scenario("vmc")) as sim:
        config = sim.write_config(tmp_path / "sim")
        data = yaml.safe_load(config.read_text())
        del data["nsx"]
        config.write_text(yaml.safe_dump(data))
        assert sim.nsx.vmc is not None
        tkg = tmp_path / "tkg-cl2.yaml"
        tkg.write_text(
            yaml.safe_dump(
                {
                    "CLUSTER_NAME": "cl2",
                    "CLUSTER_CIDR": "172.16.144.0/21",
                    "NSXT_POD_ROUTING_ENABLED": "true",
                    "NSXT_MANAGER_HOST": sim.nsx_host.removeprefix("https://"),
                    "NSXT_VMC_ACCESS_TOKEN": sim.nsx.vmc.refresh_token,
                    "NSXT_VMC_AUTH_HOST": sim.nsx_url.removeprefix("https://"),
                    "NSXT_ROOT_CA_DATA_B64": base64.b64encode(sim.ca_pem).decode(),
                    "NSXT_ROUTER_PATH": "/infra/tier-1s/cgw",
                }
            )
        )
        result = run_json("scan", "--config", str(config), "--tkg-config", str(tkg),
                          "--report-dir", str(tmp_path / "r"),
                          extra_env=sim.client_env(tmp_path / "sim"))  # fmt: skip
        counters = dict(sim.nsx.counters)
        token = sim.nsx.vmc.refresh_token
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert {k: v for k, v in report["summary"]["verdicts"].items() if v} == {
        "orphaned": 3,
        "live": 3,
        "foreign": 2,
    }
    assert counters == {"csp_token": 1, "nsx_list_routes": 1}
    assert token not in result.stderr


def test_missing_route_scenario_reports_the_node_and_every_clusters_router(
    tmp_path: Path,
) -> None:
    """Issue 14's "done when": one live node of cl2 has no route; the scan reports it missing
    with its expected router, and shows for every cluster the router its CCM uses."""
    with Simulator(load_scenario("missing-route")) as sim:
        config = sim.write_config(tmp_path / "sim")
        result = cli(
            "--log-format",
            "json",
            "scan",
            "--config",
            str(config),
            "--report-dir",
            str(tmp_path / "r"),
            "--detailed-exitcode",
        )
        host = sim.ccm_nsx_host
        password = sim.kube["cl5"].ccm_password  # written in cl5's vsphere.conf
    assert result.returncode == 0, result.stderr[-2000:]  # nothing to delete: not 3
    report = json.loads((tmp_path / "r/report.json").read_text())
    [missing] = report["nodes_without_route"]
    assert (missing["cluster"], missing["node"], missing["expected_router"]) == (
        "cl2",
        "cl2-md-0-6d8f9c7b5-n0rt3",
        "/infra/tier-1s/tanzu-cl1",
    )
    assert missing["missing_cidrs"] == ["172.16.147.0/24"]
    routers = {
        c["name"]: (c["pod_routing"], c["router_path"], c["nsx_host"], c["flags"])
        for c in report["clusters"]
    }
    assert routers == {
        "cl2": (True, "/infra/tier-1s/tanzu-cl1", host, []),
        "cl5": (True, "/infra/tier-1s/tanzu-cl5", host, []),
        "cl6": (None, None, None, ["ccm-settings-unknown"]),
        "cl9": (True, "/infra/tier-1s/tanzu-cl9", "nsx-b.example.com", ["other-manager"]),
    }
    misplaced = [r for r in report["routes"] if r["misplaced"]]
    assert {(r["router_path"], r["expected_router"], r["verdict"]) for r in misplaced} == {
        ("/infra/tier-1s/tanzu-cl1", "/infra/tier-1s/tanzu-cl5", "live")
    }
    assert "Nodes without their route: 1" in result.stdout
    assert "  cl2: /infra/tier-1s/tanzu-cl1 on " + host in result.stdout
    markdown = (tmp_path / "r/report.md").read_text()
    assert "## Nodes without their route" in markdown
    assert "## Cluster routers" in markdown
    summary = json.loads(result.stderr.splitlines()[-1])
    assert (summary["nodes_without_route"], summary["misplaced_routes"]) == (1, 2)
    everything = result.stdout + result.stderr
    everything += "".join(p.read_text() for p in (tmp_path / "r").iterdir())
    assert password not in everything
