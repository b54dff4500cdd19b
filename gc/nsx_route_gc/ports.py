"""The ports the domain needs: where routes come from, where clusters come from, and who
discovers more clusters. Adapters implement them; runs wire them together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from nsx_route_gc.config import ClusterConfig
from nsx_route_gc.models import ClusterInventory, Route


class RouteSource(Protocol):
    def list_routers(self) -> list[str]: ...

    def list_routes(self, router_path: str) -> list[Route]: ...


@runtime_checkable
class Paced(Protocol):
    """A RouteSource whose calls go through an adaptive in-flight limit (the NSX client):
    how many routers are worth listing at once now."""

    def parallel_width(self) -> int: ...


class ClusterSource(Protocol):
    def inventory(self, clusters: Sequence[ClusterConfig]) -> list[ClusterInventory]: ...


class ClusterDiscovery(Protocol):
    """Extra clusters beyond the configured ones (Cluster API, remembered clusters)."""

    def discover(self, configured: Sequence[ClusterInventory]) -> list[ClusterInventory]: ...


class DeletionJournal(Protocol):
    """Where the deleter puts each route's body before its deletion is sent, and what became
    of it after (``reports.journal``): the way back when the run dies before its report."""

    def sending(self, routes: Sequence[Route], *, via: str) -> int:
        """Record ``routes`` (durably) before their deletion is sent; the batch number."""
        ...

    def outcome(self, batch: int, outcomes: Sequence[tuple[Route, str, str | None]]) -> None:
        """Record what became of routes: (route, outcome, why) per route."""
        ...


class NoJournal:
    """No journal (no report directory): nothing is recorded."""

    def sending(self, routes: Sequence[Route], *, via: str) -> int:
        return 0

    def outcome(self, batch: int, outcomes: Sequence[tuple[Route, str, str | None]]) -> None:
        return None
