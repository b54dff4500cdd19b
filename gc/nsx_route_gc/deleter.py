"""Deleting routes that judgement (and, for a saved plan, the approval) put up for deletion.

The candidates come from a listing of their router made in this very run (apply always
lists afresh, for a saved plan too): that listing is the re-read before deletion, and its
``_revision`` goes with each route into the hierarchical delete with
``enforce_revision_check=true``, so NSX itself refuses a batch when any route in it changed
or vanished since. A rejected batch is retried route by route (a direct re-read, then
DELETE), so one bad route cannot hold back the rest and a changed route is held. A deletion
counts only once a read confirms the route is gone: one listing of the router after its
batches (absent, or ``marked_for_delete`` while NSX realizes it), not one read per route,
which keeps a run of thousands of deletions within the manager's rate limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Protocol

import structlog

from nsx_route_gc.errors import NsxError
from nsx_route_gc.logs import carry_context
from nsx_route_gc.models import Action, Route, RouteVerdict
from nsx_route_gc.progress import NULL_PROGRESS, Progress

log = structlog.get_logger(__name__)

DEFAULT_BATCH_SIZE = 100
REQUIRE_OVERRIDE = "REQUIRE_OVERRIDE"

NOTE_DELETED = "deleted: confirmed gone"
NOTE_MARKED = "deleted: marked_for_delete, NSX removes it once realized"


class RouteWriter(Protocol):
    """The NSX calls deletion needs (``NsxClient`` has them)."""

    def list_routes(self, router_path: str) -> list[Route]: ...

    def get_route(self, route_path: str) -> Route | None: ...

    def delete_route(self, route_path: str, *, allow_overwrite: bool = False) -> bool: ...

    def hierarchical_delete(
        self,
        router_path: str,
        routes: Sequence[tuple[str, int | None]],
        *,
        allow_overwrite: bool = False,
    ) -> None: ...


@dataclass(frozen=True)
class DeletionResult:
    """What became of one route put up for deletion.

    ``verdict.action`` is ``deleted`` (gone: deleted now, or already gone as ``note`` says),
    ``held`` (with ``hold_reason``) or ``delete-failed`` (with ``error``). A deleted row's
    route is the body read right before the deletion: the original that restore puts back.
    """

    verdict: RouteVerdict
    error: str | None = None
    note: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.verdict.route.router_path, self.verdict.route.id)


def marked_for_delete(route: Route) -> bool:
    body = route.nsx_object
    return bool(body and body.get("marked_for_delete") is True)


def gone(v: RouteVerdict, note: str) -> DeletionResult:
    return DeletionResult(replace(v, action=Action.DELETED, hold_reason=None), note=note)


def held(v: RouteVerdict, reason: str) -> DeletionResult:
    return DeletionResult(replace(v, action=Action.HELD, hold_reason=reason))


def failed(v: RouteVerdict, error: str) -> DeletionResult:
    return DeletionResult(replace(v, action=Action.DELETE_FAILED, hold_reason=None), error=error)


class Deleter:
    def __init__(
        self,
        nsx: RouteWriter,
        *,
        allow_overwrite: bool,
        batch_size: int = DEFAULT_BATCH_SIZE,
        confirm_attempts: int = 3,
        confirm_interval: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        workers: int = 1,
        progress: Progress = NULL_PROGRESS,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.nsx = nsx
        self.allow_overwrite = allow_overwrite
        self.batch_size = batch_size
        self.confirm_attempts = max(1, confirm_attempts)
        self.confirm_interval = confirm_interval
        self.sleep = sleep
        self.workers = max(1, workers)
        self.progress = progress

    def delete(self, candidates: Sequence[RouteVerdict]) -> list[DeletionResult]:
        """Delete ``candidates`` (each with the revision it was listed at), router by router.

        Routers are worked on concurrently (``workers``, the NSX client's own concurrency), each
        router's batches in order; results come back in the order of ``candidates``' routers.
        """
        by_router: dict[str, list[RouteVerdict]] = {}
        for v in candidates:
            by_router.setdefault(v.route.router_path, []).append(v)
        task = self.progress.task("deletions done", total=len(candidates))

        def one_router(item: tuple[str, list[RouteVerdict]]) -> list[DeletionResult]:
            router, routes = item
            done = self._delete_router(router, routes)
            task.advance(len(done))
            return done

        workers = min(self.workers, max(1, len(by_router)))
        with ThreadPoolExecutor(workers, thread_name_prefix="delete") as pool:
            per_router = list(pool.map(carry_context(one_router), by_router.items()))
        return [result for done in per_router for result in done]

    def _delete_router(self, router: str, routes: Sequence[RouteVerdict]) -> list[DeletionResult]:
        log.info("router.deleting", router=router, routes=len(routes))
        decided: dict[tuple[str, str], DeletionResult] = {}
        accepted: list[RouteVerdict] = []
        for start in range(0, len(routes), self.batch_size):
            batch = routes[start : start + self.batch_size]
            if self._send_batch(router, batch):
                accepted.extend(batch)
            else:
                decided.update({_key(v): self._delete_one(v) for v in batch})
        decided.update(self._confirm_router(router, accepted))
        results = [decided[_key(v)] for v in routes]
        for result in results:
            _log(result)
        return results

    def _send_batch(self, router: str, batch: Sequence[RouteVerdict]) -> bool:
        overwrite = self.allow_overwrite and any(
            v.route.protection == REQUIRE_OVERRIDE for v in batch
        )
        try:
            self.nsx.hierarchical_delete(
                router,
                [(v.route.id, v.route.revision) for v in batch],
                allow_overwrite=overwrite,
            )
        except NsxError as exc:
            log.warning(
                "routes.batch_rejected",
                router=router,
                routes=len(batch),
                error=str(exc),
                fallback="one by one",
            )
            return False
        return True

    def _confirm_router(
        self, router: str, accepted: Sequence[RouteVerdict]
    ) -> dict[tuple[str, str], DeletionResult]:
        """Confirm accepted deletions with listings of the router, polling a few times."""
        pending = {v.route.id: v for v in accepted}
        decided: dict[tuple[str, str], DeletionResult] = {}
        for attempt in range(self.confirm_attempts):
            if not pending:
                break
            if attempt:
                self.sleep(self.confirm_interval)
            try:
                listed = {r.id: r for r in self.nsx.list_routes(router)}
            except NsxError as exc:
                log.warning("router.confirm_list_failed", router=router, error=str(exc))
                # Fall back to reading each route: the confirmation is owed either way.
                decided.update({_key(v): self._confirm_gone(v) for v in pending.values()})
                return decided
            for rid, v in list(pending.items()):
                current = listed.get(rid)
                if current is None:
                    decided[_key(v)] = gone(v, NOTE_DELETED)
                elif marked_for_delete(current):
                    decided[_key(v)] = gone(v, NOTE_MARKED)
                else:
                    continue
                del pending[rid]
        for v in pending.values():
            decided[_key(v)] = failed(v, "still present after the delete")
        return decided

    def _recheck(self, v: RouteVerdict) -> RouteVerdict | DeletionResult:
        """The verdict with the route as NSX has it now, or why it is not to be deleted."""
        planned = v.route
        try:
            current = self.nsx.get_route(planned.path)
        except NsxError as exc:
            return failed(v, f"re-read before deletion failed: {exc}")
        if current is None:
            return gone(v, "already-gone: not found when re-read before deletion")
        if marked_for_delete(current):
            return gone(v, "already-gone: already marked_for_delete when re-read")
        if current.revision != planned.revision:
            return held(
                v,
                f"changed-since-plan: _revision {planned.revision} when judged, "
                f"{current.revision} now",
            )
        if current.protection == "PROTECTED":
            return held(v, "protected-by-nsx: _protection PROTECTED")
        if current.protection == REQUIRE_OVERRIDE and not self.allow_overwrite:
            return held(
                v, "protected-by-principal: REQUIRE_OVERRIDE and policy.allow_overwrite is false"
            )
        return replace(v, route=replace(current, router_path=planned.router_path))

    def _delete_one(self, v: RouteVerdict) -> DeletionResult:
        # The failed batch may have been refused because of this very route: re-read it.
        checked = self._recheck(v)
        if isinstance(checked, DeletionResult):
            return checked
        route = checked.route
        try:
            accepted = self.nsx.delete_route(
                route.path,
                allow_overwrite=self.allow_overwrite and route.protection == REQUIRE_OVERRIDE,
            )
        except NsxError as exc:
            return failed(checked, str(exc))
        if not accepted:
            # A 404 is believed only once a read agrees.
            return self._confirm_gone(checked, "already-gone: NSX answered 404 to the DELETE")
        return self._confirm_gone(checked)

    def _confirm_gone(self, v: RouteVerdict, note: str = NOTE_DELETED) -> DeletionResult:
        problem = ""
        for attempt in range(self.confirm_attempts):
            if attempt:
                self.sleep(self.confirm_interval)
            try:
                current = self.nsx.get_route(v.route.path)
            except NsxError as exc:
                problem = f"could not confirm the deletion: {exc}"
                continue
            if current is None:
                return gone(v, note)
            if marked_for_delete(current):
                return gone(v, NOTE_MARKED)
            problem = f"still present after the delete (_revision {current.revision})"
        return failed(v, problem)


def _key(v: RouteVerdict) -> tuple[str, str]:
    return (v.route.router_path, v.route.id)


def _log(result: DeletionResult) -> None:
    v = result.verdict
    fields = {"router": v.route.router_path, "route": v.route.id, "network": v.route.network}
    if v.action is Action.DELETED:
        # The body in the log too: the way back when the report is lost.
        log.info("route.deleted", note=result.note, nsx_object=v.route.nsx_object, **fields)
    elif v.action is Action.HELD:
        log.warning("route.held", reason=v.hold_reason, **fields)
    else:
        log.error("route.delete_failed", error=result.error, **fields)
