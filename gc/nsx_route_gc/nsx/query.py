"""NSX policy paths and search queries as text: no I/O.

A Tier-1's path tells where its hierarchical PATCH goes and which search context sees it;
the search for the routes of many routers is cut into queries a server accepts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from urllib.parse import quote_plus

# The policy path of a Tier-1, in /infra or in a project's infra; "infra" is where the
# hierarchical PATCH for its children goes.
TIER1_PATH = re.compile(
    r"^(?P<infra>(?:/orgs/[^/]+/projects/(?P<project>[^/]+))?/infra)/tier-1s/(?P<id>[^/]+)$"
)

SEARCH_PATH = "/search/query"
# What a server sees is the URL-encoded request line, and 8 KB for the request line and
# headers together is a common default; a query this long leaves room for the rest.
SEARCH_QUERY_MAX = 4000
# Search indexes often cap how deep a cursor may page (Elasticsearch's default window is
# 10,000 hits); NSX's cap is unknown, so one query never expects more results than that.
SEARCH_RESULTS_MAX = 10_000
SEARCH_FIELDS = "id,path,parent_path,marked_for_delete"
# A count needs no result at all; the one result a page of one carries is kept small.
SEARCH_COUNT_FIELDS = "path"
# Lucene's special characters (those its QueryParser.escape escapes), and whitespace.
_LUCENE_SPECIAL = re.compile(r'([+\-!():^\[\]"{}~*?|&/\\\s])')
_QUERY_HEAD = "resource_type:StaticRoutes AND parent_path:("


def lucene_escape(text: str) -> str:
    """``text`` as one literal Lucene term: every special character behind a backslash."""
    return _LUCENE_SPECIAL.sub(r"\\\1", text)


def route_presence_query(routers: Sequence[str]) -> str:
    """The search query for every static route whose parent is one of ``routers``."""
    return _QUERY_HEAD + " OR ".join(lucene_escape(r.rstrip("/")) for r in routers) + ")"


def search_context(router_path: str) -> str | None:
    """The search ``context`` a Tier-1 needs: "" in /infra, ``projects:<project path>`` (the
    full path, ``projects:/orgs/default/projects/p``) in a project; None when
    ``router_path`` is not a Tier-1 policy path."""
    match = TIER1_PATH.match(router_path.rstrip("/"))
    if match is None:
        return None
    return f"projects:{match['infra'].removesuffix('/infra')}" if match["project"] else ""


def route_search_chunks(
    expected: Mapping[str, int],
    *,
    max_query: int = SEARCH_QUERY_MAX,
    max_results: int = SEARCH_RESULTS_MAX,
) -> list[list[str]]:
    """``expected`` (router -> routes the index should hold for it) cut into groups for
    ``NsxClient.search_route_presence``: one search context per group, each group's query
    within ``max_query`` characters once URL-encoded and its expected results within
    ``max_results`` (a router over either limit alone gets a group of its own). Routers that
    are not Tier-1 policy paths cannot be searched and are left out."""
    by_context: dict[str, list[str]] = {}
    for router in expected:
        context = search_context(router)
        if context is not None:
            by_context.setdefault(context, []).append(router)
    separator = len(quote_plus(" OR "))
    chunks: list[list[str]] = []
    for routers in by_context.values():
        chunk: list[str] = []
        length = results = 0
        for router in routers:
            size = len(quote_plus(lucene_escape(router.rstrip("/"))))
            count = expected[router]
            if chunk and (length + separator + size > max_query or results + count > max_results):
                chunks.append(chunk)
                chunk, length, results = [], 0, 0
            length += (separator if chunk else len(quote_plus(_QUERY_HEAD + ")"))) + size
            results += count
            chunk.append(router)
        if chunk:
            chunks.append(chunk)
    return chunks
