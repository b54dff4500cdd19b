"""A saved scan report read back as a plan: every way it can be refused, and what it yields."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from factories import NOW, T1, ccm_route, foreign_route
from nsx_route_gc.errors import PlanError
from nsx_route_gc.models import Action, Plan, RouterListing, RouteVerdict, Verdict, plan_sha256
from nsx_route_gc.reports import saved_plan
from nsx_route_gc.reports.files import to_json
from nsx_route_gc.reports.rows import RunInfo, build_report, deletion_key
from nsx_route_gc.reports.saved_plan import host_key, load_plan

HOST = "nsx.example.com"
ORPHAN = ccm_route("11111111-0000-4000-8000-000000000001", "172.16.136.0/24", "172.16.128.63")
LIVE = ccm_route("22222222-0000-4000-8000-000000000002", "172.16.144.0/24", "172.16.128.71")


def scan_report(finished_at_offset: timedelta = timedelta(0)) -> dict[str, Any]:
    verdicts = (
        RouteVerdict(ORPHAN, Verdict.ORPHANED, "node-gone", action=Action.DELETE),
        RouteVerdict(LIVE, Verdict.LIVE, "node-live"),
        RouteVerdict(foreign_route(), Verdict.FOREIGN, "not-managed"),
    )
    routes = tuple(v.route for v in verdicts)
    plan = Plan((RouterListing(T1, routes),), (), verdicts)
    info = RunInfo("scan", NOW - timedelta(minutes=1), NOW + finished_at_offset, HOST, "cfg")
    # As it lies on disk: plain JSON that the tests below edit the way a person could.
    loaded: dict[str, Any] = json.loads(to_json(build_report(info, plan)))
    return loaded


def save(tmp_path: Path, report: dict[str, Any] | str) -> Path:
    path = tmp_path / "report.json"
    path.write_text(report if isinstance(report, str) else json.dumps(report))
    return path


def redigest(report: dict[str, Any]) -> dict[str, Any]:
    """What someone editing the file carefully would do: recompute the digest too."""
    planned = [deletion_key(r) for r in report["routes"] if r["action"] == "delete"]
    report["plan_sha256"] = plan_sha256(report["nsx"]["host"], planned)
    return report


def load(path: Path, **kw: Any) -> Any:
    return load_plan(path, nsx_host=kw.pop("host", HOST), now=kw.pop("now", NOW), **kw)


def test_a_fresh_plan_yields_exactly_its_deletions(tmp_path: Path) -> None:
    plan = load(save(tmp_path, scan_report()))
    assert [(d.router_path, d.id, d.revision, d.network) for d in plan.deletions] == [
        (T1, ORPHAN.id, 0, "172.16.136.0/24")
    ]
    assert plan.deletions[0].path == ORPHAN.path
    assert plan.deletions[0].nsx_object == ORPHAN.nsx_object
    assert plan.routers == [T1]
    assert plan.nsx_host == HOST


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [("nsx.example.com", "NSX.example.com:443"), ("https://nsx.example.com/", "nsx.example.com")],
)
def test_host_spellings_of_one_manager_compare_equal(ours: str, theirs: str) -> None:
    assert host_key(ours) == host_key(theirs)


def test_another_nsx_host_is_refused(tmp_path: Path) -> None:
    path = save(tmp_path, scan_report())
    with pytest.raises(PlanError, match=r"made against NSX manager nsx.example.com.*nsx-b"):
        load(path, host="nsx-b.example.com")


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: r["routes"][0].update(revision=7),
        lambda r: r["routes"][1].update(action="delete", verdict="orphaned"),
        lambda r: r["routes"][0].update(action="none"),
        lambda r: r["routes"][0].update(id=LIVE.id),
        lambda r: r.update(plan_sha256="0" * 64),
    ],
    ids=["revision", "added", "removed", "other-id", "digest"],
)
def test_a_tampered_plan_is_refused(tmp_path: Path, edit: Any) -> None:
    report = scan_report()
    edit(report)
    with pytest.raises(PlanError, match="plan_sha256 does not match"):
        load(save(tmp_path, report))


def test_a_path_naming_another_route_is_refused_even_with_a_good_digest(tmp_path: Path) -> None:
    report = scan_report()
    report["routes"][0]["path"] = LIVE.path
    with pytest.raises(PlanError, match="does not match"):
        load(save(tmp_path, redigest(report)))


def test_a_deletion_of_a_route_not_judged_orphaned_is_refused(tmp_path: Path) -> None:
    report = scan_report()
    report["routes"][1]["action"] = "delete"
    with pytest.raises(PlanError, match="verdict is 'live'"):
        load(save(tmp_path, redigest(report)))


def test_a_route_listed_twice_is_refused(tmp_path: Path) -> None:
    report = scan_report()
    report["routes"].append(dict(report["routes"][0]))
    with pytest.raises(PlanError, match="listed twice"):
        load(save(tmp_path, redigest(report)))


def test_a_plan_older_than_max_age_is_refused_unless_allowed(tmp_path: Path) -> None:
    path = save(tmp_path, scan_report())
    later = NOW + timedelta(hours=25)
    with pytest.raises(PlanError, match=r"older than --max-plan-age 24.0h.*--allow-old-plan"):
        load(path, now=later)
    assert load(path, now=later, allow_old=True).deletions
    assert load(path, now=later, max_age=timedelta(hours=26)).deletions


def test_a_plan_from_the_future_is_refused(tmp_path: Path) -> None:
    path = save(tmp_path, scan_report(finished_at_offset=timedelta(hours=2)))
    with pytest.raises(PlanError, match="in the future"):
        load(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        (json.dumps({"schema_version": 3, "mode": "scan"}), "schema_version 3"),
        (json.dumps({"schema_version": 1, "mode": "apply"}), "a 'apply' report"),
        (json.dumps({"schema_version": 1, "mode": "scan"}), "missing nsx.host"),
        (json.dumps({"schema_version": 1, "mode": "scan", "nsx": {"host": HOST}}), "routes"),
    ],
)
def test_malformed_reports_are_refused_in_one_line_naming_the_file(
    tmp_path: Path, content: str, message: str
) -> None:
    path = save(tmp_path, content)
    with pytest.raises(PlanError, match=message) as caught:
        load(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("id", None, r"routes\[0\].id missing"),
        ("revision", "3", "revision is not a whole number"),
        ("router_path", "/infra/tier-0s/t0", "not a Tier-1 policy path"),
        ("nsx_object", [1], "nsx_object is not an object"),
    ],
)
def test_bad_rows_are_refused(tmp_path: Path, field: str, value: object, message: str) -> None:
    report = scan_report()
    report["routes"][0][field] = value
    if field == "router_path":
        report["routes"][0]["path"] = f"{value}/static-routes/{ORPHAN.id}"
    with pytest.raises(PlanError, match=message):
        load(save(tmp_path, redigest(report) if field != "id" else report))


def test_missing_file_and_missing_finished_at(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="cannot read"):
        load(tmp_path / "nope.json")
    report = scan_report()
    del report["finished_at"]
    with pytest.raises(PlanError, match="finished_at missing"):
        load(save(tmp_path, report))


# --- issue 13: a plan gets the checks restore gets ------------------------------------------


def orphan_row(report: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = next(r for r in report["routes"] if r["action"] == "delete")
    return row


def test_a_duplicate_key_in_a_plan_is_refused(tmp_path: Path) -> None:
    text = json.dumps(scan_report())
    text = text.replace('"mode": "scan"', '"mode": "scan", "mode": "scan"', 1)
    with pytest.raises(PlanError, match=r"report.json: duplicate key 'mode' in one object$"):
        load(save(tmp_path, text))


def test_a_plan_nested_100k_deep_is_one_line(tmp_path: Path) -> None:
    text = json.dumps(scan_report())
    deep = "[" * 100_000 + "]" * 100_000
    text = text.replace('"mode": "scan"', f'"x": {deep}, "mode": "scan"', 1)
    with pytest.raises(PlanError, match=r"report.json: JSON nested deeper than 64 levels$"):
        load(save(tmp_path, text))


def test_an_endless_plan_is_refused_after_a_bounded_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real limit is 1 GiB; a small one proves the read stops at it without reading one.
    monkeypatch.setattr(saved_plan, "MAX_REPORT", 4096)
    with pytest.raises(PlanError, match=r"^/dev/zero: larger than 4096 bytes"):
        load_plan(Path("/dev/zero"), nsx_host=HOST, now=NOW, max_age=timedelta(hours=1))


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        ({"router_path": "/infra/tier-0s/t0"}, "is not a Tier-1 policy path"),
        ({"router_path": "/infra"}, "is not a Tier-1 policy path"),
        ({"router_path": "/infra/tier-1s/t1/../../tier-0s/t0"}, "is not a Tier-1 policy path"),
        ({"id": "..", "path": None}, "not a plain static route id"),
        ({"id": "a?b=c", "path": None}, "not a plain static route id"),
        ({"network": "0.0.0.0/0"}, "nsx_object's network is not the row's 0.0.0.0/0"),
        ({"next_hops": ["6.6.6.6"]}, "nsx_object's next hops are not the row's"),
        ({"network": "not-a-cidr"}, "network missing or not a CIDR"),
    ],
)
def test_a_planned_row_that_is_not_a_plain_tier1_route_is_refused(
    tmp_path: Path, edit: dict[str, Any], why: str
) -> None:
    report = scan_report()
    orphan_row(report).update(edit)
    with pytest.raises(PlanError, match=why.replace("?", r"\?").replace(".", r"\.")):
        load(save(tmp_path, redigest(report)))


def test_a_body_of_another_route_is_refused(tmp_path: Path) -> None:
    report = scan_report()
    orphan_row(report)["nsx_object"]["id"] = LIVE.id
    with pytest.raises(PlanError, match="nsx_object is not this route's body"):
        load(save(tmp_path, redigest(report)))


def test_the_approved_sha256_must_be_the_plans(tmp_path: Path) -> None:
    report = scan_report()
    path = save(tmp_path, report)
    assert load(path, approved_sha256=report["plan_sha256"]).plan_sha256 == report["plan_sha256"]
    assert load(path, approved_sha256=report["plan_sha256"].upper()).deletions
    with pytest.raises(PlanError, match="is not the approved --plan-sha256"):
        load(path, approved_sha256="0" * 64)
    with pytest.raises(PlanError, match="is not a SHA-256"):
        load(path, approved_sha256="abc")


def _whole_document_digest(nsx_host: str, deleted: list[tuple[str, str, object]]) -> str:
    """restore_sha256 as first defined: the whole document dumped, then hashed."""
    body = {
        "nsx_host": nsx_host,
        "deleted": sorted(
            [router, rid, json.dumps(obj, sort_keys=True, separators=(",", ":"))]
            for router, rid, obj in deleted
        ),
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@pytest.mark.parametrize(
    "deleted",
    [
        [],
        [(T1, "r1", {"id": "r1", "network": "10.0.0.0/24"})],
        [
            (T1, "r2", {"id": "r2", "display_name": "ünïcødé ☃", "tags": [{"a": 'b\\n"'}]}),
            (T1, "r1", {"z": 1, "a": [1.5, None, True]}),
            ("/infra/tier-1s/a", "r9", {}),
            (T1, "r1", {"a": 0}),  # the same route twice: its bodies decide the order
        ],
    ],
)
def test_restore_digest_hashed_a_route_at_a_time_is_the_whole_documents(
    deleted: list[tuple[str, str, object]],
) -> None:
    for host in ("nsx.example.com", "nsx-ü.example"):
        assert saved_plan.restore_sha256(host, deleted) == _whole_document_digest(host, deleted)
