"""The simulated Kubernetes API servers, driven with the real `kubernetes` client."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from nsx_route_gc.simulator import SimNode, Simulator, load_scenario


@pytest.fixture
def seed() -> Iterator[Simulator]:
    with Simulator(load_scenario("seed")) as sim:
        yield sim


@pytest.fixture
def mgmt() -> Iterator[Simulator]:
    with Simulator(load_scenario("management")) as sim:
        yield sim


def _api(sim: Simulator, cluster: str, tmp_path: Path) -> Any:
    path = tmp_path / f"{cluster}.yaml"
    path.write_text(sim.kubeconfig(cluster, ca_file=sim.ca_pem_path))
    return config.new_client_from_config(config_file=str(path), persist_config=False)


def _status(exc: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.value.body)
    assert body["kind"] == "Status"
    assert body["status"] == "Failure"
    assert body["code"] == exc.value.status
    return body


def test_nodes_list_in_chunks_with_continue(seed: Simulator, tmp_path: Path) -> None:
    core = client.CoreV1Api(_api(seed, "cl2", tmp_path))
    first = core.list_node(limit=2)
    assert len(first.items) == 2
    assert first.metadata._continue
    assert first.metadata.remaining_item_count == 1
    rest = core.list_node(limit=2, _continue=first.metadata._continue)
    assert not rest.metadata._continue
    nodes = first.items + rest.items
    assert [n.spec.pod_cidr for n in nodes] == [
        "172.16.144.0/24",
        "172.16.145.0/24",
        "172.16.146.0/24",
    ]
    node = nodes[0]
    assert node.metadata.uid
    assert node.metadata.resource_version
    assert node.metadata.creation_timestamp is not None
    assert node.spec.pod_cidrs == ["172.16.144.0/24"]
    types = {a.type: a.address for a in node.status.addresses}
    assert types == {
        "Hostname": node.metadata.name,
        "InternalIP": "172.16.128.71",
        "ExternalIP": "172.16.128.71",
    }
    assert client.VersionApi(core.api_client).get_code().git_version.startswith("v1.")
    assert seed.kube["cl2"].counters["list_nodes"] == 2


def test_expired_continue_token_is_410_gone(seed: Simulator, tmp_path: Path) -> None:
    core = client.CoreV1Api(_api(seed, "cl2", tmp_path))
    token = core.list_node(limit=1).metadata._continue
    seed.kube["cl2"].expire_continue = 1
    with pytest.raises(ApiException) as exc:
        core.list_node(limit=1, _continue=token)
    assert exc.value.status == 410
    assert _status(exc)["reason"] == "Expired"
    assert len(core.list_node(limit=1, _continue=token).items) == 1  # only once


def test_requests_without_the_token_are_401(seed: Simulator) -> None:
    answer = requests.get(
        seed.kube_url("cl2") + "/api/v1/nodes", verify=str(seed.ca_pem_path), timeout=10
    )
    assert answer.status_code == 401
    assert answer.json()["reason"] == "Unauthorized"


def test_cluster_knobs_empty_failing_unreachable(seed: Simulator, tmp_path: Path) -> None:
    core = client.CoreV1Api(_api(seed, "cl2", tmp_path))
    state = seed.kube["cl2"]
    state.empty = True
    assert core.list_node().items == []
    state.empty, state.fail_status = False, 403
    with pytest.raises(ApiException) as exc:
        core.list_node()
    assert _status(exc)["reason"] == "Forbidden"
    state.fail_status, state.unreachable = None, True
    headers = {"Authorization": f"Bearer {state.token}"}
    with pytest.raises(requests.ConnectionError):
        requests.get(
            seed.kube_url("cl2") + "/api/v1/nodes",
            headers=headers,
            verify=str(seed.ca_pem_path),
            timeout=10,
        )


def test_nodes_added_and_removed_at_runtime(seed: Simulator, tmp_path: Path) -> None:
    core = client.CoreV1Api(_api(seed, "cl2", tmp_path))
    state = seed.kube["cl2"]
    state.add_node(
        SimNode(
            "cl2-md-0-new",
            "0b4e2c1a-1111-4222-8333-944455556666",
            ("172.16.147.0/24",),
            ("172.16.128.99",),
        )
    )
    assert state.remove_node("cl2-control-plane-7xq2k")
    names = [n.metadata.name for n in core.list_node().items]
    assert "cl2-md-0-new" in names
    assert "cl2-control-plane-7xq2k" not in names


def test_cluster_api_lists_clusters_and_serves_their_kubeconfigs(
    mgmt: Simulator, tmp_path: Path
) -> None:
    api = _api(mgmt, "mgmt", tmp_path)
    custom = client.CustomObjectsApi(api)
    listed = custom.list_cluster_custom_object("cluster.x-k8s.io", "v1beta1", "clusters")
    assert listed["kind"] == "ClusterList"
    by_name = {c["metadata"]["name"]: c for c in listed["items"]}
    assert set(by_name) == {"wl1", "wl2"}
    assert by_name["wl2"]["metadata"]["namespace"] == "tkg-prod"
    assert by_name["wl1"]["spec"]["clusterNetwork"]["pods"]["cidrBlocks"] == ["172.16.176.0/21"]
    assert "deletionTimestamp" not in by_name["wl1"]["metadata"]
    namespaced = custom.list_namespaced_custom_object(
        "cluster.x-k8s.io", "v1beta1", "tkg-prod", "clusters"
    )
    assert [c["metadata"]["name"] for c in namespaced["items"]] == ["wl2"]

    secret = client.CoreV1Api(api).read_namespaced_secret("wl2-kubeconfig", "tkg-prod")
    kubeconfig = yaml.safe_load(base64.b64decode(secret.data["value"]))
    workload = config.new_client_from_config_dict(kubeconfig, persist_config=False)
    names = [n.metadata.name for n in client.CoreV1Api(workload).list_node().items]
    assert names == ["wl2-control-plane-g7h8i", "wl2-md-0-9f8e7d6c5-j1k2l"]

    mgmt.kube["mgmt"].delete_capi_cluster("wl2", "tkg-prod", finalize=False)
    deleting = custom.list_cluster_custom_object("cluster.x-k8s.io", "v1beta1", "clusters")
    assert any("deletionTimestamp" in c["metadata"] for c in deleting["items"])
    mgmt.kube["mgmt"].delete_capi_cluster("wl2", "tkg-prod")
    gone = custom.list_cluster_custom_object("cluster.x-k8s.io", "v1beta1", "clusters")
    assert [c["metadata"]["name"] for c in gone["items"]] == ["wl1"]
    with pytest.raises(ApiException) as exc:
        client.CoreV1Api(api).read_namespaced_secret("wl2-kubeconfig", "tkg-prod")
    assert _status(exc)["reason"] == "NotFound"


def test_configmaps_create_update_and_conflict(mgmt: Simulator, tmp_path: Path) -> None:
    core = client.CoreV1Api(_api(mgmt, "mgmt", tmp_path))
    ns = "nsx-route-gc"
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("state", ns)
    assert exc.value.status == 404
    assert _status(exc)["reason"] == "NotFound"
    body = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="state"), data={"clusters.json": "{}"}
    )
    created = core.create_namespaced_config_map(ns, body)
    assert created.metadata.resource_version
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map(ns, body)
    assert exc.value.status == 409
    assert _status(exc)["reason"] == "AlreadyExists"

    read = core.read_namespaced_config_map("state", ns)
    read.data = {"clusters.json": '{"wl1": 1}'}
    replaced = core.replace_namespaced_config_map("state", ns, read)
    assert replaced.metadata.resource_version != read.metadata.resource_version
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_config_map("state", ns, read)  # stale resourceVersion
    assert exc.value.status == 409
    assert _status(exc)["reason"] == "Conflict"
    patched = core.patch_namespaced_config_map("state", ns, {"data": {"extra": "1"}})
    assert patched.data == {"clusters.json": '{"wl1": 1}', "extra": "1"}
    assert [c.metadata.name for c in core.list_namespaced_config_map(ns).items] == ["state"]


def test_deleting_a_workload_cluster_takes_its_api_down_too(
    mgmt: Simulator, tmp_path: Path
) -> None:
    custom = client.CustomObjectsApi(_api(mgmt, "mgmt", tmp_path))
    mgmt.delete_workload_cluster("wl1")
    listed = custom.list_cluster_custom_object("cluster.x-k8s.io", "v1beta1", "clusters")
    assert [c["metadata"]["name"] for c in listed["items"]] == ["wl2"]
    assert mgmt.kube["wl1"].unreachable
    assert mgmt.nsx.route_count() == 5  # its routes stay behind


# --------------------------------------------------------------------------- CCM settings


@pytest.fixture
def routing() -> Iterator[Simulator]:
    with Simulator(load_scenario("missing-route")) as sim:
        yield sim


def test_the_ccm_configmap_in_both_forms(routing: Simulator, tmp_path: Path) -> None:
    ini = client.CoreV1Api(_api(routing, "cl2", tmp_path)).read_namespaced_config_map(
        "vsphere-cloud-config", "kube-system"
    )
    assert ini.metadata.namespace == "kube-system"
    text = ini.data["vsphere.conf"]
    assert '[Route]\nrouter-path = "/infra/tier-1s/tanzu-cl1"\n' in text
    assert f'[NSXT]\nhost = "{routing.ccm_nsx_host}"\n' in text
    assert 'secret-name = "cloud-provider-vsphere-nsxt-credentials"' in text
    as_yaml = client.CoreV1Api(_api(routing, "cl5", tmp_path)).read_namespaced_config_map(
        "vsphere-cloud-config", "kube-system"
    )
    doc = yaml.safe_load(as_yaml.data["vsphere.conf"])
    assert doc["route"] == {"routerPath": "/infra/tier-1s/tanzu-cl5"}
    assert doc["nsxt"]["host"] == routing.ccm_nsx_host
    assert doc["nsxt"]["password"] == routing.kube["cl5"].ccm_password


def test_a_forbidden_ccm_configmap_answers_403_like_rbac(
    routing: Simulator, tmp_path: Path
) -> None:
    core = client.CoreV1Api(_api(routing, "cl6", tmp_path))
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_config_map("vsphere-cloud-config", "kube-system")
    assert caught.value.status == 403
    body = _status(caught)
    assert body["reason"] == "Forbidden"
    assert 'cannot get resource "configmaps"' in body["message"]


def test_vspherecpiconfigs_on_the_management_cluster(mgmt: Simulator, tmp_path: Path) -> None:
    custom = client.CustomObjectsApi(_api(mgmt, "mgmt", tmp_path))
    obj = custom.get_namespaced_custom_object(
        "cpi.tanzu.vmware.com", "v1alpha1", "tkg-prod", "vspherecpiconfigs", "wl2"
    )
    assert obj["kind"] == "VSphereCPIConfig"
    nsxt = obj["spec"]["vsphereCPI"]["nsxt"]
    assert nsxt["podRoutingEnabled"] is True
    assert nsxt["route"] == {"routerPath": "/infra/tier-1s/tanzu-cl1"}
    assert nsxt["apiHost"] == mgmt.ccm_nsx_host
    assert nsxt["credentialLocalObjRef"] == {"kind": "Secret", "name": "wl2-nsxt-credential"}
    with pytest.raises(ApiException) as caught:
        custom.get_namespaced_custom_object(
            "cpi.tanzu.vmware.com", "v1alpha1", "default", "vspherecpiconfigs", "nope"
        )
    assert _status(caught)["reason"] == "NotFound"
