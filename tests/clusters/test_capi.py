"""Cluster API discovery with the real kubernetes client against a local API server.

One pytest-httpserver plays the management cluster under ``/mgmt`` (ClusterList pages,
``<name>-kubeconfig`` Secrets, Status errors) and every workload cluster under ``/wl/<name>``
(NodeList), in the Kubernetes wire format. Kubeconfigs carry bearer tokens.
"""

from __future__ import annotations

import base64
import re
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from factories import ccm_route, kube_json, kube_status
from nsx_route_gc.clusters.capi import ClusterApiDiscovery, build_discovery
from nsx_route_gc.clusters.inventory import Inventory
from nsx_route_gc.clusters.memory import ClusterMemory
from nsx_route_gc.clusters.memory_store import ConfigMapStore, FileStore
from nsx_route_gc.config import ClusterApiConfig, Config, NsxSettings, StateConfig, load_config
from nsx_route_gc.judge import judge
from nsx_route_gc.models import (
    Action,
    ClusterInventory,
    ClusterStatus,
    Policy,
    RouterListing,
    Verdict,
)
from nsx_route_gc.nsx.client import NsxClient
from nsx_route_gc.runs.scan import Scanner
from nsx_route_gc.simulator import Simulator, load_scenario

CANARY = "canary-Wl-T0ken-xyz"
MGMT_TOKEN = "mgmt-T0ken-abc"
CLUSTERS = "/mgmt/apis/cluster.x-k8s.io/v1beta1"
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture(autouse=True)
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with structlog.testing.capture_logs() as captured:
        yield captured


def kubeconfig(server: str, token: str, name: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": server}}],
            "users": [{"name": f"{name}-admin", "user": {"token": token}}],
            "contexts": [
                {
                    "name": f"{name}-admin@{name}",
                    "context": {"cluster": name, "user": f"{name}-admin"},
                }
            ],
            "current-context": f"{name}-admin@{name}",
        }
    )


def node(name: str, uid: str, cidr: str, ip: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": uid, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
    }


@dataclass
class FakeApi:
    """The management cluster and its workload clusters, stateful, on one local server."""

    base: str
    clusters: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    nodes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    fail_list: int | None = None
    expire_continue: int = 0  # the next N continue tokens answer 410 Gone
    requests: list[str] = field(default_factory=list)

    def add(
        self,
        name: str,
        cidr: str,
        *,
        namespace: str = "default",
        deleting: bool = False,
        secret: bool = True,
        phase: str = "Provisioned",
        nodes: int = 2,
    ) -> None:
        meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-{name}"}
        if deleting:
            meta["deletionTimestamp"] = "2026-11-25T11:00:00Z"
        self.clusters[(namespace, name)] = {
            "apiVersion": "cluster.x-k8s.io/v1beta1",
            "kind": "Cluster",
            "metadata": meta,
            "spec": {"clusterNetwork": {"pods": {"cidrBlocks": [cidr]}}},
            "status": {"phase": "Deleting" if deleting else phase},
        }
        if secret:
            text = kubeconfig(f"{self.base}/wl/{name}", CANARY, name)
            self.set_secret(namespace, name, base64.b64encode(text.encode()).decode())
        net = cidr.split(".")
        self.nodes[name] = [
            node(
                f"{name}-md-{i}",
                f"{abs(hash(name)) % 10**8:08d}-0000-4000-8000-{i:012d}",
                f"{net[0]}.{net[1]}.{int(net[2]) + i}.0/24",
                f"10.0.{int(net[2]) % 250}.{10 + i}",
            )
            for i in range(nodes)
        ]

    def set_secret(self, namespace: str, name: str, value: str) -> None:
        self.secrets[(namespace, f"{name}-kubeconfig")] = {
            "kind": "Secret",
            "apiVersion": "v1",
            "metadata": {"name": f"{name}-kubeconfig", "namespace": namespace},
            "type": "cluster.x-k8s.io/secret",
            "data": {"value": value},
        }

    def handle(self, request: Request) -> Response:
        path = request.path
        self.requests.append(request.full_path.rstrip("?"))
        if path.startswith("/wl/"):
            name = path.split("/")[2]
            if request.headers.get("Authorization") != f"Bearer {CANARY}":
                return kube_status(401, "Unauthorized", "Unauthorized")
            items = self.nodes.get(name, [])
            return kube_json(
                200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": items}
            )
        if request.headers.get("Authorization") != f"Bearer {MGMT_TOKEN}":
            return kube_status(401, "Unauthorized", "Unauthorized")
        if match := re.fullmatch(r"/mgmt/api/v1/namespaces/([^/]+)/secrets/([^/]+)", path):
            secret = self.secrets.get((match[1], match[2]))
            if secret is None:
                return kube_status(404, "NotFound", f'secrets "{match[2]}" not found')
            return kube_json(200, secret)
        if match := re.fullmatch(rf"{CLUSTERS}(?:/namespaces/([^/]+))?/clusters", path):
            if self.fail_list:
                message = 'clusters.cluster.x-k8s.io is forbidden: User "system:serviceaccount:x"'
                return kube_status(self.fail_list, "Forbidden", message)
            if request.args.get("continue") and self.expire_continue:
                self.expire_continue -= 1
                return kube_status(410, "Expired", "The provided continue parameter is too old")
            return kube_json(200, self._page(match[1], request.args))
        return kube_status(404, "NotFound", "the server could not find the requested resource")

    def _page(self, namespace: str | None, args: Any) -> dict[str, Any]:
        items = [o for (ns, _), o in sorted(self.clusters.items()) if namespace in (None, ns)]
        start = int(base64.b64decode(args["continue"])) if args.get("continue") else 0
        limit = int(args.get("limit") or len(items) or 1)
        meta: dict[str, Any] = {"resourceVersion": "4711"}
        if start + limit < len(items):
            meta["continue"] = base64.b64encode(str(start + limit).encode()).decode()
        return {
            "apiVersion": "cluster.x-k8s.io/v1beta1",
            "kind": "ClusterList",
            "metadata": meta,
            "items": items[start : start + limit],
        }


@pytest.fixture
def api(httpserver: HTTPServer) -> FakeApi:
    fake = FakeApi(base=httpserver.url_for("/").rstrip("/"))
    httpserver.expect_request(re.compile("^/(mgmt|wl)/.*")).respond_with_handler(fake.handle)
    return fake


@pytest.fixture
def mgmt_config(api: FakeApi, tmp_path: Path) -> ClusterApiConfig:
    path = tmp_path / "mgmt.yaml"
    path.write_text(kubeconfig(f"{api.base}/mgmt", MGMT_TOKEN, "mgmt"))
    return ClusterApiConfig(kubeconfig=path, allow_http=True)


def discovery(
    config: ClusterApiConfig, memory: ClusterMemory | None = None, **kwargs: Any
) -> ClusterApiDiscovery:
    return ClusterApiDiscovery(
        config, memory, Policy(), inventory=Inventory(max_workers=2), max_workers=2, **kwargs
    )


def by_name(found: list[ClusterInventory]) -> dict[str, ClusterInventory]:
    return {c.name: c for c in found}


# --------------------------------------------------------------------------- discovery


def test_discovers_every_cluster_through_pages_and_inventories_it(
    api: FakeApi, mgmt_config: ClusterApiConfig
) -> None:
    api.add("cl2", "172.16.144.0/21")
    api.add("wl2", "172.16.184.0/21", namespace="tkg-prod", nodes=3)
    found = by_name(discovery(mgmt_config, page_size=1).discover([]))

    assert set(found) == {"cl2", "wl2"}
    cl2 = found["cl2"]
    assert cl2.status is ClusterStatus.OK
    assert cl2.source == "cluster-api"
    assert cl2.pod_cidrs == ("172.16.144.0/21",)
    assert [n.name for n in cl2.nodes] == ["cl2-md-0", "cl2-md-1"]
    assert cl2.evidence == "Cluster API default/cl2"
    assert len(found["wl2"].nodes) == 3
    lists = [r for r in api.requests if "/clusters" in r]
    assert lists[0] == f"{CLUSTERS}/clusters?limit=1"
    assert "continue=" in lists[1]


def test_an_expired_continue_token_restarts_the_list(
    api: FakeApi, mgmt_config: ClusterApiConfig, logs: list[dict[str, Any]]
) -> None:
    for i in range(3):
        api.add(f"c{i}", f"10.{i}.0.0/16", nodes=1)
    api.expire_continue = 1
    found = discovery(mgmt_config, page_size=2).discover([])
    assert sorted(c.name for c in found) == ["c0", "c1", "c2"]
    assert [r.split("?")[1] for r in api.requests if "/clusters" in r][:3] == [
        "limit=2",
        "continue=Mg%3D%3D&limit=2",  # the token, base64 of the next index, URL-encoded
        "limit=2",
    ]
    assert "capi.list_restarted" in [e["event"] for e in logs]


def test_kubeconfigs_from_secrets_do_not_outlive_discovery(
    api: FakeApi, mgmt_config: ClusterApiConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    api.add("cl2", "172.16.144.0/21")
    (cl2,) = discovery(mgmt_config).discover([])
    assert cl2.status is ClusterStatus.OK
    leftovers = [p for p in scratch.rglob("*") if p.is_file() and CANARY in p.read_text()]
    assert leftovers == []


def test_a_deleting_cluster_is_deleting_with_its_nodes_or_without(
    api: FakeApi, mgmt_config: ClusterApiConfig
) -> None:
    api.add("cl3", "172.16.152.0/21", deleting=True)
    api.add("cl4", "172.16.160.0/21", deleting=True, secret=False)
    found = by_name(discovery(mgmt_config).discover([]))

    assert found["cl3"].status is ClusterStatus.DELETING
    assert len(found["cl3"].nodes) == 2
    assert (
        found["cl3"].evidence == "Cluster API default/cl3, deletionTimestamp 2026-11-25T11:00:00Z"
    )
    # Its kubeconfig is already gone: still deleting (routes unverified), not a failed run.
    assert found["cl4"].status is ClusterStatus.DELETING
    assert found["cl4"].nodes == ()
    assert found["cl4"].error is not None


def test_a_missing_secret_fails_only_that_cluster(
    api: FakeApi, mgmt_config: ClusterApiConfig
) -> None:
    api.add("cl2", "172.16.144.0/21")
    api.add("new", "172.16.200.0/21", secret=False, phase="Provisioning")
    found = by_name(discovery(mgmt_config).discover([]))

    assert found["cl2"].status is ClusterStatus.OK
    assert found["new"].status is ClusterStatus.FAILED
    assert (
        found["new"].error == "secret default/new-kubeconfig not found (cluster phase Provisioning)"
    )
    assert found["new"].pod_cidrs == ("172.16.200.0/21",)  # its routes stay unverified


def test_workload_failures_name_the_secret_and_never_a_credential(
    api: FakeApi, mgmt_config: ClusterApiConfig
) -> None:
    api.add("denied", "172.16.144.0/21")
    text = kubeconfig(f"{api.base}/wl/denied", "wrong-" + CANARY, "denied")
    api.set_secret("default", "denied", base64.b64encode(text.encode()).decode())
    api.add("broken", "172.16.152.0/21")
    broken = yaml.safe_dump({"users": [{"name": "u", "user": {"token": CANARY}}]})
    api.set_secret("default", "broken", base64.b64encode(broken.encode()).decode())
    api.add("garbled", "172.16.160.0/21")
    api.set_secret("default", "garbled", "not base64 " + CANARY)

    found = by_name(discovery(mgmt_config).discover([]))

    for name in ("denied", "broken", "garbled"):
        assert found[name].status is ClusterStatus.FAILED, name
        assert found[name].error is not None
        assert CANARY not in found[name].error
        assert "\n" not in found[name].error
    assert found["denied"].error.startswith("401 Unauthorized listing nodes on ")
    assert found["broken"].error.startswith("secret default/broken-kubeconfig: ")
    assert "kubeconfig" in found["garbled"].error
    assert "not a base64-encoded kubeconfig" in found["garbled"].error


def test_configured_clusters_win_and_their_secrets_are_not_read(
    api: FakeApi, mgmt_config: ClusterApiConfig
) -> None:
    api.add("cl2", "172.16.144.0/21")
    api.add("wl1", "172.16.176.0/21")
    configured = [ClusterInventory("cl2", "config", ClusterStatus.OK)]
    found = discovery(mgmt_config).discover(configured)

    assert [c.name for c in found] == ["wl1"]
    assert not any("cl2-kubeconfig" in r for r in api.requests)


def test_configured_namespaces_are_listed_one_by_one(
    api: FakeApi, mgmt_config: ClusterApiConfig
) -> None:
    api.add("cl2", "172.16.144.0/21")
    api.add("wl2", "172.16.184.0/21", namespace="tkg-prod")
    config = ClusterApiConfig(
        kubeconfig=mgmt_config.kubeconfig, namespaces=("tkg-prod",), allow_http=True
    )
    found = discovery(config).discover([])

    assert [c.name for c in found] == ["wl2"]
    assert f"{CLUSTERS}/namespaces/tkg-prod/clusters?limit=500" in api.requests


def test_same_name_in_two_namespaces_is_qualified(
    api: FakeApi, mgmt_config: ClusterApiConfig
) -> None:
    api.add("app", "172.16.144.0/21", namespace="team-a")
    api.add("app", "172.16.152.0/21", namespace="team-b")
    found = by_name(discovery(mgmt_config).discover([]))
    assert set(found) == {"team-a/app", "team-b/app"}


# --------------------------------------------------------------------------- failures, memory


def test_a_failed_cluster_list_is_one_failed_marker_and_retires_nobody(
    api: FakeApi, mgmt_config: ClusterApiConfig, tmp_path: Path
) -> None:
    api.add("cl1", "172.16.136.0/21")
    api.add("mgmt", "100.96.0.0/11", namespace="tkg-system")
    state = tmp_path / "clusters.json"
    clock = [T0]
    memory = ClusterMemory(FileStore(state))
    capi = discovery(mgmt_config, memory, clock=lambda: clock[0])
    capi.discover([])
    del api.clusters[("default", "cl1")]
    clock[0] = T0 + 2 * HOUR
    capi.discover([])  # cl1 noticed missing
    before = state.read_text()

    api.fail_list = 403
    clock[0] = T0 + 10 * HOUR
    (marker,) = capi.discover([])

    assert marker.name == f"cluster-api:{mgmt_config.kubeconfig}"
    assert marker.status is ClusterStatus.FAILED
    assert marker.error is not None
    assert marker.error.startswith(
        "Cluster API discovery failed: 403 Forbidden listing clusters.cluster.x-k8s.io "
        "in all namespaces on "
    )
    assert state.read_text() == before  # absence from a failed list proves nothing
    # And with the list back, cl1 is retired: the memory was kept, not lost.
    api.fail_list = None
    statuses = {c.name: c.status for c in capi.discover([])}
    assert statuses == {"mgmt": ClusterStatus.OK, "cl1": ClusterStatus.RETIRED}


def test_an_unreachable_management_cluster_is_a_failed_marker(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = tmp_path / "mgmt.yaml"
    path.write_text(kubeconfig(f"http://127.0.0.1:{port}", MGMT_TOKEN, "mgmt"))
    config = ClusterApiConfig(kubeconfig=path, context="mgmt-admin@mgmt", allow_http=True)
    (marker,) = discovery(config).discover([])
    assert marker.name == "cluster-api:mgmt-admin@mgmt"
    assert marker.status is ClusterStatus.FAILED
    assert "cannot reach the server" in (marker.error or "")


def test_a_bad_management_kubeconfig_is_a_failed_marker(tmp_path: Path) -> None:
    (marker,) = discovery(ClusterApiConfig(kubeconfig=tmp_path / "nope.yaml")).discover([])
    assert marker.status is ClusterStatus.FAILED
    assert "file not found" in (marker.error or "")


def test_a_deleted_cluster_is_retired_after_gone_after_and_its_routes_are_orphaned(
    api: FakeApi, mgmt_config: ClusterApiConfig, tmp_path: Path
) -> None:
    api.add("cl1", "172.16.136.0/21")
    api.add("cl2", "172.16.144.0/21")
    clock = [T0]
    memory = ClusterMemory(FileStore(tmp_path / "clusters.json"))
    capi = discovery(mgmt_config, memory, clock=lambda: clock[0])
    assert {c.status for c in capi.discover([])} == {ClusterStatus.OK}

    api.clusters.pop(("default", "cl1"))
    clock[0] = T0 + HOUR
    assert sorted(c.name for c in capi.discover([])) == ["cl2"]  # noticed, not yet retired
    clock[0] = T0 + 2 * HOUR
    found = by_name(capi.discover([]))

    assert found["cl1"].status is ClusterStatus.RETIRED
    assert found["cl1"].source == "memory"
    route = ccm_route("5c2a4b38-2f56-4a8e-9c0b-6a1d2e3f4a5b", "172.16.137.0/24", "10.0.9.9")
    plan = judge(
        [RouterListing(route.router_path, (route,))], list(found.values()), Policy(), clock[0]
    )
    (verdict,) = plan.verdicts
    assert verdict.verdict is Verdict.ORPHANED
    assert verdict.reason is not None
    assert verdict.reason.startswith("cluster-gone: cluster cl1 is retired (not in the management")


# --------------------------------------------------------------------------- build_discovery


def config_with(tmp_path: Path, capi: ClusterApiConfig | None, state: StateConfig) -> Config:
    return Config(
        nsx=NsxSettings(base_url="https://nsx.example.com"), cluster_api=capi, state=state
    )


def test_build_discovery_without_cluster_api_is_none(tmp_path: Path) -> None:
    assert build_discovery(config_with(tmp_path, None, StateConfig(file=tmp_path / "s"))) is None


@pytest.mark.parametrize(
    ("state", "store"),
    [
        (StateConfig(configmap="nsx-route-gc/state", file=Path("/x")), ConfigMapStore),
        (StateConfig(file=Path("/x/clusters.json")), FileStore),
        (StateConfig(), None),
    ],
    ids=["configmap", "file", "none"],
)
def test_build_discovery_picks_the_memory_store(
    tmp_path: Path, state: StateConfig, store: type | None
) -> None:
    made: list[ClusterApiConfig] = []

    def factory(config: ClusterApiConfig) -> Any:
        made.append(config)
        raise AssertionError("no client is made while building")

    capi = ClusterApiConfig(kubeconfig=None)
    built = build_discovery(config_with(tmp_path, capi, state), client_factory=factory)
    assert isinstance(built, ClusterApiDiscovery)
    if store is None:
        assert built.memory is None
    else:
        assert built.memory is not None
        assert isinstance(built.memory.store, store)
    assert made == []


# --------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("store", ["file", "configmap"])
def test_end_to_end_on_the_simulated_management_cluster(tmp_path: Path, store: str) -> None:
    clock = [T0]
    with Simulator(load_scenario("management")) as sim:
        config = load_config(sim.write_config(tmp_path), {}).config
        if store == "configmap":
            config = replace(config, state=StateConfig(configmap="nsx-route-gc/state"))
        found = build_discovery(config, clock=lambda: clock[0])
        assert found is not None

        def scan() -> dict[str, list[str]]:
            with NsxClient(config.nsx) as nsx:
                result = Scanner(config, nsx, Inventory(), discovery=found).scan()
            verdicts: dict[str, list[str]] = {}
            for v in result.plan.verdicts:
                verdicts.setdefault(v.verdict.value, []).append(v.reason or "")
            statuses = {c.name: c.status.value for c in result.plan.clusters}
            ccm = {
                c.name: f"{c.ccm.router} from {c.ccm.source}" if c.ccm else "unknown"
                for c in result.plan.clusters
            }
            return {
                "clusters": [f"{n}={s}" for n, s in sorted(statuses.items())],
                "ccm": [f"{n}: {s}" for n, s in sorted(ccm.items())],
                **verdicts,
            }

        first = scan()
        assert first["clusters"] == ["wl1=ok", "wl2=ok"]
        # wl2's ConfigMap is forbidden: its VSphereCPIConfig on the management cluster says.
        assert first["ccm"] == [
            "wl1: /infra/tier-1s/tanzu-cl1 from configmap kube-system/vsphere-cloud-config (ini)",
            "wl2: /infra/tier-1s/tanzu-cl1 from VSphereCPIConfig tkg-prod/wl2",
        ]
        assert len(first["live"]) == 4
        assert [r.split(":")[0] for r in first["orphaned"]] == ["node-gone"]

        sim.delete_workload_cluster("wl1")
        clock[0] = T0 + HOUR
        second = scan()  # wl1 is noticed missing: its routes are nobody's yet
        assert second["clusters"] == ["wl2=ok"]
        assert len(second["unattributed"]) == 2

        clock[0] = T0 + 2 * HOUR  # policy.cluster_gone_after is 1h
        third = scan()
        assert third["clusters"] == ["wl1=retired", "wl2=ok"]
        # The deleted cluster's router is remembered.
        assert third["ccm"][0] == (
            "wl1: /infra/tier-1s/tanzu-cl1 from configmap kube-system/vsphere-cloud-config (ini), "
            f"remembered by {found.memory.description}"  # type: ignore[attr-defined]  # ClusterApiDiscovery
        )
        gone = [r for r in third["orphaned"] if r.startswith("cluster-gone")]
        assert len(gone) == 2
        assert "remembered by" in gone[0]
        if store == "configmap":
            assert ("nsx-route-gc", "state") in sim.kube["mgmt"].configmaps


# --------------------------------------------------------------------------- issue 13


def test_zero_discovered_clusters_is_no_evidence(
    api: FakeApi, mgmt_config: ClusterApiConfig, tmp_path: Path
) -> None:
    # A namespace typo finds nothing: with unattributed: delete, that must not make every
    # live route of a healthy cluster "no-owner", nor retire the remembered clusters.
    api.add("cl2", "172.16.144.0/21", namespace="tkg-prod")
    state = tmp_path / "clusters.json"
    clock = [T0]
    typo = replace(mgmt_config, namespaces=("tkg-prdo",))
    capi = discovery(typo, ClusterMemory(FileStore(state)), clock=lambda: clock[0])
    (marker,) = capi.discover([])
    assert marker.status is ClusterStatus.FAILED
    assert marker.error is not None
    assert "no Cluster found" in marker.error
    assert "tkg-prdo" in marker.error
    assert not state.exists() or "cl2" not in state.read_text()
    route = ccm_route("5c2a4b38-2f56-4a8e-9c0b-6a1d2e3f4a5b", "172.16.144.0/24", "10.0.9.9")
    plan = judge(
        [RouterListing(route.router_path, (route,))],
        [marker],
        Policy(unattributed="delete"),
        clock[0],
    )
    (verdict,) = plan.verdicts
    assert verdict.verdict is not Verdict.ORPHANED
    assert verdict.action is not Action.DELETE


def test_an_exec_kubeconfig_in_a_secret_fails_that_cluster_and_never_runs(
    api: FakeApi, mgmt_config: ClusterApiConfig, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    api.add("cl2", "172.16.144.0/21")
    api.add("evil", "172.16.184.0/21")
    doc = yaml.safe_load(kubeconfig(f"{api.base}/wl/evil", CANARY, "evil"))
    doc["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "/bin/sh",
            "args": ["-c", f"touch {marker}; echo '{{}}'"],
        }
    }
    api.set_secret("default", "evil", base64.b64encode(yaml.safe_dump(doc).encode()).decode())
    found = by_name(discovery(mgmt_config).discover([]))
    assert found["cl2"].status is ClusterStatus.OK
    assert found["evil"].status is ClusterStatus.FAILED
    assert found["evil"].error is not None
    assert "secret default/evil-kubeconfig: user field 'exec' refused" in found["evil"].error
    assert not marker.exists()


def test_an_http_server_in_a_secret_is_refused_unless_allowed(
    api: FakeApi, mgmt_config: ClusterApiConfig
) -> None:
    api.add("cl2", "172.16.144.0/21")
    refused = by_name(discovery(replace(mgmt_config, allow_http=False)).discover([]))
    assert refused["cl2"].status is ClusterStatus.FAILED
    assert refused["cl2"].error is not None
    assert "is not https" in refused["cl2"].error
