"""Run orchestration: the summary line and the metrics push at the end of every run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs
from werkzeug import Request, Response

from nsx_route_gc.config import MetricsConfig, load_config
from nsx_route_gc.runs.frame import run_scan
from nsx_route_gc.simulator import Simulator, load_scenario


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def pushes(httpserver: HTTPServer) -> list[tuple[str, bytes]]:
    seen: list[tuple[str, bytes]] = []

    def capture(request: Request) -> Response:
        seen.append((request.path, request.get_data()))
        return Response("", 200)

    httpserver.expect_request("/metrics/job/nsx-route-gc", method="PUT").respond_with_handler(
        capture
    )
    httpserver.expect_request(
        "/metrics/job/nsx-route-gc/outcome/success", method="PUT"
    ).respond_with_handler(capture)
    return seen


def test_scan_pushes_metrics_of_the_run(
    tmp_path: Path, httpserver: HTTPServer, pushes: list[tuple[str, bytes]]
) -> None:
    with Simulator(load_scenario("seed")) as sim:
        config = load_config(sim.write_config(tmp_path), {}).config
        config = replace(config, metrics=MetricsConfig(pushgateway=httpserver.url_for("/")))
        outcome = run_scan(config, report_dir=None)
    assert outcome.exit_code == 0
    paths = [p for p, _ in pushes]
    assert paths == ["/metrics/job/nsx-route-gc", "/metrics/job/nsx-route-gc/outcome/success"]
    values = samples(pushes[0][1])
    router = ("router", "/infra/tier-1s/tanzu-cl1")
    assert values[("nsx_route_gc_routes", (router, ("verdict", "orphaned")))] == 3
    assert values[("nsx_route_gc_routes", (router, ("verdict", "live")))] == 3
    assert values[("nsx_route_gc_clusters", (("status", "retired"),))] == 1
    assert values[("nsx_route_gc_last_run_success", ())] == 1


def test_failed_run_pushes_failure_and_a_dead_gateway_does_not_change_the_outcome(
    tmp_path: Path, httpserver: HTTPServer, pushes: list[tuple[str, bytes]]
) -> None:
    with Simulator(load_scenario("seed")) as sim:
        config = load_config(sim.write_config(tmp_path), {}).config
        real_password = sim.nsx.password
        sim.nsx.password = "changed"  # login now fails: the run fails before any listing
        failing = replace(config, metrics=MetricsConfig(pushgateway=httpserver.url_for("/")))
        assert run_scan(failing, report_dir=None).exit_code == 1
        sim.nsx.password = real_password
        dead = replace(config, metrics=MetricsConfig(pushgateway="http://127.0.0.1:9"))
        with capture_logs() as logs:
            outcome = run_scan(dead, report_dir=None)
    assert [p for p, _ in pushes] == ["/metrics/job/nsx-route-gc"]  # no last-success on failure
    assert samples(pushes[0][1])[("nsx_route_gc_last_run_success", ())] == 0
    assert outcome.exit_code == 0
    assert any(entry["event"] == "metrics.push_failed" for entry in logs)
