"""What ``restore --from`` reads: an apply report, or the journal of an apply that died.

``--from`` names a report directory, a report.json / report.json.gz, or a journal.jsonl. In a
directory the report is used when it is this run's whole story: an apply report there and
no unfinished journal (a finished journal ends only after its run's report is written).
Otherwise the journal: the run died before its report, and any report.json there is an
earlier run's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from nsx_route_gc.errors import PlanError
from nsx_route_gc.models import Action, Verdict
from nsx_route_gc.reports.files import GZIP_NAMES, REPORT_NAMES
from nsx_route_gc.reports.journal import JOURNAL_NAME, JournalContents, is_finished, read_journal
from nsx_route_gc.reports.rows import ROW_FIELDS
from nsx_route_gc.reports.saved_plan import check_host, host_key, read_report

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class DeletedRows:
    source: Path  # the file read: a report or a journal
    rows: list[dict[str, Any]]  # the deleted routes, as report rows
    nsx_host: str  # as the source names it
    from_journal: bool = False
    recorded_sha256: str | None = None  # an apply report's restore_sha256


def deleted_rows(path: Path, *, nsx_host: str) -> DeletedRows:
    """The rows of the routes an apply deleted, from ``path``; PlanError if there is nothing
    usable there or it belongs to another NSX manager."""
    source = choose_source(path)
    if source.name.endswith(".jsonl"):
        journal = read_journal(source)
        rows = journal_rows(journal, nsx_host)
        log.info("restore.source", source=str(source), routes=len(rows))
        return DeletedRows(source, rows, journal.nsx_host, from_journal=True)
    report = read_report(source, mode="apply")
    check_host(source, report, nsx_host)
    rows = [r for r in report["routes"] if r["action"] == Action.DELETED.value]
    log.info("restore.source", source=str(source), routes=len(rows))
    apply = report.get("apply")
    recorded = apply.get("restore_sha256") if isinstance(apply, dict) else None
    return DeletedRows(
        source,
        rows,
        report["nsx"]["host"],
        recorded_sha256=recorded if isinstance(recorded, str) else None,
    )


def choose_source(path: Path) -> Path:
    if not path.is_dir():
        return path
    journal = path / JOURNAL_NAME
    reports = [path / n for n in (REPORT_NAMES[0], GZIP_NAMES[0]) if (path / n).is_file()]
    if journal.is_file() and not is_finished(journal):
        return journal
    if reports:
        return reports[0]
    if journal.is_file():
        return journal
    runs = sorted(p.name for p in path.glob("run-*") if p.is_dir())
    hint = f" (--keep-runs directories here: name one, e.g. {path / runs[-1]})" if runs else ""
    raise PlanError(
        f"{path}: no report.json, report.json.gz or journal.jsonl in this directory{hint}"
    )


def journal_rows(journal: JournalContents, nsx_host: str) -> list[dict[str, Any]]:
    """A row per route the journal shows sent and not proven kept (held or failed)."""
    if host_key(journal.nsx_host) != host_key(nsx_host):
        raise PlanError(
            f"{journal.path}: made against NSX manager {journal.nsx_host}, "
            f"but the configuration points at {nsx_host}"
        )
    rows = []
    for entry in journal.entries:
        if not entry.maybe_deleted or entry.outcome == "gone":
            # Held or failed: kept. Gone: gone before this run deleted it, never created.
            continue
        body = entry.body or {}
        row: dict[str, Any] = dict.fromkeys(ROW_FIELDS)
        hops = body.get("next_hops")
        tags = body.get("tags")
        row.update(
            router_path=entry.router,
            id=entry.id,
            # Never a path from the file: restore rebuilds it from router and id as well.
            path=f"{entry.router}/static-routes/{entry.id}",
            display_name=body.get("display_name"),
            network=entry.network,
            next_hops=[str(h.get("ip_address")) for h in hops if isinstance(h, dict)]
            if isinstance(hops, list)
            else [],
            tags=[
                {"scope": str(t.get("scope", "")), "tag": str(t.get("tag", ""))}
                for t in tags
                if isinstance(t, dict)
            ]
            if isinstance(tags, list)
            else [],
            checked_clusters=[],
            verdict=Verdict.ORPHANED.value,
            action=Action.DELETED.value,
            note=f"from the journal of run {journal.run_id}: "
            + (entry.outcome or "sent, no answer recorded"),
            revision=entry.revision,
            protection=body.get("_protection"),
            nsx_object=entry.body,
        )
        rows.append(row)
    return rows
