"""Configuration: the YAML file, with environment variables overriding it, validated.

Every problem becomes a ConfigError whose one line names the key and what is wrong.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from nsx_route_gc.errors import ConfigError
from nsx_route_gc.logs import register_secret
from nsx_route_gc.models import Policy, parse_network, tier1_router
from nsx_route_gc.untrusted import (
    CONFIG_MAX_BYTES,
    CREDENTIAL_MAX_BYTES,
    UntrustedInput,
    load_yaml,
    read_text_bounded,
)


class Secret:
    """A credential that never shows itself in repr, str, logs or exception messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


DEFAULT_VMC_AUTH_HOST = "console.cloud.vmware.com"
VMC_AUTH_PATH = "/csp/gateway/am/api/auth/api-tokens/authorize"


@dataclass(frozen=True)
class NsxSettings:
    base_url: str  # https://host[:port][/base/path], normalised
    username: str | None = None
    password: Secret | None = None
    auth: str = "session"  # session | basic | certificate | remote | vmc
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    ca_file: Path | None = None
    insecure: bool = False
    routers: tuple[str, ...] = ()  # empty: every Tier-1, projects' too
    timeout: float = 30.0  # seconds, every call
    page_size: int = 1000
    max_attempts: int = 6  # per call, retries on 429/502/503/504 and connection errors
    deadline: float = 300.0  # seconds, a call and its retries together
    rate_limit: float = 90.0  # requests per second, client-side token bucket
    concurrency: int = 8  # NSX calls in flight at the start of a run
    # The most calls in flight the adaptive limit opens while answers come back slowly
    # (nsx.concurrency): under NSX's 40 per client, leaving room for a retry's overlap.
    max_concurrency: int = 32
    # auth: vmc. The CSP API (refresh) token, the token exchange URL, and what verifies the
    # auth host: the system trust store, or $REQUESTS_CA_BUNDLE (never nsx.ca_file).
    vmc_token: Secret | None = None
    vmc_auth_url: str = f"https://{DEFAULT_VMC_AUTH_HOST}{VMC_AUTH_PATH}"
    vmc_auth_verify: str | bool = True

    @property
    def host(self) -> str:
        """The manager as operators name it (for reports): host or host:port."""
        return self.base_url.removeprefix("https://")


@dataclass(frozen=True)
class ClusterConfig:
    name: str
    kubeconfig: Path | None  # None: in-cluster service account
    context: str | None = None
    pod_cidrs: tuple[str, ...] = ()
    # A kubeconfig read from a Cluster API Secret, not given by the operator: it may carry
    # certificate, token and CA data only (no exec, auth-provider or file), over https
    # unless allow_http.
    from_secret: bool = False
    allow_http: bool = False


@dataclass(frozen=True)
class RetiredCluster:
    name: str
    pod_cidrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterApiConfig:
    kubeconfig: Path | None  # None: in-cluster
    context: str | None = None
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    # Workload kubeconfigs from Secrets with a server: http:// (no TLS) are refused unless set.
    allow_http: bool = False


@dataclass(frozen=True)
class StateConfig:
    configmap: str | None = None  # namespace/name
    file: Path | None = None


@dataclass(frozen=True)
class MetricsConfig:
    pushgateway: str | None = None
    job: str = "nsx-route-gc"


@dataclass(frozen=True)
class Config:
    nsx: NsxSettings
    clusters: tuple[ClusterConfig, ...] = ()
    retired_clusters: tuple[RetiredCluster, ...] = ()
    cluster_api: ClusterApiConfig | None = None
    state: StateConfig = field(default_factory=StateConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    policy: Policy = field(default_factory=Policy)
    cluster_concurrency: int = 8  # clusters inventoried at once
    source: str = "<config>"  # the file it came from, for messages


# --- loading -------------------------------------------------------------------------------

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_FILE_OVERRIDES = {
    "NSXT_CA_FILE": "ca_file",
    "NSXT_CLIENT_AUTH_CERT_FILE": "client_cert_file",
    "NSXT_CLIENT_AUTH_KEY_FILE": "client_key_file",
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Loaded:
    config: Config
    warnings: tuple[str, ...] = ()


def load_config(
    path: Path,
    environ: Mapping[str, str],
    pod_cidrs: Mapping[str, tuple[str, ...]] | None = None,
) -> Loaded:
    """Read the YAML file at ``path`` and apply the environment's overrides.

    ``pod_cidrs`` (from TKG configuration files) adds known pod CIDRs to the clusters and
    retired clusters of those names.
    """
    try:
        text = read_text_bounded(path.expanduser(), CONFIG_MAX_BYTES)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror or exc}") from None
    except UntrustedInput as exc:
        raise ConfigError(f"{path}: configuration {exc}") from None
    try:
        # Strict: a key given twice (a second policy: block) or an alias is an error, never a
        # silent replacement of what the operator reviewed.
        data = load_yaml(text)
    except UntrustedInput as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(exc, "problem", None)
        why = f": {problem}" if isinstance(problem, str) and problem else ""
        raise ConfigError(f"{path}: not valid YAML{at}{why}") from None
    if data is None:
        data = {}
    return build_config(
        data, environ, source=str(path), base_dir=path.expanduser().parent, pod_cidrs=pod_cidrs
    )


def build_config(
    data: object,
    environ: Mapping[str, str],
    *,
    source: str,
    base_dir: Path,
    pod_cidrs: Mapping[str, tuple[str, ...]] | None = None,
) -> Loaded:
    reader = _Reader(source, base_dir, pod_cidrs or {})
    top = reader.mapping(data, "")
    reader.only(
        top,
        "",
        {
            "nsx",
            "clusters",
            "retired_clusters",
            "cluster_api",
            "state",
            "metrics",
            "policy",
            "inventory_concurrency",
        },
    )
    nsx = reader.nsx(top.get("nsx") or {}, environ)
    clusters = tuple(
        reader.cluster(item, f"clusters[{i}]", environ)
        for i, item in enumerate(reader.sequence(top.get("clusters") or [], "clusters"))
    )
    reader.unique([c.name for c in clusters], "clusters")
    retired = tuple(
        reader.retired(item, f"retired_clusters[{i}]")
        for i, item in enumerate(
            reader.sequence(top.get("retired_clusters") or [], "retired_clusters")
        )
    )
    reader.unique([c.name for c in retired], "retired_clusters")
    known = {c.name for c in clusters} | {c.name for c in retired}
    for name in sorted(set(reader.extra_cidrs) - known):
        reader.warnings.append(
            f"TKG configuration of cluster {name!r} ignored: it is neither under clusters "
            "nor under retired_clusters"
        )
    both = {c.name for c in clusters} & {c.name for c in retired}
    if both:
        raise ConfigError(
            f"{source}: retired_clusters: {sorted(both)[0]!r} is also listed under clusters"
        )
    cluster_api = None
    if top.get("cluster_api") is not None:
        cluster_api = reader.cluster_api(top["cluster_api"])
    state = reader.state(top.get("state") or {})
    metrics = reader.metrics(top.get("metrics") or {}, environ)
    policy = reader.policy(top.get("policy") or {})
    concurrency = reader.positive_int(top.get("inventory_concurrency", 8), "inventory_concurrency")
    config = Config(
        nsx=nsx,
        clusters=clusters,
        retired_clusters=retired,
        cluster_api=cluster_api,
        state=state,
        metrics=metrics,
        policy=policy,
        cluster_concurrency=concurrency,
        source=source,
    )
    return Loaded(config, tuple(reader.warnings))


def default_kubeconfig(environ: Mapping[str, str]) -> Path:
    """A cluster's kubeconfig when the configuration names none, as kubectl finds it: the
    first file of $KUBECONFIG (a colon-separated list; kubectl merges the list, we read one
    file per cluster, so a context must be in that first file), else ~/.kube/config. Its
    current context is used unless ``context`` is given."""
    for entry in environ.get("KUBECONFIG", "").split(os.pathsep):
        if entry.strip():
            return Path(entry.strip()).expanduser()
    home = environ.get("HOME")
    return (Path(home) if home else Path.home()) / ".kube" / "config"


def normalise_host(value: str) -> str:
    """``host``, ``host:port`` or ``https://host[:port]``, each optionally followed by a base
    path (the VMC reverse proxy's), to ``https://host[:port][/base/path]``."""
    text = value.strip().rstrip("/")
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme.lower() != "https":
            raise ValueError("NSX is reached over https only")
        text = rest
    text, slash, base_path = text.partition("/")
    if not text or "@" in text or " " in text:
        raise ValueError("expected host, host:port or https://host:port, then an optional path")
    if slash and not _BASE_PATH.fullmatch(base_path):
        raise ValueError(f"invalid base path /{base_path}")
    host, sep, port = text.rpartition(":")
    if sep and not text.endswith("]") and port:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"invalid port {port!r}")
        if not host:
            raise ValueError("missing host")
    return f"https://{text}" + (f"/{base_path}" if slash else "")


# Path segments of plain characters: no query, fragment, dot-segment or empty segment.
_SEGMENT = r"[A-Za-z0-9._~%!$&'()*+,;=:@-]+"
_BASE_PATH = re.compile(rf"(?!.*(?:^|/)\.{{1,2}}(?:/|$)){_SEGMENT}(?:/{_SEGMENT})*")


def vmc_auth_url(value: str) -> str:
    """The CSP token exchange URL from an auth host: a bare host (``console.cloud.vmware.com``)
    gets the API-token path; a host with a path under ``/csp/gateway/`` (as the CCM and
    terraform take it) is used as given."""
    text = value.strip().rstrip("/")
    if "://" in text:
        scheme, _, text = text.partition("://")
        if scheme.lower() != "https":
            raise ValueError("the VMC auth host is reached over https only")
    host, slash, path = text.partition("/")
    if not host or "@" in host or " " in text or "?" in text or "#" in text:
        raise ValueError("expected a host such as console.cloud.vmware.com, or host/path")
    if not slash:
        return f"https://{host}{VMC_AUTH_PATH}"
    if not f"/{path}".startswith("/csp/gateway/"):
        raise ValueError(f"expected a path under /csp/gateway/, got /{path}")
    return f"https://{host}/{path}"


# Longer than any grace period or plan age means anything; also far inside what a timedelta
# holds, so no duration overflows.
MAX_DURATION = timedelta(days=3650)


def parse_duration(value: object) -> timedelta:
    """A duration of 0 to 10 years: seconds as a number, or a number with s, m, h or d.
    ValueError for anything else: negative, infinite, NaN, too long, or not a duration."""
    seconds: float | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        # Compared as an int: float() of a 400-digit int would overflow.
        seconds = float(value) if abs(value) <= 10**15 else math.inf if value > 0 else -math.inf
    elif isinstance(value, float):
        seconds = value
    elif isinstance(value, str):
        text = value.strip().lower()
        unit = 1
        if text and text[-1] in _DURATION_UNITS:
            text, unit = text[:-1], _DURATION_UNITS[text[-1]]
        number = _number(text)
        seconds = None if number is None else number * unit
    if seconds is None or math.isnan(seconds):
        raise ValueError("expected a duration such as 90s, 30m, 1h or 2d")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError("longer than 3650d")
    return timedelta(seconds=seconds)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (ValueError, OverflowError):
        return None


class _Reader:
    """Typed reads of the parsed YAML; every complaint names the file and the key."""

    def __init__(
        self, source: str, base_dir: Path, extra_cidrs: Mapping[str, tuple[str, ...]]
    ) -> None:
        self.source = source
        self.base_dir = base_dir
        self.extra_cidrs = extra_cidrs
        self.warnings: list[str] = []

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key or 'top level'}: {problem}")

    def mapping(self, value: object, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__}")
        return value

    def sequence(self, value: object, key: str) -> list[Any]:
        if isinstance(value, str) or not isinstance(value, list):
            raise self.fail(key, f"expected a list, got {type(value).__name__}")
        return value

    def only(self, data: dict[str, Any], key: str, allowed: set[str]) -> None:
        unknown = sorted(set(data) - allowed)
        if unknown:
            where = f"{key}.{unknown[0]}" if key else unknown[0]
            raise self.fail(where, f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def string(self, value: object, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "expected a non-empty string")
        return value.strip()

    def optional_string(self, value: object, key: str) -> str | None:
        return None if value is None else self.string(value, key)

    def boolean(self, value: object, key: str) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise self.fail(key, "expected true or false")

    def positive_int(self, value: object, key: str, *, zero: bool = False) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1):
            raise self.fail(key, f"expected a whole number {'>= 0' if zero else '>= 1'}")
        return value

    def number(self, value: object, key: str, low: float, high: float) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise self.fail(key, f"expected a number from {low:g} to {high:g}")
        return float(value)

    def path(self, value: object, key: str) -> Path:
        text = self.string(value, key)
        candidate = Path(text).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate

    def optional_path(self, value: object, key: str) -> Path | None:
        return None if value is None else self.path(value, key)

    def cidrs(self, value: object, key: str) -> tuple[str, ...]:
        out = []
        for i, item in enumerate(self.sequence(value if value is not None else [], key)):
            text = self.string(item, f"{key}[{i}]")
            try:
                parse_network(text)
            except ValueError as exc:
                raise self.fail(f"{key}[{i}]", f"{text!r} is not a CIDR") from exc
            out.append(text)
        return tuple(out)

    def strings(self, value: object, key: str) -> tuple[str, ...]:
        items = self.sequence(value if value is not None else [], key)
        return tuple(self.string(item, f"{key}[{i}]") for i, item in enumerate(items))

    def unique(self, names: list[str], key: str) -> None:
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise self.fail(key, f"cluster {name!r} is listed twice")
            seen.add(name)

    def nsx(self, value: object, environ: Mapping[str, str]) -> NsxSettings:
        data = dict(self.mapping(value, "nsx"))
        self.only(
            data,
            "nsx",
            {
                "host",
                "username",
                "password",
                "password_file",
                "auth",
                "client_cert_file",
                "client_key_file",
                "ca_file",
                "insecure",
                "routers",
                "timeout",
                "page_size",
                "rate_limit",
                "concurrency",
                "max_concurrency",
                "max_attempts",
                "vmc_access_token_file",
                "vmc_auth_host",
            },
        )
        overrides = {
            "NSXT_MANAGER_HOST": "host",
            "NSXT_USERNAME": "username",
            "NSXT_ALLOW_UNVERIFIED_SSL": "insecure",
        }
        for env, key in overrides.items():
            if environ.get(env):
                data[key] = environ[env]
        # The file names the CCM and terraform read; relative to where the tool runs.
        for env, key in _FILE_OVERRIDES.items():
            if environ.get(env):
                data[key] = str(Path(environ[env]).expanduser().absolute())
        if environ.get("NSXT_ROUTER_PATH"):
            data["routers"] = [p for p in environ["NSXT_ROUTER_PATH"].split(",") if p.strip()]
        if environ.get("NSXT_REMOTE_AUTH") and self.boolean(
            environ["NSXT_REMOTE_AUTH"], "NSXT_REMOTE_AUTH"
        ):
            data["auth"] = "remote"
        if "auth" not in data and data.get("client_cert_file") is not None:
            # As the CCM (connector_manager.go): a client certificate, when given, is the auth.
            data["auth"] = "certificate"
        if data.get("host") is None:
            raise self.fail("nsx.host", "missing (set it in the file or NSXT_MANAGER_HOST)")
        try:
            base_url = normalise_host(self.string(data["host"], "nsx.host"))
        except ValueError as exc:
            raise self.fail("nsx.host", str(exc)) from exc
        vmc_token = self._vmc_token(data, environ)
        # A VMC token and no auth mode: VMC, as the CCM decides from its vmc-access-token.
        default_auth = "vmc" if vmc_token is not None else "session"
        auth = self.string(data.get("auth", default_auth), "nsx.auth")
        if auth not in {"session", "basic", "certificate", "remote", "vmc"}:
            raise self.fail("nsx.auth", "expected session, basic, certificate, remote or vmc")
        if vmc_token is not None and auth != "vmc":
            self.warnings.append(f"a VMC API token is configured but nsx.auth is {auth}: unused")
        username = self.optional_string(data.get("username"), "nsx.username")
        password = self._password(data, environ)
        cert = self.optional_path(data.get("client_cert_file"), "nsx.client_cert_file")
        cert_key = self.optional_path(data.get("client_key_file"), "nsx.client_key_file")
        if auth == "certificate":
            if cert is None or cert_key is None:
                raise self.fail("nsx.client_cert_file", "auth: certificate needs a cert and a key")
            for name, file in (("client_cert_file", cert), ("client_key_file", cert_key)):
                if not file.is_file():
                    raise self.fail(f"nsx.{name}", f"{file} does not exist")
        elif auth == "vmc":
            if vmc_token is None:
                raise self.fail(
                    "nsx.vmc_access_token_file",
                    "missing (auth: vmc needs a VMC API token: set it or NSXT_VMC_ACCESS_TOKEN)",
                )
        else:
            if username is None:
                raise self.fail("nsx.username", f"missing (auth: {auth} needs it)")
            if password is None:
                raise self.fail("nsx.password_file", f"missing (auth: {auth} needs a password)")
        ca_file = self.optional_path(data.get("ca_file"), "nsx.ca_file")
        if ca_file is not None and not ca_file.is_file():
            raise self.fail("nsx.ca_file", f"{ca_file} does not exist")
        # The trailing slash goes before the check, so the path checked is the path used.
        routers = tuple(r.rstrip("/") for r in self.strings(data.get("routers"), "nsx.routers"))
        for i, router in enumerate(routers):
            if not tier1_router(router):
                raise self.fail(
                    f"nsx.routers[{i}]",
                    f"{router!r} is not a Tier-1 policy path (/infra/tier-1s/<id> or "
                    "/orgs/default/projects/<project>/infra/tier-1s/<id>)",
                )
        concurrency, max_concurrency = self._concurrency(data)
        return NsxSettings(
            base_url=base_url,
            username=username,
            password=password,
            auth=auth,
            client_cert_file=cert,
            client_key_file=cert_key,
            ca_file=ca_file,
            insecure=self.boolean(data.get("insecure", False), "nsx.insecure"),
            routers=routers,
            timeout=self.number(data.get("timeout", 30), "nsx.timeout", 1, 600),
            page_size=int(self.number(data.get("page_size", 1000), "nsx.page_size", 1, 1000)),
            rate_limit=self.number(data.get("rate_limit", 90), "nsx.rate_limit", 1, 10000),
            concurrency=concurrency,
            max_concurrency=max_concurrency,
            max_attempts=int(self.number(data.get("max_attempts", 6), "nsx.max_attempts", 1, 20)),
            **self._vmc_auth(auth, vmc_token, data, environ),
        )

    def _concurrency(self, data: dict[str, Any]) -> tuple[int, int]:
        """nsx.concurrency (calls in flight at the start) and nsx.max_concurrency (the most
        the adaptive limit opens): NSX answers 503 beyond 40 in flight per client."""
        concurrency = int(self.number(data.get("concurrency", 8), "nsx.concurrency", 1, 39))
        maximum = data.get("max_concurrency", max(32, concurrency))
        max_concurrency = int(self.number(maximum, "nsx.max_concurrency", 1, 39))
        if max_concurrency < concurrency:
            raise self.fail(
                "nsx.max_concurrency",
                f"{max_concurrency} is below nsx.concurrency ({concurrency}), where runs start",
            )
        return concurrency, max_concurrency

    def _vmc_token(self, data: dict[str, Any], environ: Mapping[str, str]) -> Secret | None:
        if environ.get("NSXT_VMC_ACCESS_TOKEN", "").strip():
            register_secret(environ["NSXT_VMC_ACCESS_TOKEN"])
            return Secret(environ["NSXT_VMC_ACCESS_TOKEN"].strip())
        if data.get("vmc_access_token_file") is None:
            return None
        return self._secret_file(
            data["vmc_access_token_file"], "nsx.vmc_access_token_file", str.strip
        )

    def _secret_file(self, value: object, key: str, trim: Callable[[str], str]) -> Secret:
        """A credential kept in a file: read bounded, scrubbed from now on both as read and as
        trimmed (the newline an editor or `echo` leaves is not part of it), refused empty."""
        file = self.path(value, key)
        try:
            raw = read_text_bounded(file, CREDENTIAL_MAX_BYTES)
        except OSError:
            raise self.fail(key, f"cannot read {file}") from None
        except UntrustedInput as exc:
            raise self.fail(key, f"{file}: {exc}") from None
        text = trim(raw)
        register_secret(raw)
        register_secret(text)
        if not text:
            raise self.fail(key, f"{file} is empty")
        return Secret(text)

    def _vmc_auth(
        self, auth: str, token: Secret | None, data: dict[str, Any], environ: Mapping[str, str]
    ) -> dict[str, Any]:
        """The VMC settings of NsxSettings; none unless auth is vmc."""
        if auth != "vmc":
            return {}
        key = "NSXT_VMC_AUTH_HOST" if environ.get("NSXT_VMC_AUTH_HOST") else "nsx.vmc_auth_host"
        raw = environ.get("NSXT_VMC_AUTH_HOST") or data.get("vmc_auth_host", DEFAULT_VMC_AUTH_HOST)
        try:
            url = vmc_auth_url(self.string(raw, key))
        except ValueError as exc:
            raise self.fail(key, str(exc)) from exc
        # The auth host is VMware's, verified with the system trust store as requests finds
        # it; passed explicitly because nsx.ca_file is for the manager only.
        bundle = environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE")
        return {"vmc_token": token, "vmc_auth_url": url, "vmc_auth_verify": bundle or True}

    def _password(self, data: dict[str, Any], environ: Mapping[str, str]) -> Secret | None:
        if environ.get("NSXT_PASSWORD"):
            register_secret(environ["NSXT_PASSWORD"])
            return Secret(environ["NSXT_PASSWORD"])
        if data.get("password_file") is not None:
            # rstrip: only what an editor or `echo` appends goes; the rest is the password.
            return self._secret_file(data["password_file"], "nsx.password_file", str.rstrip)
        if data.get("password") is not None:
            if not isinstance(data["password"], str) or not data["password"]:
                raise self.fail("nsx.password", "expected a non-empty string")
            register_secret(data["password"])
            self.warnings.append(
                "nsx.password is written in the configuration file; "
                "prefer nsx.password_file or NSXT_PASSWORD"
            )
            return Secret(data["password"])
        return None

    def cluster(self, value: object, key: str, environ: Mapping[str, str]) -> ClusterConfig:
        data = self.mapping(value, key)
        self.only(data, key, {"name", "kubeconfig", "context", "pod_cidrs"})
        name = self.string(data.get("name"), f"{key}.name")
        if data.get("kubeconfig") is None:
            kubeconfig: Path | None = default_kubeconfig(environ)
        else:
            raw = self.string(data["kubeconfig"], f"{key}.kubeconfig")
            kubeconfig = None if raw == "in-cluster" else self.path(raw, f"{key}.kubeconfig")
        return ClusterConfig(
            name=name,
            kubeconfig=kubeconfig,
            context=self.optional_string(data.get("context"), f"{key}.context"),
            pod_cidrs=self.with_extra(name, self.cidrs(data.get("pod_cidrs"), f"{key}.pod_cidrs")),
        )

    def with_extra(self, name: str, cidrs: tuple[str, ...]) -> tuple[str, ...]:
        extra = tuple(c for c in self.extra_cidrs.get(name, ()) if c not in cidrs)
        return cidrs + extra

    def retired(self, value: object, key: str) -> RetiredCluster:
        data = self.mapping(value, key)
        self.only(data, key, {"name", "pod_cidrs"})
        name = self.string(data.get("name"), f"{key}.name")
        cidrs = self.with_extra(name, self.cidrs(data.get("pod_cidrs"), f"{key}.pod_cidrs"))
        if not cidrs:
            raise self.fail(
                f"{key}.pod_cidrs", "a retired cluster needs its pod CIDRs (or its --tkg-config)"
            )
        return RetiredCluster(name, cidrs)

    def cluster_api(self, value: object) -> ClusterApiConfig:
        data = self.mapping(value, "cluster_api")
        self.only(data, "cluster_api", {"kubeconfig", "context", "namespaces", "allow_http"})
        raw = self.string(data.get("kubeconfig", "in-cluster"), "cluster_api.kubeconfig")
        return ClusterApiConfig(
            kubeconfig=None if raw == "in-cluster" else self.path(raw, "cluster_api.kubeconfig"),
            context=self.optional_string(data.get("context"), "cluster_api.context"),
            namespaces=self.strings(data.get("namespaces"), "cluster_api.namespaces"),
            allow_http=self.boolean(data.get("allow_http", False), "cluster_api.allow_http"),
        )

    def state(self, value: object) -> StateConfig:
        data = self.mapping(value, "state")
        self.only(data, "state", {"configmap", "file"})
        configmap = self.optional_string(data.get("configmap"), "state.configmap")
        if configmap is not None and configmap.count("/") != 1:
            raise self.fail("state.configmap", "expected namespace/name")
        return StateConfig(configmap, self.optional_path(data.get("file"), "state.file"))

    def metrics(self, value: object, environ: Mapping[str, str]) -> MetricsConfig:
        data = self.mapping(value, "metrics")
        self.only(data, "metrics", {"pushgateway", "job"})
        gateway = environ.get("NSX_ROUTE_GC_PUSHGATEWAY") or data.get("pushgateway")
        return MetricsConfig(
            pushgateway=self.optional_string(gateway, "metrics.pushgateway"),
            job=self.string(data.get("job", "nsx-route-gc"), "metrics.job"),
        )

    def policy(self, value: object) -> Policy:
        data = self.mapping(value, "policy")
        self.only(
            data,
            "policy",
            {
                "min_age",
                "cluster_gone_after",
                "allow_overwrite",
                "unattributed",
                "max_deletes",
                "max_delete_percent",
                "protect",
            },
        )
        durations = {}
        for key in ("min_age", "cluster_gone_after"):
            try:
                durations[key] = parse_duration(data.get(key, "1h"))
            except ValueError as exc:
                raise self.fail(f"policy.{key}", str(exc)) from exc
        unattributed = self.string(data.get("unattributed", "report"), "policy.unattributed")
        if unattributed not in {"report", "delete"}:
            raise self.fail("policy.unattributed", "expected report or delete")
        protect = self.mapping(data.get("protect") or {}, "policy.protect")
        self.only(protect, "policy.protect", {"tag_scopes", "route_ids", "networks"})
        scopes = protect.get("tag_scopes", ["nsx-route-gc/keep"])
        return Policy(
            min_age=durations["min_age"],
            cluster_gone_after=durations["cluster_gone_after"],
            allow_overwrite=self.boolean(
                data.get("allow_overwrite", False), "policy.allow_overwrite"
            ),
            unattributed=unattributed,
            max_deletes=self.positive_int(
                data.get("max_deletes", 100), "policy.max_deletes", zero=True
            ),
            max_delete_percent=self.number(
                data.get("max_delete_percent", 50), "policy.max_delete_percent", 0, 100
            ),
            protect_tag_scopes=self.strings(scopes, "policy.protect.tag_scopes"),
            protect_route_ids=self.strings(protect.get("route_ids"), "policy.protect.route_ids"),
            protect_networks=self.cidrs(protect.get("networks"), "policy.protect.networks"),
        )
