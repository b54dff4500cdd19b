"""Helpers for the apply/restore tests: a running simulator, its config, runs of the tool.

Everything goes through the real NsxClient and the real Kubernetes inventory, over HTTPS to
the simulator; only backoff sleeps are replaced by a no-op.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer
from typer.testing import CliRunner
from werkzeug import Request, Response

from nsx_route_gc.cli import cli
from nsx_route_gc.config import Config, MetricsConfig, NsxSettings, load_config
from nsx_route_gc.models import Policy
from nsx_route_gc.nsx.client import NsxClient
from nsx_route_gc.reports.files import to_json
from nsx_route_gc.reports.saved_plan import DELETED_BY_THIS_TOOL, restore_sha256
from nsx_route_gc.runs import frame as app
from nsx_route_gc.runs.apply import Proposal, run_apply
from nsx_route_gc.runs.restore import run_restore
from nsx_route_gc.simulator import Simulator, load_scenario
from nsx_route_gc.simulator.model import Scenario

T1 = "/infra/tier-1s/tanzu-cl1"
CL1_IDS = {
    # The seed scenario's routes of the deleted cluster cl1: what a correct apply deletes.
    "52de86ee-0d71-535d-84b0-106dde42b993_172.16.136.0_24",
    "64aaf92e-84dc-58b8-9776-e11ba6c1303e_172.16.137.0_24",
    "a57a555e-e4eb-49ad-af74-e11a7d7a8ad8_172.16.138.0_24",
}


def no_sleep(_seconds: float) -> None:
    return None


def client(settings: NsxSettings) -> NsxClient:
    return NsxClient(settings, sleep=no_sleep)


def yes(_asked: object) -> bool:
    return True


@dataclass
class Env:
    sim: Simulator
    config: Config
    config_path: Path
    tmp: Path

    def route_ids(self, router: str = T1) -> set[str]:
        return {r["id"] for r in self.sim.nsx.routes(router)}

    def routes(self, router: str = T1) -> dict[str, dict[str, Any]]:
        return {r["id"]: r for r in self.sim.nsx.routes(router)}

    def with_policy(self, **changes: Any) -> Config:
        policy: Policy = replace(self.config.policy, **changes)
        return replace(self.config, policy=policy)

    def scan(self, name: str = "scan", config: Config | None = None) -> Path:
        outcome = app.run_scan(
            config or self.config, report_dir=self.tmp / name, nsx_factory=client
        )
        assert outcome.report is not None, outcome.error
        return self.tmp / name / "report.json"

    def apply(
        self,
        plan: Path | None = None,
        *,
        name: str = "apply",
        config: Config | None = None,
        confirm: Callable[[Proposal], bool] = yes,
        nsx_factory: Callable[[NsxSettings], Any] = client,
        **kwargs: Any,
    ) -> app.Outcome:
        return run_apply(
            config or self.config,
            confirm=confirm,
            plan_path=plan,
            report_dir=self.tmp / name,
            nsx_factory=nsx_factory,
            sleep=no_sleep,
            **kwargs,
        )

    def restore(
        self,
        report: Path,
        *,
        name: str = "restore",
        config: Config | None = None,
        nsx_factory: Callable[[NsxSettings], Any] = client,
        **kw: Any,
    ) -> app.Outcome:
        return run_restore(
            config or self.config,
            report_path=report,
            confirm=yes,
            report_dir=self.tmp / name,
            nsx_factory=nsx_factory,
            **kw,
        )


@contextmanager
def simulated(tmp: Path, scenario: str | Scenario = "seed", **policy: object) -> Iterator[Env]:
    loaded = load_scenario(scenario) if isinstance(scenario, str) else scenario
    loaded.policy = {**loaded.policy, **policy}
    with Simulator(loaded) as sim:
        path = sim.write_config(tmp / "sim")
        # Nothing of the real environment: only what the scenario needs (VMC: the CA).
        config = load_config(path, sim.client_env(tmp / "sim")).config
        yield Env(sim, config, path, tmp)


def rows(outcome: app.Outcome) -> dict[str, dict[str, Any]]:
    assert outcome.report is not None, outcome.error
    return {r["id"]: r for r in outcome.report["routes"]}


def read(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def write(path: Path, report: dict[str, Any]) -> Path:
    path.write_text(to_json(report))
    return path


def resign(report: dict[str, Any]) -> dict[str, Any]:
    """An apply report edited by hand, its restore_sha256 made to fit again (what someone
    who edits a report can do: the digest is a check against mistakes, not a signature)."""
    ours = [
        r
        for r in report["routes"]
        if r["action"] == "deleted" and str(r.get("note") or "").startswith(DELETED_BY_THIS_TOOL)
    ]
    report["apply"]["restore_sha256"] = restore_sha256(
        report["nsx"]["host"], ((r["router_path"], r["id"], r.get("nsx_object")) for r in ours)
    )
    return report


HOUR = timedelta(hours=1)


def cli_run(*args: str) -> tuple[int, str, str]:
    """The CLI in this process with JSON logs: exit code, stdout, stderr."""
    result = CliRunner().invoke(cli, ["--log-format", "json", *args])
    return result.exit_code, result.stdout, result.stderr


def pushgateway(httpserver: HTTPServer, config: Config) -> tuple[Config, list[str]]:
    """``config`` pushing its metrics to ``httpserver``, and the paths pushed to, as pushed."""
    pushed: list[str] = []

    def handle(request: Request) -> Response:
        pushed.append(request.path)
        return Response("", status=200)

    httpserver.expect_request(re.compile(r"^/metrics/")).respond_with_handler(handle)
    url = httpserver.url_for("/").rstrip("/")
    metrics: MetricsConfig = replace(config.metrics, pushgateway=url)
    return replace(config, metrics=metrics), pushed
