"""The deleter builds every path it reads and deletes from the router listed and the route id,
and re-reads the very route it judged (issue 13: "Untrusted files and answers steer writes").

A fake NSX keeps routes by path and records every call; the real client's own refusals are
in test_client.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from factories import T1, ccm_route
from nsx_route_gc.errors import NsxError
from nsx_route_gc.models import Action, Route, RouteVerdict, Verdict
from nsx_route_gc.nsx.confirm import Presence
from nsx_route_gc.nsx.deleter import Deleter

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
