"""``explain`` through the CLI: from a fresh scan of the simulator and from a saved report."""

from __future__ import annotations

from pathlib import Path

from applykit import CL1_IDS, T1, cli_run, simulated

CL1_A = sorted(CL1_IDS)[0]  # 52de86ee-..._172.16.136.0_24


def test_an_orphan_is_explained_with_every_piece_of_evidence(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        env.sim.nsx.reset_counters()
        code, out, err = cli_run("explain", "--config", str(env.config_path), CL1_A)
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0] == f"Route {CL1_A} on {T1}"
        assert "Ownership: managed: a cluster-name tag and a CCM id <node uid>_<pod CIDR>" in lines
        node = next(x for x in lines if x.startswith("Node: "))
        assert "searched for in the inventoried clusters (cl2): not found" in node
        assert "Clusters whose pod CIDRs contain it: cl1 (172.16.136.0/21)" in lines
        assert (
            "Inventories: cl2 ok, 3 node(s); cl1 retired, 0 node(s) "
            "(declared in retired_clusters)" in lines
        )
        assert "Verdict: orphaned: cluster-gone: cluster cl1 is retired" in out
        assert "  grace period: min_age 1h; " in out
        assert "  protection tag: scopes nsx-route-gc/keep; carries none -> passes" in lines
        assert "  limits: max_deletes 100, max_delete_percent 50%: within -> passes" in lines
        assert lines[-1] == "Action: delete"
        assert env.sim.nsx.counters.get("nsx_delete", 0) == 0
        assert env.sim.nsx.counters.get("nsx_hierarchical", 0) == 0


def test_a_path_scans_only_its_router_and_a_live_route_names_its_node(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        live = "4e3c2e21-93ed-592e-8dd3-0733cf10ebd8_172.16.144.0_24"
        code, out, err = cli_run(
            "explain", "--config", str(env.config_path), f"{T1}/static-routes/{live}"
        )
        assert code == 0, err
        assert "is node cl2-control-plane-7xq2k of cluster cl2" in out
        assert "Verdict: live: node-live" in out
        assert "Guards: none apply (only orphaned routes are ever deleted)" in out


def test_a_held_route_shows_the_guard_that_held_it_from_a_saved_report(tmp_path: Path) -> None:
    with simulated(tmp_path, "young") as env:
        cli_run("scan", "--config", str(env.config_path), "--report-dir", str(tmp_path / "s"))
        report = str(tmp_path / "s" / "report.json")
        code, out, err = cli_run("explain", "--from", report, "172.16.147.0/24")
        assert code == 0, err
        held = [block for block in out.split("\n\n") if "grace-period" in block]
        assert held, out
        assert "  grace period: min_age " in held[0]
        assert "-> HOLDS" in held[0]
        assert "Action: held: grace-period" in held[0]


def test_an_unknown_route_or_no_source_is_a_usage_error(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        code, _, err = cli_run("explain", "--config", str(env.config_path), "no-such-route")
        assert code == 2
        assert "no route 'no-such-route' in the scan" in err
        code, _, err = cli_run("explain", CL1_A)
        assert code == 2
        assert "give one of --config FILE and --from FILE" in err
