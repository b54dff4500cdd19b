"""HTTP transport to the NSX manager: authentication, TLS, rate limit, retries, error mapping.

Everything that can fail on the wire becomes an NsxError (an NsxApiError when NSX answered
with an error status) whose one-line message names the method and path and carries no
credential: messages built from foreign text (NSX error bodies, urllib3 reasons) are passed
through ``_redact`` first.

Authentication is tried once per run. A refused login (session create, the first call with
basic, remote or certificate auth, a VMC token exchange), an unreachable manager or a TLS
failure becomes an NsxAccessError that names the setting to check; from then on every call
fails with it at once, without touching the manager: NSX locks an account after 5 failed
logins, and that account is often the admin the CCMs use too. Until one call has proven that
the manager accepts us, authenticated calls go one at a time, so threads cannot each try.
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
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import requests
import structlog
import urllib3
from requests.adapters import HTTPAdapter

from nsx_route_gc.config import NsxSettings
from nsx_route_gc.errors import ConfigError, NsxAccessError, NsxApiError, NsxError
from nsx_route_gc.logs import register_secret, scrub, secret_forms
from nsx_route_gc.nsx.concurrency import AdaptiveLimit, Change, InFlightGate, Permits
from nsx_route_gc.nsx.ratelimit import TokenBucket

API_PREFIX = "/policy/api/v1"
SESSION_CREATE = "/api/session/create"
SESSION_DESTROY = "/api/session/destroy"
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
# A 500 NSX marks retriable (nsx-operator pkg/nsx/util/utils.go, nsxlib v3/client.py):
# 98 CannotConnectToServer, 607 APITransactionAborted. Other 500s are failures.
RETRY_500_CODES = frozenset({98, 607})
# 403 codes that mean the credentials or session were refused: 98 a bad XSRF token (the
# session expired), 403 InvalidCredentials (a bad password and a locked account alike).
AUTH_403_CODES = frozenset({98, 403})
AUTH_MODES = ("session", "basic", "certificate", "remote", "vmc")
# "Changed since it was read", in every form NSX answers it (nsx-operator utils.go
# StaleRevision, nsxlib client.py): 409 and 412 whatever the code, these codes with 400/404.
_STALE_400 = frozenset({500087, 500232, 100148})
_STALE_404 = frozenset({500090})

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


def is_revision_conflict(exc: NsxError) -> bool:
    """Whether NSX refused a write because the object changed since it was read."""
    if not isinstance(exc, NsxApiError):
        return False
    codes = {exc.error_code, *exc.related_codes}
    return (
        exc.status in (409, 412)
        or (exc.status == 400 and bool(codes & _STALE_400))
        or (exc.status == 404 and bool(codes & _STALE_404))
    )


class _Target(NamedTuple):
    """Where a call goes and how its server is verified: the manager, or the VMC auth host."""

    verify: str | bool
    cert: str | tuple[str, str] | None
    check: str  # the settings to check when TLS verification fails


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
        refresh = settings.vmc_token.reveal() if settings.vmc_token else ""
        # Values never to be shown; session cookies, XSRF and access tokens join at login.
        self._secrets: set[str] = {s for s in (password, credential, refresh) if s}
        register_secret(refresh)  # for every log line too, as bound_run does for a run

        self._owns_session = session is None
        self._session = (
            session
            if session is not None
            else _new_session(max(settings.concurrency, settings.max_concurrency))
        )
        self._session.cookies.set_policy(_RefuseCookies())
        self._sleep = sleep
        self._clock = clock
        # Jitter only spreads retries out; nothing secret depends on it.
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not crypto
        # nsx.rate_limit is 1 to 10000 (config.py): there is always a bucket.
        self._bucket = TokenBucket(settings.rate_limit, clock=clock, sleep=sleep)
        # The calls in flight: nsx.concurrency at first, adapted up to nsx.max_concurrency.
        self._limit = AdaptiveLimit(
            settings.concurrency, settings.max_concurrency, rate=settings.rate_limit, clock=clock
        )
        self._in_flight = InFlightGate(self._limit, on_change=_log_change)
        self.permits = Permits(self._limit, self._in_flight)
        self._verify = _tls_verify(settings)
        self._manager = _Target(self._verify, self._cert, "nsx.ca_file (or nsx.insecure)")
        self._csp = _Target(
            settings.vmc_auth_verify,
            None,
            "the system trust store or REQUESTS_CA_BUNDLE for nsx.vmc_auth_host",
        )

        self._auth_lock = threading.Lock()
        # Held by the first authenticated call until the manager has accepted us.
        self._gate = threading.Lock()
        self._proven = False
        self._access_error: NsxAccessError | None = None
        self._session_id: str | None = None
        self._xsrf: str | None = None
        self._access_token: str | None = None
        self._token_renew_at = 0.0
        self._generation = 0  # bumped at every login, so a stale 401 does not log in twice
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()

    def _check_auth_settings(self, settings: NsxSettings) -> None:
        if self._mode not in AUTH_MODES:
            raise ConfigError(
                f"nsx.auth: unknown mode {self._mode!r}, expected one of {AUTH_MODES}"
            )
        if self._mode == "vmc":
            if settings.vmc_token is None:
                raise ConfigError("nsx.vmc_access_token_file: required for auth: vmc")
        elif self._mode == "certificate":
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

    @property
    def concurrency_peak(self) -> int:
        """The widest the in-flight limit was this run."""
        return self._in_flight.peak

    @property
    def in_flight_limit(self) -> int:
        """How many calls may be in flight now (the adaptive limit)."""
        return self._limit.limit

    @property
    def max_in_flight(self) -> int:
        """The most calls that may ever be in flight at once: threads beyond it only wait."""
        return self._limit.maximum

    # ------------------------------------------------------------------------------ request

    def request(
        self,
        method: str,
        path: str,
        *,
        kind: str,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: Mapping[str, str] | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        allow: tuple[int, ...] = (),
    ) -> requests.Response:
        """Send one authenticated call, retried as needed; returns a 2xx answer or one whose
        status is in ``allow``, raises NsxApiError for any other answer, NsxError for
        transport failures and NsxAccessError when the manager refuses us or cannot be
        reached at all.

        ``path`` is what follows the base URL (``/policy/api/v1/...``).
        """
        call = (method, path, kind, params, json_body, data, headers, allow, True)
        self._raise_if_refused()
        if self._proven:
            return self._request(*call)
        with self._gate:
            self._raise_if_refused()
            if self._proven:
                return self._request(*call)
            try:
                response = self._request(*call)
            except NsxAccessError:
                raise
            except NsxApiError:
                self._proven = True  # NSX answered, past authentication
                raise
            except NsxError as exc:
                raise self._refuse(self._unreachable(exc)) from exc
            self._proven = True
            return response

    def authenticate(self) -> None:
        """Log in (session) or obtain an access token (vmc) now, before any work starts, so
        a refused login ends the run before routers are walked. With basic, remote and
        certificate auth the first call is the check (no call is spent on it alone)."""
        self._raise_if_refused()
        if self._mode in ("session", "vmc"):
            with self._gate:
                self._raise_if_refused()
                self._auth_headers()

    def _request(
        self,
        method: str,
        path: str,
        kind: str,
        params: Mapping[str, str] | None,
        json_body: Any,
        data: Mapping[str, str] | bytes | None,
        headers: Mapping[str, str] | None,
        allow: tuple[int, ...],
        authenticate: bool,
        *,
        max_attempts: int | None = None,
        url: str | None = None,
    ) -> requests.Response:
        target = self._manager if url is None else self._csp
        url = url or self._settings.base_url + path
        attempts_allowed = max_attempts or self._settings.max_attempts
        deadline_at = self._clock() + self._settings.deadline
        attempt = 0
        reauthenticated = False
        while True:
            attempt += 1
            generation, auth_headers = self._auth_headers() if authenticate else (0, {})
            send_headers = {"Accept": "application/json", **(headers or {}), **auth_headers}
            outcome = self._send_once(
                method, url, path, kind, params, json_body, data, send_headers, target
            )
            status = outcome.status_code if isinstance(outcome, requests.Response) else None
            if isinstance(outcome, requests.Response):
                if 200 <= outcome.status_code < 300 or outcome.status_code in allow:
                    return outcome
                if authenticate and self._auth_refused(outcome):
                    if self._mode in ("session", "vmc") and not reauthenticated:
                        # An expired session or token: log in again once, and this call again.
                        reauthenticated = True
                        attempt -= 1
                        self._reauthenticate(generation, method, path)
                        continue
                    raise self._refuse(self._login_refused(outcome, f"{method} {path}"))
                if not self._retriable(outcome):
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

    def _retriable(self, response: requests.Response) -> bool:
        if response.status_code in RETRY_STATUSES:
            return True
        return response.status_code == 500 and bool(_error_codes(response) & RETRY_500_CODES)

    def _auth_refused(self, response: requests.Response) -> bool:
        """The credentials, session or token were refused (not: this call is forbidden)."""
        if response.status_code == 401:
            return True
        if response.status_code != 403:
            return False
        codes = _error_codes(response)
        # Before anything was accepted, a 403 without an NSX code is a refused login too.
        return bool(codes & AUTH_403_CODES) or (not codes and not self._proven)

    def _send_once(
        self,
        method: str,
        url: str,
        path: str,
        kind: str,
        params: Mapping[str, str] | None,
        json_body: Any,
        data: Mapping[str, str] | bytes | None,
        headers: Mapping[str, str],
        target: _Target,
    ) -> requests.Response | Exception:
        """One HTTP exchange: the answer, or the transient transport error to retry on.

        It waits for a slot of the in-flight limit, then for a token of the bucket; the
        time on the wire alone tells the limit how slow the manager is."""
        ticket = self._in_flight.enter()
        status: int | None = None
        sent = 0.0
        try:
            self._bucket.acquire()
            self.count(kind)
            sent = self._clock()
            outcome = self._exchange(method, url, path, params, json_body, data, headers, target)
            if isinstance(outcome, requests.Response):
                status = outcome.status_code
            return outcome
        finally:
            self._in_flight.leave(self._clock() - sent, status, ticket)

    def _exchange(
        self,
        method: str,
        url: str,
        path: str,
        params: Mapping[str, str] | None,
        json_body: Any,
        data: Mapping[str, str] | bytes | None,
        headers: Mapping[str, str],
        target: _Target,
    ) -> requests.Response | Exception:
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
                verify=target.verify,
                cert=target.cert,
                # A redirect from an API endpoint is unexpected; do not carry credentials on.
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as exc:
            # A certificate does not fix itself: the run stops, naming what to check.
            where = urlsplit(url).netloc
            raise self._refuse(
                NsxAccessError(
                    f"TLS verification of {where} failed at {method} {path}: "
                    f"{self._detail(exc)}; check {target.check}"
                )
            ) from exc
        except _TRANSIENT as exc:
            return exc
        except requests.RequestException as exc:
            raise NsxError(f"NSX {method} {path} failed: {self._detail(exc)}") from exc
        except OSError as exc:
            # requests reports an unreadable CA bundle or client certificate so.
            raise self._refuse(
                NsxAccessError(
                    f"NSX {method} {path} failed: {self._detail(exc)}; check nsx.ca_file, "
                    "nsx.client_cert_file and nsx.client_key_file"
                )
            ) from exc

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
            if self._mode == "vmc":
                if self._access_token is None or self._clock() >= self._token_renew_at:
                    self._exchange_token()
                return self._generation, {"csp-auth-token": self._access_token or ""}
            if self._session_id is None:
                self._login()
            return self._generation, self._session_headers()

    def _session_headers(self) -> dict[str, str]:
        headers = {"Cookie": f"JSESSIONID={self._session_id}"}
        if self._xsrf:
            headers["X-XSRF-TOKEN"] = self._xsrf
        return headers

    def _reauthenticate(self, generation: int, method: str, path: str) -> None:
        with self._auth_lock:
            if generation != self._generation:
                return  # another thread has logged in again meanwhile
            event = "nsx.vmc.token_renew" if self._mode == "vmc" else "nsx.session.relogin"
            log.info(event, method=method, path=path)
            self.count("relogin")
            if self._mode == "vmc":
                self._exchange_token()
            else:
                self._session_id = None
                self._login()

    def _login(self) -> None:
        """Create a session, once: any failure ends the run. The caller holds ``_auth_lock``."""
        self._raise_if_refused()
        settings = self._settings
        password = settings.password.reveal() if settings.password else ""
        try:
            response = self._request(
                "POST",
                SESSION_CREATE,
                "session",
                None,
                None,
                {"j_username": settings.username or "", "j_password": password},
                None,
                (401, 403),
                False,
            )
        except NsxAccessError:
            raise
        except NsxApiError as exc:
            message = f"NSX login at {settings.host} failed: {exc}"
            raise self._refuse(NsxAccessError(message)) from exc
        except NsxError as exc:
            raise self._refuse(self._unreachable(exc)) from exc
        if response.status_code in (401, 403):
            raise self._refuse(self._login_refused(response, f"POST {SESSION_CREATE}"))
        session_id = _cookie(response, "JSESSIONID")
        if not session_id:
            raise self._refuse(
                NsxAccessError(f"NSX POST {SESSION_CREATE} answered without a JSESSIONID cookie")
            )
        self._session_id = session_id
        self._xsrf = response.headers.get("X-XSRF-TOKEN") or None
        self._secrets.update(s for s in (session_id, self._xsrf) if s)
        self._generation += 1
        self._proven = True
        log.debug("nsx.session.created", host=settings.host, xsrf=self._xsrf is not None)

    def _exchange_token(self) -> None:
        """Exchange the VMC API (refresh) token for an access token at the CSP auth host.
        A refusal ends the run. The caller holds ``_auth_lock``."""
        self._raise_if_refused()
        settings = self._settings
        url = settings.vmc_auth_url
        where = urlsplit(url)
        token = settings.vmc_token.reveal() if settings.vmc_token else ""
        try:
            response = self._request(
                "POST",
                where.path,
                "csp_token",
                None,
                None,
                {"refresh_token": token},
                None,
                (400, 401, 403),
                False,
                url=url,
            )
        except NsxAccessError:
            raise
        except NsxError as exc:
            raise self._refuse(
                NsxAccessError(
                    f"VMC token exchange at {where.netloc} failed: {exc}; check "
                    "nsx.vmc_auth_host (NSXT_VMC_AUTH_HOST)"
                )
            ) from exc
        if response.status_code in (400, 401, 403):
            raise self._refuse(
                NsxAccessError(
                    f"the VMC auth host {where.netloc} refused the API token "
                    f"({response.status_code}): check NSXT_VMC_ACCESS_TOKEN or "
                    "nsx.vmc_access_token_file; not retried this run"
                )
            )
        try:
            body = response.json()
        except (ValueError, RecursionError):
            body = None  # refused below with the other malformed answers, once a run
        access = body.get("access_token") if isinstance(body, dict) else None
        expires = _seconds(body.get("expires_in")) if isinstance(body, dict) else None
        if not isinstance(access, str) or not access or expires is None:
            raise self._refuse(
                NsxAccessError(
                    f"malformed answer from the VMC auth host {where.netloc}: "
                    "no access_token or expires_in"
                )
            )
        self._secrets.add(access)
        register_secret(access)
        self._access_token = access
        # Renewed ahead of its expiry: a call must not leave with a token about to lapse.
        self._token_renew_at = self._clock() + expires - min(60.0, expires / 10)
        self._generation += 1
        log.info("nsx.vmc.token", auth_host=where.netloc, expires_in=expires)

    # ------------------------------------------------------------------ refusal, once a run

    def _refuse(self, exc: NsxAccessError) -> NsxAccessError:
        """Remember the first refusal: every later call fails with it, sending nothing."""
        if self._access_error is None:
            self._access_error = exc
            log.error("nsx.access_refused", error=str(exc))
        return exc

    def _raise_if_refused(self) -> None:
        if self._access_error is not None:
            # A new instance each time: threads must not share one traceback.
            raise NsxAccessError(str(self._access_error))

    def _login_refused(self, response: requests.Response, where: str) -> NsxAccessError:
        method, _, path = where.partition(" ")
        error = self.api_error(method, path, response)
        detail = f"{response.status_code}"
        if error.error_code is not None:
            detail += f" error_code={error.error_code}"
        if error.error_message:
            detail += f": {error.error_message}"
        check = {
            "certificate": "nsx.client_cert_file and nsx.client_key_file (principal identity)",
            "vmc": "NSXT_VMC_ACCESS_TOKEN or nsx.vmc_access_token_file (the VMC API token)",
        }.get(
            self._mode,
            "nsx.username (NSXT_USERNAME) and its password (nsx.password_file or NSXT_PASSWORD)",
        )
        return NsxAccessError(
            f"NSX at {self._settings.host} refused the login at {where} ({detail}): check "
            f"{check}; not retried, as NSX locks an account after 5 failed logins"
        )

    def _unreachable(self, exc: NsxError) -> NsxAccessError:
        return NsxAccessError(
            f"cannot reach NSX at {self._settings.host}: {exc}; check nsx.host (NSXT_MANAGER_HOST)"
        )

    def close(self) -> None:
        """Destroy the session if one was created (failures only logged), release the pool."""
        with self._auth_lock:
            if self._session_id is not None:
                headers = self._session_headers()
                self._session_id = None
                self._xsrf = None
                self._generation += 1
                try:
                    self._request(
                        "POST",
                        SESSION_DESTROY,
                        "session",
                        None,
                        None,
                        None,
                        headers,
                        (),
                        False,
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
        related_codes = tuple(
            code
            for r in (related if isinstance(related, list) else [])
            if isinstance(r, dict) and (code := _as_int(r.get("error_code"))) is not None
        )
        return NsxApiError(
            method,
            path,
            response.status_code,
            http_status=self._redact(str(http_status)) if http_status else None,
            error_code=_as_int(body.get("error_code")),
            error_message=text,
            module_name=self._redact(str(module)) if module else None,
            related_codes=related_codes,
        )

    def decode_json(self, response: requests.Response, method: str, path: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise NsxError(f"malformed JSON from NSX at {method} {path}: not JSON") from exc
        except RecursionError:
            # No object of the Policy API nests more than a few levels.
            raise NsxError(
                f"malformed JSON from NSX at {method} {path}: nested too deeply"
            ) from None

    def _detail(self, exc: BaseException) -> str:
        """The useful part of a requests/urllib3 exception, without the connection pool blurb."""
        reason: BaseException = exc
        inner = exc.args[0] if exc.args else None
        if isinstance(inner, urllib3.exceptions.MaxRetryError) and inner.reason is not None:
            reason = inner.reason
        return self._redact(f"{type(exc).__name__}: {reason}")[:_DETAIL_LIMIT]

    def _redact(self, text: str) -> str:
        # Every form too: a manager that echoes the login body quotes the password
        # URL-encoded (Can%40ry+P%2Bw...), and a message is made before anything prints it.
        for secret in list(self._secrets):
            for form in sorted(secret_forms(secret) | {secret}, key=len, reverse=True):
                text = text.replace(form, "***")
        return " ".join(scrub(text).split())


def _log_change(change: Change) -> None:
    log.info("nsx.concurrency.changed", **{"from": change.before}, to=change.after, why=change.why)


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
    """The cookie ``name`` as the answer's Set-Cookie headers set it. Read from the headers,
    not ``response.cookies``: that jar refuses a cookie whose Domain attribute names a load
    balancer, and the session is ours whatever domain it claims."""
    for header in response.raw.headers.getlist("Set-Cookie"):
        jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
        try:
            jar.load(header)
        except http.cookies.CookieError:
            continue  # one malformed cookie (a load balancer's) does not hide the others
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


def _error_codes(response: requests.Response) -> set[int]:
    """The error_code of an NSX error body and of each of its related_errors (nsxlib and
    nsx-operator look at both)."""
    try:
        body = response.json()
    except ValueError:
        return set()
    if not isinstance(body, dict):
        return set()
    related = body.get("related_errors")
    items = [body, *(related if isinstance(related, list) else [])]
    return {
        code
        for item in items
        if isinstance(item, dict) and (code := _as_int(item.get("error_code"))) is not None
    }


def _seconds(value: object) -> float | None:
    """``expires_in`` as a number of seconds: CSP sends a number, the CCM decodes a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, int | float) and 0 < value < 10**7:
        return float(value)
    return None


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
