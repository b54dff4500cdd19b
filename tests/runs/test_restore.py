"""restore, on the simulator with the real NsxClient, and the round trip that proves it."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import structlog
from applykit import (
    CL1_IDS,
    T1,
    Env,
    cli_run,
    client,
    pushgateway,
    read,
    resign,
    rows,
    simulated,
    write,
)
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs
from typer.testing import CliRunner

from nsx_route_gc.cli import cli
from nsx_route_gc.config import Secret
from nsx_route_gc.errors import NsxAccessError, NsxError
from nsx_route_gc.models import Route, plan_sha256
from nsx_route_gc.nsx.client import NsxClient
from nsx_route_gc.reports.rows import deletion_key
from nsx_route_gc.runs.restore import ToRestore, _attempt, content, restorable_body, run_restore
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
        broken["next_hops"] = []  # consistent with the body, and signed: only NSX refuses it
        write(report_path, resign(report))
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


# --- issue 13: a hand-edited report never steers a write -----------------------------------

INJECTED = "injected-default-route"


def edited_restore(env: Env, edit: Any, *, sign: bool = True, **kw: Any) -> Any:
    """Restore from the apply report after ``edit(report)``; NSX must see no call at all."""
    report_path = applied(env)
    report = read(report_path)
    edit(report)
    write(report_path, resign(report) if sign else report)
    env.sim.nsx.reset_counters()
    outcome = env.restore(report_path, **kw)
    assert sum(env.sim.nsx.counters.values()) == 0
    assert not CL1_IDS & env.route_ids()
    return outcome


def deleted_row(report: dict[str, Any], rid: str = CL1_A) -> dict[str, Any]:
    row: dict[str, Any] = next(r for r in report["routes"] if r["id"] == rid)
    return row


def _retarget(router: str, rid: str | None = None) -> Any:
    def edit(report: dict[str, Any]) -> None:
        row = deleted_row(report)
        row["router_path"] = router
        if rid is not None:
            row["id"] = row["nsx_object"]["id"] = rid
        row["path"] = None

    return edit


def _body(**changes: Any) -> Any:
    def edit(report: dict[str, Any]) -> None:
        deleted_row(report)["nsx_object"].update(changes)

    return edit


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (_retarget("/infra/tier-0s/t0"), "'/infra/tier-0s/t0' is not a Tier-1 policy path"),
        (_retarget("/infra"), "'/infra' is not a Tier-1 policy path"),
        (_retarget(T1, "../../../tier-0s/t0/static-routes/x"), "not a plain static route id"),
        (_retarget(T1, ".."), "not a plain static route id"),
        (_body(network="0.0.0.0/0"), "nsx_object's network is not the row's"),
        (_body(next_hops=[{"ip_address": "6.6.6.6"}]), "nsx_object's next hops are not"),
        (_body(next_hops=5), "nsx_object.next_hops is not a list"),
        (
            _body(next_hops=[{"ip_address": "172.16.128.63", "admin_distance": "abc"}]),
            "admin_distance is not 1 to 255",
        ),
        (_body(id=CL1_B), "nsx_object is not this route's body"),
        (_body(tags="x"), "nsx_object.tags is not a list"),
    ],
)
def test_an_edited_restore_file_is_refused_before_any_call(
    tmp_path: Path, edit: Any, why: str
) -> None:
    with simulated(tmp_path) as env:
        outcome = edited_restore(env, edit)
        assert outcome.exit_code == 2
        assert outcome.error is not None
        assert why in outcome.error
        assert "\n" not in outcome.error


def test_an_edit_without_a_new_digest_is_refused(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        outcome = edited_restore(env, _body(display_name="edited"), sign=False)
        assert outcome.exit_code == 2
        assert outcome.error is not None
        assert "restore_sha256 does not match the deleted routes" in outcome.error


def test_a_router_outside_the_configured_routers_is_refused(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        nsx = dataclasses.replace(env.config.nsx, routers=("/infra/tier-1s/another",))
        config = dataclasses.replace(env.config, nsx=nsx)
        outcome = edited_restore(env, lambda _r: None, config=config)
        assert outcome.exit_code == 2
        assert outcome.error is not None
        assert "is not one of the configured nsx.routers" in outcome.error


def test_plan_sha256_must_be_the_reports_restore_sha256(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        outcome = edited_restore(env, lambda _r: None, plan_sha256="0" * 64)
        assert outcome.exit_code == 2
        assert outcome.error is not None
        assert "is not the approved --plan-sha256" in outcome.error
        digest = read(env.tmp / "apply" / "report.json")["apply"]["restore_sha256"]
        # The ticket gets it from the apply's report.md.
        assert f"- **Restore SHA-256:** `{digest}`" in (env.tmp / "apply/report.md").read_text()
        outcome = env.restore(env.tmp / "apply" / "report.json", plan_sha256=digest)
        assert outcome.exit_code == 0
        assert env.route_ids() >= CL1_IDS


def test_a_duplicate_key_in_a_restore_file_is_refused(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        report_path = applied(env)
        text = report_path.read_text().replace(
            '"mode": "apply"', '"mode": "apply", "mode": "apply"'
        )
        report_path.write_text(text)
        outcome = env.restore(report_path)
        assert outcome.exit_code == 2
        assert outcome.error is not None
        assert "duplicate key 'mode'" in outcome.error


def test_a_route_never_deleted_by_this_tool_is_never_created(tmp_path: Path) -> None:
    # The trial: a plan edited and re-signed with an injected row; apply finds no such route
    # and records it already-gone; restore must not create 0.0.0.0/0 -> 6.6.6.6.
    with simulated(tmp_path) as env:
        plan_path = env.scan()
        plan = read(plan_path)
        template = next(r for r in plan["routes"] if r["action"] == "delete")
        body = dict(template["nsx_object"], id=INJECTED, network="0.0.0.0/0")
        body["next_hops"] = [{"ip_address": "6.6.6.6", "admin_distance": 1}]
        injected = dict(template, id=INJECTED, path=f"{T1}/static-routes/{INJECTED}")
        injected.update(network="0.0.0.0/0", next_hops=["6.6.6.6"], nsx_object=body)
        plan["routes"].append(injected)
        planned = [deletion_key(r) for r in plan["routes"] if r["action"] == "delete"]
        plan["plan_sha256"] = plan_sha256(plan["nsx"]["host"], planned)
        write(plan_path, plan)
        outcome = env.apply(plan_path)
        assert rows(outcome)[INJECTED]["note"].startswith("already-gone")
        report_path = env.tmp / "apply" / "report.json"
        restored = env.restore(report_path)
        assert restored.exit_code == 0
        assert INJECTED not in rows(restored)
        assert INJECTED not in env.route_ids()
        assert env.route_ids() >= CL1_IDS
        named = env.restore(report_path, name="again", route_ids=[INJECTED])
        assert named.exit_code == 2
        assert named.error is not None
        assert "already gone when the apply came" in named.error
        assert INJECTED not in env.route_ids()


# --- the guards, one operator rule each (issue 16) -----------------------------------------


def test_a_restore_counts_only_once_nsx_shows_the_route_as_sent(tmp_path: Path) -> None:
    """NSX accepted the PATCH, but the route read back is not the one sent (somebody else
    wrote it meanwhile): not restored, the run exits 1."""
    with simulated(tmp_path) as env:
        report = applied(env)

        class Overwritten(NsxClient):
            def patch_route(self, route_path: str, body: dict[str, Any], **kw: Any) -> None:
                super().patch_route(route_path, body, **kw)
                if route_path.endswith(CL1_A):
                    env.sim.nsx.remove_route(T1, CL1_A)
                    env.sim.nsx.add_route(
                        SimRoute(T1, CL1_A, body["network"], ("172.16.128.99",), display_name="x")
                    )

        outcome = env.restore(report, nsx_factory=lambda s: Overwritten(s, sleep=lambda _: None))
        by_id = rows(outcome)
        assert by_id[CL1_A]["action"] == "held"
        assert by_id[CL1_A]["hold_reason"] == "restore-failed"
        assert "not present as sent" in by_id[CL1_A]["error"]
        assert {by_id[CL1_B]["action"], by_id[CL1_C]["action"]} == {"restored"}
        assert outcome.exit_code == 1


def test_a_body_that_is_not_the_rows_route_is_refused_and_nothing_written(
    tmp_path: Path,
) -> None:
    """A report whose row for one route carries another route's body is not a way back:
    restore refuses the file (exit 2, naming it and the route) before talking to NSX."""
    with simulated(tmp_path) as env:
        report_path = applied(env)
        report = read(report_path)
        by_id = {r["id"]: r for r in report["routes"]}
        by_id[CL1_A]["nsx_object"] = by_id[CL1_B]["nsx_object"]
        write(report_path, report)
        env.sim.nsx.reset_counters()
        outcome = env.restore(report_path)
        assert outcome.exit_code == 2
        assert outcome.error is not None
        assert str(report_path) in outcome.error
        assert CL1_A in outcome.error
        assert sum(env.sim.nsx.counters.values()) == 0
        assert not CL1_IDS & env.route_ids()


def test_a_route_nsx_is_still_deleting_is_left_alone(tmp_path: Path) -> None:
    """Back with the same id but marked_for_delete (NSX has not realized the delete yet):
    held for a later restore, nothing written."""
    with simulated(tmp_path) as env:
        original = env.routes()
        report = applied(env)
        body = original[CL1_A]
        env.sim.nsx.add_route(
            SimRoute(T1, CL1_A, body["network"], tuple(h["ip_address"] for h in body["next_hops"]))
        )

        class Deleting(NsxClient):
            def get_route(self, route_path: str) -> Route | None:
                found = super().get_route(route_path)
                if found is None or not route_path.endswith(CL1_A):
                    return found
                marked = {**(found.nsx_object or {}), "marked_for_delete": True}
                return replace(found, raw=json.dumps(marked))

        env.sim.nsx.reset_counters()
        outcome = env.restore(report, nsx_factory=lambda s: Deleting(s, sleep=lambda _: None))
        by_id = rows(outcome)
        assert by_id[CL1_A]["action"] == "held"
        assert by_id[CL1_A]["hold_reason"].startswith("being-deleted")
        assert by_id[CL1_A]["error"] is None
        assert env.sim.nsx.counters["nsx_patch"] == 2  # CL1_B and CL1_C only
        assert outcome.exit_code == 1
        assert outcome.report is not None
        assert outcome.report["restore"] == {
            **outcome.report["restore"],
            "selected": 3,
            "restored": 2,
            "already_present": 0,
            "held": 1,
            "failed": 0,
        }
        assert outcome.report["errors"] == ["1 route(s) not restored (held)"]


def test_the_same_route_written_differently_counts_as_already_present(tmp_path: Path) -> None:
    """Same network (written with host bits), next hops (default admin distance, another
    order) and tags: nothing to write, and it counts as restored, already present."""
    with simulated(tmp_path) as env:
        report_path = applied(env)
        report = read(report_path)
        row = next(r for r in report["routes"] if r["id"] == CL1_A)
        body = row["nsx_object"]
        body["next_hops"] = [{"ip_address": "172.16.128.250"}, *body["next_hops"]]
        row["next_hops"] = [h["ip_address"] for h in body["next_hops"]]
        write(report_path, resign(report))
        hops = tuple(h["ip_address"] for h in reversed(body["next_hops"]))
        tags = tuple((t["scope"], t["tag"]) for t in reversed(body["tags"]))
        network = body["network"].replace(".0/24", ".7/24")
        env.sim.nsx.add_route(SimRoute(T1, CL1_A, network, hops, tags=tags))
        env.sim.nsx.reset_counters()
        outcome = env.restore(report_path, route_ids=[CL1_A])
        row_out = rows(outcome)[CL1_A]
        assert (row_out["action"], row_out["note"]) == (
            "restored",
            "already-present: a route with this id and content exists",
        )
        assert env.sim.nsx.counters["nsx_patch"] == 0
        assert outcome.report is not None
        assert outcome.report["restore"]["already_present"] == 1
        assert outcome.exit_code == 0


def test_the_restore_report_and_log_say_what_was_put_back_from_where(tmp_path: Path) -> None:
    """The restore report is the record of the change: its source, run, manager, times and
    configuration, each row with the body sent and the revision NSX gave it; a failure is
    counted in the errors; the log names router and route of each outcome."""
    with simulated(tmp_path) as env:
        report_path = applied(env)
        report = read(report_path)
        broken = next(r for r in report["routes"] if r["id"] == CL1_A)
        broken["nsx_object"]["next_hops"] = []  # refused by NSX
        broken["next_hops"] = []
        # A row's lists as a hand-edited report may have them: the report is written anyway.
        next(r for r in report["routes"] if r["id"] == CL1_B)["checked_clusters"] = None
        report_path.write_text(json.dumps(resign(report)))
        bodies = {r["id"]: r["nsx_object"] for r in report["routes"] if r["id"] in CL1_IDS}
        with capture_logs() as logs:
            outcome = env.restore(report_path)
        assert outcome.report is not None
        done = outcome.report
        assert done["restore"]["source"] == str(report_path)
        assert done["nsx"]["host"] == env.config.nsx.host
        assert done["config"] == env.config.source
        assert done["run_id"]
        assert done["run_id"] != report["run_id"]
        assert done["started_at"] <= done["finished_at"]
        assert done["errors"] == ["1 restore(s) failed"]
        for rid in CL1_IDS:
            row = rows(outcome)[rid]
            assert row["nsx_object"] == bodies[rid]
            assert row["revision"] == (None if rid == CL1_A else env.routes()[rid]["_revision"])
        assert rows(outcome)[CL1_B]["checked_clusters"] == []
    events = {(e["event"], e["router"], e["route"]) for e in logs if "route" in e}
    assert events >= {("route.restored", T1, CL1_B), ("route.restore_failed", T1, CL1_A)}


def test_a_route_back_with_the_same_id_but_another_network_is_not_the_same() -> None:
    """What makes two routes with one id the same route: network (as a network, host bits
    ignored; compared as written when it is no CIDR), next hops and tags."""
    body = {
        "network": "172.16.136.0/24",
        "next_hops": [{"ip_address": "172.16.128.63", "admin_distance": 1}],
        "tags": [{"scope": "s", "tag": "t"}],
    }
    assert content({**body, "network": "172.16.136.9/24"}) == content(body)
    assert content({**body, "network": "172.16.137.0/24"}) != content(body)
    assert content({**body, "network": "nonsense"}) == content({**body, "network": "nonsense"})
    assert content({**body, "network": "nonsense"}) != content({**body, "network": "other"})
    hop, other_hop = body["next_hops"][0], {"ip_address": "172.16.128.64", "admin_distance": 1}
    assert content({**body, "next_hops": [other_hop]}) != content(body)
    assert content({**body, "next_hops": [{**hop, "admin_distance": 2}]}) != content(body)
    assert content({**body, "next_hops": [{"ip_address": hop["ip_address"]}]}) == content(body)
    two = {**body, "next_hops": [hop, other_hop]}
    assert content({**body, "next_hops": [other_hop, hop]}) == content(two)
    assert content({**body, "tags": [{"scope": "s", "tag": "u"}]}) != content(body)
    assert content({**body, "tags": [{"scope": "r", "tag": "t"}]}) != content(body)
    assert content({**body, "tags": [{"tag": "t"}]}) == content(
        {**body, "tags": [{"scope": "", "tag": "t"}]}
    )
    assert content({**body, "tags": [{"scope": "s"}]}) == content(
        {**body, "tags": [{"scope": "s", "tag": ""}]}
    )
    assert content({**body, "tags": [], "next_hops": []}) == content({"network": body["network"]})


def test_a_refused_or_declined_restore_changes_nothing_and_says_so(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        report = applied(env)
        asked: list[dict[str, int]] = []
        env.sim.nsx.reset_counters()
        with capture_logs() as logs:
            declined = run_restore(
                env.config,
                report_path=report,
                confirm=lambda counts: asked.append(counts) or False,
                nsx_factory=client,
            )
            refused = env.restore(tmp_path / "scan" / "report.json")
        assert asked == [{T1: 3}]
        assert (declined.exit_code, declined.error) == (1, "restore cancelled: nothing was changed")
        assert refused.exit_code == 2
        assert sum(env.sim.nsx.counters.values()) == 0
        assert not CL1_IDS & env.route_ids()
    cancelled = [e for e in logs if e["event"] == "restore.cancelled"]
    assert [e["routes"] for e in cancelled] == [3]
    refusals = [e for e in logs if e["event"] == "restore.refused"]
    assert [e["report"] for e in refusals] == [str(tmp_path / "scan" / "report.json")]
    assert refusals[0]["error"] == refused.error


def test_routes_that_cannot_be_checked_first_are_not_written(tmp_path: Path) -> None:
    """A row whose report kept no body, and a route whose read before the PATCH fails: both
    held with why, nothing written for them; the log names each outcome."""
    with simulated(tmp_path) as env:
        report_path = applied(env)
        report = read(report_path)
        next(r for r in report["routes"] if r["id"] == CL1_A)["nsx_object"] = None
        report_path.write_text(json.dumps(resign(report)))

        class Unreadable(NsxClient):
            def get_route(self, route_path: str) -> Route | None:
                if route_path.endswith(CL1_B):
                    raise NsxError(f"GET {route_path}: 503")
                return super().get_route(route_path)

        env.sim.nsx.reset_counters()
        with capture_logs() as logs:
            outcome = env.restore(
                report_path, nsx_factory=lambda s: Unreadable(s, sleep=lambda _: None)
            )
        by_id = rows(outcome)
        assert (by_id[CL1_A]["action"], by_id[CL1_A]["hold_reason"]) == (
            "held",
            "no-original-body: the report kept no body to restore",
        )
        assert (by_id[CL1_B]["action"], by_id[CL1_B]["hold_reason"]) == ("held", "restore-failed")
        assert by_id[CL1_B]["error"] == (
            f"reading the route before restoring failed: GET {T1}/static-routes/{CL1_B}: 503"
        )
        assert env.sim.nsx.counters["nsx_patch"] == 1
        assert env.route_ids() & CL1_IDS == {CL1_C}
    outcomes = {
        e["route"]: (e["event"], e.get("reason") or e.get("error") or e.get("note"))
        for e in logs
        if e["event"].startswith("route.") and e.get("router") == T1
    }
    assert outcomes == {
        CL1_A: ("route.held", "no-original-body: the report kept no body to restore"),
        CL1_B: ("route.restore_failed", by_id[CL1_B]["error"]),
        CL1_C: ("route.restored", "restored"),
    }


def test_a_refused_login_mid_restore_keeps_what_was_restored_in_the_report(
    tmp_path: Path,
) -> None:
    with simulated(tmp_path) as env:
        report = applied(env)
        first, *rest = sorted(CL1_IDS)

        class Locked(NsxClient):
            def get_route(self, route_path: str) -> Route | None:
                if not route_path.endswith(first):
                    raise NsxAccessError("the manager refused the session")
                return super().get_route(route_path)

        outcome = env.restore(report, nsx_factory=lambda s: Locked(s, sleep=lambda _: None))
        assert outcome.exit_code == 1
        by_id = rows(outcome)
        assert by_id[first]["action"] == "restored"
        for rid in rest:
            assert (by_id[rid]["hold_reason"], by_id[rid]["error"]) == (
                "restore-failed",
                "the manager refused the session",
            )
        assert env.route_ids() & CL1_IDS == {first}


def test_a_restore_report_can_be_gzipped_and_an_already_present_row_has_its_revision(
    tmp_path: Path,
) -> None:
    with simulated(tmp_path) as env:
        report = applied(env)
        env.restore(report, name="first", route_ids=[CL1_A])
        revision = env.routes()[CL1_A]["_revision"]
        again = env.restore(report, name="again", route_ids=[CL1_A], compress=True)
        assert [p.name for p in again.paths][:1] == ["report.json.gz"]
        assert (rows(again)[CL1_A]["note"], rows(again)[CL1_A]["revision"]) == (
            "already-present: a route with this id and content exists",
            revision,
        )


@pytest.mark.parametrize("allowed", [True, False])
def test_restore_sends_allow_overwrite_for_a_principal_route_only_when_policy_allows(
    tmp_path: Path, allowed: bool
) -> None:
    with simulated(tmp_path, "principal") as env:
        overwriting = env.with_policy(allow_overwrite=True)
        report = env.scan(config=overwriting)
        assert env.apply(report, config=overwriting).exit_code == 0
        sent: list[bool] = []

        class Recording(NsxClient):
            def patch_route(self, route_path: str, body: dict[str, Any], **kw: Any) -> None:
                sent.append(kw.get("allow_overwrite", False))
                super().patch_route(route_path, body, **kw)

        config = env.with_policy(allow_overwrite=allowed)
        env.restore(
            tmp_path / "apply" / "report.json",
            config=config,
            nsx_factory=lambda s: Recording(s, sleep=lambda _: None),
        )
        assert sent == [allowed] * 3


def test_restore_names_the_digest_it_refuses_and_logs_the_rows_it_leaves(tmp_path: Path) -> None:
    """--plan-sha256 other than the report's restore_sha256 is refused naming the file, the
    digest and the approved one; a route already gone when the apply came (not deleted by
    this tool) is left out, and the log counts it."""
    with simulated(tmp_path) as env:
        plan = env.scan()
        env.sim.nsx.remove_route(T1, CL1_A)
        assert env.apply(plan).exit_code == 0
        report = tmp_path / "apply" / "report.json"
        digest = read(report)["apply"]["restore_sha256"]
        other = "0" * 64
        refused = env.restore(report, plan_sha256=other)
        assert refused.error == (
            f"{report}: restore_sha256 {digest} is not the approved --plan-sha256 {other}"
        )
        with capture_logs() as logs:
            outcome = env.restore(report, plan_sha256=digest)
        assert set(rows(outcome)) == {CL1_B, CL1_C}
    not_ours = [(e["routes"], e["reason"]) for e in logs if e["event"] == "restore.not_ours"]
    assert not_ours == [(1, "already-gone")]


def test_a_restore_of_only_its_own_deletions_logs_none_left_out(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        report = applied(env)
        with capture_logs() as logs:
            assert env.restore(report).exit_code == 0
    assert [e for e in logs if e["event"] == "restore.not_ours"] == []


def test_a_restore_run_is_labelled_summarised_and_needs_no_report_directory(
    tmp_path: Path,
) -> None:
    """Every log line of the run carries mode=restore and its run id; the run ends with one
    run.summary line (exit code, restored count); without --report-dir nothing is written."""
    with simulated(tmp_path) as env:
        report = applied(env)
        bound: list[dict[str, Any]] = []

        def confirm(_counts: dict[str, int]) -> bool:
            bound.append(dict(structlog.contextvars.get_contextvars()))
            return True

        with capture_logs() as logs:
            outcome = run_restore(
                env.config, report_path=report, confirm=confirm, nsx_factory=client
            )
        assert outcome.exit_code == 0
        assert outcome.paths == []
        assert outcome.report is not None
        assert [(b["mode"], b["run_id"]) for b in bound] == [("restore", outcome.report["run_id"])]
        assert env.route_ids() >= CL1_IDS
    summary = [e for e in logs if e["event"] == "run.summary"]
    assert [(e["exit_code"], e["action_restored"]) for e in summary] == [(0, 3)]


def test_an_unknown_route_id_says_whether_the_apply_found_it_gone(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        plan = env.scan()
        env.sim.nsx.remove_route(T1, CL1_A)
        env.apply(plan)
        report = tmp_path / "apply" / "report.json"
        gone = env.restore(report, route_ids=[CL1_A])
        nowhere = env.restore(report, route_ids=["no-such-route"])
    assert gone.error == (
        f"{report}: route {CL1_A}: it was already gone when the apply came "
        "(this tool did not delete it)"
    )
    assert (
        nowhere.error
        == f"{report}: route no-such-route: no deleted route with this id in this report"
    )


def test_an_nsx_failure_that_ends_a_restore_is_logged(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        report = applied(env)
        wrong = replace(env.config.nsx, password=Secret("not-the-password"))
        with capture_logs() as logs:
            outcome = env.restore(report, config=replace(env.config, nsx=wrong))
    assert outcome.exit_code == 1
    failed = [e["error"] for e in logs if e["event"] == "run.failed"]
    assert failed == [outcome.error]


def test_a_restore_pushes_its_metrics_when_a_pushgateway_is_configured(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    with simulated(tmp_path) as env:
        report = applied(env)
        config, pushed = pushgateway(httpserver, env.config)
        assert env.restore(report, config=config).exit_code == 0
    assert pushed
    assert all(path.startswith(f"/metrics/job/{config.metrics.job}") for path in pushed)


# --- restore --from-log: the JSON log of an apply, under restore's checks (issue 16) --------


def logged_apply(env: Env) -> Path:
    """An apply through the CLI with JSON logs; the log kept as a file, as a pod's log is."""
    code, _, log_text = cli_run("apply", "--config", str(env.config_path), "--yes")
    assert code == 0, log_text
    path = env.tmp / "apply.log"
    path.write_text(log_text)
    return path


def test_a_log_gives_back_the_routes_it_shows_deleted_and_only_those_asked_for(
    tmp_path: Path,
) -> None:
    with simulated(tmp_path) as env:
        log_file = logged_apply(env)
        assert env.route_ids().isdisjoint(CL1_IDS)
        one = env.restore(log_file, name="one", from_log=True, route_ids=[CL1_A])
        assert one.exit_code == 0, one.error
        assert env.route_ids() & CL1_IDS == {CL1_A}
        every = env.restore(log_file, name="every", from_log=True)
        assert every.exit_code == 0, every.error
        assert env.route_ids() >= CL1_IDS
    assert {r["id"]: r["note"] for r in rows(every).values()} == {
        CL1_A: "already-present: a route with this id and content exists",
        CL1_B: "restored",
        CL1_C: "restored",
    }


def test_a_log_has_no_digest_to_approve_so_plan_sha256_is_refused_before_any_call(
    tmp_path: Path,
) -> None:
    with simulated(tmp_path) as env:
        log_file = logged_apply(env)
        env.sim.nsx.reset_counters()
        outcome = env.restore(log_file, from_log=True, plan_sha256="0" * 64)
        assert not any(env.sim.nsx.counters.values())
        assert env.route_ids().isdisjoint(CL1_IDS)
    assert outcome.exit_code == 2
    assert outcome.error is not None
    assert outcome.error.startswith(f"{log_file}: a log has no restore_sha256 to approve")
    assert "--plan-sha256" in outcome.error


def test_a_log_naming_a_router_outside_the_configured_routers_is_refused(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        log_file = logged_apply(env)
        elsewhere = replace(env.config.nsx, routers=("/infra/tier-1s/elsewhere",))
        outcome = env.restore(log_file, from_log=True, config=replace(env.config, nsx=elsewhere))
        assert env.route_ids().isdisjoint(CL1_IDS)
    assert outcome.exit_code == 2
    assert outcome.error is not None
    assert outcome.error.startswith(f"{log_file}: route ")  # names the log and the route
    assert f"router {T1} is not one of the configured nsx.routers" in outcome.error
