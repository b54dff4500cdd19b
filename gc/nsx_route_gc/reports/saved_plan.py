"""A saved scan report read back as the plan that ``apply --plan`` may carry out.

The checks here are about the document, before NSX is contacted: it is a scan report of this
NSX manager, its ``plan_sha256`` matches its rows (nothing was edited since the scan wrote
it), and it is recent enough. The digest is an integrity check against edits and mix-ups,
not a signature: the change ticket's approval is what makes the plan authoritative.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from nsx_route_gc.errors import PlanError
from nsx_route_gc.models import (
    Verdict,
    parse_network,
    plan_sha256,
    safe_id,
    static_route_path,
    tier1_router,
)
from nsx_route_gc.reports.rows import (
    READABLE_SCHEMA_VERSIONS,
    deletion_key,
    fill_rows,
    proposed,
)
from nsx_route_gc.untrusted import UntrustedInput, load_json

DEFAULT_MAX_AGE = timedelta(hours=24)
# A plan stamped this far in the future is taken as a clock or editing mistake, not as fresh.
CLOCK_SKEW = timedelta(minutes=5)
# A schema 2 report of 100,000 routes is about 70 MB; schema 1 ones were up to 305 MB.
MAX_REPORT = 1 << 30
_GZIP_MAGIC = b"\x1f\x8b"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# The note of a row whose route this tool deleted (nsx.deleter's notes of a confirmed
# deletion); "already-gone: ..." rows were gone before it came, and are never recreated.
DELETED_BY_THIS_TOOL = "deleted:"


@dataclass(frozen=True)
class PlannedDeletion:
    """One route the plan deletes, with the evidence the scan recorded for it."""

    router_path: str
    id: str
    path: str
    revision: int | None
    network: str
    nsx_object: dict[str, Any] | None
    row: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return (self.router_path, self.id)


@dataclass(frozen=True)
class SavedPlan:
    source: Path
    nsx_host: str
    finished_at: datetime
    plan_sha256: str
    deletions: tuple[PlannedDeletion, ...]
    # Approved deletions that --route/--router left out of this run.
    left_out: frozenset[tuple[str, str]] = frozenset()

    @property
    def routers(self) -> list[str]:
        return sorted({d.router_path for d in self.deletions})


def host_key(host: str) -> str:
    """An NSX host as operators write it, reduced so that equal managers compare equal."""
    text = host.strip().lower().removeprefix("https://").rstrip("/")
    return text.removesuffix(":443")


def read_report_text(path: Path) -> str:
    """A report's text, report.json or report.json.gz, at most MAX_REPORT bytes of it."""
    try:
        with path.open("rb") as raw:
            if raw.read(2) == _GZIP_MAGIC:
                raw.seek(0)
                with gzip.GzipFile(fileobj=raw) as unpacked:
                    data = unpacked.read(MAX_REPORT + 1)
            else:
                raw.seek(0)
                data = raw.read(MAX_REPORT + 1)
    except (OSError, EOFError, zlib.error) as exc:
        detail = getattr(exc, "strerror", None) or exc
        raise PlanError(f"{path}: cannot read: {detail}") from exc
    if len(data) > MAX_REPORT:
        raise PlanError(f"{path}: larger than {MAX_REPORT} bytes, not a report of ours")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanError(f"{path}: not UTF-8 text") from exc


def read_report(path: Path, *, mode: str | None) -> dict[str, Any]:
    """A report.json (or report.json.gz) of the given ``mode`` (None: any mode), checked for
    the fields every report has. Schema 1 and 2 reports are read: a schema 2 row lacks only
    bodies that plans and restore never use (rows without an action or a problem)."""
    text = read_report_text(path)
    try:
        # Strict: a key given twice (which one wins is the parser's whim) or nesting deeper
        # than any report has is refused.
        report = load_json(text)
    except UntrustedInput as exc:
        raise PlanError(f"{path}: {exc}") from None
    except ValueError:
        raise PlanError(f"{path}: not valid JSON") from None
    if not isinstance(report, dict):
        raise PlanError(f"{path}: not a nsx-route-gc report (expected a JSON object)")
    version = report.get("schema_version")
    if isinstance(version, bool) or version not in READABLE_SCHEMA_VERSIONS:
        raise PlanError(
            f"{path}: schema_version {version!r} is not supported "
            f"(expected one of {', '.join(map(str, READABLE_SCHEMA_VERSIONS))})"
        )
    if mode is not None and report.get("mode") != mode:
        raise PlanError(f"{path}: a {report.get('mode')!r} report, expected a {mode!r} report")
    nsx = report.get("nsx")
    if not isinstance(nsx, dict) or not isinstance(nsx.get("host"), str) or not nsx["host"]:
        raise PlanError(f"{path}: missing nsx.host")
    routes = report.get("routes")
    if not isinstance(routes, list):
        raise PlanError(f"{path}: missing routes list")
    for i, row in enumerate(routes):
        _check_row(path, i, row)
    fill_rows(routes, report.get("clusters"))
    return report


def check_host(path: Path, report: dict[str, Any], nsx_host: str) -> None:
    planned = report["nsx"]["host"]
    if host_key(planned) != host_key(nsx_host):
        raise PlanError(
            f"{path}: made against NSX manager {planned}, "
            f"but the configuration points at {nsx_host}"
        )


def check_sha256(path: Path, digest: str, approved: str | None, what: str) -> None:
    """The operator's ``--plan-sha256``, when given, must be the file's checked digest: a file
    edited and re-signed after approval is refused."""
    if approved is None:
        return
    if not _SHA256.match(approved.strip().lower()):
        raise PlanError(f"--plan-sha256: {approved!r} is not a SHA-256 (64 hex digits)")
    if approved.strip().lower() != digest:
        raise PlanError(
            f"{path}: {what} {digest} is not the approved --plan-sha256 {approved.strip()}"
        )


def select(plan: SavedPlan, route_ids: Sequence[str], routers: Sequence[str]) -> SavedPlan:
    """Only the deletions named by ``--route`` ids and ``--router`` paths (terraform's
    -target); every one must be in the plan. Neither given: the whole plan."""
    if not route_ids and not routers:
        return plan
    ids = {d.id for d in plan.deletions}
    for route_id in route_ids:
        if route_id not in ids:
            raise PlanError(f"{plan.source}: --route {route_id} is not a deletion of this plan")
    planned_routers = set(plan.routers)
    for router in routers:
        if router not in planned_routers:
            raise PlanError(f"{plan.source}: --router {router}: the plan deletes nothing there")
    wanted_ids, wanted_routers = set(route_ids), set(routers)
    chosen = tuple(
        d for d in plan.deletions if d.id in wanted_ids or d.router_path in wanted_routers
    )
    left_out = frozenset(d.key for d in plan.deletions) - {d.key for d in chosen}
    return replace(plan, deletions=chosen, left_out=left_out)


def load_plan(
    path: Path,
    *,
    nsx_host: str,
    now: datetime,
    max_age: timedelta = DEFAULT_MAX_AGE,
    allow_old: bool = False,
    routers: Collection[str] = (),
    approved_sha256: str | None = None,
) -> SavedPlan:
    """The deletions of a saved scan report, or PlanError naming the file and the problem.

    ``routers``: the configured routers (nsx.routers), when set the only ones a plan may
    name. ``approved_sha256``: the digest the change ticket approved, when given."""
    report = read_report(path, mode="scan")
    check_host(path, report, nsx_host)
    rows: list[dict[str, Any]] = report["routes"]
    # The routes marked delete, and those only a blast-radius limit held: approved by the
    # digest, they may be applied a few at a time (--route, --router).
    planned = [
        row for row in rows if proposed(row["action"], row["verdict"], row.get("hold_reason"))
    ]
    digest = report.get("plan_sha256")
    if not isinstance(digest, str):
        raise PlanError(f"{path}: missing plan_sha256")
    expected = plan_sha256(report["nsx"]["host"], [deletion_key(row) for row in planned])
    if digest != expected:
        raise PlanError(
            f"{path}: plan_sha256 does not match the routes marked for deletion "
            "(the report was edited or truncated after the scan)"
        )
    check_sha256(path, digest, approved_sha256, "plan_sha256")
    finished = _timestamp(path, report.get("finished_at"))
    age = now - finished
    if age < -CLOCK_SKEW:
        raise PlanError(f"{path}: finished_at {report['finished_at']} lies in the future")
    if age > max_age and not allow_old:
        raise PlanError(
            f"{path}: the plan is {_hours(age)} old, older than --max-plan-age "
            f"{_hours(max_age)}; scan again, or pass --allow-old-plan"
        )
    deletions = []
    seen: set[tuple[str, str]] = set()
    for row in planned:
        deletion = _deletion(path, row, routers)
        if deletion.key in seen:
            raise PlanError(f"{path}: route {deletion.id} on {deletion.router_path} listed twice")
        seen.add(deletion.key)
        deletions.append(deletion)
    return SavedPlan(path, report["nsx"]["host"], finished, digest, tuple(deletions))


def _check_row(path: Path, index: int, row: object) -> None:
    if not isinstance(row, dict):
        raise PlanError(f"{path}: routes[{index}] is not an object")
    for key in ("router_path", "id", "action", "verdict"):
        if not isinstance(row.get(key), str) or not row[key]:
            raise PlanError(f"{path}: routes[{index}].{key} missing or not a string")
    revision = row.get("revision")
    if revision is not None and (isinstance(revision, bool) or not isinstance(revision, int)):
        raise PlanError(f"{path}: routes[{index}].revision is not a whole number")


def _deletion(path: Path, row: dict[str, Any], routers: Collection[str]) -> PlannedDeletion:
    route_path = check_route_row(path, row, routers)
    where = f"{path}: route {row['id']}"
    if row["verdict"] != Verdict.ORPHANED.value:
        raise PlanError(f"{where}: marked for deletion but its verdict is {row['verdict']!r}")
    return PlannedDeletion(
        row["router_path"],
        row["id"],
        route_path,
        row["revision"],
        row["network"],
        row.get("nsx_object"),
        row,
    )


def check_route_row(path: Path, row: dict[str, Any], routers: Collection[str]) -> str:
    """Check a row that a plan deletes or a restore recreates; its policy path, made from its
    router and id (never taken from the file). PlanError naming the row otherwise.

    The router must be a Tier-1 (default space or a project), one of ``routers`` when they
    are given; the id a plain static route id; the row's path (when given) the one made; the
    body (when kept) the same route: its id, network and next hops those of the row.
    """
    router, route_id = row["router_path"], row["id"]
    where = f"{path}: route {route_id[:80]!r}"
    if not tier1_router(router):
        raise PlanError(f"{where}: router_path {router!r} is not a Tier-1 policy path")
    if routers and router not in routers:
        raise PlanError(f"{where}: router {router} is not one of the configured nsx.routers")
    if not safe_id(route_id):
        raise PlanError(f"{where}: not a plain static route id (no '/', '..' or URL syntax)")
    route_path = static_route_path(router, route_id)
    if row.get("path") is not None and row.get("path") != route_path:
        raise PlanError(f"{where}: path {row.get('path')!r} does not match {route_path}")
    network = row.get("network")
    if not isinstance(network, str) or not _is_network(network):
        raise PlanError(f"{where}: network missing or not a CIDR")
    hops = row.get("next_hops")
    if hops is not None and (
        not isinstance(hops, list) or not all(isinstance(h, str) for h in hops)
    ):
        raise PlanError(f"{where}: next_hops is not a list of addresses")
    body = row.get("nsx_object")
    if body is not None:
        _check_body(where, body, row)
    return route_path


def _check_body(where: str, body: object, row: dict[str, Any]) -> None:
    if not isinstance(body, dict):
        raise PlanError(f"{where}: nsx_object is not an object")
    if body.get("id") != row["id"]:
        raise PlanError(f"{where}: nsx_object is not this route's body (another id)")
    network = body.get("network")
    if not isinstance(network, str) or not _same_network(network, row["network"]):
        raise PlanError(f"{where}: nsx_object's network is not the row's {row['network']}")
    hops = body.get("next_hops")
    if not isinstance(hops, list):
        raise PlanError(f"{where}: nsx_object.next_hops is not a list")
    addresses = []
    for i, hop in enumerate(hops):
        if not isinstance(hop, dict) or not isinstance(hop.get("ip_address"), str):
            raise PlanError(f"{where}: nsx_object.next_hops[{i}] has no ip_address")
        distance = hop.get("admin_distance")
        if distance is not None and (
            isinstance(distance, bool) or not isinstance(distance, int) or not 1 <= distance <= 255
        ):
            raise PlanError(f"{where}: nsx_object.next_hops[{i}].admin_distance is not 1 to 255")
        addresses.append(hop["ip_address"])
    row_hops = row.get("next_hops")
    if isinstance(row_hops, list) and sorted(addresses) != sorted(row_hops):
        raise PlanError(f"{where}: nsx_object's next hops are not the row's {row_hops}")
    tags = body.get("tags", [])
    if not isinstance(tags, list) or not all(
        isinstance(t, dict)
        and isinstance(t.get("scope", ""), str)
        and isinstance(t.get("tag", ""), str)
        for t in tags
    ):
        raise PlanError(f"{where}: nsx_object.tags is not a list of scope/tag pairs")


def _is_network(text: str) -> bool:
    try:
        parse_network(text)
    except ValueError:
        return False
    return True


def _same_network(a: str, b: str) -> bool:
    try:
        return parse_network(a) == parse_network(b)
    except ValueError:
        return False


def restore_sha256(nsx_host: str, deleted: Iterable[tuple[str, str, object]]) -> str:
    """Digest of what a restore would recreate: the NSX host and each route this tool deleted
    (router path, route id, original body). An apply report records it; restore checks it.

    The digest of ``json.dumps({"deleted": [[router, id, body as sorted compact JSON], ...]
    sorted, "nsx_host": host}, sort_keys=True)``, hashed a route at a time: the document of
    10,000 deletions made whole (and encoded) was the peak of an apply's memory, 23 MB over
    the rest."""
    rows = sorted(
        [router, rid, json.dumps(obj, sort_keys=True, separators=(",", ":"))]
        for router, rid, obj in deleted
    )
    digest = hashlib.sha256(b'{"deleted": [')
    for i, row in enumerate(rows):
        if i:
            digest.update(b", ")
        digest.update(json.dumps(row).encode())
    digest.update(f'], "nsx_host": {json.dumps(nsx_host)}}}'.encode())
    return digest.hexdigest()


def _timestamp(path: Path, value: object) -> datetime:
    if not isinstance(value, str):
        raise PlanError(f"{path}: finished_at missing")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise PlanError(f"{path}: finished_at {value!r} is not an ISO 8601 time") from exc
    if moment.tzinfo is None:
        raise PlanError(f"{path}: finished_at {value!r} has no time zone")
    return moment


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f}h" if hours < 48 else f"{hours / 24:.1f}d"
