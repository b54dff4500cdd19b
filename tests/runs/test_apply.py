"""apply, on the simulator with the real NsxClient: every guard, drift, fallbacks, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from applykit import CL1_IDS, T1, cli_run, client, pushgateway, read, rows, simulated, write, yes
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs
from typer.testing import CliRunner

from factories import ccm_route as factory_route
from nsx_route_gc.cli import cli
from nsx_route_gc.config import Secret
from nsx_route_gc.errors import NsxError
from nsx_route_gc.models import Action, Route, RouteVerdict, Verdict, plan_sha256
from nsx_route_gc.nsx.client import NsxClient
from nsx_route_gc.nsx.deleter import Deleter
from nsx_route_gc.reports.journal import JOURNAL_NAME, Journal, is_finished, read_journal
from nsx_route_gc.reports.rows import deletion_key
from nsx_route_gc.runs.apply import Proposal, run_apply
from nsx_route_gc.simulator import SimRoute, load_scenario
from nsx_route_gc.simulator.model import ccm_route

NOW = datetime(2026, 11, 30, tzinfo=UTC)
GONE_UID = "0b7e3c55-7f53-4a52-9e7b-1c2d3e4f5a6b"  # a node of cl1 nobody has seen before
CL1_A, CL1_B, CL1_C = sorted(CL1_IDS)


def new_cl1_orphan() -> SimRoute:
    return ccm_route(T1, GONE_UID, "cl1-md-0-late", "172.16.139.0/24", "172.16.128.40")


# --- fresh scan (the CronJob's mode) -------------------------------------------------------


def test_fresh_apply_deletes_the_orphans_through_one_hierarchical_call(tmp_path: Path) -> None:
    asked: list[Proposal] = []
    with simulated(tmp_path) as env:
        before = env.routes()
        env.sim.nsx.reset_counters()
        outcome = env.apply(confirm=lambda proposal: asked.append(proposal) or True)
        assert outcome.exit_code == 0, outcome.report and outcome.report["errors"]
        assert [p.counts for p in asked] == [{T1: 3}]
        assert asked[0].nsx_host == env.config.nsx.host
        assert env.route_ids() == set(before) - CL1_IDS
        assert env.sim.nsx.counters["nsx_hierarchical"] == 1
        assert env.sim.nsx.counters["nsx_delete"] == 0
        # The scan's listing is the re-read, one search confirms: no read per route.
        assert env.sim.nsx.counters["nsx_list_routes"] == 1
        assert env.sim.nsx.counters["nsx_search"] == 1
        assert env.sim.nsx.counters.get("nsx_get", 0) == 0
    by_id = rows(outcome)
    for rid in CL1_IDS:
        row = by_id[rid]
        assert row["action"] == "deleted"
        assert row["note"] == "deleted: confirmed gone"
        assert row["nsx_object"] == before[rid]  # the full original body, for restore
    assert {r["action"] for rid, r in by_id.items() if rid not in CL1_IDS} == {"none"}
    report = read(tmp_path / "apply" / "report.json")
    assert report["mode"] == "apply"
    assert report["summary"]["actions"]["deleted"] == 3
    assert report["apply"]["deleted"] == 3
    assert report["apply"]["source"] == "fresh-scan"
    assert (tmp_path / "apply" / "report.md").is_file()


def test_under_a_short_grace_period_each_router_is_listed_to_confirm(tmp_path: Path) -> None:
    """Search may only vouch for routes long indexed: with min_age under five minutes a
    deleted route can be too new for the index, so its router is listed instead."""
    with simulated(tmp_path, min_age="4m") as env:
        env.sim.nsx.reset_counters()
        outcome = env.apply()
        assert outcome.exit_code == 0, outcome.report and outcome.report["errors"]
        assert env.route_ids().isdisjoint(CL1_IDS)
        assert env.sim.nsx.counters["nsx_list_routes"] == 2
        assert env.sim.nsx.counters.get("nsx_search", 0) == 0
    assert {rows(outcome)[rid]["note"] for rid in CL1_IDS} == {"deleted: confirmed gone"}


def test_grace_period_holds_a_young_orphan_and_deletes_the_old_one(tmp_path: Path) -> None:
    with simulated(tmp_path, "young") as env:
        outcome = env.apply()
        by_id = rows(outcome)
        young = next(r for r in by_id.values() if r["network"] == "172.16.147.0/24")
        old = next(r for r in by_id.values() if r["network"] == "172.16.148.0/24")
        assert young["action"] == "held"
        assert young["hold_reason"].startswith("grace-period")
        assert old["action"] == "deleted"
        assert young["id"] in env.route_ids()
        assert old["id"] not in env.route_ids()
        # A policy hold is configuration at work, not a failure.
        assert outcome.exit_code == 0


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        ({"protect_route_ids": (CL1_A,)}, "keep-list"),
        ({"protect_networks": ("172.16.136.0/22",)}, "protected-network"),
    ],
)
def test_keep_list_and_protected_networks_hold(
    tmp_path: Path, policy: dict[str, Any], reason: str
) -> None:
    with simulated(tmp_path) as env:
        outcome = env.apply(config=env.with_policy(**policy))
        held = {rid for rid, r in rows(outcome).items() if r["action"] == "held"}
        assert held
        assert held <= CL1_IDS
        assert all(rows(outcome)[rid]["hold_reason"].startswith(reason) for rid in held)
        assert held <= env.route_ids()


def test_protection_tag_holds(tmp_path: Path) -> None:
    scenario = load_scenario("seed")
    tagged = new_cl1_orphan()
    tagged.tags = (*tagged.tags, ("nsx-route-gc/keep", "ticket-42"))
    scenario.routes.append(tagged)
    with simulated(tmp_path, scenario, max_delete_percent=100) as env:
        row = rows(env.apply())[tagged.id]
        assert row["action"] == "held"
        assert row["hold_reason"].startswith("protected-tag")
        assert tagged.id in env.route_ids()


@pytest.mark.parametrize(
    ("policy", "reason"),
    [({"max_deletes": 2}, "max-deletes"), ({"max_delete_percent": 40.0}, "max-delete-percent")],
)
def test_blast_radius_limits_hold_everything_and_exit_1(
    tmp_path: Path, policy: dict[str, Any], reason: str
) -> None:
    with simulated(tmp_path) as env:
        before = env.route_ids()
        outcome = env.apply(config=env.with_policy(**policy))
        assert outcome.exit_code == 1
        assert env.route_ids() == before
        held = [r for r in rows(outcome).values() if r["action"] == "held"]
        assert len(held) == 3
        assert all(r["hold_reason"].startswith(reason) for r in held)


def test_require_override_is_held_unless_allowed(tmp_path: Path) -> None:
    with simulated(tmp_path, "principal") as env:
        outcome = env.apply()
        held = [r for r in rows(outcome).values() if r["action"] == "held"]
        assert len(held) == 3
        assert all(r["hold_reason"].startswith("protected-by-principal") for r in held)
        assert env.route_ids() >= CL1_IDS
        # The simulator refuses REQUIRE_OVERRIDE deletes without X-Allow-Overwrite: true.
        allowed = env.apply(name="allowed", config=env.with_policy(allow_overwrite=True))
        assert allowed.exit_code == 0
        assert not CL1_IDS & env.route_ids()


def test_a_cluster_not_inventoried_deletes_what_is_proven_and_exits_1(tmp_path: Path) -> None:
    scenario = load_scenario("seed")
    scenario.clusters[0].unreachable = True
    with simulated(tmp_path, scenario, max_delete_percent=100) as env:
        outcome = env.apply()
        assert outcome.exit_code == 1
        by_id = rows(outcome)
        assert {rid for rid, r in by_id.items() if r["action"] == "deleted"} == CL1_IDS
        assert {r["verdict"] for r in by_id.values() if r["id"] not in CL1_IDS} >= {"unverified"}


# --- the deleter: re-read, batch fallback, 404, confirmation --------------------------------


def test_drift_after_judgement_is_caught_by_the_re_read(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:

        def drift(_proposal: Proposal) -> bool:
            env.sim.nsx.bump_revision(T1, CL1_A)
            env.sim.nsx.remove_route(T1, CL1_B)
            return True

        outcome = env.apply(confirm=drift)
        by_id = rows(outcome)
        assert by_id[CL1_A]["action"] == "held"
        assert by_id[CL1_A]["hold_reason"].startswith("changed-since-plan")
        assert by_id[CL1_B]["action"] == "deleted"
        assert by_id[CL1_B]["note"].startswith("already-gone")
        assert by_id[CL1_C]["action"] == "deleted"
        assert CL1_A in env.route_ids()
        assert outcome.exit_code == 1  # a planned deletion was not done


CONFLICTS = ["412", "409", "400/500087", "400/500232", "400/100148", "404/500090"]


@pytest.mark.parametrize("conflict", CONFLICTS)
def test_a_batch_refused_as_changed_holds_the_changed_route(tmp_path: Path, conflict: str) -> None:
    """Every form NSX gives "changed since read" in: the batch falls back route by route and
    the changed route is held, never a failed deletion."""
    with simulated(tmp_path) as env:
        env.sim.nsx.revision_conflict = conflict

        def drift(_proposal: Proposal) -> bool:
            env.sim.nsx.bump_revision(T1, CL1_A)
            return True

        outcome = env.apply(confirm=drift)
        by_id = rows(outcome)
        assert by_id[CL1_A]["action"] == "held"
        assert by_id[CL1_A]["hold_reason"].startswith("changed-since-plan")
        assert by_id[CL1_B]["action"] == by_id[CL1_C]["action"] == "deleted"
        assert outcome.report is not None
        assert outcome.report["apply"]["failed"] == 0
        assert env.sim.nsx.counters["nsx_hierarchical"] == 1


@pytest.mark.parametrize("conflict", CONFLICTS)
def test_a_delete_refused_as_changed_is_held(tmp_path: Path, conflict: str) -> None:
    """The route-by-route fallback: a DELETE answered with a revision conflict is held."""
    status, _, code = conflict.partition("/")
    with simulated(tmp_path) as env:
        env.sim.nsx.fail_hierarchical(times=1, status=400)
        env.sim.nsx.fail_next("nsx_delete", status=int(status), error_code=int(code or 604))
        outcome = env.apply()
        actions = sorted(rows(outcome)[rid]["action"] for rid in CL1_IDS)
        assert actions == ["deleted", "deleted", "held"]
        held = [rows(outcome)[rid] for rid in CL1_IDS if rows(outcome)[rid]["action"] == "held"]
        assert held[0]["hold_reason"].startswith("changed-since-plan: NSX refused the delete")
        assert outcome.report is not None
        assert outcome.report["apply"]["failed"] == 0


def test_rejected_batch_falls_back_to_single_deletes(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        env.sim.nsx.fail_hierarchical(times=1, status=400)
        env.sim.nsx.fail_delete(CL1_B, status=400, times=5)
        outcome = env.apply()
        by_id = rows(outcome)
        assert by_id[CL1_A]["action"] == by_id[CL1_C]["action"] == "deleted"
        assert by_id[CL1_B]["action"] == "delete-failed"
        assert "400" in by_id[CL1_B]["error"]
        assert env.sim.nsx.counters["nsx_delete"] >= 3
        assert env.route_ids() & CL1_IDS == {CL1_B}
        assert outcome.exit_code == 1
        assert outcome.report is not None
        assert outcome.report["apply"]["failed"] == 1


def test_a_batch_rejected_for_a_vanished_route_still_deletes_the_rest(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:

        class Racing(NsxClient):
            """The route vanishes between its re-read and the batch that deletes it."""

            def hierarchical_delete(self, routes: Mapping[str, Sequence[Route]], **kw: Any) -> None:
                env.sim.nsx.remove_route(T1, CL1_A)
                super().hierarchical_delete(routes, **kw)

        outcome = env.apply(nsx_factory=lambda s: Racing(s, sleep=lambda _: None))
        by_id = rows(outcome)
        assert by_id[CL1_A]["action"] == "deleted"
        assert by_id[CL1_A]["note"].startswith("already-gone")
        assert {by_id[CL1_B]["action"], by_id[CL1_C]["action"]} == {"deleted"}
        assert not env.route_ids() & CL1_IDS
        assert outcome.exit_code == 0
        # The way back is what this tool deleted: the report's digest covers B and C only.
        restored = env.restore(tmp_path / "apply" / "report.json")
        assert restored.exit_code == 0, restored.error
        assert env.route_ids() & CL1_IDS == {CL1_B, CL1_C}


def test_404_on_delete_is_already_gone_but_only_when_a_read_agrees(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:

        class Racing(NsxClient):
            def delete_route(self, route_path: str, **kw: Any) -> bool:
                if route_path.endswith(CL1_A):
                    env.sim.nsx.remove_route(T1, CL1_A)  # gone for real: NSX answers 404
                return super().delete_route(route_path, **kw)

        env.sim.nsx.fail_hierarchical(times=1)
        env.sim.nsx.fail_delete(CL1_B, status=404, times=1)  # a 404 that is not true
        outcome = env.apply(nsx_factory=lambda s: Racing(s, sleep=lambda _: None))
        by_id = rows(outcome)
        assert by_id[CL1_A]["action"] == "deleted"
        assert by_id[CL1_A]["note"] == "already-gone: NSX answered 404 to the DELETE"
        assert by_id[CL1_B]["action"] == "delete-failed"
        assert "still present" in by_id[CL1_B]["error"]
        assert by_id[CL1_C]["action"] == "deleted"
        assert outcome.exit_code == 1


class MarkingNsx:
    """NSX whose deletes are asynchronous: a deleted route reads back marked_for_delete."""

    def __init__(self, routes: Sequence[Route], *, forget: bool = False) -> None:
        self.routes = {r.path: r for r in routes}
        self.forget = forget  # accept deletes but never act on them
        self.batches: list[list[Route]] = []

    def get_route(self, route_path: str) -> Route | None:
        return self.routes.get(route_path)

    def list_routes(self, router_path: str) -> list[Route]:
        # As if listed with include_mark_for_delete_objects: marked routes still show.
        return [r for r in self.routes.values() if r.router_path == router_path]

    def delete_route(self, route_path: str, *, allow_overwrite: bool = False) -> bool:
        raise NsxError("not expected")

    def hierarchical_delete(
        self,
        routes: Mapping[str, Sequence[Route]],
        *,
        allow_overwrite: bool = False,
    ) -> None:
        sent = [r for listed in routes.values() for r in listed]
        self.batches.append(sent)
        if self.forget:
            return
        for path, route in list(self.routes.items()):
            if route.id in {r.id for r in sent}:
                body = {**(route.nsx_object or {}), "marked_for_delete": True}
                self.routes[path] = Route(
                    route.router_path,
                    route.id,
                    route.path,
                    route.network,
                    route.next_hops,
                    route.tags,
                    revision=route.revision,
                    raw=json.dumps(body),
                )


def _orphans(n: int) -> list[RouteVerdict]:
    return [
        RouteVerdict(
            factory_route(f"{i:08d}-0000-4000-8000-000000000000", f"10.{i}.0.0/24", "10.255.0.1"),
            Verdict.ORPHANED,
            "node-gone",
            action=Action.DELETE,
        )
        for i in range(n)
    ]


def test_marked_for_delete_counts_as_gone_and_batches_respect_the_size() -> None:
    candidates = _orphans(5)
    nsx = MarkingNsx([v.route for v in candidates])
    results = Deleter(nsx, allow_overwrite=False, batch_size=2, sleep=lambda _: None).delete(
        candidates
    )
    assert [len(b) for b in nsx.batches] == [2, 2, 1]
    assert all(r.verdict.action is Action.DELETED for r in results)
    assert all(r.note and r.note.startswith("deleted: marked_for_delete") for r in results)


def test_a_route_still_there_after_an_accepted_delete_is_a_failure() -> None:
    candidates = _orphans(1)
    sleeps: list[float] = []
    nsx = MarkingNsx([v.route for v in candidates], forget=True)
    results = Deleter(nsx, allow_overwrite=False, sleep=sleeps.append).delete(candidates)
    assert results[0].verdict.action is Action.DELETE_FAILED
    assert results[0].error
    assert "still present" in results[0].error
    assert len(sleeps) == 2  # polled three times in all


# --- saved plan -----------------------------------------------------------------------------


def test_plan_deletes_exactly_its_routes_never_a_new_orphan(tmp_path: Path) -> None:
    with simulated(tmp_path, max_delete_percent=100) as env:
        plan = env.scan()
        late = new_cl1_orphan()
        env.sim.nsx.add_route(late)
        outcome = env.apply(plan)
        assert outcome.exit_code == 0
        by_id = rows(outcome)
        assert {rid for rid, r in by_id.items() if r["action"] == "deleted"} == CL1_IDS
        assert by_id[late.id]["action"] == "held"
        assert by_id[late.id]["hold_reason"].startswith("not-in-plan")
        assert late.id in env.route_ids()
        assert outcome.report is not None
        assert outcome.report["apply"]["plan_sha256"] == read(plan)["plan_sha256"]


def test_plan_drift_revision_bumped_and_route_deleted_meanwhile(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        plan = env.scan()
        env.sim.nsx.bump_revision(T1, CL1_A)
        env.sim.nsx.remove_route(T1, CL1_B)
        outcome = env.apply(plan)
        by_id = rows(outcome)
        assert by_id[CL1_A]["action"] == "held"
        assert by_id[CL1_A]["hold_reason"] == "changed-since-plan: _revision 0 in the plan, 1 now"
        assert by_id[CL1_B]["action"] == "deleted"
        assert by_id[CL1_B]["note"].startswith("already-gone")
        assert by_id[CL1_C]["action"] == "deleted"
        assert env.route_ids() & CL1_IDS == {CL1_A}
        assert outcome.exit_code == 1
        assert outcome.report is not None
        assert outcome.report["apply"] == {
            **outcome.report["apply"],
            "planned": 3,
            "deleted": 1,
            "already_gone": 1,
            "held": 1,
            "failed": 0,
        }


def test_second_apply_of_the_same_plan_is_harmless(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        plan = env.scan()
        assert env.apply(plan).exit_code == 0
        after_first = env.route_ids()
        env.sim.nsx.reset_counters()
        again = env.apply(plan, name="again")
        assert again.exit_code == 0
        assert env.route_ids() == after_first
        assert env.sim.nsx.counters["nsx_hierarchical"] == 0
        assert env.sim.nsx.counters["nsx_delete"] == 0
        assert again.report is not None
        assert again.report["apply"]["already_gone"] == 3


def test_plan_is_re_judged_with_the_current_policy(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        plan = env.scan()
        outcome = env.apply(plan, config=env.with_policy(protect_route_ids=(CL1_A,)))
        assert rows(outcome)[CL1_A]["hold_reason"].startswith("keep-list")
        assert CL1_A in env.route_ids()
        assert outcome.exit_code == 1


def test_plan_route_no_longer_orphaned_is_held(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        plan = env.scan()
        # cl1 is no longer declared retired: its routes are no longer proven orphaned.
        config = replace(env.config, retired_clusters=())
        outcome = env.apply(plan, config=config)
        held = [r for r in rows(outcome).values() if r["id"] in CL1_IDS]
        assert all(r["hold_reason"].startswith("no-longer-orphaned") for r in held)
        assert env.route_ids() >= CL1_IDS
        assert outcome.exit_code == 1


def test_plan_with_require_override_needs_allow_overwrite_now(tmp_path: Path) -> None:
    with simulated(tmp_path, "principal") as env:
        plan = env.scan(config=env.with_policy(allow_overwrite=True))
        outcome = env.apply(plan)
        assert {rows(outcome)[rid]["hold_reason"].split(":")[0] for rid in CL1_IDS} == {
            "protected-by-principal"
        }
        assert outcome.exit_code == 1
        assert env.route_ids() >= CL1_IDS


@pytest.mark.parametrize(
    ("policy", "reason"),
    [({"max_deletes": 2}, "max-deletes"), ({"max_delete_percent": 40.0}, "max-delete-percent")],
)
def test_plan_limits_are_applied_again(tmp_path: Path, policy: dict[str, Any], reason: str) -> None:
    with simulated(tmp_path) as env:
        plan = env.scan()
        outcome = env.apply(plan, config=env.with_policy(**policy))
        assert outcome.exit_code == 1
        assert env.route_ids() >= CL1_IDS
        assert outcome.report is not None
        assert outcome.report["limit_holds"][0]["reason"].startswith(reason)
        assert {rows(outcome)[rid]["hold_reason"].split(":")[0] for rid in CL1_IDS} == {reason}


def test_plan_router_outside_the_configured_routers_is_not_touched(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        plan = env.scan()
        nsx = replace(env.config.nsx, routers=("/infra/tier-1s/another",))
        outcome = env.apply(plan, config=replace(env.config, nsx=nsx))
        assert outcome.exit_code == 1
        assert {r["hold_reason"].split(":")[0] for r in rows(outcome).values()} == {"out-of-scope"}
        assert env.route_ids() >= CL1_IDS


def test_plan_router_that_cannot_be_listed_is_not_touched(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        plan = env.scan()
        env.sim.nsx.fail_list_page(T1, 0, status=400, times=10)
        outcome = env.apply(plan)
        assert outcome.exit_code == 1
        assert all(r["hold_reason"].startswith("not-rechecked") for r in rows(outcome).values())
        assert env.route_ids() >= CL1_IDS


@pytest.mark.parametrize("problem", ["other-host", "tampered", "old"])
def test_refused_plans_exit_2_and_touch_nothing(tmp_path: Path, problem: str) -> None:
    with simulated(tmp_path) as env:
        plan = env.scan()
        report = read(plan)
        kwargs: dict[str, Any] = {}
        if problem == "other-host":
            report["nsx"]["host"] = "nsx.other.example"
            report["plan_sha256"] = plan_sha256(
                "nsx.other.example",
                [deletion_key(r) for r in report["routes"] if r["action"] == "delete"],
            )
        elif problem == "tampered":
            live = next(r for r in report["routes"] if r["verdict"] == "live")
            live.update(action="delete", verdict="orphaned")
        else:
            report["finished_at"] = "2020-01-01T00:00:00Z"
        write(plan, report)
        env.sim.nsx.reset_counters()
        outcome = env.apply(plan, **kwargs)
        assert outcome.exit_code == 2
        assert outcome.error
        assert str(plan) in outcome.error
        assert sum(env.sim.nsx.counters.values()) == 0  # NSX was not even contacted
        if problem == "old":
            assert env.apply(plan, allow_old_plan=True).exit_code == 0


def test_declined_confirmation_deletes_nothing(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        with capture_logs() as logs:
            outcome = env.apply(confirm=lambda _counts: False)
        assert outcome.exit_code == 1
        assert outcome.error == "apply cancelled: nothing was deleted"
        assert env.route_ids() >= CL1_IDS
        assert [e["routes"] for e in logs if e["event"] == "apply.cancelled"] == [3]
        assert not [e for e in logs if e["event"] == "apply.no_report_dir"]
        assert env.sim.nsx.counters["nsx_hierarchical"] == 0


# --- the CLI ----------------------------------------------------------------------------


def _cli(*args: str) -> Any:
    return CliRunner().invoke(cli, ["--log-format", "json", *args])


def test_cli_without_terminal_and_without_yes_refuses_with_exit_2(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        env.sim.nsx.reset_counters()
        result = _cli("apply", "--config", str(env.config_path))
        assert result.exit_code == 2
        assert "--yes" in result.output
        assert sum(env.sim.nsx.counters.values()) == 0
        assert env.route_ids() >= CL1_IDS


def test_cli_apply_plan_with_yes(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        plan = env.scan()
        result = _cli(
            "apply",
            "--config",
            str(env.config_path),
            "--plan",
            str(plan),
            "--report-dir",
            str(tmp_path / "cli"),
            "--yes",
            "--batch-size",
            "2",
        )
        assert result.exit_code == 0, result.output
        assert not env.route_ids() & CL1_IDS
        assert read(tmp_path / "cli" / "report.json")["apply"]["batch_size"] == 2


def test_cli_rejects_a_bad_max_plan_age(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        plan = env.scan()
        args = ["apply", "-c", str(env.config_path), "--plan", str(plan), "--yes"]
        result = _cli(*args, "--max-plan-age", "soon")
        assert result.exit_code == 2
        assert "--max-plan-age" in result.output


def _on_a_terminal(config: Path, answer: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``apply`` with a pseudo-terminal as stdin, typing ``answer`` at the prompt."""
    primary, secondary = os.openpty()
    try:
        os.write(primary, f"{answer}\n".encode())
        return subprocess.run(
            [sys.executable, "-m", "nsx_route_gc", "apply", "--config", str(config), *extra],
            stdin=secondary,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(secondary)
        os.close(primary)


@pytest.mark.parametrize(("answer", "code"), [("n", 1), ("y", 0)])
def test_on_a_terminal_the_counts_are_shown_and_the_answer_decides(
    tmp_path: Path, answer: str, code: int
) -> None:
    with simulated(tmp_path) as env:
        result = _on_a_terminal(env.config_path, answer)
        assert result.returncode == code, result.stderr[-2000:]
        host = env.config.nsx.host
        assert f"About to delete on NSX manager {host}:" in result.stderr
        assert f"{T1}: 3 route(s)" in result.stderr
        assert "From this scan's plan, SHA-256 " in result.stderr
        assert f"Delete 3 route(s) on 1 router(s) of {host} (plan SHA-256 " in result.stderr
        assert bool(CL1_IDS & env.route_ids()) is (answer == "n")


def test_the_question_names_the_approved_plan_and_its_digest(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        plan = env.scan()
        digest = read(plan)["plan_sha256"]
        result = _on_a_terminal(
            env.config_path, "y", "--plan", str(plan), "--plan-sha256", digest, "--route", CL1_A
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert f"{T1}: 1 route(s)" in result.stderr
        assert f"From plan {plan}, SHA-256 {digest}" in result.stderr
        assert "These deletions alone: SHA-256 " in result.stderr
        assert f"Delete 1 route(s) on 1 router(s) of {env.config.nsx.host}" in result.stderr
        assert env.route_ids() & CL1_IDS == CL1_IDS - {CL1_A}


def test_a_refused_login_ends_an_apply_of_a_plan_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    """With a saved plan the routers come from the plan, not from NSX: the first listing is
    the login, tried once however many routers list at once; no report, exit 1."""
    with simulated(tmp_path) as env:
        plan = env.scan()
        env.sim.nsx.reset_counters()
        wrong = replace(env.config.nsx, password=Secret("not-the-password"))
        with capture_logs() as logs:
            outcome = env.apply(plan, config=replace(env.config, nsx=wrong))
        counters = dict(env.sim.nsx.counters)
        assert env.route_ids() >= CL1_IDS
    assert outcome.exit_code == 1
    assert outcome.report is None
    assert outcome.error is not None
    assert [e["error"] for e in logs if e["event"] == "run.failed"] == [outcome.error]
    assert "check nsx.username (NSXT_USERNAME)" in outcome.error
    assert counters == {"nsx_session": 1, "nsx_login_failed": 1}


def test_a_plan_that_is_not_the_approved_sha256_is_refused_before_any_call(
    tmp_path: Path,
) -> None:
    with simulated(tmp_path) as env:
        plan = env.scan()
        env.sim.nsx.reset_counters()
        outcome = env.apply(plan, plan_sha256="0" * 64)
        assert outcome.exit_code == 2
        assert outcome.error is not None
        assert "is not the approved --plan-sha256" in outcome.error
        assert sum(env.sim.nsx.counters.values()) == 0
        assert env.route_ids() >= CL1_IDS
        approved = read(plan)["plan_sha256"]
        done = env.apply(plan, plan_sha256=approved, name="approved")
        assert done.exit_code == 0
        assert not env.route_ids() & CL1_IDS


# --- the guards, one operator rule each (issue 16) -----------------------------------------

T2 = "/infra/tier-1s/tanzu-cl2"


def two_tier1s() -> Any:
    """The seed (three cl1 orphans among six managed routes on T1) plus a second Tier-1
    carrying cl2's three live routes and one cl1 orphan: 50% to delete on T1, 25% on T2,
    40% over the run."""
    scenario = load_scenario("seed")
    cl2 = scenario.clusters[0]
    scenario.tier1s.append(T2)
    assert scenario.config_routers is not None
    scenario.config_routers.append(T2)
    scenario.routes += [
        ccm_route(T2, n.uid, n.name, n.pod_cidrs[0], n.internal_ips[0]) for n in cl2.nodes
    ]
    scenario.routes.append(
        ccm_route(T2, GONE_UID, "cl1-md-0-late", "172.16.139.0/24", "172.16.128.40")
    )
    return scenario


@pytest.mark.parametrize("mode", ["fresh", "plan"])
def test_the_per_router_limit_counts_each_router_on_its_own(tmp_path: Path, mode: str) -> None:
    """max_delete_percent is a share of each router's managed routes: a router over it keeps
    all its routes even when the run as a whole is under it; a router under it is cleaned."""
    with simulated(tmp_path, two_tier1s(), max_delete_percent=100) as env:
        plan = env.scan() if mode == "plan" else None
        outcome = env.apply(plan, config=env.with_policy(max_delete_percent=40.0))
        assert env.route_ids(T1) >= CL1_IDS
        assert GONE_UID + "_172.16.139.0_24" not in env.route_ids(T2)
        assert outcome.exit_code == 1
        assert outcome.report is not None
        assert [
            (h["router"], h["reason"].split(":")[0]) for h in outcome.report["limit_holds"]
        ] == [(T1, "max-delete-percent")]


def test_a_route_changed_but_still_there_after_judgement_is_not_deleted(tmp_path: Path) -> None:
    """The batch carries each route's _revision: NSX refuses it when one changed, and that
    route is held while the others go."""
    with simulated(tmp_path) as env:

        def change(_counts: dict[str, int]) -> bool:
            env.sim.nsx.bump_revision(T1, CL1_A)
            return True

        outcome = env.apply(confirm=change)
        by_id = rows(outcome)
        assert CL1_A in env.route_ids()
        assert by_id[CL1_A]["action"] == "held"
        assert by_id[CL1_A]["hold_reason"].startswith("changed-since-plan")
        assert {by_id[CL1_B]["action"], by_id[CL1_C]["action"]} == {"deleted"}
        assert outcome.exit_code == 1


def test_after_a_refused_batch_a_route_that_cannot_be_re_read_is_not_deleted(
    tmp_path: Path,
) -> None:
    with simulated(tmp_path) as env:

        class Unreadable(NsxClient):
            def get_route(self, route_path: str) -> Route | None:
                if route_path.endswith(CL1_A):
                    raise NsxError(f"GET {route_path}: 503 Service Unavailable")
                return super().get_route(route_path)

        env.sim.nsx.fail_hierarchical(times=1)
        outcome = env.apply(nsx_factory=lambda s: Unreadable(s, sleep=lambda _: None))
        by_id = rows(outcome)
        assert CL1_A in env.route_ids()
        assert by_id[CL1_A]["action"] == "delete-failed"
        assert "re-read" in by_id[CL1_A]["error"]
        assert {by_id[CL1_B]["action"], by_id[CL1_C]["action"]} == {"deleted"}
        assert outcome.exit_code == 1


def _protect(env: Any, route_id: str, protection: str) -> None:
    """NSX's _protection changing without a new _revision (it is computed per caller)."""
    with env.sim.nsx.lock:
        env.sim.nsx.tier1s[T1].routes[route_id].protection = protection


@pytest.mark.parametrize(
    ("protection", "reason"),
    [("PROTECTED", "protected-by-nsx"), ("REQUIRE_OVERRIDE", "protected-by-principal")],
)
def test_a_route_that_became_protected_after_judgement_is_held(
    tmp_path: Path, protection: str, reason: str
) -> None:
    """The deleter checks _protection again on the route as it reads it back, and sends
    X-Allow-Overwrite only when policy.allow_overwrite says so (here it does not)."""
    with simulated(tmp_path) as env:

        def protect(_counts: dict[str, int]) -> bool:
            _protect(env, CL1_A, protection)
            return True

        outcome = env.apply(confirm=protect)
        by_id = rows(outcome)
        assert CL1_A in env.route_ids()
        assert by_id[CL1_A]["action"] == "held"
        assert by_id[CL1_A]["hold_reason"].startswith(reason)
        assert {by_id[CL1_B]["action"], by_id[CL1_C]["action"]} == {"deleted"}


def test_allow_overwrite_deletes_a_route_that_became_require_override(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:

        def protect(_counts: dict[str, int]) -> bool:
            _protect(env, CL1_A, "REQUIRE_OVERRIDE")
            return True

        outcome = env.apply(confirm=protect, config=env.with_policy(allow_overwrite=True))
        assert outcome.exit_code == 0, outcome.report and outcome.report["errors"]
        assert not env.route_ids() & CL1_IDS


def test_a_single_delete_does_not_override_a_principal_without_allow_overwrite(
    tmp_path: Path,
) -> None:
    """A route that turns REQUIRE_OVERRIDE between its re-read and its DELETE: without
    policy.allow_overwrite the DELETE goes without X-Allow-Overwrite, and NSX keeps it."""
    with simulated(tmp_path) as env:

        class Racing(NsxClient):
            def delete_route(self, route_path: str, **kw: Any) -> bool:
                if route_path.endswith(CL1_A):
                    _protect(env, CL1_A, "REQUIRE_OVERRIDE")
                return super().delete_route(route_path, **kw)

        env.sim.nsx.fail_hierarchical(times=1)
        outcome = env.apply(nsx_factory=lambda s: Racing(s, sleep=lambda _: None))
        assert CL1_A in env.route_ids()
        assert rows(outcome)[CL1_A]["action"] == "delete-failed"
        assert outcome.exit_code == 1


def test_an_unfinished_journal_stops_the_next_apply_unless_forced(tmp_path: Path) -> None:
    """An earlier apply died while deleting: its journal is the only way back, so the next
    apply deletes nothing and names it; --force keeps it aside (journal.<time>.jsonl)."""
    with simulated(tmp_path) as env:
        directory = tmp_path / "apply"
        directory.mkdir()
        journal = Journal.create(
            directory, run_id="died", nsx_host=env.config.nsx.host, clock=lambda: NOW
        )
        journal.close()
        env.sim.nsx.reset_counters()
        with capture_logs() as logs:
            refused = env.apply()
        assert refused.exit_code == 2
        assert refused.error is not None
        assert refused.error.startswith(f"{directory / JOURNAL_NAME}: unfinished journal")
        assert "--force" in refused.error
        assert env.route_ids() >= CL1_IDS
        assert sum(env.sim.nsx.counters.values()) == 0
        unfinished = [
            (e["journal"], e["journals"]) for e in logs if e["event"] == "apply.unfinished_journal"
        ]
        assert unfinished == [(str(directory / JOURNAL_NAME), 1)]
        with capture_logs() as logs:
            forced = env.apply(force=True)
        assert forced.exit_code == 0
        assert not env.route_ids() & CL1_IDS
        kept = [p.name for p in directory.glob("journal.*.jsonl")]
        assert len(kept) == 1
        set_aside = [
            (e["journal"], e["kept_as"])
            for e in logs
            if e["event"] == "apply.unfinished_journal_kept"
        ]
        assert set_aside == [(str(directory / JOURNAL_NAME), str(directory / kept[0]))]
        # The run ends with its summary line and returns the reports it wrote.
        (summary,) = [e for e in logs if e["event"] == "run.summary"]
        assert (summary["exit_code"], summary["action_deleted"]) == (0, 3)
        assert summary["nsx_concurrency_peak"] >= 1
        assert sorted(p.name for p in forced.paths) == ["report.csv", "report.json", "report.md"]
        assert not is_finished(directory / kept[0])
        assert is_finished(directory / JOURNAL_NAME)


# --- what the log, the journal and the report keep (issue 16: apply's survivors) ----------


def test_every_planned_route_and_limit_hold_is_in_the_log(tmp_path: Path) -> None:
    """The log is the way back when the report is lost: a planned route already gone is
    logged as deleted with its router and id, and a limit names the router it holds."""
    with simulated(tmp_path) as env:
        plan = env.scan()
        env.sim.nsx.remove_route(T1, CL1_B)
        with capture_logs() as logs:
            outcome = env.apply(plan, config=env.with_policy(max_delete_percent=10.0))
        assert outcome.exit_code == 1
    gone = [e for e in logs if e["event"] == "route.deleted"]
    assert [(e["router"], e["route"], e["note"]) for e in gone] == [(T1, CL1_B, "already-gone")]
    held = [e for e in logs if e["event"] == "router.deletions_held"]
    assert [(e["router"], e["reason"].split(":")[0]) for e in held] == [(T1, "max-delete-percent")]


def test_an_orphan_not_in_the_plan_is_held_naming_the_plan(tmp_path: Path) -> None:
    with simulated(tmp_path, max_delete_percent=100) as env:
        plan = env.scan()
        late = new_cl1_orphan()
        env.sim.nsx.add_route(late)
        outcome = env.apply(plan)
        reason = rows(outcome)[late.id]["hold_reason"]
        assert reason == f"not-in-plan: orphaned, but not approved in {plan}"


def test_max_deletes_allows_exactly_that_many_planned_deletions(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        plan = env.scan()
        outcome = env.apply(plan, config=env.with_policy(max_deletes=3))
        assert outcome.exit_code == 0, outcome.report and outcome.report["errors"]
        assert not env.route_ids() & CL1_IDS


def test_a_plan_row_held_out_of_scope_keeps_the_planned_route(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        plan = env.scan()
        report = read(plan)
        planned = {r["id"]: r for r in report["routes"]}
        # What a plan's row says beyond its key is not trusted: no error text, no odd types.
        planned[CL1_A].update(error="stale text", checked_clusters=None)
        plan.write_text(json.dumps(report))
        nsx = replace(env.config.nsx, routers=("/infra/tier-1s/another",))
        with capture_logs() as logs:
            outcome = env.apply(plan, config=replace(env.config, nsx=nsx))
        held = {e["route"]: e["reason"] for e in logs if e["event"] == "route.held"}
        assert held.keys() == CL1_IDS
        assert all(
            why.startswith(f"out-of-scope: {T1} is not in nsx.routers") for why in held.values()
        )
        for rid in CL1_IDS:
            row = rows(outcome)[rid]
            assert row["next_hops"] == planned[rid]["next_hops"] != []
            assert row["tags"] == planned[rid]["tags"] != []
            assert row["error"] is None
        assert rows(outcome)[CL1_A]["checked_clusters"] == []


def test_the_journal_names_run_manager_and_report_and_a_rerun_replaces_it(
    tmp_path: Path,
) -> None:
    """An apply into a report directory that does not exist yet creates it (however deep);
    its finished journal names the run, the NSX manager and the report it ends with; a
    second apply into the same directory replaces that finished journal."""
    with simulated(tmp_path) as env:
        first = env.apply(name="runs/a/b")
        directory = tmp_path / "runs" / "a" / "b"
        journal = read_journal(directory / JOURNAL_NAME)
        assert first.report is not None
        assert (journal.run_id, journal.nsx_host) == (first.report["run_id"], env.config.nsx.host)
        assert journal.finished
        end = json.loads((directory / JOURNAL_NAME).read_text().splitlines()[-1])
        assert end["report"] == "report.json"
        env.sim.nsx.add_route(new_cl1_orphan())
        second = env.apply(name="runs/a/b", config=env.with_policy(max_delete_percent=100))
        assert second.exit_code == 0
        assert second.report is not None
        assert read_journal(directory / JOURNAL_NAME).run_id == second.report["run_id"]
        assert list(directory.glob("journal.*.jsonl")) == []


def test_an_apply_without_a_report_directory_still_deletes_and_writes_nothing(
    tmp_path: Path,
) -> None:
    with simulated(tmp_path) as env:
        with capture_logs() as logs:
            outcome = run_apply(env.config, confirm=yes, nsx_factory=client, sleep=lambda _: None)
        assert outcome.exit_code == 0
        assert outcome.paths == []
        warned = [e["hint"] for e in logs if e["event"] == "apply.no_report_dir"]
        assert warned == ["deleted bodies are only in the logs"]
        assert env.sim.nsx.counters["nsx_session_destroy"] == 1  # logged out all the same
        assert not env.route_ids() & CL1_IDS
        assert sorted(p.name for p in tmp_path.iterdir()) == ["sim"]


def test_with_a_grace_period_of_exactly_five_minutes_the_search_confirms(tmp_path: Path) -> None:
    """Search vouches for routes at least OVERLAP_MIN_AGE old: at exactly that grace period
    one search confirms, no router is listed again."""
    with simulated(tmp_path, min_age="5m") as env:
        env.sim.nsx.reset_counters()
        outcome = env.apply()
        assert outcome.exit_code == 0
        assert env.sim.nsx.counters["nsx_list_routes"] == 1
        assert env.sim.nsx.counters["nsx_search"] == 1


def test_a_plan_is_rechecked_against_the_clusters_cluster_api_lists(tmp_path: Path) -> None:
    """apply --plan finds the clusters the way the scan did (here: Cluster API on the
    management cluster), so the planned orphan is still proven orphaned and deleted."""
    with simulated(tmp_path, "management") as env:
        plan = env.scan()
        planned = [r["id"] for r in read(plan)["routes"] if r["action"] == "delete"]
        assert len(planned) == 1
        outcome = env.apply(plan)
        assert outcome.exit_code == 0, outcome.report and outcome.report["errors"]
        assert planned[0] not in env.route_ids()


def test_a_fresh_apply_finds_the_clusters_cluster_api_lists_and_runs_at_its_clock(
    tmp_path: Path,
) -> None:
    """The CronJob's apply (no plan) discovers clusters as a scan does, judges at the run's
    own clock and cuts its deletions by --batch-size."""
    with simulated(tmp_path, "management") as env:
        planned = [r["id"] for r in read(env.scan())["routes"] if r["action"] == "delete"]
        at = datetime(2030, 1, 1, tzinfo=UTC)
        outcome = env.apply(clock=lambda: at, batch_size=1)
        assert outcome.exit_code == 0, outcome.report and outcome.report["errors"]
        assert outcome.report is not None
        assert planned
        assert not set(planned) & env.route_ids()
        assert outcome.report["started_at"].startswith("2030-01-01T00:00:00")
    with simulated(tmp_path / "b") as env:
        env.sim.nsx.reset_counters()
        outcome = env.apply(batch_size=1)
        assert outcome.exit_code == 0, outcome.report and outcome.report["errors"]
        assert env.sim.nsx.counters["nsx_hierarchical"] == 3


# --- the deleter's confirmations (issue 16: paths no test reached) -------------------------


def test_a_delete_refused_as_changed_is_held_when_it_cannot_be_read_back(
    tmp_path: Path,
) -> None:
    """NSX says the route changed, and the read that would tell more fails: the route is
    held (the conservative side), never counted as deleted."""
    with simulated(tmp_path) as env:
        refused: list[str] = []

        class Unreadable(NsxClient):
            def delete_route(self, route_path: str, **kw: Any) -> bool:
                try:
                    return super().delete_route(route_path, **kw)
                except NsxError:
                    refused.append(route_path)
                    raise

            def get_route(self, route_path: str) -> Route | None:
                if route_path in refused:
                    raise NsxError(f"GET {route_path}: 503 Service Unavailable")
                return super().get_route(route_path)

        env.sim.nsx.fail_hierarchical(times=1, status=400)
        env.sim.nsx.fail_next("nsx_delete", status=412, error_code=0)
        outcome = env.apply(nsx_factory=lambda s: Unreadable(s, sleep=lambda _: None))
        assert len(refused) == 1
        by_path = {r["path"]: r for r in rows(outcome).values()}
        assert by_path[refused[0]]["action"] == "held"
        assert by_path[refused[0]]["hold_reason"].startswith(
            "changed-since-plan: NSX refused the delete"
        )
        assert {
            r["action"] for p, r in by_path.items() if p != refused[0] and r["id"] in CL1_IDS
        } == {"deleted"}
        assert refused[0].rsplit("/", 1)[1] in env.route_ids()


def test_when_the_confirming_listing_fails_each_route_is_read_instead(tmp_path: Path) -> None:
    with simulated(tmp_path, min_age="4m") as env:
        lists: list[str] = []

        class FailingList(NsxClient):
            def list_routes(self, router_path: str) -> list[Route]:
                lists.append(router_path)
                if len(lists) > 1:  # the scan's listing passes, the confirming one fails
                    raise NsxError(f"GET {router_path}: 503 Service Unavailable")
                return super().list_routes(router_path)

        env.sim.nsx.reset_counters()
        with capture_logs() as logs:
            outcome = env.apply(nsx_factory=lambda s: FailingList(s, sleep=lambda _: None))
        assert outcome.exit_code == 0, outcome.report and outcome.report["errors"]
        assert {rows(outcome)[rid]["note"] for rid in CL1_IDS} == {"deleted: confirmed gone"}
        assert env.sim.nsx.counters["nsx_get"] == 3
        failed = [
            (e["router"], e["error"]) for e in logs if e["event"] == "router.confirm_list_failed"
        ]
        assert failed == [(T1, f"GET {T1}: 503 Service Unavailable")]


def test_a_deletion_is_confirmed_by_a_later_read_when_the_first_fails() -> None:
    candidates = _orphans(1)
    sleeps: list[float] = []

    class Flaky(MarkingNsx):
        def __init__(self, routes: Sequence[Route]) -> None:
            super().__init__(routes)
            self.reads = 0

        def hierarchical_delete(self, routes: Mapping[str, Sequence[Route]], **kw: Any) -> None:
            raise NsxError("batch refused")

        def delete_route(self, route_path: str, *, allow_overwrite: bool = False) -> bool:
            del self.routes[route_path]
            return True

        def get_route(self, route_path: str) -> Route | None:
            self.reads += 1
            if self.reads == 2:  # the first read after the DELETE
                raise NsxError(f"GET {route_path}: 503")
            return super().get_route(route_path)

    nsx = Flaky([v.route for v in candidates])
    results = Deleter(nsx, allow_overwrite=False, sleep=sleeps.append).delete(candidates)
    assert results[0].verdict.action is Action.DELETED
    assert results[0].note == "deleted: confirmed gone"
    assert sleeps == [1.0]


def test_a_deletion_never_confirmed_says_why() -> None:
    candidates = _orphans(1)

    class Blind(MarkingNsx):
        def hierarchical_delete(self, routes: Mapping[str, Sequence[Route]], **kw: Any) -> None:
            raise NsxError("batch refused")

        def delete_route(self, route_path: str, *, allow_overwrite: bool = False) -> bool:
            return True

        def get_route(self, route_path: str) -> Route | None:
            if getattr(self, "deleted", False):
                raise NsxError(f"GET {route_path}: 503")
            self.deleted = True
            return super().get_route(route_path)

    results = Deleter(
        Blind([v.route for v in candidates]), allow_overwrite=False, sleep=lambda _: None
    ).delete(candidates)
    assert results[0].verdict.action is Action.DELETE_FAILED
    assert (
        results[0].error == f"could not confirm the deletion: GET {candidates[0].route.path}: 503"
    )


def test_the_log_keeps_every_deleted_body_and_why_each_other_route_was_not(
    tmp_path: Path,
) -> None:
    """The log is the way back when the report is lost: each deleted route's full body, each
    held route's reason, each failed deletion's error, with router, route and network."""
    with simulated(tmp_path) as env:
        before = env.routes()
        env.sim.nsx.fail_hierarchical(times=1, status=400)
        env.sim.nsx.fail_delete(CL1_B, status=400, times=5)

        def drift(_counts: dict[str, int]) -> bool:
            env.sim.nsx.bump_revision(T1, CL1_A)
            return True

        with capture_logs() as logs:
            env.apply(confirm=drift)
    by_event = {
        e["route"]: e
        for e in logs
        if e["event"] in {"route.deleted", "route.held", "route.delete_failed"}
        and e.get("router") == T1
    }
    assert set(by_event) == CL1_IDS
    a, b, c = (by_event[rid] for rid in (CL1_A, CL1_B, CL1_C))
    assert (a["event"], a["reason"].split(":")[0]) == ("route.held", "changed-since-plan")
    assert (b["event"], "400" in b["error"]) == ("route.delete_failed", True)
    assert (c["event"], c["nsx_object"], c["note"]) == (
        "route.deleted",
        before[CL1_C],
        "deleted: confirmed gone",
    )
    assert {e["network"] for e in (a, b, c)} == {before[r]["network"] for r in CL1_IDS}
    assert a["log_level"] == "warning"
    assert b["log_level"] == "error"


def test_the_apply_report_says_which_plan_and_what_became_of_it(tmp_path: Path) -> None:
    """The report of an apply of a plan names the plan and when it was made, the run,
    manager and configuration, and one error line per kind of planned route not deleted;
    each route held before deleting is logged once with its reason."""
    with simulated(tmp_path) as env:
        plan = env.scan()
        env.sim.nsx.bump_revision(T1, CL1_A)  # changed since the plan: held before deleting
        env.sim.nsx.fail_hierarchical(times=1, status=400)
        env.sim.nsx.fail_delete(CL1_B, status=400, times=5)
        with capture_logs() as logs:
            outcome = env.apply(plan)
    assert outcome.report is not None
    done, planned = outcome.report, read(plan)
    assert done["apply"]["source"] == str(plan)
    assert done["apply"]["plan_finished_at"] is not None
    assert done["apply"]["plan_finished_at"].replace("+00:00", "Z") == planned["finished_at"]
    assert (done["nsx"]["host"], done["config"]) == (env.config.nsx.host, env.config.source)
    assert done["run_id"] not in {None, planned["run_id"]}
    assert planned["finished_at"] <= done["started_at"] <= done["finished_at"]
    assert done["errors"] == ["1 deletion(s) failed", "1 planned deletion(s) held"]
    held = [
        (e["router"], e["route"], e["reason"].split(":")[0])
        for e in logs
        if e["event"] == "route.held"
    ]
    assert held == [(T1, CL1_A, "changed-since-plan")]


def test_an_interrupt_while_deleting_sends_no_further_batch() -> None:
    """Ctrl-C (or SIGTERM) during a batch: that batch is NSX's business now, but no further
    batch is sent afterwards."""
    first = _orphans(2)
    other = "/infra/tier-1s/other"
    second = [
        RouteVerdict(
            factory_route(
                f"{i:08d}-0000-4000-8000-00000000000b", f"10.9.{i}.0/24", "10.255.0.1", router=other
            ),
            Verdict.ORPHANED,
            "node-gone",
            action=Action.DELETE,
        )
        for i in range(2)
    ]

    class Interrupted(MarkingNsx):
        def hierarchical_delete(self, routes: Mapping[str, Sequence[Route]], **kw: Any) -> None:
            self.batches.append([r for listed in routes.values() for r in listed])
            raise KeyboardInterrupt

    nsx = Interrupted([v.route for v in first + second])
    with pytest.raises(KeyboardInterrupt):
        Deleter(nsx, allow_overwrite=False, sleep=lambda _: None, workers=1, batch_size=2).delete(
            first + second
        )
    assert [[r.id for r in batch] for batch in nsx.batches] == [[v.route.id for v in first]]


def test_what_the_operator_is_asked_to_approve_is_what_the_report_records(
    tmp_path: Path,
) -> None:
    """The question names the digest the change ticket can compare: a fresh apply is asked
    with the digest of exactly its deletions (and no plan file), which the report repeats as
    deleted_sha256; an apply of a plan narrowed by --route is asked with the plan's own path
    and digest, beside the digest of the narrower deletions the report records."""
    asked: list[Proposal] = []

    def record(proposal: Proposal) -> bool:
        asked.append(proposal)
        return True

    with simulated(tmp_path / "fresh") as env:
        fresh = env.apply(confirm=record)
        assert fresh.report is not None, fresh.error
        first = asked.pop()
        assert (first.nsx_host, first.counts, first.plan) == (env.config.nsx.host, {T1: 3}, None)
        assert first.plan_sha256 == first.deleting_sha256
        assert first.deleting_sha256 == fresh.report["apply"]["deleted_sha256"]
    with simulated(tmp_path / "plan") as env:
        plan = env.scan()
        digest = read(plan)["plan_sha256"]
        with capture_logs() as logs:
            narrowed = env.apply(plan, confirm=record, plan_sha256=digest, route_ids=[CL1_A])
        assert narrowed.report is not None, narrowed.error
        loaded = [
            (e["plan"], e["plan_sha256"], e["deletions"], e["left_out"])
            for e in logs
            if e["event"] == "plan.loaded"
        ]
        assert loaded == [(str(plan), digest, 1, 2)]
        second = asked.pop()
        assert (second.plan, second.plan_sha256, second.counts) == (plan, digest, {T1: 1})
        assert second.deleting_sha256 != digest
        assert second.deleting_sha256 == narrowed.report["apply"]["deleted_sha256"]
        assert narrowed.report["apply"]["approved_sha256"] == digest
        assert narrowed.report["apply"]["targeted"] == [CL1_A]


def test_a_refused_plan_is_logged_naming_the_file_and_why(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        plan = env.scan()
        report = read(plan)
        report["finished_at"] = "2020-01-01T00:00:00Z"
        write(plan, report)
        with capture_logs() as logs:
            outcome = env.apply(plan)
    assert outcome.exit_code == 2
    refused = [e for e in logs if e["event"] == "plan.refused"]
    assert [(e["plan"], e["error"]) for e in refused] == [(str(plan), outcome.error)]


def test_max_plan_age_and_the_run_clock_decide_with_a_plan(tmp_path: Path) -> None:
    """A plan older than --max-plan-age is refused before NSX is contacted; within it, the
    plan is re-judged and reported at the run's own clock, not the wall clock."""
    with simulated(tmp_path) as env:
        plan = env.scan()
        made = datetime.fromisoformat(read(plan)["finished_at"].replace("Z", "+00:00"))
        later = made + timedelta(minutes=30)
        env.sim.nsx.reset_counters()
        too_old = env.apply(plan, clock=lambda: later, max_plan_age=timedelta(minutes=10))
        assert too_old.exit_code == 2
        assert sum(env.sim.nsx.counters.values()) == 0
        assert env.route_ids() >= CL1_IDS
        outcome = env.apply(plan, name="b", clock=lambda: later, max_plan_age=timedelta(hours=1))
        assert outcome.exit_code == 0, outcome.error
        assert outcome.report is not None
        for stamp in ("started_at", "finished_at"):
            assert datetime.fromisoformat(outcome.report[stamp].replace("Z", "+00:00")) == later
        assert not CL1_IDS & env.route_ids()


def test_an_apply_report_keeps_the_policy_and_the_nodes_without_their_route(
    tmp_path: Path,
) -> None:
    """An apply's report is as complete as its scan's: the policy in force and the live
    nodes whose route is missing are there too, not only the deletions."""
    with simulated(tmp_path, "missing-route") as env:
        scanned = read(env.scan())
        outcome = env.apply()
    assert outcome.report is not None, outcome.error
    assert scanned["nodes_without_route"]  # the scenario's point: there is one to report
    assert outcome.report["policy"] == scanned["policy"]

    def missing(report: Mapping[str, Any]) -> list[tuple[str, str, list[str]]]:
        # node_age_seconds moves with the clock between the two runs
        return [
            (m["cluster"], m["node"], m["missing_cidrs"]) for m in report["nodes_without_route"]
        ]

    assert missing(outcome.report) == missing(scanned)


def test_every_log_line_of_an_apply_names_its_mode_run_and_manager(tmp_path: Path) -> None:
    """Logs of many runs land in one place (the CronJob's): each line of an apply says it
    is an apply, of which run, against which manager."""
    with simulated(tmp_path) as env:
        code, _, err = cli_run(
            "apply", "--config", str(env.config_path), "--yes", "--report-dir", str(tmp_path / "a")
        )
        assert code == 0, err[-2000:]
        lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(e["event"] == "route.deleted" for e in lines)
    assert {(e["mode"], e["nsx"]) for e in lines} == {("apply", env.config.nsx.host)}
    assert len({e["run_id"] for e in lines}) == 1


def test_a_planned_route_gone_before_the_apply_still_completes_the_plan_digest(
    tmp_path: Path,
) -> None:
    """deleted_sha256 covers every approved route found gone, the ones NSX had already lost
    included: it equals the plan's digest when nothing approved is left."""
    with simulated(tmp_path) as env:
        plan = env.scan()
        env.sim.nsx.remove_route(T1, CL1_B)
        outcome = env.apply(plan)
        assert outcome.exit_code == 0, outcome.error
        assert outcome.report is not None
        assert rows(outcome)[CL1_B]["note"].startswith("already-gone")
        assert outcome.report["apply"]["deleted_sha256"] == read(plan)["plan_sha256"]
        # The way back covers what this tool deleted, and the report's digest says so.
        restored = env.restore(tmp_path / "apply" / "report.json")
        assert restored.exit_code == 0, restored.error
        assert env.route_ids() & CL1_IDS == {CL1_A, CL1_C}


def test_an_apply_interrupted_while_deleting_names_its_journal_and_leaves_it_unfinished(
    tmp_path: Path,
) -> None:
    """Ctrl-C (or SIGTERM) while a batch is out: the run stops, says where its journal is,
    and the journal stays unfinished, the way back for what was sent."""

    class Interrupted(NsxClient):
        def hierarchical_delete(self, routes: Mapping[str, Sequence[Route]], **kw: Any) -> None:
            raise KeyboardInterrupt

    with simulated(tmp_path) as env, capture_logs() as logs, pytest.raises(KeyboardInterrupt):
        env.apply(nsx_factory=lambda s: Interrupted(s, sleep=lambda _: None))
    journal = tmp_path / "apply" / JOURNAL_NAME
    assert [e["journal"] for e in logs if e["event"] == "apply.interrupted"] == [str(journal)]
    assert journal.is_file()
    assert not is_finished(journal)


def test_an_apply_pushes_its_metrics_when_a_pushgateway_is_configured(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    with simulated(tmp_path) as env:
        config, pushed = pushgateway(httpserver, env.config)
        assert env.apply(config=config).exit_code == 0
    assert pushed
    assert all(path.startswith(f"/metrics/job/{config.metrics.job}") for path in pushed)
