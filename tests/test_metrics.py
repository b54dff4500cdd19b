"""Pushgateway metrics, pushed with the real prometheus-client to a local fake Pushgateway."""

from __future__ import annotations

import base64
import re
import socket
from dataclasses import dataclass, field

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from nsx_route_gc.errors import RouteGcError
from nsx_route_gc.metrics import MetricsError, RunMetrics, push_run_metrics, safe_url

JOB = "nsx-route-gc"
T1 = "/infra/tier-1s/tanzu-cl1"
T1_OTHER = "/infra/tier-1s/shared"
RUN_PATH = f"/metrics/job/{JOB}"
SUCCESS_PATH = f"/metrics/job/{JOB}/outcome/success"


@dataclass
class Push:
    method: str
    path: str
    body: str
    authorization: str | None


@dataclass
class FakePushgateway:
    """Keeps groups the way the Pushgateway does: PUT replaces a group, POST replaces by name."""

    status: int = 200
    pushes: list[Push] = field(default_factory=list)
    groups: dict[str, dict[str, Metric]] = field(default_factory=dict)

    def handle(self, request: Request) -> Response:
        body = request.get_data(as_text=True)
        self.pushes.append(
            Push(request.method, request.path, body, request.headers.get("Authorization"))
        )
        if self.status != 200:
            return Response("boom", status=self.status)
        # Like the Pushgateway's parser, a family without samples is no push of that family.
        families = {f.name: f for f in text_string_to_metric_families(body) if f.samples}
        if request.method == "PUT":
            self.groups[request.path] = families
        elif request.method == "POST":
            self.groups.setdefault(request.path, {}).update(families)
        return Response("", status=200)

    def value(self, group: str, name: str, **labels: str) -> float:
        family = self.groups[group][f"nsx_route_gc_{name}"]
        matches = [s.value for s in family.samples if s.labels == labels]
        assert len(matches) == 1, (name, labels, family.samples)
        return matches[0]

    def series(self, group: str, name: str) -> list[dict[str, str]]:
        return [s.labels for s in self.groups[group][f"nsx_route_gc_{name}"].samples]


@pytest.fixture
def gateway(httpserver: HTTPServer) -> FakePushgateway:
    fake = FakePushgateway()
    httpserver.expect_request(re.compile(r"^/metrics/")).respond_with_handler(fake.handle)
    return fake


def successful_run(finished_at: float = 1_764_072_000.0) -> RunMetrics:
    return RunMetrics(
        routes={(T1, "live"): 5, (T1, "orphaned"): 3, (T1_OTHER, "foreign"): 1},
        deleted=2,
        delete_failed=0,
        held=1,
        clusters={"ok": 2, "retired": 1},
        nodes_without_route=4,
        misplaced_routes=2,
        duration_seconds=12.5,
        success=True,
        finished_at=finished_at,
    )


def test_successful_run_pushes_every_gauge(
    httpserver: HTTPServer, gateway: FakePushgateway
) -> None:
    push_run_metrics(httpserver.url_for("/"), JOB, successful_run())

    assert [(p.method, p.path) for p in gateway.pushes] == [
        ("PUT", RUN_PATH),
        ("PUT", SUCCESS_PATH),
    ]
    assert gateway.value(RUN_PATH, "routes", router=T1, verdict="live") == 5
    assert gateway.value(RUN_PATH, "routes", router=T1, verdict="orphaned") == 3
    assert gateway.value(RUN_PATH, "routes", router=T1, verdict="unverified") == 0
    assert gateway.value(RUN_PATH, "routes", router=T1_OTHER, verdict="foreign") == 1
    assert gateway.value(RUN_PATH, "routes", router=T1_OTHER, verdict="live") == 0
    assert gateway.value(RUN_PATH, "deleted_routes") == 2
    assert gateway.value(RUN_PATH, "delete_failed_routes") == 0
    assert gateway.value(RUN_PATH, "held_routes") == 1
    assert gateway.value(RUN_PATH, "nodes_without_route") == 4
    assert gateway.value(RUN_PATH, "misplaced_routes") == 2
    assert gateway.value(RUN_PATH, "clusters", status="ok") == 2
    assert gateway.value(RUN_PATH, "clusters", status="retired") == 1
    assert gateway.value(RUN_PATH, "clusters", status="failed") == 0
    assert gateway.value(RUN_PATH, "clusters", status="deleting") == 0
    assert gateway.value(RUN_PATH, "run_duration_seconds") == 12.5
    assert gateway.value(RUN_PATH, "last_run_timestamp_seconds") == 1_764_072_000.0
    assert gateway.value(RUN_PATH, "last_run_success") == 1
    assert "nsx_route_gc_last_success_timestamp_seconds" not in gateway.groups[RUN_PATH]
    assert gateway.value(SUCCESS_PATH, "last_success_timestamp_seconds") == 1_764_072_000.0
    assert set(gateway.groups[SUCCESS_PATH]) == {"nsx_route_gc_last_success_timestamp_seconds"}


def test_failed_run_keeps_last_success_and_drops_stale_series(
    httpserver: HTTPServer, gateway: FakePushgateway
) -> None:
    url = httpserver.url_for("/")
    push_run_metrics(url, JOB, successful_run(finished_at=1000.0))
    # Failed before listing any router: nothing about routes, one cluster failed.
    failed = RunMetrics(
        clusters={"failed": 1}, duration_seconds=3.0, success=False, finished_at=4600.0
    )
    push_run_metrics(url, JOB, failed)

    assert [(p.method, p.path) for p in gateway.pushes[2:]] == [("PUT", RUN_PATH)]
    assert "last_success" not in gateway.pushes[2].body
    assert gateway.value(SUCCESS_PATH, "last_success_timestamp_seconds") == 1000.0
    assert gateway.value(RUN_PATH, "last_run_success") == 0
    assert gateway.value(RUN_PATH, "last_run_timestamp_seconds") == 4600.0
    assert gateway.value(RUN_PATH, "clusters", status="failed") == 1
    assert gateway.value(RUN_PATH, "clusters", status="ok") == 0
    # The routes of the earlier run must not survive as if this run had seen them.
    assert "nsx_route_gc_routes" not in gateway.groups[RUN_PATH]


def test_next_success_moves_last_success(httpserver: HTTPServer, gateway: FakePushgateway) -> None:
    url = httpserver.url_for("/")
    push_run_metrics(url, JOB, successful_run(finished_at=1000.0))
    push_run_metrics(url, JOB, RunMetrics(duration_seconds=1.0, success=False, finished_at=2000.0))
    push_run_metrics(url, JOB, successful_run(finished_at=3000.0))

    assert gateway.value(SUCCESS_PATH, "last_success_timestamp_seconds") == 3000.0
    assert gateway.value(RUN_PATH, "last_run_success") == 1


def test_server_error_raises_metrics_error(
    httpserver: HTTPServer, gateway: FakePushgateway
) -> None:
    gateway.status = 500

    with pytest.raises(MetricsError) as caught:
        push_run_metrics(httpserver.url_for("/"), JOB, successful_run())

    message = str(caught.value)
    assert isinstance(caught.value, RouteGcError)
    assert "\n" not in message
    assert f"http://localhost:{httpserver.port}/" in message
    assert "500" in message
    assert isinstance(caught.value.__cause__, OSError)


def test_credentials_in_the_url_become_basic_auth_and_never_a_message(
    httpserver: HTTPServer, gateway: FakePushgateway
) -> None:
    url = f"http://pusher:Canary-S3cret@127.0.0.1:{httpserver.port}/"
    push_run_metrics(url, JOB, successful_run())
    expected = "Basic " + base64.b64encode(b"pusher:Canary-S3cret").decode()
    assert [p.authorization for p in gateway.pushes] == [expected, expected]

    gateway.status = 500
    with pytest.raises(MetricsError) as caught:
        push_run_metrics(url, JOB, successful_run())
    assert "Canary-S3cret" not in str(caught.value)
    assert "pusher" not in str(caught.value)


def test_unreachable_gateway_raises_metrics_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound but not listening: connections are refused
        port = sock.getsockname()[1]
        with pytest.raises(MetricsError, match=f"127.0.0.1:{port}"):
            push_run_metrics(f"http://127.0.0.1:{port}", JOB, successful_run(), timeout=2)


def test_unsupported_scheme_raises_metrics_error() -> None:
    with pytest.raises(MetricsError, match="expected http or https"):
        push_run_metrics("ftp://user:Canary-S3cret@127.0.0.1:21", JOB, successful_run())


def test_injected_pusher_and_registry_factory() -> None:
    calls: list[tuple[str, str, dict[str, str] | None, float]] = []

    def pusher(
        url: str, *, job: str, grouping_key: dict[str, str] | None, timeout: float, **_: object
    ) -> None:
        calls.append((url, job, grouping_key, timeout))

    push_run_metrics("pushgateway:9091", "custom", successful_run(), pusher=pusher, timeout=3)

    assert calls == [
        ("http://pushgateway:9091", "custom", None, 3),
        ("http://pushgateway:9091", "custom", {"outcome": "success"}, 3),
    ]


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("http://u:p@gw.example:9091/", "http://gw.example:9091/"),
        ("https://u@gw.example", "https://gw.example"),
        ("gw.example:9091", "http://gw.example:9091"),
        ("http://[::1]:9091", "http://[::1]:9091"),
    ],
)
def test_safe_url_strips_userinfo(given: str, shown: str) -> None:
    assert safe_url(given) == shown
