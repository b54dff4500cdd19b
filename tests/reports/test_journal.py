"""journal.jsonl written and read back: bodies before sending, outcomes after, bounded reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from factories import ccm_route
from nsx_route_gc.errors import PlanError
from nsx_route_gc.reports.journal import (
    JOURNAL_NAME,
    MAX_LINE,
    Journal,
    is_finished,
    read_journal,
    set_aside,
    unfinished_journals,
)

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
A = ccm_route("11111111-0000-4000-8000-000000000001", "172.16.136.0/24", "172.16.128.63")
B = ccm_route("22222222-0000-4000-8000-000000000002", "172.16.137.0/24", "172.16.128.64")
C = ccm_route("33333333-0000-4000-8000-000000000003", "172.16.138.0/24", "172.16.128.65")


def journal(directory: Path) -> Journal:
    return Journal.create(directory, run_id="run1", nsx_host="nsx.example.com", clock=lambda: NOW)


def test_bodies_are_on_disk_before_the_answer_and_the_last_outcome_counts(tmp_path: Path) -> None:
    j = journal(tmp_path)
    first = j.sending([A, B, C], via="hierarchical")
    # Read back while the run is still going: the batch is there, no answer yet.
    entries = {e.id: e for e in read_journal(tmp_path / JOURNAL_NAME).entries}
    assert set(entries) == {A.id, B.id, C.id}
    assert all(e.outcome is None and e.maybe_deleted for e in entries.values())
    assert entries[A.id].body == A.nsx_object
    assert entries[A.id].revision == A.revision
    assert entries[A.id].network == A.network
    j.outcome(first, [(A, "refused", "412"), (B, "refused", "412"), (C, "refused", "412")])
    j.outcome(first, [(B, "held-changed", "changed-since-plan")])
    second = j.sending([A], via="delete")
    j.outcome(second, [(A, "deleted", None)])
    j.outcome(first, [(C, "failed", "still present")])
    assert second == first + 1
    contents = read_journal(tmp_path / JOURNAL_NAME)
    assert not contents.finished
    assert (contents.run_id, contents.nsx_host) == ("run1", "nsx.example.com")
    outcomes = {e.id: (e.outcome, e.maybe_deleted, e.batch) for e in contents.entries}
    assert outcomes == {
        A.id: ("deleted", True, second),
        B.id: ("held-changed", False, first),
        C.id: ("failed", False, first),
    }
    j.finish("report.json")
    assert is_finished(tmp_path / JOURNAL_NAME)
    assert read_journal(tmp_path / JOURNAL_NAME).finished


def test_a_journal_is_never_overwritten(tmp_path: Path) -> None:
    journal(tmp_path).close()
    with pytest.raises(FileExistsError):
        journal(tmp_path)


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    j = journal(tmp_path)
    j.sending([A], via="hierarchical")
    j.close()
    path = tmp_path / JOURNAL_NAME
    with path.open("a") as f:
        f.write('{"event": "send", "run_id": "run1", "batch": 2, "router": "/inf')
    assert [e.id for e in read_journal(path).entries] == [A.id]
    assert not is_finished(path)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ('{"event": "send"}\n', "no start record"),
        ("[1]\n", "not a JSON object"),
        ("not json\n", "not valid JSON"),
        ("[" * 100_000 + "\n", "line 1 is longer than|not valid JSON|nested deeper"),
    ],
)
def test_what_is_not_a_journal_is_refused_in_one_line(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / JOURNAL_NAME
    path.write_text(text)
    with pytest.raises(PlanError, match=problem):
        read_journal(path)


def test_line_sizes_are_bounded(tmp_path: Path) -> None:
    j = journal(tmp_path)
    j.close()
    path = tmp_path / JOURNAL_NAME
    with path.open("a") as f:
        f.write(json.dumps({"event": "outcome", "why": "x" * MAX_LINE}) + "\n")
    with pytest.raises(PlanError, match="line 2 is longer than"):
        read_journal(path)


def test_bad_records_name_their_line(tmp_path: Path) -> None:
    j = journal(tmp_path)
    j.close()
    path = tmp_path / JOURNAL_NAME
    with path.open("a") as f:
        f.write(json.dumps({"event": "send", "router": "/r", "id": "x", "network": "n",
                            "batch": 1, "nsx_object": "not a body"}) + "\n")  # fmt: skip
    with pytest.raises(PlanError, match="line 2: nsx_object is not an object"):
        read_journal(path)


def test_unfinished_journals_are_found_here_and_in_run_directories(tmp_path: Path) -> None:
    (tmp_path / "run-a").mkdir()
    (tmp_path / "run-b").mkdir()
    journal(tmp_path / "run-a").close()
    done = journal(tmp_path / "run-b")
    done.finish("report.json")
    assert unfinished_journals(tmp_path) == [tmp_path / "run-a" / JOURNAL_NAME]
    journal(tmp_path).close()
    assert unfinished_journals(tmp_path)[0] == tmp_path / JOURNAL_NAME


def test_set_aside_keeps_the_journal_under_a_timestamped_name(tmp_path: Path) -> None:
    journal(tmp_path).close()
    kept = set_aside(tmp_path / JOURNAL_NAME, NOW)
    assert kept.name == "journal.20261130T030000Z.jsonl"
    journal(tmp_path).close()
    again = set_aside(tmp_path / JOURNAL_NAME, NOW)
    assert again.name == "journal.20261130T030000Z-2.jsonl"
    assert not (tmp_path / JOURNAL_NAME).exists()
    assert read_journal(kept).run_id == "run1"
