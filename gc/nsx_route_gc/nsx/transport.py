"""HTTP transport to the NSX manager: authentication, TLS, rate limit, retries, error mapping.

Everything that can fail on the wire becomes an NsxError (an NsxApiError when NSX answered
with an error status) whose one-line message names the method and path and carries no
credential: messages built from foreign text (NSX error bodies, urllib3 reasons) are passed
through ``_redact`` first.
"""

from __future__ import annotations

import base64
import http.cookiejar
import http.cookies
import random
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import requests
import structlog
import urllib3
from requests.adapters import HTTPAdapter

from nsx_route_gc.config import NsxSettings
from nsx_route_gc.errors import ConfigError, NsxApiError, NsxError
from nsx_route_gc.nsx.ratelimit import TokenBucket

API_PREFIX = "/policy/api/v1"
SESSION_CREATE = "/api/session/create"
SESSION_DESTROY = "/api/session/destroy"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
AUTH_MODES = ("session", "basic", "certificate", "remote")

_BACKOFF_BASE = 0.5  # seconds, first retry's upper bound
_BACKOFF_CAP = 30.0
_DETAIL_LIMIT = 300  # characters of foreign text kept in a message

log = structlog.get_logger(__name__)

# Transport failures worth another attempt; SSLError is a ConnectionError too but is
# caught before these, since a certificate does not fix itself between attempts.
_TRANSIENT = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class _RefuseCookies(http.cookiejar.DefaultCookiePolicy):
    """Keeps the session's jar empty: the JSESSIONID cookie is sent by hand instead.

    With the jar left to its own devices, requests would add whatever cookie it last stored,
    over our header, and a re-login by another thread could be undone by a late response.
    """

    def set_ok(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        return False


class NsxTransport:
    """One requests.Session shared by every thread, and the session login guarded by a lock."""

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
        self._mode = settings.auth
        self._static_auth: str | None = None
        self._cert: str | tuple[str, str] | None = None
        self._check_auth_settings(settings)
        password = settings.password.reveal() if settings.password else ""
        credential = ""
        if self._mode in ("basic", "remote"):
            credential = base64.b64encode(f"{settings.username}:{password}".encode()).decode()
            scheme = "Basic" if self._mode == "basic" else "Remote"
            self._static_auth = f"{scheme} {credential}"
        # Values never to be shown; session cookies and XSRF tokens join at login.
        self._secrets: set[str] = {s for s in (password, credential) if s}

        self._owns_session = session is None
        self._session = session if session is not None else _new_session(settings.concurrency)
        self._session.cookies.set_policy(_RefuseCookies())
        self._sleep = sleep
        self._clock = clock
        # Jitter only spreads retries out; nothing secret depends on it.
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not crypto
        self._bucket = (
            TokenBucket(settings.rate_limit, clock=clock, sleep=sleep)
            if settings.rate_limit > 0
            else None
        )
        self._verify = _tls_verify(settings)

        self._auth_lock = threading.Lock()
        self._session_id: str | None = None
        self._xsrf: str | None = None
        self._generation = 0  # bumped at every login, so a stale 401 does not log in twice
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()

    def _check_auth_settings(self, settings: NsxSettings) -> None:
        if self._mode not in AUTH_MODES:
            raise ConfigError(
                f"nsx.auth: unknown mode {self._mode!r}, expected one of {AUTH_MODES}"
            )
        if self._mode == "certificate":
            if settings.client_cert_file is None:
                raise ConfigError("nsx.client_cert_file: required for auth: certificate")
            cert = str(settings.client_cert_file)
            key = settings.client_key_file
            self._cert = (cert, str(key)) if key is not None else cert
        elif not settings.username or settings.password is None:
            raise ConfigError(f"nsx.username/nsx.password: both required for auth: {self._mode}")

    # ----------------------------------------------------------------------------- counters

    def count(self, kind: str) -> None:
        with self._counts_lock:
            self._counts[kind] += 1

    def counts(self) -> dict[str, int]:
        with self._counts_lock:
            return dict(sorted(self._counts.items()))

    # ------------------------------------------------------------------------------ request

    def request(
        self,
        method: str,
        path: str,
        *,
        kind: str,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        allow: tuple[int, ...] = (),
        authenticate: bool = True,
        max_attempts: int | None = None,
    ) -> requests.Response:
        """Send one call, retried as needed; returns a 2xx answer or one whose status is in
        ``allow``, raises NsxApiError for any other answer and NsxError for transport failures.

        ``path`` is what follows the base URL (``/policy/api/v1/...`` or ``/api/session/...``).
        """
        url = self._settings.base_url + path
        attempts_allowed = max_attempts or self._settings.max_attempts
        deadline_at = self._clock() + self._settings.deadline
        attempt = 0
        relogged = False
        while True:
            attempt += 1
            generation, auth_headers = self._auth_headers() if authenticate else (0, {})
            send_headers = {"Accept": "application/json", **(headers or {}), **auth_headers}
            outcome = self._send_once(
                method, url, path, kind, params, json_body, data, send_headers
            )
            status = outcome.status_code if isinstance(outcome, requests.Response) else None
            if isinstance(outcome, requests.Response):
                if 200 <= outcome.status_code < 300 or outcome.status_code in allow:
                    return outcome
                if (
                    outcome.status_code in (401, 403)
                    and authenticate
                    and self._mode == "session"
                    and not relogged
                ):
                    # An expired session: one new login, and this call again, once.
                    relogged = True
                    attempt -= 1
                    self._relogin(generation, method, path)
                    continue
                if outcome.status_code not in RETRY_STATUSES:
                    raise self.api_error(method, path, outcome)
            delay = self._retry_delay(attempt, outcome)
            if attempt >= attempts_allowed or self._clock() + delay > deadline_at:
                raise self._final_error(method, path, outcome, attempt)
            self.count(f"retry_{status or 'connection'}")
            log.warning(
                "nsx.retry",
                method=method,
                path=path,
                status=status,
                error=None if status else type(outcome).__name__,
                attempt=attempt,
                delay=round(delay, 3),
            )
            self._sleep(delay)

    def _send_once(
        self,
        method: str,
        url: str,
        path: str,
        kind: str,
        params: Mapping[str, str] | None,
        json_body: Any,
        data: Mapping[str, str] | None,
        headers: Mapping[str, str],
    ) -> requests.Response | Exception:
        """One HTTP exchange: the answer, or the transient transport error to retry on."""
        if self._bucket is not None:
            self._bucket.acquire()
        self.count(kind)
        try:
            return self._session.request(
                method,
                url,
                params=params,
                json=json_body,
                data=data,
                headers=headers,
                timeout=self._settings.timeout,
                # Always explicit: requests lets $REQUESTS_CA_BUNDLE override Session.verify
                # when a call passes none, which would silently replace the configured CA.
                verify=self._verify,
                cert=self._cert,
                # A redirect from an API endpoint is unexpected; do not carry credentials on.
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as exc:
            raise NsxError(f"TLS error at NSX {method} {path}: {self._detail(exc)}") from exc
        except _TRANSIENT as exc:
            return exc
        except (requests.RequestException, OSError) as exc:
            # OSError: requests reports an unreadable CA bundle or client certificate so.
            raise NsxError(f"NSX {method} {path} failed: {self._detail(exc)}") from exc

    def _retry_delay(self, attempt: int, outcome: requests.Response | Exception) -> float:
        if isinstance(outcome, requests.Response):
            retry_after = _retry_after_seconds(outcome.headers.get("Retry-After"))
            if retry_after is not None:
                return retry_after
        # Full jitter: clients that failed together do not come back together.
        return self._rng.uniform(0.0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (attempt - 1)))

    def _final_error(
        self, method: str, path: str, outcome: requests.Response | Exception, attempts: int
    ) -> NsxError:
        if isinstance(outcome, requests.Response):
            return self.api_error(method, path, outcome)
        return NsxError(
            f"NSX {method} {path} failed after {attempts} attempt(s): {self._detail(outcome)}"
        )

    # --------------------------------------------------------------------------------- auth

    def _auth_headers(self) -> tuple[int, dict[str, str]]:
        if self._static_auth is not None:
            return 0, {"Authorization": self._static_auth}
        if self._mode == "certificate":
            return 0, {}
        with self._auth_lock:
            if self._session_id is None:
                self._login()
            return self._generation, self._session_headers()

    def _session_headers(self) -> dict[str, str]:
        headers = {"Cookie": f"JSESSIONID={self._session_id}"}
        if self._xsrf:
            headers["X-XSRF-TOKEN"] = self._xsrf
        return headers

    def _relogin(self, generation: int, method: str, path: str) -> None:
        with self._auth_lock:
            if generation != self._generation:
                return  # another thread has logged in again meanwhile
            log.info("nsx.session.relogin", method=method, path=path)
            self.count("relogin")
            self._session_id = None
            self._login()

    def _login(self) -> None:
        """Create a session; the caller holds ``_auth_lock``."""
        settings = self._settings
        password = settings.password.reveal() if settings.password else ""
        response = self.request(
            "POST",
            SESSION_CREATE,
            kind="session",
            data={"j_username": settings.username or "", "j_password": password},
            authenticate=False,
        )
        session_id = _cookie(response, "JSESSIONID")
        if not session_id:
            raise NsxError(f"NSX POST {SESSION_CREATE} answered without a JSESSIONID cookie")
        self._session_id = session_id
        self._xsrf = response.headers.get("X-XSRF-TOKEN") or None
        self._secrets.update(s for s in (session_id, self._xsrf) if s)
        self._generation += 1
        log.debug("nsx.session.created", host=settings.host, xsrf=self._xsrf is not None)

    def close(self) -> None:
        """Destroy the session if one was created (failures only logged), release the pool."""
        with self._auth_lock:
            if self._session_id is not None:
                headers = self._session_headers()
                self._session_id = None
                self._xsrf = None
                self._generation += 1
                try:
                    self.request(
                        "POST",
                        SESSION_DESTROY,
                        kind="session",
                        headers=headers,
                        authenticate=False,
                        max_attempts=1,
                    )
                except NsxError as exc:
                    log.warning("nsx.session.destroy_failed", error=str(exc))
        if self._owns_session:
            self._session.close()

    # ------------------------------------------------------------------------------- errors

    def api_error(self, method: str, path: str, response: requests.Response) -> NsxApiError:
        """NSX's error body, if it sent one, turned into an NsxApiError."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            text = self._redact(response.text or "")[:_DETAIL_LIMIT] or None
            return NsxApiError(method, path, response.status_code, error_message=text)
        message = body.get("error_message")
        related = body.get("related_errors")
        parts = [str(message)] if message else []
        if isinstance(related, list):
            parts.extend(
                str(r["error_message"])
                for r in related
                if isinstance(r, dict) and r.get("error_message")
            )
        text = self._redact("; ".join(parts))[:_DETAIL_LIMIT] or None
        http_status = body.get("httpStatus")
        module = body.get("module_name")
        return NsxApiError(
            method,
            path,
            response.status_code,
            http_status=self._redact(str(http_status)) if http_status else None,
            error_code=_as_int(body.get("error_code")),
            error_message=text,
            module_name=self._redact(str(module)) if module else None,
        )

    def decode_json(self, response: requests.Response, method: str, path: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise NsxError(f"malformed JSON from NSX at {method} {path}: not JSON") from exc

    def _detail(self, exc: BaseException) -> str:
        """The useful part of a requests/urllib3 exception, without the connection pool blurb."""
        reason: BaseException = exc
        inner = exc.args[0] if exc.args else None
        if isinstance(inner, urllib3.exceptions.MaxRetryError) and inner.reason is not None:
            reason = inner.reason
        return self._redact(f"{type(exc).__name__}: {reason}")[:_DETAIL_LIMIT]

    def _redact(self, text: str) -> str:
        for secret in list(self._secrets):
            text = text.replace(secret, "***")
        return " ".join(text.split())


def _new_session(concurrency: int) -> requests.Session:
    session = requests.Session()
    # One pooled connection per worker thread, so concurrent router listings do not
    # open and discard connections.
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, concurrency))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _tls_verify(settings: NsxSettings) -> str | bool:
    if settings.ca_file is not None:
        return str(settings.ca_file)
    if settings.insecure:
        log.warning("nsx.tls_unverified", host=settings.host)
        # The operator chose this and has been told once; one warning per request is noise.
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        return False
    return True


def _cookie(response: requests.Response, name: str) -> str | None:
    value = response.cookies.get(name)
    if value:
        return str(value)
    # The jar may refuse a cookie (a Domain attribute naming a load balancer, say): read the
    # raw Set-Cookie headers too.
    raw_headers = getattr(response.raw, "headers", None)
    getlist = getattr(raw_headers, "getlist", None)
    if getlist is None:
        return None
    for header in getlist("Set-Cookie"):
        jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
        try:
            jar.load(header)
        except http.cookies.CookieError:
            continue
        if name in jar and jar[name].value:
            return jar[name].value
    return None


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After in seconds; the HTTP-date form is ignored (backoff applies instead)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
