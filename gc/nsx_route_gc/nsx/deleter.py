"""Deleting routes that judgement (and, for a saved plan, the approval) put up for deletion.

The candidates come from a listing of their router made in this very run (apply always
lists afresh, for a saved plan too): that listing is the re-read before deletion, and its
``_revision`` goes with each route into the hierarchical delete with
``enforce_revision_check=true``, so NSX itself refuses a batch when any route in it changed
or vanished since. A batch holds up to ``batch_size`` routes of many Tier-1s of one space
(one ``ChildResourceReference`` per Tier-1): 5,000 deletions over 200 routers are 5 calls,
not 200. A rejected batch is retried route by route (a direct re-read, then DELETE), so one
bad route cannot hold back the rest and a changed route is held. The blast-radius limits
were applied per router before (judgement, ``apply_limits``): batching does not change what
is deleted, only how many calls carry it.

A deletion counts only once a read confirms the route is gone (absent, or
``marked_for_delete`` while NSX realizes it), and never one read per route, which keeps a
run of thousands of deletions within the manager's rate limit. Once every batch
is sent, a few searches cover the accepted deletions of many routers at once, where the
search can be trusted (``confirm`` says when): a count per chunk of routers, else its pages;
every other router is listed once more, and a route the search still shows is confirmed by
its router's listing too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

import structlog

from nsx_route_gc.errors import NsxApiError, NsxError
from nsx_route_gc.logs import carry_context
from nsx_route_gc.models import STATIC_ROUTES, Action, Route, RouteVerdict, parse_network
from nsx_route_gc.nsx.confirm import Presence, RouteSearch, search_presence
from nsx_route_gc.nsx.query import TIER1_PATH
from nsx_route_gc.nsx.transport import is_revision_conflict
from nsx_route_gc.ports import DeletionJournal, NoJournal
from nsx_route_gc.progress import NULL_PROGRESS, Progress

log = structlog.get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_BATCH_SIZE = 1000
# Routes whose batches are being sent at once: each batch's body is built, journaled and sent
# in memory (a few MB per 1,000 routes); 10 batches at once raised the peak RSS of an apply of
# 100,000 routes by 26 MB, 5 keep it within the scan's.
ROUTES_IN_FLIGHT = 5000
REQUIRE_OVERRIDE = "REQUIRE_OVERRIDE"

NOTE_DELETED = "deleted: confirmed gone"
NOTE_MARKED = "deleted: marked_for_delete, NSX removes it once realized"


class RouteWriter(RouteSearch, Protocol):
    """The NSX calls deletion needs (``NsxClient`` has them)."""

    def list_routes(self, router_path: str) -> list[Route]: ...

    def get_route(self, route_path: str) -> Route | None: ...

    def delete_route(self, route_path: str, *, allow_overwrite: bool = False) -> bool: ...

    def hierarchical_delete(
        self, routes: Mapping[str, Sequence[Route]], *, allow_overwrite: bool = False
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


Decided = dict[tuple[str, str], DeletionResult]  # by (router path, route id)


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
        journal: DeletionJournal | None = None,
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
        # Every body goes to the journal before its deletion is sent (reports.journal).
        self.journal: DeletionJournal = journal if journal is not None else NoJournal()
        self._batch_of: dict[tuple[str, str], int] = {}
        # Set on Ctrl-C or SIGTERM: batches in flight finish, no new one is sent.
        self._stop = threading.Event()

    def delete(
        self,
        candidates: Sequence[RouteVerdict],
        *,
        listed: Mapping[str, Collection[str]] | None = None,
    ) -> list[DeletionResult]:
        """Delete ``candidates`` (each with the revision it was listed at), then confirm the
        deletions NSX accepted.

        Batches fill up to ``batch_size`` routes across routers of one space (``/infra`` or
        one project's infra: one hierarchical PATCH goes to one), several in flight at once
        (``workers``). The routes of a refused batch then go one by one, also concurrently.
        ``listed`` (router -> path of every route this run listed on it) lets searches
        confirm many routers at once; without it every router with accepted deletions is
        listed again. Results come back in the order of ``candidates``' routers.
        """
        by_router: dict[str, list[RouteVerdict]] = {}
        for v in candidates:
            by_router.setdefault(v.route.router_path, []).append(v)
        task = self.progress.task("deletions done", total=len(candidates))
        for router, routes in by_router.items():
            log.info("router.deleting", router=router, routes=len(routes))

        refused: list[tuple[int, RouteVerdict]] = []
        accepted_keys: set[tuple[str, str]] = set()
        batches = self.batches(candidates)
        at_once = max(1, ROUTES_IN_FLIGHT // self.batch_size)
        sent = self._map(self._send_batch, batches, workers=at_once)
        for batch, number in zip(batches, sent, strict=True):
            if number is None:
                accepted_keys.update(_key(v) for v in batch)
            else:
                refused.extend((number, v) for v in batch)

        def one_by_one(item: tuple[int, RouteVerdict]) -> DeletionResult:
            result = self._delete_one(item[1], item[0])
            task.advance()
            return result

        decided: dict[str, Decided] = {router: {} for router in by_router}
        for result in self._map(one_by_one, refused):
            decided[result.verdict.route.router_path][result.key] = result
        accepted = {
            router: [v for v in routes if _key(v) in accepted_keys]
            for router, routes in by_router.items()
        }
        accepted = {router: routes for router, routes in accepted.items() if routes}
        for router, routes in by_router.items():
            if router not in accepted:
                _log_router(routes, decided[router])
        presence = self._search(accepted, by_router, listed)

        def done(router: str, confirmed: Decided) -> Decided:
            outcome = {**decided[router], **confirmed}
            task.advance(len(confirmed))
            # Logged as soon as known: the log is the way back when the report is lost.
            _log_router(by_router[router], outcome)
            return outcome

        def confirm(router: str) -> Decided:
            confirmed = self._confirm_accepted(router, accepted[router], presence.get(router))
            self._record(list(confirmed.values()))
            return done(router, confirmed)

        # Routers the search confirmed whole need no call: done on this thread, one after
        # the other (many threads each parsing bodies for the log only grow the heap), and
        # journaled at once: a journal write per router is an fsync per router.
        # Only the routers to be listed again take the pool.
        to_list = [r for r in accepted if not _searched_whole(accepted[r], presence.get(r))]
        listing = set(to_list)
        searched = {
            r: self._confirm_accepted(r, accepted[r], presence.get(r))
            for r in accepted
            if r not in listing
        }
        self._record([result for confirmed in searched.values() for result in confirmed.values()])
        final = {r: done(r, confirmed) for r, confirmed in searched.items()}
        final.update(zip(to_list, self._map(confirm, to_list), strict=True))
        return [
            (final.get(router) or decided[router])[_key(v)]
            for router, routes in by_router.items()
            for v in routes
        ]

    def batches(self, candidates: Sequence[RouteVerdict]) -> list[list[RouteVerdict]]:
        """``candidates`` cut into hierarchical deletes of up to ``batch_size`` routes, filled
        across routers: one space per batch (a PATCH goes to one space's infra), and the
        routes that need ``X-Allow-Overwrite`` in batches of their own, so that the header
        reaches no other route. A router that is not a Tier-1 path gets batches of its own
        (refused by the client, they go one by one)."""
        groups: dict[tuple[str, bool], list[RouteVerdict]] = {}
        for v in candidates:
            match = TIER1_PATH.match(v.route.router_path.rstrip("/"))
            space = match["infra"] if match else v.route.router_path
            overwrite = self.allow_overwrite and v.route.protection == REQUIRE_OVERRIDE
            groups.setdefault((space, overwrite), []).append(v)
        return [
            routes[start : start + self.batch_size]
            for routes in groups.values()
            for start in range(0, len(routes), self.batch_size)
        ]

    def _map(
        self, fn: Callable[[T], R], items: Sequence[T], *, workers: int | None = None
    ) -> list[R]:
        if not items:
            return []
        workers = min(self.workers, workers or self.workers, len(items))
        with ThreadPoolExecutor(workers, thread_name_prefix="delete") as pool:
            try:
                return list(pool.map(carry_context(fn), items))
            except BaseException:
                # Interrupted (KeyboardInterrupt): leaving the pool waits for its threads,
                # which must then stop sending instead of deleting everything left.
                self._stop.set()
                raise

    def _search(
        self,
        accepted: Mapping[str, Sequence[RouteVerdict]],
        by_router: Mapping[str, Sequence[RouteVerdict]],
        listed: Mapping[str, Collection[str]] | None,
    ) -> dict[str, Presence]:
        if listed is None or not accepted:
            return {}
        survivors = {}
        for router in accepted:
            up = {_path(v) for v in by_router[router]}
            survivors[router] = [p for p in listed.get(router, ()) if p not in up]
        deleted = {r: [_path(v) for v in routes] for r, routes in accepted.items()}
        # Counted only where every deletion put up was accepted: what is left there is
        # exactly the survivors (``confirm``).
        whole = [r for r, routes in accepted.items() if len(routes) == len(by_router[r])]
        return search_presence(self.nsx, deleted, survivors, countable=whole, workers=self.workers)

    def _confirm_accepted(
        self, router: str, accepted: Sequence[RouteVerdict], presence: Presence | None
    ) -> Decided:
        """Confirm by the search where it is trusted; the rest by listing the router."""
        if presence is None:
            return self._confirm_router(router, accepted)
        decided: Decided = {}
        shown: list[RouteVerdict] = []
        for v in accepted:
            marked = presence.get(_path(v))
            if marked is None:
                decided[_key(v)] = gone(v, NOTE_DELETED)
            elif marked:
                decided[_key(v)] = gone(v, NOTE_MARKED)
            else:
                shown.append(v)
        if shown:
            # The index may be behind the delete, or the route really is still there.
            log.info(
                "router.confirm_search_shows", router=router, routes=len(shown), fallback="listing"
            )
            decided.update(self._confirm_router(router, shown))
        return decided

    def _stopping(self) -> None:
        if self._stop.is_set():
            raise DeletionStopped("interrupted: no further deletion is sent")

    def _record(self, results: Sequence[DeletionResult]) -> None:
        """The outcomes of routes whose deletion was sent, in the journal."""
        by_batch: dict[int, list[tuple[Route, str, str | None]]] = {}
        for r in results:
            number = self._batch_of.get(r.key)
            if number is not None:
                by_batch.setdefault(number, []).append(journal_outcome(r))
        for number, outcomes in by_batch.items():
            self.journal.outcome(number, outcomes)

    def _send_batch(self, batch: Sequence[RouteVerdict]) -> int | None:
        """Send one hierarchical delete: None when NSX accepted it, else the batch number
        (its routes then go one by one)."""
        self._stopping()
        overwrite = self.allow_overwrite and any(
            v.route.protection == REQUIRE_OVERRIDE for v in batch
        )
        routes = [v.route for v in batch]
        by_router: dict[str, list[Route]] = {}
        for r in routes:
            by_router.setdefault(r.router_path, []).append(r)
        number = self.journal.sending(routes, via="hierarchical")
        for r in routes:
            self._batch_of[(r.router_path, r.id)] = number
        try:
            self.nsx.hierarchical_delete(by_router, allow_overwrite=overwrite)
        except NsxError as exc:
            # A revision conflict too: the route-by-route re-read tells which route changed
            # (held) from those that did not.
            log.warning(
                "routes.batch_rejected",
                routers=len(by_router),
                router=next(iter(by_router)),
                routes=len(batch),
                error=str(exc),
                revision_conflict=is_revision_conflict(exc),
                fallback="one by one",
            )
            self.journal.outcome(number, [(r, "refused", str(exc)) for r in routes])
            return number
        log.info("routes.batch_accepted", routers=len(by_router), routes=len(batch))
        self.journal.outcome(number, [(r, "deleted", "batch accepted") for r in routes])
        return None

    def _confirm_router(self, router: str, accepted: Sequence[RouteVerdict]) -> Decided:
        """Confirm accepted deletions with listings of the router, polling a few times."""
        pending = {v.route.id: v for v in accepted}
        decided: Decided = {}
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
        path = _path(v)
        try:
            current = self.nsx.get_route(path)
        except NsxError as exc:
            return failed(v, f"re-read before deletion failed: {exc}")
        if current is None:
            return gone(v, "already-gone: not found when re-read before deletion")
        if (
            current.id != planned.id
            or current.path != path
            or not same_network(current.network, planned.network)
        ):
            # A _revision alone could match by chance: the route read must be the one judged.
            return held(
                v,
                f"changed-since-plan: re-read {current.id} {current.network} at {current.path}, "
                f"judged {planned.id} {planned.network} at {path}",
            )
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

    def _delete_one(self, v: RouteVerdict, batch: int) -> DeletionResult:
        self._stopping()
        # The failed batch may have been refused because of this very route: re-read it.
        checked = self._recheck(v)
        if isinstance(checked, DeletionResult):
            self.journal.outcome(batch, [journal_outcome(checked)])
            return checked
        result = self._delete_checked(checked)
        self._record([result])
        return result

    def _delete_checked(self, checked: RouteVerdict) -> DeletionResult:
        route = checked.route
        number = self.journal.sending([route], via="delete")
        self._batch_of[(route.router_path, route.id)] = number
        try:
            accepted = self.nsx.delete_route(
                _path(checked),
                allow_overwrite=self.allow_overwrite and route.protection == REQUIRE_OVERRIDE,
            )
        except NsxError as exc:
            if is_revision_conflict(exc):
                return self._conflicted(checked, exc)
            return failed(checked, str(exc))
        if not accepted:
            # A 404 is believed only once a read agrees.
            return self._confirm_gone(checked, "already-gone: NSX answered 404 to the DELETE")
        return self._confirm_gone(checked)

    def _conflicted(self, v: RouteVerdict, exc: NsxError) -> DeletionResult:
        """NSX refused the DELETE as a revision conflict: the route changed since it was
        re-read (held, never a failure), unless a read shows it gone after all (404 with
        500090 is also how NSX names a path that no longer exists)."""
        try:
            current = self.nsx.get_route(_path(v))
        except NsxError:
            current = v.route  # unknown: the conservative side is to hold it
        if current is None:
            status = exc.status if isinstance(exc, NsxApiError) else None
            return gone(v, f"already-gone: NSX answered {status} to the DELETE")
        if marked_for_delete(current):
            return gone(v, NOTE_MARKED)
        return held(v, f"changed-since-plan: NSX refused the delete ({exc})")

    def _confirm_gone(self, v: RouteVerdict, note: str = NOTE_DELETED) -> DeletionResult:
        problem = ""
        for attempt in range(self.confirm_attempts):
            if attempt:
                self.sleep(self.confirm_interval)
            try:
                current = self.nsx.get_route(_path(v))
            except NsxError as exc:
                problem = f"could not confirm the deletion: {exc}"
                continue
            if current is None:
                return gone(v, note)
            if marked_for_delete(current):
                return gone(v, NOTE_MARKED)
            problem = f"still present after the delete (_revision {current.revision})"
        return failed(v, problem)


class DeletionStopped(Exception):
    """The run was interrupted: the deleter sends nothing more."""


def journal_outcome(result: DeletionResult) -> tuple[Route, str, str | None]:
    """A result as the journal records it: (route, outcome, why)."""
    v = result.verdict
    if v.action is Action.DELETED:
        note = result.note or ""
        return v.route, ("gone" if note.startswith("already-gone") else "deleted"), note
    if v.action is Action.HELD:
        return v.route, "held-changed", v.hold_reason
    return v.route, "failed", result.error


def _path(v: RouteVerdict) -> str:
    """Where a route is read, deleted and confirmed: the router it was listed on and its id,
    never the path NSX (or a plan) gave for it. The client refuses ids that would not make a
    plain static route path."""
    return f"{v.route.router_path}{STATIC_ROUTES}{v.route.id}"


def same_network(a: str, b: str) -> bool:
    """Whether two networks as written are the same CIDR (text compared when not CIDRs)."""
    try:
        return parse_network(a) == parse_network(b)
    except ValueError:
        return a == b


def _searched_whole(accepted: Sequence[RouteVerdict], presence: Presence | None) -> bool:
    """Whether the search settles every accepted deletion of a router (absent, or marked
    for deletion): no listing is owed."""
    return presence is not None and all(presence.get(_path(v), True) for v in accepted)


def _key(v: RouteVerdict) -> tuple[str, str]:
    return (v.route.router_path, v.route.id)


def _log_router(routes: Sequence[RouteVerdict], decided: Decided) -> None:
    for v in routes:
        _log(decided[_key(v)])


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
