"""What ``restore --from-log`` reads: the JSON log of an apply run (a CronJob pod's log is
often the only copy), its ``route.deleted`` lines, each carrying the route's whole body.

Everything else in the log is skipped: console lines, other events, lines of other tools.
A line longer than ``MAX_LINE`` is skipped unread (a ``route.deleted`` line is a few KB).
Each route is checked as a report's row is: a Tier-1 router, a plain id, the body that of
this very route (its id, network and next hops), the path rebuilt from router and id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, BinaryIO

import structlog

from nsx_route_gc.errors import PlanError
from nsx_route_gc.models import TIER1, Action, Verdict, parse_network
from nsx_route_gc.reports.rows import ROW_FIELDS
from nsx_route_gc.reports.saved_plan import host_key

log = structlog.get_logger(__name__)

MAX_LINE = 256 * 1024
# A log of years of hourly runs is still far below this; /dev/zero is not read for ever.
MAX_LINES = 10_000_000
EVENT = "route.deleted"


def log_rows(path: Path, *, nsx_host: str) -> list[dict[str, Any]]:
    """A report row per route the log shows deleted by one apply run; PlanError when the
    log has none, or holds several runs, or a line names another NSX manager."""
    try:
        with path.open("rb") as stream:
            events, skipped = _deleted_events(stream)
    except OSError as exc:
        raise PlanError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if skipped:
        log.warning("restore.log_lines_skipped", log=str(path), lines=skipped, max_bytes=MAX_LINE)
    runs = sorted({str(e.get("run_id")) for _, e in events})
    if not events:
        raise PlanError(f"{path}: no JSON {EVENT} line with a route body in this log")
    if len(runs) > 1:
        raise PlanError(
            f"{path}: {EVENT} lines of {len(runs)} runs ({', '.join(runs)}); "
            "keep one run's lines (grep its run_id) and restore from that"
        )
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for number, event in events:
        row = _row(path, number, event, nsx_host)
        rows[row["router_path"], row["id"]] = row
    return list(rows.values())


def _deleted_events(stream: BinaryIO) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    events: list[tuple[int, dict[str, Any]]] = []
    skipped = 0
    number = 0
    while number < MAX_LINES:
        line = stream.readline(MAX_LINE + 1)
        if not line:
            break
        number += 1
        if len(line) > MAX_LINE:
            skipped += 1
            while line and not line.endswith(b"\n"):  # the rest of the long line, unread
                line = stream.readline(MAX_LINE)
            continue
        if EVENT.encode() not in line or not line.lstrip().startswith(b"{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        # already-gone lines carry no body: this run deleted nothing there.
        if isinstance(event, dict) and event.get("event") == EVENT and "nsx_object" in event:
            events.append((number, event))
    return events, skipped


def _row(path: Path, number: int, event: dict[str, Any], nsx_host: str) -> dict[str, Any]:
    where = f"{path}:{number}"
    host = event.get("nsx")
    if not isinstance(host, str):
        raise PlanError(f"{where}: the {EVENT} line does not name its NSX manager (nsx)")
    if host_key(host) != host_key(nsx_host):
        raise PlanError(
            f"{where}: logged against NSX manager {host}, but the configuration points at "
            f"{nsx_host}"
        )
    router, route_id, body = event.get("router"), event.get("route"), event.get("nsx_object")
    if not isinstance(router, str) or not TIER1.match(router):
        raise PlanError(f"{where}: router {router!r} is not a Tier-1 policy path")
    if not isinstance(route_id, str) or not route_id or not _plain_id(route_id):
        raise PlanError(f"{where}: route {route_id!r} is not a plain static route id")
    if not isinstance(body, dict) or body.get("id") != route_id:
        raise PlanError(f"{where}: nsx_object is not route {route_id}'s body")
    network = event.get("network")
    if not isinstance(network, str) or body.get("network") != network or not _cidr(network):
        raise PlanError(f"{where}: route {route_id}: network missing or not the body's")
    hops = body.get("next_hops")
    if (
        not isinstance(hops, list)
        or not hops
        or not all(isinstance(h, dict) and isinstance(h.get("ip_address"), str) for h in hops)
    ):
        raise PlanError(f"{where}: route {route_id}: next_hops missing or without ip_address")
    found_tags = body.get("tags")
    tags: list[Any] = found_tags if isinstance(found_tags, list) else []
    row: dict[str, Any] = dict.fromkeys(ROW_FIELDS)
    row.update(
        router_path=router,
        id=route_id,
        path=f"{router}/static-routes/{route_id}",  # never a path from the file
        display_name=body.get("display_name"),
        network=network,
        next_hops=[h["ip_address"] for h in hops],
        tags=[
            {"scope": str(t.get("scope", "")), "tag": str(t.get("tag", ""))}
            for t in tags
            if isinstance(t, dict)
        ],
        checked_clusters=[],
        verdict=Verdict.ORPHANED.value,
        action=Action.DELETED.value,
        note=f"from the log of run {event.get('run_id')}: {event.get('note')}",
        revision=body.get("_revision") if isinstance(body.get("_revision"), int) else None,
        protection=body.get("_protection"),
        nsx_object=body,
    )
    return row


def _plain_id(route_id: str) -> bool:
    return not any(c in route_id for c in "/?#%\\") and route_id not in {".", ".."}


def _cidr(text: str) -> bool:
    try:
        parse_network(text)
    except ValueError:
        return False
    return True
