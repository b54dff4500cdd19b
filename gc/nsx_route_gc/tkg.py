"""TKG cluster configuration files (the flat ``KEY: value`` YAML given to ``tanzu cluster create``).

Operators already keep one per cluster with the NSX connection and the cluster's pod CIDR in it,
so ``--tkg-config FILE`` reuses them: the NSX settings become environment-style overrides of
the configuration and ``CLUSTER_NAME``/``CLUSTER_CIDR`` the cluster's known pod CIDRs.
Every other key of the file is ignored.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nsx_route_gc.config import Secret, normalise_host
from nsx_route_gc.errors import ConfigError
from nsx_route_gc.models import parse_network

KEYS = (
    "CLUSTER_NAME",
    "CLUSTER_CIDR",
    "NSXT_MANAGER_HOST",
    "NSXT_USERNAME",
    "NSXT_PASSWORD",
    "NSXT_ALLOW_UNVERIFIED_SSL",
    "NSXT_ROUTER_PATH",
)
# Go's strconv.ParseBool (what TKG itself uses) plus the YAML 1.1 spellings.
_TRUE = {"1", "t", "true", "y", "yes", "on"}
_FALSE = {"0", "f", "false", "n", "no", "off"}
_ENCODED_PREFIX, _ENCODED_SUFFIX = "<encoded:", ">"


@dataclass(frozen=True)
class TkgSettings:
    """What nsx-route-gc takes from one TKG cluster configuration file; None when absent."""

    source: Path
    cluster_name: str | None = None
    cluster_cidrs: tuple[str, ...] = ()
    nsx_host: str | None = None
    username: str | None = None
    password: Secret | None = None
    allow_unverified_ssl: bool | None = None
    router_path: str | None = None


@dataclass(frozen=True)
class TkgMerge:
    """Several files together.

    ``environ`` uses the NSXT_* names the configuration loader already reads from the
    environment (it holds the password in clear, so it stays out of repr); ``pod_cidrs`` maps
    every CLUSTER_NAME that came with a CLUSTER_CIDR to its CIDRs.
    """

    environ: Mapping[str, str] = field(default_factory=dict, repr=False)
    pod_cidrs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def read_tkg_config(path: Path) -> TkgSettings:
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read TKG configuration: {reason}") from exc
    try:
        # BaseLoader keeps every scalar a string as written: a password such as 0123 or a host
        # such as 10.40 must not turn into a number, and booleans are parsed below per key.
        data = yaml.load(text, Loader=yaml.BaseLoader)  # noqa: S506  # BaseLoader builds no objects
    except yaml.YAMLError as exc:
        # Only the line: the problem text may quote the file, and the file holds a password.
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at}") from exc
    if not isinstance(data, dict):
        kind = "empty" if data in (None, "") else f"a {type(data).__name__}"
        raise ConfigError(f"{path}: expected a TKG configuration mapping of KEY: value, got {kind}")
    values = {key: _scalar(path, key, data.get(key)) for key in KEYS}
    host = values["NSXT_MANAGER_HOST"]
    if host is not None:
        try:
            normalise_host(host)
        except ValueError as exc:
            raise ConfigError(f"{path}: NSXT_MANAGER_HOST: {exc}") from exc
    password = values["NSXT_PASSWORD"]
    return TkgSettings(
        source=path,
        cluster_name=values["CLUSTER_NAME"],
        cluster_cidrs=_cidrs(path, values["CLUSTER_CIDR"]),
        nsx_host=host,
        username=values["NSXT_USERNAME"],
        password=None if password is None else Secret(password),
        allow_unverified_ssl=_boolean(path, values["NSXT_ALLOW_UNVERIFIED_SSL"]),
        router_path=_router(path, values["NSXT_ROUTER_PATH"]),
    )


def merge_tkg(settings: Sequence[TkgSettings]) -> TkgMerge:
    """Combine files: single-valued NSX settings must agree, router paths accumulate."""
    picks: dict[str, _Pick] = {}
    environ: dict[str, str] = {}

    def take(key: str, value: object, env: str | None, shown: str | None, source: Path) -> None:
        if value is None or env is None:
            return
        pick = picks.get(key)
        if pick is None:
            picks[key] = _Pick(value, shown, source)
            environ[key] = env
        elif pick.value != value:
            detail = "" if shown is None else f" ({pick.shown} vs {shown})"
            raise ConfigError(
                f"{pick.source} and {source}: {key} differs between the files{detail}"
            )

    routers: list[str] = []
    pod_cidrs: dict[str, tuple[str, ...]] = {}
    cidr_source: dict[str, Path] = {}
    for item in settings:
        if item.nsx_host is not None:
            host = normalise_host(item.nsx_host)  # 10.0.0.1 and https://10.0.0.1 agree
            take("NSXT_MANAGER_HOST", host, item.nsx_host, item.nsx_host, item.source)
        take("NSXT_USERNAME", item.username, item.username, item.username, item.source)
        if item.password is not None:
            # Compared, never shown.
            take("NSXT_PASSWORD", item.password, item.password.reveal(), None, item.source)
        if item.allow_unverified_ssl is not None:
            word = "true" if item.allow_unverified_ssl else "false"
            take("NSXT_ALLOW_UNVERIFIED_SSL", item.allow_unverified_ssl, word, word, item.source)
        if item.router_path is not None and item.router_path not in routers:
            routers.append(item.router_path)
        if not item.cluster_cidrs:
            continue
        if item.cluster_name is None:
            raise ConfigError(f"{item.source}: CLUSTER_CIDR is set but CLUSTER_NAME is missing")
        known = pod_cidrs.get(item.cluster_name)
        if known is None:
            pod_cidrs[item.cluster_name] = item.cluster_cidrs
            cidr_source[item.cluster_name] = item.source
        elif set(known) != set(item.cluster_cidrs):
            raise ConfigError(
                f"{cidr_source[item.cluster_name]} and {item.source}: CLUSTER_CIDR of cluster "
                f"{item.cluster_name!r} differs between the files"
            )
    if routers:
        environ["NSXT_ROUTER_PATH"] = ",".join(routers)
    return TkgMerge(environ=environ, pod_cidrs=pod_cidrs)


@dataclass(frozen=True)
class _Pick:
    """The first file's value of a single-valued setting."""

    value: object
    shown: str | None  # None: never shown (the password)
    source: Path


def _scalar(path: Path, key: str, value: object) -> str | None:
    """A key's value as a string, ``<encoded:...>`` decoded; None when absent or empty."""
    if value is None:
        return None
    if not isinstance(value, str):
        kind = "a list" if isinstance(value, list) else "a mapping"
        raise ConfigError(f"{path}: {key}: expected a single value, got {kind}")
    # A password is taken exactly as written (quoted spaces included); other values trimmed.
    exact = key == "NSXT_PASSWORD"
    text = value if exact else value.strip()
    marked = value.strip()
    if marked.startswith(_ENCODED_PREFIX) and marked.endswith(_ENCODED_SUFFIX):
        encoded = marked[len(_ENCODED_PREFIX) : -len(_ENCODED_SUFFIX)].strip()
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, ValueError) as exc:
            # Never the value: for NSXT_PASSWORD it is the password, barely disguised.
            raise ConfigError(f"{path}: {key}: <encoded:...> value is not valid base64") from exc
        text = decoded if exact else decoded.strip()
    return text or None


def _cidrs(path: Path, value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    out: list[str] = []
    for part in value.split(","):
        text = part.strip()
        if not text:
            continue
        try:
            parse_network(text)
        except ValueError as exc:
            raise ConfigError(f"{path}: CLUSTER_CIDR: {text!r} is not a CIDR") from exc
        if text not in out:
            out.append(text)
    return tuple(out)


def _boolean(path: Path, value: str | None) -> bool | None:
    if value is None:
        return None
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ConfigError(f"{path}: NSXT_ALLOW_UNVERIFIED_SSL: expected true or false, got {value!r}")


def _router(path: Path, value: str | None) -> str | None:
    if value is None:
        return None
    router = value.strip().rstrip("/")
    if not router.startswith("/") or "/tier-1s/" not in router:
        raise ConfigError(f"{path}: NSXT_ROUTER_PATH: {router!r} is not a Tier-1 policy path")
    return router
