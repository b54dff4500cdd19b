"""Deleting routes that judgement (and, for a saved plan, the approval) put up for deletion.

Every route is re-read right before it is deleted and kept when it changed (``_revision``),
went away, or became protected. Deletions go per router through the hierarchical API with
``enforce_revision_check=true``, so NSX itself refuses a route that changed between the
re-read and the delete. A rejected batch is retried route by route (re-read, then DELETE), so
one bad route cannot hold back the rest. A deletion counts only once a read confirms the
route is gone (404, or ``marked_for_delete`` while NSX realizes it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import structlog

from nsx_route_gc.errors import NsxError
from nsx_route_gc.models import Action, Route, RouteVerdict

log = structlog.get_logger(__name__)

DEFAULT_BATCH_SIZE = 100
REQUIRE_OVERRIDE = "REQUIRE_OVERRIDE"

NOTE_DELETED = "deleted: confirmed gone"
NOTE_MARKED = "deleted: marked_for_delete, NSX removes it once realized"


class RouteWriter(Protocol):
    """The NSX calls deletion needs (``NsxClient`` has them)."""

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
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.nsx = nsx
        self.allow_overwrite = allow_overwrite
        self.batch_size = batch_size
        self.confirm_attempts = max(1, confirm_attempts)
        self.confirm_interval = confirm_interval
        self.sleep = sleep

    def delete(self, candidates: Sequence[RouteVerdict]) -> list[DeletionResult]:
        """Delete ``candidates`` (each with the revision it was judged at), router by router."""
        by_router: dict[str, list[RouteVerdict]] = {}
        for v in candidates:
            by_router.setdefault(v.route.router_path, []).append(v)
        results: list[DeletionResult] = []
        for router, routes in by_router.items():
            log.info("router.deleting", router=router, routes=len(routes))
            for start in range(0, len(routes), self.batch_size):
                batch = self._batch(router, routes[start : start + self.batch_size])
                for result in batch:
                    _log(result)
                results.extend(batch)
        return results

    def _batch(self, router: str, batch: Sequence[RouteVerdict]) -> list[DeletionResult]:
        decided: dict[int, DeletionResult] = {}
        ready: list[tuple[int, RouteVerdict]] = []
        for i, v in enumerate(batch):
            checked = self._recheck(v)
            if isinstance(checked, DeletionResult):
                decided[i] = checked
            else:
                ready.append((i, checked))
        if ready:
            overwrite = self.allow_overwrite and any(
                v.route.protection == REQUIRE_OVERRIDE for _, v in ready
            )
            try:
                self.nsx.hierarchical_delete(
                    router,
                    [(v.route.id, v.route.revision) for _, v in ready],
                    allow_overwrite=overwrite,
                )
            except NsxError as exc:
                log.warning(
                    "routes.batch_rejected",
                    router=router,
                    routes=len(ready),
                    error=str(exc),
                    fallback="one by one",
                )
                for i, v in ready:
                    decided[i] = self._delete_one(v)
            else:
                for i, v in ready:
                    decided[i] = self._confirm_gone(v)
        return [decided[i] for i in range(len(batch))]

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
