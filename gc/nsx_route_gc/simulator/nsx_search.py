"""The simulated NSX search API: a small subset of its Lucene syntax, over static routes.

Supported: terms ``field:value`` joined by ``AND``, a term's values grouped as
``field:(a OR b OR c)``, backslash escapes, quoted values and ``*`` wildcards; anything else
(implicit operators, ``NOT``, nested groups) is refused with 400. A ``tags.scope`` term and a
``tags.tag`` term match when *any* tag has that scope and *any* tag has that value, as NSX's
flattened index does. Results are sorted by path and paged with a cursor; default space only
unless ``context=projects:/orgs/default/projects/p1`` names projects by their full paths
(comma-separated); a bare project id is refused with 400. ``included_fields=a,b`` keeps only those
top-level fields of each result. ``result_count`` is on the first page only (as NSX
documents it; terraform-provider-nsxt ``nsxt/policy_search.go`` ``searchLM`` reads it there
as the total of all pages) unless ``search_count_every_page`` is set. ``freeze_search_index``
makes the index lag: it answers from the routes as they were when frozen.
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

_ESCAPE = re.compile(r"\\(.)")
PROJECTS_PREFIX = "/orgs/default/projects/"

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


def _unsupported(what: str) -> NsxFault:
    return NsxFault(400, 60512, f"Unsupported search query {what!r} in the simulator")


def _split(text: str) -> list[str]:
    """``text`` cut at whitespace that is not escaped, quoted or inside parentheses."""
    tokens: list[str] = []
    current: list[str] = []
    depth, quoted, i = 0, False, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "()":
            depth += 1 if ch == "(" else -1
            if depth < 0:
                raise _unsupported(text)
        elif ch.isspace() and not quoted and not depth:
            if current:
                tokens.append("".join(current))
                current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    if quoted or depth:
        raise _unsupported(text)
    if current:
        tokens.append("".join(current))
    return tokens


def _joined(tokens: list[str], operator: str, what: str) -> list[str]:
    """The operands of ``a OP b OP c``; 400 for any other shape."""
    operands = tokens[::2]
    if not operands or len(tokens) % 2 == 0 or any(t != operator for t in tokens[1::2]):
        raise _unsupported(what)
    return operands


def _value(raw: str) -> tuple[str, bool]:
    """A term's value unescaped, and whether it holds an unescaped ``*`` wildcard."""
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        raw = raw[1:-1]
    # Only the escape character goes; a '*' stays a wildcard unless it was escaped.
    return _ESCAPE.sub(lambda m: m[1], raw), "*" in _ESCAPE.sub("", raw)


def _terms(query: str) -> list[tuple[str, list[tuple[str, bool]]]]:
    """(field name, the values any of which matches) of every ANDed term."""
    terms = []
    for raw in _joined(_split(query.strip()), "AND", query):
        name, sep, value = raw.partition(":")
        if not sep or name not in _FIELDS or not value:
            raise NsxFault(400, 60512, f"Unsupported search term {raw!r} in the simulator")
        if value.startswith("("):
            values = _joined(_split(value[1:-1]), "OR", raw)
            if any(v.startswith("(") for v in values):
                raise _unsupported(raw)
        else:
            values = [value]
        terms.append((name, [_value(v) for v in values]))
    return terms


def _matches(values: list[tuple[str, bool]], candidates: tuple[str, ...]) -> bool:
    return any(
        any(fnmatchcase(c, value) for c in candidates) if wild else value in candidates
        for value, wild in values
    )


def _matching_paths(state: NsxState, query: str, context: str) -> list[tuple[str, str]]:
    """(path, router) of every matching route, sorted by path; cached until the next write."""
    key = (query, context)
    cached = state.search_cache.get(key)
    if cached is not None and cached[0] == state.generation:
        return cached[1]
    indexed = _indexed(state)
    terms = _terms(query)
    # The parent is the router: those terms are decided once per router, not per route.
    by_router = [values for name, values in terms if name == "parent_path"]
    by_route = [(_FIELDS[name], values) for name, values in terms if name != "parent_path"]
    projects = _context_projects(context)
    found = []
    for router, routes in indexed.items():
        project = router.split("/")[4] if router.startswith("/orgs/") else None
        if project is not None and project not in projects:
            continue
        if not all(_matches(values, (router,)) for values in by_router):
            continue
        for route in routes.values():
            if all(_matches(values, f(router, route)) for f, values in by_route):
                found.append((f"{router}/static-routes/{route.id}", router))
    found.sort()
    # Answers of an older generation are never read again.
    state.search_cache = {k: v for k, v in state.search_cache.items() if v[0] == state.generation}
    state.search_cache[key] = (state.generation, found)
    return found


def _indexed(state: NsxState) -> dict[str, dict[str, StoredRoute]]:
    """Router -> routes, as the index holds them: frozen (lagging), or every write seen."""
    if state.search_index is not None:
        return state.search_index
    return {router: tier1.routes for router, tier1 in state.tier1s.items()}


def _context_projects(context: str) -> set[str]:
    """The project ids a ``context`` names: ``projects:`` and full project paths."""
    if not context:
        return set()
    projects = set()
    for path in context.removeprefix("projects:").split(","):
        project = path.removeprefix(PROJECTS_PREFIX)
        if not context.startswith("projects:") or project == path or not project or "/" in project:
            raise NsxFault(400, 60512, f"Invalid search context {context!r}")
        projects.add(project)
    return projects


def search(state: NsxState, query: dict[str, str], page_size: int) -> dict[str, Any]:
    text = query.get("query")
    if not text:
        raise NsxFault(400, 60512, "The query parameter 'query' is required")
    after, page = decode_cursor(query.get("cursor"))
    fields = [f.strip() for f in query.get("included_fields", "").split(",") if f.strip()]
    with state.lock:
        found = _matching_paths(state, text, query.get("context", ""))
        start = 0 if after is None else bisect.bisect_right(found, after, key=lambda f: f[0])
        chunk = found[start : start + page_size]
        results = []
        indexed = _indexed(state)
        for path, router in chunk:
            route = indexed.get(router, {}).get(path.rsplit("/", 1)[1])
            if route is not None:
                obj = render_route(router, route)
                results.append({f: obj[f] for f in fields if f in obj} if fields else obj)
    body: dict[str, Any] = {"results": results}
    # "Count of results found (across all pages), set only on first page".
    if page == 0 or state.search_count_every_page:
        body["result_count"] = len(found)
    if start + page_size < len(found) and chunk:
        body["cursor"] = encode_cursor(chunk[-1][0], page + 1)
    elif state.null_cursor:
        body["cursor"] = "0000-end-of-results"
    return body
