"""The simulated NSX Policy API, driven with real `requests` over HTTPS."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme

from nsx_route_gc.simulator import SimRoute, Simulator, load_scenario
from nsx_route_gc.simulator.nsx import LOGIN_REFUSED
from nsx_route_gc.simulator.scenarios import T1

NOW = 1_700_000_000.0
ROUTES = "/policy/api/v1/infra/tier-1s/tanzu-cl1/static-routes"
CL1_138 = "a57a555e-e4eb-49ad-af74-e11a7d7a8ad8_172.16.138.0_24"


class Nsx:
    """A tiny client: basic auth, the simulator's CA, JSON."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.session = requests.Session()
        self.session.auth = ("admin", sim.nsx.password)
        self.verify = str(sim.ca_pem_path)

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(
            method, self.sim.nsx_url + path, verify=self.verify, timeout=10, **kwargs
        )

    def list_all(self, path: str, **params: Any) -> list[list[dict[str, Any]]]:
        pages, cursor = [], None
        while True:
            query = dict(params, **({"cursor": cursor} if cursor else {}))
            body = self.call("GET", path, params=query).json()
            pages.append(body["results"])
            cursor = body.get("cursor")
            if not cursor:
                return pages


def _sim(name: str) -> Iterator[Simulator]:
    with Simulator(load_scenario(name), clock=lambda: NOW) as sim:
        yield sim


@pytest.fixture
def sim() -> Iterator[Simulator]:
    yield from _sim("seed")


@pytest.fixture
def nsx(sim: Simulator) -> Iterator[Nsx]:
    client = Nsx(sim)
    yield client
    client.session.close()


def _error(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) >= {"httpStatus", "error_code", "module_name", "error_message"}
    assert body["related_errors"] == []
    return body


def test_routes_list_in_pages_with_result_count_and_no_cursor_on_the_last(nsx: Nsx) -> None:
    pages = nsx.list_all(ROUTES, page_size=3)
    assert [len(p) for p in pages] == [3, 3, 2]
    ids = [r["id"] for p in pages for r in p]
    assert ids == sorted(ids)
    assert len(set(ids)) == 8
    body = nsx.call("GET", ROUTES, params={"page_size": 3}).json()
    assert body["result_count"] == 8
    assert not body["cursor"].startswith("0000")


def test_a_listed_route_is_what_a_get_answers_also_after_each_change(
    sim: Simulator, nsx: Nsx
) -> None:
    """Pages are put together from each route's JSON as last rendered: a write, a bump of
    the revision, a deletion and a route put back must all show in the next listing."""

    def listed() -> dict[str, dict[str, Any]]:
        return {r["id"]: r for p in nsx.list_all(ROUTES) for r in p}

    def got(rid: str) -> dict[str, Any]:
        answer: dict[str, Any] = nsx.call("GET", f"{ROUTES}/{rid}").json()
        return answer

    assert listed()[CL1_138] == got(CL1_138)
    ok = nsx.call("PATCH", f"{ROUTES}/{CL1_138}", json={"display_name": "x", "_revision": 0})
    assert ok.status_code == 200
    assert listed()[CL1_138] == got(CL1_138)
    assert listed()[CL1_138]["display_name"] == "x"
    sim.nsx.bump_revision(T1, CL1_138)
    assert listed()[CL1_138]["_revision"] == 2
    before = got(CL1_138)
    assert nsx.call("DELETE", f"{ROUTES}/{CL1_138}").status_code == 200
    assert CL1_138 not in listed()
    body = {k: before[k] for k in ("network", "next_hops", "tags", "display_name")}
    assert nsx.call("PATCH", f"{ROUTES}/{CL1_138}", json=body).status_code == 200
    again = listed()[CL1_138]
    assert again == got(CL1_138)
    assert again["_revision"] == 0
    assert again["unique_id"] != before["unique_id"]


def test_short_pages_answer_fewer_items_than_asked(sim: Simulator, nsx: Nsx) -> None:
    sim.nsx.short_pages = True
    pages = nsx.list_all(ROUTES, page_size=6)
    assert [len(p) for p in pages] == [3, 3, 2]


def test_page_size_is_capped_at_1000(sim: Simulator, nsx: Nsx) -> None:
    for i in range(1005):
        sim.nsx.add_route(
            SimRoute(T1, f"r{i:05d}", f"10.{i // 256}.{i % 256}.0/24", ("10.255.0.1",))
        )
    body = nsx.call("GET", ROUTES, params={"page_size": 5000}).json()
    assert len(body["results"]) == 1000
    assert body["result_count"] == 1013
    assert "cursor" in body


def test_route_carries_every_field_of_the_nsx_object(nsx: Nsx) -> None:
    route = nsx.call("GET", f"{ROUTES}/{CL1_138}").json()
    assert route["resource_type"] == "StaticRoutes"
    assert route["path"] == f"{T1}/static-routes/{CL1_138}"
    assert route["parent_path"] == T1
    assert route["relative_path"] == CL1_138
    assert route["network"] == "172.16.138.0/24"
    assert route["next_hops"] == [{"ip_address": "172.16.128.35", "admin_distance": 1}]
    assert route["display_name"] == "kubernetes_cl1-md-0-5789bbcb76-vvrjv_172.16.138.0/24"
    assert {"scope": "vsphere.k8s.io/cluster-name", "tag": "kubernetes"} in route["tags"]
    assert route["_create_time"] < NOW * 1000 - 86_400_000  # days old
    assert (route["_revision"], route["_protection"], route["_system_owned"]) == (
        0,
        "NOT_PROTECTED",
        False,
    )
    assert route["marked_for_delete"] is False
    assert route["overridden"] is False
    assert route["unique_id"]
    assert route["_create_user"]
    assert route["_last_modified_user"]


def test_missing_route_is_404_with_an_nsx_error_body(nsx: Nsx) -> None:
    body = _error(nsx.call("GET", f"{ROUTES}/nope"), 404)
    assert body["httpStatus"] == "NOT_FOUND"
    assert f"{T1}/static-routes/nope" in body["error_message"]


def test_session_auth_needs_cookie_and_xsrf_and_expires(sim: Simulator) -> None:
    verify = str(sim.ca_pem_path)
    url = sim.nsx_url
    with requests.Session() as s:
        bad = s.post(
            f"{url}/api/session/create",
            data={"j_username": "admin", "j_password": "wrong"},
            verify=verify,
        )
        assert bad.status_code == 403
        ok = s.post(
            f"{url}/api/session/create",
            data={"j_username": "admin", "j_password": sim.nsx.password},
            verify=verify,
        )
        assert ok.status_code == 200
        assert "JSESSIONID" in s.cookies
        assert "HttpOnly" in ok.headers["Set-Cookie"]
        assert "Secure" in ok.headers["Set-Cookie"]
        xsrf = {"X-XSRF-TOKEN": ok.headers["X-XSRF-TOKEN"]}
        assert s.get(url + ROUTES, headers=xsrf, verify=verify).status_code == 200
        _error(s.get(url + ROUTES, verify=verify), 403)
        _error(s.get(url + ROUTES, headers={"X-XSRF-TOKEN": "forged"}, verify=verify), 403)
        sim.nsx.expire_sessions()
        _error(s.get(url + ROUTES, headers=xsrf, verify=verify), 401)
        ok = s.post(
            f"{url}/api/session/create",
            data={"j_username": "admin", "j_password": sim.nsx.password},
            verify=verify,
        )
        xsrf = {"X-XSRF-TOKEN": ok.headers["X-XSRF-TOKEN"]}
        assert s.post(f"{url}/api/session/destroy", headers=xsrf, verify=verify).status_code == 200
        _error(s.get(url + ROUTES, headers=xsrf, verify=verify), 401)
    _error(requests.get(url + ROUTES, verify=verify, timeout=10), 401)
    assert sim.nsx.counters["nsx_session"] == 3


def test_basic_auth_is_accepted_and_wrong_credentials_refused(sim: Simulator, nsx: Nsx) -> None:
    assert nsx.call("GET", "/policy/api/v1/infra/tier-1s").json()["results"][0]["path"] == T1
    wrong = requests.get(
        sim.nsx_url + ROUTES, auth=("admin", "nope"), verify=str(sim.ca_pem_path), timeout=10
    )
    _error(wrong, 403)


def test_client_certificate_of_a_principal_identity_is_the_auth(
    sim: Simulator, tmp_path: Path
) -> None:
    cert, key = sim.issue_client_cert("nsx-route-gc")
    (tmp_path / "c.crt").write_bytes(cert)
    (tmp_path / "c.key").write_bytes(key)
    pair = (str(tmp_path / "c.crt"), str(tmp_path / "c.key"))
    verify = str(sim.ca_pem_path)

    with requests.Session() as s:
        answer = s.get(sim.nsx_url + ROUTES, cert=pair, verify=verify, timeout=10)
    assert answer.status_code == 200
    assert len(answer.json()["results"]) == 8
    # No certificate: no user.
    _error(requests.get(sim.nsx_url + ROUTES, verify=verify, timeout=10), 401)
    # A certificate of the right CA, but no principal identity of that name.
    stranger = sim.ca.issue_cert("stranger", common_name="stranger")
    stranger.cert_chain_pems[0].write_to_path(str(tmp_path / "s.crt"))
    stranger.private_key_pem.write_to_path(str(tmp_path / "s.key"))
    other = (str(tmp_path / "s.crt"), str(tmp_path / "s.key"))
    _error(requests.get(sim.nsx_url + ROUTES, cert=other, verify=verify, timeout=10), 401)
    # A certificate from another CA fails the TLS handshake itself.
    foreign = trustme.CA().issue_cert("nsx-route-gc", common_name="nsx-route-gc")
    foreign.cert_chain_pems[0].write_to_path(str(tmp_path / "f.crt"))
    foreign.private_key_pem.write_to_path(str(tmp_path / "f.key"))
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(
            sim.nsx_url + ROUTES,
            cert=(str(tmp_path / "f.crt"), str(tmp_path / "f.key")),
            verify=verify,
            timeout=10,
        )


def test_patch_creates_then_updates_with_revision_checks(nsx: Nsx) -> None:
    body = {"network": "10.9.0.0/24", "next_hops": [{"ip_address": "10.0.0.1"}], "_revision": 7}
    assert nsx.call("PATCH", f"{ROUTES}/new", json=body).status_code == 200
    created = nsx.call("GET", f"{ROUTES}/new").json()
    assert created["_revision"] == 0
    assert created["_create_time"] == int(NOW * 1000)
    assert created["next_hops"] == [{"ip_address": "10.0.0.1", "admin_distance": 1}]
    stale = nsx.call("PATCH", f"{ROUTES}/new", json={"display_name": "x", "_revision": 5})
    assert _error(stale, 412)["httpStatus"] == "PRECONDITION_FAILED"
    ok = nsx.call("PATCH", f"{ROUTES}/new", json={"display_name": "x", "_revision": 0})
    assert ok.status_code == 200
    updated = nsx.call("GET", f"{ROUTES}/new").json()
    assert (updated["_revision"], updated["display_name"], updated["network"]) == (
        1,
        "x",
        "10.9.0.0/24",
    )
    _error(nsx.call("PUT", f"{ROUTES}/new", json={**body, "_revision": None}), 412)
    put = nsx.call("PUT", f"{ROUTES}/new", json={**body, "_revision": 1})
    assert put.json()["_revision"] == 2
    _error(nsx.call("PATCH", f"{ROUTES}/bad", json={"network": "nope"}), 400)


def test_bump_revision_makes_a_stale_write_fail(sim: Simulator, nsx: Nsx) -> None:
    assert sim.nsx.bump_revision(T1, CL1_138) == 1
    _error(nsx.call("PATCH", f"{ROUTES}/{CL1_138}", json={"_revision": 0}), 412)


def test_delete_statuses_and_missing_route_knob(sim: Simulator, nsx: Nsx) -> None:
    assert nsx.call("DELETE", f"{ROUTES}/{CL1_138}").status_code == 200
    assert sim.nsx.get_route(T1, CL1_138) is None
    _error(nsx.call("DELETE", f"{ROUTES}/{CL1_138}"), 404)
    sim.nsx.set_knobs(delete_missing="200", delete_status=204)
    assert nsx.call("DELETE", f"{ROUTES}/{CL1_138}").status_code == 200
    assert nsx.call("DELETE", f"{ROUTES}/default-route").status_code == 204
    with pytest.raises(ValueError, match="unknown NSX simulator knob"):
        sim.nsx.set_knobs(nope=1)


def test_require_override_routes_need_x_allow_overwrite() -> None:
    for sim in _sim("principal"):
        nsx = Nsx(sim)
        route = nsx.call("GET", f"{ROUTES}/{CL1_138}").json()
        assert route["_protection"] == "REQUIRE_OVERRIDE"
        _error(nsx.call("DELETE", f"{ROUTES}/{CL1_138}"), 403)
        headers = {"X-Allow-Overwrite": "true"}
        assert nsx.call("DELETE", f"{ROUTES}/{CL1_138}", headers=headers).status_code == 200
        nsx.session.close()


def _batch(*children: tuple[str, int | None, bool]) -> dict[str, Any]:
    routes = []
    for rid, revision, delete in children:
        obj: dict[str, Any] = {"resource_type": "StaticRoutes", "id": rid}
        if revision is not None:
            obj["_revision"] = revision
        routes.append(
            {"resource_type": "ChildStaticRoutes", "marked_for_delete": delete, "StaticRoutes": obj}
        )
    return {
        "resource_type": "Infra",
        "children": [
            {"resource_type": "ChildResourceReference", "target_type": "Tier1",
             "id": "tanzu-cl1", "children": routes}
        ],
    }  # fmt: skip


def test_hierarchical_delete_is_all_or_nothing(sim: Simulator, nsx: Nsx) -> None:
    ids = [r["id"] for r in sim.nsx.routes(T1) if "172.16.13" in r["network"]]
    assert len(ids) == 3
    sim.nsx.bump_revision(T1, ids[1])
    params = {"enforce_revision_check": "true"}
    stale = _batch(*((i, 0, True) for i in ids))
    _error(nsx.call("PATCH", "/policy/api/v1/infra", params=params, json=stale), 412)
    assert all(sim.nsx.get_route(T1, i) for i in ids)
    # Without the revision check the stale revision is not looked at.
    with_missing = _batch((ids[0], 0, True), ("missing", None, True))
    _error(nsx.call("PATCH", "/policy/api/v1/infra", json=with_missing), 404)
    assert sim.nsx.get_route(T1, ids[0]) is not None
    sim.nsx.hierarchical_delete_missing = "ignore"
    assert nsx.call("PATCH", "/policy/api/v1/infra", json=with_missing).status_code == 200
    fresh = _batch((ids[1], 1, True), (ids[2], 0, True))
    assert nsx.call("PATCH", "/policy/api/v1/infra", params=params, json=fresh).status_code == 200
    assert not any(sim.nsx.get_route(T1, i) for i in ids)
    assert sim.nsx.counters["nsx_hierarchical"] == 4


def test_hierarchical_limits_and_injected_failure(sim: Simulator, nsx: Nsx) -> None:
    body = _batch((CL1_138, None, True), ("default-route", None, True))
    sim.nsx.max_hierarchical_children = 1
    _error(nsx.call("PATCH", "/policy/api/v1/infra", json=body), 400)
    sim.nsx.max_hierarchical_children = None
    sim.nsx.fail_hierarchical(times=1, status=500)
    _error(nsx.call("PATCH", "/policy/api/v1/infra", json=body), 500)
    assert sim.nsx.route_count(T1) == 8
    assert nsx.call("PATCH", "/policy/api/v1/infra", json=body).status_code == 200
    assert sim.nsx.route_count(T1) == 6


def test_hierarchical_override_needed_for_principal_routes() -> None:
    for sim in _sim("principal"):
        nsx = Nsx(sim)
        body = _batch((CL1_138, 0, True))
        _error(nsx.call("PATCH", "/policy/api/v1/infra", json=body), 403)
        headers = {"X-Allow-Overwrite": "true"}
        assert nsx.call("PATCH", "/policy/api/v1/infra", json=body, headers=headers).ok
        assert sim.nsx.get_route(T1, CL1_138) is None
        nsx.session.close()


def test_search_by_cluster_tag_with_paging(nsx: Nsx) -> None:
    query = (
        r"resource_type:StaticRoutes AND tags.scope:vsphere.k8s.io\/cluster-name "
        r"AND tags.tag:kubernetes AND marked_for_delete:false"
    )
    pages = nsx.list_all("/policy/api/v1/search/query", query=query, page_size=4)
    found = [r for p in pages for r in p]
    assert [len(p) for p in pages] == [4, 2]
    first = nsx.call("GET", "/policy/api/v1/search/query", params={"query": query, "page_size": 4})
    second = nsx.call(
        "GET",
        "/policy/api/v1/search/query",
        params={"query": query, "page_size": 4, "cursor": first.json()["cursor"]},
    )
    # "set only on first page", as NSX documents result_count.
    assert first.json()["result_count"] == 6
    assert "result_count" not in second.json()
    assert len({r["id"] for r in found}) == 6
    assert all(r["resource_type"] == "StaticRoutes" for r in found)
    none = nsx.call("GET", "/policy/api/v1/search/query", params={"query": "tags.tag:other"})
    assert none.json() == {"results": [], "result_count": 0}
    _error(nsx.call("GET", "/policy/api/v1/search/query", params={"query": "foo:bar"}), 400)


def _search(nsx: Nsx, query: str, **params: Any) -> requests.Response:
    return nsx.call("GET", "/policy/api/v1/search/query", params={"query": query, **params})


def test_search_or_group_of_escaped_values(sim: Simulator, nsx: Nsx) -> None:
    other = "/infra/tier-1s/tanzu-cl1-b"  # its escaped path starts like T1's: no prefix match
    sim.nsx.add_route(SimRoute(other, "r1", "10.1.0.0/24", ("172.16.128.9",)))
    sim.nsx.add_route(SimRoute("/infra/tier-1s/unasked", "r2", "10.2.0.0/24", ("172.16.128.9",)))
    escaped = r"\/infra\/tier\-1s\/tanzu\-cl1"
    query = rf"resource_type:StaticRoutes AND parent_path:({escaped} OR {escaped}\-b)"

    found = nsx.list_all("/policy/api/v1/search/query", query=query, page_size=5)

    paths = [r["path"] for p in found for r in p]
    assert [len(p) for p in found] == [5, 4]
    assert len(paths) == 9
    assert paths == sorted(paths)
    assert {r["parent_path"] for p in found for r in p} == {T1, other}
    one = _search(nsx, rf"parent_path:({escaped}) AND id:(default\-route OR to\-backup\-net)")
    assert sorted(r["id"] for r in one.json()["results"]) == ["default-route", "to-backup-net"]
    quoted = _search(nsx, 'display_name:("default" OR "backup network (manual)")')
    assert quoted.json()["result_count"] == 2


def test_search_included_fields_keep_only_those_top_level_fields(nsx: Nsx) -> None:
    body = _search(
        nsx, "id:default\\-route", included_fields="id,path, marked_for_delete,no_such_field"
    ).json()
    assert body == {
        "results": [
            {"id": "default-route", "path": f"{T1}/static-routes/default-route",
             "marked_for_delete": False}
        ],
        "result_count": 1,
    }  # fmt: skip
    assert set(_search(nsx, "id:default\\-route").json()["results"][0]) > {"network", "tags"}


@pytest.mark.parametrize(
    "query",
    [
        "id:(a b)",  # implicit operator
        "id:(a OR (b OR c))",  # nested group
        "id:(a OR b",  # unbalanced
        "id:a OR network:b",  # OR between terms
        "NOT id:a",
        "id:a AND",
    ],
)
def test_search_refuses_what_the_simulator_does_not_support(nsx: Nsx, query: str) -> None:
    _error(_search(nsx, query), 400)


def test_search_of_project_routes_needs_their_context() -> None:
    for sim in _sim("project"):
        nsx = Nsx(sim)
        dev = r"\/orgs\/default\/projects\/dev\/infra\/tier\-1s\/dev\-t1"
        query = rf"parent_path:({dev} OR \/infra\/tier\-1s\/tanzu\-cl1)"
        assert _search(nsx, query).json()["result_count"] == 0
        context = "projects:/orgs/default/projects/dev"
        assert _search(nsx, query, context=context).json()["result_count"] == 3
        _error(_search(nsx, query, context="projects:dev"), 400)  # the full path, not the id
        nsx.session.close()


def test_rate_limit_answers_429_with_the_nsx_message(sim: Simulator, nsx: Nsx) -> None:
    sim.nsx.monotonic = lambda: 50.0  # every request falls in the same second
    sim.nsx.rate_limit = 2
    statuses = [nsx.call("GET", ROUTES).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = nsx.call("GET", ROUTES)
    assert (
        limited.json()["error_message"] == "Client 'admin' exceeded request rate of 2 per second."
    )
    assert limited.headers["Retry-After"] == "1"
    sim.nsx.retry_after = None
    assert "Retry-After" not in nsx.call("GET", ROUTES).headers
    assert sim.nsx.counters["429"] == 3


def test_concurrency_limit_answers_503(sim: Simulator, nsx: Nsx) -> None:
    entered, release = threading.Event(), threading.Event()

    def held_sleep(_: float) -> None:
        entered.set()
        release.wait(10)

    sim.nsx.sleep = held_sleep
    sim.nsx.set_knobs(latency=1.0, concurrency_limit=1)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(Nsx(sim).call, "GET", ROUTES)
        assert entered.wait(10)
        second = nsx.call("GET", ROUTES)
        release.set()
        assert first.result().status_code == 200
    assert _error(second, 503)["httpStatus"] == "SERVICE_UNAVAILABLE"
    assert sim.nsx.counters["503"] == 1


def test_injected_page_and_delete_failures_happen_the_given_times(sim: Simulator, nsx: Nsx) -> None:
    sim.nsx.fail_list_page(T1, 1, status=502, times=1)
    first = nsx.call("GET", ROUTES, params={"page_size": 3}).json()
    failed = nsx.call("GET", ROUTES, params={"page_size": 3, "cursor": first["cursor"]})
    assert failed.status_code == 502
    retried = nsx.call("GET", ROUTES, params={"page_size": 3, "cursor": first["cursor"]})
    assert len(retried.json()["results"]) == 3
    sim.nsx.fail_delete(CL1_138, status=500, times=2)
    codes = [nsx.call("DELETE", f"{ROUTES}/{CL1_138}").status_code for _ in range(3)]
    assert codes == [500, 500, 200]
    assert sim.nsx.counters["nsx_list_routes"] == 3
    assert sim.nsx.counters["nsx_delete"] == 3


def test_projects_and_their_tier1s_are_listed() -> None:
    for sim in _sim("project"):
        nsx = Nsx(sim)
        projects = nsx.call("GET", "/policy/api/v1/orgs/default/projects").json()["results"]
        assert [p["path"] for p in projects] == ["/orgs/default/projects/dev"]
        base = "/policy/api/v1/orgs/default/projects/dev/infra/tier-1s"
        tier1s = nsx.call("GET", base).json()["results"]
        assert [(t["path"], t["resource_type"]) for t in tier1s] == [
            ("/orgs/default/projects/dev/infra/tier-1s/dev-t1", "Tier1")
        ]
        routes = nsx.call("GET", f"{base}/dev-t1/static-routes").json()
        assert routes["result_count"] == 3
        assert routes["results"][0]["parent_path"].startswith("/orgs/default/projects/dev/")
        default = nsx.call("GET", "/policy/api/v1/infra/tier-1s").json()["results"]
        assert [t["path"] for t in default] == [T1]
        assert sim.nsx.counters["nsx_list_projects"] == 1
        assert sim.nsx.counters["nsx_list_tier1s"] == 2
        nsx.session.close()


def test_stop_leaves_no_thread_behind_even_with_open_keep_alive_connections() -> None:
    before = set(threading.enumerate())
    sim = Simulator(load_scenario("seed"))
    sim.start()
    nsx = Nsx(sim)
    assert nsx.call("GET", ROUTES).status_code == 200  # the connection stays open
    kube = requests.Session()
    kube.get(sim.kube_url("cl2") + "/version", verify=nsx.verify, timeout=10)
    sim.stop()
    assert set(threading.enumerate()) - before == set()
    nsx.session.close()
    kube.close()


# --- issue 10: the manager as it really answers ---------------------------------------------


def test_five_failed_logins_lock_the_account_with_the_same_answer(sim: Simulator) -> None:
    """NSX's defaults: 5 failures within 900 s lock the account for 900 s; while locked
    the right password is refused with the wrong one's answer, and restarts the lockout."""
    now = [1000.0]
    sim.nsx.monotonic = lambda: now[0]
    verify = str(sim.ca_pem_path)

    def login(password: str) -> requests.Response:
        return requests.post(
            f"{sim.nsx_url}/api/session/create",
            data={"j_username": "admin", "j_password": password},
            verify=verify,
            timeout=10,
        )

    def basic(password: str) -> requests.Response:
        return requests.get(
            sim.nsx_url + ROUTES, auth=("admin", password), verify=verify, timeout=10
        )

    wrong = [login("wrong") for _ in range(4)]
    assert login(sim.nsx.password).status_code == 200  # 4 failures: not locked yet
    wrong += [login("wrong") for _ in range(4)] + [basic("wrong")]  # basic auth counts too
    assert sim.nsx.locked("admin")
    refused = [login(sim.nsx.password), basic(sim.nsx.password)]
    answers = {
        (r.status_code, r.json()["error_code"], r.json()["error_message"]) for r in wrong + refused
    }
    assert answers == {(403, 403, LOGIN_REFUSED)}
    now[0] += 899  # the last refused attempt restarted the lockout
    assert login(sim.nsx.password).status_code == 403
    now[0] += 901
    assert login(sim.nsx.password).status_code == 200
    assert sim.nsx.counters["nsx_login_failed"] == 12
    assert sim.nsx.counters["nsx_lockout"] == 1


def test_injected_failures_by_kind_answer_nsx_error_bodies(sim: Simulator, nsx: Nsx) -> None:
    sim.nsx.fail_next("nsx_list_routes", 2, status=500, error_code=607)
    sim.nsx.fail_next("nsx_search", 1, status=400, error_code=60508)
    first, second = _error(nsx.call("GET", ROUTES), 500), _error(nsx.call("GET", ROUTES), 500)
    assert first["error_code"] == second["error_code"] == 607
    assert nsx.call("GET", ROUTES).status_code == 200
    assert _error(_search(nsx, "resource_type:StaticRoutes"), 400)["error_code"] == 60508
    assert _search(nsx, "resource_type:StaticRoutes").status_code == 200
    assert sim.nsx.counters["injected_500"] == 2
    assert sim.nsx.counters["injected_400"] == 1


@pytest.mark.parametrize(
    ("conflict", "status", "code"),
    [("409", 409, 604), ("400/500087", 400, 500087), ("400/500232", 400, 500232),
     ("400/100148", 400, 100148), ("404/500090", 404, 500090)],
)  # fmt: skip
def test_revision_conflict_variants(
    sim: Simulator, nsx: Nsx, conflict: str, status: int, code: int
) -> None:
    sim.nsx.revision_conflict = conflict
    sim.nsx.bump_revision(T1, CL1_138)
    stale = _batch((CL1_138, 0, True))
    answer = nsx.call(
        "PATCH", "/policy/api/v1/infra", params={"enforce_revision_check": "true"}, json=stale
    )
    assert _error(answer, status)["error_code"] == code
    assert sim.nsx.get_route(T1, CL1_138) is not None


def test_null_cursor_marks_the_last_page(sim: Simulator, nsx: Nsx) -> None:
    sim.nsx.null_cursor = True
    first = nsx.call("GET", ROUTES, params={"page_size": 5}).json()
    last = nsx.call("GET", ROUTES, params={"page_size": 5, "cursor": first["cursor"]}).json()
    assert not first["cursor"].startswith("0000")
    assert last["cursor"].startswith("0000")
    assert len(first["results"]) + len(last["results"]) == 8


@pytest.mark.parametrize("status", [400, 403, 404])
def test_a_manager_without_projects(sim: Simulator, nsx: Nsx, status: int) -> None:
    sim.nsx.projects_api = status
    _error(nsx.call("GET", "/policy/api/v1/orgs/default/projects"), status)


def test_vmc_serves_nsx_behind_the_proxy_with_csp_tokens() -> None:
    for sim in _sim("vmc"):
        vmc = sim.nsx.vmc
        assert vmc is not None
        verify = str(sim.ca_pem_path)
        csp = f"{sim.nsx_url}/csp/gateway/am/api/auth/api-tokens/authorize"
        refused = requests.post(csp, data={"refresh_token": "nope"}, verify=verify, timeout=10)
        assert refused.status_code == 400
        answer = requests.post(
            csp, data={"refresh_token": vmc.refresh_token}, verify=verify, timeout=10
        )
        token = answer.json()["access_token"]
        assert answer.json()["expires_in"] == 1800
        routes = f"{sim.nsx_host}/policy/api/v1/infra/tier-1s/cgw/static-routes"
        ok = requests.get(routes, headers={"csp-auth-token": token}, verify=verify, timeout=10)
        assert ok.json()["result_count"] == 8
        assert ok.json()["cursor"].startswith("0000")  # the scenario's null cursors
        _error(requests.get(routes, verify=verify, timeout=10), 401)
        basic = requests.get(routes, auth=("admin", sim.nsx.password), verify=verify, timeout=10)
        _error(basic, 401)
        outside = f"{sim.nsx_url}/policy/api/v1/infra/tier-1s/cgw/static-routes"
        _error(
            requests.get(outside, headers={"csp-auth-token": token}, verify=verify, timeout=10), 404
        )
        session = requests.post(f"{sim.nsx_host}/api/session/create", verify=verify, timeout=10)
        _error(session, 404)
        projects = f"{sim.nsx_host}/policy/api/v1/orgs/default/projects"
        _error(
            requests.get(projects, headers={"csp-auth-token": token}, verify=verify, timeout=10),
            403,
        )
        vmc.expires_in_as_string = True
        again = requests.post(
            csp, data={"refresh_token": vmc.refresh_token}, verify=verify, timeout=10
        )
        assert again.json()["expires_in"] == "1800"
        vmc.expire_tokens()
        _error(
            requests.get(routes, headers={"csp-auth-token": token}, verify=verify, timeout=10), 401
        )
        assert sim.nsx.counters["csp_token"] == 3
        assert sim.nsx.counters["csp_token_refused"] == 1
