"""Memory of clusters: the merge and retirement rules, the file store, and the ConfigMap store
with the real kubernetes client against a local API server that keeps one ConfigMap.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from kubernetes import client as k8s
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from factories import kube_json, kube_status
from nsx_route_gc.clusters.memory import (
    ClusterMemory,
    CorruptRecordError,
    Record,
    Scope,
    Sighting,
    dump_record,
    observe,
    parse_record,
)
from nsx_route_gc.clusters.memory_store import CONFIGMAP_KEY, ConfigMapStore, FileStore
from nsx_route_gc.models import CcmSettings, ClusterStatus

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
MGMT = Scope(management="https://mgmt:6443")
CL1 = Sighting("cl1", "default", ("172.16.136.0/21",))
CL2 = Sighting("cl2", "default", ("172.16.144.0/21",))


@pytest.fixture(autouse=True)
def logs() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def events(logs: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in logs]


@pytest.fixture
def file_memory(tmp_path: Path) -> ClusterMemory:
    return ClusterMemory(FileStore(tmp_path / "state" / "deep" / "clusters.json", clock=lambda: T0))


# --------------------------------------------------------------------------- rules, file store


def test_file_round_trip_keeps_first_seen_bumps_last_seen_and_unions_cidrs(
    file_memory: ClusterMemory, tmp_path: Path
) -> None:
    assert file_memory.update([CL1, CL2], T0, MGMT)
    grown = Sighting("cl2", "default", ("172.16.152.0/21",))
    assert file_memory.update([CL1, grown], T0 + HOUR, MGMT)

    path = tmp_path / "state" / "deep" / "clusters.json"
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == 1
    by_name = {c["name"]: c for c in doc["clusters"]}
    assert by_name["cl2"] == {
        "name": "cl2",
        "namespace": "default",
        "management": "https://mgmt:6443",
        "pod_cidrs": ["172.16.144.0/21", "172.16.152.0/21"],
        "first_seen": T0.isoformat(),
        "last_seen": (T0 + HOUR).isoformat(),
        "missing_since": None,
        "ccm": None,
    }
    # No temp file left behind.
    assert {p.name for p in path.parent.iterdir()} == {"clusters.json", "clusters.json.lock"}


def test_absent_longer_than_gone_after_is_retired_with_evidence(
    file_memory: ClusterMemory,
) -> None:
    file_memory.update([CL1, CL2], T0, MGMT)
    # cl1 leaves; the run two hours later is the first to notice.
    file_memory.update([CL2], T0 + 2 * HOUR, MGMT)
    assert file_memory.retired({"cl2"}, T0 + 2 * HOUR, HOUR, MGMT) == []

    later = T0 + 3 * HOUR
    file_memory.update([CL2], later, MGMT)
    (retired,) = file_memory.retired({"cl2"}, later, HOUR, MGMT)
    assert retired.name == "cl1"
    assert retired.status is ClusterStatus.RETIRED
    assert retired.source == "memory"
    assert retired.pod_cidrs == ("172.16.136.0/21",)
    assert retired.evidence is not None
    assert f"not in the management cluster since {T0.isoformat()}" in retired.evidence
    assert f"missing since {(T0 + 2 * HOUR).isoformat()}" in retired.evidence
    assert retired.evidence.endswith(f"remembered by {file_memory.description}")


def test_absence_shorter_than_gone_after_retires_nothing(file_memory: ClusterMemory) -> None:
    file_memory.update([CL1, CL2], T0, MGMT)
    file_memory.update([CL2], T0 + HOUR, MGMT)
    assert file_memory.retired({"cl2"}, T0 + HOUR + timedelta(minutes=59), HOUR, MGMT) == []


def test_a_cluster_that_comes_back_is_no_longer_missing(file_memory: ClusterMemory) -> None:
    file_memory.update([CL1, CL2], T0, MGMT)
    file_memory.update([CL2], T0 + HOUR, MGMT)  # missing (a GitOps re-create, say)
    file_memory.update([CL1, CL2], T0 + 2 * HOUR, MGMT)
    file_memory.update([CL2], T0 + 10 * HOUR, MGMT)  # missing again, just noticed
    assert file_memory.retired({"cl2"}, T0 + 10 * HOUR, HOUR, MGMT) == []


def test_other_management_clusters_and_unlisted_namespaces_are_never_missing(
    file_memory: ClusterMemory,
) -> None:
    other = Scope(management="https://other:6443")
    file_memory.update([CL1], T0, other)
    file_memory.update([Sighting("team", "team-a", ("10.1.0.0/16",))], T0, MGMT)
    only_default = Scope(management=MGMT.management, namespaces=frozenset({"default"}))
    file_memory.update([CL2], T0 + HOUR, only_default)
    later = T0 + 5 * HOUR
    file_memory.update([CL2], later, only_default)
    assert file_memory.retired({"cl2"}, later, HOUR, only_default) == []
    assert file_memory.retired({"cl2"}, later, HOUR, MGMT) == []


def test_a_present_name_is_never_retired(file_memory: ClusterMemory) -> None:
    # The Cluster object moved to another namespace: same name, still present.
    file_memory.update([CL1], T0, MGMT)
    file_memory.update([Sighting("cl1", "moved", CL1.pod_cidrs)], T0 + HOUR, MGMT)
    file_memory.update([Sighting("cl1", "moved", CL1.pod_cidrs)], T0 + 5 * HOUR, MGMT)
    assert file_memory.retired({"cl1"}, T0 + 5 * HOUR, HOUR, MGMT) == []


def test_missing_file_means_nothing_known(
    file_memory: ClusterMemory, logs: list[dict[str, Any]]
) -> None:
    assert file_memory.retired(set(), T0, HOUR, MGMT) == []
    assert "memory.unreadable" in events(logs)


def test_corrupt_file_retires_nothing_and_is_moved_aside_before_a_fresh_record(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    path = tmp_path / "clusters.json"
    path.write_text('{"schema_version": 1, "clusters": [{"name": "cl1", "pod_c')
    memory = ClusterMemory(FileStore(path, clock=lambda: T0))

    assert memory.retired(set(), T0 + 9 * HOUR, HOUR, MGMT) == []
    assert "memory.unreadable" in events(logs)

    assert memory.update([CL2], T0, MGMT)
    aside = tmp_path / "clusters.json.corrupt-20261125T120000Z"
    assert aside.read_text().startswith('{"schema_version": 1, "clusters": [{"name": "cl1"')
    assert [e.name for e in parse_record(path.read_text()).entries.values()] == ["cl2"]
    assert "memory.corrupt_moved_aside" in events(logs)


@pytest.mark.parametrize(
    "text",
    [
        '{"schema_version": 1, "clusters": [{"name": "cl1", "pod_cidrs": ["nope"],'
        ' "first_seen": "2026-11-25T12:00:00+00:00", "last_seen": "2026-11-25T12:00:00+00:00"}]}',
        '{"schema_version": 1, "clusters": [{"name": "cl1", "pod_cidrs": [],'
        ' "first_seen": "2026-11-25T12:00:00", "last_seen": "2026-11-25T12:00:00"}]}',
        '["not", "a", "record"]',
    ],
    ids=["bad-cidr", "naive-time", "not-a-record"],
)
def test_malformed_records_are_corrupt(tmp_path: Path, text: str) -> None:
    path = tmp_path / "clusters.json"
    path.write_text(text)
    memory = ClusterMemory(FileStore(path, clock=lambda: T0))
    assert memory.retired(set(), T0, timedelta(0), MGMT) == []
    memory.update([CL2], T0, MGMT)
    assert (tmp_path / "clusters.json.corrupt-20261125T120000Z").read_text() == text


def test_not_utf8_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "clusters.json"
    path.write_bytes(b"\xff\xfe garbage")
    memory = ClusterMemory(FileStore(path, clock=lambda: T0))
    assert memory.update([CL2], T0, MGMT)
    assert (tmp_path / "clusters.json.corrupt-20261125T120000Z").read_bytes() == b"\xff\xfe garbage"


def test_a_newer_schema_is_neither_trusted_nor_overwritten(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    path = tmp_path / "clusters.json"
    text = '{"schema_version": 2, "clusters": []}'
    path.write_text(text)
    memory = ClusterMemory(FileStore(path))
    assert memory.retired(set(), T0, HOUR, MGMT) == []
    assert memory.update([CL2], T0, MGMT) is False
    assert path.read_text() == text
    assert "memory.write_failed" in events(logs)


def test_unreadable_path_is_unavailable_not_an_exception(
    tmp_path: Path, logs: list[dict[str, Any]]
) -> None:
    path = tmp_path / "clusters.json"
    path.mkdir()  # reading a directory fails even as root
    memory = ClusterMemory(FileStore(path))
    assert memory.retired(set(), T0, HOUR, MGMT) == []
    assert memory.update([CL2], T0, MGMT) is False
    assert {"memory.unreadable", "memory.write_failed"} <= set(events(logs))


# --------------------------------------------------------------------------- ConfigMap store

CM_PATH = "/api/v1/namespaces/nsx-route-gc/configmaps"


@dataclass
class FakeConfigMaps:
    """One namespace's ConfigMaps, with resourceVersion preconditions like the API server."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    version: int = 100
    requests: list[tuple[str, str]] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    before_write: Callable[[], None] | None = None
    fail_get: int | None = None

    def put_object(self, name: str, data: dict[str, str]) -> None:
        self.version += 1
        meta = {"name": name, "namespace": "nsx-route-gc", "resourceVersion": str(self.version)}
        self.objects[name] = {
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": meta,
            "data": data,
        }

    def handle(self, request: Request) -> Response:
        self.requests.append((request.method, request.path))
        name = request.path.removeprefix(CM_PATH).strip("/")
        if request.method == "GET":
            if self.fail_get:
                return kube_status(self.fail_get, "Forbidden", 'configmaps "x" is forbidden')
            if name not in self.objects:
                return kube_status(404, "NotFound", f'configmaps "{name}" not found')
            return kube_json(200, self.objects[name])
        body = json.loads(request.get_data())
        self.bodies.append(body)
        if self.before_write is not None:
            hook, self.before_write = self.before_write, None
            hook()  # another writer gets in between our GET and our write
        name = name or body["metadata"]["name"]
        if request.method == "POST":
            if name in self.objects:
                return kube_status(409, "AlreadyExists", f'configmaps "{name}" already exists')
            self.put_object(name, body.get("data") or {})
            return kube_json(201, self.objects[name])
        current = self.objects[name]["metadata"]["resourceVersion"]
        if body["metadata"].get("resourceVersion") != current:
            return kube_status(409, "Conflict", "the object has been modified")
        self.put_object(name, body.get("data") or {})
        return kube_json(200, self.objects[name])


@pytest.fixture
def configmaps(httpserver: HTTPServer) -> FakeConfigMaps:
    fake = FakeConfigMaps()
    httpserver.expect_request(re.compile(f"^{CM_PATH}(/.*)?$")).respond_with_handler(fake.handle)
    return fake


@pytest.fixture
def cm_memory(httpserver: HTTPServer) -> ClusterMemory:
    cfg = k8s.Configuration(host=httpserver.url_for("/").rstrip("/"))
    store = ConfigMapStore(k8s.ApiClient(cfg), "nsx-route-gc", "state", clock=lambda: T0)
    return ClusterMemory(store)


def stored(fake: FakeConfigMaps) -> list[str]:
    text = fake.objects["state"]["data"][CONFIGMAP_KEY]
    return sorted(e.name for e in parse_record(text).entries.values())


def test_configmap_is_created_then_updated_with_its_resource_version(
    configmaps: FakeConfigMaps, cm_memory: ClusterMemory
) -> None:
    assert cm_memory.update([CL1], T0, MGMT)
    assert configmaps.requests[-1] == ("POST", CM_PATH)
    assert configmaps.bodies[-1]["metadata"]["labels"]["app.kubernetes.io/name"] == "nsx-route-gc"

    assert cm_memory.update([CL1, CL2], T0 + HOUR, MGMT)
    assert configmaps.requests[-1] == ("PUT", f"{CM_PATH}/state")
    assert configmaps.bodies[-1]["metadata"]["resourceVersion"] == "101"
    assert stored(configmaps) == ["cl1", "cl2"]
    assert cm_memory.description == "configmap nsx-route-gc/state"


def test_configmap_conflict_rereads_and_merges_another_writers_entry(
    configmaps: FakeConfigMaps, cm_memory: ClusterMemory, logs: list[dict[str, Any]]
) -> None:
    cm_memory.update([CL1], T0, MGMT)
    other = Scope(management="https://other-mgmt:6443")

    def another_writer() -> None:
        text = configmaps.objects["state"]["data"][CONFIGMAP_KEY]
        record = parse_record(text)
        observe(record, [Sighting("far", "default", ("10.9.0.0/16",))], T0, other)
        configmaps.put_object("state", {CONFIGMAP_KEY: dump_record(record)})

    configmaps.before_write = another_writer
    assert cm_memory.update([CL1, CL2], T0 + HOUR, MGMT)
    assert [m for m, _ in configmaps.requests].count("PUT") == 2  # the first one conflicted
    assert stored(configmaps) == ["cl1", "cl2", "far"]
    assert "memory.conflict" in events(logs)


def test_configmap_create_conflict_rereads_and_updates(
    configmaps: FakeConfigMaps, cm_memory: ClusterMemory
) -> None:
    def created_meanwhile() -> None:
        record = Record()
        observe(record, [CL1], T0, MGMT)
        configmaps.put_object("state", {CONFIGMAP_KEY: dump_record(record), "other": "kept"})

    configmaps.before_write = created_meanwhile
    assert cm_memory.update([CL2], T0, MGMT)
    assert [m for m, _ in configmaps.requests] == ["GET", "POST", "GET", "PUT"]
    assert stored(configmaps) == ["cl1", "cl2"]
    assert configmaps.objects["state"]["data"]["other"] == "kept"


def test_configmap_forbidden_means_nothing_known_and_nothing_written(
    configmaps: FakeConfigMaps, cm_memory: ClusterMemory, logs: list[dict[str, Any]]
) -> None:
    configmaps.fail_get = 403
    assert cm_memory.retired(set(), T0, HOUR, MGMT) == []
    assert cm_memory.update([CL1], T0, MGMT) is False
    assert {m for m, _ in configmaps.requests} == {"GET"}
    (unreadable,) = [e for e in logs if e["event"] == "memory.unreadable"]
    assert "403 Forbidden" in unreadable["error"]
    assert 'configmaps "x" is forbidden' in unreadable["error"]


def test_configmap_corrupt_record_is_kept_under_another_key(
    configmaps: FakeConfigMaps, cm_memory: ClusterMemory
) -> None:
    configmaps.put_object("state", {CONFIGMAP_KEY: "{oops"})
    assert cm_memory.retired(set(), T0, timedelta(0), MGMT) == []
    assert cm_memory.update([CL2], T0, MGMT)
    data = configmaps.objects["state"]["data"]
    assert data[f"{CONFIGMAP_KEY}.corrupt-20261125T120000Z"] == "{oops"
    assert stored(configmaps) == ["cl2"]


def test_configmap_retirement_round_trip(
    configmaps: FakeConfigMaps, cm_memory: ClusterMemory
) -> None:
    cm_memory.update([CL1, CL2], T0, MGMT)
    cm_memory.update([CL2], T0 + HOUR, MGMT)
    cm_memory.update([CL2], T0 + 2 * HOUR, MGMT)
    (retired,) = cm_memory.retired({"cl2"}, T0 + 2 * HOUR, HOUR, MGMT)
    assert retired.name == "cl1"
    assert retired.evidence is not None
    assert retired.evidence.endswith("remembered by configmap nsx-route-gc/state")


# --------------------------------------------------------------------------- CCM settings

CCM = CcmSettings("/infra/tier-1s/tanzu-cl1", "nsx.example.com", "configmap x (ini)")


def test_the_ccm_settings_are_remembered_and_a_retired_cluster_keeps_its_router(
    file_memory: ClusterMemory,
) -> None:
    assert file_memory.update([replace(CL1, ccm=CCM), CL2], T0, MGMT)
    # A run that could not read cl1's settings (unreachable) does not forget them.
    assert file_memory.update([CL1, CL2], T0 + HOUR, MGMT)
    assert file_memory.update([CL2], T0 + 2 * HOUR, MGMT)
    [retired] = file_memory.retired({"cl2"}, T0 + 4 * HOUR, HOUR, MGMT)
    assert retired.name == "cl1"
    assert retired.ccm is not None
    assert retired.ccm.router == "/infra/tier-1s/tanzu-cl1"
    assert retired.ccm.nsx_host == "nsx.example.com"
    assert retired.ccm.source == f"configmap x (ini), remembered by {file_memory.description}"


def test_newer_settings_replace_older_ones() -> None:
    record = Record()
    observe(record, [replace(CL1, ccm=CCM)], T0, MGMT)
    moved = replace(CCM, router_path="/infra/tier-1s/tanzu-cl5")
    observe(record, [replace(CL1, ccm=moved)], T0 + HOUR, MGMT)
    [entry] = record.entries.values()
    assert entry.ccm == moved
    assert parse_record(dump_record(record)).entries == record.entries


def test_a_record_written_before_ccm_settings_loads() -> None:
    old = {
        "schema_version": 1,
        "clusters": [
            {
                "name": "cl1",
                "namespace": "default",
                "management": "https://mgmt:6443",
                "pod_cidrs": ["172.16.136.0/21"],
                "first_seen": T0.isoformat(),
                "last_seen": T0.isoformat(),
                "missing_since": None,
            }
        ],
    }
    [entry] = parse_record(json.dumps(old)).entries.values()
    assert entry.ccm is None
    assert entry.name == "cl1"


@pytest.mark.parametrize(
    "ccm", [[], {"router_path": 5}, {"nsx_host": "x" * 2000}, "/infra/tier-1s/t1"]
)
def test_damaged_ccm_settings_make_the_record_suspect(ccm: object) -> None:
    record = Record()
    observe(record, [CL1], T0, MGMT)
    doc = json.loads(dump_record(record))
    doc["clusters"][0]["ccm"] = ccm
    with pytest.raises(CorruptRecordError):
        parse_record(json.dumps(doc))
