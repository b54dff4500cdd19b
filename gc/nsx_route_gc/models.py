"""The domain: routes, nodes, clusters, policy and verdicts. Frozen dataclasses, no I/O."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

CLUSTER_TAG_SCOPE = "vsphere.k8s.io/cluster-name"
NODE_TAG_SCOPE = "vsphere.k8s.io/node-name"
# TKG leaves the CCM's --cluster-name at its default, so this tag value tells clusters apart
# only when somebody changed it.
DEFAULT_CCM_CLUSTER_NAME = "kubernetes"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class Verdict(StrEnum):
    LIVE = "live"
    ORPHANED = "orphaned"
    STALE_NEXT_HOP = "stale-next-hop"
    CONFLICT = "conflict"
    UNATTRIBUTED = "unattributed"
    UNVERIFIED = "unverified"
    FOREIGN = "foreign"


# checked_clusters of a route looked for in every cluster of the run (an unattributed one):
# "every cluster in the report's clusters". Naming 200 clusters on each of 70,000 rows was
# 133 MB of a report.
EVERY_CLUSTER: tuple[str, ...] = ("*",)


def checked_names(checked: Iterable[str], clusters: Iterable[str]) -> list[str]:
    """The clusters a row was checked against, ``EVERY_CLUSTER`` spelt out from ``clusters``
    (the report's)."""
    listed = list(checked)
    return list(clusters) if tuple(listed) == EVERY_CLUSTER else listed


# A Tier-1 gateway's policy path, in the default space or a project's.
TIER1 = re.compile(r"^(?:/orgs/[^/]+/projects/[^/]+)?/infra/tier-1s/[^/]+$")

# Hold reasons of the blast-radius limits: judgement would delete such a route but for how
# many others it deletes beside it.
LIMIT_HOLDS = ("max-delete-percent", "max-deletes")


class Action(StrEnum):
    NONE = "none"
    DELETE = "delete"
    DELETED = "deleted"
    DELETE_FAILED = "delete-failed"
    HELD = "held"
    RESTORED = "restored"


class ClusterStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"
    RETIRED = "retired"
    DELETING = "deleting"


# The keys and common values of a CCM route's body, in the sorted compact form Route.raw has:
# zlib primed with them packs the ~900 bytes of such a body into ~160. Bodies are packed only
# in memory, never stored, so this may change freely.
_BODY_PRESET = (
    b'{"_create_time":17,"_create_user":"admin","_last_modified_time":17,'
    b'"_last_modified_user":"admin","_protection":"NOT_PROTECTED","_revision":0,'
    b'"_system_owned":false,"display_name":"kubernetes_","enabled_on_secondary":false,"id":"'
    b'"marked_for_delete":false,"network":"10.0.0.0/24","next_hops":[{"admin_distance":1,'
    b'"ip_address":"10.0.0.1"}],"overridden":false,"parent_path":"/infra/tier-1s/",'
    b'"path":"/infra/tier-1s//static-routes/","relative_path":"","resource_type":"StaticRoutes",'
    b'"tags":[{"scope":"' + CLUSTER_TAG_SCOPE.encode() + b'","tag":"kubernetes"},'
    b'{"scope":"' + NODE_TAG_SCOPE.encode() + b'","tag":""}],"unique_id":"'
)


# Raw deflate with a 4 KiB window and small hash tables: a body plus the preset fit in the
# window, and allocating zlib's default 256 KiB of state costs more than compressing a body
# (pack_body runs once per listed route: 100,000s of times).
_WINDOW_BITS = -12
_MEM_LEVEL = 4


def pack_body(text: str) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, _WINDOW_BITS, _MEM_LEVEL, zdict=_BODY_PRESET)
    return packer.compress(text.encode()) + packer.flush()


def unpack_body(packed: bytes) -> str:
    unpacker = zlib.decompressobj(_WINDOW_BITS, zdict=_BODY_PRESET)
    return (unpacker.decompress(packed) + unpacker.flush()).decode()


@dataclass(frozen=True, slots=True, init=False)
class Route:
    """One static route as listed from NSX, reduced to what judgement needs.

    ``raw`` is the original NSX object as compact JSON text, byte for byte what the report and
    restore need. It is held packed (``packed``, zlib with a preset of a typical body): a
    sixth of the text's size, so that 100,000 listed routes cost tens of MB, not hundreds.
    """

    router_path: str
    id: str
    path: str
    network: str
    next_hops: tuple[str, ...]
    tags: tuple[tuple[str, str], ...]
    create_time_ms: int | None = None
    revision: int | None = None
    protection: str | None = None
    display_name: str | None = None
    packed: bytes | None = field(default=None, repr=False, compare=False)

    def __init__(
        self,
        router_path: str,
        id: str,
        path: str,
        network: str,
        next_hops: tuple[str, ...],
        tags: tuple[tuple[str, str], ...],
        create_time_ms: int | None = None,
        revision: int | None = None,
        protection: str | None = None,
        display_name: str | None = None,
        raw: str | None = None,
        *,
        packed: bytes | None = None,
    ) -> None:
        # Frozen: fields are set the way the generated __init__ would set them.
        setattr_ = object.__setattr__
        setattr_(self, "router_path", router_path)
        setattr_(self, "id", id)
        setattr_(self, "path", path)
        setattr_(self, "network", network)
        setattr_(self, "next_hops", next_hops)
        setattr_(self, "tags", tags)
        setattr_(self, "create_time_ms", create_time_ms)
        setattr_(self, "revision", revision)
        setattr_(self, "protection", protection)
        setattr_(self, "display_name", display_name)
        setattr_(self, "packed", pack_body(raw) if raw is not None else packed)

    @property
    def raw(self) -> str | None:
        return None if self.packed is None else unpack_body(self.packed)

    def tag_values(self, scope: str) -> tuple[str, ...]:
        return tuple(tag for s, tag in self.tags if s == scope)

    @property
    def nsx_object(self) -> dict[str, object] | None:
        raw = self.raw
        if raw is None:
            return None
        loaded: dict[str, object] = json.loads(raw)
        return loaded


@dataclass(frozen=True, slots=True)
class Node:
    uid: str
    name: str
    pod_cidrs: tuple[str, ...]
    addresses: tuple[str, ...]
    created: datetime | None = None


TIER1_PREFIX = "/infra/tier-1s/"


def ccm_router(router_path: str | None) -> str | None:
    """The Tier-1 the CCM writes to for a configured router path: only the path's last segment
    counts (cloud-provider-vsphere nsxtbroker.go ``getRouterID``), always under /infra."""
    if not router_path:
        return None
    last = router_path.rsplit("/", 1)[-1]
    return f"{TIER1_PREFIX}{last}" if last else None


def manager_key(host: str | None) -> str | None:
    """An NSX manager as host[:port], lower case, without scheme, path or the default port:
    the form two spellings of one manager share (no DNS: an IP and a name stay different)."""
    if not host or not host.strip():
        return None
    text = host.strip().lower()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("/", 1)[0].rsplit("@", 1)[-1]
    if text.endswith(":443"):
        text = text[: -len(":443")]
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return text.rstrip(".") or None


@dataclass(frozen=True, slots=True)
class CcmSettings:
    """What a cluster's CCM is configured with for routes, as read from the cluster (or the
    management cluster, or the memory). Never a credential.

    ``router_path`` is the path as configured; pod routing is on when it is not empty (the
    CCM starts its route provider only then).
    """

    router_path: str | None
    nsx_host: str | None
    source: str

    @property
    def pod_routing(self) -> bool:
        return bool(self.router_path)

    @property
    def router(self) -> str | None:
        return ccm_router(self.router_path)


@dataclass(frozen=True, slots=True)
class ClusterInventory:
    """What is known of one cluster: its nodes when inventoried, its pod CIDRs, its status.

    ``status`` is ``ok`` only when the node list was read whole and was not empty. ``ccm`` is
    what its CCM is configured with (None: unknown, ``warnings`` say why); ``flags`` are set by
    the placement rules (placement.py).
    """

    name: str
    source: str
    status: ClusterStatus
    nodes: tuple[Node, ...] = ()
    pod_cidrs: tuple[str, ...] = ()
    error: str | None = None
    evidence: str | None = None
    ccm: CcmSettings | None = None
    warnings: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RouterListing:
    """The routes of one router, or why they could not be listed whole."""

    path: str
    routes: tuple[Route, ...] = ()
    error: str | None = None

    @property
    def listed(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class Policy:
    min_age: timedelta = timedelta(hours=1)
    cluster_gone_after: timedelta = timedelta(hours=1)
    allow_overwrite: bool = False
    unattributed: str = "report"  # report | delete
    max_deletes: int = 100
    max_delete_percent: float = 50.0
    protect_tag_scopes: tuple[str, ...] = ("nsx-route-gc/keep",)
    protect_route_ids: tuple[str, ...] = ()
    protect_networks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RouteVerdict:
    """A route, what it is, and what is to be done with it, with the evidence."""

    route: Route
    verdict: Verdict
    reason: str | None = None
    cluster: str | None = None
    node: str | None = None
    action: Action = Action.NONE
    hold_reason: str | None = None
    shadows: str | None = None
    severity: str | None = None
    flag: str | None = None
    checked_clusters: tuple[str, ...] = ()
    # Set on a managed route of a live node found on a router other than the one its
    # cluster's CCM writes to now (placement.py): that router, as the CCM maps it.
    expected_router: str | None = None

    @property
    def misplaced(self) -> bool:
        return self.expected_router is not None


@dataclass(frozen=True, slots=True)
class MissingRoute:
    """A live node whose route is not on the router its cluster's CCM writes to."""

    cluster: str
    node: str
    uid: str
    pod_cidrs: tuple[str, ...]
    missing_cidrs: tuple[str, ...]
    expected_router: str
    created: datetime
    age: timedelta


@dataclass(frozen=True, slots=True)
class Plan:
    """The outcome of judgement: a verdict for every route of every router listed whole."""

    routers: tuple[RouterListing, ...]
    clusters: tuple[ClusterInventory, ...]
    verdicts: tuple[RouteVerdict, ...]
    # Routers whose deletions a blast-radius limit held back, with the limit's explanation.
    limit_holds: tuple[tuple[str, str], ...] = ()
    # Live nodes without their route (placement.py); never an action.
    missing: tuple[MissingRoute, ...] = ()

    @property
    def deletions(self) -> tuple[RouteVerdict, ...]:
        return tuple(v for v in self.verdicts if v.action is Action.DELETE)


def parse_network(text: str) -> IPNetwork:
    """A CIDR as NSX or Kubernetes wrote it; host bits set are tolerated, as NSX does."""
    return ipaddress.ip_network(text.strip(), strict=False)


def parse_managed_id(route_id: str) -> tuple[str, str] | None:
    """Split a CCM route id ``<node uid>_<cidr with / as _>`` into (uid, cidr), else None."""
    uid, sep, rest = route_id.partition("_")
    if not sep or not _UUID.match(uid):
        return None
    prefix, sep, length = rest.rpartition("_")
    if not sep or not prefix or not length.isdigit():
        return None
    return uid.lower(), f"{prefix}/{length}"


def plan_sha256(nsx_host: str, deletions: Iterable[tuple[str, str, int | None]]) -> str:
    """Digest of a plan: the NSX host and each (router path, route id, revision) to delete."""
    body = {
        "nsx_host": nsx_host,
        "deletions": sorted([router, rid, rev] for router, rid, rev in deletions),
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


# The ids the tool writes to: what the CCM writes (a UUID, "_", an address, "_", a length)
# and nothing that changes what a URL names ("/", "..", "?", "#", "%", spaces). Route ids
# and the ids in a Tier-1's path alike.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,254}$")
_ID = r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,254}"
# A Tier-1 in the default space or in a project of the default org: the only routers whose
# static routes the tool deletes or restores.
_TIER1_ROUTER = re.compile(rf"^(?:/orgs/default/projects/{_ID})?/infra/tier-1s/{_ID}$")
STATIC_ROUTES = "/static-routes/"


def safe_id(text: str) -> bool:
    """Whether ``text`` may stand as one segment of a policy path the tool writes to."""
    return bool(_SAFE_ID.match(text)) and ".." not in text


def tier1_router(path: str) -> bool:
    """Whether ``path`` is a Tier-1 policy path the tool may write below (no "..")."""
    return bool(_TIER1_ROUTER.match(path)) and ".." not in path


def static_route_path(router_path: str, route_id: str) -> str:
    """The policy path of a route, made from its Tier-1 and its id: the only way a path the
    tool writes to is made. ValueError naming the part that is refused."""
    if not tier1_router(router_path):
        raise ValueError(f"{router_path!r} is not a Tier-1 policy path")
    if not safe_id(route_id):
        raise ValueError(f"route id {route_id!r} is not a plain static route id")
    return f"{router_path}{STATIC_ROUTES}{route_id}"


def split_static_route_path(path: str) -> tuple[str, str]:
    """(router path, route id) of a static route's policy path; ValueError unless the path is
    exactly what ``static_route_path`` makes."""
    router, sep, route_id = path.rpartition(STATIC_ROUTES)
    if not sep or static_route_path(router, route_id) != path:
        raise ValueError(f"{path!r} is not a Tier-1 static route path")
    return router, route_id
