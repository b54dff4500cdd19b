"""Each cluster's CCM settings, read through the real kubernetes client: from the simulated
clusters (ConfigMap in both forms, 403, VSphereCPIConfig) and from pytest-httpserver for what
a simulator does not send (oversized and malformed answers)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from kubernetes.client import ApiClient
from pytest_httpserver import HTTPServer

from factories import kube_status
from nsx_route_gc.clusters.capi import _with_cpi
from nsx_route_gc.clusters.ccm import (
    MAX_ANSWER_BYTES,
    CcmReadError,
    read_ccm_configmap,
    read_cpi_config,
)
from nsx_route_gc.clusters.inventory import Inventory
from nsx_route_gc.clusters.kubeconfig import api_client_from_kubeconfig
from nsx_route_gc.config import ClusterConfig
from nsx_route_gc.models import CcmSettings, ClusterInventory, ClusterStatus
from nsx_route_gc.simulator import CapiCluster, SimCcm, Simulator, load_scenario

CONFIGMAP_PATH = "/api/v1/namespaces/kube-system/configmaps/vsphere-cloud-config"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(load_scenario("missing-route")) as running:
        yield running


def _kubeconfig(sim: Simulator, cluster: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{cluster}.yaml"
    path.write_text(sim.kubeconfig(cluster, ca_file=sim.ca_pem_path))
    return path


def _api(sim: Simulator, cluster: str, tmp_path: Path) -> ApiClient:
    return api_client_from_kubeconfig(_kubeconfig(sim, cluster, tmp_path), None)


def test_the_ini_form_tkg_writes(sim: Simulator, tmp_path: Path) -> None:
    settings, problems = read_ccm_configmap(_api(sim, "cl2", tmp_path))
    assert settings == CcmSettings(
        "/infra/tier-1s/tanzu-cl1",
        sim.ccm_nsx_host,
        "configmap kube-system/vsphere-cloud-config (ini)",
    )
    assert problems == ()


def test_the_yaml_form_with_credentials_inline_keeps_none(sim: Simulator, tmp_path: Path) -> None:
    settings, _ = read_ccm_configmap(_api(sim, "cl5", tmp_path))
    assert settings.router == "/infra/tier-1s/tanzu-cl5"
    assert settings.source.endswith("(yaml)")
    assert sim.kube["cl5"].ccm_password not in repr(settings)


def test_a_forbidden_configmap_is_one_line_naming_it(sim: Simulator, tmp_path: Path) -> None:
    with pytest.raises(CcmReadError) as caught:
        read_ccm_configmap(_api(sim, "cl6", tmp_path))
    assert str(caught.value).startswith(
        "403 Forbidden reading configmap kube-system/vsphere-cloud-config on https://127.0.0.1:"
    )
    assert 'cannot get resource "configmaps"' in str(caught.value)


def test_inventory_reads_the_settings_and_a_403_is_only_a_warning(
    sim: Simulator, tmp_path: Path
) -> None:
    clusters = [
        ClusterConfig(name, _kubeconfig(sim, name, tmp_path), pod_cidrs=())
        for name in ("cl2", "cl5", "cl6", "cl9")
    ]
    found = {c.name: c for c in Inventory().inventory(clusters)}
    assert {n: c.status for n, c in found.items()} == dict.fromkeys(found, ClusterStatus.OK)
    assert found["cl2"].ccm is not None
    assert found["cl2"].ccm.router == "/infra/tier-1s/tanzu-cl1"
    assert found["cl9"].ccm is not None
    assert found["cl9"].ccm.nsx_host == "nsx-b.example.com"
    assert found["cl6"].ccm is None
    assert found["cl6"].error is None
    [warning] = found["cl6"].warnings
    assert warning.startswith("403 Forbidden reading configmap kube-system/vsphere-cloud-config")


def test_no_configmap_is_a_warning_too(sim: Simulator, tmp_path: Path) -> None:
    state = sim.kube["cl2"]
    with state.lock:
        saved = state.configmaps.pop(("kube-system", "vsphere-cloud-config"))
    try:
        result = Inventory().inventory_one(
            ClusterConfig("cl2", _kubeconfig(sim, "cl2", tmp_path), pod_cidrs=())
        )
    finally:
        with state.lock:
            state.configmaps[("kube-system", "vsphere-cloud-config")] = saved
    assert result.status is ClusterStatus.OK
    assert result.ccm is None
    assert result.warnings[0].startswith("404 Not Found reading configmap")


# --------------------------------------------------------------------------- VSphereCPIConfig


@pytest.fixture(scope="module")
def mgmt() -> Iterator[Simulator]:
    with Simulator(load_scenario("management")) as running:
        yield running


def test_a_vspherecpiconfig_in_the_wire_format(mgmt: Simulator, tmp_path: Path) -> None:
    settings = read_cpi_config(_api(mgmt, "mgmt", tmp_path), "tkg-prod", "wl2")
    assert settings == CcmSettings(
        "/infra/tier-1s/tanzu-cl1", mgmt.ccm_nsx_host, "VSphereCPIConfig tkg-prod/wl2"
    )


def test_no_vspherecpiconfig_is_none(mgmt: Simulator, tmp_path: Path) -> None:
    assert read_cpi_config(_api(mgmt, "mgmt", tmp_path), "default", "nope") is None


def test_pod_routing_disabled_in_the_vspherecpiconfig(mgmt: Simulator, tmp_path: Path) -> None:
    mgmt.kube["mgmt"].add_cpi_config(
        CapiCluster("off", "default", ()), SimCcm(router_path=None), mgmt.ccm_nsx_host
    )
    settings = read_cpi_config(_api(mgmt, "mgmt", tmp_path), "default", "off")
    assert settings is not None
    assert not settings.pod_routing


def _cpi(nsxt: Any, mode: str = "vsphereCPI") -> dict[str, Any]:
    return {"spec": {"vsphereCPI": {"mode": mode, "nsxt": nsxt}}}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            _cpi(
                {
                    "podRoutingEnabled": True,
                    "route": {"routerPath": "/infra/tier-1s/a"},
                    "apiHost": "n",
                }
            ),
            ("/infra/tier-1s/a", "n"),
        ),
        (
            _cpi({"podRoutingEnabled": False, "route": {"routerPath": "/infra/tier-1s/a"}}),
            (None, None),
        ),
        (_cpi(None), (None, None)),
        (_cpi({"podRoutingEnabled": True}, mode="vsphereParavirtualCPI"), None),
    ],
)
def test_vspherecpiconfig_fields(
    httpserver: HTTPServer, body: dict[str, Any], expected: tuple[str, str] | None
) -> None:
    path = "/apis/cpi.tanzu.vmware.com/v1alpha1/namespaces/ns/vspherecpiconfigs/c"
    httpserver.expect_request(path).respond_with_json(body)
    settings = read_cpi_config(_plain_api(httpserver), "ns", "c")
    found = None if settings is None else (settings.router_path, settings.nsx_host)
    assert found == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"spec": {}}, "has no spec.vsphereCPI"),
        (_cpi({"podRoutingEnabled": "yes"}), "podRoutingEnabled is not a boolean"),
        (_cpi({"podRoutingEnabled": True, "route": {"routerPath": ["x"]}}), "route.routerPath"),
        (_cpi({"podRoutingEnabled": True, "apiHost": "a\nb"}), "control characters"),
    ],
)
def test_a_malformed_vspherecpiconfig_is_an_error(
    httpserver: HTTPServer, body: dict[str, Any], message: str
) -> None:
    path = "/apis/cpi.tanzu.vmware.com/v1alpha1/namespaces/ns/vspherecpiconfigs/c"
    httpserver.expect_request(path).respond_with_json(body)
    with pytest.raises(CcmReadError, match=message):
        read_cpi_config(_plain_api(httpserver), "ns", "c")


def _settings(router: str, host: str, source: str) -> CcmSettings:
    return CcmSettings(router, host, source)


@pytest.mark.parametrize(
    ("mine", "theirs", "error", "ccm_source", "flags"),
    [
        (None, _settings("/infra/tier-1s/a", "n", "cpi"), None, "cpi", ()),
        (
            _settings("/infra/tier-1s/a", "n", "cm"),
            _settings("/infra/tier-1s/a", "n", "cpi"),
            None,
            "cm",
            (),
        ),
        (
            _settings("/infra/tier-1s/a", "n", "cm"),
            _settings("/infra/tier-1s/b", "n", "cpi"),
            None,
            "cm",
            ("ccm-config-differs",),
        ),
        (_settings("/infra/tier-1s/a", "n", "cm"), None, "403 Forbidden reading x", "cm", ()),
        (None, None, None, None, ()),
    ],
)
def test_the_workload_configmap_wins_over_the_vspherecpiconfig(
    mine: CcmSettings | None,
    theirs: CcmSettings | None,
    error: str | None,
    ccm_source: str | None,
    flags: tuple[str, ...],
) -> None:
    inv = ClusterInventory("c", "cluster-api", ClusterStatus.OK, ccm=mine)
    merged = _with_cpi(inv, (theirs, error), "c")
    assert (merged.ccm.source if merged.ccm else None) == ccm_source
    assert merged.flags == flags
    assert len(merged.warnings) == int(bool(flags) or error is not None)


# --------------------------------------------------------------------------- hostile answers


def _plain_api(httpserver: HTTPServer) -> ApiClient:
    from kubernetes.client import Configuration  # noqa: PLC0415  # only these tests need it

    configuration = Configuration()
    configuration.host = httpserver.url_for("").rstrip("/")
    return ApiClient(configuration)


def _configmap(text: str) -> dict[str, Any]:
    return {"kind": "ConfigMap", "apiVersion": "v1", "data": {"vsphere.conf": text}}


@pytest.mark.parametrize(
    ("respond", "message"),
    [
        (lambda r: r.respond_with_data("x" * (MAX_ANSWER_BYTES + 10)), "larger than"),
        (lambda r: r.respond_with_data("{not json"), "is not JSON"),
        (lambda r: r.respond_with_json({"kind": "ConfigMap"}), "has no data"),
        (lambda r: r.respond_with_json({"data": {"other": "x"}}), "has no key vsphere.conf"),
        (lambda r: r.respond_with_json(_configmap("[route\n")), "neither YAML nor INI"),
        (lambda r: r.respond_with_response(kube_status(500, "InternalError", "boom")), "500"),
    ],
)
def test_a_bad_answer_is_one_line(httpserver: HTTPServer, respond: Any, message: str) -> None:
    respond(httpserver.expect_request(CONFIGMAP_PATH))
    with pytest.raises(CcmReadError) as caught:
        read_ccm_configmap(_plain_api(httpserver))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("broken", [False, True])
def test_a_password_in_the_file_reaches_no_log_result_or_error(
    httpserver: HTTPServer, tmp_path: Path, broken: bool
) -> None:
    secret = "Canary-pw-7f1e"
    quote = "" if broken else '"'
    text = "[Route]\nrouter-path = /infra/tier-1s/a\n[NSXT]\nhost = h\nuser = u\n"
    text += f'password = "{secret}{quote}\n'
    httpserver.expect_request(CONFIGMAP_PATH).respond_with_json(_configmap(text))
    httpserver.expect_request("/api/v1/nodes").respond_with_json(
        {"kind": "NodeList", "metadata": {}, "items": [{"metadata": {"name": "n", "uid": "u"}}]}
    )
    kubeconfig = tmp_path / "k.yaml"
    kubeconfig.write_text(
        json.dumps(
            {
                "clusters": [{"name": "c", "cluster": {"server": httpserver.url_for("")}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    with structlog.testing.capture_logs() as logs:
        result = Inventory().inventory_one(ClusterConfig("c", kubeconfig, pod_cidrs=()))
    assert result.status is ClusterStatus.OK
    assert (result.ccm is None) is broken
    assert secret not in repr(result)
    assert secret not in json.dumps(logs, default=str)
