"""--keep-runs: a run directory per run, the newest N kept, never one with an unfinished
journal, never a directory the tool did not name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nsx_route_gc.reports.journal import Journal
from nsx_route_gc.reports.retention import new_run_dir, prune_runs, run_dirs

T0 = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def runs(base: Path, count: int) -> list[Path]:
    made = []
    for i in range(count):
        path = new_run_dir(base, T0 + timedelta(hours=i))
        (path / "report.json").write_text("{}")
        made.append(path)
    return made


def test_run_directories_are_named_by_time_and_never_reused(tmp_path: Path) -> None:
    first = new_run_dir(tmp_path, T0)
    second = new_run_dir(tmp_path, T0)
    assert first.name == "run-20261130T030000Z"
    assert second.name == "run-20261130T030000Z-2"
    assert run_dirs(tmp_path) == [first, second]


def test_the_newest_n_are_kept(tmp_path: Path) -> None:
    made = runs(tmp_path, 5)
    (tmp_path / "notes").mkdir()  # not ours: never touched
    removed = prune_runs(tmp_path, 2)
    assert removed == made[:3]
    assert run_dirs(tmp_path) == made[3:]
    assert (tmp_path / "notes").is_dir()


def test_a_run_with_an_unfinished_journal_is_never_removed(tmp_path: Path) -> None:
    made = runs(tmp_path, 4)
    Journal.create(made[0], run_id="r", nsx_host="h", clock=lambda: T0).close()
    finished = Journal.create(made[1], run_id="r", nsx_host="h", clock=lambda: T0)
    finished.finish("report.json")
    # A journal set aside by --force is just as unfinished.
    Journal.create(made[2], run_id="r", nsx_host="h", clock=lambda: T0).close()
    (made[2] / "journal.jsonl").rename(made[2] / "journal.20261130T050000Z.jsonl")
    assert prune_runs(tmp_path, 1) == [made[1]]
    assert run_dirs(tmp_path) == [made[0], made[2], made[3]]


def test_empty_run_directories_go_and_count_for_nothing(tmp_path: Path) -> None:
    made = runs(tmp_path, 2)
    empty = new_run_dir(tmp_path, T0 + timedelta(hours=9))  # a refused run
    assert prune_runs(tmp_path, 2) == [empty]
    assert run_dirs(tmp_path) == made


def test_keep_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        prune_runs(tmp_path, 0)
