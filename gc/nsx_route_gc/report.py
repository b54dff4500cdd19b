"""The report of a run: one JSON document (machine), rendered again as CSV (spreadsheet);
Markdown (change ticket) and the terminal summary live in ``render``.

Every route of every router listed whole is a row with the same fields, foreign ones too.
"""

from __future__ import annotations

import csv
import getpass
import io
import json
import os
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

from nsx_route_gc import __version__
from nsx_route_gc.errors import ConfigError
from nsx_route_gc.models import Action, Plan, Route, RouteVerdict, Verdict, plan_sha256
from nsx_route_gc.render import iter_markdown

SCHEMA_VERSION = 1

ROW_FIELDS = (
    "router_path",
    "id",
    "path",
    "display_name",
    "network",
    "next_hops",
    "tags",
    "create_time",
    "verdict",
    "reason",
    "cluster",
    "node",
    "checked_clusters",
    "shadows",
    "severity",
    "flag",
    "action",
    "hold_reason",
    "error",
    "note",
    "revision",
    "protection",
    "nsx_object",
)


def operator_name() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class RunInfo:
    """Who ran what, when, against which manager: the report's header."""

    mode: str
    started_at: datetime
    finished_at: datetime
    nsx_host: str
    config_source: str
    operator: str = field(default_factory=operator_name)
    run_id: str | None = None


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def iso_ms(epoch_ms: int | None) -> str | None:
    if epoch_ms is None:
        return None
    # time.strftime, not datetime: this runs once per route per rendering, 100,000s of times.
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_ms // 1000))


class NsxObject(Mapping[str, Any]):
    """A route's NSX object, parsed only when read (then kept for as long as the row lives).

    A report of 100,000 routes holds them all; parsed up front they would cost gigabytes.
    """

    __slots__ = ("_loaded", "_route")

    def __init__(self, route: Route) -> None:
        self._route = route
        self._loaded: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._loaded is None:
            self._loaded = dict(self._route.nsx_object or {})
        return self._loaded

    @property
    def json_text(self) -> str:
        """The object as compact JSON, straight from what NSX sent: no parse, no re-encode."""
        return self._route.raw or "{}"

    def __getitem__(self, key: str) -> Any:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return f"NsxObject({self._route.path!r})"


class Rows(Sequence[dict[str, Any]]):
    """Report rows made on demand, one at a time, from whatever the run kept per route.

    Holding 100,000 row dictionaries at once would dominate the run's memory; each consumer
    (summary, JSON, Markdown, CSV, terminal, metrics) walks the rows instead.
    """

    def __init__(self, items: Sequence[Any], make: Callable[[Any], dict[str, Any]]) -> None:
        self._items = items
        self._make = make

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self._make(item) for item in self._items[index]]
        return self._make(self._items[index])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self._make(item) for item in self._items)


def route_row(
    v: RouteVerdict, *, error: str | None = None, note: str | None = None
) -> dict[str, Any]:
    r = v.route
    return {
        "router_path": r.router_path,
        "id": r.id,
        "path": r.path,
        "display_name": r.display_name,
        "network": r.network,
        "next_hops": list(r.next_hops),
        "tags": [{"scope": s, "tag": t} for s, t in r.tags],
        "create_time": iso_ms(r.create_time_ms),
        "verdict": v.verdict.value,
        "reason": v.reason,
        "cluster": v.cluster,
        "node": v.node,
        "checked_clusters": list(v.checked_clusters),
        "shadows": v.shadows,
        "severity": v.severity,
        "flag": v.flag,
        "action": v.action.value,
        "hold_reason": v.hold_reason,
        "error": error,
        "note": note,
        "revision": r.revision,
        "protection": r.protection,
        "nsx_object": None if v.verdict is Verdict.FOREIGN or r.packed is None else NsxObject(r),
    }


def deletion_key(row: dict[str, Any]) -> tuple[str, str, int | None]:
    return (row["router_path"], row["id"], row["revision"])


def build_report(
    info: RunInfo,
    plan: Plan,
    *,
    errors: Sequence[str] = (),
    rows: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The report document. ``rows`` overrides the plan's rows (apply fills in outcomes)."""
    route_rows = rows if rows is not None else Rows(plan.verdicts, route_row)
    verdicts: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    planned = []
    for row in route_rows:
        verdicts[row["verdict"]] += 1
        actions[row["action"]] += 1
        if row["action"] == Action.DELETE.value:
            planned.append(deletion_key(row))
    return {
        "schema_version": SCHEMA_VERSION,
        "mode": info.mode,
        "run_id": info.run_id,
        "started_at": iso(info.started_at),
        "finished_at": iso(info.finished_at),
        "tool_version": __version__,
        "operator": info.operator,
        "config": info.config_source,
        "nsx": {
            "host": info.nsx_host,
            "routers": [r.path for r in plan.routers],
            "router_errors": [{"path": r.path, "error": r.error} for r in plan.routers if r.error],
        },
        "clusters": [
            {
                "name": c.name,
                "source": c.source,
                "status": c.status.value,
                "nodes": len(c.nodes),
                "pod_cidrs": list(c.pod_cidrs),
                "error": c.error,
                "evidence": c.evidence,
            }
            for c in plan.clusters
        ],
        "limit_holds": [{"router": r, "reason": why} for r, why in plan.limit_holds],
        "errors": list(errors),
        "routes": route_rows,
        "summary": {
            "verdicts": {v.value: verdicts.get(v.value, 0) for v in Verdict},
            "actions": {a.value: actions.get(a.value, 0) for a in Action},
        },
        "plan_sha256": plan_sha256(info.nsx_host, planned),
    }


def _plain(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _row_json(row: dict[str, Any]) -> str:
    body = row.get("nsx_object")
    if not isinstance(body, NsxObject):
        return json.dumps(row, default=_plain)
    # The body goes in as NSX's own compact JSON text; nsx_object is the row's last field.
    rest = json.dumps({k: v for k, v in row.items() if k != "nsx_object"}, default=_plain)
    return f'{rest[:-1]}, "nsx_object": {body.json_text}}}'


def iter_json(report: dict[str, Any]) -> Iterator[str]:
    """report.json in pieces: the header indented, then one route row per line."""
    header = {k: v for k, v in report.items() if k != "routes"}
    text = json.dumps(header, indent=2)
    yield text[: text.rindex("}")].rstrip() + ',\n  "routes": ['
    first = True
    for row in report["routes"]:
        yield ("\n    " if first else ",\n    ") + _row_json(row)
        first = False
    yield "\n  ]\n}\n"


def to_json(report: dict[str, Any]) -> str:
    return "".join(iter_json(report))


def iter_csv(report: dict[str, Any]) -> Iterator[str]:
    out = io.StringIO()
    columns = [f for f in ROW_FIELDS if f != "nsx_object"]
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in report["routes"]:
        flat = dict(row)
        flat["next_hops"] = " ".join(row["next_hops"])
        flat["tags"] = " ".join(f"{t['scope']}={t['tag']}" for t in row["tags"])
        flat["checked_clusters"] = " ".join(row["checked_clusters"])
        writer.writerow({k: ("" if flat.get(k) is None else flat[k]) for k in columns})
        yield out.getvalue()
        out.seek(0)
        out.truncate()
    yield out.getvalue()


def to_csv(report: dict[str, Any]) -> str:
    return "".join(iter_csv(report))


def check_report_dir(directory: Path) -> None:
    """Fail before the run, not after it (after an apply has deleted routes, say), when the
    report directory cannot be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"--report-dir {directory}: cannot write there: {exc.strerror or exc}"
        ) from exc


def write_reports(report: dict[str, Any], directory: Path) -> list[Path]:
    """Write report.json, report.md and report.csv, streamed; each appears whole or not at all."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, chunks in (
        ("report.json", iter_json(report)),
        ("report.md", iter_markdown(report)),
        ("report.csv", iter_csv(report)),
    ):
        target = directory / name
        partial = directory / f".{name}.partial"
        with partial.open("w", encoding="utf-8") as out:
            out.writelines(chunks)
        partial.replace(target)
        written.append(target)
    return written
