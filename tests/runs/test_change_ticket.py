"""docs/change-ticket-workflow.md, step by step through the CLI against the simulator: scan,
review, apply --plan --plan-sha256, the evidence naming the approved digest, restore from
the report and from the log; --route, --router, --force, scan --router/--cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from applykit import CL1_IDS, T1, cli_run, simulated

CL1_A, CL1_B, CL1_C = sorted(CL1_IDS)
# The shadow scenario: cl1's routes for 172.16.136.0/24 and 172.16.137.0/24 black-hole
# cl3's traffic; 172.16.138.0/24 shadows nothing.
SHADOWING = {
    "52de86ee-0d71-535d-84b0-106dde42b993_172.16.136.0_24",
    "64aaf92e-84dc-58b8-9776-e11ba6c1303e_172.16.137.0_24",
}


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def test_scan_review_apply_evidence_restore(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        config = str(env.config_path)
        scan_dir = tmp_path / "CHG-1234" / "scan"
        # 1. Scan.
        code, out, err = cli_run("scan", "--config", config, "--report-dir", str(scan_dir))
        assert code == 0, err
        plan = load(scan_dir / "report.json")
        digest = plan["plan_sha256"]
        assert f"Plan SHA-256: {digest}" in out
        # 2. Review: report.md opens with what will happen and says how to apply exactly it.
        md = (scan_dir / "report.md").read_text()
        assert md.index("## What will happen") < md.index("## To be deleted (3)")
        assert "## Policy in force" in md
        command = plan["apply_command"]
        assert f"--plan {scan_dir / 'report.json'} --plan-sha256 {digest}" in command
        assert f"```sh\n{command}\n```" in md
        assert f"  {command}" in out
        # 3. Another digest than the approved one: refused, nothing sent.
        env.sim.nsx.reset_counters()
        apply_dir = tmp_path / "CHG-1234" / "apply"
        base = ["apply", "--config", config, "--plan", str(scan_dir / "report.json"), "--yes"]
        code, _, err = cli_run(*base, "--plan-sha256", "0" * 64, "--report-dir", str(apply_dir))
        assert code == 2
        assert f"is not the approved --plan-sha256 {'0' * 64}" in err
        assert sum(env.sim.nsx.counters.values()) == 0
        assert env.route_ids() >= CL1_IDS
        # 4. The approved digest: exactly the plan is applied.
        code, out, err = cli_run(
            *base, "--plan-sha256", digest.upper(), "--report-dir", str(apply_dir), "--force"
        )
        assert code == 0, err
        assert not env.route_ids() & CL1_IDS
        # 5. The evidence names the approved plan and digest beside its own.
        evidence = load(apply_dir / "report.json")
        assert evidence["apply"]["approved_sha256"] == digest
        assert evidence["apply"]["plan_sha256"] == digest
        assert evidence["apply"]["deleted_sha256"] == digest
        evidence_md = (apply_dir / "report.md").read_text()
        assert f"- **Approved plan:** `{scan_dir / 'report.json'}`" in evidence_md
        assert f"- **Approved plan SHA-256:** `{digest} (equal to --plan-sha256)`" in evidence_md
        assert f"- **Deleted SHA-256:** `{digest} (equal to the approved plan's" in evidence_md
        assert f"Approved plan SHA-256: {digest} (equal to --plan-sha256)" in out
        assert "Deleted (3):" in out
        # 6. Restore from the report.
        code, _, err = cli_run(
            "restore", "--config", config, "--from", str(apply_dir), "--yes",
            "--report-dir", str(tmp_path / "CHG-1234" / "restore"),
        )  # fmt: skip
        assert code == 0, err
        assert env.route_ids() >= CL1_IDS


def test_a_second_scan_never_overwrites_the_approved_plan_without_force(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        scan = ["scan", "--config", str(env.config_path), "--report-dir", str(tmp_path / "s")]
        assert cli_run(*scan)[0] == 0
        approved = (tmp_path / "s" / "report.json").read_bytes()
        code, _, err = cli_run(*scan)
        assert code == 2
        assert "holds report.json of an earlier run" in err
        assert "--force" in err
        assert (tmp_path / "s" / "report.json").read_bytes() == approved
        assert cli_run(*scan, "--force")[0] == 0
        # --keep-runs writes each run into a new directory: no --force needed.
        kept = [*scan, "--keep-runs", "5"]
        assert cli_run(*kept)[0] == 0
        assert cli_run(*kept)[0] == 0
        assert len(list((tmp_path / "s").glob("run-*"))) == 2


def test_only_the_two_shadowing_routes_are_approved_and_deleted(tmp_path: Path) -> None:
    with simulated(tmp_path, "shadow") as env:
        config = str(env.config_path)
        code, out, _ = cli_run("scan", "--config", config, "--report-dir", str(tmp_path / "s"))
        assert code == 1  # the per-router limit holds all three
        assert out.count("[HIGH] ") == 2
        assert "max-delete-percent" in out
        plan = tmp_path / "s" / "report.json"
        digest = load(plan)["plan_sha256"]
        args = ["apply", "--config", config, "--plan", str(plan), "--plan-sha256", digest]
        targets = [x for rid in sorted(SHADOWING) for x in ("--route", rid)]
        code, out, err = cli_run(*args, *targets, "--yes", "--report-dir", str(tmp_path / "a"))
        assert code == 0, err + out
        gone = {rid for rid in CL1_IDS | SHADOWING if rid not in env.route_ids()}
        assert gone == SHADOWING
        report = load(tmp_path / "a" / "report.json")
        assert report["apply"]["targeted"] == sorted(SHADOWING)
        rows = {r["id"]: r for r in report["routes"]}
        (left,) = {r for r in rows if r.endswith("172.16.138.0_24")}
        assert rows[left]["action"] == "held"
        assert rows[left]["hold_reason"].startswith("not-targeted")
        assert "Only: " in out


def test_route_and_router_must_be_in_the_plan(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        config = str(env.config_path)
        cli_run("scan", "--config", config, "--report-dir", str(tmp_path / "s"))
        plan = str(tmp_path / "s" / "report.json")
        base = ["apply", "--config", config, "--plan", plan, "--yes"]
        code, _, err = cli_run(*base, "--route", "no-such-route")
        assert code == 2
        assert "--route no-such-route is not a deletion of this plan" in err
        code, _, err = cli_run(*base, "--router", "/infra/tier-1s/other")
        assert code == 2
        assert "the plan deletes nothing there" in err
        code, _, err = cli_run("apply", "--config", config, "--yes", "--route", CL1_A)
        assert code == 2
        assert "need --plan" in err
        # --router: the plan's routes on that router.
        code, _, err = cli_run(*base, "--router", T1, "--report-dir", str(tmp_path / "a"))
        assert code == 0, err
        assert not env.route_ids() & CL1_IDS


def test_scan_narrowed_to_a_router_and_to_a_cluster(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        config = str(env.config_path)
        code, _, err = cli_run(
            "scan", "--config", config, "--router", T1, "--cluster", "cl1",
            "--report-dir", str(tmp_path / "s"),
        )  # fmt: skip
        assert code == 0, err
        report = load(tmp_path / "s" / "report.json")
        assert report["nsx"]["routers"] == [T1]
        assert {r["id"] for r in report["routes"]} == CL1_IDS
        assert report["summary"]["actions"]["delete"] == 3
        code, _, err = cli_run("scan", "--config", config, "--cluster", "nope")
        assert code == 2
        assert "--cluster nope: no such cluster (known: cl1, cl2)" in err
        code, _, err = cli_run("scan", "--config", config, "--router", "/infra/tier-1s/other")
        assert code == 2
        assert "not one of nsx.routers" in err


def test_restore_from_the_json_log_of_an_apply(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        config = str(env.config_path)
        code, _, log_text = cli_run("apply", "--config", config, "--yes")
        assert code == 0
        assert not env.route_ids() & CL1_IDS
        lines = [json.loads(x) for x in log_text.splitlines() if x.startswith("{")]
        deleted = [x for x in lines if x["event"] == "route.deleted"]
        # The JSON log keeps each deleted route's whole body and names the manager.
        assert {x["nsx_object"]["id"] for x in deleted} == CL1_IDS
        assert {x["nsx"] for x in deleted} == {env.config.nsx.host}
        log_file = tmp_path / "apply.log"
        log_file.write_text("not json\n" + log_text + "x" * 300_000 + "\n")
        code, _, err = cli_run(
            "restore", "--config", config, "--from-log", str(log_file), "--route", CL1_A,
            "--yes",
        )  # fmt: skip
        assert code == 0, err
        assert env.route_ids() & CL1_IDS == {CL1_A}
        assert "restore.log_lines_skipped" in err
        code, _, err = cli_run("restore", "--config", config, "--from-log", str(log_file), "--yes")
        assert code == 0, err
        assert env.route_ids() >= CL1_IDS


def test_restore_from_a_log_refuses_what_it_cannot_trust(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        config = str(env.config_path)
        _, _, log_text = cli_run("apply", "--config", config, "--yes")
        line = next(x for x in log_text.splitlines() if '"route.deleted"' in x)
        event = json.loads(line)
        cases = {
            "another-manager": (dict(event, nsx="nsx.elsewhere"), "logged against NSX manager"),
            "no-manager": ({k: v for k, v in event.items() if k != "nsx"}, "does not name"),
            "router": (dict(event, router="/infra/tier-0s/t0"), "is not a Tier-1 policy path"),
            "id": (dict(event, route="../x"), "is not a plain static route id"),
            "body": (
                dict(event, nsx_object=dict(event["nsx_object"], id="other")),
                "is not route",
            ),
            "network": (dict(event, network="10.9.9.0/24"), "network missing or not the body's"),
        }
        for name, (bad, expected) in cases.items():
            path = tmp_path / f"{name}.log"
            path.write_text(json.dumps(bad) + "\n")
            code, _, err = cli_run("restore", "--config", config, "--from-log", str(path), "--yes")
            assert code == 2, name
            assert expected in err, (name, err)
        two_runs = tmp_path / "two.log"
        two_runs.write_text(line + "\n" + json.dumps(dict(event, run_id="other")) + "\n")
        code, _, err = cli_run("restore", "--config", config, "--from-log", str(two_runs), "--yes")
        assert code == 2
        assert "route.deleted lines of 2 runs" in err
        code, _, err = cli_run("restore", "--config", config, "--yes")
        assert code == 2
        assert "give one of --from DIR and --from-log FILE" in err
        assert env.route_ids().isdisjoint(CL1_IDS)  # nothing was created by a refused log
