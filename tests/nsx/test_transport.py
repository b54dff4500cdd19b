"""The transport as a real manager answers it (issue 10): retriable 500s, one login a run,
an unreachable manager, VMware Cloud on AWS tokens. The real requests library against
pytest-httpserver."""

from __future__ import annotations

import base64
import itertools
import json
import random
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import pytest
import requests
import trustme
from nsxkit import PASSWORD, Env
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs
from werkzeug import Request, Response

from factories import FakeTime
from nsx_route_gc.config import Secret
from nsx_route_gc.errors import ConfigError, NsxAccessError, NsxApiError, NsxError
from nsx_route_gc.logs import scrub
from nsx_route_gc.nsx.client import NsxClient
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

    assert "check NSXT_VMC_ACCESS_TOKEN or nsx.vmc_access_token_file" in str(caught.value)
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
    assert env.time.slept == pytest.approx([0.2] * 10)  # no slower either
    assert len(env.server.log) == 11


# ------------------------------------------------------------------ retries and the limits


def test_a_retriable_code_written_as_a_string_is_read_as_the_number(env: Env) -> None:
    """An error body is foreign JSON: "607" is the code 607, a 500 worth retrying."""
    body = {"httpStatus": "INTERNAL_SERVER_ERROR", "error_code": "607", "error_message": "abort"}
    env.server.expect_ordered_request(ROUTES).respond_with_json(body, status=500)
    env.server.expect_ordered_request(ROUTES).respond_with_json(page(1))

    client = env.client()
    assert len(client.list_routes(T1)) == 1
    assert client.request_counts == {"list": 2, "retry_500": 1}


def test_a_client_made_without_a_random_source_still_jitters_its_retries(env: Env) -> None:
    """As the CLI makes it: no rng given, the backoff draws from its own."""
    env.server.expect_ordered_request(ROUTES).respond_with_response(nsx_error(503, 1, "busy"))
    env.server.expect_ordered_request(ROUTES).respond_with_json(page(1))
    client = NsxClient(env.settings(), sleep=env.time.sleep, clock=env.time.clock)

    assert len(client.list_routes(T1)) == 1
    assert len(env.time.slept) == 1
    assert 0 <= env.time.slept[0] <= 0.5


def test_a_retry_whose_wait_ends_exactly_at_the_deadline_is_still_made(env: Env) -> None:
    env.server.expect_ordered_request(ROUTES).respond_with_response(
        Response("", status=429, headers={"Retry-After": "10"})
    )
    env.server.expect_ordered_request(ROUTES).respond_with_json(page(1))

    assert len(env.client(deadline=10.0).list_routes(T1)) == 1
    assert env.time.slept == [10.0]


class Jitter(random.Random):
    """Draws a fixed share of the backoff's range, so a retry's wait is known."""

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * 0.8642197


def test_each_retry_is_logged_with_its_cause_and_wait(env: Env) -> None:
    env.server.expect_ordered_request(ROUTES).respond_with_response(nsx_error(503, 1, "busy"))
    env.server.expect_ordered_request(ROUTES).respond_with_json(page(0))
    client = NsxClient(env.settings(), sleep=env.time.sleep, clock=env.time.clock, rng=Jitter())
    with capture_logs() as logs:
        client.list_routes(T1)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        unreachable = NsxClient(
            env.settings(base_url=url, max_attempts=2),
            sleep=env.time.sleep,
            clock=env.time.clock,
            rng=Jitter(),
        )
        with capture_logs() as more, pytest.raises(NsxAccessError):
            unreachable.list_routes(T1)

    retries = [e for e in logs + more if e["event"] == "nsx.retry"]
    assert [(e["status"], e["error"], e["attempt"], e["delay"]) for e in retries] == [
        (503, None, 1, 0.432),
        (None, "ConnectionError", 1, 0.432),
    ]
    assert all((e["method"], e["path"]) == ("GET", ROUTES) for e in retries)
    changes = [e for e in logs if e["event"] == "nsx.concurrency.changed"]
    assert [(e["from"], e["to"], e["why"]) for e in changes] == [(8, 4, "503")]


def test_a_manager_that_never_answers_fails_the_call_after_the_timeout(env: Env) -> None:
    """nsx.timeout bounds every wait on the wire: a manager that accepts the connection and
    says nothing ends the run, it does not hang it."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        client = env.client(base_url=url, timeout=0.2, max_attempts=1)
        with pytest.raises(NsxAccessError) as caught:
            client.list_routes(T1)
    assert f"NSX GET {ROUTES} failed after 1 attempt(s): ReadTimeout: " in str(caught.value)
    assert "timed out" in str(caught.value)


def test_a_transport_failure_names_its_cause_without_the_pool_blurb(env: Env) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        client = env.client(base_url=url, max_attempts=1)
        with pytest.raises(NsxAccessError) as caught:
            client.list_routes(T1)
    message = str(caught.value)
    assert "ConnectionError: " in message
    assert "Connection refused" in message
    assert "Max retries exceeded" not in message  # urllib3's own retries are not ours


def test_a_call_requests_cannot_make_names_method_path_and_why(env: Env) -> None:
    client = env.client(base_url="http://")
    with pytest.raises(NsxAccessError) as caught:
        client.list_routes(T1)
    assert f"NSX GET {ROUTES} failed: InvalidURL: " in str(caught.value)
    assert env.server.log == []


@pytest.mark.parametrize(
    "answer",
    [Response("", status=300), Response("", status=302, headers={"Location": "/elsewhere"})],
    ids=["300", "302"],
)
def test_an_answer_outside_2xx_is_an_error_and_a_redirect_is_not_followed(
    env: Env, answer: Response
) -> None:
    """Credentials are not carried to wherever a redirect points."""
    env.server.expect_request(ROUTES).respond_with_response(answer)
    env.server.expect_request("/elsewhere").respond_with_json(page(1))

    with pytest.raises(NsxApiError) as caught:
        env.client().list_routes(T1)
    assert caught.value.status == answer.status_code
    assert [r.path for r, _ in env.server.log] == [ROUTES]


def test_every_call_asks_for_json(env: Env) -> None:
    env.server.expect_request("/api/session/create").respond_with_data(
        "", headers={"Set-Cookie": "JSESSIONID=s1; Path=/"}
    )
    env.server.expect_request(ROUTES).respond_with_json(page(0))
    env.server.expect_request("/api/session/destroy").respond_with_data("")
    with env.client(auth="session") as client:
        client.list_routes(T1)
    assert [r.headers.get("Accept") for r, _ in env.server.log] == ["application/json"] * 3


def test_answers_that_come_back_at_once_do_not_widen_the_in_flight_limit(env: Env) -> None:
    """More calls in flight only help while the rate times the round trip exceeds them; at
    five a second, one-second answers do, instant ones do not."""
    env.time.now = 100.0
    env.server.expect_request(ROUTES).respond_with_json(page(0))
    fast = env.client(concurrency=1, max_concurrency=4, rate_limit=5.0)
    for _ in range(4):
        fast.list_routes(T1)
    assert fast.concurrency_peak == 1

    def slow(_request: Request) -> Response:
        env.time.now += 1.0
        return Response(json.dumps(page(0)), content_type="application/json")

    env.server.clear()
    env.server.expect_request(ROUTES).respond_with_handler(slow)
    slowed = env.client(concurrency=1, max_concurrency=4, rate_limit=5.0)
    for _ in range(4):
        slowed.list_routes(T1)
    assert slowed.concurrency_peak == 2  # one call at a time fills one slot, not two


def test_a_503_halves_the_in_flight_limit_once_per_round_trip(env: Env) -> None:
    """Answers of the same round trip carry the same news; a 503 a round trip later is new."""
    answers = iter([None, 0, 20, 0, None])  # None: a listing; a number: 503, Retry-After

    def answer(_request: Request) -> Response:
        retry_after = next(answers)
        if retry_after is None:
            env.time.now += 5.0  # five-second round trips
            return Response(json.dumps(page(0)), content_type="application/json")
        headers = {"Retry-After": str(retry_after)}
        return Response("", status=503, headers=headers)

    env.server.expect_request(ROUTES).respond_with_handler(answer)
    client = env.client(concurrency=8, max_concurrency=8)
    client.list_routes(T1)
    client.list_routes(T1)
    assert env.time.slept == [0.0, 20.0, 0.0]
    assert client.parallel_width() == 2  # halved at the first 503 and the third, not the second


def test_a_call_that_got_no_answer_does_not_move_the_in_flight_limit(env: Env) -> None:
    """A refused connection says nothing about how many calls the manager takes at once."""
    ticks = itertools.count()

    def clock() -> float:
        return float(next(ticks))  # every reading a second later: calls look slow

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        settings = env.settings(base_url=url, max_attempts=3, concurrency=1, max_concurrency=4)
        client = NsxClient(settings, sleep=lambda _s: None, clock=clock)
        with pytest.raises(NsxAccessError):
            client.list_routes(T1)
    assert client.request_counts == {"list": 3, "retry_connection": 2}
    assert client.concurrency_peak == 1


# ---------------------------------------------------------------- the first call, the session


@pytest.mark.parametrize(
    "first",
    [Response(json.dumps(page(0)), content_type="application/json"), nsx_error(500, 100)],
    ids=["listed", "nsx-error"],
)
def test_once_nsx_has_answered_a_bare_403_refuses_that_call_not_the_login(
    env: Env, first: Response
) -> None:
    """Basic auth has no login call: the first answer past authentication (a listing or an
    NSX error alike) proves the credentials, and later 403s without a code are per call."""
    env.server.expect_ordered_request(ROUTES).respond_with_response(first)
    env.server.expect_ordered_request(ROUTES).respond_with_response(Response("", status=403))
    env.server.expect_ordered_request(ROUTES).respond_with_json(page(1))
    client = env.client()
    if first.status_code == 200:
        client.list_routes(T1)
    else:
        with pytest.raises(NsxApiError) as refused:
            client.list_routes(T1)
        assert not isinstance(refused.value, NsxAccessError)
    with pytest.raises(NsxApiError) as caught:
        client.list_routes(T1)
    assert not isinstance(caught.value, NsxAccessError)
    assert len(client.list_routes(T1)) == 1


def test_a_cookie_an_answer_sets_is_never_sent_back(env: Env) -> None:
    env.server.expect_ordered_request(ROUTES).respond_with_response(
        Response(
            json.dumps(page(0)),
            content_type="application/json",
            headers={"Set-Cookie": "JSESSIONID=lb-1; Path=/"},
        )
    )
    env.server.expect_ordered_request(ROUTES).respond_with_json(page(0))
    client = env.client()
    client.list_routes(T1)
    client.list_routes(T1)
    assert "Cookie" not in env.server.log[-1][0].headers


def test_a_session_cookie_scoped_to_a_load_balancer_is_still_our_session(env: Env) -> None:
    """The jar refuses a Domain that is not the host we called, and a load balancer's
    malformed cookie may come first: the JSESSIONID is read from the headers all the same."""
    answer = Response("", status=200)
    answer.headers.add("Set-Cookie", "LB=x; $Weird=1")
    answer.headers.add("Set-Cookie", "LB2=y; Path=/")
    answer.headers.add("Set-Cookie", "JSESSIONID=s1; Domain=nsx-lb.example.com; Path=/")
    env.server.expect_ordered_request("/api/session/create").respond_with_response(answer)
    env.server.expect_ordered_request(
        ROUTES, headers={"Cookie": "JSESSIONID=s1"}
    ).respond_with_json(page(1))
    assert len(env.client(auth="session").list_routes(T1)) == 1


class KeptSession(requests.Session):
    closed = 0

    def close(self) -> None:
        type(self).closed += 1
        super().close()


def test_a_session_the_caller_passes_carries_every_call_and_is_left_open(env: Env) -> None:
    sent: list[str] = []
    session = KeptSession()
    session.hooks["response"].append(lambda r, *_a, **_k: sent.append(r.request.method))
    KeptSession.closed = 0
    env.server.expect_request(ROUTES).respond_with_json(page(0))
    client = NsxClient(env.settings(), session=session, sleep=env.time.sleep, clock=env.time.clock)
    client.list_routes(T1)
    client.close()
    assert sent == ["GET"]
    assert KeptSession.closed == 0


def test_the_http_session_the_client_makes_is_closed_with_it(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    KeptSession.closed = 0
    monkeypatch.setattr(requests, "Session", KeptSession)
    env.client().close()
    assert KeptSession.closed == 1


def test_a_relogin_neither_uses_up_an_attempt_nor_grants_one(env: Env) -> None:
    """nsx.max_attempts counts the calls to the manager, not the login between them."""

    def run(answers: list[Response]) -> NsxClient:
        env.server.clear()
        for sid in ("s1", "s2"):
            env.server.expect_ordered_request("/api/session/create").respond_with_data(
                "", headers={"Set-Cookie": f"JSESSIONID={sid}; Path=/"}
            )
            env.server.expect_ordered_request(ROUTES).respond_with_response(answers.pop(0))
        for answer in answers:
            env.server.expect_ordered_request(ROUTES).respond_with_response(answer)
        return env.client(auth="session", max_attempts=2)

    busy = nsx_error(503, 1, "busy")
    ok = Response(json.dumps(page(1)), content_type="application/json")
    client = run([nsx_error(401, 98, "expired"), busy, ok])
    with capture_logs() as logs:
        assert len(client.list_routes(T1)) == 1
    assert client.request_counts == {"list": 3, "relogin": 1, "retry_503": 1, "session": 2}
    relogins = [e for e in logs if e["event"] == "nsx.session.relogin"]
    assert [(e["method"], e["path"]) for e in relogins] == [("GET", ROUTES)]

    client = run([nsx_error(401, 98, "expired"), busy, busy, ok])
    with pytest.raises(NsxApiError):
        client.list_routes(T1)
    assert client.request_counts == {"list": 3, "relogin": 1, "retry_503": 1, "session": 2}


def test_after_a_refused_relogin_nothing_more_is_sent_not_even_the_logout(env: Env) -> None:
    env.server.expect_ordered_request("/api/session/create").respond_with_data(
        "", headers={"Set-Cookie": "JSESSIONID=s1; Path=/"}
    )
    env.server.expect_ordered_request(ROUTES).respond_with_response(nsx_error(401, 98, "expired"))
    env.server.expect_ordered_request("/api/session/create").respond_with_response(
        nsx_error(403, 403, "locked")
    )
    client = env.client(auth="session")
    with pytest.raises(NsxAccessError):
        client.list_routes(T1)
    client.close()
    create = "/api/session/create"
    assert [r.path for r, _ in env.server.log] == [create, ROUTES, create]  # no destroy


def test_a_login_the_manager_fails_ends_the_run_naming_the_host(env: Env) -> None:
    env.server.expect_request("/api/session/create").respond_with_response(
        nsx_error(500, 100, "internal error")
    )
    client = env.client(auth="session")
    with capture_logs() as logs, pytest.raises(NsxAccessError) as caught:
        client.list_routes(T1)
    with pytest.raises(NsxAccessError):
        client.list_routes(T1)
    host = env.settings().host
    assert str(caught.value).startswith(
        f"NSX login at {host} failed: NSX POST /api/session/create failed: 500"
    )
    assert [e["error"] for e in logs if e["event"] == "nsx.access_refused"] == [str(caught.value)]
    assert len(env.server.log) == 1


def test_a_login_that_cannot_reach_the_manager_names_the_call_and_the_cause(env: Env) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        client = env.client(base_url=url, auth="session", max_attempts=1)
        with pytest.raises(NsxAccessError) as caught:
            client.list_routes(T1)
    assert "POST /api/session/create failed after 1 attempt(s): ConnectionError" in str(
        caught.value
    )


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"auth": "vmc", "username": None, "password": None}, "nsx.vmc_access_token_file"),
        ({"auth": "certificate"}, "nsx.client_cert_file"),
        ({"auth": "kerberos"}, "nsx.auth"),
    ],
)
def test_incomplete_auth_settings_are_refused_by_a_line_that_starts_with_the_key(
    env: Env, overrides: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        env.client(**overrides)
    assert str(caught.value).startswith(f"{key}: ")
    assert "\n" not in str(caught.value)


def test_an_echoed_secret_is_replaced_whole_in_every_encoding(env: Env) -> None:
    """No fragment of an encoding is left: its base64 is masked with its padding."""
    encoded = base64.b64encode(PASSWORD.encode()).decode()
    assert encoded.endswith("==")
    env.server.expect_request(ROUTES).respond_with_response(
        nsx_error(400, 1, f"bad password {encoded} or {quote_plus(PASSWORD)}")
    )
    with pytest.raises(NsxApiError) as caught:
        env.client().list_routes(T1)
    assert caught.value.error_message == "bad password *** or ***"


# ---------------------------------------------------------------------------- VMC, again


def test_a_vmc_auth_host_that_fails_ends_the_run_naming_it_and_never_echoes_the_token(
    vmc: Env, tls: Tls
) -> None:
    fresh = f"refresh-{uuid.uuid4().hex}"  # registrations last for the process: a new one
    vmc.server.expect_request(CSP).respond_with_response(
        nsx_error(500, 1, f"could not redeem {fresh} ({quote_plus(fresh)})")
    )
    client = vmc.client(**vmc_settings(vmc, tls, vmc_token=Secret(fresh)))
    with capture_logs() as logs, pytest.raises(NsxAccessError) as caught:
        client.list_routes(T1)
    with pytest.raises(NsxAccessError):
        client.list_routes(T1)

    message = str(caught.value)
    netloc = urlsplit(vmc.server.url_for("/")).netloc
    assert message.startswith(f"VMC token exchange at {netloc} failed: NSX POST {CSP} failed: 500")
    assert message.endswith("; check nsx.vmc_auth_host (NSXT_VMC_AUTH_HOST)")
    assert fresh not in message + repr(logs)
    assert quote_plus(fresh) not in message
    assert [e["error"] for e in logs if e["event"] == "nsx.access_refused"] == [message]
    assert client.request_counts == {"csp_token": 1}


def test_a_token_answer_that_is_not_json_is_refused_once(vmc: Env, tls: Tls) -> None:
    vmc.server.expect_request(CSP).respond_with_data("<html>maintenance</html>")
    client = vmc.client(**vmc_settings(vmc, tls, routers=(T1,)))
    with pytest.raises(NsxAccessError, match="malformed answer from the VMC auth host"):
        client.list_routers()  # the exchange up front, outside any call
    with pytest.raises(NsxAccessError):
        client.list_routes(T1)
    assert [r.path for r, _ in vmc.server.log] == [CSP]


@pytest.mark.parametrize(
    ("expires_in", "early", "renewal"),
    [(1799, 1738.5, 1739.0), (100, 89.5, 90.0)],
    ids=["a-minute-ahead", "a-tenth-ahead"],
)
def test_a_token_is_renewed_a_tenth_of_its_life_ahead_at_most_a_minute(
    vmc: Env, tls: Tls, expires_in: int, early: float, renewal: float
) -> None:
    vmc.server.expect_request(CSP).respond_with_handler(
        token_answer("tok-1", "tok-2", expires_in=expires_in)
    )
    vmc.server.expect_request(BASE + ROUTES).respond_with_json(page(0))
    client = vmc.client(**vmc_settings(vmc, tls))
    with capture_logs() as logs:
        client.list_routes(T1)
        vmc.time.now = early
        client.list_routes(T1)
        assert client.request_counts["csp_token"] == 1
        vmc.time.now = renewal
        client.list_routes(T1)
    assert client.request_counts["csp_token"] == 2
    netloc = urlsplit(vmc.server.url_for("/")).netloc
    tokens = [(e["auth_host"], e["expires_in"]) for e in logs if e["event"] == "nsx.vmc.token"]
    assert tokens == [(netloc, float(expires_in))] * 2


@pytest.mark.parametrize(
    ("expires_in", "usable"),
    [(0, False), (1, True), (9_999_999, True), (10**7, False), (-5, False)],
)
def test_a_token_lifetime_is_a_positive_number_of_seconds_under_ten_million(
    vmc: Env, tls: Tls, expires_in: int, usable: bool
) -> None:
    vmc.server.expect_request(CSP).respond_with_handler(token_answer(ACCESS, expires_in=expires_in))
    vmc.server.expect_request(BASE + ROUTES).respond_with_json(page(0))
    client = vmc.client(**vmc_settings(vmc, tls))
    if usable:
        assert client.list_routes(T1) == []
    else:
        with pytest.raises(NsxAccessError, match="no access_token or expires_in"):
            client.list_routes(T1)


def test_a_token_nsx_refuses_is_renewed_once_and_logged_as_such(vmc: Env, tls: Tls) -> None:
    issue = token_answer("tok-1", "tok-2")
    vmc.server.expect_ordered_request(CSP).respond_with_handler(issue)
    vmc.server.expect_ordered_request(BASE + ROUTES).respond_with_response(
        nsx_error(401, 401, "token expired")
    )
    vmc.server.expect_ordered_request(CSP).respond_with_handler(issue)
    vmc.server.expect_ordered_request(BASE + ROUTES).respond_with_json(page(0))
    client = vmc.client(**vmc_settings(vmc, tls))
    with capture_logs() as logs:
        assert client.list_routes(T1) == []
    renewals = [e for e in logs if e["event"] in ("nsx.vmc.token_renew", "nsx.session.relogin")]
    assert [(e["event"], e["method"], e["path"]) for e in renewals] == [
        ("nsx.vmc.token_renew", "GET", ROUTES)
    ]
    assert client.request_counts == {"csp_token": 2, "list": 2, "relogin": 1}


def test_a_tls_failure_names_the_host_and_the_call(vmc: Env, tls: Tls) -> None:
    client = vmc.client(**vmc_settings(vmc, tls, vmc_auth_verify=str(tls.other_ca_file)))
    with pytest.raises(NsxAccessError) as caught:
        client.list_routes(T1)
    netloc = urlsplit(vmc.server.url_for("/")).netloc
    assert str(caught.value).startswith(f"TLS verification of {netloc} failed at POST {CSP}: ")
    assert str(caught.value).endswith(
        "; check the system trust store or REQUESTS_CA_BUNDLE for nsx.vmc_auth_host"
    )


# ------------------------------------------------------------------------- many threads


def test_a_router_waits_for_a_permit_while_the_limit_is_taken(env: Env) -> None:
    """At nsx.concurrency 1, a second router's listing waits for the first one (its pages
    are decoded and held until it is done) instead of starting alongside."""
    first_in, release = threading.Event(), threading.Event()

    def held(_request: Request) -> Response:
        first_in.set()
        release.wait(timeout=10)
        return Response(json.dumps(page(1)), content_type="application/json")

    other = "/infra/tier-1s/other"
    env.server.expect_request(ROUTES).respond_with_handler(held)
    env.server.expect_request(f"/policy/api/v1{other}/static-routes").respond_with_json(page(2))
    client = env.client(concurrency=1, max_concurrency=1)
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(client.list_routes, T1)
        assert first_in.wait(timeout=10)
        second = pool.submit(client.list_routes, other)
        try:
            with pytest.raises(TimeoutError):
                second.result(timeout=0.3)  # waiting, not failed and not sent
        finally:
            release.set()
        assert (len(first.result()), len(second.result())) == (1, 2)
    assert [r.path for r, _ in env.server.log] == [ROUTES, f"/policy/api/v1{other}/static-routes"]


def test_two_calls_refused_on_the_same_expired_session_log_in_again_once() -> None:
    server = HTTPServer(threaded=True)
    server.start()
    try:
        logins: list[str] = []
        on_s1 = itertools.count()
        both = threading.Barrier(2, timeout=10)

        def login(_request: Request) -> Response:
            logins.append(f"s{len(logins) + 1}")
            return Response("", headers={"Set-Cookie": f"JSESSIONID={logins[-1]}; Path=/"})

        def listing(request: Request) -> Response:
            if request.headers.get("Cookie") == "JSESSIONID=s1" and next(on_s1) > 0:
                both.wait()  # the two calls are both out on the first session
                return nsx_error(401, 98, "Not authenticated")
            return Response(json.dumps(page(0)), content_type="application/json")

        server.expect_request("/api/session/create").respond_with_handler(login)
        server.expect_request(ROUTES).respond_with_handler(listing)
        client = Env(server, FakeTime()).client(auth="session", concurrency=2)
        client.list_routes(T1)
        with ThreadPoolExecutor(max_workers=2) as pool:
            assert list(pool.map(client.list_routes, [T1, T1])) == [[], []]
        assert logins == ["s1", "s2"]
        assert client.request_counts["relogin"] == 1
    finally:
        server.clear()
        server.stop()


def test_two_calls_refused_on_the_same_vmc_token_renew_it_once(tls: Tls) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    server = HTTPServer(ssl_context=context, threaded=True)
    server.start()
    try:
        on_first = itertools.count()
        both = threading.Barrier(2, timeout=10)

        def listing(request: Request) -> Response:
            if request.headers.get("csp-auth-token") == "tok-1" and next(on_first) > 0:
                both.wait()  # the two calls are both out with the first token
                return nsx_error(401, 401, "token expired")
            return Response(json.dumps(page(0)), content_type="application/json")

        server.expect_request(CSP).respond_with_handler(token_answer("tok-1", "tok-2", "tok-3"))
        server.expect_request(BASE + ROUTES).respond_with_handler(listing)
        env = Env(server, FakeTime())
        client = env.client(**vmc_settings(env, tls, concurrency=2))
        client.list_routes(T1)
        with ThreadPoolExecutor(max_workers=2) as pool:
            assert list(pool.map(client.list_routes, [T1, T1])) == [[], []]
        assert client.request_counts["csp_token"] == 2
    finally:
        server.clear()
        server.stop()
