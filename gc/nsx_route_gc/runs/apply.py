"""``apply``: delete orphaned routes, from a fresh scan or from an approved saved plan.

A route is deleted only when *both* hold at the moment of deletion: it is in the plan (the
fresh scan's, or the approved report's) and a fresh judgement still calls it orphaned and
deletable under the current policy. So ``apply --plan`` scans again too (only the routers the
plan touches), and a planned route is held when the fresh scan sees it differently:
``changed-since-plan`` (``_revision`` moved), ``no-longer-orphaned``, a policy hold (keep-list,
protection tag, ``REQUIRE_OVERRIDE``, grace period) or a blast-radius limit. Orphans the plan
does not name are never deleted (``not-in-plan``).

Returns an :class:`~nsx_route_gc.runs.frame.Outcome`; printing, prompting and exiting are the CLI's.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from nsx_route_gc.config import Config
from nsx_route_gc.errors import NsxError, PlanError
from nsx_route_gc.models import Action, Plan, Route, RouteVerdict, Verdict
from nsx_route_gc.models import plan_sha256 as plan_digest
from nsx_route_gc.nsx.client import NsxClient
from nsx_route_gc.nsx.deleter import DEFAULT_BATCH_SIZE, Deleter, DeletionResult
from nsx_route_gc.ports import ClusterDiscovery, ClusterSource, Paced, RouteSource
from nsx_route_gc.progress import NULL_PROGRESS, Progress
from nsx_route_gc.reports.files import write_reports
from nsx_route_gc.reports.journal import (
    JOURNAL_NAME,
    Journal,
    is_finished,
    set_aside,
    unfinished_journals,
)
from nsx_route_gc.reports.rows import (
    ROW_FIELDS,
    Noted,
    Rows,
    RowSource,
    RunInfo,
    build_report,
)
from nsx_route_gc.reports.saved_plan import (
    DEFAULT_MAX_AGE,
    DELETED_BY_THIS_TOOL,
    PlannedDeletion,
    SavedPlan,
    load_plan,
    restore_sha256,
    select,
)
from nsx_route_gc.runs.frame import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    DiscoveryFactory,
    InventoryFactory,
    LaterClusters,
    Logout,
    NsxFactory,
    Outcome,
    bound_run,
    default_discovery,
    default_inventory,
    ended_without_report,
    log_summary,
)
from nsx_route_gc.runs.scan import OVERLAP_MIN_AGE, Scanner, ScanResult, nsx_threads, utc_now

log = structlog.get_logger(__name__)

Key = tuple[str, str]


@dataclass(frozen=True)
class Proposal:
    """What apply is about to delete, for the confirmation question: on which manager, how
    many routes on which routers, and the digest that identifies them."""

    nsx_host: str
    counts: dict[str, int]  # router -> routes about to be deleted
    plan_sha256: str  # the approved plan's digest, or the fresh scan's
    plan: Path | None  # the approved plan, or None for a fresh scan
    deleting_sha256: str  # the digest of exactly these deletions (= plan_sha256 when all)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


Confirm = Callable[[Proposal], bool]


@dataclass
class Prepared:
    """The fresh judgement, narrowed to what this run may delete."""

    scan: ScanResult
    verdicts: list[RouteVerdict]  # every row of the fresh scan, candidates included
    candidates: list[RouteVerdict]  # to delete now
    planned: set[Key]  # what the plan asked for: every one must end deleted for exit 0
    extra_rows: list[dict[str, Any]] = field(default_factory=list)  # planned, not listed now
    limit_holds: list[tuple[str, str]] = field(default_factory=list)


class _OnlyRouters:
    """The NSX client, but scanning only the routers a saved plan touches."""

    def __init__(self, nsx: RouteSource, routers: Sequence[str]) -> None:
        self.nsx = nsx
        self.routers = list(routers)

    def list_routers(self) -> list[str]:
        return list(self.routers)

    def list_routes(self, router_path: str) -> list[Route]:
        return self.nsx.list_routes(router_path)

    def parallel_width(self) -> int:
        return self.nsx.parallel_width() if isinstance(self.nsx, Paced) else 1


def run_apply(
    config: Config,
    *,
    confirm: Confirm,
    plan_path: Path | None = None,
    report_dir: Path | None = None,
    max_plan_age: timedelta = DEFAULT_MAX_AGE,
    allow_old_plan: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    nsx_factory: NsxFactory = NsxClient,
    inventory_factory: InventoryFactory = default_inventory,
    discovery_factory: DiscoveryFactory = default_discovery,
    clock: Callable[[], datetime] = utc_now,
    sleep: Callable[[float], None] = time.sleep,
    progress: Progress = NULL_PROGRESS,
    force: bool = False,
    runs_root: Path | None = None,
    compress: bool = False,
    plan_sha256: str | None = None,
    route_ids: Sequence[str] = (),
    router_paths: Sequence[str] = (),
) -> Outcome:
    """``runs_root``: the directory whose run subdirectories (``--keep-runs``) are checked
    for unfinished journals too; ``force``: set such journals aside and go on.
    ``plan_sha256``: the digest the change approved (the plan must have it); ``route_ids``,
    ``router_paths``: delete only these of the plan's deletions."""
    started = time.monotonic()
    with bound_run("apply", config) as run_id:
        refusal = check_journals(runs_root or report_dir, force=force, now=clock())
        if refusal is not None:
            return ended_without_report(EXIT_USAGE, refusal, started, config)
        saved = None
        if plan_path is not None:
            try:
                saved = _load_saved(
                    config,
                    plan_path,
                    now=clock(),
                    max_age=max_plan_age,
                    allow_old=allow_old_plan,
                    plan_sha256=plan_sha256,
                    targets=(route_ids, router_paths),
                )
            except PlanError as exc:
                log.error("plan.refused", plan=str(plan_path), error=str(exc))
                return ended_without_report(EXIT_USAGE, str(exc), started, config)
        if report_dir is None:
            log.warning("apply.no_report_dir", hint="deleted bodies are only in the logs")
        run = _Deletion(
            config,
            saved,
            confirm=confirm,
            report_dir=report_dir,
            run_id=run_id,
            batch_size=batch_size,
            clock=clock,
            sleep=sleep,
            progress=progress,
        )
        nsx = None
        logout = Logout(None)
        try:
            nsx = nsx_factory(config.nsx)
            try:
                later = LaterClusters(
                    lambda: inventory_factory(config, progress), lambda: discovery_factory(config)
                )
                run.delete(nsx, later, later)
            finally:
                logout = Logout(nsx)
        except NsxError as exc:
            log.error("run.failed", error=str(exc))
            _close(run.journal)
            logout.wait()
            return ended_without_report(EXIT_FAILURE, str(exc), started, config)
        except BaseException:
            # Ctrl-C or SIGTERM: the journal stays unfinished, the way back for what was sent.
            if run.journal is not None:
                log.error("apply.interrupted", journal=str(run.journal.path))
            _close(run.journal)
            logout.wait()
            raise
        finally:
            progress.close()
        prepared, results, journal = run.prepared, run.results, run.journal
        if prepared is None or results is None:
            logout.wait()
            return ended_without_report(
                EXIT_FAILURE, "apply cancelled: nothing was deleted", started, config
            )
        try:
            report = apply_report(
                config,
                prepared,
                results,
                saved,
                run_id,
                clock(),
                batch_size,
                approved_sha256=plan_sha256.strip().lower() if plan_sha256 else None,
                targets=[*route_ids, *router_paths],
            )
            paths = _write(report, report_dir, journal, compress=compress)
        finally:
            # The logout went on while the report was written.
            logout.wait()
        code = EXIT_FAILURE if report["errors"] else EXIT_OK
        log_summary(report, code, started, metrics=config.metrics, nsx=nsx)
        return Outcome(code, report, paths)


def _load_saved(
    config: Config,
    plan_path: Path,
    *,
    now: datetime,
    max_age: timedelta,
    allow_old: bool,
    plan_sha256: str | None,
    targets: tuple[Sequence[str], Sequence[str]],
) -> SavedPlan:
    """The saved plan, checked and narrowed to the ``--route``/``--router`` targets;
    PlanError when refused."""
    saved = load_plan(
        plan_path,
        nsx_host=config.nsx.host,
        now=now,
        max_age=max_age,
        allow_old=allow_old,
        # Routers outside nsx.routers are not refused here: each such deletion is held
        # (out-of-scope) and reported.
        approved_sha256=plan_sha256,
    )
    saved = select(saved, *targets)
    log.info(
        "plan.loaded",
        plan=str(plan_path),
        deletions=len(saved.deletions),
        left_out=len(saved.left_out),
        plan_sha256=saved.plan_sha256,
    )
    return saved


class _Deletion:
    """The part of an apply that needs NSX: the fresh scan, the question, the deletions.
    What it got so far stays readable when it raises (the journal to close)."""

    def __init__(
        self,
        config: Config,
        saved: SavedPlan | None,
        *,
        confirm: Confirm,
        report_dir: Path | None,
        run_id: str,
        batch_size: int,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None],
        progress: Progress,
    ) -> None:
        self.config = config
        self.saved = saved
        self.confirm = confirm
        self.report_dir = report_dir
        self.run_id = run_id
        self.batch_size = batch_size
        self.clock = clock
        self.sleep = sleep
        self.progress = progress
        self.prepared: Prepared | None = None
        self.results: list[DeletionResult] | None = None  # None: cancelled
        self.journal: Journal | None = None

    def delete(
        self, nsx: Any, inventory: ClusterSource, discovery: ClusterDiscovery | None
    ) -> None:
        config, saved, clock, progress = self.config, self.saved, self.clock, self.progress
        if saved is None:
            scanner = Scanner(
                config, nsx, inventory, discovery=discovery, clock=clock, progress=progress
            )
            prepared = prepare_fresh(config, scanner)
        else:
            prepared = prepare_saved(config, saved, nsx, inventory, clock, discovery)
        self.prepared = prepared
        proposal = propose(config, prepared, saved)
        progress.close()  # the question must not be drawn over by the bars
        if proposal.counts and not self.confirm(proposal):
            log.warning("apply.cancelled", routes=proposal.total)
            return
        if self.report_dir is not None and prepared.candidates:
            self.journal = open_journal(self.report_dir, self.run_id, config.nsx.host, clock)
        deleter = Deleter(
            nsx,
            allow_overwrite=config.policy.allow_overwrite,
            batch_size=self.batch_size,
            sleep=self.sleep,
            workers=nsx_threads(config),
            progress=progress,
            journal=self.journal,
        )
        self.results = deleter.delete(prepared.candidates, listed=search_vouchers(config, prepared))


def propose(config: Config, prepared: Prepared, saved: SavedPlan | None) -> Proposal:
    counts = dict(Counter(v.route.router_path for v in prepared.candidates))
    deleting = plan_digest(config.nsx.host, [_revision_key(v) for v in prepared.candidates])
    return Proposal(
        nsx_host=config.nsx.host,
        counts=counts,
        plan_sha256=saved.plan_sha256 if saved is not None else deleting,
        plan=saved.source if saved is not None else None,
        deleting_sha256=deleting,
    )


def _revision_key(v: RouteVerdict) -> tuple[str, str, int | None]:
    return (v.route.router_path, v.route.id, v.route.revision)


def check_journals(directory: Path | None, *, force: bool, now: datetime) -> str | None:
    """Why this run must not start (an earlier apply died while deleting), or None.

    Its journal is the only way back for what it deleted: the run refuses unless forced,
    and a forced run keeps the journal under another name.
    """
    if directory is None:
        return None
    unfinished = unfinished_journals(directory)
    if unfinished and not force:
        first = unfinished[0]
        log.error("apply.unfinished_journal", journal=str(first), journals=len(unfinished))
        return (
            f"{first}: unfinished journal of an earlier apply that stopped while deleting; "
            f"restore --from {first.parent} to bring its routes back, or pass --force to keep "
            "it as journal.<time>.jsonl and apply anyway"
        )
    for path in unfinished:
        kept = set_aside(path, now)
        log.warning("apply.unfinished_journal_kept", journal=str(path), kept_as=str(kept))
    return None


def open_journal(
    directory: Path, run_id: str, nsx_host: str, clock: Callable[[], datetime]
) -> Journal:
    """This run's journal in ``directory``. A finished journal there is an earlier run's whose
    report this run replaces anyway: it goes (an unfinished one was set aside or refused)."""
    directory.mkdir(parents=True, exist_ok=True)
    old = directory / JOURNAL_NAME
    if old.exists() and is_finished(old):
        old.unlink()
    return Journal.create(directory, run_id=run_id, nsx_host=nsx_host, clock=clock)


def _write(
    report: dict[str, Any], report_dir: Path | None, journal: Journal | None, *, compress: bool
) -> list[Path]:
    """Write the report, then end the journal: only now does the report hold every body
    the journal does."""
    try:
        paths = write_reports(report, report_dir, compress=compress) if report_dir else []
    except BaseException:
        _close(journal)
        raise
    if journal is not None:
        journal.finish(paths[0].name)
    return paths


def _close(journal: Journal | None) -> None:
    if journal is not None:
        journal.close()


def search_vouchers(config: Config, prepared: Prepared) -> dict[str, list[str]] | None:
    """What lets the search confirm deletions (``confirm``), or None to list each router.

    Search may only vouch for the absence of routes indexed long ago. Under a grace period
    shorter than OVERLAP_MIN_AGE a deleted route can be minutes old, perhaps not yet in
    the index, so its absence there would prove nothing.
    """
    if config.policy.min_age < OVERLAP_MIN_AGE:
        return None
    return listed_paths(prepared)


def listed_paths(prepared: Prepared) -> dict[str, list[str]]:
    """The path of every route this run listed on a router it deletes from: what a search
    must still find there to be trusted to confirm the deletions (``confirm``)."""
    routers = {v.route.router_path for v in prepared.candidates}
    listed: dict[str, list[str]] = {}
    for listing in prepared.scan.plan.routers:
        for route in listing.routes:
            if route.router_path in routers:
                listed.setdefault(route.router_path, []).append(route.path)
    return listed


def prepare_fresh(config: Config, scanner: Scanner) -> Prepared:
    """The CronJob's mode: the fresh scan is the plan; judgement already applied the limits."""
    result = scanner.scan()
    candidates = list(result.plan.deletions)
    return Prepared(
        scan=result,
        verdicts=list(result.plan.verdicts),
        candidates=candidates,
        planned={_key(v) for v in candidates},
        limit_holds=list(result.plan.limit_holds),
    )


def prepare_saved(
    config: Config,
    saved: SavedPlan,
    nsx: RouteSource,
    inventory: ClusterSource,
    clock: Callable[[], datetime],
    discovery: ClusterDiscovery | None = None,
) -> Prepared:
    """Intersect the approved plan with a fresh judgement of the routers it touches."""
    # Limits are applied below to what this run would delete, not to every fresh orphan.
    unlimited = replace(
        config,
        policy=replace(config.policy, max_deletes=sys.maxsize, max_delete_percent=100.0),
    )
    scope = set(config.nsx.routers)
    routers = [r for r in saved.routers if not scope or r in scope]
    only = _OnlyRouters(nsx, routers)
    result = Scanner(unlimited, only, inventory, discovery=discovery, clock=clock).scan()
    planned = {d.key: d for d in saved.deletions}
    listed = {r.path for r in result.plan.routers if r.listed}
    verdicts: list[RouteVerdict] = []
    candidates: list[RouteVerdict] = []
    seen: set[Key] = set()
    for fresh in result.plan.verdicts:
        deletion = planned.get(_key(fresh))
        if deletion is not None:
            seen.add(deletion.key)
        if _key(fresh) in saved.left_out:
            v = _hold(fresh, "not-targeted: approved in the plan, not named by --route/--router")
        else:
            v = _against_plan(fresh, deletion, saved.source)
        if deletion is not None and v.action is Action.DELETE:
            candidates.append(v)
        verdicts.append(v)
    extra_rows = []
    for deletion in saved.deletions:
        if deletion.key in seen:
            continue
        router = deletion.router_path
        if scope and router not in scope:
            extra_rows.append(
                _plan_row(
                    deletion.row,
                    Action.HELD,
                    hold=f"out-of-scope: {router} is not in nsx.routers of {config.source}",
                )
            )
        elif router not in listed:
            extra_rows.append(
                _plan_row(
                    deletion.row,
                    Action.HELD,
                    hold=f"not-rechecked: router {router} could not be listed",
                )
            )
        else:
            extra_rows.append(
                _plan_row(
                    deletion.row,
                    Action.DELETED,
                    note="already-gone: not on the router when it was listed again",
                )
            )
            log.info("route.deleted", router=router, route=deletion.id, note="already-gone")
    managed = Counter(v.route.router_path for v in verdicts if v.verdict is not Verdict.FOREIGN)
    kept, limit_holds = apply_limits(candidates, managed, config)
    candidate_keys = {_key(v) for v in candidates}
    kept_keys = {_key(v) for v in kept}
    holds = dict(limit_holds)
    verdicts = [
        _hold(v, holds.get(v.route.router_path) or holds["*"])
        if _key(v) in candidate_keys and _key(v) not in kept_keys
        else v
        for v in verdicts
    ]
    return Prepared(result, verdicts, kept, set(planned), extra_rows, limit_holds)


def _against_plan(v: RouteVerdict, deletion: PlannedDeletion | None, source: Path) -> RouteVerdict:
    """A fresh verdict, held unless the plan approved this very route at this revision."""
    if deletion is None:
        if v.action is Action.DELETE:
            return _hold(v, f"not-in-plan: orphaned, but not approved in {source}")
        return v
    if v.route.revision != deletion.revision:
        return _hold(
            v,
            f"changed-since-plan: _revision {deletion.revision} in the plan, "
            f"{v.route.revision} now",
        )
    if v.verdict is not Verdict.ORPHANED:
        return _hold(v, f"no-longer-orphaned: now {v.verdict.value}: {v.reason}")
    return v  # deletable, or held by the current policy with judgement's reason


def apply_limits(
    candidates: Sequence[RouteVerdict], managed: Counter[str], config: Config
) -> tuple[list[RouteVerdict], list[tuple[str, str]]]:
    """The blast-radius limits on what is about to be deleted: all or nothing per router
    (``max_delete_percent`` of its managed routes), then all or nothing per run
    (``max_deletes``). The same rules and wording as judgement's."""
    policy = config.policy
    holds: list[tuple[str, str]] = []
    per_router = Counter(v.route.router_path for v in candidates)
    blocked = set()
    for router, deleting in per_router.items():
        total = managed.get(router, 0) or deleting
        percent = 100.0 * deleting / total
        if percent > policy.max_delete_percent:
            blocked.add(router)
            holds.append(
                (
                    router,
                    f"max-delete-percent: {deleting} of {total} managed routes on {router} "
                    f"({percent:.0f}%) > {policy.max_delete_percent:g}%",
                )
            )
    kept = [v for v in candidates if v.route.router_path not in blocked]
    if len(kept) > policy.max_deletes:
        holds.append(
            ("*", f"max-deletes: {len(kept)} deletions > max_deletes {policy.max_deletes}")
        )
        kept = []
    for router, why in holds:
        log.warning("router.deletions_held", router=router, reason=why)
    return kept, holds


def apply_report(
    config: Config,
    prepared: Prepared,
    results: Sequence[DeletionResult],
    saved: SavedPlan | None,
    run_id: str,
    finished: datetime,
    batch_size: int,
    approved_sha256: str | None = None,
    targets: Sequence[str] = (),
) -> dict[str, Any]:
    """``targets``: the --route ids and --router paths the run was narrowed to."""
    by_key = {r.key: r for r in results}

    def make_row(item: RouteVerdict | dict[str, Any]) -> RowSource:
        if isinstance(item, dict):
            return item  # a planned route that was not listed again
        result = by_key.get(_key(item))
        if result is None:
            return item
        # Not the row itself: the reports read a verdict's fields without making its row.
        return Noted(result.verdict, result.error, result.note)

    # Made on demand: at scale, every route's row held at once would dominate memory.
    rows = Rows([*prepared.verdicts, *prepared.extra_rows], make_row)
    # What became of each planned route, read from the row sources: making 10,000s of rows
    # only to count them would be the run's peak of memory.
    outcomes: Counter[str] = Counter()
    deleted: list[tuple[str, str, int | None]] = []
    for router, route_id, action, hold_reason, note, revision in map(_outcome, rows.sources()):
        key = (router, route_id)
        if key not in prepared.planned:
            continue
        if action == Action.DELETED.value:
            deleted.append((router, route_id, revision))
        already = action == Action.DELETED.value and (note or "").startswith("already-gone")
        outcomes["already-gone" if already else action] += 1
        # The deleter logged its own holds; these are the ones decided before deleting.
        if action == Action.HELD.value and key not in by_key:
            log.warning("route.held", router=router, route=route_id, reason=hold_reason)
    errors = list(prepared.scan.failures)
    errors += [f"deletions held on {r}: {why}" for r, why in prepared.limit_holds]
    failed = outcomes[Action.DELETE_FAILED.value]
    if failed:
        errors.append(f"{failed} deletion(s) failed")
    held = outcomes[Action.HELD.value]
    if held:
        errors.append(f"{held} planned deletion(s) held")
    scan = prepared.scan
    info = RunInfo(
        mode="apply",
        started_at=scan.started_at,
        finished_at=finished,
        nsx_host=config.nsx.host,
        config_source=config.source,
        run_id=run_id,
        policy=config.policy,
    )
    plan = Plan(
        scan.plan.routers,
        scan.plan.clusters,
        (),
        tuple(prepared.limit_holds),
        missing=scan.plan.missing,
    )
    report = build_report(info, plan, errors=_unique(errors), rows=rows)
    report["apply"] = {
        "source": str(saved.source) if saved else "fresh-scan",
        "plan_sha256": saved.plan_sha256 if saved else None,
        # What the operator passed as --plan-sha256: the plan's digest was checked against it.
        "approved_sha256": approved_sha256,
        "plan_finished_at": saved.finished_at.isoformat() if saved else None,
        # Over the routes this run found deleted (router, id, _revision), like plan_sha256:
        # equal to it when every approved route is gone.
        "deleted_sha256": plan_digest(config.nsx.host, deleted),
        "targeted": sorted(targets),
        "batch_size": batch_size,
        "planned": len(prepared.planned),
        "deleted": outcomes[Action.DELETED.value],
        "already_gone": outcomes["already-gone"],
        "held": held,
        "failed": failed,
        # What `restore` may recreate from this report, digested: restore refuses the report
        # when its deleted rows no longer match (edited), and `restore --plan-sha256` takes it.
        "restore_sha256": restore_sha256(
            config.nsx.host,
            (
                (r.verdict.route.router_path, r.verdict.route.id, r.verdict.route.nsx_object)
                for r in results
                if r.verdict.action is Action.DELETED
                and (r.note or "").startswith(DELETED_BY_THIS_TOOL)
            ),
        ),
    }
    return report


def _outcome(source: RowSource) -> tuple[str, str, str, str | None, str | None, int | None]:
    """(router, route id, action, hold reason, note, revision) of a row, without making it."""
    if isinstance(source, dict):
        return (
            source["router_path"],
            source["id"],
            source["action"],
            source.get("hold_reason"),
            source.get("note"),
            source.get("revision"),
        )
    v, note = (source.verdict, source.note) if isinstance(source, Noted) else (source, None)
    return v.route.router_path, v.route.id, v.action.value, v.hold_reason, note, v.route.revision


def _key(v: RouteVerdict) -> Key:
    return (v.route.router_path, v.route.id)


def _hold(v: RouteVerdict, reason: str) -> RouteVerdict:
    return replace(v, action=Action.HELD, hold_reason=reason)


def _plan_row(
    row: dict[str, Any], action: Action, *, hold: str | None = None, note: str | None = None
) -> dict[str, Any]:
    out = {f: row.get(f) for f in ROW_FIELDS}
    out.update(action=action.value, hold_reason=hold, error=None, note=note)
    for key in ("next_hops", "tags", "checked_clusters"):
        if not isinstance(out[key], list):
            out[key] = []
    return out


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))
