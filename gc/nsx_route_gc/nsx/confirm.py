"""Confirming accepted deletions through the NSX search API, many routers per call.

One listing per router to confirm its deletions costs a call per router, over the minimum
a run needs (issue 6). The search costs a call per chunk of routers instead. But search is
index-backed, and whether the index lags behind writes is unverified. So the search is used
only in the direction where a stale answer is harmless, and only where it proves itself.

**The count** (``NsxClient.search_route_count``, issue 11): for a chunk of routers (one
search context, a query of bounded length), one search at page size 1 for its
``result_count``, the number of routes of those routers the index holds, compared with the
number this run listed there and did not put up for deletion (the survivors). Equal
confirms every deletion NSX accepted on those routers; anything else falls back. Why equal
is enough, and what is ruled out:

- the index holds the survivors *and* a deletion NSX accepted (it lags, or the route is
  still there, marked_for_delete or not): the count is larger. Falls back;
- the index lacks routes (being rebuilt, out of sync, or empty): the count is smaller.
  Falls back; and NSX refuses a search while it indexes (400 with 60508, 60514, 60515),
  which falls back to listing;
- another writer (a CCM) created routes on those routers since the listing: larger, falls
  back. A router whose every route this run deleted is never counted (nothing vouches for
  an index that holds nothing of it), nor one with a refused batch (the routes that went
  one by one, held or failed, make what should be left unknown);
- the one case that equal cannot tell: another writer *deleted* k survivors since the
  listing while the index still shows exactly k of the deletions NSX accepted, in the
  same chunk. That takes a concurrent deletion on the very routers deleted from, and an
  index that has taken in that deletion but not this run's, and the two in exactly the
  same number. What is left is the count's claim about NSX's own write: the hierarchical
  PATCH that carried the route was answered 2xx with ``enforce_revision_check=true``, a
  transaction NSX committed; the count is the read after it that the run owes.

**The pages** (``NsxClient.search_route_presence``), where the count differs or a chunk's
routers cannot be counted: every route of the routers, paged, trusted for a router only
when it holds every survivor of that router (an empty, partial or stale index fails that
check), and then only to say that a route is *absent* or marked_for_delete. A route the
search still shows is confirmed by its router's listing. The routes asked about were indexed
long ago: they were in this run's listing, and judgement only deletes routes older than the
grace period (apply searches only with a grace period of at least 5 minutes).

A router neither confirms is confirmed by listing it, as before: the search never makes a
deletion count without a read that shows it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

import structlog

from nsx_route_gc.errors import NsxError
from nsx_route_gc.logs import carry_context
from nsx_route_gc.nsx.concurrency import paced_map
from nsx_route_gc.nsx.query import SEARCH_RESULTS_MAX, route_search_chunks

log = structlog.get_logger(__name__)

# route path -> marked_for_delete, as the search index has it
Presence = dict[str, bool]


class RouteSearch(Protocol):
    @property
    def search_page_size(self) -> int: ...

    def parallel_width(self) -> int: ...

    def search_route_presence(self, routers: Sequence[str]) -> dict[str, Presence]: ...

    def search_route_count(self, routers: Sequence[str]) -> int: ...


def search_presence(
    nsx: RouteSearch,
    deleted: Mapping[str, Collection[str]],
    survivors: Mapping[str, Collection[str]],
    *,
    countable: Collection[str] = (),
    workers: int = 1,
) -> dict[str, Presence]:
    """What the search index holds of each router in ``deleted`` (router -> paths whose
    deletion NSX accepted), for the routers where it can be trusted; ``survivors`` (router
    -> paths listed this run and not up for deletion) vouch for it. Routers in
    ``countable`` (every deletion put up there was accepted) are counted first; a router
    counted right holds nothing of its deletions (an empty presence). A router left out of
    the answer is to be confirmed by listing it; why is logged."""
    searchable: dict[str, int] = {}
    for router in deleted:
        if survivors.get(router):
            searchable[router] = len(set(survivors[router]))
        else:
            _untrusted(router, "no-survivors")
    counted, uncounted = _counted(
        nsx, {r: n for r, n in searchable.items() if r in countable}, workers
    )
    trusted: dict[str, Presence] = {router: {} for router in counted}
    rest = {r: n for r, n in searchable.items() if r not in counted and r not in uncounted}
    trusted.update(_paged(nsx, deleted, survivors, rest, workers))
    return trusted


def _counted(
    nsx: RouteSearch, expected: Mapping[str, int], workers: int
) -> tuple[set[str], set[str]]:
    """The routers whose chunk counted exactly their survivors, and those whose count
    failed (an index in trouble: listed, not paged)."""
    if not expected:
        return set(), set()
    # Nothing is paged: only the length of the query bounds a chunk.
    chunks = route_search_chunks(expected, max_results=sum(expected.values()) + 1)

    def one_chunk(chunk: list[str]) -> tuple[bool | None, list[str]]:
        want = sum(expected[r] for r in chunk)
        try:
            found = nsx.search_route_count(chunk)
        except NsxError as exc:
            log.warning(
                "routes.confirm_count_failed",
                routers=len(chunk),
                error=str(exc),
                fallback="listing",
            )
            return None, chunk
        if found != want:
            log.info(
                "routes.confirm_count_differs",
                routers=len(chunk),
                counted=found,
                survivors=want,
                fallback="search pages",
            )
            return False, chunk
        log.info("routes.confirm_counted", routers=len(chunk), survivors=want)
        return True, chunk

    answers = paced_map(
        carry_context(one_chunk),
        chunks,
        width=nsx.parallel_width,
        max_workers=workers,
        thread_name_prefix="count",
    )
    counted: set[str] = set()
    failed: set[str] = set()
    for ok, chunk in answers:
        if ok:
            counted.update(chunk)
        elif ok is None:
            failed.update(chunk)
    for router in failed:
        _untrusted(router, "count-failed")
    return counted, failed


def _paged(
    nsx: RouteSearch,
    deleted: Mapping[str, Collection[str]],
    survivors: Mapping[str, Collection[str]],
    searchable: Mapping[str, int],
    workers: int,
) -> dict[str, Presence]:
    """Every route of the routers in ``searchable`` (router -> survivors), paged: a router
    is trusted when the index holds each of its survivors."""
    # What a whole index answers once the deletions are done: the survivors (a route still
    # marked_for_delete adds to a page; the cursor's depth bound keeps room for them).
    sizing = chunk_results(searchable, workers, nsx.search_page_size)
    chunks = route_search_chunks(searchable, max_results=sizing)
    for router in searchable.keys() - {r for chunk in chunks for r in chunk}:
        _untrusted(router, "not-searchable")

    def one_chunk(chunk: list[str]) -> dict[str, Presence]:
        try:
            found = nsx.search_route_presence(chunk)
        except NsxError as exc:
            log.warning(
                "routes.confirm_search_failed",
                routers=len(chunk),
                error=str(exc),
                fallback="listing",
            )
            return {}
        trusted: dict[str, Presence] = {}
        for router in chunk:
            presence = found.get(router, {})
            missing = sum(1 for path in survivors[router] if path not in presence)
            if missing:
                _untrusted(
                    router, "survivors-missing", missing=missing, survivors=len(survivors[router])
                )
                continue
            # Only what is asked about is kept: a chunk's survivors run to thousands.
            trusted[router] = {p: presence[p] for p in deleted[router] if p in presence}
        return trusted

    trusted: dict[str, Presence] = {}
    # As many queries at once as the in-flight limit allows now, threads made as it opens.
    answers = paced_map(
        carry_context(one_chunk),
        chunks,
        width=nsx.parallel_width,
        max_workers=workers,
        thread_name_prefix="search",
    )
    for answer in answers:
        trusted.update(answer)
    return trusted


def chunk_results(expected: Mapping[str, int], workers: int, page: int) -> int:
    """How many results one query may expect: whole pages of ``page`` results, enough
    queries for every worker (a search pages one round trip at a time; queries run side by
    side), and half the depth a cursor may page (routes still marked_for_delete add some)."""
    page = max(1, page)
    pages = -(-sum(expected.values()) // page)
    per_query = max(1, -(-pages // max(1, workers)))
    return min(SEARCH_RESULTS_MAX // 2, per_query * page)


def _untrusted(router: str, reason: str, **details: int) -> None:
    log.info(
        "router.confirm_search_untrusted",
        router=router,
        reason=reason,
        fallback="listing",
        **details,
    )
