"""``restore``: put routes an apply run deleted back, from the bodies kept in its report, or
in its journal when it died before writing one (``restore_from``).

Each route is recreated with PATCH of its original body minus the read-only fields. A route
that exists again with the same id is never overwritten: identical content means there is
nothing to do, different content is held (``exists-with-different-content``) for a human.
"""

from __future__ import annotations

import contextlib
import ipaddress
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import structlog

from nsx_route_gc.config import Config
from nsx_route_gc.errors import NsxAccessError, NsxError, PlanError
from nsx_route_gc.models import Action, Plan, Route, RouterListing
from nsx_route_gc.nsx.client import NsxClient
from nsx_route_gc.nsx.deleter import REQUIRE_OVERRIDE, marked_for_delete
from nsx_route_gc.reports.files import write_reports
from nsx_route_gc.reports.rows import ROW_FIELDS, RunInfo, build_report
from nsx_route_gc.reports.saved_plan import (
    DELETED_BY_THIS_TOOL,
    check_route_row,
    check_sha256,
    restore_sha256,
)
from nsx_route_gc.runs.frame import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    NsxFactory,
    Outcome,
    bound_run,
    ended_without_report,
    log_summary,
)
from nsx_route_gc.runs.restore_from import deleted_rows
from nsx_route_gc.runs.restore_log import log_rows
from nsx_route_gc.runs.scan import utc_now

log = structlog.get_logger(__name__)

# Fields NSX computes or owns; sending them back is refused or ignored. Every ``_`` field too.
READ_ONLY_FIELDS = frozenset(
    {
        "path",
        "parent_path",
        "relative_path",
        "unique_id",
        "marked_for_delete",
        "overridden",
        "realization_id",
        "remote_path",
        "origin_site_id",
        "owner_id",
        "children",
    }
)


class RouteRestorer(Protocol):
    """The NSX calls restore needs (``NsxClient`` has them)."""

    def get_route(self, route_path: str) -> Route | None: ...

    def patch_route(
        self, route_path: str, body: dict[str, Any], *, allow_overwrite: bool = False
    ) -> None: ...


@dataclass(frozen=True)
class ToRestore:
    row: dict[str, Any]  # the apply report's row
    path: str
    body: dict[str, Any] | None  # the original NSX object

    @property
    def router_path(self) -> str:
        return str(self.row["router_path"])


@dataclass(frozen=True)
class Restored:
    item: ToRestore
    action: Action
    hold_reason: str | None = None
    error: str | None = None
    note: str | None = None
    revision: int | None = None


def restorable_body(original: dict[str, Any]) -> dict[str, Any]:
    """The original body without what NSX computes: what a PATCH may send."""
    return {
        k: v for k, v in original.items() if not k.startswith("_") and k not in READ_ONLY_FIELDS
    }


def content(obj: dict[str, Any]) -> tuple[object, ...]:
    """What makes two routes with one id the same route: network, next hops, tags."""
    network: object = obj.get("network")
    with contextlib.suppress(ValueError):  # not a CIDR: compared as written
        network = ipaddress.ip_network(str(network), strict=False)
    hops = sorted(
        (str(h.get("ip_address")), int(h.get("admin_distance") or 1))
        for h in obj.get("next_hops") or []
        if isinstance(h, dict)
    )
    tags = sorted(
        (str(t.get("scope", "")), str(t.get("tag", "")))
        for t in obj.get("tags") or []
        if isinstance(t, dict)
    )
    return (network, tuple(hops), tuple(tags))


def load_restore(
    path: Path,
    *,
    nsx_host: str,
    route_ids: Sequence[str],
    routers: Sequence[str] = (),
    approved_sha256: str | None = None,
    from_log: bool = False,
) -> list[ToRestore]:
    """The rows of an apply report (or of the journal of an apply that died, see
    ``restore_from``, or of an apply's JSON log with ``from_log``, see ``restore_log``) whose
    routes that run deleted, optionally only ``route_ids``; PlanError if the source is
    unusable, of another NSX manager, edited since the apply (a report's
    ``restore_sha256``), not the approved one (``approved_sha256``), names a route outside
    ``routers`` (when given) or not a Tier-1 static route, or does not know one of the ids.

    Rows that were already gone when the apply came (``already-gone``) are never recreated:
    this tool did not delete them, and a row it never saw deleted is no way back.
    """
    if from_log:
        if approved_sha256 is not None:
            raise PlanError(
                f"{path}: a log has no restore_sha256 to approve; restore from it without "
                "--plan-sha256"
            )
        # A route.deleted line is only ever logged for a route this tool deleted.
        deleted = ours = log_rows(path, nsx_host=nsx_host)
        paths = [check_route_row(path, row, routers) for row in ours]
    else:
        found = deleted_rows(path, nsx_host=nsx_host)
        path, deleted = found.source, found.rows
        ours = [
            r
            for r in deleted
            if found.from_journal or str(r.get("note") or "").startswith(DELETED_BY_THIS_TOOL)
        ]
        paths = [check_route_row(path, row, routers) for row in ours]
        digest = restore_sha256(
            found.nsx_host, ((r["router_path"], r["id"], r.get("nsx_object")) for r in ours)
        )
        if found.recorded_sha256 is not None and found.recorded_sha256 != digest:
            raise PlanError(
                f"{path}: restore_sha256 does not match the deleted routes "
                "(the report was edited after the apply)"
            )
        if approved_sha256 is not None and found.from_journal:
            raise PlanError(
                f"{path}: a journal has no restore_sha256 to approve (its run died before its "
                "report); restore from it without --plan-sha256"
            )
        check_sha256(path, digest, approved_sha256, "restore_sha256")
    if len(ours) < len(deleted):
        log.info("restore.not_ours", routes=len(deleted) - len(ours), reason="already-gone")
    if route_ids:
        known = {r["id"] for r in ours}
        unknown = [i for i in route_ids if i not in known]
        if unknown:
            gone_before = {r["id"] for r in deleted} - known
            why = (
                "it was already gone when the apply came (this tool did not delete it)"
                if unknown[0] in gone_before
                else "no deleted route with this id in this report"
            )
            raise PlanError(f"{path}: route {unknown[0]}: {why}")
    wanted = set(route_ids)
    return [
        ToRestore(row, route_path, row.get("nsx_object"))
        for row, route_path in zip(ours, paths, strict=True)
        if not wanted or row["id"] in wanted
    ]


def run_restore(
    config: Config,
    *,
    report_path: Path,
    confirm: Callable[[dict[str, int]], bool],
    route_ids: Sequence[str] = (),
    plan_sha256: str | None = None,
    report_dir: Path | None = None,
    nsx_factory: NsxFactory = NsxClient,
    clock: Callable[[], datetime] = utc_now,
    compress: bool = False,
    from_log: bool = False,
) -> Outcome:
    """``from_log``: ``report_path`` is an apply run's JSON log (restore --from-log)."""
    started_clock = time.monotonic()
    started = clock()
    with bound_run("restore", config) as run_id:
        try:
            items = load_restore(
                report_path,
                nsx_host=config.nsx.host,
                route_ids=route_ids,
                routers=config.nsx.routers,
                approved_sha256=plan_sha256,
                from_log=from_log,
            )
        except PlanError as exc:
            log.error("restore.refused", report=str(report_path), error=str(exc))
            return ended_without_report(EXIT_USAGE, str(exc), started_clock, config)
        counts = dict(Counter(item.router_path for item in items))
        if counts and not confirm(counts):
            log.warning("restore.cancelled", routes=len(items))
            return ended_without_report(
                EXIT_FAILURE, "restore cancelled: nothing was changed", started_clock, config
            )
        try:
            with nsx_factory(config.nsx) as nsx:
                results: list[Restored] = []
                for item in items:
                    try:
                        results.append(_restore_one(nsx, item, config.policy.allow_overwrite))
                    except NsxAccessError as exc:
                        if not results:
                            raise  # a refused login: the run ends before any change
                        # Refused mid-run: what was restored stays in the report.
                        results.append(_failed(item, str(exc)))
        except NsxError as exc:
            log.error("run.failed", error=str(exc))
            return ended_without_report(EXIT_FAILURE, str(exc), started_clock, config)
        report = restore_report(config, results, report_path, run_id, started, clock())
        paths = write_reports(report, report_dir, compress=compress) if report_dir else []
        code = EXIT_FAILURE if report["errors"] else EXIT_OK
        log_summary(report, code, started_clock, metrics=config.metrics)
        return Outcome(code, report, paths)


def _restore_one(nsx: RouteRestorer, item: ToRestore, allow_overwrite: bool) -> Restored:
    fields = {"router": item.router_path, "route": item.row["id"]}
    result = _attempt(nsx, item, allow_overwrite)
    if result.action is Action.RESTORED:
        log.info("route.restored", note=result.note, **fields)
    elif result.error:
        log.error("route.restore_failed", error=result.error, **fields)
    else:
        log.warning("route.held", reason=result.hold_reason, **fields)
    return result


def _attempt(nsx: RouteRestorer, item: ToRestore, allow_overwrite: bool) -> Restored:
    if item.body is None:
        return Restored(item, Action.HELD, "no-original-body: the report kept no body to restore")
    wanted = content(item.body)
    try:
        current = nsx.get_route(item.path)
    except NsxAccessError:
        raise
    except NsxError as exc:
        return _failed(item, f"reading the route before restoring failed: {exc}")
    if current is not None:
        existing = current.nsx_object or {}
        if marked_for_delete(current):
            return Restored(
                item, Action.HELD, "being-deleted: marked_for_delete, restore again once gone"
            )
        if content(existing) == wanted:
            return Restored(
                item,
                Action.RESTORED,
                note="already-present: a route with this id and content exists",
                revision=current.revision,
            )
        return Restored(
            item,
            Action.HELD,
            "exists-with-different-content: a route with this id exists with other "
            "network, next hops or tags; not overwritten",
        )
    overwrite = allow_overwrite and item.body.get("_protection") == REQUIRE_OVERRIDE
    try:
        nsx.patch_route(item.path, restorable_body(item.body), allow_overwrite=overwrite)
        after = nsx.get_route(item.path)
    except NsxAccessError:
        raise
    except NsxError as exc:
        return _failed(item, str(exc))
    if after is None or content(after.nsx_object or {}) != wanted:
        return _failed(item, "the route is not present as sent after the PATCH")
    return Restored(item, Action.RESTORED, note="restored", revision=after.revision)


def _failed(item: ToRestore, error: str) -> Restored:
    return Restored(item, Action.HELD, "restore-failed", error=error)


def restore_report(
    config: Config,
    results: Sequence[Restored],
    source: Path,
    run_id: str,
    started: datetime,
    finished: datetime,
) -> dict[str, Any]:
    rows = []
    for r in results:
        row = {f: r.item.row.get(f) for f in ROW_FIELDS}
        for key in ("next_hops", "tags", "checked_clusters"):
            if not isinstance(row[key], list):
                row[key] = []
        row.update(
            action=r.action.value,
            hold_reason=r.hold_reason,
            error=r.error,
            note=r.note,
            revision=r.revision,
            nsx_object=r.item.body,
        )
        rows.append(row)
    failed = [r for r in results if r.error]
    held = [r for r in results if r.action is Action.HELD and not r.error]
    errors = []
    if failed:
        errors.append(f"{len(failed)} restore(s) failed")
    if held:
        errors.append(f"{len(held)} route(s) not restored (held)")
    routers = sorted({r.item.router_path for r in results})
    info = RunInfo(
        mode="restore",
        started_at=started,
        finished_at=finished,
        nsx_host=config.nsx.host,
        config_source=config.source,
        run_id=run_id,
    )
    plan = Plan(tuple(RouterListing(p) for p in routers), (), ())
    report = build_report(info, plan, errors=errors, rows=rows)
    restored = [r for r in results if r.action is Action.RESTORED]
    report["restore"] = {
        "source": str(source),
        "selected": len(results),
        "restored": sum(1 for r in restored if r.note == "restored"),
        "already_present": sum(1 for r in restored if r.note != "restored"),
        "held": len(held),
        "failed": len(failed),
    }
    return report
