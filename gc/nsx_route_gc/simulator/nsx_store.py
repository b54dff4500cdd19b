"""The simulated NSX manager's objects: Tier-1s and their static routes.

Each Tier-1 keeps a dict of routes and a sorted id list, so a list page costs O(log n + page)
whatever the number of routes. Routes are stored compactly; ``NsxState.route_json`` keeps
each one's full NSX JSON for list pages, rendered again only when the route changes. The
caller (``NsxState``) holds its lock around every call.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import ipaddress
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from nsx_route_gc.simulator.model import SimRoute

PROTECTION_VALUES = ("NOT_PROTECTED", "PROTECTED", "REQUIRE_OVERRIDE")
_UNIQUE_NS = uuid.UUID("6f1c7b1e-3c2a-4f35-9a53-6b0e8a7d2c11")
_WRITABLE = ("display_name", "description", "network", "next_hops", "tags")
# Fields any client may send back from a GET; ignored on write, like NSX does.
_READ_ONLY = frozenset(
    {
        "resource_type", "id", "path", "parent_path", "relative_path", "unique_id",
        "marked_for_delete", "overridden", "_create_time", "_last_modified_time",
        "_create_user", "_last_modified_user", "_revision", "_system_owned", "_protection",
        "_links", "_schema", "_self", "realization_id", "remote_path", "origin_site_id",
        "owner_id",
    }
)  # fmt: skip

NextHop = tuple[str, int, tuple[str, ...] | None]


class NsxFault(Exception):
    """An NSX error answer: status and the fields of the NSX error body."""

    _NAMES: ClassVar[dict[int, str]] = {
        400: "BAD_REQUEST",
        401: "UNAUTHORIZED",
        403: "FORBIDDEN",
        404: "NOT_FOUND",
        408: "REQUEST_TIMEOUT",
        409: "CONFLICT",
        412: "PRECONDITION_FAILED",
        429: "TOO_MANY_REQUESTS",
        500: "INTERNAL_SERVER_ERROR",
        503: "SERVICE_UNAVAILABLE",
    }

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {
            "httpStatus": self._NAMES.get(self.status, str(self.status)),
            "error_code": self.error_code,
            "module_name": "common-services",
            "error_message": self.message,
            "related_errors": [],
        }


def encode_cursor(after: str, page: int) -> str:
    raw = json.dumps({"a": after, "p": page}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str | None) -> tuple[str | None, int]:
    """(last id of the previous page, index of the page asked for); (None, 0) for the first."""
    if not cursor:
        return None, 0
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return str(data["a"]), int(data["p"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise NsxFault(400, 287, "Invalid cursor") from exc


def not_found(path: str) -> NsxFault:
    return NsxFault(404, 500090, f"The path=[{path}] is invalid")


@dataclass(slots=True)
class StoredRoute:
    id: str
    network: str
    next_hops: tuple[NextHop, ...]
    tags: tuple[tuple[str, str], ...]
    display_name: str
    description: str | None
    create_ms: int
    modified_ms: int
    create_user: str
    modified_user: str
    revision: int
    protection: str
    serial: int  # distinguishes incarnations of one path, for unique_id
    extra: dict[str, Any] | None = None  # other writable fields a client sent

    @classmethod
    def of(cls, route: SimRoute, *, created_ms: int, serial: int) -> StoredRoute:
        """A scenario's route as stored, untouched since it was created at ``created_ms``."""
        return cls(
            id=route.id,
            network=route.network,
            next_hops=tuple((hop, 1, None) for hop in route.next_hops),
            tags=route.tags,
            display_name=route.display_name or route.id,
            description=None,
            create_ms=created_ms,
            modified_ms=created_ms,
            create_user=route.create_user,
            modified_user=route.create_user,
            revision=route.revision,
            protection=route.protection,
            serial=serial,
        )


def render_route(router: str, r: StoredRoute) -> dict[str, Any]:
    path = f"{router}/static-routes/{r.id}"
    hops = []
    for ip, distance, scope in r.next_hops:
        hop: dict[str, Any] = {"ip_address": ip, "admin_distance": distance}
        if scope is not None:
            hop["scope"] = list(scope)
        hops.append(hop)
    obj: dict[str, Any] = {
        "resource_type": "StaticRoutes",
        "id": r.id,
        "display_name": r.display_name,
        "path": path,
        "parent_path": router,
        "relative_path": r.id,
        "unique_id": str(uuid.uuid5(_UNIQUE_NS, f"{path}#{r.serial}")),
        "network": r.network,
        "next_hops": hops,
        "tags": [{"scope": s, "tag": t} for s, t in r.tags],
        "enabled_on_secondary": False,
        "marked_for_delete": False,
        "overridden": False,
        "_create_time": r.create_ms,
        "_create_user": r.create_user,
        "_last_modified_time": r.modified_ms,
        "_last_modified_user": r.modified_user,
        "_system_owned": False,
        "_protection": r.protection,
        "_revision": r.revision,
    }
    if r.description is not None:
        obj["description"] = r.description
    if r.extra:
        obj.update(r.extra)
    return obj


class Tier1:
    __slots__ = ("create_ms", "ids", "path", "routes")

    def __init__(self, path: str, create_ms: int) -> None:
        self.path = path
        self.create_ms = create_ms
        self.routes: dict[str, StoredRoute] = {}
        self.ids: list[str] = []  # sorted, for cursor paging

    @property
    def id(self) -> str:
        return self.path.rsplit("/", 1)[1]

    def render(self) -> dict[str, Any]:
        return {
            "resource_type": "Tier1",
            "id": self.id,
            "display_name": self.id,
            "path": self.path,
            "parent_path": self.path.rsplit("/tier-1s/", 1)[0] or "/infra",
            "relative_path": self.id,
            "marked_for_delete": False,
            "overridden": False,
            "_create_time": self.create_ms,
            "_create_user": "admin",
            "_last_modified_time": self.create_ms,
            "_last_modified_user": "admin",
            "_system_owned": False,
            "_protection": "NOT_PROTECTED",
            "_revision": 0,
        }

    def add(self, route: StoredRoute) -> None:
        if route.id not in self.routes:
            bisect.insort(self.ids, route.id)
        self.routes[route.id] = route

    def remove(self, route_id: str) -> StoredRoute | None:
        route = self.routes.pop(route_id, None)
        if route is not None:
            del self.ids[bisect.bisect_left(self.ids, route_id)]
        return route

    def page(self, after: str | None, size: int) -> tuple[list[StoredRoute], str | None]:
        """Up to ``size`` routes after id ``after``, and the last id when more follow."""
        start = 0 if after is None else bisect.bisect_right(self.ids, after)
        chunk = self.ids[start : start + size]
        more = start + size < len(self.ids)
        return [self.routes[i] for i in chunk], (chunk[-1] if more and chunk else None)


def _parse_hops(value: Any) -> tuple[NextHop, ...]:
    if not isinstance(value, list) or not value:
        raise NsxFault(400, 287, "Field level validation errors: next_hops is required")
    hops: list[NextHop] = []
    for hop in value:
        if not isinstance(hop, dict) or not isinstance(hop.get("ip_address"), str):
            raise NsxFault(400, 287, "Field level validation errors: next_hops.ip_address")
        try:
            ipaddress.ip_address(hop["ip_address"])
        except ValueError as exc:
            raise NsxFault(400, 287, f"Invalid next hop IP {hop['ip_address']!r}") from exc
        distance = hop.get("admin_distance", 1)
        if not isinstance(distance, int) or not 1 <= distance <= 255:
            raise NsxFault(400, 287, "admin_distance must be between 1 and 255")
        scope = hop.get("scope")
        hops.append((hop["ip_address"], distance, tuple(scope) if scope is not None else None))
    return tuple(hops)


def _parse_tags(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise NsxFault(400, 287, "Field level validation errors: tags must be a list")
    return tuple((str(t.get("scope", "")), str(t.get("tag", ""))) for t in value)


def _parse_network(value: Any) -> str:
    if not isinstance(value, str):
        raise NsxFault(400, 287, "Field level validation errors: network is required")
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise NsxFault(400, 287, f"Invalid network {value!r}") from exc
    return value


@dataclass(frozen=True, slots=True)
class Write:
    """One validated change, ready to apply: a create/update (``route``) or a delete."""

    tier1: Tier1
    route_id: str
    route: StoredRoute | None  # None: delete


def check_protection(existing: StoredRoute, path: str, allow_overwrite: bool) -> None:
    if existing.protection == "PROTECTED":
        raise NsxFault(403, 500081, f"Object {path} is protected and cannot be modified")
    if existing.protection == "REQUIRE_OVERRIDE" and not allow_overwrite:
        raise NsxFault(
            403,
            500081,
            f"Principal identity owned object {path} can only be modified with "
            "X-Allow-Overwrite: true",
        )


# Makes the answer to a stale _revision: (path, revision given, revision current) -> fault.
Stale = Callable[[str, object, int], NsxFault]


def stale_412(path: str, given: object, current: int) -> NsxFault:
    return NsxFault(
        412,
        604,
        f"The object {path} was modified by somebody else: revision {given} given, "
        f"{current} current",
    )


def check_revision(
    existing: StoredRoute, path: str, body: dict[str, Any], stale: Stale = stale_412
) -> None:
    if "_revision" in body and body["_revision"] != existing.revision:
        raise stale(path, body["_revision"], existing.revision)


def prepare_upsert(
    tier1: Tier1,
    route_id: str,
    body: Any,
    *,
    user: str,
    now_ms: int,
    serial: int,
    allow_overwrite: bool,
    replace: bool,
    check_rev: bool = True,
    stale: Stale = stale_412,
) -> Write:
    """Validate a PATCH (merge) or PUT (``replace``) of one route, without applying it."""
    path = f"{tier1.path}/static-routes/{route_id}"
    if not isinstance(body, dict):
        raise NsxFault(400, 287, "The request body must be a StaticRoutes object")
    if body.get("id") not in (None, route_id):
        raise NsxFault(400, 500087, f"Id {body['id']!r} in the body does not match the URL")
    existing = tier1.routes.get(route_id)
    if existing is None:
        route = StoredRoute(
            id=route_id,
            network=_parse_network(body.get("network")),
            next_hops=_parse_hops(body.get("next_hops")),
            tags=_parse_tags(body.get("tags")),
            display_name=str(body.get("display_name") or route_id),
            description=body.get("description"),
            create_ms=now_ms,
            modified_ms=now_ms,
            create_user=user,
            modified_user=user,
            revision=0,
            protection="NOT_PROTECTED",
            serial=serial,
        )
    else:
        check_protection(existing, path, allow_overwrite)
        if replace and "_revision" not in body:
            raise NsxFault(412, 604, f"_revision is required to replace existing object {path}")
        if check_rev:
            check_revision(existing, path, body, stale)
        merged = dict(render_route(tier1.path, existing)) if not replace else {}
        merged.update(body)
        route = StoredRoute(
            id=route_id,
            network=_parse_network(merged.get("network")),
            next_hops=_parse_hops(merged.get("next_hops")),
            tags=_parse_tags(merged.get("tags")),
            display_name=str(merged.get("display_name") or route_id),
            description=merged.get("description"),
            create_ms=existing.create_ms,
            modified_ms=now_ms,
            create_user=existing.create_user,
            modified_user=user,
            revision=existing.revision + 1,
            protection=existing.protection,
            serial=existing.serial,
        )
    extra = {
        k: v
        for k, v in body.items()
        if k not in _READ_ONLY and k not in _WRITABLE and not k.startswith("_")
    }
    if existing is not None and existing.extra and not replace:
        extra = {**existing.extra, **extra}
    route.extra = extra or None
    return Write(tier1, route_id, route)


def prepare_delete(
    tier1: Tier1,
    route_id: str,
    body: dict[str, Any] | None,
    *,
    allow_overwrite: bool,
    check_rev: bool,
    stale: Stale = stale_412,
) -> Write | None:
    """Validate deleting one route; None when it does not exist."""
    existing = tier1.routes.get(route_id)
    if existing is None:
        return None
    path = f"{tier1.path}/static-routes/{route_id}"
    check_protection(existing, path, allow_overwrite)
    if check_rev and body is not None:
        check_revision(existing, path, body, stale)
    return Write(tier1, route_id, None)
