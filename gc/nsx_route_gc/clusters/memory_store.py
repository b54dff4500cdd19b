"""The two homes of the cluster memory: a JSON file (laptop) and a ConfigMap (in a cluster).

Both keep a corrupt record instead of overwriting it: the file is renamed to
``<file>.corrupt-<UTC timestamp>`` and the ConfigMap keeps the old text under the key
``clusters.json.corrupt-<UTC timestamp>``, then a fresh record is started. Refusing to write
would freeze the memory for ever in an unattended CronJob (no new cluster remembered, so none
could ever be retired); moving aside loses nothing a human could want back.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
import urllib3
from kubernetes import client as k8s
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from nsx_route_gc.clusters.kubeconfig import one_line, safe_url, status_message
from nsx_route_gc.clusters.memory import CorruptRecordError, MemoryUnavailableError
from nsx_route_gc.errors import KubeError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock; one writer per laptop is usual
    fcntl = None  # type: ignore[assignment]  # the lock is skipped where fcntl is missing

log = structlog.get_logger(__name__)

CONFIGMAP_KEY = "clusters.json"
REQUEST_TIMEOUT = (10.0, 30.0)  # seconds: connect, read


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


class FileStore:
    """A JSON file, replaced atomically; a lock file serialises writers on one machine."""

    def __init__(self, path: Path, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self.path = path.expanduser()
        self.description = f"file {self.path}"
        self._clock = clock

    def load(self) -> str | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise MemoryUnavailableError(
                f"cannot read {self.path}: {exc.strerror or type(exc).__name__}"
            ) from exc
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptRecordError("not UTF-8 text") from exc

    def modify(self, change: Callable[[str | None], str]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked():
                try:
                    text = change(self.load())
                except CorruptRecordError as exc:
                    self._move_aside(str(exc))
                    text = change(None)
                self._write(text)
        except OSError as exc:
            raise MemoryUnavailableError(
                f"cannot write {self.path}: {exc.strerror or type(exc).__name__}"
            ) from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if fcntl is None:  # pragma: no cover - see the import
            yield
            return
        lock_path = self.path.with_name(self.path.name + ".lock")
        with lock_path.open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _move_aside(self, why: str) -> None:
        stamp = _stamp(self._clock())
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        os.replace(self.path, aside)
        log.warning(
            "memory.corrupt_moved_aside", store=self.description, moved_to=str(aside), error=why
        )

    def _write(self, text: str) -> None:
        # A temp file in the same directory, then rename: a reader sees the old or the new
        # record, never half of one, even if the job is killed mid-write.
        fd, tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


class ConfigMapStore:
    """The data key ``clusters.json`` of one ConfigMap, updated with resourceVersion.

    ``api`` is an ApiClient, or a function returning one (called at first use, so building the
    store never talks to the cluster). A 409 Conflict on create or replace re-reads the
    ConfigMap and applies the change again to what another writer stored: no entry is lost.
    """

    def __init__(
        self,
        api: ApiClient | Callable[[], ApiClient],
        namespace: str,
        name: str,
        *,
        max_attempts: int = 5,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._api = api
        self.namespace = namespace
        self.name = name
        self.description = f"configmap {namespace}/{name}"
        self._max_attempts = max_attempts
        self._clock = clock

    def _core(self) -> Any:
        api = self._api
        if not isinstance(api, ApiClient) and callable(api):
            try:
                api = api()
            except KubeError as exc:
                raise MemoryUnavailableError(str(exc)) from exc
        return k8s.CoreV1Api(api)

    def load(self) -> str | None:
        cm = self._read(self._core())
        if cm is None:
            return None
        value = (cm.data or {}).get(CONFIGMAP_KEY)
        return value if isinstance(value, str) else None

    def modify(self, change: Callable[[str | None], str]) -> None:
        core = self._core()
        for attempt in range(1, self._max_attempts + 1):
            cm = self._read(core)
            data = dict((cm.data or {}) if cm is not None else {})
            current = data.get(CONFIGMAP_KEY)
            try:
                data[CONFIGMAP_KEY] = change(current)
            except CorruptRecordError as exc:
                aside = f"{CONFIGMAP_KEY}.corrupt-{_stamp(self._clock())}"
                data[aside] = current or ""
                data[CONFIGMAP_KEY] = change(None)
                log.warning(
                    "memory.corrupt_moved_aside",
                    store=self.description,
                    moved_to=aside,
                    error=str(exc),
                )
            try:
                if cm is None:
                    self._call(core, "create", self.namespace, self._new(data))
                else:
                    if not getattr(cm.metadata, "resource_version", None):
                        # Without it the replace would be unconditional and could drop entries.
                        raise MemoryUnavailableError(f"{self.description} has no resourceVersion")
                    cm.data = data
                    self._call(core, "replace", self.name, self.namespace, cm)
            except _ConflictError:
                log.info("memory.conflict", store=self.description, attempt=attempt)
                continue
            return
        raise MemoryUnavailableError(
            f"{self.description}: still conflicting after {self._max_attempts} attempts"
        )

    def _new(self, data: dict[str, str]) -> Any:
        meta = k8s.V1ObjectMeta(
            name=self.name,
            namespace=self.namespace,
            labels={
                "app.kubernetes.io/name": "nsx-route-gc",
                "app.kubernetes.io/component": "state",
            },
        )
        return k8s.V1ConfigMap(metadata=meta, data=data)

    def _read(self, core: Any) -> Any:
        try:
            return self._call(core, "read", self.name, self.namespace)
        except _NotFoundError:
            return None
        except _ConflictError as exc:  # a GET never conflicts; a server that says so is broken
            raise MemoryUnavailableError(f"reading {self.description}: 409 on a read") from exc

    def _call(self, core: Any, verb: str, *args: Any) -> Any:
        server = safe_url(str(core.api_client.configuration.host))
        method = getattr(core, f"{verb}_namespaced_config_map")
        try:
            return method(*args, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                raise _NotFoundError from exc
            if exc.status == 409:
                raise _ConflictError from exc
            detail = (
                f"{exc.status} {exc.reason or ''}".rstrip()
                if exc.status
                else one_line(str(exc.reason))
            )
            message = status_message(exc.body)
            if message:
                detail += f": {message}"
            raise MemoryUnavailableError(
                f"{verb} {self.description} on {server}: {detail}"
            ) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise MemoryUnavailableError(
                f"{verb} {self.description}: cannot reach {server} ({type(exc).__name__})"
            ) from exc
        except ValueError as exc:  # not JSON, or not a ConfigMap
            raise MemoryUnavailableError(f"{verb} {self.description}: malformed answer") from exc


class _NotFoundError(Exception):
    pass


class _ConflictError(Exception):
    pass
