"""The deleter builds every path it reads and deletes from the router listed and the route id,
and re-reads the very route it judged (issue 13: "Untrusted files and answers steer writes").

A fake NSX keeps routes by path and records every call; the real client's own refusals are
in test_client.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from factories import T1, ccm_route
from nsx_route_gc.errors import NsxApiError, NsxError
from nsx_route_gc.models import Action, Route, RouteVerdict, Verdict
from nsx_route_gc.nsx.confirm import Presence
from nsx_route_gc.nsx.deleter import NOTE_MARKED, Deleter
from nsx_route_gc.nsx.deleter import REQUIRE_OVERRIDE as REQUIRE

UID = "5c2a4b38-2f56-4a8e-9c0b-6a1d2e3f4a5b"
T0_ROUTE_DIR = "/infra/tier-0s/t0/static-routes/"


class FakeNsx:
    """Routes by policy path; hierarchical deletes refused, so every route goes one by one."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.store = {f"{r.router_path}/static-routes/{r.id}": r for r in routes}
        self.calls: list[tuple[str, str]] = []

    def list_routes(self, router_path: str) -> list[Route]:
        self.calls.append(("list", router_path))
        return [r for r in self.store.values() if r.router_path == router_path]

    def get_route(self, route_path: str) -> Route | None:
        self.calls.append(("get", route_path))
        return self.store.get(route_path)

    def delete_route(self, route_path: str, *, allow_overwrite: bool = False) -> bool:
        self.calls.append(("delete", route_path))
        return self.store.pop(route_path, None) is not None

    def hierarchical_delete(
        self,
        routes: Mapping[str, Sequence[Route]],
        *,
        allow_overwrite: bool = False,
    ) -> None:
        self.calls.extend(("hierarchical", router_path) for router_path in routes)
        raise NsxError("batch refused")

    def search_route_presence(self, routers: Sequence[str]) -> dict[str, Presence]:
        raise AssertionError("not used without listed paths")


def candidate(route: Route) -> RouteVerdict:
    return RouteVerdict(route, Verdict.ORPHANED, "node-gone", action=Action.DELETE)


def deleter(nsx: FakeNsx) -> Deleter:
    return Deleter(nsx, allow_overwrite=False, sleep=lambda _s: None)


def test_a_route_whose_path_points_at_a_tier0_is_deleted_only_where_it_was_listed() -> None:
    listed = ccm_route(UID, "172.16.137.0/24", "10.0.9.9")
    on_t1 = f"{T1}/static-routes/{listed.id}"
    # What the listing said of it: a path on a Tier-0 (a hostile or broken answer).
    claimed = replace(listed, path=T0_ROUTE_DIR + listed.id)
    nsx = FakeNsx([listed])
    (result,) = deleter(nsx).delete([candidate(claimed)])
    assert result.verdict.action is Action.DELETED
    touched = {path for call, path in nsx.calls if call in {"get", "delete"}}
    assert touched == {on_t1}
    assert not any(T0_ROUTE_DIR in path for _, path in nsx.calls)


def test_a_reread_with_the_same_revision_but_another_network_is_held() -> None:
    judged = ccm_route(UID, "172.16.137.0/24", "10.0.9.9")
    now = replace(judged, network="0.0.0.0/0")  # same id and _revision, another route
    nsx = FakeNsx([now])
    (result,) = deleter(nsx).delete([candidate(judged)])
    assert result.verdict.action is Action.HELD
    assert result.verdict.hold_reason is not None
    assert result.verdict.hold_reason.startswith("changed-since-plan: re-read")
    assert ("delete", f"{T1}/static-routes/{judged.id}") not in nsx.calls


def test_a_reread_that_claims_another_home_is_held() -> None:
    judged = ccm_route(UID, "172.16.137.0/24", "10.0.9.9")
    now = replace(judged, path=T0_ROUTE_DIR + judged.id)
    nsx = FakeNsx([now])
    (result,) = deleter(nsx).delete([candidate(judged)])
    assert result.verdict.action is Action.HELD
    assert not any(call == "delete" for call, _ in nsx.calls)


UIDS = [f"{n:08d}-2f56-4a8e-9c0b-6a1d2e3f4a5b" for n in range(4)]


def marked_for_delete(route: Route) -> Route:
    """``route`` as NSX shows it while deleting it: marked_for_delete, still listed."""
    body = dict(route.nsx_object or {})
    body["marked_for_delete"] = True
    return Route(
        route.router_path,
        route.id,
        route.path,
        route.network,
        route.next_hops,
        route.tags,
        route.create_time_ms,
        route.revision,
        route.protection,
        route.display_name,
        json.dumps(body),
    )


class Journal:
    """A DeletionJournal that keeps every record: (batch, route id, outcome, why)."""

    def __init__(self) -> None:
        self.sends: list[tuple[str, list[str]]] = []
        self.outcomes: list[tuple[int, str, str, str | None]] = []

    def sending(self, routes: Sequence[Route], *, via: str) -> int:
        self.sends.append((via, [r.id for r in routes]))
        return len(self.sends)

    def outcome(self, batch: int, outcomes: Sequence[tuple[Route, str, str | None]]) -> None:
        self.outcomes.extend((batch, r.id, what, why) for r, what, why in outcomes)


def test_the_journal_tells_what_this_tool_deleted_from_what_nsx_had_lost_or_kept() -> None:
    """restore --from a journal gives back only what this tool deleted. So the journal says,
    per route and under the number of the batch it went in: deleted; gone (NSX no longer had
    it, or was deleting it already, when it was read again); held-changed (it changed since
    it was judged, not deleted)."""
    deleted, lost, deleting, changed = (
        ccm_route(uid, f"172.16.{n}.0/24", "10.0.9.9") for n, uid in enumerate(UIDS)
    )
    nsx = FakeNsx([deleted, marked_for_delete(deleting), replace(changed, revision=3)])
    journal = Journal()
    results = Deleter(nsx, allow_overwrite=False, sleep=lambda _s: None, journal=journal).delete(
        [candidate(r) for r in (deleted, lost, deleting, changed)]
    )

    notes = {r.verdict.route.id: r.note for r in results}
    assert all(str(notes[r.id]).startswith("already-gone") for r in (lost, deleting))
    assert not any(call == "delete" and deleting.id in path for call, path in nsx.calls)
    assert journal.sends == [
        ("hierarchical", [r.id for r in (deleted, lost, deleting, changed)]),
        ("delete", [deleted.id]),
    ]
    last = {rid: (batch, what) for batch, rid, what, _ in journal.outcomes}
    assert last == {
        deleted.id: (2, "deleted"),
        lost.id: (1, "gone"),
        deleting.id: (1, "gone"),
        changed.id: (1, "held-changed"),
    }


def test_a_reread_whose_network_is_no_longer_a_network_is_held() -> None:
    judged = ccm_route(UID, "172.16.137.0/24", "10.0.9.9")
    nsx = FakeNsx([replace(judged, network="not-a-network")])
    (result,) = deleter(nsx).delete([candidate(judged)])
    assert result.verdict.action is Action.HELD
    assert not any(call == "delete" for call, _ in nsx.calls)


class Answering404(FakeNsx):
    """The DELETE finds nothing (404) although the re-read just before found the route."""

    def delete_route(self, route_path: str, *, allow_overwrite: bool = False) -> bool:
        self.calls.append(("delete", route_path))
        self.store.pop(route_path, None)
        return False


class MarkingOnly(FakeNsx):
    """NSX takes the DELETE and keeps the route, marked_for_delete, until it is realized."""

    def delete_route(self, route_path: str, *, allow_overwrite: bool = False) -> bool:
        self.calls.append(("delete", route_path))
        self.store[route_path] = marked_for_delete(self.store[route_path])
        return True


class Conflicting(FakeNsx):
    """The DELETE is refused as a revision conflict (412); the route is then read marked."""

    def delete_route(self, route_path: str, *, allow_overwrite: bool = False) -> bool:
        self.calls.append(("delete", route_path))
        self.store[route_path] = marked_for_delete(self.store[route_path])
        raise NsxApiError("DELETE", route_path, 412)


def test_what_a_single_delete_ends_in_is_noted_from_what_nsx_shows() -> None:
    """A 404 to the DELETE is noted already-gone (this tool did not delete it, restore will
    not recreate it); a route NSX keeps marked_for_delete, after the DELETE or after refusing
    it as changed, counts as deleted and says so."""
    route = ccm_route(UID, "172.16.137.0/24", "10.0.9.9")
    outcomes: dict[str, Any] = {}
    for name, fake in (("404", Answering404), ("marked", MarkingOnly), ("412", Conflicting)):
        (result,) = deleter(fake([route])).delete([candidate(route)])
        outcomes[name] = (result.verdict.action, result.note)
    assert outcomes["404"][0] is Action.DELETED
    assert str(outcomes["404"][1]).startswith("already-gone: NSX answered 404")
    assert outcomes["marked"] == (Action.DELETED, NOTE_MARKED)
    assert outcomes["412"] == (Action.DELETED, NOTE_MARKED)


class RecordingOverwrite(FakeNsx):
    def __init__(self, routes: Sequence[Route]) -> None:
        super().__init__(routes)
        self.overwrite: dict[str, bool] = {}

    def delete_route(self, route_path: str, *, allow_overwrite: bool = False) -> bool:
        self.overwrite[route_path.rsplit("/", 1)[1]] = allow_overwrite
        return super().delete_route(route_path, allow_overwrite=allow_overwrite)


def test_a_single_delete_overrides_only_a_route_a_principal_protects() -> None:
    """With policy.allow_overwrite, X-Allow-Overwrite goes with the DELETE of a route marked
    REQUIRE_OVERRIDE, never with that of an ordinary route."""
    plain = ccm_route(UIDS[0], "172.16.10.0/24", "10.0.9.9")
    guarded = replace(ccm_route(UIDS[1], "172.16.11.0/24", "10.0.9.9"), protection=REQUIRE)
    nsx = RecordingOverwrite([plain, guarded])
    results = Deleter(nsx, allow_overwrite=True, sleep=lambda _s: None).delete(
        [candidate(plain), candidate(guarded)]
    )
    assert {r.verdict.action for r in results} == {Action.DELETED}
    assert nsx.overwrite == {plain.id: False, guarded.id: True}
