"""Policy paths and search queries as text (``nsx.query``): escaping, contexts, chunks."""

from __future__ import annotations

from urllib.parse import quote_plus

from nsx_route_gc.nsx.query import (
    lucene_escape,
    route_presence_query,
    route_search_chunks,
    search_context,
)

T1 = "/infra/tier-1s/tanzu-cl1"
T2 = "/infra/tier-1s/tanzu-cl2"
DEV = "/orgs/default/projects/dev/infra/tier-1s/dev-t1"


def test_lucene_escape_makes_every_special_character_literal() -> None:
    assert lucene_escape("/infra/tier-1s/t1") == r"\/infra\/tier\-1s\/t1"
    assert lucene_escape('a b(c)[d]{e}:f"g*h?i~j^k!l+m&n|o\\p') == (
        r"a\ b\(c\)\[d\]\{e\}\:f\"g\*h\?i\~j\^k\!l\+m\&n\|o\\p"
    )


def test_the_query_names_every_router_as_a_parent_path() -> None:
    assert route_presence_query([T1, T2 + "/"]) == (
        r"resource_type:StaticRoutes AND parent_path:("
        r"\/infra\/tier\-1s\/tanzu\-cl1 OR \/infra\/tier\-1s\/tanzu\-cl2)"
    )


def test_search_context_of_default_and_project_tier1s() -> None:
    assert search_context(T1) == ""
    assert search_context(DEV) == "projects:/orgs/default/projects/dev"
    assert search_context("/infra/tier-0s/t0") is None


def test_chunks_keep_one_context_each_and_the_encoded_query_short() -> None:
    routers = [f"/infra/tier-1s/t1-{i:04d}" for i in range(300)]
    project = [f"/orgs/default/projects/p/infra/tier-1s/t1-{i:04d}" for i in range(3)]
    chunks = route_search_chunks(
        {r: 1 for r in [*routers, *project, "/infra/tier-0s/t0"]}, max_query=2000
    )

    assert [r for c in chunks for r in c] == [*routers, *project]  # a Tier-0 cannot be searched
    assert all(len({search_context(r) for r in c}) == 1 for c in chunks)
    lengths = [len(quote_plus(route_presence_query(c))) for c in chunks]
    assert max(lengths) <= 2000
    assert min(lengths[:-2]) > 2000 - len(quote_plus(" OR " + lucene_escape(routers[0])))
    assert chunks[-1] == project


def test_chunks_keep_the_expected_results_within_the_limit() -> None:
    expected = {T1: 6000, T2: 5000, "/infra/tier-1s/big": 12_000, "/infra/tier-1s/small": 4000}

    chunks = route_search_chunks(expected, max_results=10_000)

    # A router over the limit alone is still searched, on its own.
    assert chunks == [[T1], [T2], ["/infra/tier-1s/big"], ["/infra/tier-1s/small"]]
    assert route_search_chunks({T1: 6000, T2: 4000}, max_results=10_000) == [[T1, T2]]
