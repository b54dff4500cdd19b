"""Kubernetes API clients from kubeconfig files (or the pod's service account), one per cluster.

Every problem becomes a KubeError of one line, "kubeconfig <path>: <what is wrong>", that never
quotes a credential from the file: the common mistakes are checked here and said plainly, and
whatever the kubernetes client itself says is stripped of every value of the users section.
Also the small message helpers the Kubernetes adapters share (one line, no credentials).
"""

from __future__ import annotations

import binascii
import json
import logging
import os
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog
import urllib3
import yaml

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

from nsx_route_gc.errors import KubeError
from nsx_route_gc.logs import register_secret, secret_forms
from nsx_route_gc.logs import scrub as logs_scrub
from nsx_route_gc.untrusted import (
    CREDENTIAL_MAX_BYTES,
    KUBECONFIG_MAX_BYTES,
    UntrustedInput,
    load_yaml,
    read_text_bounded,
)

log = structlog.get_logger(__name__)

# The client's cache of temp files for *-data fields is a module global without a lock.
_LOAD_LOCK = threading.Lock()
# Values under users[].user that name files or programs, not credentials: kept in messages.
_NOT_SECRET_KEYS = frozenset(
    {"tokenFile", "client-certificate", "client-key", "command", "apiVersion"}
)


class _Complaints:
    """Stands in for the logging module inside kube_config.

    kube_config reports a failed exec credential plugin with the module-level logging.error(),
    which runs logging.basicConfig() as a side effect and prints to stderr, then goes on without
    credentials. The messages are kept here instead and become part of our own error.
    """

    def __init__(self) -> None:
        self.messages: list[str] = []

    def _keep(self, msg: object, *args: object, **_: object) -> None:
        self.messages.append(" ".join(str(part) for part in (msg, *args)))

    debug = info = warning = error = exception = critical = _keep

    def __getattr__(self, name: str) -> Any:
        return getattr(logging, name)


_COMPLAINTS = _Complaints()


# What a kubeconfig from a Cluster API Secret may hold: credentials and CA as data, nothing
# that runs a program or reads a file of the collector's (which holds the NSX password).
_SECRET_USER_KEYS = frozenset({"token", "client-certificate-data", "client-key-data"})
_SECRET_CLUSTER_KEYS = frozenset(
    {"server", "certificate-authority-data", "tls-server-name", "disable-compression"}
)


def _safe_load(text: str) -> Any:
    """Strict YAML (no duplicate keys, no aliases: an anchor bomb is refused at its first
    alias, not expanded), with libyaml when the wheel has it."""
    try:
        return load_yaml(text, fast=True)
    except yaml.YAMLError:
        # Parsed again for the error alone: the pure-Python parser words it (and places it)
        # the way operators find in PyYAML's documentation.
        return load_yaml(text)


class _FastYaml:
    """Stands in for the yaml module inside kube_config, so that the client parses each
    kubeconfig (again, after _read) with libyaml rather than the pure-Python parser."""

    @staticmethod
    def safe_load(stream: Any) -> Any:
        return _safe_load(stream if isinstance(stream, str) else stream.read())

    def __getattr__(self, name: str) -> Any:
        return getattr(yaml, name)


# The Kubernetes client is imported when the first client is made, not with this module:
# it is about half the start-up time of the process, and a run's file checks (check_kubeconfig)
# need none of it, so that the import goes on the inventory's thread while NSX is logged in to.
# kube_config.ENV_KUBECONFIG_PATH_SEPARATOR, without importing it: ';' on Windows, else ':'.
_KUBECONFIG_PATH_SEPARATOR = os.pathsep
_IMPORT_LOCK = threading.Lock()


def _kube_config() -> ModuleType:
    """kubernetes.config.kube_config, with our stand-ins for its logging and yaml modules."""
    with _IMPORT_LOCK:
        from kubernetes.config import kube_config  # noqa: PLC0415 - lazy: see above

        if getattr(kube_config, "logging", None) is logging:
            kube_config.logging = _COMPLAINTS  # type: ignore[attr-defined,assignment]  # see _Complaints
        if getattr(kube_config, "yaml", None) is yaml:
            kube_config.yaml = _FastYaml()  # type: ignore[attr-defined,assignment]  # see _FastYaml
        return kube_config


def _config_exception() -> type[Exception]:
    from kubernetes.config.config_exception import ConfigException  # noqa: PLC0415 - lazy

    return ConfigException


def api_client_from_kubeconfig(
    kubeconfig: Path | None,
    context: str | None = None,
    *,
    credentials_only: bool = False,
    allow_http: bool = True,
) -> ApiClient:
    """An ApiClient of its own for one kubeconfig and context (None: the pod's service account).

    ``context`` None means the file's current-context. ``credentials_only``: the file came
    from somewhere less trusted than the operator (a Cluster API Secret) and may hold only
    certificate, token and CA data. ``allow_http`` False refuses a server without TLS.
    Raises KubeError.
    """
    if kubeconfig is None:
        return _in_cluster_client()
    path = kubeconfig.expanduser()
    label = f"kubeconfig {path}"
    doc = _read(path, label)
    user, cluster = _check(doc, context, label)
    if credentials_only:
        _only_credentials(user, cluster, label)
    _register_credentials(user, label)
    scheme = urlsplit(str(cluster["server"])).scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow_http):
        hint = " (set cluster_api.allow_http: true to allow http)" if scheme == "http" else ""
        raise KubeError(f"{label}: server {safe_url(str(cluster['server']))} is not https{hint}")
    kube_config = _kube_config()
    try:
        with _LOAD_LOCK:
            _COMPLAINTS.messages.clear()
            # config_file always explicit: otherwise the client falls back to $KUBECONFIG as it
            # was when the client was imported, and merges every file listed there.
            api: ApiClient = kube_config.new_client_from_config(
                config_file=str(path), context=context, persist_config=False
            )
            complaints = "; ".join(_COMPLAINTS.messages)
    except (
        _config_exception(),
        OSError,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
    ) as exc:
        detail = scrub(_describe_load_error(exc), _user_values(doc))
        # Not chained: the client's own message may quote the user entry, credentials included.
        raise KubeError(f"{label}: {detail}") from None
    cfg = api.configuration
    # A token file's trailing newline is not part of the token (the header would be refused,
    # quoting it).
    if cfg.api_key:
        cfg.api_key = {k: str(v).strip() for k, v in cfg.api_key.items()}
    if "exec" in user and not cfg.api_key and not cfg.cert_file:
        api.close()  # type: ignore[no-untyped-call]  # untyped library method
        command = Path(str(user["exec"].get("command", "?"))).name
        why = f": {scrub(one_line(complaints), _user_values(doc))[:300]}" if complaints else ""
        raise KubeError(f"{label}: exec credential plugin {command!r} gave no credentials{why}")
    if not cfg.verify_ssl:
        # urllib3 would warn on stderr at every request; one log line per client says it instead.
        warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        log.warning("kubeconfig.tls_unverified", kubeconfig=str(path), server=safe_url(cfg.host))
    return api


def check_kubeconfig(kubeconfig: Path, context: str | None = None) -> str:
    """What ``validate`` and the start of a run check of a kubeconfig file without contacting
    its server: readable, a kubeconfig, the context there (``None``: its current-context)
    naming a cluster with a server. Returns "context <name>, server <url>"; KubeError else."""
    path = kubeconfig.expanduser()
    label = f"kubeconfig {path}"
    doc = _read(path, label)
    _check(doc, context, label)
    name = context or str(doc.get("current-context"))
    ctx = _named(doc, "contexts", name, label) or {}
    cluster = _named(doc, "clusters", str(ctx.get("cluster")), label) or {}
    return f"context {name}, server {safe_url(str(cluster.get('server')))}"


def _in_cluster_client() -> ApiClient:
    from kubernetes import client as k8s  # noqa: PLC0415 - lazy: see _kube_config
    from kubernetes.client import ApiClient  # noqa: PLC0415 - lazy: see _kube_config
    from kubernetes.config.incluster_config import (  # noqa: PLC0415 - lazy: see _kube_config
        load_incluster_config,
    )

    cfg = k8s.Configuration()
    try:
        load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]  # untyped library function
    except (_config_exception(), OSError) as exc:
        raise KubeError(f"in-cluster service account: {one_line(str(exc))}") from exc
    return ApiClient(configuration=cfg)


def _read(path: Path, label: str) -> dict[str, Any]:
    separator = _KUBECONFIG_PATH_SEPARATOR
    if separator in str(path):
        raise KubeError(
            f"{label}: the kubernetes client cannot read a path containing {separator!r}"
        )
    try:
        text = read_text_bounded(path, KUBECONFIG_MAX_BYTES)
    except FileNotFoundError as exc:
        raise KubeError(f"{label}: file not found") from exc
    except UntrustedInput as exc:
        raise KubeError(f"{label}: {exc}") from None
    except OSError as exc:
        raise KubeError(f"{label}: cannot read: {exc.strerror or type(exc).__name__}") from exc
    try:
        # libyaml when the wheel has it: the pure-Python parser is most of a client's set-up
        # time, and a scan sets up hundreds.
        doc = _safe_load(text)
    except UntrustedInput as exc:
        raise KubeError(f"{label}: {exc}") from None
    except yaml.YAMLError as exc:
        # Only the position and the parser's own words: the offending line may hold a token.
        where, problem = "", ""
        if isinstance(exc, yaml.MarkedYAMLError):
            if exc.problem_mark is not None:
                where = (
                    f" at line {exc.problem_mark.line + 1}, column {exc.problem_mark.column + 1}"
                )
            if exc.problem:
                problem = f": {exc.problem}"
        raise KubeError(f"{label}: invalid YAML{where}{problem}") from None
    if not isinstance(doc, dict):
        raise KubeError(f"{label}: not a kubeconfig (empty, or not a YAML mapping)")
    return doc


def _check(
    doc: dict[str, Any], context: str | None, label: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Says the common mistakes plainly (the client is vague); returns the context's user and
    cluster entries."""
    name = context or doc.get("current-context")
    if not name:
        raise KubeError(f"{label}: no context given and no current-context set")
    ctx = _named(doc, "contexts", name, label)
    if ctx is None:
        raise KubeError(f"{label}: no context named {name!r}")
    cluster_name = ctx.get("cluster")
    if not cluster_name:
        raise KubeError(f"{label}: context {name!r} names no cluster")
    cluster = _named(doc, "clusters", cluster_name, label)
    if cluster is None:
        raise KubeError(
            f"{label}: context {name!r} names cluster {cluster_name!r}, which is not in clusters"
        )
    if not cluster.get("server"):
        raise KubeError(f"{label}: cluster {cluster_name!r} has no server")
    if not isinstance(cluster["server"], str):
        raise KubeError(f"{label}: cluster {cluster_name!r} server is not a string")
    user_name = ctx.get("user")
    # A context without a user, or naming a missing one, talks to the server anonymously.
    user = (_named(doc, "users", user_name, label) if user_name else None) or {}
    return user, cluster


def _only_credentials(user: dict[str, Any], cluster: dict[str, Any], label: str) -> None:
    """Refuse what a Cluster API Secret has no business carrying: exec and auth-provider
    (they run programs in the collector), tokenFile and every file path (they read the
    collector's files, its NSX password among them), proxies and TLS switched off."""
    for key in sorted(user):
        if key not in _SECRET_USER_KEYS:
            raise KubeError(
                f"{label}: user field {key!r} refused in a kubeconfig from a Secret "
                f"(allowed: {', '.join(sorted(_SECRET_USER_KEYS))})"
            )
    for key in sorted(cluster):
        if key not in _SECRET_CLUSTER_KEYS:
            raise KubeError(
                f"{label}: cluster field {key!r} refused in a kubeconfig from a Secret "
                f"(allowed: {', '.join(sorted(_SECRET_CLUSTER_KEYS))})"
            )
    for key, value in user.items():
        if not isinstance(value, str):
            raise KubeError(f"{label}: user field {key!r} is not a string")


def _register_credentials(user: dict[str, Any], label: str) -> None:
    """Every credential of the user entry is scrubbed from logs, reports and messages; a token
    file's content too (read here, bounded), with and without its trailing newline."""
    for key in ("token", "client-key-data", "password"):
        value = user.get(key)
        if isinstance(value, str):
            register_secret(value)
    token_file = user.get("tokenFile")
    if isinstance(token_file, str) and token_file:
        try:
            register_secret(read_text_bounded(Path(token_file).expanduser(), CREDENTIAL_MAX_BYTES))
        except (OSError, UntrustedInput) as exc:
            raise KubeError(f"{label}: tokenFile {token_file}: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc)


def _named(doc: dict[str, Any], section: str, name: str, label: str) -> dict[str, Any] | None:
    """The body of the entry called ``name`` in a kubeconfig list (contexts, clusters, users)."""
    entries = doc.get(section) or []
    if not isinstance(entries, list):
        raise KubeError(f"{label}: {section} is not a list")
    kind = section.removesuffix("s")
    for entry in entries:
        if not isinstance(entry, dict) or "name" not in entry:
            raise KubeError(f"{label}: an entry of {section} has no name")
        if entry["name"] == name:
            body = entry.get(kind)
            if not isinstance(body, dict):
                raise KubeError(f"{label}: {kind} {name!r} has no {kind} mapping")
            return body
    return None


def _user_values(doc: dict[str, Any]) -> set[str]:
    """Every string under users[].user: whatever the client quotes from there is hidden."""
    found: set[str] = set()

    def walk(value: object, key: str = "") -> None:
        if isinstance(value, str) and value and key not in _NOT_SECRET_KEYS:
            found.add(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list):
            for v in value:
                walk(v, key)

    users = doc.get("users")
    for entry in users if isinstance(users, list) else ():
        if isinstance(entry, dict):
            walk(entry.get("user"))
    return found


def _describe_load_error(exc: Exception) -> str:
    if isinstance(exc, binascii.Error):
        return f"invalid base64 in a *-data field ({exc})"
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename}"
    if isinstance(exc, OSError):
        return f"cannot read {exc.filename}: {exc.strerror}"
    if isinstance(exc, _config_exception()):
        return one_line(str(exc))
    return one_line(f"{type(exc).__name__}: {exc}")


def scrub(text: str, secrets: set[str]) -> str:
    """``text`` with every one of ``secrets``, in every encoded form, and every registered
    secret replaced by ***."""
    forms = set(secrets).union(*(secret_forms(s) for s in secrets))
    for secret in sorted(forms, key=len, reverse=True):
        text = text.replace(secret, "***")
    return logs_scrub(text)


def one_line(text: str) -> str:
    return " ".join(text.split())


def safe_url(url: str) -> str:
    """A server URL for messages: without user:password@, query or fragment."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}".rstrip("/")


def status_message(body: object) -> str | None:
    """The message of a Kubernetes Status error answer (403: who may not do what), if any."""
    if not isinstance(body, str | bytes):
        return None
    try:
        status = json.loads(body)
    except ValueError:
        return None
    message = status.get("message") if isinstance(status, dict) else None
    return one_line(message)[:300] if isinstance(message, str) and message else None
