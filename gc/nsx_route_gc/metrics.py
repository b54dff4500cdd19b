"""Prometheus gauges for one run, pushed to a Pushgateway at the end of it (also after a failure).

Two Pushgateway groups, because the two kinds of series live by different rules:

* ``/metrics/job/<job>`` holds what the *latest* run saw. It is replaced whole (HTTP PUT) by
  every run, successful or not, so a router or verdict that disappeared does not linger with
  the number of an older run.
* ``/metrics/job/<job>/outcome/success`` holds only ``last_success_timestamp_seconds``. It is
  replaced (PUT) by successful runs and never touched by failed ones, so a failure cannot reset
  it and ``time() - nsx_route_gc_last_success_timestamp_seconds`` keeps alerting correctly.

The obvious alternative, one group with PUT on success and POST ("pushadd") without the
success gauge on failure, keeps stale label sets: POST replaces a metric only when the new push
carries samples for it, and a run that failed before listing any router pushes none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import structlog
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway
from prometheus_client.exposition import basic_auth_handler, default_handler

from nsx_route_gc.errors import RouteGcError
from nsx_route_gc.models import ClusterStatus, Verdict

log = structlog.get_logger(__name__)

PREFIX = "nsx_route_gc_"
SUCCESS_GROUPING_KEY = {"outcome": "success"}

Pusher = Callable[..., None]
Handler = Callable[..., Callable[[], None]]


class MetricsError(RouteGcError):
    """Pushing the run's metrics to the Pushgateway failed."""


@dataclass(frozen=True, kw_only=True)
class RunMetrics:
    """What one run did, in the shape the gauges need.

    A run that failed early leaves the counts at their defaults; the outcome and the timing are
    always known, so they are required.
    """

    routes: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (router, verdict)
    deleted: int = 0
    delete_failed: int = 0
    held: int = 0
    clusters: Mapping[str, int] = field(default_factory=dict)  # status -> clusters
    nodes_without_route: int = 0  # live nodes whose route is missing (placement.py)
    misplaced_routes: int = 0  # routes of live nodes on another router than their CCM's
    duration_seconds: float
    success: bool
    finished_at: float  # epoch seconds


def push_run_metrics(
    gateway: str,
    job: str,
    run: RunMetrics,
    *,
    registry_factory: Callable[[], CollectorRegistry] = CollectorRegistry,
    pusher: Pusher = push_to_gateway,
    timeout: float = 10,
) -> None:
    """Push ``run`` to the Pushgateway at ``gateway`` (``http[s]://[user:pass@]host:port``)."""
    url, handler = _endpoint(gateway)
    shown = safe_url(gateway)
    _push(pusher, url, shown, job, run_registry(run, registry_factory), None, handler, timeout)
    if run.success:
        success = registry_factory()
        Gauge(
            f"{PREFIX}last_success_timestamp_seconds",
            "When the last successful run finished, in seconds since the epoch.",
            registry=success,
        ).set(run.finished_at)
        _push(pusher, url, shown, job, success, SUCCESS_GROUPING_KEY, handler, timeout)
    log.info("metrics.pushed", gateway=shown, job=job, success=run.success)


def run_registry(
    run: RunMetrics, registry_factory: Callable[[], CollectorRegistry] = CollectorRegistry
) -> CollectorRegistry:
    """The gauges of the run group (everything except the last-success timestamp)."""
    registry = registry_factory()

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(f"{PREFIX}{name}", doc, labels, registry=registry)

    routes = gauge(
        "routes", "Routes seen by the run, by router and verdict.", ("router", "verdict")
    )
    # Every verdict of every router listed gets a sample, zeros included, so a dashboard sees
    # "0 orphaned" rather than a missing series.
    for router in sorted({router for router, _ in run.routes}):
        for known in Verdict:
            routes.labels(router=router, verdict=known.value).set(0)
    for (router, verdict), count in run.routes.items():
        routes.labels(router=router, verdict=verdict).set(count)
    gauge("deleted_routes", "Routes deleted by the run.").set(run.deleted)
    gauge("delete_failed_routes", "Routes the run tried and failed to delete.").set(
        run.delete_failed
    )
    gauge("held_routes", "Orphaned routes the run kept back (grace, protection, limits).").set(
        run.held
    )
    gauge(
        "nodes_without_route",
        "Live nodes with pod routing on whose route is missing from their CCM's router.",
    ).set(run.nodes_without_route)
    gauge(
        "misplaced_routes",
        "Routes of live nodes found on a router other than their cluster's CCM router.",
    ).set(run.misplaced_routes)
    clusters = gauge("clusters", "Clusters considered by the run, by status.", ("status",))
    for known_status in ClusterStatus:
        clusters.labels(status=known_status.value).set(0)
    for status, count in run.clusters.items():
        clusters.labels(status=status).set(count)
    gauge("run_duration_seconds", "How long the run took.").set(run.duration_seconds)
    gauge("last_run_timestamp_seconds", "When the last run finished, epoch seconds.").set(
        run.finished_at
    )
    gauge("last_run_success", "1 when the last run succeeded, else 0.").set(1 if run.success else 0)
    return registry


def safe_url(gateway: str) -> str:
    """The gateway URL without user:password, fit for messages and logs."""
    parts = urlsplit(gateway if "://" in gateway else f"http://{gateway}")
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal: urlsplit drops its brackets
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _endpoint(gateway: str) -> tuple[str, Handler]:
    """Split credentials out of the URL: urllib would take ``user:pass@host`` for the host."""
    parts = urlsplit(gateway if "://" in gateway else f"http://{gateway}")
    if parts.scheme not in {"http", "https"}:
        raise MetricsError(f"metrics.pushgateway {safe_url(gateway)}: expected http or https")
    if parts.username is None:
        return safe_url(gateway), default_handler
    username, password = parts.username, parts.password or ""

    def handler(
        url: str, method: str, timeout: float | None, headers: list[Any], data: bytes
    ) -> Callable[[], None]:
        return basic_auth_handler(url, method, timeout, headers, data, username, password)

    return safe_url(gateway), handler


def _push(
    pusher: Pusher,
    url: str,
    shown: str,
    job: str,
    registry: CollectorRegistry,
    grouping_key: dict[str, str] | None,
    handler: Handler,
    timeout: float,
) -> None:
    try:
        pusher(
            url,
            job=job,
            registry=registry,
            grouping_key=grouping_key,
            timeout=timeout,
            handler=handler,
        )
    except (OSError, ValueError) as exc:
        # OSError covers URLError/HTTPError and timeouts; ValueError a malformed URL.
        reason = " ".join(str(exc).split()) or type(exc).__name__
        group = "/".join(f"{k}/{v}" for k, v in (grouping_key or {}).items())
        where = f"job {job!r}" + (f" group {group}" if group else "")
        raise MetricsError(f"pushing metrics to {shown} ({where}) failed: {reason}") from exc
