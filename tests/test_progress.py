"""Progress on a terminal: rich bars for a person watching, nothing for logs and pipes."""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from pathlib import Path

from kubernetes.client import ApiClient
from rich.console import Console

from nsx_route_gc.clusters.inventory import Inventory
from nsx_route_gc.config import ClusterConfig, Config, NsxSettings
from nsx_route_gc.errors import KubeError
from nsx_route_gc.models import ClusterInventory, ClusterStatus, Route
from nsx_route_gc.progress import NULL_PROGRESS, NullProgress, RichProgress, choose_progress
from nsx_route_gc.runs.scan import Scanner


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class RecordingTask:
    def __init__(self) -> None:
        self.done = 0
        self._lock = threading.Lock()

    def advance(self, amount: int = 1) -> None:
        with self._lock:
            self.done += amount


class RecordingProgress:
    def __init__(self) -> None:
        self.tasks: dict[str, tuple[int | None, RecordingTask]] = {}
        self.closed = False

    def task(self, name: str, total: int | None = None) -> RecordingTask:
        task = RecordingTask()
        self.tasks[name] = (total, task)
        return task

    def close(self) -> None:
        self.closed = True


def test_rich_progress_shows_each_task_with_its_count() -> None:
    out = io.StringIO()
    progress = RichProgress(Console(file=out, force_terminal=True, width=100))
    routers = progress.task("routers listed", total=3)
    for _ in range(3):
        routers.advance()
    progress.task("clusters inventoried", total=2).advance(2)
    progress.close()

    text = out.getvalue()
    assert "routers listed" in text
    assert "3/3" in text
    assert "clusters inventoried" in text
    assert "2/2" in text


def test_null_progress_is_chosen_for_json_logs_and_when_stderr_is_not_a_terminal() -> None:
    assert isinstance(choose_progress("json", Tty()), NullProgress)
    assert isinstance(choose_progress("auto", io.StringIO()), NullProgress)
    assert isinstance(choose_progress("console", io.StringIO()), NullProgress)
    assert isinstance(choose_progress("auto", Tty()), RichProgress)
    assert isinstance(choose_progress("console", Tty()), RichProgress)


def test_null_progress_accepts_every_call_and_shows_nothing() -> None:
    task = NULL_PROGRESS.task("deletions done", total=10)
    task.advance()
    task.advance(5)
    NULL_PROGRESS.close()
    assert isinstance(NULL_PROGRESS, NullProgress)


class FakeNsx:
    def list_routers(self) -> list[str]:
        return ["/infra/tier-1s/a", "/infra/tier-1s/b", "/infra/tier-1s/c"]

    def list_routes(self, router_path: str) -> list[Route]:
        return []


class FakeInventory:
    def inventory(self, clusters: Sequence[ClusterConfig]) -> list[ClusterInventory]:
        return []


def test_scanner_advances_routers_listed_once_per_router() -> None:
    config = Config(nsx=NsxSettings(base_url="https://nsx"))
    progress = RecordingProgress()

    Scanner(config, FakeNsx(), FakeInventory(), progress=progress).scan()

    total, task = progress.tasks["routers listed"]
    assert (total, task.done) == (3, 3)


def test_inventory_advances_clusters_inventoried_failed_ones_too() -> None:
    def factory(cluster: ClusterConfig) -> ApiClient:
        raise KubeError(f"no kubeconfig for {cluster.name}")

    progress = RecordingProgress()
    clusters = [ClusterConfig(f"cl{i}", Path(f"/nowhere/{i}")) for i in range(4)]

    results = Inventory(factory, max_workers=2, progress=progress).inventory(clusters)

    assert [r.status for r in results] == [ClusterStatus.FAILED] * 4
    total, task = progress.tasks["clusters inventoried"]
    assert (total, task.done) == (4, 4)
