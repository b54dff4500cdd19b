"""Report documents: every row has every field, counts add up, files are written whole."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from reportkit import UID1, report

from factories import T1
from nsx_route_gc.models import (
    plan_sha256,
)
from nsx_route_gc.reports.files import to_csv, write_reports
from nsx_route_gc.reports.rows import ROW_FIELDS


def test_every_row_has_every_field_and_foreign_rows_have_no_body() -> None:
    doc = report()
    rows = doc["routes"]
    assert len(rows) == 3
    for row in rows:
        assert tuple(row) == ROW_FIELDS
    by_verdict = {row["verdict"]: row for row in rows}
    assert by_verdict["foreign"]["nsx_object"] is None
    orphan = by_verdict["orphaned"]
    assert orphan["nsx_object"]["id"] == orphan["id"]
    assert orphan["action"] == "delete"
    assert orphan["reason"].startswith("cluster-gone")
    assert orphan["create_time"] == "2026-10-26T12:00:00Z"
    assert orphan["tags"][0] == {"scope": "vsphere.k8s.io/cluster-name", "tag": "kubernetes"}


def test_header_summary_and_digest() -> None:
    doc = report()
    assert doc["schema_version"] == 2
    assert doc["mode"] == "scan"
    assert doc["nsx"] == {
        "host": "nsx.example.com",
        "routers": [T1, "/infra/tier-1s/broken"],
        "router_errors": [{"path": "/infra/tier-1s/broken", "error": "NSX GET ... failed: 500"}],
    }
    assert [c["status"] for c in doc["clusters"]] == ["ok", "retired"]
    summary = doc["summary"]
    assert summary["verdicts"]["orphaned"] == 1
    assert summary["verdicts"]["live"] == 1
    assert summary["actions"]["delete"] == 1
    assert sum(summary["verdicts"].values()) == 3
    orphan_id = f"{UID1}_172.16.136.0_24"
    assert doc["plan_sha256"] == plan_sha256("nsx.example.com", [(T1, orphan_id, 0)])


def test_csv_has_a_row_per_route_without_bodies() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(report()))))
    assert len(rows) == 3
    assert "nsx_object" not in rows[0]
    assert rows[0]["next_hops"] == "172.16.128.63"
    assert rows[2]["verdict"] == "foreign"


def test_write_reports_writes_three_files(tmp_path: Path) -> None:
    paths = write_reports(report(), tmp_path / "out")
    assert sorted(p.name for p in paths) == ["report.csv", "report.json", "report.md"]
    assert json.loads((tmp_path / "out/report.json").read_text())["mode"] == "scan"
    assert not list((tmp_path / "out").glob(".*partial"))


def test_report_json_is_streamed_but_one_valid_document(tmp_path: Path) -> None:
    doc = report()
    write_reports(doc, tmp_path)
    loaded = json.loads((tmp_path / "report.json").read_text())
    assert loaded["summary"] == doc["summary"]
    assert loaded["plan_sha256"] == doc["plan_sha256"]
    assert len(loaded["routes"]) == 3
    assert loaded["routes"][0]["nsx_object"] == dict(doc["routes"][0]["nsx_object"])
    assert loaded["routes"][0] == json.loads(json.dumps(loaded["routes"][0]))


def test_bodies_are_parsed_only_when_read() -> None:
    row = report()["routes"][0]
    body = row["nsx_object"]
    assert not isinstance(body, dict)  # lazy: 100,000 parsed bodies would cost gigabytes
    assert body["id"] == row["id"]
    assert dict(body)["network"] == row["network"]
