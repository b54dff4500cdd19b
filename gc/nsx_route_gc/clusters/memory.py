"""Memory of the clusters seen in a management cluster, so a deleted one can be retired.

A record per cluster: name, namespace, pod CIDRs, its CCM's router path and NSX manager (so
that a deleted cluster's router is still known), first and last seen, and when a run first
noticed it missing. Records written before the CCM settings were remembered load as they are
(the ``ccm`` key is optional). Kept in a file (from a laptop) or a ConfigMap (in a cluster),
both behind :class:`MemoryStore`; the format is the same JSON text.

Safety rules, because a retired cluster's routes become deletable:
- a record that cannot be read only means less is known: no cluster is retired, nothing raises;
- a cluster is retired only after runs have *observed* it missing for ``gone_after`` (from
  ``missing_since``, the first run that noticed, not from ``last_seen``): a job that did not
  run for a day must not retire a cluster that vanished a minute ago, and a Cluster object
  deleted and re-created between two runs (GitOps) is never retired;
- records are scoped by management cluster (its API server URL) and by the namespaces listed:
  a state file shared by two management clusters, or a narrowed namespace list, never makes
  the other clusters look missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from nsx_route_gc.models import CcmSettings, ClusterInventory, ClusterStatus, parse_network

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 1


class MemoryUnavailableError(Exception):
    """The store cannot be read or written; one line, never raised out of ClusterMemory."""


class CorruptRecordError(Exception):
    """The stored text is not a record we wrote (truncated, edited by hand, not JSON)."""


class NewerRecordError(Exception):
    """The record was written by a newer schema: neither trusted nor overwritten."""


class MemoryStore(Protocol):
    """Where the record's JSON text lives. ``description`` names it in evidence and logs."""

    description: str

    def load(self) -> str | None:
        """The stored text, None when nothing is stored yet.

        Raises MemoryUnavailableError, or CorruptRecordError when the bytes are not text.
        """
        ...

    def modify(self, change: Callable[[str | None], str]) -> None:
        """Read, ``change``, write back without losing a concurrent writer's update.

        ``change`` may raise CorruptRecordError: the store then keeps the old text aside and
        calls ``change(None)``. Raises MemoryUnavailableError (or NewerRecordError from change).
        """
        ...


@dataclass(frozen=True)
class Sighting:
    """A cluster present in the management cluster in this run."""

    name: str
    namespace: str | None = None
    pod_cidrs: tuple[str, ...] = ()
    ccm: CcmSettings | None = None  # None: not known in this run (the memory keeps the last)


@dataclass(frozen=True)
class Scope:
    """What one run can see: a management cluster and its listed namespaces (empty: all)."""

    management: str = ""
    namespaces: frozenset[str] = frozenset()

    def covers(self, entry: Entry) -> bool:
        if entry.management != self.management:
            return False
        return not self.namespaces or entry.namespace in self.namespaces


@dataclass(frozen=True)
class Entry:
    name: str
    namespace: str | None
    management: str
    pod_cidrs: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime
    missing_since: datetime | None = None
    ccm: CcmSettings | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.management, self.namespace or "", self.name)


@dataclass
class Record:
    entries: dict[tuple[str, str, str], Entry] = field(default_factory=dict)


def parse_record(text: str | None) -> Record:
    """The record in ``text``. Raises CorruptRecordError or NewerRecordError."""
    if text is None or not text.strip():
        return Record()
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise CorruptRecordError("not JSON") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("clusters"), list):
        raise CorruptRecordError("not a record of clusters")
    version = doc.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise NewerRecordError(f"schema_version {version} is newer than {SCHEMA_VERSION}")
    if version != SCHEMA_VERSION:
        raise CorruptRecordError(f"unknown schema_version {version!r}")
    record = Record()
    for i, item in enumerate(doc["clusters"]):
        try:
            entry = _entry(item)
        except (KeyError, TypeError, ValueError) as exc:
            # Any damage makes the whole record suspect: guessing could retire a live cluster.
            raise CorruptRecordError(f"clusters[{i}] is malformed") from exc
        record.entries[entry.key] = entry
    return record


def _entry(item: Any) -> Entry:
    if not isinstance(item, dict) or not isinstance(item["name"], str) or not item["name"]:
        raise ValueError("name")
    cidrs = item["pod_cidrs"]
    if not isinstance(cidrs, list) or not all(isinstance(c, str) for c in cidrs):
        raise ValueError("pod_cidrs")
    for cidr in cidrs:
        parse_network(cidr)
    namespace = item.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise ValueError("namespace")
    missing = item.get("missing_since")
    ccm = item.get("ccm")
    return Entry(
        name=item["name"],
        namespace=namespace,
        management=str(item.get("management") or ""),
        pod_cidrs=tuple(cidrs),
        first_seen=_time(item["first_seen"]),
        last_seen=_time(item["last_seen"]),
        missing_since=None if missing is None else _time(missing),
        ccm=None if ccm is None else _ccm(ccm),
    )


_MAX_CCM_TEXT = 1024


def _ccm(item: Any) -> CcmSettings:
    if not isinstance(item, dict):
        raise TypeError("ccm")
    values: dict[str, str | None] = {}
    for key in ("router_path", "nsx_host", "source"):
        value = item.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > _MAX_CCM_TEXT):
            raise ValueError(f"ccm.{key}")
        values[key] = value
    return CcmSettings(values["router_path"], values["nsx_host"], values["source"] or "memory")


def _time(value: object) -> datetime:
    if not isinstance(value, str):
        raise TypeError("timestamp")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("timestamp without a time zone")
    return parsed


def dump_record(record: Record) -> str:
    clusters = [
        {
            "name": e.name,
            "namespace": e.namespace,
            "management": e.management,
            "pod_cidrs": list(e.pod_cidrs),
            "first_seen": e.first_seen.isoformat(),
            "last_seen": e.last_seen.isoformat(),
            "missing_since": e.missing_since.isoformat() if e.missing_since else None,
            "ccm": None
            if e.ccm is None
            else {
                "router_path": e.ccm.router_path,
                "nsx_host": e.ccm.nsx_host,
                "source": e.ccm.source,
            },
        }
        for e in sorted(record.entries.values(), key=lambda e: e.key)
    ]
    return json.dumps({"schema_version": SCHEMA_VERSION, "clusters": clusters}, indent=1) + "\n"


def observe(
    record: Record, seen: Sequence[Sighting], now: datetime, scope: Scope
) -> tuple[int, int]:
    """Merge one run's sightings into ``record``; returns (new entries, newly missing)."""
    added = 0
    present: set[tuple[str, str, str]] = set()
    for s in seen:
        key = (scope.management, s.namespace or "", s.name)
        present.add(key)
        old = record.entries.get(key)
        if old is None:
            added += 1
            record.entries[key] = Entry(
                s.name, s.namespace, scope.management, tuple(s.pod_cidrs), now, now, ccm=s.ccm
            )
            continue
        # CIDRs are only ever added: a cluster's routes may still carry an old CIDR's networks.
        cidrs = tuple(dict.fromkeys((*old.pod_cidrs, *s.pod_cidrs)))
        record.entries[key] = replace(
            old,
            pod_cidrs=cidrs,
            last_seen=max(old.last_seen, now),
            missing_since=None,
            # Unknown in this run (the cluster unreachable, say): the last known settings stay.
            ccm=s.ccm or old.ccm,
        )
    missing = 0
    for key, entry in list(record.entries.items()):
        if key not in present and scope.covers(entry) and entry.missing_since is None:
            missing += 1
            record.entries[key] = replace(entry, missing_since=now)
    return added, missing


class ClusterMemory:
    """Remembers clusters across runs; never raises, never makes more deletable on a failure."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    @property
    def description(self) -> str:
        return self.store.description

    def update(self, seen: Sequence[Sighting], now: datetime, scope: Scope = Scope()) -> bool:
        """Record this run's sightings (and who is missing). True when it was written."""
        counts: list[tuple[int, int]] = []

        def change(text: str | None) -> str:
            record = parse_record(text)
            counts.append(observe(record, seen, now, scope))
            return dump_record(record)

        try:
            self.store.modify(change)
        except (MemoryUnavailableError, NewerRecordError) as exc:
            log.warning("memory.write_failed", store=self.description, error=str(exc))
            return False
        except Exception as exc:
            # A bug in a store must not fail the scan; its message may quote anything.
            error = f"unexpected {type(exc).__name__} (a bug)"
            log.error("memory.write_failed", store=self.description, error=error)
            return False
        added, missing = counts[-1]
        log.info(
            "memory.updated",
            store=self.description,
            seen=len(seen),
            added=added,
            newly_missing=missing,
        )
        return True

    def retired(
        self,
        present_names: Collection[str],
        now: datetime,
        gone_after: timedelta,
        scope: Scope = Scope(),
    ) -> list[ClusterInventory]:
        """Remembered clusters observed missing for at least ``gone_after``, as RETIRED."""
        try:
            text = self.store.load()
            if text is None:
                log.info(
                    "memory.unreadable",
                    store=self.description,
                    error="nothing stored (first run, or the record was lost)",
                )
            record = parse_record(text)
        except (MemoryUnavailableError, CorruptRecordError, NewerRecordError) as exc:
            log.warning("memory.unreadable", store=self.description, error=str(exc))
            return []
        except Exception as exc:
            error = f"unexpected {type(exc).__name__} (a bug)"
            log.error("memory.unreadable", store=self.description, error=error)
            return []
        by_name: dict[str, list[Entry]] = {}
        for entry in record.entries.values():
            if entry.name in present_names or not scope.covers(entry):
                continue
            if entry.missing_since is None or now - entry.missing_since < gone_after:
                continue
            by_name.setdefault(entry.name, []).append(entry)
        out = []
        for name, entries in sorted(by_name.items()):
            cidrs = tuple(dict.fromkeys(c for e in entries for c in e.pod_cidrs))
            last = max(e.last_seen for e in entries)
            noticed = min(e.missing_since for e in entries if e.missing_since is not None)
            evidence = (
                f"not in the management cluster since {last.isoformat()} (missing since "
                f"{noticed.isoformat()}), remembered by {self.description}"
            )
            log.info("memory.cluster_retired", cluster=name, last_seen=last.isoformat())
            known = [e for e in entries if e.ccm is not None]
            ccm = max(known, key=lambda e: e.last_seen).ccm if known else None
            if ccm is not None:
                ccm = replace(ccm, source=f"{ccm.source}, remembered by {self.description}")
            out.append(
                ClusterInventory(
                    name=name,
                    source="memory",
                    status=ClusterStatus.RETIRED,
                    pod_cidrs=cidrs,
                    evidence=evidence,
                    ccm=ccm,
                )
            )
        return out
