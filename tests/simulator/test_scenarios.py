"""Scenario data, the benchmark generator and the files written for nsx-route-gc."""

from __future__ import annotations

import ipaddress
import stat
from collections import Counter
from pathlib import Path

import pytest
import yaml

from nsx_route_gc.config import Secret
from nsx_route_gc.models import CLUSTER_TAG_SCOPE, NODE_TAG_SCOPE, parse_managed_id
from nsx_route_gc.simulator import (
    SCENARIOS,
    Scenario,
    Simulator,
    load_scenario,
    scale,
    scale_size,
)
from nsx_route_gc.simulator.scenarios import T1
from nsx_route_gc.tkg import CA_FILE_ENV, CERT_FILE_ENV, KEY_FILE_ENV, merge_tkg, read_tkg_config

SMALL = [name for name in SCENARIOS if name not in ("scale-m", "scale-l")]


@pytest.mark.parametrize("name", SMALL)
def test_every_scenario_serves_and_writes_a_readable_config(name: str, tmp_path: Path) -> None:
    scenario = load_scenario(name)
    with Simulator(scenario) as sim:
        path = sim.write_config(tmp_path)
        config = yaml.safe_load(path.read_text())
        if scenario.tkg_files:
            assert "nsx" not in config  # the TKG files carry every NSX setting
            assert_tkg_files(sim, tmp_path)
        else:
            nsx = config["nsx"]
            assert nsx["host"] == sim.nsx_host
            assert Path(nsx["ca_file"]).read_bytes() == sim.ca_pem
            if name == "vmc":
                assert nsx["auth"] == "vmc"
                assert nsx["host"].startswith(sim.nsx_url + "/vmc/reverse-proxy/api/orgs/")
                assert nsx["vmc_auth_host"] == sim.nsx_url.removeprefix("https://")
                secret = Path(nsx["vmc_access_token_file"])
                assert sim.nsx.vmc is not None
                assert secret.read_text().strip() == sim.nsx.vmc.refresh_token
                assert sim.client_env(tmp_path) == {"REQUESTS_CA_BUNDLE": nsx["ca_file"]}
            else:
                assert nsx["host"] == sim.nsx_url
                assert nsx["auth"] == "session"
                secret = Path(nsx["password_file"])
                assert secret.read_text().strip() == sim.nsx.password
                assert sim.client_env(tmp_path) == {}
            assert stat.S_IMODE(secret.stat().st_mode) == 0o600
            assert ("routers" in nsx) == (scenario.config_routers is not None)
        for cluster in config.get("clusters", []):
            kubeconfig = yaml.safe_load(Path(cluster["kubeconfig"]).read_text())
            server = kubeconfig["clusters"][0]["cluster"]
            assert server["server"] == sim.kube_url(cluster["name"])
            assert server["certificate-authority"] == str(tmp_path.resolve() / "ca.pem")
            assert kubeconfig["users"][0]["user"]["token"] == sim.kube[cluster["name"]].token
        assert config["state"]["file"].startswith(str(tmp_path.resolve()))
        assert config["policy"]["min_age"] == "1h"
        assert ("cluster_api" in config) == (name == "management")
        total = sum(sim.nsx.route_count(t) for t in scenario.tier1s)
        assert total == len(scenario.routes) == sum(scenario.expected.values())


def assert_tkg_files(sim: Simulator, directory: Path) -> None:
    files = sim.tkg_config_files(directory)
    assert [f.name for f in files] == [f"tkg-{name}.yaml" for name in sim.scenario.tkg_files]
    merged = merge_tkg([read_tkg_config(f) for f in files])
    assert merged.environ["NSXT_MANAGER_HOST"] == sim.nsx_url.removeprefix("https://")
    assert merged.environ["NSXT_ROUTER_PATH"] == T1
    assert merged.pem_files[CA_FILE_ENV] == Secret(sim.ca_pem.decode())
    if sim.scenario.tkg_auth == "certificate":
        assert "NSXT_PASSWORD" not in merged.environ
        assert set(merged.pem_files) == {CA_FILE_ENV, CERT_FILE_ENV, KEY_FILE_ENV}
    else:
        # The first file's password is <encoded:...>, the second's in clear: they agree.
        assert "<encoded:" in files[0].read_text()
        assert merged.environ["NSXT_PASSWORD"] == sim.nsx.password
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
    retired = {r.name: r.pod_cidrs for r in sim.scenario.retired}
    live = {c.name: c.pod_cidrs for c in sim.scenario.clusters}
    assert merged.pod_cidrs == {n: {**live, **retired}[n] for n in sim.scenario.tkg_files}


def test_seed_matches_the_article(tmp_path: Path) -> None:
    scenario = load_scenario("seed")
    routes = {r.network: r for r in scenario.routes}
    cl1 = routes["172.16.138.0/24"]
    assert cl1.id == "a57a555e-e4eb-49ad-af74-e11a7d7a8ad8_172.16.138.0_24"
    assert cl1.display_name == "kubernetes_cl1-md-0-5789bbcb76-vvrjv_172.16.138.0/24"
    assert cl1.tags == (
        (CLUSTER_TAG_SCOPE, "kubernetes"),
        (NODE_TAG_SCOPE, "cl1-md-0-5789bbcb76-vvrjv"),
    )
    assert cl1.next_hops == ("172.16.128.35",)
    assert cl1.router == T1
    assert routes["172.16.136.0/24"].next_hops == ("172.16.128.63",)
    assert routes["172.16.137.0/24"].next_hops == ("172.16.128.126",)
    assert "0.0.0.0/0" in routes
    assert not routes["192.168.100.0/24"].tags
    with Simulator(scenario) as sim:
        config = yaml.safe_load(sim.write_config(tmp_path).read_text())
    assert config["nsx"]["routers"] == [T1]
    assert config["clusters"][0]["name"] == "cl2"
    assert config["clusters"][0]["pod_cidrs"] == ["172.16.144.0/21"]
    assert config["retired_clusters"] == [{"name": "cl1", "pod_cidrs": ["172.16.136.0/21"]}]
    assert "retired_clusters" not in yaml.safe_load(
        _config_text(load_scenario("seed-unretired"), tmp_path / "unretired")
    )


def _config_text(scenario: Scenario, directory: Path) -> str:
    with Simulator(scenario) as sim:
        return sim.write_config(directory).read_text()


def test_shadow_and_conflict_put_one_network_twice_on_the_tier1() -> None:
    for name in ("shadow", "conflict"):
        networks = Counter(r.network for r in load_scenario(name).routes)
        assert networks.most_common(1)[0][1] == 2


def test_ipv6_route_ids_keep_their_colons() -> None:
    v6 = [r for r in load_scenario("ipv6").routes if ":" in r.network]
    assert len(v6) == 3
    for route in v6:
        parsed = parse_managed_id(route.id)
        assert parsed is not None
        assert parsed[1] == route.network
        assert ":" in route.next_hops[0]


def test_scale_small_has_the_asked_counts_and_ccm_shaped_routes() -> None:
    scenario = scale_size("S")
    assert len(scenario.tier1s) == 10
    assert len(scenario.routes) == 1000
    assert [len(c.nodes) for c in scenario.clusters] == [20] * 5
    assert scenario.expected == {"live": 100, "orphaned": 100, "unattributed": 800}
    assert len({r.id for r in scenario.routes}) == 1000
    per_router = Counter((r.router, r.network) for r in scenario.routes)
    assert max(per_router.values()) == 1
    nodes = {n.uid: n for c in scenario.clusters for n in c.nodes}
    live = 0
    for route in scenario.routes:
        parsed = parse_managed_id(route.id)
        assert parsed is not None
        assert parsed[1] == route.network
        node = nodes.get(parsed[0])
        if node is not None:
            live += 1
            assert route.network in node.pod_cidrs
            assert route.next_hops[0] in node.internal_ips
    assert live == 100
    retired = [ipaddress.ip_network(c) for r in scenario.retired for c in r.pod_cidrs]
    configured = [ipaddress.ip_network(c) for c in scenario.clusters for c in c.pod_cidrs]
    assert not any(a.overlaps(b) for a in retired for b in configured)


def test_scale_rejects_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match="overflow"):
        scale(routers=1, routes=10, clusters=300, nodes_per_cluster=100)
    assert scale(1, 10, 1, 1, orphan_fraction=0.0).expected == {
        "live": 1,
        "orphaned": 0,
        "unattributed": 9,
    }


def test_unknown_scenario_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="seed"):
        load_scenario("nope")
