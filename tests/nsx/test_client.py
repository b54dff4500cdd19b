"""The NSX adapter, with the real requests library against pytest-httpserver."""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import socket
import ssl
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from nsxkit import PASSWORD, Env
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs
from werkzeug import Request, Response

from factories import FakeTime
from nsx_route_gc.errors import ConfigError, NsxAccessError, NsxApiError, NsxError
from nsx_route_gc.models import CLUSTER_TAG_SCOPE, NODE_TAG_SCOPE
from nsx_route_gc.nsx import client as nsx_module
from nsx_route_gc.nsx.client import NsxClient, route_from_nsx

BASIC = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
T1 = "/infra/tier-1s/tanzu-cl1"
ROUTES = f"/policy/api/v1{T1}/static-routes"
UID = "a57a555e-e4eb-49ad-af74-e11a7d7a8ad8"


@pytest.fixture
def env(httpserver: HTTPServer) -> Iterator[Env]:
    yield Env(httpserver, FakeTime())
    httpserver.check_assertions()
    httpserver.check_handler_errors()


def nsx_route(
    n: int,
    *,
    network: str | None = None,
    hop: str = "172.16.128.10",
    router: str = T1,
    **extra: Any,
) -> dict[str, Any]:
    network = network or f"172.16.{138 + n}.0/24"
    rid = f"{UID}_{network.replace('/', '_')}"
    obj: dict[str, Any] = {
        "resource_type": "StaticRoutes",
        "id": rid,
        "display_name": f"kubernetes_node-{n}_{network}",
        "path": f"{router}/static-routes/{rid}",
        "parent_path": router,
        "network": network,
        "next_hops": [{"ip_address": hop, "admin_distance": 1}],
        "tags": [
            {"scope": CLUSTER_TAG_SCOPE, "tag": "kubernetes"},
            {"scope": NODE_TAG_SCOPE, "tag": f"node-{n}"},
        ],
        "_create_time": 1_700_000_000_000 + n,
        "_revision": n,
        "_protection": "NOT_PROTECTED",
    }
    obj.update(extra)
    return obj


def page(results: list[dict[str, Any]], cursor: str | None = None, total: int = 0) -> Any:
    body: dict[str, Any] = {"results": results, "result_count": total or len(results)}
    if cursor is not None:
        body["cursor"] = cursor
    return body


def nsx_error(status: int, code: int, message: str, **extra: Any) -> Response:
    body = {
        "httpStatus": extra.pop("http_status", "INTERNAL_SERVER_ERROR"),
        "error_code": code,
        "module_name": "policy",
        "error_message": message,
        **extra,
    }
    return Response(json.dumps(body), status=status, content_type="application/json")


def session_answer(session_id: str, xsrf: str) -> Callable[[Request], Response]:
    def handler(request: Request) -> Response:
        assert request.mimetype == "application/x-www-form-urlencoded"
        assert request.form["j_username"] == "admin"
        assert request.form["j_password"] == PASSWORD
        response = Response("", status=200)
        response.headers["Set-Cookie"] = f"JSESSIONID={session_id}; Path=/; Secure; HttpOnly"
        response.headers["X-XSRF-TOKEN"] = xsrf
        return response

    return handler


def session_headers(session_id: str, xsrf: str) -> dict[str, str]:
    return {"Cookie": f"JSESSIONID={session_id}", "X-XSRF-TOKEN": xsrf}


# ---------------------------------------------------------------------------------- paging


def test_list_routes_follows_the_cursor_over_three_pages_including_a_short_one(env: Env) -> None:
    objs = [nsx_route(n) for n in range(6)]
    env.server.expect_ordered_request(
        ROUTES, method="GET", query_string={"page_size": "3"}
    ).respond_with_json(page(objs[0:3], cursor="c1", total=6))
    env.server.expect_ordered_request(
        ROUTES, method="GET", query_string={"page_size": "3", "cursor": "c1"}
    ).respond_with_json(page(objs[3:4], cursor="c2", total=6))
    env.server.expect_ordered_request(
        ROUTES, method="GET", query_string={"page_size": "3", "cursor": "c2"}
    ).respond_with_json(page(objs[4:6], total=6))

    routes = env.client(page_size=3).list_routes(T1)

    assert [r.id for r in routes] == [o["id"] for o in objs]
    first = routes[0]
    assert first.router_path == T1
    assert first.path == f"{T1}/static-routes/{UID}_172.16.138.0_24"
    assert first.network == "172.16.138.0/24"
    assert first.next_hops == ("172.16.128.10",)
    assert first.tags == ((CLUSTER_TAG_SCOPE, "kubernetes"), (NODE_TAG_SCOPE, "node-0"))
    assert first.create_time_ms == 1_700_000_000_000
    assert first.revision == 0
    assert routes[5].revision == 5
    assert first.protection == "NOT_PROTECTED"
    assert first.display_name == "kubernetes_node-0_172.16.138.0/24"
    assert [r.nsx_object for r in routes] == objs
    assert first.raw == json.dumps(objs[0], separators=(",", ":"), sort_keys=True)


def test_routers_listed_from_many_threads_each_get_their_own_routes(env: Env) -> None:
    """Pages are fetched on the callers' threads and built into routes on the client's one
    builder thread; every caller still gets its own router's routes, or its own error."""
    routers = [f"/infra/tier-1s/t{i}" for i in range(6)]
    for i, router in enumerate(routers):
        objs = [nsx_route(n, router=router, _revision=i) for n in range(i + 1)]
        if i == 4:
            objs[0]["network"] = 7  # malformed: this router alone fails
        env.server.expect_request(
            f"/policy/api/v1{router}/static-routes", method="GET"
        ).respond_with_json(page(objs))

    def listed(router: str) -> list[int | None] | str:
        try:
            return [r.revision for r in client.list_routes(router)]
        except NsxError as exc:
            return str(exc)

    with env.client() as client, ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(listed, routers))
    assert results[:4] == [[i] * (i + 1) for i in range(4)]
    assert isinstance(results[4], str)
    assert "bad network" in results[4]
    assert results[5] == [5] * 6


def test_a_cursor_repeating_forever_aborts_the_listing(env: Env) -> None:
    env.server.expect_request(ROUTES, query_string={"page_size": "1000"}).respond_with_json(
        page([nsx_route(0)], cursor="same")
    )
    env.server.expect_request(
        ROUTES, query_string={"page_size": "1000", "cursor": "same"}
    ).respond_with_json(page([nsx_route(1)], cursor="same"))

    with pytest.raises(NsxError, match=f"repeated a paging cursor at GET {ROUTES}"):
        env.client().list_routes(T1)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ("<html>Service unavailable</html>", "not JSON"),
        (json.dumps({"result_count": 0}), "no results list"),
        (json.dumps(["a list"]), "no results list"),
        (json.dumps({"results": [{"network": "10.0.0.0/24"}]}), "an item without id"),
    ],
)
def test_a_malformed_answer_is_a_one_line_error_naming_the_path(
    env: Env, body: str, detail: str
) -> None:
    env.server.expect_request(ROUTES).respond_with_data(body, content_type="application/json")

    with pytest.raises(NsxError) as caught:
        env.client().list_routes(T1)

    message = str(caught.value)
    assert message == f"malformed JSON from NSX at GET {ROUTES}: {detail}"
    assert "\n" not in message


def test_a_server_error_mid_listing_fails_the_whole_router(env: Env) -> None:
    env.server.expect_ordered_request(ROUTES, query_string={"page_size": "1000"}).respond_with_json(
        page([nsx_route(0)], cursor="c1")
    )
    env.server.expect_ordered_request(
        ROUTES, query_string={"page_size": "1000", "cursor": "c1"}
    ).respond_with_response(
        nsx_error(
            500,
            100,
            "General error has occurred.",
            related_errors=[{"error_message": "Corfu timeout"}],
        )
    )

    client = env.client()
    with pytest.raises(NsxApiError) as caught:
        client.list_routes(T1)

    error = caught.value
    assert (error.method, error.path, error.status) == ("GET", ROUTES, 500)
    assert error.http_status == "INTERNAL_SERVER_ERROR"
    assert error.error_code == 100
    assert error.module_name == "policy"
    assert error.error_message == "General error has occurred.; Corfu timeout"
    assert str(error).startswith(f"NSX GET {ROUTES} failed: 500 INTERNAL_SERVER_ERROR")
    assert len(env.server.log) == 2  # a 500 is not retried
    assert env.time.slept == []


# ----------------------------------------------------------------------------- route_from_nsx


def test_a_route_with_an_invalid_network_is_still_returned() -> None:
    route = route_from_nsx(nsx_route(0, network="not-a-cidr"), T1)

    assert route.network == "not-a-cidr"


def test_optional_fields_may_be_missing() -> None:
    route = route_from_nsx({"id": "r1", "network": "10.0.0.0/24"}, T1)

    assert route.path == f"{T1}/static-routes/r1"
    assert (route.next_hops, route.tags) == ((), ())
    assert (route.create_time_ms, route.revision, route.protection) == (None, None, None)
    assert route.raw == '{"id":"r1","network":"10.0.0.0/24"}'


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"network": None}, "network"),
        ({"next_hops": {"ip_address": "10.0.0.1"}}, "next_hops"),
        ({"next_hops": [{"admin_distance": 1}]}, "next_hops.ip_address"),
        ({"tags": [{"scope": 3, "tag": "x"}]}, "tags"),
        ({"_revision": "seven"}, "_revision"),
        ({"_create_time": True}, "_create_time"),
        ({"_protection": 1}, "_protection"),
    ],
)
def test_a_malformed_route_names_the_route_and_the_field(
    change: dict[str, Any], field: str
) -> None:
    obj = nsx_route(0)
    obj.update(change)

    with pytest.raises(NsxError) as caught:
        route_from_nsx(obj, T1)

    assert str(caught.value) == f"malformed static route {obj['id']} on {T1}: bad {field}"


def test_a_route_without_id_is_malformed() -> None:
    with pytest.raises(NsxError, match=f"malformed static route on {T1}: missing id"):
        route_from_nsx({"network": "10.0.0.0/24"}, T1)


# ------------------------------------------------------------------------------ authentication


def test_session_auth_logs_in_sends_cookie_and_xsrf_then_destroys(env: Env) -> None:
    env.server.expect_ordered_request("/api/session/create", method="POST").respond_with_handler(
        session_answer("sess-1", "xsrf-1")
    )
    env.server.expect_ordered_request(
        ROUTES, method="GET", headers=session_headers("sess-1", "xsrf-1")
    ).respond_with_json(page([nsx_route(0)]))
    env.server.expect_ordered_request(
        f"/policy/api/v1{T1}/static-routes/r1",
        method="DELETE",
        headers=session_headers("sess-1", "xsrf-1"),
    ).respond_with_data("", status=200)
    env.server.expect_ordered_request(
        "/api/session/destroy", method="POST", headers=session_headers("sess-1", "xsrf-1")
    ).respond_with_data("", status=200)

    with env.client(auth="session") as client:
        assert len(client.list_routes(T1)) == 1
        assert client.delete_route(f"{T1}/static-routes/r1") is True

    assert all("Authorization" not in request.headers for request, _ in env.server.log)
    assert client.request_counts == {"delete": 1, "list": 1, "session": 2}


def test_an_expired_session_is_renewed_once_and_the_call_retried(env: Env) -> None:
    env.server.expect_ordered_request("/api/session/create").respond_with_handler(
        session_answer("sess-1", "xsrf-1")
    )
    env.server.expect_ordered_request(
        ROUTES, query_string={"page_size": "1000"}, headers=session_headers("sess-1", "xsrf-1")
    ).respond_with_json(page([nsx_route(0)], cursor="c1"))
    env.server.expect_ordered_request(
        ROUTES, query_string={"page_size": "1000", "cursor": "c1"}
    ).respond_with_response(nsx_error(401, 98, "Not authenticated", http_status="UNAUTHORIZED"))
    env.server.expect_ordered_request("/api/session/create").respond_with_handler(
        session_answer("sess-2", "xsrf-2")
    )
    env.server.expect_ordered_request(
        ROUTES,
        query_string={"page_size": "1000", "cursor": "c1"},
        headers=session_headers("sess-2", "xsrf-2"),
    ).respond_with_json(page([nsx_route(1)]))

    client = env.client(auth="session")
    routes = client.list_routes(T1)

    assert len(routes) == 2
    assert client.request_counts == {"list": 3, "relogin": 1, "session": 2}


def test_a_second_rejection_after_renewal_fails(env: Env) -> None:
    for session_id in ("sess-1", "sess-2"):
        env.server.expect_ordered_request("/api/session/create").respond_with_handler(
            session_answer(session_id, "x")
        )
        env.server.expect_ordered_request(ROUTES).respond_with_response(
            nsx_error(403, 98, "Forbidden", http_status="FORBIDDEN")
        )

    client = env.client(auth="session")
    with pytest.raises(NsxAccessError, match=r"refused the login .*403 error_code=98"):
        client.list_routes(T1)
    with pytest.raises(NsxAccessError):
        client.list_routes(T1)  # fails at once, nothing sent

    assert len(env.server.log) == 4


def test_a_rejected_login_is_tried_once_and_names_what_to_check(env: Env) -> None:
    env.server.expect_request("/api/session/create").respond_with_response(
        nsx_error(403, 403, "Login failed", http_status="FORBIDDEN")
    )

    client = env.client(auth="session")
    with pytest.raises(NsxAccessError) as caught:
        client.list_routers()
    for call in (client.list_routers, lambda: client.list_routes(T1)):
        with pytest.raises(NsxAccessError):
            call()
    client.close()

    message = str(caught.value)
    assert "POST /api/session/create (403 error_code=403: Login failed)" in message
    assert "nsx.username" in message
    assert "NSXT_PASSWORD" in message
    assert len(env.server.log) == 1  # no login loop, no session to destroy


def test_a_login_answer_without_session_cookie_is_an_error(env: Env) -> None:
    env.server.expect_request("/api/session/create").respond_with_data("", status=200)

    with pytest.raises(NsxError, match="without a JSESSIONID cookie"):
        env.client(auth="session").list_routes(T1)


def test_only_one_login_when_many_threads_start_at_once(env: Env) -> None:
    logins = []

    def login(request: Request) -> Response:
        logins.append(request)
        return session_answer("sess-1", "xsrf-1")(request)

    env.server.expect_request("/api/session/create").respond_with_handler(login)
    routers = [f"/infra/tier-1s/t{n}" for n in range(8)]
    for n, router in enumerate(routers):
        env.server.expect_request(
            f"/policy/api/v1{router}/static-routes", headers=session_headers("sess-1", "xsrf-1")
        ).respond_with_json(page([nsx_route(n, router=router)]))

    client = env.client(auth="session")
    with ThreadPoolExecutor(max_workers=8) as pool:
        listings = list(pool.map(client.list_routes, routers))

    assert [[r.router_path for r in routes] for routes in listings] == [[r] for r in routers]
    assert len(logins) == 1


def test_destroy_failure_at_close_is_only_logged(env: Env) -> None:
    env.server.expect_request("/api/session/create").respond_with_handler(
        session_answer("sess-1", "xsrf-1")
    )
    env.server.expect_request(ROUTES).respond_with_json(page([]))
    env.server.expect_request("/api/session/destroy").respond_with_response(
        nsx_error(503, 1, "busy")
    )

    client = env.client(auth="session")
    client.list_routes(T1)
    with capture_logs() as logs:
        client.close()
        client.close()  # a second close has nothing left to destroy

    # The 503 also halves the in-flight limit (nsx.concurrency), logged as such.
    assert [e["event"] for e in logs] == ["nsx.concurrency.changed", "nsx.session.destroy_failed"]
    assert len(env.server.log) == 3  # destroy not retried


def test_closing_an_unused_client_sends_nothing(env: Env) -> None:
    env.client(auth="session").close()

    assert env.server.log == []


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ("basic", BASIC),
        ("remote", "Remote " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()),
    ],
)
def test_basic_and_remote_send_their_authorization_header(
    env: Env, auth: str, expected: str
) -> None:
    seen = []

    def handler(request: Request) -> Response:
        seen.append(request.headers.get("Authorization"))
        return Response(json.dumps(page([])), content_type="application/json")

    env.server.expect_request(ROUTES).respond_with_handler(handler)

    client = env.client(auth=auth)
    assert client.list_routes(T1) == []
    client.close()

    assert seen == [expected]
    assert len(env.server.log) == 1  # no login, no destroy


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"auth": "kerberos"}, "nsx.auth"),
        ({"auth": "session", "password": None}, "nsx.username/nsx.password"),
        ({"auth": "basic", "username": None}, "nsx.username/nsx.password"),
        ({"auth": "certificate"}, "nsx.client_cert_file"),
    ],
)
def test_incomplete_auth_settings_are_config_errors(
    env: Env, overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError, match=field):
        env.client(**overrides)


# ------------------------------------------------------------------------------------ retries


def test_429_waits_as_long_as_retry_after_says(env: Env) -> None:
    env.server.expect_ordered_request(ROUTES).respond_with_response(
        Response("", status=429, headers={"Retry-After": "7"})
    )
    env.server.expect_ordered_request(ROUTES).respond_with_json(page([nsx_route(0)]))

    client = env.client()
    with capture_logs() as logs:
        routes = client.list_routes(T1)

    assert len(routes) == 1
    assert env.time.slept == [7.0]
    retries = [e for e in logs if e["event"] == "nsx.retry"]
    assert retries == [
        {
            "event": "nsx.retry",
            "log_level": "warning",
            "method": "GET",
            "path": ROUTES,
            "status": 429,
            "error": None,
            "attempt": 1,
            "delay": 7.0,
        }
    ]
    assert client.request_counts == {"list": 2, "retry_429": 1}


def test_503_is_retried_with_jittered_exponential_backoff(env: Env) -> None:
    env.server.expect_ordered_request(ROUTES).respond_with_response(nsx_error(503, 1, "busy"))
    env.server.expect_ordered_request(ROUTES).respond_with_response(nsx_error(503, 1, "busy"))
    env.server.expect_ordered_request(ROUTES).respond_with_json(page([nsx_route(0)]))

    client = env.client()
    assert len(client.list_routes(T1)) == 1

    first, second = env.time.slept
    assert 0.0 <= first <= 0.5
    assert 0.0 <= second <= 1.0
    assert client.request_counts["retry_503"] == 2


def test_attempts_are_bounded(env: Env) -> None:
    env.server.expect_request(ROUTES).respond_with_response(nsx_error(503, 1, "busy"))

    with pytest.raises(NsxApiError) as caught:
        env.client(max_attempts=3).list_routes(T1)

    assert caught.value.status == 503
    assert len(env.server.log) == 3
    assert len(env.time.slept) == 2


def test_no_retry_when_retry_after_would_pass_the_deadline(env: Env) -> None:
    env.server.expect_request(ROUTES).respond_with_response(
        Response("", status=429, headers={"Retry-After": "100"})
    )

    with pytest.raises(NsxApiError, match="429"):
        env.client(deadline=30.0).list_routes(T1)

    assert len(env.server.log) == 1
    assert env.time.slept == []


def test_connection_errors_are_retried_then_reported_with_method_and_path(env: Env) -> None:
    # A bound socket that never listens: every connection is refused.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        client = env.client(base_url=f"http://127.0.0.1:{port}", max_attempts=3)

        with pytest.raises(NsxError) as caught:
            client.list_routes(T1)

    message = str(caught.value)
    assert isinstance(caught.value, NsxAccessError)  # the first call: the manager is unreachable
    assert message.startswith(f"cannot reach NSX at http://127.0.0.1:{port}: NSX GET {ROUTES}")
    assert "after 3 attempt(s): ConnectionError" in message
    assert message.endswith("check nsx.host (NSXT_MANAGER_HOST)")
    assert "\n" not in message
    assert len(env.time.slept) == 2
    assert client.request_counts == {"list": 3, "retry_connection": 2}


# ------------------------------------------------------------------------------------ routers


def test_configured_routers_are_returned_as_given(env: Env) -> None:
    routers = ("/infra/tier-1s/zeta", "/orgs/default/projects/p1/infra/tier-1s/alpha")

    assert env.client(routers=routers).list_routers() == list(routers)
    assert env.server.log == []


def test_discovery_lists_infra_and_project_tier1s(env: Env) -> None:
    env.server.expect_request("/policy/api/v1/infra/tier-1s").respond_with_json(
        page([{"id": "tanzu-cl1", "path": T1}, {"id": "old", "path": "/infra/tier-1s/old"}])
    )
    env.server.expect_request("/policy/api/v1/orgs/default/projects").respond_with_json(
        page(
            [
                {"id": "default", "path": "/orgs/default/projects/default"},
                {"id": "p1", "path": "/orgs/default/projects/p1"},
            ]
        )
    )
    env.server.expect_request(
        "/policy/api/v1/orgs/default/projects/p1/infra/tier-1s"
    ).respond_with_json(
        page([{"id": "t1-p1", "path": "/orgs/default/projects/p1/infra/tier-1s/t1-p1"}])
    )

    routers = env.client().list_routers()

    assert routers == [
        "/infra/tier-1s/old",
        T1,
        "/orgs/default/projects/p1/infra/tier-1s/t1-p1",
    ]


@pytest.mark.parametrize(
    ("status", "code"), [(404, 600), (400, 287), (403, 403), (403, 0)], ids=str
)
@pytest.mark.parametrize("auth", ["basic", "session"])
def test_discovery_without_projects_api_lists_infra_only(
    env: Env, status: int, code: int, auth: str
) -> None:
    """Older managers and VMC answer 404, 400 or 403 there: no projects, logged once; never
    a failed run, nor a refused login (not even a 403 with NSX's credentials code)."""
    env.server.expect_request("/api/session/create").respond_with_handler(
        session_answer("s1", "x1")
    )
    env.server.expect_request("/policy/api/v1/infra/tier-1s").respond_with_json(
        page([{"id": "tanzu-cl1"}])  # no path: rebuilt from the id
    )
    env.server.expect_request("/policy/api/v1/orgs/default/projects").respond_with_response(
        nsx_error(status, code, "not here", http_status="NOT_FOUND")
    )

    client = env.client(auth=auth)
    with capture_logs() as logs:
        assert client.list_routers() == [T1]

    assert [e["event"] for e in logs].count("nsx.projects.unsupported") == 1
    assert client.request_counts.get("relogin", 0) == 0


def test_a_listing_ends_at_a_0000_cursor(env: Env) -> None:
    """nsxlib's NULL_CURSOR_PREFIX: a last page may carry a cursor of 0000..."""
    env.server.expect_ordered_request(ROUTES).respond_with_json(
        page([nsx_route(0)], cursor="c1", total=2)
    )
    env.server.expect_ordered_request(
        ROUTES, query_string={"page_size": "1000", "cursor": "c1"}
    ).respond_with_json(page([nsx_route(1)], cursor="0000000000000000-end", total=2))

    assert len(env.client().list_routes(T1)) == 2
    assert len(env.server.log) == 2


# ---------------------------------------------------------------------------------- writes

ROUTE_PATH = f"{T1}/static-routes/{UID}_172.16.138.0_24"


@pytest.mark.parametrize(("status", "expected"), [(200, True), (204, True), (404, False)])
@pytest.mark.parametrize("allow_overwrite", [False, True])
def test_delete_route(env: Env, status: int, expected: bool, allow_overwrite: bool) -> None:
    overwrite_headers = []

    def handler(request: Request) -> Response:
        overwrite_headers.append(request.headers.get("X-Allow-Overwrite"))
        if status == 404:
            return nsx_error(404, 600, "missing", http_status="NOT_FOUND")
        return Response("", status=status)

    env.server.expect_request(f"/policy/api/v1{ROUTE_PATH}", method="DELETE").respond_with_handler(
        handler
    )

    assert env.client().delete_route(ROUTE_PATH, allow_overwrite=allow_overwrite) is expected
    assert overwrite_headers == ["true" if allow_overwrite else None]


def test_a_protected_route_delete_is_an_api_error(env: Env) -> None:
    env.server.expect_request(f"/policy/api/v1{ROUTE_PATH}").respond_with_response(
        nsx_error(400, 500030, "Principal 'admin' cannot modify", http_status="BAD_REQUEST")
    )

    with pytest.raises(NsxApiError) as caught:
        env.client().delete_route(ROUTE_PATH)

    assert (caught.value.status, caught.value.error_code) == (400, 500030)


def test_get_route(env: Env) -> None:
    obj = nsx_route(0, _revision=4)
    env.server.expect_request(f"/policy/api/v1{ROUTE_PATH}", method="GET").respond_with_json(obj)

    route = env.client().get_route(ROUTE_PATH)

    assert route is not None
    assert (route.router_path, route.path, route.revision) == (T1, ROUTE_PATH, 4)
    assert route.nsx_object == obj


def test_get_route_answers_none_when_gone(env: Env) -> None:
    env.server.expect_request(f"/policy/api/v1{ROUTE_PATH}").respond_with_response(
        nsx_error(404, 600, "missing", http_status="NOT_FOUND")
    )

    assert env.client().get_route(ROUTE_PATH) is None


def test_patch_route_sends_the_body(env: Env) -> None:
    body = nsx_route(0)
    env.server.expect_request(
        f"/policy/api/v1{ROUTE_PATH}",
        method="PATCH",
        json=body,
        headers={"X-Allow-Overwrite": "true", "Content-Type": "application/json"},
    ).respond_with_data("", status=200)

    env.client().patch_route(ROUTE_PATH, body, allow_overwrite=True)

    assert len(env.server.log) == 1


@pytest.mark.parametrize(
    ("router", "endpoint"),
    [
        (T1, "/policy/api/v1/infra"),
        (
            "/orgs/default/projects/p1/infra/tier-1s/tanzu-cl1",
            "/policy/api/v1/orgs/default/projects/p1/infra",
        ),
    ],
)
def test_hierarchical_delete_body_and_revision_check(env: Env, router: str, endpoint: str) -> None:
    """Each route goes as listed (network, next hops, tags, display name...) with
    marked_for_delete and _revision, placed by the router listed and its id: a body whose
    path names another router changes nothing."""
    first = nsx_route(1, router=router, path="/infra/tier-1s/elsewhere/static-routes/x")
    second = nsx_route(2, router=router, _links=[{"href": "/x"}])
    del second["_revision"]
    routes = [route_from_nsx(first, router), route_from_nsx(second, router)]

    def as_child(listed: dict[str, Any], revision: int | None) -> dict[str, Any]:
        body = {k: v for k, v in listed.items() if k not in ("path", "parent_path", "_links")}
        body["marked_for_delete"] = True
        if revision is not None:
            body["_revision"] = revision
        return {
            "resource_type": "ChildStaticRoutes",
            "id": listed["id"],
            "marked_for_delete": True,
            "StaticRoutes": body,
        }

    expected = {
        "resource_type": "Infra",
        "children": [
            {
                "resource_type": "ChildResourceReference",
                "target_type": "Tier1",
                "id": "tanzu-cl1",
                "children": [as_child(first, 1), as_child(second, None)],
            }
        ],
    }
    env.server.expect_request(
        endpoint,
        method="PATCH",
        query_string={"enforce_revision_check": "true"},
        json=expected,
    ).respond_with_data("", status=200)

    client = env.client()
    client.hierarchical_delete({router: routes})

    body = env.server.log[0][0].get_json()
    child = body["children"][0]["children"][0]["StaticRoutes"]
    assert (child["network"], child["next_hops"], len(child["tags"])) == (
        first["network"],
        first["next_hops"],
        2,
    )
    assert len(env.server.log) == 1
    assert "X-Allow-Overwrite" not in env.server.log[0][0].headers
    assert client.request_counts == {"hierarchical": 1}


def test_hierarchical_delete_refuses_a_route_listed_on_another_router(env: Env) -> None:
    route = route_from_nsx(nsx_route(1), T1)

    with pytest.raises(NsxError, match="listed on /infra/tier-1s/tanzu-cl1, not on"):
        env.client().hierarchical_delete({"/infra/tier-1s/other": [route]})
    assert env.server.log == []


def test_hierarchical_delete_of_nothing_sends_nothing_and_checks_the_router(env: Env) -> None:
    client = env.client()
    client.hierarchical_delete({T1: []})
    client.hierarchical_delete({})

    with pytest.raises(NsxError, match="not a Tier-1 policy path: /infra/tier-0s/t0"):
        client.hierarchical_delete({"/infra/tier-0s/t0": [route_from_nsx(nsx_route(1), T1)]})
    assert env.server.log == []


# ------------------------------------------------------------------------------------- TLS


@dataclass
class Tls:
    ca: trustme.CA
    ca_file: Path
    other_ca_file: Path
    tmp: Path


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    tmp = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp / "nsx-ca.pem"))
    trustme.CA().cert_pem.write_to_path(str(tmp / "other-ca.pem"))
    return Tls(ca, tmp / "nsx-ca.pem", tmp / "other-ca.pem", tmp)


def tls_server(tls: Tls, *, client_certs: bool = False) -> HTTPServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    if client_certs:
        tls.ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    server = HTTPServer(host="localhost", port=0, ssl_context=context)
    server.start()
    return server


@pytest.fixture
def https(tls: Tls) -> Iterator[Env]:
    server = tls_server(tls)
    yield Env(server, FakeTime())
    server.clear()
    server.stop()


def test_ca_file_is_used_even_when_requests_ca_bundle_points_elsewhere(
    https: Env, tls: Tls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.other_ca_file))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(tls.other_ca_file))
    https.server.expect_request(ROUTES).respond_with_json(page([nsx_route(0)]))

    assert https.server.url_for("/").startswith("https://")
    assert len(https.client(ca_file=tls.ca_file).list_routes(T1)) == 1


def test_without_ca_file_an_unknown_ca_fails_verification_without_retries(
    https: Env, tls: Tls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.other_ca_file))
    https.server.expect_request(ROUTES).respond_with_json(page([]))

    with pytest.raises(NsxError) as caught:
        https.client().list_routes(T1)

    assert isinstance(caught.value, NsxAccessError)
    assert str(caught.value).startswith("TLS verification of ")
    assert f"failed at GET {ROUTES}: SSLError" in str(caught.value)
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert str(caught.value).endswith("check nsx.ca_file (or nsx.insecure)")
    assert https.time.slept == []


def test_insecure_skips_verification_and_warns_once(https: Env) -> None:
    https.server.expect_request(ROUTES).respond_with_json(page([]))

    with capture_logs() as logs:
        client = https.client(insecure=True)
        client.list_routes(T1)
        client.list_routes(T1)

    assert [e for e in logs if e["event"] == "nsx.tls_unverified"] == [
        {
            "event": "nsx.tls_unverified",
            "log_level": "warning",
            "host": https.server.url_for("/")[8:-1],
        }
    ]


def test_certificate_auth_presents_the_client_certificate(
    tls: Tls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.other_ca_file))
    identity = tls.ca.issue_cert("nsx-route-gc@example.com")
    cert_file, key_file = tls.tmp / "client.crt", tls.tmp / "client.key"
    identity.cert_chain_pems[0].write_to_path(str(cert_file))
    identity.private_key_pem.write_to_path(str(key_file))
    server = tls_server(tls, client_certs=True)
    try:
        env = Env(server, FakeTime())
        server.expect_request(ROUTES).respond_with_json(page([nsx_route(0)]))
        client = env.client(
            auth="certificate",
            username=None,
            password=None,
            ca_file=tls.ca_file,
            client_cert_file=cert_file,
            client_key_file=key_file,
        )

        assert len(client.list_routes(T1)) == 1
        assert "Authorization" not in server.log[0][0].headers
    finally:
        server.clear()
        server.stop()


# --------------------------------------------------------------------------------- secrets


def test_no_secret_reaches_error_messages_or_logs(
    env: Env, https: Env, tls: Tls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.other_ca_file))
    secrets = (PASSWORD, BASIC.split()[1], "sess-S3CRET", "xsrf-S3CRET")
    # An error body that echoes credentials back (some proxies and old managers do).
    echo_login = f"user admin password {PASSWORD}"
    echo = f"{echo_login} cookie JSESSIONID=sess-S3CRET xsrf-S3CRET"
    env.server.expect_ordered_request("/api/session/create").respond_with_response(
        nsx_error(403, 403, echo_login)
    )
    env.server.expect_ordered_request("/api/session/create").respond_with_handler(
        session_answer("sess-S3CRET", "xsrf-S3CRET")
    )
    env.server.expect_ordered_request(ROUTES).respond_with_response(nsx_error(503, 1, echo))
    env.server.expect_ordered_request(ROUTES).respond_with_response(nsx_error(500, 1, echo))
    env.server.expect_ordered_request("/api/session/destroy").respond_with_response(
        nsx_error(500, 1, echo)
    )
    env.server.expect_request(ROUTES).respond_with_response(
        nsx_error(500, 1, f"{echo_login} {BASIC}")
    )

    errors: list[NsxError] = []
    with capture_logs() as logs:
        # A rejected login (which ends that client's run), then a server error after a retry.
        for session_client in (env.client(auth="session"), env.client(auth="session")):
            with pytest.raises(NsxError) as caught:
                session_client.list_routes(T1)
            errors.append(caught.value)
            session_client.close()
        with pytest.raises(NsxError) as caught:
            env.client(auth="basic").list_routes(T1)
        errors.append(caught.value)
        with pytest.raises(NsxError) as caught:
            https.client(auth="session", max_attempts=2).list_routes(T1)
        errors.append(caught.value)
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{closed.getsockname()[1]}"
            with pytest.raises(NsxError) as caught:
                env.client(base_url=url, max_attempts=2).list_routes(T1)
            errors.append(caught.value)

    assert len(errors) == 5
    assert {e["event"] for e in logs} >= {"nsx.retry", "nsx.session.destroy_failed"}
    texts = [str(e) for e in errors] + [repr(e.args) for e in errors] + [repr(logs)]
    for error in errors:
        if isinstance(error, NsxApiError):
            texts.append(repr(vars(error)))
    for text in texts:
        for secret in secrets:
            assert secret not in text
    assert "password ***" in str(errors[0])


def test_repeated_tag_pairs_are_shared_and_the_table_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    monkeypatch.setattr(nsx_module, "_SHARED_PAIRS", {})
    monkeypatch.setattr(nsx_module, "_SHARED_PAIRS_MAX", 2)
    first = nsx_module._shared_pair("vsphere.k8s.io/cluster-name", "kubernetes")
    again = nsx_module._shared_pair("vsphere.k8s.io/cluster-name", "kubernetes")
    assert first is again
    for i in range(10):
        assert nsx_module._shared_pair("odd", f"value-{i}") == ("odd", f"value-{i}")
    assert len(nsx_module._SHARED_PAIRS) == 2


# --- issue 13: answers and files do not steer writes ---------------------------------------

T0_ROUTE = "/infra/tier-0s/t0/static-routes/x1"


@pytest.mark.parametrize(
    "path",
    [
        T0_ROUTE,
        "/infra/static-routes/x2",
        f"{T1}/static-routes/../../../tier-0s/t0",
        f"{T1}/static-routes/..",
        f"{T1}/static-routes/a?x=1",
        f"{T1}/static-routes/a%2F..",
        f"/orgs/other/projects/p/infra/tier-1s/t1/static-routes/{UID}_10.0.0.0_24",
    ],
)
def test_writes_and_reads_outside_a_tier1_static_route_are_refused_unsent(
    env: Env, path: str
) -> None:
    client = env.client()
    with pytest.raises(NsxError, match="refused to delete"):
        client.delete_route(path)
    with pytest.raises(NsxError, match="refused to restore"):
        client.patch_route(path, {"id": "x"})
    with pytest.raises(NsxError, match="refused to read"):
        client.get_route(path)
    assert env.server.log == []


@pytest.mark.parametrize("route_id", ["..", "a/b", "../../tier-0s/t0", "x?y", "x#y", "a b", ""])
def test_hierarchical_delete_refuses_ids_that_are_not_plain(env: Env, route_id: str) -> None:
    good = route_from_nsx(nsx_route(0), T1)
    bad = dataclasses.replace(good, id=route_id)
    with pytest.raises(NsxError, match="not a plain static route id"):
        env.client().hierarchical_delete({T1: [good, bad]})
    assert env.server.log == []


def test_a_listed_route_claiming_another_home_keeps_its_claim_in_path() -> None:
    # Listed on T1, its path and parent_path say Tier-0: judgement sees the mismatch.
    claimed = nsx_route(0, path=T0_ROUTE)
    assert route_from_nsx(claimed, T1).path == T0_ROUTE
    parent_only = nsx_route(0, parent_path="/infra/tier-0s/t0")
    rid = parent_only["id"]
    assert route_from_nsx(parent_only, T1).path == f"/infra/tier-0s/t0/static-routes/{rid}"
    assert route_from_nsx(parent_only, T1).router_path == T1


def test_get_route_keeps_the_router_asked_not_the_answers_parent(env: Env) -> None:
    obj = nsx_route(0, parent_path="/infra/tier-0s/t0", path=T0_ROUTE)
    env.server.expect_request(f"/policy/api/v1{ROUTE_PATH}", method="GET").respond_with_json(obj)
    route = env.client().get_route(ROUTE_PATH)
    assert route is not None
    assert route.router_path == T1
    assert route.path == T0_ROUTE  # the claim, which the deleter then refuses to act on


@pytest.mark.parametrize("value", [1e308, -1e18, -1, 10**30])
def test_a_create_time_no_clock_can_hold_is_malformed(value: float) -> None:
    obj = nsx_route(0, _create_time=value)
    with pytest.raises(NsxError, match="bad _create_time"):
        route_from_nsx(obj, T1)


def test_a_listing_nested_100k_deep_fails_the_router_in_one_line(env: Env) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    env.server.expect_request(ROUTES).respond_with_data(
        '{"results": [], "x": ' + deep + "}", content_type="application/json"
    )
    with pytest.raises(NsxError, match="nested too deeply"):
        env.client().list_routes(T1)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("<html><body>Login failed for admin/{pw}</body></html>", "text/html"),
        ('["login failed for admin/{pw}"]', "application/json"),
    ],
)
def test_an_error_body_that_is_not_an_nsx_error_object_is_redacted_too(
    env: Env, body: str, content_type: str
) -> None:
    """A proxy or load balancer in front of NSX answers with its own page, echoing the
    credentials: the message keeps the page's text, never the password."""
    env.server.expect_request(ROUTES).respond_with_response(
        Response(body.replace("{pw}", PASSWORD), status=400, content_type=content_type)
    )
    with capture_logs() as logs, pytest.raises(NsxApiError) as caught:
        env.client(auth="basic").list_routes(T1)
    text = f"{caught.value} {caught.value.args!r} {vars(caught.value)!r} {logs!r}"
    assert PASSWORD not in text
    assert "admin/***" in str(caught.value)


@pytest.mark.parametrize(("header", "slept"), [("0", [0.0]), ("-5", None), ("soon", None)])
def test_retry_after_is_taken_only_when_it_is_a_sane_number(
    env: Env, header: str, slept: list[float] | None
) -> None:
    """Retry-After: 0 means now; a negative or unreadable one is ignored for the jittered
    backoff (its first step is at most half a second)."""
    env.server.expect_ordered_request(ROUTES).respond_with_response(
        Response("", status=429, headers={"Retry-After": header})
    )
    env.server.expect_ordered_request(ROUTES).respond_with_json(page([nsx_route(0)]))
    env.client().list_routes(T1)
    if slept is not None:
        assert env.time.slept == slept
    else:
        assert len(env.time.slept) == 1
        assert 0.0 <= env.time.slept[0] <= 0.5


def test_the_final_error_after_retries_names_method_and_path(env: Env) -> None:
    env.server.expect_request(ROUTES).respond_with_response(nsx_error(503, 1, "busy"))
    with pytest.raises(NsxApiError) as caught:
        env.client(max_attempts=2).list_routes(T1)
    assert str(caught.value).startswith(f"NSX GET {ROUTES} failed: 503")
    assert (caught.value.method, caught.value.path) == ("GET", ROUTES)


def test_close_destroys_the_session_once_and_logs_why_it_could_not(env: Env) -> None:
    env.server.expect_request("/api/session/create").respond_with_handler(
        session_answer("sess-1", "xsrf-1")
    )
    env.server.expect_request(ROUTES).respond_with_json(page([]))
    env.server.expect_request("/api/session/destroy", method="POST").respond_with_response(
        nsx_error(503, 1, "busy")
    )
    client = env.client(auth="session")
    client.list_routes(T1)
    with capture_logs() as logs:
        client.close()
    destroy = env.server.log[-1][0]
    assert (destroy.method, destroy.path) == ("POST", "/api/session/destroy")
    assert destroy.headers.get("X-XSRF-TOKEN") == "xsrf-1"
    failed = [e for e in logs if e["event"] == "nsx.session.destroy_failed"]
    assert len(failed) == 1
    assert "/api/session/destroy" in failed[0]["error"]
    assert "503" in failed[0]["error"]
    changed = [e for e in logs if e["event"] == "nsx.concurrency.changed"]
    assert all({"from", "to", "why"} <= set(e) for e in changed)
    assert changed
    assert changed[0]["to"] < changed[0]["from"]


def test_cookies_nsx_sets_are_never_sent_back_only_the_session_we_hold(env: Env) -> None:
    """The session cookie is sent by hand: a cookie an answer sets (a load balancer's, or a
    stale session from a late answer) is not stored and not sent with later calls."""
    env.server.expect_ordered_request("/api/session/create").respond_with_handler(
        session_answer("sess-1", "xsrf-1")
    )
    env.server.expect_ordered_request(ROUTES).respond_with_response(
        Response(
            json.dumps(page([])),
            content_type="application/json",
            headers={"Set-Cookie": "JSESSIONID=stale; Path=/"},
        )
    )
    env.server.expect_ordered_request(ROUTES).respond_with_json(page([]))
    client = env.client(auth="session")
    client.list_routes(T1)
    client.list_routes(T1)
    second = env.server.log[-1][0]
    assert "stale" not in second.headers.get("Cookie", "")
    assert "JSESSIONID=sess-1" in second.headers.get("Cookie", "")


def test_session_auth_logs_in_before_any_work_starts(env: Env) -> None:
    """With configured routers nothing needs asking, but the login happens first: a refused
    login ends the run before a single router is walked."""
    env.server.expect_ordered_request("/api/session/create").respond_with_handler(
        session_answer("sess-1", "xsrf-1")
    )
    client = env.client(auth="session", routers=(T1,))
    assert client.list_routers() == [T1]
    assert [r.path for r, _ in env.server.log] == ["/api/session/create"]


def test_a_login_answered_401_is_a_refused_login_too(env: Env) -> None:
    env.server.expect_request("/api/session/create").respond_with_response(
        nsx_error(401, 403, "Unauthorized")
    )
    client = env.client(auth="session")
    with pytest.raises(NsxAccessError) as caught:
        client.list_routers()
    assert "POST /api/session/create (401" in str(caught.value)
    assert len(env.server.log) == 1


def test_after_a_login_a_bare_403_is_that_call_forbidden_not_a_refused_login(env: Env) -> None:
    """Once the session is accepted, a 403 without an NSX code refuses that one call: the
    run goes on (before any answer the same 403 would end it as a refused login)."""
    env.server.expect_ordered_request("/api/session/create").respond_with_handler(
        session_answer("sess-1", "xsrf-1")
    )
    env.server.expect_ordered_request(ROUTES).respond_with_response(Response("", status=403))
    env.server.expect_ordered_request(ROUTES).respond_with_json(page([]))
    client = env.client(auth="session", routers=(T1,))
    with capture_logs() as logs:
        assert client.list_routers() == [T1]
    created = [e for e in logs if e["event"] == "nsx.session.created"]
    assert [(e["host"], e["xsrf"]) for e in created] == [(env.settings().host, True)]
    with pytest.raises(NsxApiError) as caught:
        client.list_routes(T1)
    assert not isinstance(caught.value, NsxAccessError)
    assert client.list_routes(T1) == []


def test_a_login_the_manager_cannot_answer_names_the_host(env: Env) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        client = env.client(base_url=url, auth="session", max_attempts=1, routers=(T1,))
        with pytest.raises(NsxAccessError) as caught:
            client.list_routers()
    assert "127.0.0.1" in str(caught.value)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (
            {
                "error_code": 0,
                "related_errors": ["odd", {"error_code": 500087, "error_message": "changed"}],
            },
            {
                "error_message": "changed",
                "related_codes": (500087,),
                "http_status": None,
                "module_name": None,
            },
        ),
        (
            {
                "error_message": "top",
                "related_errors": {"not": "a list"},
                "httpStatus": "BAD_REQUEST",
            },
            {
                "error_message": "top",
                "related_codes": (),
                "http_status": "BAD_REQUEST",
                "module_name": None,
            },
        ),
        ([], {"error_message": "[]", "related_codes": (), "http_status": None, "error_code": None}),
        ("", {"error_message": None, "related_codes": (), "http_status": None}),
    ],
)
def test_an_nsx_error_answer_is_read_for_what_it_says_and_nothing_else(
    env: Env, body: Any, fields: dict[str, Any]
) -> None:
    """What an error answer carries (codes of related errors included: a revision conflict
    may be named only there), missing parts left empty, whatever its shape."""
    text = body if isinstance(body, str) else json.dumps(body)
    env.server.expect_request(f"{ROUTES}/r0", method="DELETE").respond_with_response(
        Response(text, status=400, content_type="application/json")
    )
    with pytest.raises(NsxApiError) as caught:
        env.client().delete_route(f"{T1}/static-routes/r0")
    error = caught.value
    assert (error.method, error.path, error.status) == ("DELETE", f"{ROUTES}/r0", 400)
    assert {k: getattr(error, k) for k in fields} == fields


def test_the_backoff_doubles_from_half_a_second_up_to_thirty(env: Env) -> None:
    """The jitter is drawn below a bound that starts at 0.5 s and doubles per retry, capped at
    30 s: with the jitter at its top, the waits are exactly the bounds."""

    class TopOfRange(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    env.server.expect_request(ROUTES).respond_with_response(nsx_error(503, 1, "busy"))
    client = NsxClient(
        env.settings(max_attempts=8),
        sleep=env.time.sleep,
        clock=env.time.clock,
        rng=TopOfRange(),
    )
    with pytest.raises(NsxApiError):
        client.list_routes(T1)
    assert env.time.slept == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
