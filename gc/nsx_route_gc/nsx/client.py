"""The NSX Policy API as nsx-route-gc needs it: Tier-1s, their static routes, deletions.

Transport concerns (authentication, TLS, retries, rate limit) live in ``nsx.transport``.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Self

import requests
import structlog

from nsx_route_gc.config import NsxSettings
from nsx_route_gc.errors import NsxError
from nsx_route_gc.logs import carry_context
from nsx_route_gc.models import (
    NODE_TAG_SCOPE,
    STATIC_ROUTES,
    Route,
    safe_id,
    split_static_route_path,
    tier1_router,
)
from nsx_route_gc.nsx.query import (
    SEARCH_COUNT_FIELDS,
    SEARCH_FIELDS,
    SEARCH_PATH,
    TIER1_PATH,
    route_presence_query,
    search_context,
)
from nsx_route_gc.nsx.transport import API_PREFIX, NsxTransport, is_revision_conflict

log = structlog.get_logger(__name__)

PROJECTS_PATH = "/orgs/default/projects"
# A cursor with this prefix marks the last page, like no cursor at all (nsxlib
# vmware_nsxlib/v3/client.py NULL_CURSOR_PREFIX).
NULL_CURSOR_PREFIX = "0000"
# What a manager without projects (before NSX 4.0, VMC) answers at PROJECTS_PATH.
NO_PROJECTS_STATUSES = (400, 403, 404)
# Fields of a listed route that say where it lives: the hierarchical tree says that instead,
# built from the router listed and the route's id, never from what an answer claims.
_PLACEMENT_FIELDS = frozenset(
    {"path", "parent_path", "relative_path", "_links", "_self", "_schema", "remote_path"}
)


class NsxClient:
    """A client of one NSX manager; safe to share between threads.

    The login (session) or token exchange (vmc) happens when routers are listed, before any
    is walked, or else on the first call; ``close()`` (or leaving the ``with`` block)
    destroys the session.
    """

    def __init__(
        self,
        settings: NsxSettings,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._http = NsxTransport(settings, session=session, sleep=sleep, clock=clock, rng=rng)
        # Routes are built from listed pages on this one thread, whichever thread listed
        # them: many threads each decoding pages fight over the GIL and, measured at 100,000
        # routes, burn half again the CPU of one thread doing it while the others wait on
        # the network.
        self._builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nsx-routes")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._builder.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    @property
    def concurrency_peak(self) -> int:
        """The widest the adaptive in-flight limit was this run (the run summary says it)."""
        return self._http.concurrency_peak

    def parallel_width(self) -> int:
        """How many calls the adaptive limit lets be in flight now: how many routers to
        list at once (``ports.Paced``)."""
        return self._http.in_flight_limit

    @property
    def workers(self) -> int:
        """Threads worth giving to work that makes NSX calls: as many as may be in flight."""
        return self._http.max_in_flight

    @property
    def request_counts(self) -> dict[str, int]:
        """HTTP requests sent by kind (attempts included), and ``retry_<status>``,
        ``retry_connection`` and ``relogin`` events."""
        return self._http.counts()

    # ------------------------------------------------------------------------------ routers

    def list_routers(self) -> list[str]:
        """The configured routers as given, else every Tier-1 in /infra and in every project.

        Authenticates first: a refused login ends the run here, before routers are walked.
        """
        self._http.authenticate()
        if self._settings.routers:
            return list(self._settings.routers)
        # /infra's Tier-1s and the projects are asked for at once, then every project's
        # Tier-1s at once: on a slow manager each round trip in a row is the run's time.
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="tier1s") as pool:
            infra = pool.submit(carry_context(self._tier1_paths), "/infra")
            projects = self._project_paths()
            found = set(infra.result())
            listed = pool.map(carry_context(self._tier1_paths), [f"{p}/infra" for p in projects])
            for paths in listed:
                found.update(paths)
        routers = sorted(found)
        log.info("nsx.routers.discovered", routers=len(routers))
        return routers

    def router_exists(self, router_path: str) -> bool:
        """Whether NSX has this Tier-1 (validate): one GET, 404 is no."""
        rest = API_PREFIX + router_path.rstrip("/")
        response = self._http.request("GET", rest, kind="get", allow=(404,))
        return response.status_code != 404

    def _tier1_paths(self, infra: str) -> list[str]:
        items = self._list_all(f"{infra}/tier-1s", kind="list") or []
        return [_own_path(item, f"{infra}/tier-1s/{item['id']}") for item in items]

    def _project_paths(self) -> list[str]:
        # NSX before 4.0 and VMC have no projects (terraform-provider-nsxt PR #910); they
        # answer 404, 400 or 403 here, which is neither a failed run nor a refused login.
        items = self._list_all(PROJECTS_PATH, kind="list", absent=NO_PROJECTS_STATUSES)
        if items is None:
            # Listed once a run: logged once.
            log.info("nsx.projects.unsupported", host=self._settings.host)
            return []
        # The "default" project is /infra itself, already listed.
        return [
            _own_path(item, f"{PROJECTS_PATH}/{item['id']}")
            for item in items
            if item["id"] != "default"
        ]

    # ------------------------------------------------------------------------------- routes

    def list_routes(self, router_path: str) -> list[Route]:
        """Every static route of a router, all pages; NsxError unless listed whole."""
        router = router_path.rstrip("/")
        # One router in progress per call the limit lets be in flight: its pages stay decoded
        # until the builder thread has made them routes.
        with self._http.permits:
            items = self._list_all(f"{router}/static-routes", kind="list") or []
            routes = self._builder.submit(_routes_from_nsx, items, router).result()
        log.debug("nsx.routes.listed", router=router, routes=len(routes))
        return routes

    def get_route(self, route_path: str) -> Route | None:
        """The route as NSX has it now, or None when it does not exist (404)."""
        router, _ = _writable(route_path, "read")
        rest = API_PREFIX + route_path
        response = self._http.request("GET", rest, kind="get", allow=(404,))
        if response.status_code == 404:
            return None
        obj = self._http.decode_json(response, "GET", rest)
        if not isinstance(obj, dict):
            raise NsxError(f"malformed JSON from NSX at GET {rest}: not an object")
        # The router asked about, never the answer's parent_path: a route that claims another
        # home keeps that claim in its path, which then differs from the one asked for.
        return route_from_nsx(obj, router)

    def delete_route(self, route_path: str, *, allow_overwrite: bool = False) -> bool:
        """Delete a route: True when NSX accepted, False when it was already gone (404);
        a 404 with error_code 500090 (NSX's stale-revision form) is raised instead."""
        _writable(route_path, "delete")
        rest = API_PREFIX + route_path
        response = self._http.request(
            "DELETE",
            rest,
            kind="delete",
            headers=_overwrite_header(allow_overwrite),
            allow=(404,),
        )
        if response.status_code != 404:
            return True
        error = self._http.api_error("DELETE", rest, response)
        if is_revision_conflict(error):
            raise error  # 404 with 500090: a stale revision, or gone; the caller reads
        return False

    def patch_route(
        self, route_path: str, body: dict[str, Any], *, allow_overwrite: bool = False
    ) -> None:
        """Create or update a route (restore): NSX's PATCH is create-or-update."""
        _writable(route_path, "restore")
        self._http.request(
            "PATCH",
            API_PREFIX + route_path,
            kind="patch",
            json_body=body,
            headers=_overwrite_header(allow_overwrite),
        )

    def hierarchical_delete(
        self,
        routes: Mapping[str, Sequence[Route]],
        *,
        allow_overwrite: bool = False,
    ) -> None:
        """Delete the routes of several Tier-1s of one space (``/infra``, or one project's
        infra) in one transaction: ``routes`` maps each router to its routes. One
        ``ChildResourceReference`` per Tier-1; each route goes as it was listed
        (``network``, ``next_hops``, ``tags``... and its ``_revision``) with
        ``marked_for_delete``, as nsx-operator does: a StaticRoutes stub without ``network``
        and ``next_hops`` may be refused. ``enforce_revision_check=true`` makes NSX refuse
        the whole batch when any route changed since it was listed."""
        references: list[bytes] = []
        spaces = set()
        for router_path, listed in routes.items():
            if not listed:
                continue
            router = router_path.rstrip("/")
            match = TIER1_PATH.match(router)
            if match is None or not tier1_router(router):
                raise NsxError(f"not a Tier-1 policy path: {router_path}")
            for route in listed:
                # Each child is placed by the tree (this router, its id): nothing a listed
                # route says about its own path reaches the body, and its id must be plain.
                if not safe_id(route.id):
                    raise NsxError(
                        f"refused to delete route {route.id!r} on {router_path}: "
                        "not a plain static route id"
                    )
            spaces.add(match["infra"])
            references.append(_reference(match["id"], [_child_delete(r, router) for r in listed]))
        if not references:
            return
        if len(spaces) > 1:
            # One PATCH goes to one space's infra: a project's Tier-1 under /infra would be
            # another router altogether.
            raise NsxError(f"one hierarchical delete cannot span {sorted(spaces)}")
        headers = {"Content-Type": "application/json", **_overwrite_header(allow_overwrite)}
        self._http.request(
            "PATCH",
            API_PREFIX + spaces.pop(),
            kind="hierarchical",
            params={"enforce_revision_check": "true"},
            data=b'{"resource_type":"Infra","children":[' + b",".join(references) + b"]}",
            headers=headers,
        )

    # ------------------------------------------------------------------------------- search

    @property
    def search_page_size(self) -> int:
        """Results per search page asked for (``nsx.page_size``)."""
        return self._settings.page_size

    def search_route_presence(self, routers: Sequence[str]) -> dict[str, dict[str, bool]]:
        """The static routes of ``routers`` that the search index holds, each with its
        ``marked_for_delete``: router -> {route path: marked}, every router a key.

        The routers share one search context (see ``route_search_chunks``). One query, every
        page, and only the fields needed. NsxError unless the answer is whole: malformed, a
        repeated cursor, or a ``result_count`` that moved or disagrees with the results
        received (the index changed while paging, so a result may have been skipped).
        """
        wanted = [r.rstrip("/") for r in routers]
        contexts = {search_context(r) for r in wanted}
        context = contexts.pop() if len(contexts) == 1 else None
        if context is None:
            raise NsxError(f"cannot search the routes of {wanted}: not Tier-1s of one space")
        params = {
            "query": route_presence_query(wanted),
            "page_size": str(self._settings.page_size),
            "included_fields": SEARCH_FIELDS,
        }
        if context:
            params["context"] = context
        found: dict[str, dict[str, bool]] = {r: {} for r in routers}
        asked = {r.rstrip("/"): r for r in routers}
        for path, router, marked in self._search_all(params, len(wanted)):
            # An index may match more than asked; only the routers asked about count.
            if router in asked:
                found[asked[router]][path] = marked
        return found

    def search_route_count(self, routers: Sequence[str]) -> int:
        """How many static routes of ``routers`` the search index holds: one call, the
        first page only, at the smallest page size, for its ``result_count`` ("Count of
        results found (across all pages), set only on first page"; terraform-provider-nsxt
        ``nsxt/policy_search.go`` ``searchLM`` reads it there as the total of all pages).
        The routers share one search context; NsxError when the answer has no count."""
        wanted = [r.rstrip("/") for r in routers]
        contexts = {search_context(r) for r in wanted}
        context = contexts.pop() if len(contexts) == 1 else None
        if context is None:
            raise NsxError(f"cannot search the routes of {wanted}: not Tier-1s of one space")
        params = {
            "query": route_presence_query(wanted),
            "page_size": "1",
            "included_fields": SEARCH_COUNT_FIELDS,
        }
        if context:
            params["context"] = context
        rest = API_PREFIX + SEARCH_PATH
        where = f"GET {rest} (count of the routes of {len(wanted)} router(s))"
        response = self._http.request("GET", rest, kind="search", params=params)
        page = self._http.decode_json(response, "GET", rest)
        count = page.get("result_count") if isinstance(page, dict) else None
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise NsxError(f"malformed JSON from NSX at {where}: no result_count")
        return count

    def _search_all(
        self, params: Mapping[str, str], routers: int
    ) -> Iterator[tuple[str, str, bool]]:
        """(path, router, marked_for_delete) of every result, following ``cursor``; raises
        after the last result when the answer was not whole."""
        rest = API_PREFIX + SEARCH_PATH
        where = f"GET {rest} (routes of {routers} router(s))"
        received = 0
        total: int | None = None
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            page_params = dict(params, cursor=cursor) if cursor else dict(params)
            response = self._http.request("GET", rest, kind="search", params=page_params)
            page = self._http.decode_json(response, "GET", rest)
            results = page.get("results") if isinstance(page, dict) else None
            if not isinstance(results, list):
                raise NsxError(f"malformed JSON from NSX at {where}: no results list")
            # The total is set on the first page only; a later page may omit it, and one
            # that carries a different total means the index changed while paging.
            count = page.get("result_count")
            if total is None or count is not None:
                if isinstance(count, bool) or not isinstance(count, int):
                    raise NsxError(f"malformed JSON from NSX at {where}: no result_count")
                if total is not None and count != total:
                    raise NsxError(f"NSX search results changed while paging at {where}")
                total = count
            received += len(results)
            for item in results:
                yield _search_result(item, where)
            cursor = page.get("cursor")
            if _last_page(cursor):
                break
            if not isinstance(cursor, str):
                raise NsxError(f"malformed JSON from NSX at {where}: cursor is not a string")
            if cursor in seen:
                raise NsxError(f"NSX repeated a paging cursor at {where}: search aborted")
            if not results:
                raise NsxError(f"NSX sent an empty page before the last at {where}")
            seen.add(cursor)
        if received != total:
            raise NsxError(
                f"NSX search answered {received} result(s) of the {total} it counted at {where}"
            )

    # ------------------------------------------------------------------------------- paging

    def _list_all(
        self, policy_path: str, *, kind: str, absent: tuple[int, ...] = ()
    ) -> list[dict[str, Any]] | None:
        """Every item of a list call, following ``cursor`` until the last page; None when
        the first page answers a status in ``absent`` (the list does not exist here)."""
        rest = API_PREFIX + policy_path
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            params = {"page_size": str(self._settings.page_size)}
            if cursor:
                params["cursor"] = cursor
            allow = absent if cursor is None else ()
            response = self._http.request("GET", rest, kind=kind, params=params, allow=allow)
            if response.status_code in allow:
                return None
            page = self._http.decode_json(response, "GET", rest)
            results = page.get("results") if isinstance(page, dict) else None
            if not isinstance(results, list):
                raise NsxError(f"malformed JSON from NSX at GET {rest}: no results list")
            for item in results:
                if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                    raise NsxError(f"malformed JSON from NSX at GET {rest}: an item without id")
            items.extend(results)
            cursor = page.get("cursor")
            if _last_page(cursor):
                return items
            if not isinstance(cursor, str):
                raise NsxError(f"malformed JSON from NSX at GET {rest}: cursor is not a string")
            if cursor in seen:
                raise NsxError(f"NSX repeated a paging cursor at GET {rest}: listing aborted")
            seen.add(cursor)


def _last_page(cursor: object) -> bool:
    return (
        cursor is None
        or cursor == ""
        or (isinstance(cursor, str) and cursor.startswith(NULL_CURSOR_PREFIX))
    )


def _reference(tier1_id: str, children: Sequence[bytes]) -> bytes:
    """A ChildResourceReference to a Tier-1 with its children, as JSON text."""
    head = _COMPACT_SORTED.encode(
        {"resource_type": "ChildResourceReference", "target_type": "Tier1", "id": tier1_id}
    )
    return head[:-1].encode() + b',"children":[' + b",".join(children) + b"]}"


def _child_delete(route: Route, router: str) -> bytes:
    """A ChildStaticRoutes deleting ``route`` of ``router`` as JSON text: the body as listed,
    placed by the tree (router and id), with the revision it was listed at. Text at once:
    a batch of 1,000 routes held as dictionaries costs megabytes, as text a few hundred KB."""
    listed = route.nsx_object or {}
    body: dict[str, Any] = {k: v for k, v in listed.items() if k not in _PLACEMENT_FIELDS}
    body.update(resource_type="StaticRoutes", id=route.id, marked_for_delete=True)
    if route.revision is not None:
        body["_revision"] = route.revision
    else:
        body.pop("_revision", None)
    if route.router_path.rstrip("/") != router:
        raise NsxError(f"route {route.id} was listed on {route.router_path}, not on {router}")
    child = {
        "resource_type": "ChildStaticRoutes",
        "id": route.id,
        "marked_for_delete": True,
        "StaticRoutes": body,
    }
    return _COMPACT_SORTED.encode(child).encode()


def _routes_from_nsx(items: Sequence[Mapping[str, Any]], router_path: str) -> list[Route]:
    return [route_from_nsx(item, router_path) for item in items]


def route_from_nsx(obj: Mapping[str, Any], router_path: str) -> Route:
    """A Route from an NSX StaticRoutes object; NsxError naming the route and field if
    malformed. A ``network`` that is not a valid CIDR is kept as is (judgement calls the
    route foreign) rather than failing the router."""
    route_id = obj.get("id")
    if not isinstance(route_id, str) or not route_id:
        raise NsxError(f"malformed static route on {router_path}: missing id")

    def bad(field: str) -> NsxError:
        return NsxError(f"malformed static route {route_id} on {router_path}: bad {field}")

    network = obj.get("network")
    if not isinstance(network, str):
        raise bad("network")
    # ``path`` is where NSX says the route lives. Writes never use it (they are made from the
    # router listed and the id), and judgement flags a route whose path is not the one they
    # make: a parent_path naming another router counts as such a claim too.
    path = obj.get("path")
    expected = f"{router_path}{STATIC_ROUTES}{route_id}"
    if path is None:
        path = expected
    elif not isinstance(path, str):
        raise bad("path")
    parent = obj.get("parent_path")
    if parent is not None and not isinstance(parent, str):
        raise bad("parent_path")
    if parent and parent.rstrip("/") != router_path and path == expected:
        path = f"{parent.rstrip('/')}{STATIC_ROUTES}{route_id}"

    hops_obj = obj.get("next_hops", [])
    if not isinstance(hops_obj, list):
        raise bad("next_hops")
    next_hops = []
    for hop in hops_obj:
        address = hop.get("ip_address") if isinstance(hop, dict) else None
        if not isinstance(address, str):
            raise bad("next_hops.ip_address")
        next_hops.append(address)

    tags_obj = obj.get("tags", [])
    if not isinstance(tags_obj, list):
        raise bad("tags")
    tags = []
    for tag in tags_obj:
        if not isinstance(tag, dict):
            raise bad("tags")
        scope, value = tag.get("scope", ""), tag.get("tag", "")
        if not isinstance(scope, str) or not isinstance(value, str):
            raise bad("tags")
        # Shared: the scopes, the cluster tag and _protection repeat on every route, and
        # 100,000 copies of each (and of the cluster tag's pair) would cost tens of MB.
        if scope == NODE_TAG_SCOPE:
            tags.append((sys.intern(scope), value))
        else:
            tags.append(_shared_pair(scope, value))

    return Route(
        router_path=router_path,
        id=route_id,
        path=path,
        network=network,
        next_hops=tuple(next_hops),
        tags=tuple(tags),
        create_time_ms=_create_time(obj, bad),
        revision=_optional_int(obj, "_revision", bad),
        protection=_interned(_optional_str(obj, "_protection", bad)),
        display_name=_optional_str(obj, "display_name", bad),
        raw=_COMPACT_SORTED.encode(obj if isinstance(obj, dict) else dict(obj)),
    )


# One encoder for every route: json.dumps with arguments builds a new one per call.
_COMPACT_SORTED = json.JSONEncoder(separators=(",", ":"), sort_keys=True)

# A handful of distinct (scope, tag) pairs in practice; the bound keeps odd inputs (a tag with
# a unique value on every route) from growing it without end.
_SHARED_PAIRS: dict[tuple[str, str], tuple[str, str]] = {}
_SHARED_PAIRS_MAX = 4096


def _shared_pair(scope: str, value: str) -> tuple[str, str]:
    pair = _SHARED_PAIRS.get((scope, value))
    if pair is not None:
        return pair
    pair = (sys.intern(scope), sys.intern(value))
    if len(_SHARED_PAIRS) < _SHARED_PAIRS_MAX:
        _SHARED_PAIRS[pair] = pair
    return pair


def _optional_int(obj: Mapping[str, Any], field: str, bad: Callable[[str], NsxError]) -> int | None:
    value = obj.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(field)
    if isinstance(value, float) and not math.isfinite(value):
        raise bad(field)
    return int(value)


# Milliseconds since 1970 that a datetime can hold (years 1970 to 9999): a _create_time
# outside is a malformed answer, not a route 10^300 years old.
_CREATE_TIME_MAX = 253_402_300_799_999


def _create_time(obj: Mapping[str, Any], bad: Callable[[str], NsxError]) -> int | None:
    value = _optional_int(obj, "_create_time", bad)
    if value is not None and not 0 <= value <= _CREATE_TIME_MAX:
        raise bad("_create_time")
    return value


def _writable(route_path: str, what: str) -> tuple[str, str]:
    """(router, id) of a static route path the tool may touch; NsxError otherwise, before any
    request is sent."""
    try:
        return split_static_route_path(route_path)
    except ValueError as exc:
        raise NsxError(f"refused to {what} {route_path!r}: {exc}") from None


def _optional_str(obj: Mapping[str, Any], field: str, bad: Callable[[str], NsxError]) -> str | None:
    value = obj.get(field)
    if value is None or isinstance(value, str):
        return value
    raise bad(field)


def _interned(value: str | None) -> str | None:
    return None if value is None else sys.intern(value)


def _own_path(item: Mapping[str, Any], fallback: str) -> str:
    path = item.get("path")
    return path if isinstance(path, str) and path.startswith("/") else fallback


def _router_of(route_path: str) -> str:
    router, sep, _ = route_path.rpartition("/static-routes/")
    return router if sep else route_path


def _overwrite_header(allow_overwrite: bool) -> dict[str, str]:
    return {"X-Allow-Overwrite": "true"} if allow_overwrite else {}


def _search_result(item: object, where: str) -> tuple[str, str, bool]:
    """(path, router, marked_for_delete) of one search result, from the fields asked for."""
    if not isinstance(item, dict):
        raise NsxError(f"malformed JSON from NSX at {where}: a result is not an object")
    path, parent, route_id = item.get("path"), item.get("parent_path"), item.get("id")
    if not isinstance(parent, str) or not parent:
        parent = None
    if not isinstance(path, str) or not path:
        if parent is None or not isinstance(route_id, str) or not route_id:
            raise NsxError(f"malformed JSON from NSX at {where}: a result without path")
        path = f"{parent.rstrip('/')}/static-routes/{route_id}"
    marked = item.get("marked_for_delete", False)
    if not isinstance(marked, bool):
        raise NsxError(f"malformed JSON from NSX at {where}: marked_for_delete not a boolean")
    router = parent.rstrip("/") if parent is not None else _router_of(path)
    return path, router, marked
