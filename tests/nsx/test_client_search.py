"""The NSX adapter's search for routes (deletion confirmation), against pytest-httpserver."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from factories import FakeTime
from nsx_route_gc.config import NsxSettings, Secret
from nsx_route_gc.errors import NsxError
from nsx_route_gc.nsx.client import NsxClient
from nsx_route_gc.nsx.query import route_presence_query

SEARCH = "/policy/api/v1/search/query"
T1 = "/infra/tier-1s/tanzu-cl1"
T2 = "/infra/tier-1s/tanzu-cl2"
DEV = "/orgs/default/projects/dev/infra/tier-1s/dev-t1"
FIELDS = "id,path,parent_path,marked_for_delete"


@pytest.fixture
def server(httpserver: HTTPServer) -> Iterator[HTTPServer]:
    yield httpserver
    httpserver.check_assertions()
    httpserver.check_handler_errors()


def client(server: HTTPServer, **overrides: Any) -> NsxClient:
    values: dict[str, Any] = {
        "base_url": server.url_for("/").rstrip("/"),
        "username": "admin",
        "password": Secret("pw"),
        "auth": "basic",
        "timeout": 5.0,
        "max_attempts": 2,
        "rate_limit": 1000.0,
    }
    values.update(overrides)
    time = FakeTime()
    return NsxClient(
        NsxSettings(**values),
        sleep=time.sleep,
        clock=time.clock,
        rng=random.Random(7),  # noqa: S311 - reproducible jitter, nothing secret
    )


def hit(router: str, rid: str, *, marked: bool | None = False) -> dict[str, Any]:
    """A search result with only the fields asked for."""
    obj: dict[str, Any] = {
        "id": rid,
        "path": f"{router}/static-routes/{rid}",
        "parent_path": router,
    }
    if marked is not None:
        obj["marked_for_delete"] = marked
    return obj


def page(results: list[Any], total: int, cursor: str | None = None) -> Any:
    body: dict[str, Any] = {"results": results, "result_count": total}
    if cursor is not None:
        body["cursor"] = cursor
    return body


def test_search_sends_the_escaped_query_and_follows_the_cursor(server: HTTPServer) -> None:
    asked: list[dict[str, str]] = []
    other = "/infra/tier-1s/tanzu-cl10"  # an index may match more than was asked
    pages = {
        "": page([hit(T1, "a"), hit(T1, "b", marked=True), hit(other, "x")], 5, "c1"),
        "c1": page([hit(T2, "c"), {"id": "d", "parent_path": T2}], 5),
    }

    def answer(request: Request) -> Response:
        asked.append(dict(request.args))
        body = pages[request.args.get("cursor", "")]
        return Response(json.dumps(body), content_type="application/json")

    server.expect_request(SEARCH, method="GET").respond_with_handler(answer)

    found = client(server, page_size=3).search_route_presence([T1, T2])

    assert found == {
        T1: {f"{T1}/static-routes/a": False, f"{T1}/static-routes/b": True},
        T2: {f"{T2}/static-routes/c": False, f"{T2}/static-routes/d": False},
    }
    first = {"query": route_presence_query([T1, T2]), "page_size": "3", "included_fields": FIELDS}
    assert asked == [first, {**first, "cursor": "c1"}]


def test_a_router_with_nothing_indexed_is_answered_empty(server: HTTPServer) -> None:
    server.expect_request(SEARCH).respond_with_json(page([], 0))
    assert client(server).search_route_presence([T1]) == {T1: {}}


def test_project_routers_are_searched_in_their_project_context(server: HTTPServer) -> None:
    server.expect_request(
        SEARCH,
        query_string={
            "query": route_presence_query([DEV]),
            "page_size": "1000",
            "included_fields": FIELDS,
            "context": "projects:/orgs/default/projects/dev",
        },
    ).respond_with_json(page([hit(DEV, "a")], 1))

    assert client(server).search_route_presence([DEV]) == {DEV: {f"{DEV}/static-routes/a": False}}


@pytest.mark.parametrize("routers", [[T1, DEV], ["/infra/tier-0s/t0"]])
def test_routers_of_two_spaces_or_no_tier1_are_refused_unsent(
    server: HTTPServer, routers: list[str]
) -> None:
    with pytest.raises(NsxError, match="not Tier-1s of one space"):
        client(server).search_route_presence(routers)
    assert not server.log


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ("<html>Service unavailable</html>", "not JSON"),
        (json.dumps({"result_count": 0}), "no results list"),
        (json.dumps({"results": []}), "no result_count"),
        (json.dumps({"results": [], "result_count": True}), "no result_count"),
        (json.dumps(page(["a"], 1)), "a result is not an object"),
        (json.dumps(page([{"id": "a"}], 1)), "a result without path"),
        (json.dumps(page([hit(T1, "a", marked=None) | {"marked_for_delete": "no"}], 1)),
         "marked_for_delete not a boolean"),
        (json.dumps({**page([hit(T1, "a")], 1), "cursor": 7}), "cursor is not a string"),
    ],
)  # fmt: skip
def test_a_malformed_answer_is_a_one_line_error_naming_the_request(
    server: HTTPServer, body: str, detail: str
) -> None:
    server.expect_request(SEARCH).respond_with_data(body, content_type="application/json")

    with pytest.raises(NsxError) as caught:
        client(server).search_route_presence([T1])

    message = str(caught.value)
    assert message.startswith(f"malformed JSON from NSX at GET {SEARCH}")
    assert message.endswith(detail)
    assert "\n" not in message


@pytest.mark.parametrize(
    ("second", "error"),
    [
        (page([hit(T1, "b")], 3), "changed while paging"),  # a result came or went meanwhile
        (page([hit(T1, "b")], 2, cursor="c1"), "repeated a paging cursor"),
        (page([], 2, cursor="c2"), "empty page before the last"),
    ],
)
def test_an_answer_that_is_not_whole_is_an_error(
    server: HTTPServer, second: dict[str, Any], error: str
) -> None:
    first = page([hit(T1, "a")], 2, "c1")

    def answer(request: Request) -> Response:
        body = second if request.args.get("cursor") else first
        return Response(json.dumps(body), content_type="application/json")

    server.expect_request(SEARCH).respond_with_handler(answer)

    with pytest.raises(NsxError, match=error):
        client(server).search_route_presence([T1])


def test_fewer_results_than_counted_is_an_error(server: HTTPServer) -> None:
    server.expect_request(SEARCH).respond_with_json(page([hit(T1, "a")], 2))

    with pytest.raises(NsxError, match=r"answered 1 result\(s\) of the 2 it counted"):
        client(server).search_route_presence([T1])


def test_a_failing_search_is_an_api_error_after_retries(server: HTTPServer) -> None:
    server.expect_request(SEARCH).respond_with_json({"error_message": "busy"}, status=503)

    nsx = client(server)
    with pytest.raises(NsxError, match="503"):
        nsx.search_route_presence([T1])
    assert nsx.request_counts["search"] == 2


def test_result_count_on_the_first_page_only_and_a_0000_cursor_ends(server: HTTPServer) -> None:
    """NSX sets result_count "only on first page"; nsxlib stops at a cursor of 0000..."""
    pages = {
        "": page([hit(T1, "a")], 3, "c1"),
        "c1": {"results": [hit(T1, "b")], "cursor": "c2"},
        "c2": {"results": [hit(T1, "c")], "cursor": "00000000-end"},
    }

    def answer(request: Request) -> Response:
        body = pages[request.args.get("cursor", "")]
        return Response(json.dumps(body), content_type="application/json")

    server.expect_request(SEARCH).respond_with_handler(answer)

    found = client(server, page_size=1).search_route_presence([T1])

    assert sorted(found[T1]) == [f"{T1}/static-routes/{r}" for r in "abc"]
    assert len(server.log) == 3


def test_a_first_page_without_result_count_is_malformed(server: HTTPServer) -> None:
    server.expect_request(SEARCH).respond_with_json({"results": [hit(T1, "a")]})

    with pytest.raises(NsxError, match="no result_count"):
        client(server).search_route_presence([T1])


@pytest.mark.parametrize("code", [60508, 60514, 60515])
def test_search_index_troubles_fail_the_search_unretried(server: HTTPServer, code: int) -> None:
    """400 with 60508 (indexing), 60514 (timeout), 60515 (out of sync): the caller lists
    instead (nsx.confirm), so no retry is spent."""
    server.expect_request(SEARCH).respond_with_json({"error_code": code}, status=400)

    nsx = client(server)
    with pytest.raises(NsxError, match=f"error_code={code}"):
        nsx.search_route_presence([T1])
    assert nsx.request_counts == {"search": 1}


def test_a_count_is_one_first_page_of_one_result_and_its_result_count(server: HTTPServer) -> None:
    """result_count is the total of every page (set on the first page only): one call."""
    server.expect_request(
        SEARCH,
        query_string={
            "query": route_presence_query([T1, T2]),
            "page_size": "1",
            "included_fields": "path",
        },
    ).respond_with_json(page([hit(T1, "a")], 4321, "c1"))

    nsx = client(server)
    assert nsx.search_route_count([T1, T2]) == 4321
    assert nsx.request_counts == {"search": 1}


def test_a_project_count_is_asked_in_its_project_context(server: HTTPServer) -> None:
    server.expect_request(
        SEARCH,
        query_string={
            "query": route_presence_query([DEV]),
            "page_size": "1",
            "included_fields": "path",
            "context": "projects:/orgs/default/projects/dev",
        },
    ).respond_with_json(page([], 0))

    assert client(server).search_route_count([DEV]) == 0


@pytest.mark.parametrize("count", [None, "12", -1, True, 1.5])
def test_a_count_without_a_whole_result_count_is_malformed(
    server: HTTPServer, count: object
) -> None:
    body: dict[str, Any] = {"results": [hit(T1, "a")]}
    if count is not None:
        body["result_count"] = count
    server.expect_request(SEARCH).respond_with_json(body)

    with pytest.raises(NsxError, match="no result_count"):
        client(server).search_route_count([T1])


def test_a_count_of_routers_of_two_spaces_is_refused_unsent(server: HTTPServer) -> None:
    nsx = client(server)
    with pytest.raises(NsxError, match="not Tier-1s of one space"):
        nsx.search_route_count([T1, DEV])
    assert len(server.log) == 0
