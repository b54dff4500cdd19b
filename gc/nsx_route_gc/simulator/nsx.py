"""State of the simulated NSX manager: objects, knobs, injected failures, counters, sessions,
failed logins and lockout, and VMware Cloud on AWS (reverse proxy and CSP tokens).

Knobs are plain attributes (or :meth:`NsxState.set_knobs`) that a test, demo or benchmark may
change while the server runs; every request reads them afresh. Mutators (``add_route``,
``bump_revision``, ``remove_route``) set up drift behind the tool's back.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from nsx_route_gc.simulator.model import Scenario, SimRoute
from nsx_route_gc.simulator.nsx_store import (
    PROTECTION_VALUES,
    NsxFault,
    StoredRoute,
    Tier1,
    render_route,
)

PROJECTS_PREFIX = "/orgs/default/projects/"
KNOBS = (
    "latency",
    "write_latency",
    "rate_limit",
    "retry_after",
    "concurrency_limit",
    "short_pages",
    "delete_status",
    "delete_missing",
    "hierarchical_delete_missing",
    "max_hierarchical_children",
    "search_count_every_page",
    "null_cursor",
    "projects_api",
    "revision_conflict",
    "lockout_threshold",
    "lockout_seconds",
)
# What NSX answers to a stale _revision, in each form the upstream clients map to
# StaleRevision (nsx-operator pkg/nsx/util/utils.go, nsxlib v3/client.py): the knob takes one.
REVISION_CONFLICTS: dict[str, tuple[int, int]] = {
    "412": (412, 604),
    "409": (409, 604),
    "400/500087": (400, 500087),
    "400/500232": (400, 500232),
    "400/100148": (400, 100148),
    "404/500090": (404, 500090),
}
# Error messages of the codes a test may inject with fail_next.
_MESSAGES = {
    607: "The operation failed because of a transaction abort. Please retry.",
    98: "Cannot connect to server.",
    60508: "Bad Request due to indexing is in progress, please retry after sometime",
    60514: "Request timed out. This may occur when system is under load.",
    60515: "Index is currently out of sync",
}
# The message of a refused login, bad password and locked account alike
# (terraform-provider-nsxt issue #761).
LOGIN_REFUSED = (
    "The credentials were incorrect or the account specified has been locked. (code 403)"
)
CSP_AUTHORIZE = "/csp/gateway/am/api/auth/api-tokens/authorize"


@dataclass
class VmcState:
    """The reverse proxy's base path and the CSP tokens of a simulated VMC SDDC."""

    base_path: str
    refresh_token: str
    token_ttl: float = 1800.0  # expires_in of each access token, seconds
    expires_in_as_string: bool = False  # "1799" instead of 1799
    tokens: dict[str, float] = field(default_factory=dict)  # access token -> expiry

    def exchange(self, refresh_token: str, now: float) -> str | None:
        if not secrets.compare_digest(refresh_token.encode(), self.refresh_token.encode()):
            return None
        token = secrets.token_urlsafe(48)
        self.tokens[token] = now + self.token_ttl
        return token

    def valid(self, token: str, now: float) -> bool:
        return self.tokens.get(token, 0.0) > now

    def expire_tokens(self) -> None:
        self.tokens.clear()


def project_of(path: str) -> str | None:
    """The project of a policy path under /orgs/default/projects/{p}/..., else None."""
    if not path.startswith(PROJECTS_PREFIX):
        return None
    return path[len(PROJECTS_PREFIX) :].split("/", 1)[0]


class NsxState:
    def __init__(
        self,
        *,
        username: str = "admin",
        password: str | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.username = username
        self.password = password or secrets.token_urlsafe(16)
        # Common names of client certificates accepted as principal identities.
        self.principal_identities: set[str] = set()
        self._clock = clock
        self.monotonic = monotonic
        self.sleep = sleep
        self.lock = threading.RLock()
        self.tier1s: dict[str, Tier1] = {}
        self.projects: set[str] = set()
        self.generation = 0  # bumped on every write, invalidates search caches
        # (router, route id) -> (the route's version, its rendered JSON); see route_json.
        self._rendered: dict[tuple[str, str], tuple[tuple[int, int, int], bytes]] = {}
        self.search_cache: dict[tuple[str, str], tuple[int, list[tuple[str, str]]]] = {}
        # A search index that lags behind writes: router -> routes as last indexed, frozen
        # by freeze_search_index; None: search sees every write at once.
        self.search_index: dict[str, dict[str, StoredRoute]] | None = None
        self._serial = 0
        # Knobs.
        self.latency = 0.0  # seconds added to every request
        # Seconds a DELETE or hierarchical PATCH waits before it takes effect: a client killed
        # meanwhile still has its deletion carried out, as with a real manager.
        self.write_latency = 0.0
        self.rate_limit: float | None = None  # requests per second per client; None: off
        self.retry_after: int | None = 1  # Retry-After seconds with a 429; None: no header
        self.concurrency_limit: int | None = None  # requests in flight; None: off
        self.short_pages = False  # answer page_size // 3 + 1 items per page
        self.delete_status = 200  # 200 or 204
        self.delete_missing = "404"  # "404" or "200" when deleting a missing route
        self.hierarchical_delete_missing = "reject"  # "reject" (404 whole batch) | "ignore"
        self.max_hierarchical_children: int | None = None  # larger bodies: 400
        # Search result_count on every page; NSX documents it "set only on first page".
        self.search_count_every_page = False
        # The last page of a listing or search carries a "0000..." cursor instead of none.
        self.null_cursor = False
        # None: /orgs/default/projects is served; 400, 403 or 404: what an NSX before 4.0
        # or VMC answers there instead.
        self.projects_api: int | None = None
        self.revision_conflict = "412"  # a key of REVISION_CONFLICTS
        # Failed logins (session create, basic or remote auth) per user: this many within
        # lockout_seconds lock the account for lockout_seconds; an attempt while locked,
        # right password or not, is refused the same way and starts the lockout again.
        self.lockout_threshold = 5
        self.lockout_seconds = 900.0
        self._failed_logins: dict[str, deque[float]] = {}
        self._locked_until: dict[str, float] = {}
        # VMware Cloud on AWS (enable_vmc): the reverse proxy's base path, CSP tokens.
        self.vmc: VmcState | None = None
        # Injected failures: key -> [status, remaining times].
        self._page_failures: dict[tuple[str, int], list[int]] = {}
        self._delete_failures: dict[str, list[int]] = {}
        self._hierarchical_failure: list[int] = [0, 0]
        self._next_failures: dict[str, list[int]] = {}  # kind -> [status, code, times]
        # Counters and sessions.
        self.counters: Counter[str] = Counter()
        self._sessions: dict[str, tuple[str, str]] = {}  # JSESSIONID -> (user, xsrf)
        self._in_flight = 0
        self._recent: dict[str, deque[float]] = {}

    # -- time ---------------------------------------------------------------------------

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- loading and mutators -----------------------------------------------------------

    def load(self, scenario: Scenario) -> None:
        now = self.now_ms()
        with self.lock:
            for path in scenario.tier1s:
                self.add_tier1(path, create_ms=now - 30 * 86_400_000)
            for route in scenario.routes:
                self.add_route(route, now_ms=now)
            for tier1 in self.tier1s.values():
                tier1.ids.sort()
                for stored in tier1.routes.values():
                    self.route_json(tier1.path, stored)

    def route_json(self, router: str, route: StoredRoute) -> bytes:
        """``render_route`` as compact JSON, rendered again only once the route changed (every
        write bumps its revision or replaces it with a new serial). Caller holds the lock."""
        version = (route.revision, route.serial, route.modified_ms)
        hit = self._rendered.get((router, route.id))
        if hit is not None and hit[0] == version:
            return hit[1]
        text = json.dumps(render_route(router, route), separators=(",", ":")).encode()
        self._rendered[(router, route.id)] = (version, text)
        return text

    def add_tier1(self, path: str, *, create_ms: int | None = None) -> None:
        with self.lock:
            if path not in self.tier1s:
                self.tier1s[path] = Tier1(path, self.now_ms() if create_ms is None else create_ms)
                project = project_of(path)
                if project is not None:
                    self.projects.add(project)
                self.generation += 1

    def next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def add_route(self, route: SimRoute, *, now_ms: int | None = None) -> None:
        """Put a route on its Tier-1 directly, as the CCM (or a human) would have."""
        if route.protection not in PROTECTION_VALUES:
            raise ValueError(f"unknown _protection {route.protection!r} for route {route.id}")
        created = (self.now_ms() if now_ms is None else now_ms) - route.age_ms
        stored = StoredRoute.of(route, created_ms=created, serial=self.next_serial())
        with self.lock:
            if route.router not in self.tier1s:
                self.add_tier1(route.router)
            tier1 = self.tier1s[route.router]
            if now_ms is None:
                tier1.add(stored)
            else:  # bulk load: the caller sorts the ids once at the end
                if route.id not in tier1.routes:
                    tier1.ids.append(route.id)
                tier1.routes[route.id] = stored
            self.generation += 1

    def get_route(self, router: str, route_id: str) -> dict[str, Any] | None:
        with self.lock:
            tier1 = self.tier1s.get(router)
            route = tier1.routes.get(route_id) if tier1 else None
            return render_route(router, route) if route else None

    def routes(self, router: str) -> list[dict[str, Any]]:
        with self.lock:
            tier1 = self.tier1s[router]
            return [render_route(router, tier1.routes[i]) for i in tier1.ids]

    def route_count(self, router: str | None = None) -> int:
        with self.lock:
            tier1s = [self.tier1s[router]] if router else list(self.tier1s.values())
            return sum(len(t.routes) for t in tier1s)

    def bump_revision(self, router: str, route_id: str, by: int = 1) -> int:
        """Change a route behind the tool's back (its revision and modification time)."""
        with self.lock:
            route = self.tier1s[router].routes[route_id]
            route.revision += by
            route.modified_ms = self.now_ms()
            self.generation += 1
            return route.revision

    def remove_route(self, router: str, route_id: str) -> bool:
        with self.lock:
            removed = self.tier1s[router].remove(route_id) is not None
            self.generation += 1
            return removed

    def freeze_search_index(self) -> None:
        """From now on search answers from the routes as they are now (a stale index: later
        deletions still found, later creations not), until thaw_search_index."""
        with self.lock:
            self.search_index = {p: dict(t.routes) for p, t in self.tier1s.items()}
            self.search_cache = {}

    def unindex_route(self, router: str, route_id: str) -> None:
        """The frozen index loses a route NSX still has (an index being rebuilt)."""
        with self.lock:
            if self.search_index is None:
                self.freeze_search_index()
            index = self.search_index or {}
            index[router].pop(route_id, None)
            self.search_cache = {}

    def thaw_search_index(self) -> None:
        with self.lock:
            self.search_index = None
            self.search_cache = {}

    # -- knobs and failures -------------------------------------------------------------

    def set_knobs(self, **knobs: Any) -> None:
        for name, value in knobs.items():
            if name not in KNOBS:
                raise ValueError(f"unknown NSX simulator knob {name!r}; known: {', '.join(KNOBS)}")
            setattr(self, name, value)

    def fail_list_page(
        self, router: str, page_index: int, status: int = 500, times: int = 1
    ) -> None:
        """Answer ``status`` to the next ``times`` requests for that page (0: the first)."""
        with self.lock:
            self._page_failures[(router, page_index)] = [status, times]

    def fail_next(
        self, kind: str, times: int = 1, *, status: int = 500, error_code: int = 607
    ) -> None:
        """Answer the next ``times`` authenticated requests of ``kind`` (a counter name:
        ``nsx_list_routes``, ``nsx_search``, ``nsx_hierarchical``...) with ``status`` and
        ``error_code``: 500/607 (transaction aborted) and 500/98 (cannot connect to server)
        are what NSX marks retriable; 400/60508, 60514, 60515 are search index troubles."""
        with self.lock:
            self._next_failures[kind] = [status, error_code, times]

    def take_next_failure(self, kind: str) -> NsxFault | None:
        with self.lock:
            entry = self._next_failures.get(kind)
            if entry is None or entry[2] <= 0:
                return None
            entry[2] -= 1
            self.counters[f"injected_{entry[0]}"] += 1
            message = _MESSAGES.get(entry[1], f"Injected failure {entry[1]}")
            return NsxFault(entry[0], entry[1], message)

    def stale_revision(self, path: str, given: object, current: int) -> NsxFault:
        status, code = REVISION_CONFLICTS[self.revision_conflict]
        return NsxFault(
            status,
            code,
            f"The object {path} was modified by somebody else: revision {given} given, "
            f"{current} current",
        )

    def fail_delete(self, route_id: str, status: int = 500, times: int = 1) -> None:
        with self.lock:
            self._delete_failures[route_id] = [status, times]

    def fail_hierarchical(self, times: int = 1, status: int = 400) -> None:
        with self.lock:
            self._hierarchical_failure = [status, times]

    def _take(self, entry: list[int] | None) -> int | None:
        if entry is None or entry[1] <= 0:
            return None
        entry[1] -= 1
        return entry[0]

    def take_page_failure(self, router: str, page_index: int) -> int | None:
        with self.lock:
            return self._take(self._page_failures.get((router, page_index)))

    def take_delete_failure(self, route_id: str) -> int | None:
        with self.lock:
            return self._take(self._delete_failures.get(route_id))

    def take_hierarchical_failure(self) -> int | None:
        with self.lock:
            return self._take(self._hierarchical_failure)

    # -- counters -----------------------------------------------------------------------

    def count(self, kind: str) -> None:
        with self.lock:
            self.counters[kind] += 1

    def reset_counters(self) -> None:
        with self.lock:
            self.counters.clear()

    # -- sessions and throttling --------------------------------------------------------

    def check_password(self, username: str, password: str) -> bool:
        return secrets.compare_digest(
            f"{username}\0{password}".encode(), f"{self.username}\0{self.password}".encode()
        )

    def login(self, username: str, password: str) -> None:
        """Check a login (session create, basic or remote auth) as NSX's authentication
        policy does (api_max_auth_failures 5, api_failed_auth_reset_period and
        api_failed_auth_lockout_period 900 s): 403 with the same message for a wrong
        password and a locked account. Counted: ``nsx_login_failed``, ``nsx_lockout``."""
        now = self.monotonic()
        with self.lock:
            if self._locked_until.get(username, 0.0) > now:
                # Broadcom KB 316650: a failed attempt during the lockout restarts it.
                self._locked_until[username] = now + self.lockout_seconds
                self.counters["nsx_login_failed"] += 1
                raise NsxFault(403, 403, LOGIN_REFUSED)
            if self.check_password(username, password):
                self._failed_logins.pop(username, None)
                return
            self.counters["nsx_login_failed"] += 1
            recent = self._failed_logins.setdefault(username, deque())
            while recent and recent[0] <= now - self.lockout_seconds:
                recent.popleft()
            recent.append(now)
            if len(recent) >= self.lockout_threshold:
                self._locked_until[username] = now + self.lockout_seconds
                self.counters["nsx_lockout"] += 1
                recent.clear()
            raise NsxFault(403, 403, LOGIN_REFUSED)

    def locked(self, username: str) -> bool:
        with self.lock:
            return self._locked_until.get(username, 0.0) > self.monotonic()

    # -- VMware Cloud on AWS ------------------------------------------------------------

    def enable_vmc(self, org: str = "sim-org", sddc: str = "sim-sddc") -> VmcState:
        """Serve NSX only behind the VMC reverse proxy path, with CSP access tokens (header
        ``csp-auth-token``) obtained at ``CSP_AUTHORIZE`` for ``vmc.refresh_token``; no
        session login, no basic auth, and no projects (403)."""
        self.vmc = VmcState(
            base_path=f"/vmc/reverse-proxy/api/orgs/{org}/sddcs/{sddc}/sks-nsxt-manager",
            refresh_token=secrets.token_urlsafe(32),
        )
        self.projects_api = 403
        return self.vmc

    def create_session(self, username: str) -> tuple[str, str]:
        session, xsrf = secrets.token_hex(16).upper(), secrets.token_urlsafe(24)
        with self.lock:
            self._sessions[session] = (username, xsrf)
        return session, xsrf

    def session(self, session_id: str) -> tuple[str, str] | None:
        with self.lock:
            return self._sessions.get(session_id)

    def destroy_session(self, session_id: str) -> None:
        with self.lock:
            self._sessions.pop(session_id, None)

    def expire_sessions(self) -> None:
        """Invalidate every session, as a manager restart or idle timeout does."""
        with self.lock:
            self._sessions.clear()

    def check_rate(self, client: str) -> None:
        limit = self.rate_limit
        if limit is None:
            return
        now = self.monotonic()
        with self.lock:
            recent = self._recent.setdefault(client, deque())
            while recent and recent[0] <= now - 1.0:
                recent.popleft()
            if len(recent) >= limit:
                self.counters["429"] += 1
                raise NsxFault(
                    429, 102, f"Client '{client}' exceeded request rate of {limit:g} per second."
                )
            recent.append(now)

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        """Hold a concurrency slot for one request (503 when over the limit), then latency."""
        limit = self.concurrency_limit
        with self.lock:
            self._in_flight += 1
            over = limit is not None and self._in_flight > limit
            if over:
                self.counters["503"] += 1
        try:
            if over:
                raise NsxFault(
                    503, 103, f"Client exceeded concurrent request limit of {limit}. Retry later."
                )
            if self.latency > 0:
                self.sleep(self.latency)
            yield
        finally:
            with self.lock:
                self._in_flight -= 1
