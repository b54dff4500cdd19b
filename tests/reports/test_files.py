"""Rows of 100,000 routes: written straight from the verdicts, byte for byte what their rows
would give; counted in one pass; made only when listed."""

from __future__ import annotations

import csv
import io
import json
import urllib.parse
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from reportkit import UID1, seed_plan
from reportkit import report as seed_report

from factories import NOW, T1, ccm_route, foreign_route
from nsx_route_gc import logs
from nsx_route_gc.judge import judge
from nsx_route_gc.models import Action, Plan, Policy, Route, RouterListing, RouteVerdict, Verdict
from nsx_route_gc.reports import files as files_module
from nsx_route_gc.reports import rows as report_module
from nsx_route_gc.reports.files import to_csv, to_json, write_reports
from nsx_route_gc.reports.render import census, to_markdown, to_terminal
from nsx_route_gc.reports.rows import (
    ROW_FIELDS,
    Noted,
    Rows,
    RunInfo,
    build_report,
    route_row,
)
from nsx_route_gc.runs.frame import run_metrics

# What a field may hold besides plain text: every character CSV quotes for, JSON escapes,
# or Markdown replaces.
AWKWARD = ["a,b", 'say "hi"', "two\nlines", "cr\rhere", "ünïcødé ☃ 🎉", "pipe | tab\t", "", "\\"]
CLUSTERS = tuple(f"cl{i}" for i in range(30))
COMPACT = (",", ":")


def reference_json(report: dict[str, Any]) -> str:
    """report.json as written when every row was a dictionary encoded by json.dumps: the
    header indented, each row compact on its own line, without its null fields or a path
    that its router and id make."""
    header = {k: v for k, v in report.items() if k != "routes"}
    text = json.dumps(header, indent=2)
    pieces = [text[: text.rindex("}")].rstrip() + ',\n  "routes": [']
    for i, row in enumerate(report["routes"]):
        body = row["nsx_object"]
        present = {k: v for k, v in row.items() if v is not None and k != "nsx_object"}
        if present.get("path") == f"{row['router_path']}/static-routes/{row['id']}":
            del present["path"]
        if body is None:
            line = json.dumps(present, separators=COMPACT)
        else:
            rest = json.dumps(present, separators=COMPACT)
            line = f'{rest[:-1]},"nsx_object":{body.json_text}}}'
        pieces.append(("\n    " if i == 0 else ",\n    ") + line)
    pieces.append("\n  ]\n}\n")
    return "".join(pieces)


def reference_csv(report: dict[str, Any]) -> str:
    """report.csv as written when every row went through csv.DictWriter."""
    out = io.StringIO()
    columns = [f for f in ROW_FIELDS if f != "nsx_object"]
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in report["routes"]:
        flat = dict(
            row,
            next_hops=" ".join(row["next_hops"]),
            tags=" ".join(f"{t['scope']}={t['tag']}" for t in row["tags"]),
            checked_clusters=" ".join(row["checked_clusters"]),
        )
        writer.writerow({k: ("" if flat[k] is None else flat[k]) for k in columns})
    return out.getvalue()


def awkward_verdicts(values: Sequence[str] = AWKWARD) -> list[RouteVerdict]:
    """Verdicts with every kind of value each field may hold, in many combinations."""
    bases = list(seed_plan().verdicts)
    out = []
    for i in range(96):
        v = bases[i % len(bases)]
        odd = values[i % len(values)]
        r = v.route
        route = Route(
            r.router_path,
            f"{r.id}{odd}-{i}",
            r.path,
            r.network,
            (*r.next_hops, odd) if i % 3 == 0 else (() if i % 3 == 1 else r.next_hops),
            (*r.tags, (odd, odd)) if i % 4 == 0 else (() if i % 4 == 1 else r.tags),
            None if i % 5 == 0 else r.create_time_ms,
            [None, 7, r.revision, True, 2.5][i % 5],
            [None, odd, r.protection][i % 3],
            [None, odd, r.display_name][i % 3],
            raw=None if i % 7 == 0 else (r.raw if i % 2 else json.dumps({"id": odd})),
        )
        out.append(
            replace(
                v,
                route=route,
                verdict=list(Verdict)[i % len(Verdict)],
                action=list(Action)[i % len(Action)],
                reason=[None, odd, v.reason][i % 3],
                cluster=[v.cluster, odd, None][i % 3],
                node=[odd, v.node][i % 2],
                shadows=[None, odd][i % 2],
                severity=["high", None, odd][i % 3],
                flag=[None, odd, "flagged"][i % 3],
                hold_reason=[None, odd][i % 2],
                checked_clusters=[(), CLUSTERS, (odd, "x"), CLUSTERS[:3]][i % 4],
                expected_router=[None, odd, T1][i % 3],
            )
        )
    return out


def info(mode: str = "scan") -> RunInfo:
    return RunInfo(mode, NOW, NOW, "nsx.example.com", "config.yaml", operator="op@host")


def awkward_report(mode: str = "scan", values: Sequence[str] = AWKWARD) -> dict[str, Any]:
    verdicts = awkward_verdicts(values)
    return build_report(info(mode), Plan((RouterListing(T1),), (), tuple(verdicts)))


@pytest.mark.parametrize("mode", ["scan", "apply"])
def test_rows_from_verdicts_are_written_byte_for_byte_as_their_rows(mode: str) -> None:
    doc = awkward_report(mode)
    as_dicts = dict(doc, routes=list(doc["routes"]))
    assert to_json(doc) == reference_json(as_dicts)
    assert to_csv(doc) == reference_csv(as_dicts)
    assert to_markdown(doc) == to_markdown(as_dicts)
    assert to_terminal(doc, ["r.json"]) == to_terminal(as_dicts, ["r.json"])


def test_awkward_values_come_back_from_csv_and_json() -> None:
    # Not a carriage return: csv leaves it unquoted in "\n" records (it always did), and its
    # reader then refuses the file.
    doc = awkward_report(values=[a for a in AWKWARD if "\r" not in a])
    rows = list(doc["routes"])
    parsed = list(csv.DictReader(io.StringIO(to_csv(doc))))
    loaded = json.loads(to_json(doc))["routes"]
    assert [p["display_name"] for p in parsed] == [r["display_name"] or "" for r in rows]
    assert [p["reason"] for p in parsed] == [r["reason"] or "" for r in rows]
    assert [x["id"] for x in loaded] == [r["id"] for r in rows]
    assert [x["tags"] for x in loaded] == [r["tags"] for r in rows]


def test_a_field_of_an_unexpected_type_is_written_the_general_way() -> None:
    route = ccm_route(UID1, "10.0.0.0/24", "10.1.0.1")
    bad_name: Any = 42
    odd = replace(route, display_name=bad_name)
    doc = build_report(info(), Plan((RouterListing(T1),), (), (RouteVerdict(odd, Verdict.LIVE),)))
    as_dicts = dict(doc, routes=list(doc["routes"]))
    assert to_json(doc) == reference_json(as_dicts)
    assert to_csv(doc) == reference_csv(as_dicts)
    assert json.loads(to_json(doc))["routes"][0]["display_name"] == 42


def test_noted_rows_carry_the_runs_error_and_note() -> None:
    verdicts = awkward_verdicts()
    extra = route_row(verdicts[0], note="already-gone")

    def make(item: RouteVerdict | dict[str, Any]) -> report_module.RowSource:
        if isinstance(item, dict):
            return item
        return Noted(item, 'boom, it said "no"', None) if item.route.revision else item

    rows = Rows([*verdicts, extra], make)
    expected = [
        route_row(v, error='boom, it said "no"') if v.route.revision else route_row(v)
        for v in verdicts
    ] + [extra]
    assert [json.loads(json.dumps(r, default=dict)) for r in rows] == [
        json.loads(json.dumps(r, default=dict)) for r in expected
    ]
    doc = build_report(info("apply"), Plan((), (), ()), rows=rows)
    as_dicts = dict(doc, routes=list(rows))
    assert to_json(doc) == reference_json(as_dicts)
    assert to_csv(doc) == reference_csv(as_dicts)


def test_census_of_rows_is_the_census_of_their_dictionaries() -> None:
    rows = awkward_report()["routes"]
    from_verdicts = census(rows)
    from_dicts = census(list(rows))
    assert from_verdicts == from_dicts
    assert from_verdicts.acted.tolist() == [i for i, r in enumerate(rows) if r["action"] != "none"]
    assert census(rows) is from_verdicts  # kept: summary, metrics, Markdown, terminal share it


def test_summary_and_metrics_count_every_row() -> None:
    doc = awkward_report()
    rows = list(doc["routes"])
    verdicts = doc["summary"]["verdicts"]
    assert sum(verdicts.values()) == len(rows)
    for verdict in Verdict:
        assert verdicts[verdict.value] == sum(1 for r in rows if r["verdict"] == verdict.value)
    metrics = run_metrics(doc, 0, 1.0)
    assert sum(metrics.routes.values()) == len(rows)
    assert metrics.routes[T1, "live"] == verdicts["live"]


def test_only_the_rows_listed_are_ever_made(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    routes = [
        ccm_route(f"{i:08d}-0000-4000-8000-000000000000", f"10.{i}.0.0/24", "10.255.0.1")
        for i in range(40)
    ]
    plan = judge([RouterListing(T1, (*routes, foreign_route()))], [], Policy(), NOW)
    made = 0

    def counting_route_row(v: RouteVerdict, **kwargs: Any) -> dict[str, Any]:
        nonlocal made
        made += 1
        return route_row(v, **kwargs)

    monkeypatch.setattr(report_module, "route_row", counting_route_row)
    doc = build_report(info(), plan)
    paths = write_reports(doc, tmp_path)
    to_terminal(doc, [str(p) for p in paths])
    run_metrics(doc, 0, 1.0)
    unattributed = doc["summary"]["verdicts"]["unattributed"]
    assert unattributed == 40
    # report.md lists the 40 unattributed routes and, collapsed, the foreign one; nothing
    # else makes a row.
    assert made == unattributed + doc["summary"]["verdicts"]["foreign"]


def test_report_files_are_the_renderings(tmp_path: Path) -> None:
    doc = awkward_report()
    write_reports(doc, tmp_path)
    assert (tmp_path / "report.json").read_bytes() == to_json(doc).encode()
    assert (tmp_path / "report.csv").read_bytes() == to_csv(doc).encode()
    assert (tmp_path / "report.md").read_bytes() == to_markdown(doc).encode()


@pytest.mark.parametrize("count", [0, 1, 255, 256, 257, 600])
def test_rows_written_in_batches_make_one_document(tmp_path: Path, count: int) -> None:
    base = awkward_verdicts()
    verdicts = [base[i % len(base)] for i in range(count)]
    doc = build_report(info(), Plan((RouterListing(T1),), (), tuple(verdicts)))
    write_reports(doc, tmp_path)
    text = (tmp_path / "report.json").read_bytes().decode()
    assert text == reference_json(dict(doc, routes=list(doc["routes"])))
    assert len(json.loads(text)["routes"]) == count
    csv_text = (tmp_path / "report.csv").read_bytes().decode()
    assert csv_text == reference_csv(dict(doc, routes=list(doc["routes"])))


def test_registered_secrets_never_reach_the_report_files(tmp_path: Path) -> None:
    # A manager that echoes the login body, a token file's newline in a Bearer header: what
    # reached report.json, .md and .csv in the trial, in its encoded forms.
    password, token = "Rep0rt-C@n@ry pw", "rep0rt-t0ken-canary"
    logs.register_secret(password, username="admin")
    logs.register_secret(token + "\n")
    doc: dict[str, Any] = dict(seed_report())
    quoted = urllib.parse.quote_plus(password)
    doc["errors"] = [f"login failed: j_password={quoted}", f"header 'Bearer {token}\\n'"]
    rows = [dict(r) for r in doc["routes"]]
    rows[0]["error"] = f"echo {password}"
    doc["routes"] = rows
    paths = write_reports(doc, tmp_path)
    for path in paths:
        text = path.read_text()
        for form in (password, quoted, token):
            assert form not in text, path.name
        assert "***" in text, path.name


def test_report_md_is_scrubbed_in_whole_lines_whatever_its_length() -> None:
    # report.md of 100,000 routes is written many lines at a time: a secret on any
    # line, the first, the last or one at a write's edge, is scrubbed all the same.
    secret = "md-canary-s3cret"
    logs.register_secret(secret)
    lines = [f"| row {i} | {secret if i % 997 == 0 else 'plain'} |\n" for i in range(60_000)]
    lines[-1] = f"last {secret}\n"
    writes: list[str] = []

    class Out(io.StringIO):
        def write(self, text: str, /) -> int:
            writes.append(text)
            return super().write(text)

    out = Out()
    files_module._Scrubbing(out).writelines(lines)
    assert out.getvalue() == "".join(lines).replace(secret, "***")
    assert len(writes) > 1
    assert all(w.endswith("\n") for w in writes)
