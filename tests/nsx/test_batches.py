"""Deletion batches that span routers (issue 11): the ``Deleter`` with the real NsxClient on the
simulator, and how candidates are cut into batches (a pure step)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from structlog.testing import capture_logs

from factories import ccm_route
from nsx_route_gc.config import NsxSettings, Secret
from nsx_route_gc.models import Action, Route, RouteVerdict, Verdict
from nsx_route_gc.nsx.client import NsxClient
from nsx_route_gc.nsx.deleter import REQUIRE_OVERRIDE, ROUTES_IN_FLIGHT, Deleter
from nsx_route_gc.simulator import Scenario, SimRoute, Simulator

ROUTERS = [f"/infra/tier-1s/t1-{n}" for n in range(4)]
DEV = "/orgs/default/projects/dev/infra/tier-1s/dev-t1"
OPS = "/orgs/default/projects/ops/infra/tier-1s/ops-t1"


def no_sleep(_seconds: float) -> None:
    return None


class Recording(NsxClient):
    """The real client, remembering each hierarchical delete's routers and what the journal
    held when it was sent."""

    journal: Journal

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[dict[str, list[str]]] = []
        self.overwrite: list[bool] = []
        self.journaled_before: list[bool] = []

    def hierarchical_delete(self, routes: Mapping[str, Sequence[Route]], **kw: Any) -> None:
        self.sent.append({r: [x.id for x in listed] for r, listed in routes.items()})
        self.overwrite.append(bool(kw.get("allow_overwrite")))
        ids = {(r.router_path, r.id) for listed in routes.values() for r in listed}
        self.journaled_before.append(ids <= self.journal.recorded)
        super().hierarchical_delete(routes, **kw)


class Journal:
    """A DeletionJournal that remembers what was recorded before each send."""

    def __init__(self) -> None:
        self.recorded: set[tuple[str, str]] = set()
        self.sends: list[tuple[str, int]] = []
        self.batch_of: dict[tuple[str, str], int] = {}
        # (batch, router, route id, outcome), in the order recorded
        self.outcomes: list[tuple[int, str, str, str]] = []

    def sending(self, routes: Sequence[Route], *, via: str) -> int:
        self.recorded.update((r.router_path, r.id) for r in routes)
        self.sends.append((via, len(routes)))
        self.batch_of.update(((r.router_path, r.id), len(self.sends)) for r in routes)
        return len(self.sends)

    def outcome(self, batch: int, outcomes: Sequence[tuple[Route, str, str | None]]) -> None:
        self.outcomes.extend((batch, r.router_path, r.id, what) for r, what, _why in outcomes)

    def story(self, router: str, route_id: str) -> list[tuple[int, str]]:
        return [(b, what) for b, r, i, what in self.outcomes if (r, i) == (router, route_id)]


@contextmanager
def simulated(
    routers: Sequence[str],
    protected: Mapping[str, str] | None = None,
    client: type[Recording] | None = None,
) -> Iterator[tuple[Simulator, Recording, Journal]]:
    """Four routes a router (r0..r3); ``protected``: route id -> its ``_protection``."""
    marks = protected or {}
    routes = [
        SimRoute(
            router,
            f"r{i}",
            f"10.{n}.{i}.0/24",
            ("172.16.128.9",),
            protection=marks.get(f"r{i}", "NOT_PROTECTED"),
        )
        for n, router in enumerate(routers)
        for i in range(4)
    ]
    with Simulator(Scenario("batches", "routes to delete", list(routers), routes)) as sim:
        settings = NsxSettings(
            sim.nsx_url,
            username=sim.nsx.username,
            password=Secret(sim.nsx.password),
            auth="basic",
            ca_file=sim.ca_pem_path,
        )
        journal = Journal()
        with (client or Recording)(settings, sleep=no_sleep) as nsx:
            nsx.journal = journal
            yield sim, nsx, journal


def candidates(nsx: NsxClient, routers: Sequence[str], per_router: int = 2) -> list[RouteVerdict]:
    return [
        RouteVerdict(r, Verdict.ORPHANED, "node-gone", action=Action.DELETE)
        for router in routers
        for r in nsx.list_routes(router)[:per_router]
    ]


def deleter(nsx: NsxClient, journal: Journal, batch_size: int) -> Deleter:
    return Deleter(
        nsx,
        allow_overwrite=False,
        batch_size=batch_size,
        sleep=no_sleep,
        workers=4,
        journal=journal,
    )


def test_batches_fill_across_routers_up_to_the_batch_size() -> None:
    with simulated(ROUTERS) as (sim, nsx, journal):
        up = candidates(nsx, ROUTERS)
        sim.nsx.reset_counters()

        results = deleter(nsx, journal, batch_size=5).delete(up)

        assert {r.verdict.action for r in results} == {Action.DELETED}
        assert sim.nsx.counters["nsx_hierarchical"] == 2
        sizes = sorted(sum(len(ids) for ids in sent.values()) for sent in nsx.sent)
        assert sizes == [3, 5]
        # One PATCH carries the routes of three routers: one ChildResourceReference each.
        assert max(len(sent) for sent in nsx.sent) == 3
        assert all(nsx.journaled_before)
        assert sim.nsx.route_count() == 8


def test_a_batch_never_mixes_spaces() -> None:
    routers = [ROUTERS[0], DEV, ROUTERS[1], OPS]
    with simulated(routers) as (sim, nsx, journal):
        up = candidates(nsx, routers)
        sim.nsx.reset_counters()

        results = deleter(nsx, journal, batch_size=1000).delete(up)

        assert {r.verdict.action for r in results} == {Action.DELETED}
        assert sorted(sorted(sent) for sent in nsx.sent) == [
            [ROUTERS[0], ROUTERS[1]],
            [DEV],
            [OPS],
        ]
        assert sim.nsx.route_count() == 8


def test_a_refused_batch_goes_one_by_one_and_holds_back_no_other_batch() -> None:
    with simulated(ROUTERS) as (sim, nsx, journal):
        up = candidates(nsx, ROUTERS)
        changed = up[0].route
        sim.nsx.bump_revision(changed.router_path, changed.id)  # its batch is refused
        sim.nsx.reset_counters()

        results = deleter(nsx, journal, batch_size=4).delete(up)

        by_id = {(r.verdict.route.router_path, r.verdict.route.id): r for r in results}
        assert by_id[(changed.router_path, changed.id)].verdict.action is Action.HELD
        # The journal: the refused batch's routes "refused" under its number, then each
        # one's own end; the accepted batches' routes "deleted" then confirmed, under theirs.
        refused_batch = journal.batch_of[(changed.router_path, changed.id)]
        assert journal.story(changed.router_path, changed.id) == [
            (refused_batch, "refused"),
            (refused_batch, "held-changed"),
        ]
        for v in up:
            key = (v.route.router_path, v.route.id)
            story = journal.story(*key)
            if key == (changed.router_path, changed.id):
                continue
            if story[0] == (refused_batch, "refused"):
                assert (
                    story[1:]
                    == [(journal.batch_of[key], "deleted")]
                    != [(refused_batch, "deleted")]
                )
            else:
                assert story == [(journal.batch_of[key], "deleted")] * 2
        assert [r.verdict.action for r in results].count(Action.DELETED) == 7
        assert sim.nsx.counters["nsx_hierarchical"] == 2
        # Only the refused batch's other three routes went one by one.
        assert sim.nsx.counters["nsx_delete"] == 3
        assert journal.sends.count(("hierarchical", 4)) == 2
        assert journal.sends.count(("delete", 1)) == 3
        assert sim.nsx.route_count() == 9


def test_routes_that_need_the_overwrite_header_go_in_batches_of_their_own() -> None:
    def verdict(n: int, protection: str | None) -> RouteVerdict:
        route = ccm_route(f"{n:08d}-0000-4000-8000-000000000000", f"10.{n}.0.0/24", "10.0.0.1")
        if protection is not None:
            route = Route(
                route.router_path,
                route.id,
                route.path,
                route.network,
                route.next_hops,
                route.tags,
                revision=route.revision,
                protection=protection,
            )
        return RouteVerdict(route, Verdict.ORPHANED, "node-gone", action=Action.DELETE)

    up = [verdict(1, None), verdict(2, REQUIRE_OVERRIDE), verdict(3, None), verdict(4, None)]
    # Cutting batches makes no call: a client of no manager at all.
    unused = NsxClient(NsxSettings("https://127.0.0.1:9", username="u", password=Secret("p")))
    overwriting = Deleter(unused, allow_overwrite=True, batch_size=2)
    assert [[v.route.id[:8] for v in b] for b in overwriting.batches(up)] == [
        ["00000001", "00000003"],
        ["00000004"],
        ["00000002"],
    ]
    plain = Deleter(unused, allow_overwrite=False, batch_size=3)
    assert [len(b) for b in plain.batches(up)] == [3, 1]


def test_x_allow_overwrite_goes_only_with_the_batches_that_need_it() -> None:
    """policy.allow_overwrite lets the tool delete what a principal (the CCM's) marked
    REQUIRE_OVERRIDE: only the batches holding such routes carry X-Allow-Overwrite, and NSX
    takes them at once; every other batch goes without, so it can never override what
    nobody meant it to."""
    routers = ROUTERS[:2]
    with simulated(routers, protected={"r1": REQUIRE_OVERRIDE}) as (sim, nsx, journal):
        up = candidates(nsx, routers, per_router=4)
        sim.nsx.reset_counters()
        overwriting = Deleter(
            nsx, allow_overwrite=True, batch_size=1000, sleep=no_sleep, journal=journal
        )

        results = overwriting.delete(up)

        assert {r.verdict.action for r in results} == {Action.DELETED}
        assert sim.nsx.route_count() == 0
        assert sim.nsx.counters["nsx_delete"] == 0  # no batch was refused and split
        with_header = [
            sorted(i for ids in sent.values() for i in ids)
            for sent, overwrite in zip(nsx.sent, nsx.overwrite, strict=True)
            if overwrite
        ]
        assert with_header == [["r1", "r1"]]
        assert nsx.overwrite.count(False) == len(nsx.sent) - 1 >= 1


class Counting:
    """A Progress that keeps each task's name, total and what it was advanced by."""

    def __init__(self) -> None:
        self.tasks: dict[str, list[int | None]] = {}

    def task(self, name: str, total: int | None = None) -> Any:
        counts = self.tasks.setdefault(name, [total, 0])

        class Task:
            def advance(self, amount: int = 1) -> None:
                counts[1] = (counts[1] or 0) + amount

        return Task()

    def close(self) -> None:
        return None


def test_the_operator_sees_each_router_and_batch_in_the_log_and_the_deletions_counted() -> None:
    with simulated(ROUTERS[:2]) as (sim, nsx, journal):
        up = candidates(nsx, ROUTERS[:2], per_router=4)
        changed = up[0].route
        sim.nsx.bump_revision(changed.router_path, changed.id)  # the first batch is refused
        progress = Counting()
        with capture_logs() as logs:
            Deleter(
                nsx,
                allow_overwrite=False,
                batch_size=4,
                sleep=no_sleep,
                journal=journal,
                progress=progress,
            ).delete(up)

    assert progress.tasks == {"deletions done": [8, 8]}
    events = {e["event"]: e for e in logs}
    assert [(e["router"], e["routes"]) for e in logs if e["event"] == "router.deleting"] == [
        (ROUTERS[0], 4),
        (ROUTERS[1], 4),
    ]
    rejected = events["routes.batch_rejected"]
    assert (rejected["routers"], rejected["router"], rejected["routes"]) == (1, ROUTERS[0], 4)
    assert rejected["revision_conflict"] is True
    assert rejected["fallback"] == "one by one"
    assert "412" in rejected["error"]
    assert (
        events["routes.batch_accepted"]["routers"],
        events["routes.batch_accepted"]["routes"],
    ) == (1, 4)


class Overlapping(Recording):
    """Counts the hierarchical deletes in flight at once (each takes a moment)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def hierarchical_delete(self, routes: Mapping[str, Sequence[Route]], **kw: Any) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(0.05)
        try:
            super().hierarchical_delete(routes, **kw)
        finally:
            with self.lock:
                self.now -= 1


def test_no_more_than_routes_in_flight_of_batches_are_sent_at_once() -> None:
    """Memory and the manager's patience both bound what is sent at once: batches of two
    fifths of ROUTES_IN_FLIGHT go two at a time (a third would pass the bound), however many
    workers the deleter has."""
    projects = [f"/orgs/default/projects/p{n}/infra/tier-1s/t1" for n in range(6)]
    with simulated(projects, client=Overlapping) as (sim, nsx, journal):
        assert isinstance(nsx, Overlapping)
        up = candidates(nsx, projects, per_router=1)  # a batch per project: never mixed
        Deleter(
            nsx,
            allow_overwrite=False,
            batch_size=ROUTES_IN_FLIGHT * 2 // 5,
            sleep=no_sleep,
            workers=8,
            journal=journal,
        ).delete(up)
        assert sim.nsx.route_count() == 18
        assert nsx.peak == 2


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, 1),  # a Deleter built without workers sends one batch at a time
        ({"workers": 1, "batch_size": 1000}, 1),
        ({"workers": 0, "batch_size": 1000}, 1),
        ({"workers": 8, "batch_size": ROUTES_IN_FLIGHT}, 1),
        ({"workers": 3, "batch_size": 1000}, 3),  # at most 3: 2 when a thread starts late
    ],
)
def test_batches_in_flight_are_the_fewest_of_workers_and_routes_in_flight(
    settings: dict[str, int], expected: int
) -> None:
    projects = [f"/orgs/default/projects/p{n}/infra/tier-1s/t1" for n in range(6)]
    with simulated(projects, client=Overlapping) as (sim, nsx, journal):
        assert isinstance(nsx, Overlapping)
        up = candidates(nsx, projects, per_router=1)  # a batch per project: never mixed
        Deleter(nsx, allow_overwrite=False, sleep=no_sleep, journal=journal, **settings).delete(up)
        assert sim.nsx.route_count() == 18
        assert nsx.peak == expected if expected == 1 else 2 <= nsx.peak <= expected


def test_a_batch_size_below_one_is_refused_and_one_is_a_batch_of_one() -> None:
    unused = NsxClient(NsxSettings("https://127.0.0.1:9", username="u", password=Secret("p")))
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        Deleter(unused, allow_overwrite=False, batch_size=0)
    up = [
        RouteVerdict(
            ccm_route(f"{n:08d}-0000-4000-8000-000000000000", f"10.{n}.0.0/24", "10.0.0.1"),
            Verdict.ORPHANED,
            "node-gone",
            action=Action.DELETE,
        )
        for n in range(3)
    ]
    assert [len(b) for b in Deleter(unused, allow_overwrite=False, batch_size=1).batches(up)] == [
        1,
        1,
        1,
    ]


def test_a_router_written_with_a_trailing_slash_is_the_same_space_and_a_tier0_its_own() -> None:
    """Batches are cut by space (/infra or a project's infra): /infra/tier-1s/a/ is in /infra;
    a route whose router is no Tier-1 gets a batch of its own (the client refuses it, and it
    goes one by one) rather than stopping the cut."""
    unused = NsxClient(NsxSettings("https://127.0.0.1:9", username="u", password=Secret("p")))

    def on(router: str, n: int) -> RouteVerdict:
        route = ccm_route(
            f"{n:08d}-0000-4000-8000-000000000000", f"10.{n}.0.0/24", "10.0.0.1", router=router
        )
        return RouteVerdict(route, Verdict.ORPHANED, "node-gone", action=Action.DELETE)

    up = [on("/infra/tier-1s/a/", 1), on("/infra/tier-0s/t0", 2), on("/infra/tier-1s/b", 3)]
    cut = Deleter(unused, allow_overwrite=False, batch_size=10).batches(up)
    assert [[v.route.router_path for v in b] for b in cut] == [
        ["/infra/tier-1s/a/", "/infra/tier-1s/b"],
        ["/infra/tier-0s/t0"],
    ]
