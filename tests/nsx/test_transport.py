"""The transport as a real manager answers it (issue 10): retriable 500s, one login a run,
an unreachable manager, VMware Cloud on AWS tokens. The real requests library against
pytest-httpserver."""

from __future__ import annotations

import json
import socket
import ssl
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus

import pytest
import trustme
from nsxkit import Env
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs
from werkzeug import Request, Response

from factories import FakeTime
from nsx_route_gc.config import Secret
from nsx_route_gc.errors import NsxAccessError, NsxApiError, NsxError
from nsx_route_gc.logs import scrub
from nsx_route_gc.nsx.transport import is_revision_conflict

REFRESH = "canary-refresh-T0KEN-vmc"
ACCESS = "canary-access-T0KEN-1"
T1 = "/infra/tier-1s/cgw"
ROUTES = f"/policy/api/v1{T1}/static-routes"
BASE = "/vmc/reverse-proxy/api/orgs/o1/sddcs/s1/sks-nsxt-manager"
CSP = "/csp/gateway/am/api/auth/api-tokens/authorize"


@pytest.fixture
def env(httpserver: HTTPServer) -> Iterator[Env]:
    yield Env(httpserver, FakeTime())
    httpserver.check_handler_errors()


def nsx_error(status: int, code: int, message: str = "failed", **extra: Any) -> Response:
    body = {"httpStatus": "ERROR", "error_code": code, "error_message": message, **extra}
    return Response(json.dumps(body), status=status, content_type="application/json")


def page(n: int = 1) -> dict[str, Any]:
    results = [
        {"id": f"r{i}", "network": f"10.0.{i}.0/24", "next_hops": [], "tags": []} for i in range(n)
    ]
    return {"results": results, "result_count": n}


# ------------------------------------------------------------------------------- retries


@pytest.mark.parametrize(
    "answer",
    [
        nsx_error(500, 607, "The operation failed because of a transaction abort."),
        nsx_error(500, 98, "Cannot connect to server."),
        nsx_error(500, 0, "wrapped", related_errors=[{"error_code": 607}]),
        Response("", status=408),
    ],
    ids=["500-607", "500-98", "500-related-607", "408"],
)
def test_retriable_answers_are_retried_with_backoff(env: Env, answer: Response) -> None:
    env.server.expect_ordered_request(ROUTES).respond_with_response(answer)
    env.server.expect_ordered_request(ROUTES).respond_with_response(answer)
    env.server.expect_ordered_request(ROUTES).respond_with_json(page(2))

    client = env.client()
    assert len(client.list_routes(T1)) == 2

    assert len(env.time.slept) == 2
    assert all(0 <= s <= 1.0 for s in env.time.slept)
    status = answer.status_code
    assert client.request_counts == {"list": 3, f"retry_{status}": 2}


def test_other_500s_fail_that_call_without_retries(env: Env) -> None:
    env.server.expect_request(ROUTES).respond_with_response(nsx_error(500, 100, "boom"))

    with pytest.raises(NsxApiError) as caught:
        env.client().list_routes(T1)

    assert not isinstance(caught.value, NsxAccessError)
    assert (caught.value.status, caught.value.error_code) == (500, 100)
    assert len(env.server.log) == 1


@pytest.mark.parametrize(
    ("status", "code", "conflict"),
    [
        (412, 604, True),
        (409, 0, True),
        (400, 500087, True),
        (400, 500232, True),
        (400, 100148, True),
        (404, 500090, True),
        (400, 287, False),
        (404, 202, False),
        (500, 607, False),
    ],
)
def test_revision_conflicts_in_every_form(status: int, code: int, conflict: bool) -> None:
    assert is_revision_conflict(NsxApiError("PATCH", "/x", status, error_code=code)) is conflict
    related = NsxApiError("PATCH", "/x", status, error_code=1, related_codes=(code,))
    assert is_revision_conflict(related) is conflict or status in (409, 412)
    assert not is_revision_conflict(NsxError("transport"))


# ----------------------------------------------------------------------- one login a run


def test_a_refused_basic_login_is_sent_once_however_many_threads_ask(env: Env) -> None:
    env.server.expect_request(ROUTES).respond_with_response(
        nsx_error(403, 403, "The credentials were incorrect or the account has been locked.")
    )
    client = env.client()

    def one(_n: int) -> str:
        try:
            client.list_routes(T1)
        except NsxAccessError as exc:
            return str(exc)
        return "listed"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(one, range(10)))

    assert len(env.server.log) == 1  # one failed login: NSX locks the account after 5
    assert len(set(outcomes)) == 1
    assert "nsx.username" in outcomes[0]
    assert "NSXT_PASSWORD" in outcomes[0]
    assert "not retried" in outcomes[0]


def test_a_refused_session_login_is_sent_once_however_many_threads_ask(env: Env) -> None:
    env.server.expect_request("/api/session/create").respond_with_response(
        nsx_error(403, 403, "The credentials were incorrect")
    )
    client = env.client(auth="session")

    def one(_n: int) -> bool:
        with pytest.raises(NsxAccessError):
            client.list_routes(T1)
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(one, range(10)))
    client.close()

    assert [r.path for r, _ in env.server.log] == ["/api/session/create"]


def test_certificate_auth_refused_names_the_certificate(env: Env, tmp_path: Path) -> None:
    env.server.expect_request(ROUTES).respond_with_response(Response("", status=403))
    (tmp_path / "c.pem").write_text("unused over plain http")
    client = env.client(auth="certificate", client_cert_file=tmp_path / "c.pem", username=None)

    with pytest.raises(
        NsxAccessError, match=r"check nsx\.client_cert_file and nsx\.client_key_file"
    ):
        client.list_routes(T1)


def test_a_403_for_one_object_is_not_a_refused_login(env: Env) -> None:
    env.server.expect_request(ROUTES).respond_with_json(page(1))
    env.server.expect_request(f"{ROUTES}/r0", method="DELETE").respond_with_response(
        nsx_error(403, 500081, "Object is protected")
    )
    client = env.client(auth="session")
    env.server.expect_request("/api/session/create").respond_with_data(
        "", headers={"Set-Cookie": "JSESSIONID=s1; Path=/", "X-XSRF-TOKEN": "x1"}
    )

    client.list_routes(T1)
    with pytest.raises(NsxApiError) as caught:
        client.delete_route(f"{T1}/static-routes/r0")
    assert not isinstance(caught.value, NsxAccessError)
    assert len(client.list_routes(T1)) == 1  # the client still works

    assert client.request_counts == {"delete": 1, "list": 2, "session": 1}  # no relogin


def test_a_bad_xsrf_token_logs_in_again_once(env: Env) -> None:
    sessions = iter(["s1", "s2"])

    def login(_request: Request) -> Response:
        sid = next(sessions)
        headers = {"Set-Cookie": f"JSESSIONID={sid}; Path=/", "X-XSRF-TOKEN": f"x-{sid}"}
        return Response("", status=200, headers=headers)

    env.server.expect_ordered_request("/api/session/create").respond_with_handler(login)
    env.server.expect_ordered_request(ROUTES).respond_with_response(
        nsx_error(403, 98, "Bad XSRF token")
    )
    env.server.expect_ordered_request("/api/session/create").respond_with_handler(login)
    env.server.expect_ordered_request(ROUTES, headers={"X-XSRF-TOKEN": "x-s2"}).respond_with_json(
        page(1)
    )

    client = env.client(auth="session")
    assert len(client.list_routes(T1)) == 1
    assert client.request_counts == {"list": 2, "relogin": 1, "session": 2}


def test_an_unreachable_manager_ends_the_run_once(env: Env) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        client = env.client(base_url=f"https://127.0.0.1:{port}", max_attempts=2)
        with pytest.raises(NsxAccessError, match=r"check nsx.host \(NSXT_MANAGER_HOST\)$"):
            client.list_routers()
        with pytest.raises(NsxAccessError):
            client.list_routes(T1)

    assert client.request_counts == {"list": 2, "retry_connection": 1}  # nothing more sent


def test_an_unreadable_client_certificate_names_the_files(env: Env, tmp_path: Path) -> None:
    client = env.client(auth="certificate", client_cert_file=tmp_path / "gone.pem")

    with pytest.raises(NsxAccessError, match=r"check nsx\.ca_file, nsx\.client_cert_file"):
        client.list_routes(T1)
    assert env.server.log == []


def test_an_unknown_host_ends_the_run_naming_nsx_host(env: Env) -> None:
    client = env.client(base_url="https://nsx.invalid", max_attempts=1)

    with pytest.raises(
        NsxAccessError, match=r"cannot reach NSX at nsx\.invalid: .*check nsx\.host"
    ):
        client.list_routes(T1)


# ---------------------------------------------------------------------------------- VMC


@dataclass
class Tls:
    ca: trustme.CA
    ca_file: Path
    other_ca_file: Path


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    tmp = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    trustme.CA().cert_pem.write_to_path(str(tmp / "other.pem"))
    return Tls(ca, tmp / "ca.pem", tmp / "other.pem")


@pytest.fixture
def vmc(tls: Tls) -> Iterator[Env]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    server = HTTPServer(ssl_context=context)
    server.start()
    yield Env(server, FakeTime())
    server.clear()
    if server.is_running():
        server.stop()


def vmc_settings(env: Env, tls: Tls, **overrides: Any) -> dict[str, Any]:
    root = env.server.url_for("/").rstrip("/")
    values: dict[str, Any] = {
        "base_url": root + BASE,
        "auth": "vmc",
        "username": None,
        "password": None,
        "ca_file": tls.ca_file,
        "vmc_token": Secret(REFRESH),
        "vmc_auth_url": root + CSP,
        # What config.py passes from REQUESTS_CA_BUNDLE: here the test's CA.
        "vmc_auth_verify": str(tls.ca_file),
    }
    values.update(overrides)
    return values


def token_answer(*tokens: str, expires_in: object = 1799) -> Any:
    issued = iter(tokens)

    def handler(request: Request) -> Response:
        assert request.mimetype == "application/x-www-form-urlencoded"
        assert parse_qs(request.get_data(as_text=True)) == {"refresh_token": [REFRESH]}
        body = {"access_token": next(issued), "expires_in": expires_in, "token_type": "bearer"}
        return Response(json.dumps(body), status=200, content_type="application/json")

    return handler


def test_vmc_exchanges_the_token_and_sends_it_under_the_proxy_path(
    vmc: Env, tls: Tls, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests would let this override the manager's CA; both calls pass verify explicitly.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.other_ca_file))
    vmc.server.expect_ordered_request(CSP, method="POST").respond_with_handler(
        token_answer(ACCESS, expires_in="1799")  # the CCM decodes a string
    )
    vmc.server.expect_ordered_request(
        BASE + ROUTES, method="GET", headers={"csp-auth-token": ACCESS}
    ).respond_with_json(page(3))

    with vmc.client(**vmc_settings(vmc, tls, routers=(T1,))) as client:
        assert client.list_routers() == [T1]  # the token is obtained here, before the walk
        assert [r.path for r, _ in vmc.server.log] == [CSP]
        assert len(client.list_routes(T1)) == 3

    assert [r.path for r, _ in vmc.server.log] == [CSP, BASE + ROUTES]
    assert all("Authorization" not in r.headers for r, _ in vmc.server.log)
    assert all("Cookie" not in r.headers for r, _ in vmc.server.log)  # no session
    vmc.server.check_assertions()


def test_vmc_token_is_renewed_before_it_expires_and_once_on_a_401(vmc: Env, tls: Tls) -> None:
    vmc.server.expect_ordered_request(CSP).respond_with_handler(
        token_answer("tok-1", expires_in=600)
    )
    vmc.server.expect_ordered_request(
        BASE + ROUTES, headers={"csp-auth-token": "tok-1"}
    ).respond_with_json(page(1))
    vmc.server.expect_ordered_request(CSP).respond_with_handler(
        token_answer("tok-2", expires_in=600)
    )
    vmc.server.expect_ordered_request(
        BASE + ROUTES, headers={"csp-auth-token": "tok-2"}
    ).respond_with_response(nsx_error(401, 401, "token expired"))
    vmc.server.expect_ordered_request(CSP).respond_with_handler(
        token_answer("tok-3", expires_in=600)
    )
    vmc.server.expect_ordered_request(
        BASE + ROUTES, headers={"csp-auth-token": "tok-3"}
    ).respond_with_json(page(1))

    client = vmc.client(**vmc_settings(vmc, tls))
    client.list_routes(T1)
    vmc.time.now += 541  # 600 s, renewed 60 s ahead
    client.list_routes(T1)

    assert [r.path for r, _ in vmc.server.log] == [CSP, BASE + ROUTES] * 3
    vmc.server.check_assertions()


@pytest.mark.parametrize("status", [400, 401, 403])
def test_a_refused_vmc_token_ends_the_run_naming_the_token(vmc: Env, tls: Tls, status: int) -> None:
    vmc.server.expect_request(CSP).respond_with_response(
        Response(json.dumps({"message": f"invalid_grant {REFRESH}"}), status=status)
    )
    client = vmc.client(**vmc_settings(vmc, tls))

    with capture_logs() as logs, pytest.raises(NsxAccessError) as caught:
        client.list_routers()
    with pytest.raises(NsxAccessError):
        client.list_routes(T1)

    message = str(caught.value)
    assert "NSXT_VMC_ACCESS_TOKEN or nsx.vmc_access_token_file" in message
    assert REFRESH not in message
    assert REFRESH not in repr(logs)
    assert len(vmc.server.log) == 1


def test_a_vmc_token_nsx_refuses_after_renewal_ends_the_run(vmc: Env, tls: Tls) -> None:
    vmc.server.expect_request(CSP).respond_with_handler(token_answer(ACCESS, "canary-tok-2"))
    vmc.server.expect_request(BASE + ROUTES).respond_with_response(
        nsx_error(401, 401, f"bad token {ACCESS}")
    )
    client = vmc.client(**vmc_settings(vmc, tls))

    with capture_logs() as logs, pytest.raises(NsxAccessError) as caught:
        client.list_routes(T1)

    assert "check NSXT_VMC_ACCESS_TOKEN" in str(caught.value)
    texts = str(caught.value) + repr(logs)
    for secret in (REFRESH, ACCESS, "canary-tok-2"):
        assert secret not in texts
        assert secret not in scrub(secret)  # registered for every later log line too
    assert [r.path for r, _ in vmc.server.log] == [CSP, BASE + ROUTES] * 2


def test_the_vmc_auth_host_is_verified_with_the_trust_store_not_the_managers_ca(
    vmc: Env, tls: Tls
) -> None:
    settings = vmc_settings(vmc, tls, vmc_auth_verify=str(tls.other_ca_file))
    client = vmc.client(**settings)

    with pytest.raises(NsxAccessError) as caught:
        client.list_routes(T1)

    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert "REQUESTS_CA_BUNDLE for nsx.vmc_auth_host" in str(caught.value)
    assert vmc.server.log == []


def test_a_malformed_token_answer_is_refused(vmc: Env, tls: Tls) -> None:
    vmc.server.expect_request(CSP).respond_with_json({"access_token": ACCESS})

    with pytest.raises(NsxAccessError, match="no access_token or expires_in"):
        vmc.client(**vmc_settings(vmc, tls)).list_routes(T1)


def test_a_login_body_echoed_url_encoded_never_reaches_the_error(env: Env) -> None:
    # The trial: a manager that echoes the login form put Can%40ry+P%2Bw... in the message.
    password = "Can@ry P+w/rd-echo"
    echoed = f"j_username=admin&j_password={quote_plus(password)}"
    env.server.expect_request("/api/session/create").respond_with_response(
        nsx_error(403, 403, f"The credentials were incorrect: {echoed}")
    )
    client = env.client(auth="session", password=Secret(password))
    with pytest.raises(NsxAccessError) as caught:
        client.list_routes(T1)
    client.close()
    message = str(caught.value)
    assert "403" in message
    for form in (password, quote_plus(password), quote(password, safe="")):
        assert form not in message


def test_a_vmc_access_token_is_scrubbed_from_logs_as_soon_as_it_is_obtained(
    vmc: Env, tls: Tls
) -> None:
    fresh = f"access-{uuid.uuid4().hex}"  # registrations last for the process: a new one
    vmc.server.expect_ordered_request(CSP, method="POST").respond_with_handler(token_answer(fresh))
    with vmc.client(**vmc_settings(vmc, tls, routers=(T1,))) as client:
        assert client.list_routers() == [T1]
        assert fresh not in scrub(f"header csp-auth-token: {fresh}")


@pytest.mark.parametrize(
    "answer",
    [
        {"access_token": 12345, "expires_in": 1799},
        {"access_token": "", "expires_in": 1799},
        {"access_token": "tok-without-expiry"},
        ["access_token", "expires_in"],
    ],
)
def test_a_token_answer_without_a_usable_token_and_lifetime_is_refused(
    vmc: Env, tls: Tls, answer: Any
) -> None:
    vmc.server.expect_request(CSP).respond_with_json(answer)
    with pytest.raises(NsxAccessError, match="no access_token or expires_in"):
        vmc.client(**vmc_settings(vmc, tls)).list_routes(T1)
    assert [r.path for r, _ in vmc.server.log] == [CSP]  # refused once, the manager untouched


def test_the_vmc_api_token_is_scrubbed_from_logs_once_the_client_holds_it(
    vmc: Env, tls: Tls
) -> None:
    fresh = f"refresh-{uuid.uuid4().hex}"
    vmc.client(**vmc_settings(vmc, tls, vmc_token=Secret(fresh))).close()
    assert fresh not in scrub(f"token {fresh}")


def test_calls_are_held_to_the_configured_rate(env: Env) -> None:
    """nsx.rate_limit calls a second at most (NSX allows 100 per second per user): eleven
    calls at five a second take at least two seconds of the client's clock."""
    env.server.expect_request(ROUTES).respond_with_json(page(0))
    client = env.client(rate_limit=5.0)
    for _ in range(11):
        client.list_routes(T1)
    assert env.time.now >= 1.9
    assert len(env.server.log) == 11
