"""The report's three files replaced together or not at all; partials of a crashed run
removed; schema 2 bodies only where a row has an action or a problem; gzip (issue 13)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reportkit import UID1, UID2, report

from nsx_route_gc.errors import ConfigError
from nsx_route_gc.reports import files
from nsx_route_gc.reports.files import (
    GZIP_NAMES,
    REPORT_NAMES,
    check_report_dir,
    remove_partials,
    to_json,
    write_reports,
)
from nsx_route_gc.reports.saved_plan import read_report

PARTIALS = (".report.json.partial", ".report.md.partial", ".report.csv.gz.partial")


def contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def with_run_id(run_id: str) -> dict[str, Any]:
    doc = report()
    doc["run_id"] = run_id
    return doc


def test_partials_of_a_crashed_run_are_removed_by_the_next(tmp_path: Path) -> None:
    for name in PARTIALS:
        (tmp_path / name).write_text("half a report")
    (tmp_path / "keep.txt").write_text("not ours")
    check_report_dir(tmp_path)  # the start of the next run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    for name in PARTIALS:
        (tmp_path / name).write_text("half a report")
    write_reports(report(), tmp_path)  # and the report writer itself
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*REPORT_NAMES, "keep.txt"])
    assert remove_partials(tmp_path) == []


def test_an_unwritable_report_dir_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="cannot write there"):
        check_report_dir(tmp_path / "file" / "reports")


def test_the_three_files_are_replaced_together(tmp_path: Path) -> None:
    write_reports(with_run_id("first"), tmp_path)
    write_reports(with_run_id("second"), tmp_path)
    assert json.loads((tmp_path / "report.json").read_text())["run_id"] == "second"
    assert "second" in (tmp_path / "report.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(REPORT_NAMES)


@pytest.mark.parametrize("fail_in", ["markdown", "json"])
def test_a_failure_while_writing_leaves_the_old_files_and_no_partial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_in: str
) -> None:
    write_reports(with_run_id("first"), tmp_path)
    before = contents(tmp_path)

    def broken(_report: dict[str, Any], *_args: object) -> Iterator[str]:
        yield "# a start\n"
        raise OSError(28, "No space left on device")

    if fail_in == "markdown":
        monkeypatch.setattr(files, "iter_markdown", broken)
    else:
        monkeypatch.setattr(files, "_write_json_and_csv", broken_json)
    with pytest.raises(OSError, match="No space left"):
        write_reports(with_run_id("second"), tmp_path)
    assert contents(tmp_path) == before


def broken_json(_report: dict[str, Any], json_out: Any, _csv_out: Any) -> None:
    json_out.write('{"schema_version": 2, ')
    raise OSError(28, "No space left on device")


def test_schema_2_keeps_bodies_only_on_rows_with_an_action_or_a_problem() -> None:
    doc = json.loads(to_json(report()))
    assert doc["schema_version"] == 2
    by_id = {r["id"].split("_")[0]: r for r in doc["routes"]}
    orphan, live, foreign = by_id[UID1], by_id[UID2], by_id["default"]
    assert orphan["action"] == "delete"
    assert orphan["nsx_object"]["id"] == orphan["id"]
    assert live["verdict"] == "live"
    assert live["action"] == "none"
    # Null fields are left out of the file: a missing field is null.
    assert "flag" not in live
    assert "nsx_object" not in live
    assert "nsx_object" not in foreign


def test_gzip_writes_json_and_csv_compressed_and_drops_the_plain_ones(tmp_path: Path) -> None:
    write_reports(with_run_id("plain"), tmp_path)
    paths = write_reports(with_run_id("packed"), tmp_path, compress=True)
    assert [p.name for p in paths] == list(GZIP_NAMES)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(GZIP_NAMES)
    text = gzip.decompress((tmp_path / "report.json.gz").read_bytes()).decode()
    assert text == to_json(with_run_id("packed"))
    assert read_report(tmp_path / "report.json.gz", mode="scan")["run_id"] == "packed"
    assert gzip.decompress((tmp_path / "report.csv.gz").read_bytes()).startswith(b"router_path,")
    write_reports(with_run_id("plain again"), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(REPORT_NAMES)


def test_a_directory_holding_a_report_is_refused_unless_forced(tmp_path: Path) -> None:
    check_report_dir(tmp_path, force=False)  # empty: fine
    write_reports(report(), tmp_path, compress=True)
    with pytest.raises(ConfigError, match=r"holds report.md of an earlier run.*--force"):
        check_report_dir(tmp_path, force=False)
    check_report_dir(tmp_path, force=True)
    # An unfinished journal beside it: the way back is named before --force is suggested.
    (tmp_path / "journal.jsonl").write_text('{"kind": "start"}\n')
    with pytest.raises(ConfigError, match=f"unfinished journal: restore --from {tmp_path} first"):
        check_report_dir(tmp_path, force=False)
