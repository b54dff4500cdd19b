"""The simulated NSX search API: a small subset of its Lucene syntax, over static routes.

Supported: terms ``field:value`` joined by ``AND``, backslash escapes, quoted values and ``*``
wildcards. A ``tags.scope`` term and a ``tags.tag`` term match when *any* tag has that scope
and *any* tag has that value, as NSX's flattened index does. Results are sorted by path and
paged with a cursor; default space only unless ``context=projects:p1,p2`` names projects.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from nsx_route_gc.simulator.nsx_store import (
    NsxFault,
    StoredRoute,
    decode_cursor,
    encode_cursor,
    render_route,
)

if TYPE_CHECKING:
    from nsx_route_gc.simulator.nsx import NsxState

_AND = re.compile(r"\s+AND\s+")
_ESCAPE = re.compile(r"\\(.)")

Field = Callable[[str, StoredRoute], tuple[str, ...]]
_FIELDS: dict[str, Field] = {
    "resource_type": lambda router, r: ("StaticRoutes",),
    "id": lambda router, r: (r.id,),
    "display_name": lambda router, r: (r.display_name,),
    "network": lambda router, r: (r.network,),
    "parent_path": lambda router, r: (router,),
    "path": lambda router, r: (f"{router}/static-routes/{r.id}",),
    "tags.scope": lambda router, r: tuple(s for s, _ in r.tags),
    "tags.tag": lambda router, r: tuple(t for _, t in r.tags),
    "marked_for_delete": lambda router, r: ("false",),
    "_protection": lambda router, r: (r.protection,),
    "next_hops.ip_address": lambda router, r: tuple(ip for ip, _, _ in r.next_hops),
}


def _terms(query: str) -> list[tuple[Field, str]]:
    terms = []
    for raw in _AND.split(query.strip()):
        name, sep, value = raw.partition(":")
        field = _FIELDS.get(name.strip())
        if not sep or field is None:
            raise NsxFault(400, 60512, f"Unsupported search term {raw!r} in the simulator")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        terms.append((field, value))
    return terms


def _matches(value: str, candidates: tuple[str, ...]) -> bool:
    if "*" in value:
        return any(fnmatchcase(c, value) for c in candidates)
    return value in candidates


def _matching_paths(state: NsxState, query: str, context: str) -> list[tuple[str, str]]:
    """(path, router) of every matching route, sorted by path; cached until the next write."""
    key = (query, context)
    cached = state.search_cache.get(key)
    if cached is not None and cached[0] == state.generation:
        return cached[1]
    terms = []
    for field, value in _terms(query):
        # Only the escape character goes; a '*' stays a wildcard unless it was escaped.
        terms.append((field, _ESCAPE.sub(lambda m: m[1], value), "*" in _ESCAPE.sub("", value)))
    projects = set(context.removeprefix("projects:").split(",")) if context else set()
    found = []
    for router, tier1 in state.tier1s.items():
        project = router.split("/")[4] if router.startswith("/orgs/") else None
        if project is not None and project not in projects:
            continue
        for route in tier1.routes.values():
            if all(
                _matches(v, f(router, route)) if wild else v in f(router, route)
                for f, v, wild in terms
            ):
                found.append((f"{router}/static-routes/{route.id}", router))
    found.sort()
    state.search_cache[key] = (state.generation, found)
    return found


def search(state: NsxState, query: dict[str, str], page_size: int) -> dict[str, Any]:
    text = query.get("query")
    if not text:
        raise NsxFault(400, 60512, "The query parameter 'query' is required")
    after, page = decode_cursor(query.get("cursor"))
    with state.lock:
        found = _matching_paths(state, text, query.get("context", ""))
        start = 0 if after is None else bisect.bisect_right(found, after, key=lambda f: f[0])
        chunk = found[start : start + page_size]
        results = []
        for path, router in chunk:
            route = state.tier1s[router].routes.get(path.rsplit("/", 1)[1])
            if route is not None:
                results.append(render_route(router, route))
    body: dict[str, Any] = {"results": results, "result_count": len(found)}
    if start + page_size < len(found) and chunk:
        body["cursor"] = encode_cursor(chunk[-1][0], page + 1)
    return body
