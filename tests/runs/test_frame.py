"""Run orchestration: the summary line and the metrics push at the end of every run."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs
from werkzeug import Request, Response

from nsx_route_gc.config import ClusterConfig, MetricsConfig, load_config
from nsx_route_gc.errors import ConfigError
from nsx_route_gc.models import ClusterInventory
from nsx_route_gc.runs.frame import LaterClusters, run_scan
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


def test_the_cli_and_its_file_checks_start_without_the_kubernetes_client(tmp_path: Path) -> None:
    """About half the start-up time: imported on the clusters' thread (LaterClusters), not
    before the NSX login."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
        "clusters: [{name: k, cluster: {server: 'https://k.example:6443'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
    )
    code = (
        "import sys, pathlib\n"
        "import nsx_route_gc.cli\n"
        "from nsx_route_gc.clusters.kubeconfig import check_kubeconfig\n"
        f"print(check_kubeconfig(pathlib.Path({str(kubeconfig)!r})))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["context c, server https://k.example:6443", "[]"]


def test_later_clusters_are_made_on_their_own_thread_and_their_errors_come_at_use() -> None:
    made: list[str] = []
    started = threading.Event()

    class Source:
        def inventory(self, clusters: Sequence[ClusterConfig]) -> list[ClusterInventory]:
            return []

    def inventory() -> Source:
        started.wait(5)
        made.append(threading.current_thread().name)
        return Source()

    def discovery() -> None:
        raise ConfigError("state.file: unreadable")

    later = LaterClusters(inventory, discovery)
    started.set()  # made while the caller goes on (here: at once)
    with pytest.raises(ConfigError, match="unreadable"):
        later.inventory([])
    assert made
    assert made[0].startswith("clusters")
    assert made[0] != threading.current_thread().name

    ok = LaterClusters(Source, lambda: None)
    assert ok.inventory([]) == []
    assert ok.discover([]) == []
