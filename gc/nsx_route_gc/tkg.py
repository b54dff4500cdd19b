"""TKG cluster configuration files (the flat ``KEY: value`` YAML given to ``tanzu cluster create``).

Operators already keep one per cluster with the NSX connection and the cluster's pod CIDR in it,
so ``--tkg-config FILE`` reuses them: every NSX variable TKG defines becomes an
environment-style setting of the configuration loader, and ``CLUSTER_NAME``/``CLUSTER_CIDR``
the cluster's known pod CIDRs. Every other key of the file is ignored.

The variables and their meaning follow vmware-tanzu/tanzu-framework
(``providers/config_default.yaml``, ``providers/ytt/02_addons/cpi/cpi_addon_data.lib.yaml``,
``providers/ytt/lib/validate.star``, ``tkg/tkgconfigupdater/ensure.go``) and what the vSphere
CCM does with them
(kubernetes/cloud-provider-vsphere ``pkg/nsxt/connector_manager.go``,
``pkg/cloudprovider/vsphere/route/nsxtbroker.go``).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import shutil
import ssl
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nsx_route_gc.config import Secret, normalise_host
from nsx_route_gc.errors import ConfigError
from nsx_route_gc.logs import register_secret
from nsx_route_gc.models import parse_network
from nsx_route_gc.untrusted import STRICT_PROBLEMS, UntrustedInput, load_yaml

# A TKG cluster configuration file is a few kilobytes, certificates included.
MAX_FILE_BYTES = 1 << 20

KEYS = (
    "CLUSTER_NAME",
    "CLUSTER_CIDR",
    "TKG_IP_FAMILY",
    "NSXT_POD_ROUTING_ENABLED",
    "NSXT_MANAGER_HOST",
    "NSXT_USERNAME",
    "NSXT_PASSWORD",
    "NSXT_REMOTE_AUTH",
    "NSXT_ALLOW_UNVERIFIED_SSL",
    "NSXT_ROUTER_PATH",
    "NSXT_CLIENT_CERT_DATA",
    "NSXT_CLIENT_CERT_KEY_DATA",
    "NSXT_ROOT_CA_DATA_B64",
    "NSXT_ROOT_CA_DATA",
    "NSXT_VMC_ACCESS_TOKEN",
    "NSXT_VMC_AUTH_HOST",
)
# Go's strconv.ParseBool, exactly: TKG and the CCM parse these variables with it.
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
_BOOL_WORDS = "true or false (Go's strconv.ParseBool: 1, t, T, TRUE, true, True or 0, f, ...)"
# tanzu-framework tkg/tkgconfigupdater/ensure.go (encodePrefix).
_ENCODED_PREFIX = "<encoded:"
# tanzu-framework tkg/constants/defaults.go, chosen by TKG_IP_FAMILY as tkg/client/validate.go
# defaultClusterCIDR does.
_DEFAULT_V4, _DEFAULT_V6 = "100.96.0.0/11", "fd00:100:96::/48"
_DEFAULT_CLUSTER_CIDR = {
    "ipv4": _DEFAULT_V4,
    "ipv6": _DEFAULT_V6,
    "ipv4,ipv6": f"{_DEFAULT_V4},{_DEFAULT_V6}",
    "ipv6,ipv4": f"{_DEFAULT_V6},{_DEFAULT_V4}",
}
# What a Tier-1 id may be here: it becomes part of every NSX path we call.
_ROUTER_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.~:-]*")
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)

# The environment names the CCM and terraform read for the files (config.py honours them).
CA_FILE_ENV = "NSXT_CA_FILE"
CERT_FILE_ENV = "NSXT_CLIENT_AUTH_CERT_FILE"
KEY_FILE_ENV = "NSXT_CLIENT_AUTH_KEY_FILE"
_FILE_NAMES = {CA_FILE_ENV: "ca.pem", CERT_FILE_ENV: "client.crt", KEY_FILE_ENV: "client.key"}
_PEM_VARIABLE = {
    CA_FILE_ENV: "NSXT_ROOT_CA_DATA_B64",
    CERT_FILE_ENV: "NSXT_CLIENT_CERT_DATA",
    KEY_FILE_ENV: "NSXT_CLIENT_CERT_KEY_DATA",
}


@dataclass(frozen=True)
class TkgSettings:
    """What nsx-route-gc takes from one TKG cluster configuration file; None when absent.

    PEM texts (decoded from base64) and the VMC token are Secrets: they never show in repr.
    """

    source: Path
    cluster_name: str | None = None
    cluster_cidrs: tuple[str, ...] = ()
    pod_routing: bool | None = None
    nsx_host: str | None = None
    username: str | None = None
    password: Secret | None = None
    remote_auth: bool | None = None
    allow_unverified_ssl: bool | None = None
    router_path: str | None = None
    client_cert: Secret | None = None
    client_key: Secret | None = None
    root_ca: Secret | None = None
    vmc_access_token: Secret | None = None
    vmc_auth_host: str | None = None
    # Texts to scrub from every log line: the raw forms of the secrets above as well.
    secrets: tuple[str, ...] = field(default=(), repr=False, compare=False)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class TkgMerge:
    """Several files together.

    ``environ`` uses the NSXT_* names the configuration loader reads from the environment (it
    holds the password in clear, so it stays out of repr); ``pem_files`` the PEM texts that
    :func:`materialised` writes to files and names in ``NSXT_CA_FILE``,
    ``NSXT_CLIENT_AUTH_CERT_FILE`` and ``NSXT_CLIENT_AUTH_KEY_FILE``; ``pod_cidrs`` maps every
    CLUSTER_NAME to its CIDRs.
    """

    environ: Mapping[str, str] = field(default_factory=dict, repr=False)
    pod_cidrs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    pem_files: Mapping[str, Secret] = field(default_factory=dict)
    pem_sources: Mapping[str, Path] = field(default_factory=dict)
    secrets: tuple[str, ...] = field(default=(), repr=False)
    warnings: tuple[str, ...] = ()


def read_tkg_config(path: Path) -> TkgSettings:
    """One file's settings, every value validated; a bad one is a ConfigError naming the file
    and the variable, never its value."""
    data = _load(path)
    values = {key: _scalar(path, key, data.get(key)) for key in KEYS}
    warnings: list[str] = []
    name = values["CLUSTER_NAME"]
    cidrs = _cidrs(path, values["CLUSTER_CIDR"])
    if name is not None and not cidrs:
        family = (values["TKG_IP_FAMILY"] or "ipv4").replace(" ", "")
        default = _DEFAULT_CLUSTER_CIDR.get(family, _DEFAULT_V4)
        cidrs = _cidrs(path, default)
        warnings.append(
            f"{path}: CLUSTER_CIDR is not set: cluster {name!r} gets TKG's default pod CIDR "
            f"{default}"
        )
    pod_routing = _boolean(path, "NSXT_POD_ROUTING_ENABLED", values["NSXT_POD_ROUTING_ENABLED"])
    if pod_routing is False:
        # TKG configures no routes for this cluster (vsphere-cpi writes no [Route] or [NSXT]
        # section), so its NSX settings and router say nothing about the routes we judge.
        if any(values[key] is not None for key in KEYS if key.startswith("NSXT_")):
            warnings.append(
                f"{path}: NSXT_POD_ROUTING_ENABLED is false: only CLUSTER_NAME/CLUSTER_CIDR "
                "are used, its NSX settings and router are ignored"
            )
        return TkgSettings(
            source=path,
            cluster_name=name,
            cluster_cidrs=cidrs,
            pod_routing=False,
            warnings=tuple(warnings),
        )
    host = values["NSXT_MANAGER_HOST"]
    if host is not None:
        try:
            normalise_host(host)
        except ValueError as exc:
            raise ConfigError(f"{path}: NSXT_MANAGER_HOST: {exc}") from exc
    secrets: list[str] = []
    password = _password(path, data.get("NSXT_PASSWORD"), secrets)
    cert = _pem(path, "NSXT_CLIENT_CERT_DATA", values["NSXT_CLIENT_CERT_DATA"], secrets)
    key = _pem(path, "NSXT_CLIENT_CERT_KEY_DATA", values["NSXT_CLIENT_CERT_KEY_DATA"], secrets)
    if (cert is None) != (key is None):
        # As TKG's own validate.star: a certificate without its key (or the reverse) is refused.
        missing = "NSXT_CLIENT_CERT_KEY_DATA" if key is None else "NSXT_CLIENT_CERT_DATA"
        raise ConfigError(f"{path}: {missing}: missing (client certificate and key go together)")
    token = values["NSXT_VMC_ACCESS_TOKEN"]
    if token is not None:
        secrets.append(token)
    router, router_warning = _router(path, values["NSXT_ROUTER_PATH"])
    if router_warning:
        warnings.append(router_warning)
    return TkgSettings(
        source=path,
        cluster_name=name,
        cluster_cidrs=cidrs,
        pod_routing=pod_routing,
        nsx_host=host,
        username=values["NSXT_USERNAME"],
        password=password,
        remote_auth=_boolean(path, "NSXT_REMOTE_AUTH", values["NSXT_REMOTE_AUTH"]),
        allow_unverified_ssl=_boolean(
            path, "NSXT_ALLOW_UNVERIFIED_SSL", values["NSXT_ALLOW_UNVERIFIED_SSL"]
        ),
        router_path=router,
        client_cert=cert,
        client_key=key,
        root_ca=_root_ca(path, values, secrets),
        vmc_access_token=None if token is None else Secret(token),
        vmc_auth_host=values["NSXT_VMC_AUTH_HOST"],
        secrets=tuple(secrets),
        warnings=tuple(warnings),
    )


def merge_tkg(settings: Sequence[TkgSettings]) -> TkgMerge:
    """Combine files: single-valued NSX settings must agree, router paths accumulate."""
    agreed = _Agreement()
    routers: list[str] = []
    for item in settings:
        take = agreed.take
        if item.nsx_host is not None:
            host = normalise_host(item.nsx_host)  # 10.0.0.1 and https://10.0.0.1 agree
            take("NSXT_MANAGER_HOST", host, item.nsx_host, item.nsx_host, item.source)
        take("NSXT_USERNAME", item.username, item.username, item.username, item.source)
        for key, secret in (
            ("NSXT_PASSWORD", item.password),
            ("NSXT_VMC_ACCESS_TOKEN", item.vmc_access_token),
        ):
            if secret is not None:  # compared, never shown
                take(key, secret, secret.reveal(), None, item.source)
        for key, flag in (
            ("NSXT_ALLOW_UNVERIFIED_SSL", item.allow_unverified_ssl),
            ("NSXT_REMOTE_AUTH", item.remote_auth),
        ):
            if flag is not None:
                word = "true" if flag else "false"
                take(key, flag, word, word, item.source)
        auth_host = item.vmc_auth_host
        take("NSXT_VMC_AUTH_HOST", auth_host, auth_host, auth_host, item.source)
        for env, pem in (
            (CA_FILE_ENV, item.root_ca),
            (CERT_FILE_ENV, item.client_cert),
            (KEY_FILE_ENV, item.client_key),
        ):
            agreed.take_pem(env, pem, item.source)
        if item.router_path is not None and item.router_path not in routers:
            routers.append(item.router_path)
    if routers:
        agreed.environ["NSXT_ROUTER_PATH"] = ",".join(routers)
    return TkgMerge(
        environ=agreed.environ,
        pod_cidrs=_merge_cidrs(settings),
        pem_files=agreed.pem_files,
        pem_sources=agreed.pem_sources,
        secrets=tuple(s for item in settings for s in item.secrets),
        warnings=tuple(w for item in settings for w in item.warnings),
    )


class _Agreement:
    """Single-valued settings from several files: the first file's value, or a conflict."""

    def __init__(self) -> None:
        self.picks: dict[str, _Pick] = {}
        self.environ: dict[str, str] = {}
        self.pem_files: dict[str, Secret] = {}
        self.pem_sources: dict[str, Path] = {}

    def take(
        self, key: str, value: object, env: str | None, shown: str | None, source: Path
    ) -> None:
        if value is None:
            return
        pick = self.picks.get(key)
        if pick is None:
            self.picks[key] = _Pick(value, shown, source)
            if env is not None:
                self.environ[key] = env
        elif pick.value != value:
            detail = "" if shown is None else f" ({pick.shown} vs {shown})"
            raise ConfigError(
                f"{pick.source} and {source}: {key} differs between the files{detail}"
            )

    def take_pem(self, env: str, pem: Secret | None, source: Path) -> None:
        if pem is None:
            return
        # Compared, never shown, and written to a file rather than passed as text.
        self.take(_PEM_VARIABLE[env], pem, None, None, source)
        if env not in self.pem_files:
            self.pem_files[env] = pem
            self.pem_sources[env] = source


def _merge_cidrs(settings: Sequence[TkgSettings]) -> dict[str, tuple[str, ...]]:
    pod_cidrs: dict[str, tuple[str, ...]] = {}
    cidr_source: dict[str, Path] = {}
    for item in settings:
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
    return pod_cidrs


@contextmanager
def materialised(merged: TkgMerge, parent: Path | None = None) -> Iterator[dict[str, str]]:
    """The merged settings as an environ, with the PEM texts written to private files.

    The files live in a fresh directory only this user can enter (0700, files 0600) and are
    removed when the block ends, by an error or an interrupt too. The owner of the run holds
    this context (the CLI's ExitStack), so nothing is left for an exit hook to find.
    """
    for secret in merged.secrets:
        register_secret(secret)
    environ = dict(merged.environ)
    if not merged.pem_files:
        yield environ
        return
    directory = Path(tempfile.mkdtemp(prefix="nsx-route-gc-tkg-", dir=parent or _private_tmp()))
    try:
        for env, pem in merged.pem_files.items():
            file = directory / _FILE_NAMES[env]
            descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="ascii") as handle:
                handle.write(pem.reveal())
            environ[env] = str(file)
        if CERT_FILE_ENV in environ and KEY_FILE_ENV in environ:
            _check_pair(environ[CERT_FILE_ENV], environ[KEY_FILE_ENV], merged)
        yield environ
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class _Pick:
    """The first file's value of a single-valued setting."""

    value: object
    shown: str | None  # None: never shown (password, PEM texts, token)
    source: Path


def _load(path: Path) -> dict[str, object]:
    try:
        with path.expanduser().open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read TKG configuration: {exc.strerror or 'unreadable'}"
        ) from exc
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: TKG configuration is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read TKG configuration: not UTF-8 text") from exc
    try:
        # BaseLoader keeps every scalar a string as written: a password such as 0123 or a host
        # such as 10.40 must not turn into a number, and booleans are parsed below per key.
        # Strict too: a key given twice (a second CLUSTER_CIDR) is an error, not the last wins.
        data = load_yaml(text, strings=True)
    except UntrustedInput as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        # Only the line: the problem text may quote the file, and the file holds a password.
        # A duplicate key or an alias is named by the key, never by a value.
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or ""
        why = f": {problem}" if problem.startswith(STRICT_PROBLEMS) else ""
        raise ConfigError(f"{path}: not valid YAML{at}{why}") from exc
    if not isinstance(data, dict):
        kind = "empty" if data in (None, "") else f"a {type(data).__name__}"
        raise ConfigError(f"{path}: expected a TKG configuration mapping of KEY: value, got {kind}")
    return data


def _scalar(path: Path, key: str, value: object) -> str | None:
    """A key's value as a trimmed string; None when absent or empty."""
    if value is None:
        return None
    if not isinstance(value, str):
        kind = "a list" if isinstance(value, list) else "a mapping"
        raise ConfigError(f"{path}: {key}: expected a single value, got {kind}")
    return value.strip() or None


def _password(path: Path, value: object, secrets: list[str]) -> Secret | None:
    """NSXT_PASSWORD as TKG's DecodeCredentialsInViper reads it.

    A plain value is taken exactly as written (quoted spaces included). A value that, trimmed,
    starts with ``<encoded:`` loses that prefix and its last character and is base64-decoded;
    the decoded password is not trimmed.
    """
    if value is None:
        return None
    text = _scalar(path, "NSXT_PASSWORD", value)
    if text is None or not isinstance(value, str):
        return None
    secrets.extend((value, text))
    if not text.startswith(_ENCODED_PREFIX):
        return Secret(value)
    encoded = text[len(_ENCODED_PREFIX) : -1]
    try:
        # Go's StdEncoding skips line breaks; anything else must be base64 with its padding.
        decoded = _b64(encoded.replace("\r", "").replace("\n", "")).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        # Never the value: it is the password, barely disguised.
        raise ConfigError(
            f"{path}: NSXT_PASSWORD: <encoded:...> value is not valid base64 of UTF-8 text"
        ) from exc
    secrets.append(decoded)
    return Secret(decoded) if decoded else None


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _pem(path: Path, key: str, value: str | None, secrets: list[str]) -> Secret | None:
    """A base64-encoded PEM file (what TKG puts into the vsphere-cpi Secret's ``data:``)."""
    if value is None:
        return None
    is_key = key == "NSXT_CLIENT_CERT_KEY_DATA"
    # The client's key, and its certificate too, are kept out of logs; a CA is public.
    scrubbed = is_key or key == "NSXT_CLIENT_CERT_DATA"
    if scrubbed:
        secrets.append(value)
    try:
        text = _b64("".join(value.split())).decode("ascii")
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"{path}: {key}: not valid base64 (TKG expects a base64 PEM)") from exc
    if scrubbed:
        secrets.append(text)
    blocks = [(m.group(1), m.group(2)) for m in _PEM_BLOCK.finditer(text)]
    if is_key:
        secrets.extend(line for _, body in blocks for line in body.split() if len(line) >= 16)
        if len(blocks) != 1 or not blocks[0][0].endswith("PRIVATE KEY"):
            raise ConfigError(f"{path}: {key}: not a PEM private key")
        if blocks[0][0] == "ENCRYPTED PRIVATE KEY" or "ENCRYPTED" in blocks[0][1]:
            raise ConfigError(f"{path}: {key}: the private key is encrypted; give it unencrypted")
        return Secret(text)
    try:
        # The certificates parsed by OpenSSL itself, as the TLS handshake will.
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=text)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"{path}: {key}: not a PEM certificate") from exc
    return Secret(text)


def _root_ca(path: Path, values: Mapping[str, str | None], secrets: list[str]) -> Secret | None:
    """NSXT_ROOT_CA_DATA_B64 (what TKG reads) or NSXT_ROOT_CA_DATA (what its docs template
    names); both base64 PEM, and when both are given they must agree."""
    b64 = _pem(path, "NSXT_ROOT_CA_DATA_B64", values["NSXT_ROOT_CA_DATA_B64"], secrets)
    plain = _pem(path, "NSXT_ROOT_CA_DATA", values["NSXT_ROOT_CA_DATA"], secrets)
    if b64 is not None and plain is not None and b64 != plain:
        raise ConfigError(
            f"{path}: NSXT_ROOT_CA_DATA_B64 and NSXT_ROOT_CA_DATA differ; keep one of them"
        )
    return b64 or plain


def _check_pair(cert_file: str, key_file: str, merged: TkgMerge) -> None:
    def no_password() -> bytes:
        raise ConfigError("encrypted")

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
            cert_file, key_file, password=no_password
        )
    except (ssl.SSLError, ConfigError, ValueError) as exc:
        source = merged.pem_sources.get(KEY_FILE_ENV, Path("?"))
        raise ConfigError(
            f"{source}: NSXT_CLIENT_CERT_KEY_DATA: not the private key of NSXT_CLIENT_CERT_DATA"
        ) from exc


def _private_tmp() -> str | None:
    """$XDG_RUNTIME_DIR (a per-user tmpfs) when there is one, else the system's temp dir."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return runtime if runtime and Path(runtime).is_dir() else None


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


def _boolean(path: Path, key: str, value: str | None) -> bool | None:
    if value is None:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{path}: {key}: expected {_BOOL_WORDS}, got {value!r}")


def _router(path: Path, value: str | None) -> tuple[str | None, str | None]:
    """The Tier-1 the CCM writes to: ``/infra/tier-1s/<last segment>`` whatever the prefix
    (cloud-provider-vsphere nsxtbroker.go getRouterID and StaticRoutesClient.Patch)."""
    if value is None:
        return None, None
    text = value.removesuffix("/")
    segment = text.rsplit("/", 1)[-1]
    if segment == "tier-1s" or not _ROUTER_ID.fullmatch(segment):
        raise ConfigError(f"{path}: NSXT_ROUTER_PATH: {value!r} does not end in a Tier-1 id")
    router = f"/infra/tier-1s/{segment}"
    if text == router:
        return router, None
    return router, (
        f"{path}: NSXT_ROUTER_PATH {text!r} is not /infra/tier-1s/<id>; the CCM writes its "
        f"routes to {router} (the path's last segment), so that router is the one scanned"
    )
