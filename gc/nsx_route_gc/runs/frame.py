"""Runs of the tool from a loaded configuration: build the adapters, run, report, summarise.

Returns outcomes; printing and exiting belong to the CLI.
"""

from __future__ import annotations

import shlex
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog

from nsx_route_gc.config import ClusterConfig, Config, MetricsConfig, NsxSettings
from nsx_route_gc.errors import ConfigError, NsxError
from nsx_route_gc.judge import narrow
from nsx_route_gc.logs import carry_context, register_secret
from nsx_route_gc.metrics import MetricsError, RunMetrics, push_run_metrics
from nsx_route_gc.models import TIER1, Action, ClusterInventory
from nsx_route_gc.nsx.client import NsxClient
from nsx_route_gc.ports import ClusterDiscovery, ClusterSource
from nsx_route_gc.progress import NULL_PROGRESS, Progress
from nsx_route_gc.reports.files import write_reports
from nsx_route_gc.reports.render import census
from nsx_route_gc.reports.rows import RunInfo, build_report
from nsx_route_gc.runs.scan import Scanner, ScanResult, utc_now

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CHANGES = 3


NsxFactory = Callable[[NsxSettings], Any]
InventoryFactory = Callable[[Config, Progress], ClusterSource]
DiscoveryFactory = Callable[[Config], ClusterDiscovery | None]


def default_inventory(config: Config, progress: Progress = NULL_PROGRESS) -> ClusterSource:
    # Imported here, as in default_discovery: the Kubernetes client is about half the start-up
    # time of the process; LaterClusters imports it on the inventory's thread instead.
    from nsx_route_gc.clusters.inventory import Inventory  # noqa: PLC0415

    return Inventory(max_workers=config.cluster_concurrency, progress=progress)


def default_discovery(config: Config) -> ClusterDiscovery | None:
    from nsx_route_gc.clusters.capi import build_discovery  # noqa: PLC0415 - see above

    return build_discovery(config)


class LaterClusters:
    """The cluster inventory and discovery, made from their factories on a thread of their
    own from the start: making them imports the Kubernetes client, about half the start-up
    time of the process, which so goes on while NSX is logged in to and its Tier-1s listed.
    No cluster is contacted before the inventory is asked for."""

    def __init__(
        self,
        inventory: Callable[[], ClusterSource],
        discovery: Callable[[], ClusterDiscovery | None],
    ) -> None:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clusters")
        self._made = pool.submit(carry_context(lambda: (inventory(), discovery())))
        pool.shutdown(wait=False)

    def inventory(self, clusters: Sequence[ClusterConfig]) -> list[ClusterInventory]:
        return self._made.result()[0].inventory(clusters)

    def discover(self, configured: Sequence[ClusterInventory]) -> list[ClusterInventory]:
        discovery = self._made.result()[1]
        return discovery.discover(configured) if discovery is not None else []


class Logout:
    """The NSX client closed on a thread of its own: its logout (session destroy) is a round
    trip, half a second on a slow manager, that the judgement and reports need not wait for.
    ``wait()`` before the run summary; ``Logout(None)``: nothing to close."""

    def __init__(self, nsx: Any) -> None:
        self._thread: threading.Thread | None = None
        if nsx is not None:
            self._thread = threading.Thread(target=carry_context(nsx.close), name="nsx-logout")
            self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()


@dataclass
class Outcome:
    exit_code: int
    report: dict[str, Any] | None = None
    paths: list[Path] = field(default_factory=list)
    error: str | None = None


@contextmanager
def bound_run(mode: str, config: Config) -> Iterator[str]:
    """Bind a run id to every log line of this run; scrub its NSX password (or VMC API token;
    the transport adds each access token it obtains) from all of them."""
    for secret in (config.nsx.password, config.nsx.vmc_token):
        if secret is not None:
            register_secret(secret.reveal())
    run_id = uuid.uuid4().hex[:12]
    # The manager on every line: restore --from-log restores only into the one it names.
    with structlog.contextvars.bound_contextvars(run_id=run_id, mode=mode, nsx=config.nsx.host):
        yield run_id


def log_summary(
    report: dict[str, Any] | None,
    exit_code: int,
    started: float,
    *,
    metrics: MetricsConfig | None = None,
    nsx: object = None,
) -> None:
    """The one line that ends every run, with every count; then the metrics push, if any.
    ``nsx``: the run's NSX client, whose peak of calls in flight the line tells."""
    duration = time.monotonic() - started
    fields: dict[str, Any] = {"exit_code": exit_code, "duration_s": round(duration, 3)}
    peak = getattr(nsx, "concurrency_peak", None)
    if isinstance(peak, int):
        fields["nsx_concurrency_peak"] = peak
    if report is not None:
        for kind in ("verdicts", "actions"):
            prefix = kind[:-1]
            for key, count in report["summary"][kind].items():
                fields[f"{prefix}_{key.replace('-', '_')}"] = count
        fields["routers"] = len(report["nsx"]["routers"])
        fields["routers_unlisted"] = len(report["nsx"]["router_errors"])
        fields["clusters"] = len(report["clusters"])
        fields["clusters_failed"] = sum(1 for c in report["clusters"] if c["status"] == "failed")
        fields["clusters_flagged"] = sum(1 for c in report["clusters"] if c.get("flags"))
        fields["nodes_without_route"] = report["summary"].get("nodes_without_route", 0)
        fields["misplaced_routes"] = report["summary"].get("misplaced_routes", 0)
    log.info("run.summary", **fields)
    if metrics is not None and metrics.pushgateway:
        run = run_metrics(report, exit_code, duration)
        try:
            push_run_metrics(metrics.pushgateway, metrics.job, run)
        except MetricsError as exc:
            # The run's own outcome stands; a monitoring outage is logged, not turned into a
            # failed garbage collection.
            log.error("metrics.push_failed", error=str(exc))


def ended_without_report(code: int, error: str, started: float, config: Config) -> Outcome:
    """A run that stopped before its report: the summary line (and metrics) all the same."""
    log_summary(None, code, started, metrics=config.metrics)
    return Outcome(code, error=error)


def run_metrics(report: dict[str, Any] | None, exit_code: int, duration: float) -> RunMetrics:
    success = exit_code in (EXIT_OK, EXIT_CHANGES)
    if report is None:
        return RunMetrics(duration_seconds=duration, success=success, finished_at=time.time())
    actions = report["summary"]["actions"]
    return RunMetrics(
        # From the rows' census, kept since the report was built: no row is made again.
        routes=census(report["routes"]).router_verdicts(),
        deleted=actions.get("deleted", 0),
        delete_failed=actions.get("delete-failed", 0),
        held=actions.get("held", 0),
        clusters=Counter(c["status"] for c in report["clusters"]),
        nodes_without_route=report["summary"].get("nodes_without_route", 0),
        misplaced_routes=report["summary"].get("misplaced_routes", 0),
        duration_seconds=duration,
        success=success,
        finished_at=time.time(),
    )


def run_scan(
    config: Config,
    *,
    report_dir: Path | None,
    detailed_exitcode: bool = False,
    nsx_factory: NsxFactory = NsxClient,
    inventory_factory: InventoryFactory = default_inventory,
    discovery_factory: DiscoveryFactory = default_discovery,
    progress: Progress = NULL_PROGRESS,
    compress: bool = False,
    routers: Sequence[str] = (),
    clusters: Sequence[str] = (),
) -> Outcome:
    """``routers``: scan only these (``--router``); ``clusters``: keep only the routes judged
    to belong to these clusters (``--cluster``), every cluster still inventoried as
    evidence, the limits judged again on what is left."""
    started = time.monotonic()
    if routers:
        config = only_routers(config, routers)
    with bound_run("scan", config) as run_id:
        report = None
        nsx = None
        logout = Logout(None)
        try:
            nsx = nsx_factory(config.nsx)
            try:
                later = LaterClusters(
                    lambda: inventory_factory(config, progress), lambda: discovery_factory(config)
                )
                scanner = Scanner(config, nsx, later, discovery=later, progress=progress)
                result = scanner.scan()
            finally:
                logout = Logout(nsx)
        except NsxError as exc:
            log.error("run.failed", error=str(exc))
            logout.wait()
            return ended_without_report(EXIT_FAILURE, str(exc), started, config)
        finally:
            progress.close()
        try:
            if clusters:
                result = only_clusters(config, result, clusters)
            report = scan_report(config, result, run_id)
            if report_dir is not None:
                report["apply_command"] = apply_command(
                    config, report, report_dir, compress=compress
                )
            paths = write_reports(report, report_dir, compress=compress) if report_dir else []
            code = scan_exit_code(result, detailed_exitcode)
        finally:
            logout.wait()
        log_summary(report, code, started, metrics=config.metrics, nsx=nsx)
        return Outcome(code, report, paths)


def apply_command(
    config: Config, report: dict[str, Any], report_dir: Path, *, compress: bool
) -> str | None:
    """The command that applies exactly this plan (its file, its digest), or None when it
    proposes no deletion."""
    if not report["summary"]["actions"].get("delete") and not report["limit_holds"]:
        return None
    plan = report_dir / ("report.json.gz" if compress else "report.json")
    evidence = (
        report_dir.parent / "apply"
        if report_dir.name == "scan"
        else report_dir.with_name(f"{report_dir.name}-apply")
    )
    return shlex.join(
        [
            "nsx-route-gc",
            "apply",
            "--config",
            config.source,
            "--plan",
            str(plan),
            "--plan-sha256",
            report["plan_sha256"],
            "--report-dir",
            str(evidence),
        ]
    )


def only_routers(config: Config, routers: Sequence[str]) -> Config:
    """The configuration narrowed to ``routers``: Tier-1 paths, inside nsx.routers when set."""
    for router in routers:
        if not TIER1.match(router):
            raise ConfigError(f"--router {router}: not a Tier-1 policy path")
        if config.nsx.routers and router not in config.nsx.routers:
            raise ConfigError(f"--router {router}: not one of nsx.routers of {config.source}")
    return replace(config, nsx=replace(config.nsx, routers=tuple(dict.fromkeys(routers))))


def only_clusters(config: Config, result: ScanResult, names: Sequence[str]) -> ScanResult:
    known = {c.name for c in result.plan.clusters}
    for name in names:
        if name not in known:
            raise ConfigError(
                f"--cluster {name}: no such cluster (known: {', '.join(sorted(known)) or 'none'})"
            )
    wanted = set(names)
    plan = narrow(result.plan, lambda v: v.cluster in wanted, config.policy)
    return replace(result, plan=plan)


def scan_report(config: Config, result: ScanResult, run_id: str) -> dict[str, Any]:
    info = RunInfo(
        mode="scan",
        started_at=result.started_at,
        finished_at=result.finished_at,
        nsx_host=config.nsx.host,
        config_source=config.source,
        run_id=run_id,
        policy=config.policy,
    )
    return build_report(info, result.plan, errors=result.failures)


def scan_exit_code(result: ScanResult, detailed: bool) -> int:
    if result.failures:
        return EXIT_FAILURE
    if detailed and any(v.action is Action.DELETE for v in result.plan.verdicts):
        return EXIT_CHANGES
    return EXIT_OK


__all__ = [
    "EXIT_CHANGES",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "Outcome",
    "run_scan",
    "utc_now",
]
