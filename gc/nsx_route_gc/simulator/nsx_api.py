"""HTTP side of the simulated NSX manager: routing, authentication, paging, hierarchical API.

Follows shared/nsx-policy-api.md and research/issue10-nsx-facts.md: cursor paging with
``result_count`` over all pages (search: the first page only), NSX error bodies, session auth
with JSESSIONID + X-XSRF-TOKEN (a bad token: 403 error_code 98), basic and remote auth with
failed-login counting and lockout, ``_revision`` checks, ``X-Allow-Overwrite`` for
principal-identity routes, all-or-nothing ``PATCH /infra``, and in VMC mode the reverse proxy
path with CSP access tokens.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import dataclasses
import json
import re
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, unquote

from nsx_route_gc.simulator.http import Request, Response
from nsx_route_gc.simulator.nsx import CSP_AUTHORIZE, PROJECTS_PREFIX, NsxState
from nsx_route_gc.simulator.nsx_search import search
from nsx_route_gc.simulator.nsx_store import (
    NsxFault,
    Tier1,
    Write,
    decode_cursor,
    encode_cursor,
    not_found,
    prepare_delete,
    prepare_upsert,
    render_route,
)

API = "/policy/api/v1"
MAX_PAGE_SIZE = 1000
_OBJECT = re.compile(
    r"^/policy/api/v1(?P<space>/orgs/default/projects/[^/]+)?/infra"
    r"(?:/tier-1s(?:/(?P<t1>[^/]+)(?:/(?P<sr>static-routes)(?:/(?P<rid>[^/]+))?)?)?)?$"
)


def handle(state: NsxState, req: Request) -> Response:
    """Answer one request; every failure becomes an NSX error body."""
    try:
        if state.vmc is not None:
            if req.path == CSP_AUTHORIZE:
                state.count("csp_token")
                return _csp_authorize(state, req)
            req = _through_proxy(state.vmc.base_path, req)
        if req.path == "/api/session/create":
            state.count("nsx_session")
            return _session_create(state, req)
        kind, match = _classify(req)
        if kind:
            state.count(kind)
        user = _authenticate(state, req)
        if req.path == "/api/session/destroy":
            state.destroy_session(_cookie(req) or "")
            return Response(200)
        state.check_rate(user)
        injected = state.take_next_failure(kind) if kind else None
        if injected is not None:
            raise injected
        with state.in_flight():
            return _route(state, req, kind, match, user)
    except NsxFault as fault:
        headers = []
        if fault.status == 429 and state.retry_after is not None:
            headers.append(("Retry-After", str(state.retry_after)))
        return Response.json(fault.status, fault.body(), headers)


def _through_proxy(base_path: str, req: Request) -> Request:
    """The request as the manager behind the VMC reverse proxy sees it: only paths under
    the proxy's base path reach it, and no session login does."""
    if not req.path.startswith(base_path + "/"):
        raise NsxFault(404, 404, f"The requested URI {req.path} could not be found.")
    inner = dataclasses.replace(req, path=req.path[len(base_path) :])
    if inner.path.startswith("/api/session/"):
        raise NsxFault(404, 404, "Session login is not available through the proxy.")
    return inner


def _classify(req: Request) -> tuple[str, re.Match[str] | None]:
    if req.path == "/api/session/destroy":
        return "nsx_session_destroy", None
    if req.path in (f"{API}/search/query", f"{API}/search"):
        return "nsx_search", None
    if req.path == f"{API}/orgs/default/projects":
        return "nsx_list_projects", None
    match = _OBJECT.match(req.path)
    if match is None:
        return "", None
    if match["rid"]:
        return {"DELETE": "nsx_delete", "GET": "nsx_get"}.get(req.method, "nsx_patch"), match
    if match["sr"]:
        return "nsx_list_routes", match
    if match["t1"]:
        return "nsx_get", match
    if req.path.endswith("/tier-1s"):
        return "nsx_list_tier1s", match
    return "nsx_hierarchical", match


# -- authentication ---------------------------------------------------------------------


def _session_create(state: NsxState, req: Request) -> Response:
    form = {k: v[-1] for k, v in parse_qs(req.body.decode(errors="replace")).items()}
    if req.method != "POST":
        raise NsxFault(405, 405, "Only POST creates a session.")
    state.login(form.get("j_username", ""), form.get("j_password", ""))
    session, xsrf = state.create_session(form["j_username"])
    return Response(
        200,
        headers=[
            ("Set-Cookie", f"JSESSIONID={session}; Path=/; Secure; HttpOnly"),
            ("X-XSRF-TOKEN", xsrf),
        ],
    )


def _cookie(req: Request) -> str | None:
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(req.header("cookie") or "")
    except Exception:
        return None
    morsel = cookie.get("JSESSIONID")
    return morsel.value if morsel else None


def _csp_authorize(state: NsxState, req: Request) -> Response:
    """The CSP API-token exchange: form ``refresh_token`` -> ``access_token``, ``expires_in``."""
    vmc = state.vmc
    assert vmc is not None  # noqa: S101 - only routed here in VMC mode
    form = {k: v[-1] for k, v in parse_qs(req.body.decode(errors="replace")).items()}
    with state.lock:
        token = None
        if req.method == "POST":
            token = vmc.exchange(form.get("refresh_token", ""), state.monotonic())
    if token is None:
        state.count("csp_token_refused")
        # CSP's own error shape, not NSX's.
        payload = {"statusCode": 400, "message": "invalid_grant: Invalid refresh token"}
        return Response.json(400, payload)
    ttl = int(vmc.token_ttl)
    return Response.json(
        200,
        {
            "id_token": "",
            "token_type": "bearer",
            "expires_in": str(ttl) if vmc.expires_in_as_string else ttl,
            "scope": "ALL_PERMISSIONS",
            "access_token": token,
            "refresh_token": vmc.refresh_token,
        },
    )


def _authenticate(state: NsxState, req: Request) -> str:
    vmc = state.vmc
    if vmc is not None:
        token = req.header("csp-auth-token") or ""
        with state.lock:
            valid = bool(token) and vmc.valid(token, state.monotonic())
        if not valid:
            raise NsxFault(401, 401, "The credentials were incorrect or the token has expired.")
        return "cloudadmin"
    authorization = req.header("authorization") or ""
    scheme, _, encoded = authorization.partition(" ")
    if scheme in ("Basic", "Remote"):
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, password = "", ""
        state.login(user, password)  # every basic-auth call is a login, counted if refused
        return user
    session_id = _cookie(req)
    if not authorization and session_id is None and req.client_cert in state.principal_identities:
        # Certificate auth: the TLS handshake verified the certificate; it names the user.
        return str(req.client_cert)
    session = state.session(session_id) if session_id else None
    if session is None:
        raise NsxFault(401, 401, "The session has expired or the credentials are missing.")
    user, xsrf = session
    if req.header("x-xsrf-token") != xsrf:
        # nsx-operator and nsxlib map 403 with error_code 98 to BadXSRFToken.
        raise NsxFault(403, 98, "Missing or invalid X-XSRF-TOKEN header.")
    return user


# -- routing ----------------------------------------------------------------------------


def _route(
    state: NsxState, req: Request, kind: str, match: re.Match[str] | None, user: str
) -> Response:
    if kind == "nsx_search" and req.method == "GET":
        return Response.json(200, search(state, req.query, _page_size(req)))
    if kind == "nsx_list_projects" and req.method == "GET":
        if state.projects_api is not None:
            raise NsxFault(
                state.projects_api,
                {400: 287, 403: 403, 404: 219}.get(state.projects_api, 0),
                f"The requested URI {req.path} could not be found or is not supported.",
            )
        return Response.json(200, _list_projects(state, req))
    if match is None:
        raise NsxFault(404, 219, f"The requested URI {req.path} could not be found.")
    space = match["space"] or ""
    if kind == "nsx_list_tier1s" and req.method == "GET":
        return Response.json(200, _list_tier1s(state, req, space))
    if kind == "nsx_hierarchical" and req.method == "PATCH":
        return _hierarchical(state, req, space, user)
    if kind == "nsx_hierarchical":
        raise NsxFault(400, 287, f"{req.method} {req.path} is not supported by the simulator")
    t1_path = f"{space}/infra/tier-1s/{unquote(match['t1'])}"
    with state.lock:
        tier1 = state.tier1s.get(t1_path)
    if tier1 is None:
        raise not_found(t1_path)
    if not match["sr"]:
        if req.method != "GET":
            raise NsxFault(400, 287, "Tier-1 gateways are read-only in the simulator")
        return Response.json(200, tier1.render())
    if not match["rid"]:
        if req.method != "GET":
            raise NsxFault(400, 287, f"{req.method} is not allowed on a route list")
        return _list_routes(state, req, tier1)
    route_id = unquote(match["rid"])
    if req.method == "GET":
        with state.lock:
            route = tier1.routes.get(route_id)
            if route is None:
                raise not_found(f"{t1_path}/static-routes/{route_id}")
            return Response.json(200, render_route(t1_path, route))
    if req.method == "DELETE":
        return _delete(state, req, tier1, route_id)
    if req.method in ("PATCH", "PUT"):
        return _write(state, req, tier1, route_id, user)
    raise NsxFault(400, 287, f"{req.method} is not allowed on a route")


def _page_size(req: Request) -> int:
    try:
        size = int(req.query.get("page_size") or MAX_PAGE_SIZE)
    except ValueError as exc:
        raise NsxFault(400, 287, "page_size must be an integer") from exc
    if size < 1:
        raise NsxFault(400, 287, "page_size must be at least 1")
    return min(size, MAX_PAGE_SIZE)


# The last page's cursor with null_cursor: nsxlib stops at any cursor with this prefix.
NULL_CURSOR = "0000-end-of-results"


def _paged(
    state: NsxState, items: list[tuple[str, Any]], req: Request, build: Any
) -> dict[str, Any]:
    """A listing page over (sort key, item) pairs already sorted."""
    after, page = decode_cursor(req.query.get("cursor"))
    size = _page_size(req)
    start = 0 if after is None else bisect.bisect_right(items, after, key=lambda kv: kv[0])
    chunk = items[start : start + size]
    body: dict[str, Any] = {"results": [build(v) for _, v in chunk], "result_count": len(items)}
    if start + size < len(items) and chunk:
        body["cursor"] = encode_cursor(chunk[-1][0], page + 1)
    elif state.null_cursor:
        body["cursor"] = NULL_CURSOR
    return body


def _list_projects(state: NsxState, req: Request) -> dict[str, Any]:
    with state.lock:
        names = sorted(state.projects)
    return _paged(
        state,
        [(n, n) for n in names],
        req,
        lambda n: {
            "resource_type": "Project",
            "id": n,
            "display_name": n,
            "path": f"{PROJECTS_PREFIX}{n}",
            "parent_path": "/orgs/default",
            "relative_path": n,
            "_revision": 0,
        },
    )


def _list_tier1s(state: NsxState, req: Request, space: str) -> dict[str, Any]:
    prefix = f"{space}/infra/tier-1s/"
    with state.lock:
        if space and space.removeprefix(PROJECTS_PREFIX) not in state.projects:
            raise not_found(space)
        tier1s = sorted((t.id, t) for p, t in state.tier1s.items() if p.startswith(prefix))
        return _paged(state, tier1s, req, lambda t: t.render())


def _list_routes(state: NsxState, req: Request, tier1: Tier1) -> Response:
    after, page = decode_cursor(req.query.get("cursor"))
    failure = state.take_page_failure(tier1.path, page)
    if failure is not None:
        raise NsxFault(failure, 100, f"Injected failure listing page {page} of {tier1.path}")
    size = _page_size(req)
    if state.short_pages:
        size = size // 3 + 1
    with state.lock:
        routes, last = tier1.page(after, size)
        # The page is put together from each route's JSON as last rendered (what
        # json.dumps of the whole page would write): the simulator shares the benchmark's
        # cores with the tool, and rendering 100,000 routes per listing is not NSX's cost.
        results = b",".join(state.route_json(tier1.path, r) for r in routes)
        count = len(tier1.routes)
    body = b'{"results":[' + results + b'],"result_count":' + str(count).encode()
    if last is not None:
        body += b',"cursor":' + json.dumps(encode_cursor(last, page + 1)).encode()
    elif state.null_cursor:
        body += b',"cursor":' + json.dumps(NULL_CURSOR).encode()
    return Response(200, body + b"}", [("Content-Type", "application/json")])


def _allow_overwrite(req: Request) -> bool:
    return (req.header("x-allow-overwrite") or "").lower() == "true"


def _delete(state: NsxState, req: Request, tier1: Tier1, route_id: str) -> Response:
    path = f"{tier1.path}/static-routes/{route_id}"
    failure = state.take_delete_failure(route_id)
    if failure is not None:
        raise NsxFault(failure, 100, f"Injected failure deleting {path}")
    if state.write_latency > 0:
        state.sleep(state.write_latency)
    with state.lock:
        write = prepare_delete(
            tier1, route_id, None, allow_overwrite=_allow_overwrite(req), check_rev=False
        )
        if write is None:
            if state.delete_missing == "404":
                raise not_found(path)
            return Response(200)
        _apply(state, [write])
    return Response(state.delete_status)


def _write(state: NsxState, req: Request, tier1: Tier1, route_id: str, user: str) -> Response:
    try:
        body = req.json()
    except ValueError as exc:
        raise NsxFault(400, 287, "The request body is not valid JSON") from exc
    with state.lock:
        write = prepare_upsert(
            tier1,
            route_id,
            body,
            user=user,
            now_ms=state.now_ms(),
            serial=state.next_serial(),
            allow_overwrite=_allow_overwrite(req),
            replace=req.method == "PUT",
            stale=state.stale_revision,
        )
        _apply(state, [write])
        rendered = render_route(tier1.path, tier1.routes[route_id])
    # NSX answers a PATCH with an empty body and a PUT with the stored object.
    return Response.json(200, rendered) if req.method == "PUT" else Response(200)


def _apply(state: NsxState, writes: list[Write]) -> None:
    for write in writes:
        if write.route is None:
            write.tier1.remove(write.route_id)
        else:
            write.tier1.add(write.route)
    state.generation += 1


def _hierarchical(state: NsxState, req: Request, space: str, user: str) -> Response:
    try:
        body = req.json()
    except ValueError as exc:
        raise NsxFault(400, 287, "The request body is not valid JSON") from exc
    if not isinstance(body, dict) or body.get("resource_type") != "Infra":
        raise NsxFault(400, 287, "The hierarchical body must be an Infra object")
    refs = body.get("children") or []
    changes: list[tuple[str, dict[str, Any], bool]] = []
    for ref in refs:
        if (
            ref.get("resource_type") != "ChildResourceReference"
            or ref.get("target_type") != "Tier1"
        ):
            raise NsxFault(400, 287, "Only ChildResourceReference to Tier1 is simulated")
        t1_path = f"{space}/infra/tier-1s/{ref.get('id')}"
        for child in ref.get("children") or []:
            route = child.get("StaticRoutes")
            if child.get("resource_type") != "ChildStaticRoutes" or not isinstance(route, dict):
                raise NsxFault(400, 287, "Only ChildStaticRoutes children are simulated")
            changes.append((t1_path, route, bool(child.get("marked_for_delete"))))
    limit = state.max_hierarchical_children
    if limit is not None and len(changes) > limit:
        raise NsxFault(400, 500045, f"Too many objects in one request: {len(changes)} > {limit}")
    failure = state.take_hierarchical_failure()
    if failure is not None:
        raise NsxFault(failure, 100, "Injected failure of a hierarchical PATCH")
    enforce = req.query.get("enforce_revision_check", "").lower() == "true"
    overwrite = _allow_overwrite(req)
    if state.write_latency > 0:
        state.sleep(state.write_latency)
    with state.lock:
        writes: list[Write] = []
        seen: set[tuple[str, str]] = set()
        for t1_path, route, delete in changes:
            tier1 = state.tier1s.get(t1_path)
            if tier1 is None:
                raise not_found(t1_path)
            route_id = str(route.get("id") or "")
            if not route_id or (t1_path, route_id) in seen:
                raise NsxFault(400, 287, f"Missing or repeated route id {route_id!r} in {t1_path}")
            seen.add((t1_path, route_id))
            if delete:
                write = prepare_delete(
                    tier1, route_id, route, allow_overwrite=overwrite, check_rev=enforce,
                    stale=state.stale_revision,
                )  # fmt: skip
                if write is None and state.hierarchical_delete_missing == "reject":
                    raise not_found(f"{t1_path}/static-routes/{route_id}")
            else:
                write = prepare_upsert(
                    tier1, route_id, route, user=user, now_ms=state.now_ms(),
                    serial=state.next_serial(), allow_overwrite=overwrite, replace=False,
                    check_rev=enforce, stale=state.stale_revision,
                )  # fmt: skip
            if write is not None:
                writes.append(write)
        _apply(state, writes)
    return Response(200)
