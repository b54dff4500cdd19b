"""restore --from DIR: the report when the run finished, the journal when it died first;
gzip reports through apply --plan and restore; schema 1 plans and apply reports still read
(issue 13)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from applykit import CL1_IDS, T1, Env, client, read, rows, simulated
from structlog.testing import capture_logs
from typer.testing import CliRunner

from nsx_route_gc.cli import cli
from nsx_route_gc.errors import PlanError
from nsx_route_gc.models import Route
from nsx_route_gc.reports.journal import JOURNAL_NAME, Journal, is_finished, read_journal
from nsx_route_gc.reports.rows import fill_rows
from nsx_route_gc.runs import frame
from nsx_route_gc.runs.restore_from import choose_source, deleted_rows

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def test_a_finished_apply_leaves_a_finished_journal_and_restores_from_its_report(
    tmp_path: Path,
) -> None:
    with simulated(tmp_path) as env:
        original = env.routes()
        outcome = env.apply(env.scan())
        assert outcome.exit_code == 0
        directory = tmp_path / "apply"
        journal = read_journal(directory / JOURNAL_NAME)
        assert journal.finished
        assert outcome.report is not None
        assert journal.run_id == outcome.report["run_id"]
        assert {e.id for e in journal.entries} == CL1_IDS
        assert {e.outcome for e in journal.entries} == {"deleted"}
        assert choose_source(directory) == directory / "report.json"
        restored = env.restore(directory)
        assert restored.exit_code == 0
        assert set(rows(restored)) == CL1_IDS
        assert env.routes().keys() == original.keys()


def test_restore_from_dir_uses_the_journal_when_the_run_died_before_its_report(
    tmp_path: Path,
) -> None:
    with simulated(tmp_path) as env:
        original = env.routes()
        env.apply(env.scan(), name="earlier")  # a finished run: its report stays behind
        env.restore(tmp_path / "earlier", name="back")
        assert env.routes().keys() == original.keys()
        directory = tmp_path / "earlier"
        (directory / JOURNAL_NAME).unlink()
        # A run that died after sending one batch: the journal, no report of its own.
        with client(env.config.nsx) as nsx:
            listed = {r.id: r for r in nsx.list_routes(T1)}
        journal = Journal.create(
            directory, run_id="died", nsx_host=env.config.nsx.host, clock=lambda: NOW
        )
        victims = [listed[i] for i in sorted(CL1_IDS)]
        journal.sending(victims, via="hierarchical")
        journal.close()
        for route in victims:
            env.sim.nsx.remove_route(T1, route.id)
        assert not CL1_IDS & env.route_ids()
        assert choose_source(directory) == directory / JOURNAL_NAME
        outcome = env.restore(directory)
        assert outcome.exit_code == 0, outcome.report and outcome.report["errors"]
        assert {rid for rid, r in rows(outcome).items() if r["note"] == "restored"} == CL1_IDS
        assert env.routes().keys() == original.keys()
        assert not is_finished(directory / JOURNAL_NAME)


def test_gzip_reports_round_trip_through_apply_plan_and_restore(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        original = env.routes()
        outcome = app_scan(env, tmp_path / "scan")
        assert outcome == 0
        plan = tmp_path / "scan" / "report.json.gz"
        assert plan.is_file()
        assert not (tmp_path / "scan" / "report.json").exists()
        applied = env.apply(plan, compress=True)
        assert applied.exit_code == 0, applied.report and applied.report["errors"]
        assert not CL1_IDS & env.route_ids()
        report = tmp_path / "apply" / "report.json.gz"
        assert json.loads(gzip.decompress(report.read_bytes()))["mode"] == "apply"
        for source in (report, tmp_path / "apply"):
            assert choose_source(source) == report
        restored = env.restore(tmp_path / "apply")
        assert restored.exit_code == 0
        assert env.routes().keys() == original.keys()


def app_scan(env: Env, directory: Path) -> int:
    """The kit's scan, with --gzip."""
    outcome = frame.run_scan(env.config, report_dir=directory, nsx_factory=client, compress=True)
    return outcome.exit_code


def as_schema_1(path: Path) -> None:
    """A report rewritten as schema 1 wrote it: every field on every row (null ones, the
    path, the checked clusters by name), rows spaced out."""
    doc = read(path)
    assert doc["schema_version"] == 2
    fill_rows(doc["routes"], doc["clusters"])
    doc["schema_version"] = 1
    path.write_text(json.dumps(doc, indent=2))


def test_a_schema_1_plan_and_apply_report_are_still_applied_and_restored(
    tmp_path: Path,
) -> None:
    with simulated(tmp_path) as env:
        original = env.routes()
        plan = env.scan()
        as_schema_1(plan)
        outcome = env.apply(plan)
        assert outcome.exit_code == 0, outcome.report and outcome.report["errors"]
        assert not CL1_IDS & env.route_ids()
        as_schema_1(tmp_path / "apply" / "report.json")
        restored = env.restore(tmp_path / "apply")
        assert restored.exit_code == 0, restored.report and restored.report["errors"]
        assert set(rows(restored)) == CL1_IDS
        assert env.routes().keys() == original.keys()


def test_an_empty_directory_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(
        PlanError, match=re.escape("no report.json, report.json.gz or journal.jsonl")
    ):
        deleted_rows(tmp_path, nsx_host="nsx.example.com")
    (tmp_path / "run-20261130T030000Z").mkdir()
    with pytest.raises(PlanError, match=r"name one, e\.g\. .*run-20261130T030000Z"):
        deleted_rows(tmp_path, nsx_host="nsx.example.com")


def test_a_journal_of_another_manager_is_refused(tmp_path: Path) -> None:
    Journal.create(tmp_path, run_id="r", nsx_host="other.example.com", clock=lambda: NOW).close()
    with pytest.raises(PlanError, match=re.escape("made against NSX manager other.example.com")):
        deleted_rows(tmp_path, nsx_host="nsx.example.com")


def test_cli_keep_runs_writes_run_directories_and_keeps_the_newest(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        base = tmp_path / "reports"
        for _ in range(3):
            result = CliRunner().invoke(
                cli,
                ["scan", "--config", str(env.config_path), "--report-dir", str(base),
                 "--keep-runs", "2"],
            )  # fmt: skip
            assert result.exit_code == 0, result.output
        kept = sorted(p.name for p in base.iterdir())
        assert len(kept) == 2
        assert all(name.startswith("run-") for name in kept)
        assert all((base / name / "report.json").is_file() for name in kept)
        usage = CliRunner().invoke(
            cli, ["scan", "--config", str(env.config_path), "--keep-runs", "2"]
        )
        assert usage.exit_code == 2
        assert "--keep-runs needs --report-dir" in usage.output


def test_a_refused_batch_and_its_fallback_are_journaled(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        env.sim.nsx.fail_hierarchical(times=1, status=400)
        first = sorted(CL1_IDS)[0]
        outcome = env.apply(env.scan())
        assert outcome.exit_code == 0, outcome.report and outcome.report["errors"]
        path = tmp_path / "apply" / JOURNAL_NAME
        records = [json.loads(line) for line in path.read_text().splitlines()]
        sends = [r for r in records if r["event"] == "send"]
        assert [r["via"] for r in sends] == ["hierarchical"] * 3 + ["delete"] * 3
        assert {r["id"] for r in sends if r["via"] == "delete"} == CL1_IDS
        assert all(r["nsx_object"]["id"] == r["id"] for r in sends)
        outcomes = [(r["id"], r["outcome"]) for r in records if r["event"] == "outcome"]
        assert (first, "refused") in outcomes
        assert records[-1]["event"] == "end"
        # Each route's last outcome counts: deleted by the one-by-one fallback.
        assert {e.outcome for e in read_journal(path).entries} == {"deleted"}
        assert len({r["batch"] for r in sends}) == 4  # one batch, then three single DELETEs


# --- issue 13: a journal gets the checks a report gets -------------------------------------


def died_with(
    env: Env, directory: Path, *, gone: frozenset[str] = frozenset(), **retarget: str
) -> None:
    """A journal of a run that died after sending the cl1 routes; ``gone``: answered
    already-gone; ``retarget``: route id -> router path written into the journal."""
    directory.mkdir(parents=True, exist_ok=True)
    with client(env.config.nsx) as nsx:
        listed = {r.id: r for r in nsx.list_routes(T1)}
    victims = [
        dataclasses.replace(listed[i], router_path=retarget.get(i, T1)) for i in sorted(CL1_IDS)
    ]
    journal = Journal.create(
        directory, run_id="died", nsx_host=env.config.nsx.host, clock=lambda: NOW
    )
    batch = journal.sending(victims, via="hierarchical")
    journal.outcome(batch, [(r, "gone", "already-gone: ...") for r in victims if r.id in gone])
    journal.close()
    for route in victims:
        env.sim.nsx.remove_route(T1, route.id)


def test_a_route_the_journal_shows_already_gone_is_never_created(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        first, *rest = sorted(CL1_IDS)
        died_with(env, tmp_path / "died", gone=frozenset({first}))
        outcome = env.restore(tmp_path / "died")
        assert outcome.exit_code == 0, outcome.error
        assert set(rows(outcome)) == set(rest)
        assert env.route_ids() & CL1_IDS == set(rest)


def test_a_journal_naming_a_tier0_is_refused_before_any_call(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        first = sorted(CL1_IDS)[0]
        died_with(env, tmp_path / "died", **{first: "/infra/tier-0s/t0"})
        env.sim.nsx.reset_counters()
        outcome = env.restore(tmp_path / "died")
        assert outcome.exit_code == 2
        assert outcome.error is not None
        assert "'/infra/tier-0s/t0' is not a Tier-1 policy path" in outcome.error
        assert sum(env.sim.nsx.counters.values()) == 0


def test_plan_sha256_cannot_approve_a_journal(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        died_with(env, tmp_path / "died")
        outcome = env.restore(tmp_path / "died", plan_sha256="0" * 64)
        assert outcome.exit_code == 2
        assert outcome.error is not None
        assert "a journal has no restore_sha256 to approve" in outcome.error


def test_a_duplicate_key_in_a_journal_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_NAME
    path.write_text('{"event": "start", "event": "start"}\n')
    with pytest.raises(PlanError, match="duplicate key 'event'"):
        read_journal(path)


# --- issue 16: what restore --from takes from a journal ----------------------------------


def _died(env: Env, directory: Path, ids: list[str]) -> None:
    """A run that sent one batch of ``ids`` and died: the journal, no report."""
    directory.mkdir(parents=True, exist_ok=True)
    with client(env.config.nsx) as nsx:
        listed = {r.id: r for r in nsx.list_routes(T1)}
    journal = Journal.create(
        directory, run_id="died", nsx_host=env.config.nsx.host, clock=lambda: NOW
    )
    victims = [listed[i] for i in ids]
    number = journal.sending(victims, via="hierarchical")
    journal.outcome(number, [(victims[0], "held-changed", "changed-since-plan")])
    journal.close()
    for route in victims[1:]:
        env.sim.nsx.remove_route(T1, route.id)


def test_a_journal_gives_back_the_routes_as_sent_and_never_one_proven_kept(
    tmp_path: Path,
) -> None:
    with simulated(tmp_path) as env:
        original = env.routes()
        kept, *sent = sorted(CL1_IDS)
        _died(env, tmp_path / "died", [kept, *sent])
        outcome = env.restore(tmp_path / "died")
        assert outcome.exit_code == 0, outcome.report and outcome.report["errors"]
        by_id = rows(outcome)
        assert set(by_id) == set(sent)  # the held one was never deleted: nothing to restore
        for rid in sent:
            row, body = by_id[rid], original[rid]
            assert row["path"] == f"{T1}/static-routes/{rid}"
            assert row["display_name"] == body["display_name"]
            assert row["network"] == body["network"]
            assert row["next_hops"] == [h["ip_address"] for h in body["next_hops"]]
            assert row["tags"] == body["tags"]
            assert row["revision"] == body["_revision"]
            assert row["protection"] == body["_protection"]
            assert row["verdict"] == "orphaned"
            assert row["note"] == "restored"
        assert env.routes().keys() == original.keys()


def test_a_directory_whose_report_is_gone_falls_back_to_its_finished_journal(
    tmp_path: Path,
) -> None:
    with simulated(tmp_path) as env:
        env.apply(env.scan())
        directory = tmp_path / "apply"
        (directory / "report.json").unlink()
        assert choose_source(directory) == directory / JOURNAL_NAME
        found = deleted_rows(directory, nsx_host=env.config.nsx.host)
        assert {r["id"] for r in found.rows} == CL1_IDS
        assert {(r["revision"], r["protection"], r["action"]) for r in found.rows} == {
            (0, "NOT_PROTECTED", "deleted")
        }
        assert {r["note"].split(":")[0] for r in found.rows} == {
            f"from the journal of run {read_journal(directory / JOURNAL_NAME).run_id}"
        }


def test_the_hint_names_the_newest_run_directory(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"journal\.jsonl in this directory$"):
        deleted_rows(tmp_path, nsx_host="nsx.example.com")
    for name in ("run-20261130T030000Z", "run-20261130T040000Z", "run-20261129T230000Z"):
        (tmp_path / name).mkdir()
    with pytest.raises(PlanError, match=r"e\.g\. .*run-20261130T040000Z\)$"):
        deleted_rows(tmp_path, nsx_host="nsx.example.com")


def test_journal_rows_take_only_what_the_body_proves(tmp_path: Path) -> None:
    """A journal is read back defensively: next hops and tags that are not lists become
    empty lists, a tag without scope or value has it empty, a route sent without an answer
    recorded says so."""
    body = {
        "id": "r1",
        "network": "10.1.0.0/24",
        "next_hops": 5,
        "tags": [{"tag": "t"}, {"scope": "s"}],
        "_revision": 4,
    }
    odd = Route(
        T1, "r1", f"{T1}/static-routes/r1", "10.1.0.0/24", (), (), revision=4, raw=json.dumps(body)
    )
    no_tags = {**body, "id": "r2", "next_hops": [{"ip_address": "10.9.9.9"}, "x"], "tags": 7}
    other = Route(
        T1, "r2", f"{T1}/static-routes/r2", "10.2.0.0/24", (), (), raw=json.dumps(no_tags)
    )
    journal = Journal.create(tmp_path, run_id="died", nsx_host="nsx.example.com", clock=lambda: NOW)
    journal.sending([odd, other], via="hierarchical")
    journal.close()
    with capture_logs() as logs:
        found = deleted_rows(tmp_path, nsx_host="nsx.example.com")
    assert (found.source, found.nsx_host, found.from_journal) == (
        tmp_path / JOURNAL_NAME,
        "nsx.example.com",
        True,
    )
    assert [(e["source"], e["routes"]) for e in logs if e["event"] == "restore.source"] == [
        (str(tmp_path / JOURNAL_NAME), 2)
    ]
    first, second = found.rows
    assert (first["next_hops"], first["tags"]) == (
        [],
        [{"scope": "", "tag": "t"}, {"scope": "s", "tag": ""}],
    )
    assert (second["next_hops"], second["tags"]) == (["10.9.9.9"], [])
    assert first["checked_clusters"] == second["checked_clusters"] == []
    assert first["note"] == "from the journal of run died: sent, no answer recorded"


def test_a_report_of_another_manager_is_refused_naming_the_file(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        env.apply(env.scan())
        report = tmp_path / "apply" / "report.json"
        with capture_logs() as logs:
            found = deleted_rows(tmp_path / "apply", nsx_host=env.config.nsx.host)
        assert [(e["source"], e["routes"]) for e in logs if e["event"] == "restore.source"] == [
            (str(report), 3)
        ]
        assert found.source == report
        with pytest.raises(PlanError, match=f"^{re.escape(str(report))}: made against"):
            deleted_rows(report, nsx_host="nsx-b.example.com")


@pytest.mark.parametrize("apply_section", ["not a mapping", {"restore_sha256": 5}])
def test_a_report_whose_digest_is_unreadable_has_none(
    tmp_path: Path, apply_section: object
) -> None:
    with simulated(tmp_path) as env:
        env.apply(env.scan())
        report = tmp_path / "apply" / "report.json"
        doc = read(report)
        doc["apply"] = apply_section
        report.write_text(json.dumps(doc))
        found = deleted_rows(report, nsx_host=env.config.nsx.host)
        assert found.recorded_sha256 is None
        assert {r["id"] for r in found.rows} == CL1_IDS
