"""The report of a run as a document: its header, and a row per route made on demand.
Its files (JSON, CSV, Markdown) are written by ``reports.files``; Markdown and the terminal
summary are rendered by ``render``.

Every route of every router listed whole is a row with the same fields, foreign ones too.

A scan of 100,000 routes counts its rows for the summary, the metrics, report.md and the
terminal: the counting reads only a few fields of each verdict, once (``render.Census``), and
a row dictionary is made only for the rows that report.md and the terminal list.
"""

from __future__ import annotations

import functools
import getpass
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, overload

from nsx_route_gc import __version__
from nsx_route_gc.models import (
    EVERY_CLUSTER,
    LIMIT_HOLDS,
    STATIC_ROUTES,
    Action,
    ClusterInventory,
    MissingRoute,
    Plan,
    Policy,
    Route,
    RouteVerdict,
    Verdict,
    plan_sha256,
)
from nsx_route_gc.reports.render import Census, Facts, census, dict_facts

# 2: a row keeps its ``nsx_object`` only where a reviewer or a restore needs it (``keeps_body``).
SCHEMA_VERSION = 2
# Plans and apply reports of these versions are read (1: every managed row had its body).
READABLE_SCHEMA_VERSIONS = (1, 2)

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
    "misplaced",
    "expected_router",
    "action",
    "hold_reason",
    "error",
    "note",
    "revision",
    "protection",
    "nsx_object",
)


_EVERY = list(EVERY_CLUSTER)


def made_path(router_path: object, route_id: object) -> str | None:
    """The policy path a route's router and id make, as NSX writes it (not checked: readers
    that write to NSX check router and id, and compare the path, with saved_plan)."""
    if not isinstance(router_path, str) or not isinstance(route_id, str):
        return None
    return f"{router_path}{STATIC_ROUTES}{route_id}"


def fill_rows(rows: Iterable[dict[str, Any]], clusters: object) -> None:
    """Rows read from a report.json made whole again, in place, for every reader: a field a
    schema 2 row leaves out is null, but a missing ``path`` is the one its ``router_path`` and
    ``id`` make; ``checked_clusters`` ``["*"]`` is the report's ``clusters`` by name (one list
    shared by every such row)."""
    every: list[str] | None = None
    for row in rows:
        if "path" not in row:
            row["path"] = made_path(row.get("router_path"), row.get("id"))
        for name in ROW_FIELDS:
            if name not in row:
                row[name] = None
        if row["checked_clusters"] == _EVERY:
            if every is None:
                every = _cluster_names(clusters)
            row["checked_clusters"] = every


def _cluster_names(clusters: object) -> list[str]:
    if not isinstance(clusters, list):
        return []
    return [c["name"] for c in clusters if isinstance(c, dict) and isinstance(c.get("name"), str)]


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
    policy: Policy | None = None  # the policy the run judged by (scan, apply)


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def iso_ms(epoch_ms: int | None) -> str | None:
    if epoch_ms is None:
        return None
    return _iso_second(epoch_ms // 1000)


# Once per route per rendering, 100,000s of times; routes come in bursts (a cluster's nodes
# join together), so many share their second.
@functools.lru_cache(maxsize=4096)
def _iso_second(epoch_s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


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


class Noted(NamedTuple):
    """A verdict with what the run learnt after judging it: the deleter's error and note."""

    verdict: RouteVerdict
    error: str | None = None
    note: str | None = None


# What a row is made from: a verdict, a verdict with the run's error and note, or a row as it
# stands (a planned route that was not listed again, a restored route).
RowSource = RouteVerdict | Noted | dict[str, Any]


class Rows(Sequence[dict[str, Any]]):
    """Report rows made on demand, one at a time, from whatever the run kept per route.

    Holding 100,000 row dictionaries at once would dominate the run's memory; each consumer
    walks the rows instead. ``make`` turns an item into a ``RowSource`` (by default the items
    are verdicts); the census and the JSON and CSV writers read verdicts without making rows.
    """

    def __init__(
        self, items: Sequence[Any], make: Callable[[Any], RowSource] | None = None
    ) -> None:
        self._items = items
        self._make = make
        self._census: Census | None = None

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        make = self._make
        if isinstance(index, slice):
            items = self._items[index]
            return [_row_of(item if make is None else make(item)) for item in items]
        item = self._items[index]
        return _row_of(item if make is None else make(item))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return map(_row_of, self.sources())

    def sources(self) -> Iterable[RowSource]:
        return self._items if self._make is None else map(self._make, self._items)

    def facts(self) -> Iterator[Facts]:
        for source in self.sources():
            if isinstance(source, RouteVerdict):
                v = source
            elif isinstance(source, Noted):
                v = source.verdict
            else:
                yield from dict_facts((source,))
                continue
            r = v.route
            # _value_, not value: the enum's value property costs more than the whole tuple.
            yield (
                r.router_path,
                r.id,
                r.revision,
                v.verdict._value_,
                v.action._value_,
                v.flag,
                v.expected_router is not None,
            )

    def census(self) -> Census:
        # Kept: the summary, the metrics, report.md and the terminal all need it, and every
        # pass makes the same rows from the same items.
        if self._census is None:
            self._census = Census.of(self.facts())
        return self._census


def _row_of(source: RowSource) -> dict[str, Any]:
    if isinstance(source, RouteVerdict):
        return route_row(source)
    if isinstance(source, Noted):
        return route_row(source.verdict, error=source.error, note=source.note)
    return source


# Verdicts whose rows keep their body without an action: a reviewer fixes or compares these
# by hand. Orphaned rows always have an action in a scan; listed so that one never loses it.
_BODY_VERDICTS = frozenset({Verdict.ORPHANED, Verdict.CONFLICT, Verdict.STALE_NEXT_HOP})


def keeps_body(v: RouteVerdict, error: str | None = None) -> bool:
    """Whether a row carries its NSX body: only where a reviewer or a restore needs it. A row
    with an action (delete, deleted, delete-failed, held, restored); a conflict or a stale
    next hop; a flag, a severity, an error, or misplaced (whoever moves it by hand wants the
    body). Live, unattributed and unverified rows without any of those are report-only or
    judged later, their bodies one GET away: at 100,000 routes, 70,000 unattributed bodies
    were 65 MB of the report."""
    if v.verdict is Verdict.FOREIGN or v.route.packed is None:
        return False
    return (
        v.action is not Action.NONE
        or v.verdict in _BODY_VERDICTS
        or v.flag is not None
        or v.severity is not None
        or error is not None
        or v.expected_router is not None
    )


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
        "misplaced": v.expected_router is not None,
        "expected_router": v.expected_router,
        "action": v.action.value,
        "hold_reason": v.hold_reason,
        "error": error,
        "note": note,
        "revision": r.revision,
        "protection": r.protection,
        "nsx_object": NsxObject(r) if keeps_body(v, error) else None,
    }


def cluster_entry(c: ClusterInventory) -> dict[str, Any]:
    """A cluster in report.json: its inventory and what its CCM is configured with."""
    ccm = c.ccm
    return {
        "name": c.name,
        "source": c.source,
        "status": c.status.value,
        "nodes": len(c.nodes),
        "pod_cidrs": list(c.pod_cidrs),
        "error": c.error,
        "evidence": c.evidence,
        # null: unknown (see warnings); pod routing off: router_path null.
        "pod_routing": None if ccm is None else ccm.pod_routing,
        "router_path": None if ccm is None else ccm.router,
        "configured_router_path": None if ccm is None else ccm.router_path,
        "nsx_host": None if ccm is None else ccm.nsx_host,
        "ccm_source": None if ccm is None else ccm.source,
        "flags": list(c.flags),
        "warnings": list(c.warnings),
    }


def missing_entry(m: MissingRoute) -> dict[str, Any]:
    return {
        "cluster": m.cluster,
        "node": m.node,
        "uid": m.uid,
        "pod_cidrs": list(m.pod_cidrs),
        "missing_cidrs": list(m.missing_cidrs),
        "expected_router": m.expected_router,
        "expected_route_ids": [f"{m.uid}_{c.replace('/', '_')}" for c in m.missing_cidrs],
        "node_created": iso(m.created),
        "node_age_seconds": int(m.age.total_seconds()),
    }


def proposed(action: str, verdict: str, hold_reason: str | None) -> bool:
    """Whether a scan row is one of the plan's proposed deletions, the ones its digest
    covers: marked delete, or an orphan only a limit held (apply --route may take those)."""
    if action == Action.DELETE.value:
        return True
    return (
        action == Action.HELD.value
        and verdict == Verdict.ORPHANED.value
        and (hold_reason or "").startswith(LIMIT_HOLDS)
    )


def duration_text(delta: timedelta) -> str:
    """A duration as the configuration writes it: 90s, 45m, 1h, 2d."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def policy_document(policy: Policy) -> dict[str, Any]:
    """The policy in force, as the configuration's ``policy:`` block spells it."""
    return {
        "min_age": duration_text(policy.min_age),
        "cluster_gone_after": duration_text(policy.cluster_gone_after),
        "allow_overwrite": policy.allow_overwrite,
        "unattributed": policy.unattributed,
        "max_deletes": policy.max_deletes,
        "max_delete_percent": policy.max_delete_percent,
        "protect": {
            "tag_scopes": list(policy.protect_tag_scopes),
            "route_ids": list(policy.protect_route_ids),
            "networks": list(policy.protect_networks),
        },
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
    route_rows = rows if rows is not None else Rows(plan.verdicts)
    found = census(route_rows)
    verdicts = found.verdicts()
    actions = found.actions()
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
        "clusters": [cluster_entry(c) for c in plan.clusters],
        "policy": policy_document(info.policy) if info.policy is not None else None,
        "limit_holds": [{"router": r, "reason": why} for r, why in plan.limit_holds],
        "errors": list(errors),
        "nodes_without_route": [missing_entry(m) for m in plan.missing],
        "routes": route_rows,
        "summary": {
            "verdicts": {v.value: verdicts.get(v.value, 0) for v in Verdict},
            "actions": {a.value: actions.get(a.value, 0) for a in Action},
            "nodes_without_route": len(plan.missing),
            "misplaced_routes": len(found.sections["misplaced"]),
        },
        "plan_sha256": plan_sha256(info.nsx_host, [*found.deletions, *_limit_held(plan.verdicts)]),
    }


def _limit_held(verdicts: Iterable[RouteVerdict]) -> Iterator[tuple[str, str, int | None]]:
    for v in verdicts:
        if v.action is Action.HELD and proposed(v.action.value, v.verdict.value, v.hold_reason):
            yield (v.route.router_path, v.route.id, v.route.revision)
