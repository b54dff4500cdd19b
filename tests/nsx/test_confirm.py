"""Confirming deletions by search (``confirm`` and the ``Deleter``), on the simulator with the
real NsxClient; the few answers the simulator cannot give (a stale or failing index) come
from an NsxClient subclass around the real one."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from structlog.testing import capture_logs

from nsx_route_gc.config import NsxSettings, Secret
from nsx_route_gc.errors import NsxError
from nsx_route_gc.models import Action, RouteVerdict, Verdict
from nsx_route_gc.nsx.client import NsxClient
from nsx_route_gc.nsx.confirm import search_presence
from nsx_route_gc.nsx.deleter import NOTE_DELETED, NOTE_MARKED, Deleter, DeletionResult
from nsx_route_gc.simulator import Scenario, SimRoute, Simulator

ROUTERS = [f"/infra/tier-1s/t1-{n}" for n in range(4)]
DEV = "/orgs/default/projects/dev/infra/tier-1s/dev-t1"


def no_sleep(_seconds: float) -> None:
    return None


def scenario(routers: Sequence[str], per_router: int = 4) -> Scenario:
    routes = [
        SimRoute(router, f"r{i}", f"10.{n}.{i}.0/24", ("172.16.128.9",))
        for n, router in enumerate(routers)
        for i in range(per_router)
    ]
    return Scenario("confirm", "routes to delete", list(routers), routes)


@contextmanager
def simulated(
    routers: Sequence[str] = ROUTERS, client: type[NsxClient] = NsxClient
) -> Iterator[tuple[Simulator, NsxClient]]:
    with Simulator(scenario(routers)) as sim:
        settings = NsxSettings(
            sim.nsx_url,
            username=sim.nsx.username,
            password=Secret(sim.nsx.password),
            auth="basic",
            ca_file=sim.ca_pem_path,
        )
        with client(settings, sleep=no_sleep) as nsx:
            yield sim, nsx


def plan(
    nsx: NsxClient, routers: Sequence[str], deleting: int = 2
) -> tuple[list[RouteVerdict], dict[str, list[str]]]:
    """The first ``deleting`` routes of each router up for deletion, as apply lists them."""
    candidates: list[RouteVerdict] = []
    listed: dict[str, list[str]] = {}
    for router in routers:
        routes = nsx.list_routes(router)
        listed[router] = [r.path for r in routes]
        candidates += [
            RouteVerdict(r, Verdict.ORPHANED, "node-gone", action=Action.DELETE)
            for r in routes[:deleting]
        ]
    return candidates, listed


def delete(
    sim: Simulator, nsx: NsxClient, candidates: list[RouteVerdict], **kwargs: Any
) -> list[DeletionResult]:
    sim.nsx.reset_counters()
    return Deleter(nsx, allow_overwrite=False, sleep=no_sleep, workers=4).delete(
        candidates, **kwargs
    )


def calls(sim: Simulator) -> dict[str, int]:
    return {k: v for k, v in sim.nsx.counters.items() if k != "nsx_session"}


def notes(results: Sequence[DeletionResult]) -> set[str | None]:
    assert {r.verdict.action for r in results} == {Action.DELETED}
    return {r.note for r in results}


def untrusted(logs: list[dict[str, Any]]) -> dict[str, str]:
    return {
        e["router"]: e["reason"] for e in logs if e["event"] == "router.confirm_search_untrusted"
    }


def test_one_search_confirms_every_router_instead_of_a_listing_each() -> None:
    with simulated() as (sim, nsx):
        candidates, listed = plan(nsx, ROUTERS)

        results = delete(sim, nsx, candidates, listed=listed)

        assert calls(sim) == {"nsx_hierarchical": 1, "nsx_search": 1}
        assert notes(results) == {NOTE_DELETED}
        assert [r.key for r in results] == [(v.route.router_path, v.route.id) for v in candidates]
        assert sim.nsx.route_count() == 8


def test_without_the_listing_each_router_is_listed_again() -> None:
    with simulated() as (sim, nsx):
        candidates, _ = plan(nsx, ROUTERS)

        results = delete(sim, nsx, candidates)

        assert calls(sim) == {"nsx_hierarchical": 1, "nsx_list_routes": 4}
        assert notes(results) == {NOTE_DELETED}


def test_project_routers_are_searched_in_their_own_context() -> None:
    routers = [ROUTERS[0], DEV]
    with simulated(routers) as (sim, nsx):
        candidates, listed = plan(nsx, routers)
        with capture_logs() as logs:
            results = delete(sim, nsx, candidates, listed=listed)

        # One search per space; without context=projects:/orgs/default/projects/dev the
        # simulator, like NSX, would not find the project's survivors and the router would
        # be listed instead.
        assert calls(sim) == {"nsx_hierarchical": 2, "nsx_search": 2}
        assert untrusted(logs) == {}
        assert notes(results) == {NOTE_DELETED}


def test_a_survivor_missing_from_the_search_makes_its_router_listed() -> None:
    with simulated() as (sim, nsx):
        candidates, listed = plan(nsx, ROUTERS)
        sim.nsx.remove_route(ROUTERS[1], "r3")  # gone since the listing, so not indexed
        with capture_logs() as logs:
            results = delete(sim, nsx, candidates, listed=listed)

        # The count is one short: the pages tell which router.
        assert calls(sim) == {"nsx_hierarchical": 1, "nsx_search": 2, "nsx_list_routes": 1}
        assert untrusted(logs) == {ROUTERS[1]: "survivors-missing"}
        assert notes(results) == {NOTE_DELETED}


def test_a_router_losing_every_route_has_nothing_to_vouch_for_the_search() -> None:
    with simulated() as (sim, nsx):
        candidates, listed = plan(nsx, ROUTERS)
        candidates += plan(nsx, ROUTERS[:1], deleting=4)[0][2:]
        with capture_logs() as logs:
            results = delete(sim, nsx, candidates, listed=listed)

        assert calls(sim) == {"nsx_hierarchical": 1, "nsx_search": 1, "nsx_list_routes": 1}
        assert untrusted(logs) == {ROUTERS[0]: "no-survivors"}
        assert notes(results) == {NOTE_DELETED}
        assert sim.nsx.route_count(ROUTERS[0]) == 0


class FailingSearch(NsxClient):
    def search_route_presence(self, routers: Sequence[str]) -> dict[str, dict[str, bool]]:
        raise NsxError("NSX GET /policy/api/v1/search/query failed: ConnectionError")

    def search_route_count(self, routers: Sequence[str]) -> int:
        raise NsxError("NSX GET /policy/api/v1/search/query failed: ConnectionError")


def test_a_failed_count_makes_its_routers_listed_unpaged() -> None:
    with simulated(client=FailingSearch) as (sim, nsx):
        candidates, listed = plan(nsx, ROUTERS)
        with capture_logs() as logs:
            results = delete(sim, nsx, candidates, listed=listed)

        assert calls(sim) == {"nsx_hierarchical": 1, "nsx_list_routes": 4}
        failure = [e for e in logs if e["event"] == "routes.confirm_count_failed"]
        assert [(e["routers"], e["fallback"]) for e in failure] == [(4, "listing")]
        assert "ConnectionError" in failure[0]["error"]
        assert untrusted(logs) == dict.fromkeys(ROUTERS, "count-failed")
        assert notes(results) == {NOTE_DELETED}


class FailingPages(NsxClient):
    def search_route_presence(self, routers: Sequence[str]) -> dict[str, dict[str, bool]]:
        raise NsxError("NSX GET /policy/api/v1/search/query failed: ConnectionError")


def test_a_count_that_differs_then_failed_pages_make_the_routers_listed() -> None:
    with simulated(client=FailingPages) as (sim, nsx):
        candidates, listed = plan(nsx, ROUTERS)
        sim.nsx.freeze_search_index()  # the deletions stay in the index: the count is over
        with capture_logs() as logs:
            results = delete(sim, nsx, candidates, listed=listed)

        assert calls(sim) == {"nsx_hierarchical": 1, "nsx_search": 1, "nsx_list_routes": 4}
        differs = [e for e in logs if e["event"] == "routes.confirm_count_differs"]
        assert [(e["counted"], e["survivors"]) for e in differs] == [(16, 8)]
        failure = [e for e in logs if e["event"] == "routes.confirm_search_failed"]
        assert [(e["routers"], e["fallback"]) for e in failure] == [(4, "listing")]
        assert notes(results) == {NOTE_DELETED}


class StaleSearch(NsxClient):
    """Search answers from an index that has not seen the deletions yet, with
    ``marked_for_delete`` (which the simulator's index does not carry)."""

    marked = False
    stale: dict[str, dict[str, bool]] | None = None

    def freeze(self, *, marked: bool = False) -> None:
        self.stale = super().search_route_presence(ROUTERS)
        self.marked = marked

    def search_route_presence(self, routers: Sequence[str]) -> dict[str, dict[str, bool]]:
        assert self.stale is not None
        deleting = {"r0", "r1"}
        return {
            r: {p: self.marked and p.rsplit("/", 1)[1] in deleting for p in self.stale[r]}
            for r in routers
        }

    def search_route_count(self, routers: Sequence[str]) -> int:
        assert self.stale is not None
        return sum(len(self.stale[r]) for r in routers)


def test_a_route_the_search_still_shows_is_confirmed_by_listing_its_router() -> None:
    with simulated() as (sim, nsx):
        candidates, listed = plan(nsx, ROUTERS)
        sim.nsx.freeze_search_index()  # a stale index: the deletions not taken in yet
        with capture_logs() as logs:
            results = delete(sim, nsx, candidates, listed=listed)

        # The count is over (16 for 8 survivors), the pages show the routes: listed.
        assert calls(sim) == {"nsx_hierarchical": 1, "nsx_search": 2, "nsx_list_routes": 4}
        shown = [e for e in logs if e["event"] == "router.confirm_search_shows"]
        assert sorted((e["router"], e["routes"]) for e in shown) == [(r, 2) for r in ROUTERS]
        assert {e["fallback"] for e in shown} == {"listing"}
        assert notes(results) == {NOTE_DELETED}


def test_marked_for_delete_in_the_search_is_deleted_and_marked() -> None:
    with simulated(client=StaleSearch) as (sim, nsx):
        assert isinstance(nsx, StaleSearch)
        candidates, listed = plan(nsx, ROUTERS)
        nsx.freeze(marked=True)

        results = delete(sim, nsx, candidates, listed=listed)

        assert calls(sim) == {"nsx_hierarchical": 1}  # no listing (searches are faked)
        assert notes(results) == {NOTE_MARKED}


class IgnoringDeletes(NsxClient):
    """NSX accepts the batch but the routes stay (as if the delete never took effect)."""

    def hierarchical_delete(self, routes: Any, **kw: Any) -> None:
        return None


def test_a_route_still_there_is_polled_by_listing_then_fails() -> None:
    with simulated(ROUTERS[:2], client=IgnoringDeletes) as (sim, nsx):
        candidates, listed = plan(nsx, ROUTERS[:2])
        sleeps: list[float] = []
        sim.nsx.reset_counters()

        results = Deleter(nsx, allow_overwrite=False, sleep=sleeps.append).delete(
            candidates, listed=listed
        )

        assert {r.verdict.action for r in results} == {Action.DELETE_FAILED}
        assert {r.error for r in results} == {"still present after the delete"}
        # The count is over, the pages show the routes, then the existing polling: three
        # listings of each router.
        assert calls(sim) == {"nsx_search": 2, "nsx_list_routes": 6}
        assert sleeps == [1.0, 1.0, 1.0, 1.0]


class Index:
    """A search index as a fake: what it holds by router, and which chunks fail."""

    search_page_size = 1000

    def parallel_width(self) -> int:
        return 8

    def __init__(self, holds: dict[str, dict[str, bool]], failing: str | None = None) -> None:
        self.holds = holds
        self.failing = failing
        self.asked: list[list[str]] = []
        self.counted: list[list[str]] = []

    def search_route_presence(self, routers: Sequence[str]) -> dict[str, dict[str, bool]]:
        self.asked.append(list(routers))
        if self.failing in routers:
            raise NsxError("NSX GET /policy/api/v1/search/query answered 500")
        return {r: dict(self.holds.get(r, {})) for r in routers}

    def search_route_count(self, routers: Sequence[str]) -> int:
        self.counted.append(list(routers))
        return sum(len(self.holds.get(r, {})) for r in routers)


def test_many_routers_are_cut_into_chunks_and_a_failed_chunk_loses_only_its_own() -> None:
    routers = [f"/infra/tier-1s/t1-{n:04d}" for n in range(200)]
    deleted = {r: [f"{r}/static-routes/gone"] for r in routers}
    survivors = {r: [f"{r}/static-routes/kept"] for r in routers}
    index = Index({r: {f"{r}/static-routes/kept": False} for r in routers}, routers[-1])

    with capture_logs() as logs:
        trusted = search_presence(index, deleted, survivors, workers=3)

    assert len(index.asked) > 1
    assert sorted(r for chunk in index.asked for r in chunk) == routers
    lost = next(chunk for chunk in index.asked if routers[-1] in chunk)
    assert set(trusted) == set(routers) - set(lost)
    assert [e["routers"] for e in logs if e["event"] == "routes.confirm_search_failed"] == [
        len(lost)
    ]


def test_a_router_that_is_not_a_tier1_is_not_searched() -> None:
    odd = "/infra/tier-0s/t0"
    index = Index({})
    with capture_logs() as logs:
        trusted = search_presence(index, {odd: ["x"]}, {odd: ["y"]})

    assert trusted == {}
    assert index.asked == []
    assert untrusted(logs) == {odd: "not-searchable"}


@pytest.mark.parametrize("workers", [1, 8])
def test_results_and_logs_keep_the_candidates_order(workers: int) -> None:
    with simulated() as (_, nsx):
        candidates, listed = plan(nsx, ROUTERS, deleting=3)
        with capture_logs() as logs:
            results = Deleter(nsx, allow_overwrite=False, workers=workers).delete(
                candidates, listed=listed
            )

        keys = [(v.route.router_path, v.route.id) for v in candidates]
        assert [r.key for r in results] == keys
        deleted = [(e["router"], e["route"]) for e in logs if e["event"] == "route.deleted"]
        assert sorted(deleted) == sorted(keys)
        assert all(e["nsx_object"] for e in logs if e["event"] == "route.deleted")


@pytest.mark.parametrize("code", [60508, 60514, 60515])
def test_a_search_index_in_trouble_makes_the_routers_listed(code: int) -> None:
    """400 with 60508 (indexing in progress), 60514 (timeout), 60515 (out of sync): no
    retry, each router is listed instead, and every deletion is still confirmed."""
    with simulated() as (sim, nsx):
        candidates, listed = plan(nsx, ROUTERS)
        sim.nsx.fail_next("nsx_search", 10, status=400, error_code=code)
        with capture_logs() as logs:
            results = delete(sim, nsx, candidates, listed=listed)

        assert calls(sim) == {
            "nsx_hierarchical": 1,
            "nsx_search": 1,
            "injected_400": 1,
            "nsx_list_routes": len(ROUTERS),
        }
        assert "routes.confirm_count_failed" in [e["event"] for e in logs]
        assert notes(results) == {NOTE_DELETED}


def test_counts_go_by_chunks_of_bounded_query_and_a_chunk_counted_wrong_is_paged() -> None:
    routers = [f"/infra/tier-1s/t1-{n:04d}" for n in range(200)]
    deleted = {r: [f"{r}/static-routes/gone"] for r in routers}
    survivors = {r: [f"{r}/static-routes/kept"] for r in routers}
    holds = {r: {f"{r}/static-routes/kept": False} for r in routers}
    holds[routers[-1]][f"{routers[-1]}/static-routes/gone"] = False  # the index lags there
    index = Index(holds)

    with capture_logs() as logs:
        trusted = search_presence(index, deleted, survivors, countable=routers, workers=3)

    # 200 routers do not fit one query: a few counts, each the survivors of its chunk.
    assert 1 < len(index.counted) <= 4
    assert sorted(r for chunk in index.counted for r in chunk) == routers
    wrong = next(chunk for chunk in index.counted if routers[-1] in chunk)
    assert sorted(r for chunk in index.asked for r in chunk) == sorted(wrong)
    counted_right = set(routers) - set(wrong)
    assert all(trusted[r] == {} for r in counted_right)
    # The pages show the route the index still holds: its router is listed by the caller.
    assert trusted[routers[-1]] == {f"{routers[-1]}/static-routes/gone": False}
    differs = [e for e in logs if e["event"] == "routes.confirm_count_differs"]
    assert [(e["counted"], e["survivors"]) for e in differs] == [(len(wrong) + 1, len(wrong))]


def test_only_countable_routers_are_counted_the_rest_paged() -> None:
    routers = ROUTERS[:2]
    deleted = {r: [f"{r}/static-routes/gone"] for r in routers}
    survivors = {r: [f"{r}/static-routes/kept"] for r in routers}
    index = Index({r: {f"{r}/static-routes/kept": False} for r in routers})

    trusted = search_presence(index, deleted, survivors, countable=routers[:1])

    assert index.counted == [routers[:1]]
    assert index.asked == [routers[1:]]
    assert trusted == {routers[0]: {}, routers[1]: {}}


def test_a_router_with_a_refused_batch_is_paged_not_counted() -> None:
    """Routes that went one by one (held, failed or deleted) leave the count unknown."""
    with simulated() as (sim, nsx):
        candidates, listed = plan(nsx, ROUTERS)
        sim.nsx.fail_hierarchical(times=1)
        sim.nsx.reset_counters()
        with capture_logs() as logs:
            # Batches of 3, one at a time: t1-0 r0 r1 + t1-1 r0 (refused), t1-1 r1 + t1-2,
            # t1-3: t1-1 is half refused.
            results = Deleter(
                nsx, allow_overwrite=False, sleep=no_sleep, workers=1, batch_size=3
            ).delete(candidates, listed=listed)

        assert notes(results) == {NOTE_DELETED}
        counts = [e for e in logs if e["event"] == "routes.confirm_counted"]
        assert [(e["routers"], e["survivors"]) for e in counts] == [(2, 4)]
        assert sim.nsx.counters["nsx_search"] == 2  # the count, the pages of t1-1
        assert sim.nsx.counters.get("nsx_list_routes", 0) == 0
        assert sim.nsx.route_count() == 8


def test_two_hundred_routers_confirm_with_a_handful_of_searches_and_no_listing() -> None:
    routers = [f"/infra/tier-1s/t1-{n:04d}" for n in range(200)]
    with simulated(routers) as (sim, nsx):
        candidates, listed = plan(nsx, routers)

        results = delete(sim, nsx, candidates, listed=listed)

        assert notes(results) == {NOTE_DELETED}
        assert sim.nsx.counters.get("nsx_list_routes", 0) == 0
        assert 1 <= sim.nsx.counters["nsx_search"] <= 4
        assert sim.nsx.route_count() == 400


def test_an_index_missing_survivors_falls_back_and_never_confirms_a_route_still_there() -> None:
    """The batch is accepted but the routes stay; the index lost a survivor: the count is
    off, the pages are not trusted, the listing shows the routes: not confirmed."""
    with simulated(ROUTERS[:2], client=IgnoringDeletes) as (sim, nsx):
        candidates, listed = plan(nsx, ROUTERS[:2])
        sim.nsx.unindex_route(ROUTERS[0], "r3")
        sim.nsx.reset_counters()
        with capture_logs() as logs:
            results = Deleter(nsx, allow_overwrite=False, sleep=no_sleep).delete(
                candidates, listed=listed
            )

        assert {r.verdict.action for r in results} == {Action.DELETE_FAILED}
        assert "routes.confirm_counted" not in [e["event"] for e in logs]
        assert untrusted(logs) == {ROUTERS[0]: "survivors-missing"}
        assert sim.nsx.counters["nsx_search"] == 2


def test_an_index_missing_survivors_of_routes_really_deleted_falls_back_to_listing() -> None:
    with simulated() as (sim, nsx):
        candidates, listed = plan(nsx, ROUTERS)
        sim.nsx.unindex_route(ROUTERS[2], "r2")  # frozen: the deletions stay indexed too
        sim.nsx.unindex_route(ROUTERS[2], "r3")
        with capture_logs() as logs:
            results = delete(sim, nsx, candidates, listed=listed)

        assert notes(results) == {NOTE_DELETED}
        assert "routes.confirm_counted" not in [e["event"] for e in logs]
        assert untrusted(logs) == {ROUTERS[2]: "survivors-missing"}
        # The other routers' pages show their deleted routes (the stale index): listed.
        assert calls(sim) == {"nsx_hierarchical": 1, "nsx_search": 2, "nsx_list_routes": 4}


def test_with_one_confirm_attempt_a_route_still_there_fails_after_one_listing() -> None:
    with simulated(ROUTERS[:2], client=IgnoringDeletes) as (sim, nsx):
        candidates, listed = plan(nsx, ROUTERS[:2])
        sleeps: list[float] = []
        sim.nsx.reset_counters()

        results = Deleter(
            nsx, allow_overwrite=False, sleep=sleeps.append, confirm_attempts=1
        ).delete(candidates, listed=listed)

        assert {r.verdict.action for r in results} == {Action.DELETE_FAILED}
        assert calls(sim) == {"nsx_search": 2, "nsx_list_routes": 2}
        assert sleeps == []
