"""Confirming accepted deletions through the NSX search API, many routers per call.

One listing per router to confirm its deletions costs a call per router, over the minimum
a run needs (issue 6). A search for the routes of many routers at once costs a call per
thousand routes instead. But search is index-backed, and whether the index lags behind
writes is unverified. So the search is used only in the direction where a stale answer is
harmless, and only where it proves itself:

- it may only say that a route is *absent*, and the routes asked about were indexed long
  ago (they were in this run's listing, and judgement only deletes routes older than the
  grace period). A route the search still shows is not trusted either way: the caller
  confirms it with the router's listing, as without search;
- it is trusted for a router only when it holds every route this run listed on that router
  and did not put up for deletion (the survivors). An empty, partial or stale index fails
  that check; so does a router whose routes were all deleted, which has nothing to vouch;
- the paging itself must be whole (``NsxClient.search_route_presence``).

A router the search is not trusted for is confirmed by listing it, as before.
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


def search_presence(
    nsx: RouteSearch,
    deleted: Mapping[str, Collection[str]],
    survivors: Mapping[str, Collection[str]],
    *,
    workers: int = 1,
) -> dict[str, Presence]:
    """What the search index holds of each router in ``deleted`` (router -> paths whose
    deletion NSX accepted), for the routers where it can be trusted; ``survivors`` (router
    -> paths listed this run and not up for deletion) vouch for it. A router left out of the
    answer is to be confirmed by listing it; why is logged."""
    # What a whole index answers once the deletions are done: the survivors (a route still
    # marked_for_delete adds to a page; the cursor's depth bound keeps room for them).
    searchable: dict[str, int] = {}
    for router in deleted:
        if survivors.get(router):
            searchable[router] = len(survivors[router])
        else:
            _untrusted(router, "no-survivors")
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
