"""restore, on the simulator with the real NsxClient, and the round trip that proves it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from applykit import CL1_IDS, T1, Env, read, rows, simulated, write
from typer.testing import CliRunner

from nsx_route_gc.cli import cli
from nsx_route_gc.config import Secret
from nsx_route_gc.models import Route
from nsx_route_gc.runs.restore import ToRestore, _attempt, restorable_body
from nsx_route_gc.simulator import SimRoute

CL1_A, CL1_B, CL1_C = sorted(CL1_IDS)
FIELDS = (
    "id",
    "display_name",
    "description",
    "network",
    "next_hops",
    "tags",
    "resource_type",
    "enabled_on_secondary",
)


def applied(env: Env) -> Path:
    """Scan, apply that plan, and return the apply report's path."""
    plan = env.scan()
    outcome = env.apply(plan)
    assert outcome.exit_code == 0, outcome.report and outcome.report["errors"]
    return env.tmp / "apply" / "report.json"


def essence(routes: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {rid: tuple(str(body.get(f)) for f in FIELDS) for rid, body in routes.items()}


def test_round_trip_scan_apply_restore_scan_gives_back_every_route(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        original = env.routes()
        report = applied(env)
        assert not CL1_IDS & env.route_ids()
        outcome = env.restore(report)
        assert outcome.exit_code == 0, outcome.report and outcome.report["errors"]
        assert {r["action"] for r in rows(outcome).values()} == {"restored"}
        assert essence(env.routes()) == essence(original)
        again = read(env.scan("rescan"))
        rescanned = {r["id"]: r for r in again["routes"]}
        for rid in CL1_IDS:
            # Back, and judged orphaned again; recreated just now, so the grace period holds.
            assert rescanned[rid]["verdict"] == "orphaned"
            assert rescanned[rid]["hold_reason"].startswith("grace-period")
            assert rescanned[rid]["next_hops"] == [
                h["ip_address"] for h in original[rid]["next_hops"]
            ]
    restore_report = read(tmp_path / "restore" / "report.json")
    assert restore_report["mode"] == "restore"
    assert restore_report["restore"]["restored"] == 3
    assert restore_report["summary"]["actions"]["restored"] == 3


def test_only_the_selected_routes_are_restored(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        report = applied(env)
        outcome = env.restore(report, route_ids=[CL1_B])
        assert outcome.exit_code == 0
        assert env.route_ids() & CL1_IDS == {CL1_B}
        assert list(rows(outcome)) == [CL1_B]


def test_an_unknown_route_id_is_a_usage_error(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        report = applied(env)
        env.sim.nsx.reset_counters()
        outcome = env.restore(report, route_ids=[CL1_A, "no-such-route"])
        assert outcome.exit_code == 2
        assert outcome.error is not None
        assert "no-such-route" in outcome.error
        assert sum(env.sim.nsx.counters.values()) == 0
        assert not CL1_IDS & env.route_ids()


def test_an_existing_route_is_never_overwritten(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        original = env.routes()
        report = applied(env)
        body = original[CL1_A]
        # Somebody recreated one route by hand with another next hop, and another identically.
        env.sim.nsx.add_route(
            SimRoute(T1, CL1_A, body["network"], ("172.16.128.99",), display_name="by hand")
        )
        same = original[CL1_B]
        env.sim.nsx.add_route(
            SimRoute(
                T1,
                CL1_B,
                same["network"],
                tuple(h["ip_address"] for h in same["next_hops"]),
                tags=tuple((t["scope"], t["tag"]) for t in same["tags"]),
            )
        )
        env.sim.nsx.reset_counters()
        outcome = env.restore(report)
        by_id = rows(outcome)
        assert by_id[CL1_A]["action"] == "held"
        assert by_id[CL1_A]["hold_reason"].startswith("exists-with-different-content")
        assert env.routes()[CL1_A]["next_hops"][0]["ip_address"] == "172.16.128.99"
        assert by_id[CL1_B]["action"] == "restored"
        assert by_id[CL1_B]["note"].startswith("already-present")
        assert by_id[CL1_C]["action"] == "restored"
        assert env.sim.nsx.counters["nsx_patch"] == 1  # only CL1_C was written
        assert outcome.exit_code == 1


def test_a_rejected_patch_is_reported_and_the_rest_restored(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        report_path = applied(env)
        report = read(report_path)
        broken = next(r for r in report["routes"] if r["id"] == CL1_A)
        broken["nsx_object"]["next_hops"] = []  # NSX refuses a route without next hops
        write(report_path, report)
        outcome = env.restore(report_path)
        by_id = rows(outcome)
        assert by_id[CL1_A]["action"] == "held"
        assert by_id[CL1_A]["hold_reason"] == "restore-failed"
        assert "400" in by_id[CL1_A]["error"]
        assert env.route_ids() & CL1_IDS == {CL1_B, CL1_C}
        assert outcome.exit_code == 1


def test_reports_of_another_host_or_mode_are_refused(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        report_path = applied(env)
        report = read(report_path)
        report["nsx"]["host"] = "nsx-b.example.com"
        other = write(tmp_path / "other.json", report)
        outcome = env.restore(other)
        assert outcome.exit_code == 2
        assert outcome.error is not None
        assert "nsx-b.example.com" in outcome.error
        scan_report = tmp_path / "scan" / "report.json"
        assert env.restore(scan_report).exit_code == 2
        assert not CL1_IDS & env.route_ids()


def test_restoring_a_principal_route_sends_allow_overwrite_only_when_allowed() -> None:
    class Fake:
        """NSX without the route until it is PATCHed; records the X-Allow-Overwrite choice."""

        def __init__(self) -> None:
            self.stored: dict[str, Any] | None = None
            self.overwrite: list[bool] = []

        def get_route(self, route_path: str) -> Route | None:
            if self.stored is None:
                return None
            raw = json.dumps(self.stored)
            return Route(T1, CL1_A, route_path, self.stored["network"], (), (), raw=raw)

        def patch_route(
            self, route_path: str, body: dict[str, Any], *, allow_overwrite: bool = False
        ) -> None:
            self.stored = body
            self.overwrite.append(allow_overwrite)

    body = {
        "id": CL1_A,
        "network": "172.16.136.0/24",
        "next_hops": [{"ip_address": "172.16.128.63"}],
        "_protection": "REQUIRE_OVERRIDE",
    }
    item = ToRestore({"router_path": T1, "id": CL1_A}, f"{T1}/static-routes/{CL1_A}", body)
    for allowed in (True, False):
        nsx = Fake()
        assert _attempt(nsx, item, allow_overwrite=allowed).action.value == "restored"
        assert nsx.overwrite == [allowed]
        assert nsx.stored is not None
        assert "_protection" not in nsx.stored


def test_restorable_body_drops_what_nsx_computes() -> None:
    original = {
        "resource_type": "StaticRoutes",
        "id": "r",
        "display_name": "d",
        "description": "x",
        "network": "10.0.0.0/24",
        "next_hops": [{"ip_address": "10.1.1.1", "admin_distance": 1}],
        "tags": [],
        "enabled_on_secondary": False,
        "path": "/infra/tier-1s/t/static-routes/r",
        "parent_path": "/infra/tier-1s/t",
        "relative_path": "r",
        "unique_id": "u",
        "marked_for_delete": False,
        "overridden": False,
        "realization_id": "z",
        "_revision": 3,
        "_create_time": 1,
        "_protection": "NOT_PROTECTED",
        "_links": [],
    }
    assert set(restorable_body(original)) == {
        "resource_type",
        "id",
        "display_name",
        "description",
        "network",
        "next_hops",
        "tags",
        "enabled_on_secondary",
    }


def test_cli_restore(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        report = applied(env)
        base = ["restore", "--config", str(env.config_path), "--from", str(report)]
        refused = CliRunner().invoke(cli, base)
        assert refused.exit_code == 2
        assert "--yes" in refused.output
        assert not CL1_IDS & env.route_ids()
        done = CliRunner().invoke(
            cli,
            [
                *base,
                "--route",
                CL1_A,
                "--route",
                CL1_C,
                "--yes",
                "--report-dir",
                str(tmp_path / "out"),
            ],
        )
        assert done.exit_code == 0, done.output
        assert env.route_ids() & CL1_IDS == {CL1_A, CL1_C}


def test_a_refused_login_ends_the_restore_before_any_change(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        report = applied(env)
        env.sim.nsx.reset_counters()
        wrong = replace(env.config.nsx, password=Secret("not-the-password"))
        outcome = env.restore(report, config=replace(env.config, nsx=wrong))
        counters = dict(env.sim.nsx.counters)
        assert not CL1_IDS & env.route_ids()
    assert outcome.exit_code == 1
    assert outcome.report is None
    assert outcome.error is not None
    assert "refused the login" in outcome.error
    assert counters == {"nsx_session": 1, "nsx_login_failed": 1}
