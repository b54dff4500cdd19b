"""The ports the domain needs: where routes come from, where clusters come from, and who
discovers more clusters. Adapters implement them; runs wire them together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from nsx_route_gc.config import ClusterConfig
from nsx_route_gc.models import ClusterInventory, Route


class RouteSource(Protocol):
    def list_routers(self) -> list[str]: ...

    def list_routes(self, router_path: str) -> list[Route]: ...


class ClusterSource(Protocol):
    def inventory(self, clusters: Sequence[ClusterConfig]) -> list[ClusterInventory]: ...


class ClusterDiscovery(Protocol):
    """Extra clusters beyond the configured ones (Cluster API, remembered clusters)."""

    def discover(self, configured: Sequence[ClusterInventory]) -> list[ClusterInventory]: ...
