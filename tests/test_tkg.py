"""TKG cluster configuration files: the seed article's workload cluster, merging, bad input."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from nsx_route_gc.config import Secret, build_config
from nsx_route_gc.errors import ConfigError
from nsx_route_gc.tkg import TkgSettings, merge_tkg, read_tkg_config

# The workload cluster file of the seed article (seeds/000_b360c7a3b1652392.txt), as written.
SEED_CL1 = """\
CLUSTER_NAME: cl1
CLUSTER_PLAN: dev
INFRASTRUCTURE_PROVIDER: vsphere
ENABLE_CEIP_PARTICIPATION: true
ENABLE_AUDIT_LOGGING: true
SERVICE_CIDR: 100.64.0.0/13
AVI_CONTROL_PLANE_HA_PROVIDER: false
DEPLOY_TKG_ON_VSPHERE7: true
ENABLE_TKGS_ON_VSPHERE7: false
VSPHERE_CONTROL_PLANE_ENDPOINT: 172.16.135.250
VSPHERE_DATACENTER: /DC
VSPHERE_DATASTORE: /DC/datastore/NFS
VSPHERE_FOLDER: /DC/vm
VSPHERE_NETWORK: tanzu-overlay
VSPHERE_PASSWORD: <encoded:xxxxxxxxxxxx>
VSPHERE_RESOURCE_POOL: /DC/host/CL/Resources/Tanzu
VSPHERE_SERVER: 10.44.55.100
VSPHERE_SSH_AUTHORIZED_KEY: ssh-rsa AAAA...
VSPHERE_INSECURE: true
VSPHERE_USERNAME: administrator@vsphere.local
VSPHERE_STORAGE_POLICY_ID: "tkg"
CONTROLPLANE_SIZE: large
WORKER_SIZE: large
WORKER_MACHINE_COUNT: 2
OS_NAME: "photon"
ENABLE_MHC: true
MHC_UNKNOWN_STATUS_TIMEOUT: 5m
MHC_FALSE_STATUS_TIMEOUT: 12m
CLUSTER_CIDR: 172.16.136.0/21
NSXT_POD_ROUTING_ENABLED: "true"
NSXT_MANAGER_HOST: 10.44.55.101
NSXT_ROUTER_PATH: /infra/tier-1s/tanzu-cl1
NSXT_USERNAME: admin
NSXT_PASSWORD: NSXTPASSWORD
NSXT_ALLOW_UNVERIFIED_SSL: "true"
"""

CANARY = "Canary-S3cret!pw"
CANARY_B64 = base64.b64encode(CANARY.encode()).decode()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_seed_workload_cluster_file(tmp_path: Path) -> None:
    path = write(tmp_path, "cl1.yaml", SEED_CL1)

    settings = read_tkg_config(path)

    assert settings == TkgSettings(
        source=path,
        cluster_name="cl1",
        cluster_cidrs=("172.16.136.0/21",),
        nsx_host="10.44.55.101",
        username="admin",
        password=Secret("NSXTPASSWORD"),
        allow_unverified_ssl=True,
        router_path="/infra/tier-1s/tanzu-cl1",
    )
    assert settings.password is not None
    assert settings.password.reveal() == "NSXTPASSWORD"
    assert "NSXTPASSWORD" not in repr(settings)


def test_encoded_password_is_decoded(tmp_path: Path) -> None:
    text = SEED_CL1.replace("NSXT_PASSWORD: NSXTPASSWORD", f"NSXT_PASSWORD: <encoded:{CANARY_B64}>")
    settings = read_tkg_config(write(tmp_path, "cl1.yaml", text))
    assert settings.password == Secret(CANARY)


def test_values_stay_as_written(tmp_path: Path) -> None:
    # Unquoted, YAML 1.1 would make these an int, a float and a bool.
    path = write(
        tmp_path,
        "c.yaml",
        "NSXT_PASSWORD: 0123\nNSXT_USERNAME: 'yes'\nNSXT_MANAGER_HOST: nsx.example:8443\n"
        "NSXT_ALLOW_UNVERIFIED_SSL: false\n",
    )
    settings = read_tkg_config(path)
    assert settings.password == Secret("0123")
    assert settings.username == "yes"
    assert settings.nsx_host == "nsx.example:8443"
    assert settings.allow_unverified_ssl is False


def test_dual_stack_cidr_and_absent_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ds.yaml",
        'CLUSTER_NAME: ds\nCLUSTER_CIDR: "100.96.0.0/11, fd00:100:96::/48"\nNSXT_PASSWORD: ""\n',
    )
    settings = read_tkg_config(path)
    assert settings.cluster_cidrs == ("100.96.0.0/11", "fd00:100:96::/48")
    assert settings.nsx_host is None
    assert settings.username is None
    assert settings.password is None
    assert settings.allow_unverified_ssl is None
    assert settings.router_path is None


def test_merge_two_clusters_on_one_nsx(tmp_path: Path) -> None:
    cl1 = read_tkg_config(write(tmp_path, "cl1.yaml", SEED_CL1))
    cl2_text = (
        SEED_CL1.replace("CLUSTER_NAME: cl1", "CLUSTER_NAME: cl2")
        .replace("172.16.136.0/21", "172.16.144.0/21")
        .replace("NSXT_MANAGER_HOST: 10.44.55.101", "NSXT_MANAGER_HOST: https://10.44.55.101")
    )
    cl2 = read_tkg_config(write(tmp_path, "cl2.yaml", cl2_text))
    cl3_text = (
        "CLUSTER_NAME: cl3\nCLUSTER_CIDR: 172.16.152.0/21\n"
        "NSXT_ROUTER_PATH: /infra/tier-1s/tanzu-cl3/\n"
    )
    cl3 = read_tkg_config(write(tmp_path, "cl3.yaml", cl3_text))

    merged = merge_tkg([cl1, cl2, cl3])

    assert merged.environ == {
        "NSXT_MANAGER_HOST": "10.44.55.101",
        "NSXT_USERNAME": "admin",
        "NSXT_PASSWORD": "NSXTPASSWORD",
        "NSXT_ALLOW_UNVERIFIED_SSL": "true",
        "NSXT_ROUTER_PATH": "/infra/tier-1s/tanzu-cl1,/infra/tier-1s/tanzu-cl3",
    }
    assert merged.pod_cidrs == {
        "cl1": ("172.16.136.0/21",),
        "cl2": ("172.16.144.0/21",),
        "cl3": ("172.16.152.0/21",),
    }
    assert "NSXTPASSWORD" not in repr(merged)


def test_merged_environ_feeds_the_configuration_loader(tmp_path: Path) -> None:
    merged = merge_tkg([read_tkg_config(write(tmp_path, "cl1.yaml", SEED_CL1))])

    loaded = build_config({}, merged.environ, source="tkg", base_dir=tmp_path)

    nsx = loaded.config.nsx
    assert nsx.base_url == "https://10.44.55.101"
    assert nsx.username == "admin"
    assert nsx.password == Secret("NSXTPASSWORD")
    assert nsx.insecure is True
    assert nsx.routers == ("/infra/tier-1s/tanzu-cl1",)


def test_conflicting_hosts_name_both_files(tmp_path: Path) -> None:
    a = read_tkg_config(write(tmp_path, "a.yaml", SEED_CL1))
    b_text = SEED_CL1.replace("10.44.55.101", "10.44.55.102")
    b = read_tkg_config(write(tmp_path, "b.yaml", b_text))

    with pytest.raises(ConfigError) as caught:
        merge_tkg([a, b])

    message = str(caught.value)
    assert str(tmp_path / "a.yaml") in message
    assert str(tmp_path / "b.yaml") in message
    assert "NSXT_MANAGER_HOST" in message


def test_conflicting_pod_cidrs_of_one_cluster(tmp_path: Path) -> None:
    a = read_tkg_config(write(tmp_path, "a.yaml", "CLUSTER_NAME: c\nCLUSTER_CIDR: 10.0.0.0/16\n"))
    b = read_tkg_config(write(tmp_path, "b.yaml", "CLUSTER_NAME: c\nCLUSTER_CIDR: 10.1.0.0/16\n"))
    with pytest.raises(ConfigError, match=r"a\.yaml and .*b\.yaml: CLUSTER_CIDR"):
        merge_tkg([a, b])


def test_cidr_without_cluster_name(tmp_path: Path) -> None:
    a = read_tkg_config(write(tmp_path, "a.yaml", "CLUSTER_CIDR: 10.0.0.0/16\n"))
    with pytest.raises(ConfigError, match="CLUSTER_NAME is missing"):
        merge_tkg([a])


BAD_INPUTS = [
    pytest.param(
        f"NSXT_PASSWORD: {CANARY}\nCLUSTER_NAME: [unclosed\n", "not valid YAML", id="not-yaml"
    ),
    pytest.param(f"- NSXT_PASSWORD: {CANARY}\n", "expected a TKG configuration", id="a-list"),
    pytest.param("", "got empty", id="empty"),
    pytest.param(
        f"NSXT_PASSWORD: {CANARY}\nCLUSTER_CIDR: 172.16.136.0/33\n", "CLUSTER_CIDR", id="bad-cidr"
    ),
    pytest.param(
        f"NSXT_PASSWORD: <encoded:{CANARY}>\n", "NSXT_PASSWORD: <encoded", id="bad-base64"
    ),
    pytest.param(
        f"NSXT_PASSWORD:\n  nested: {CANARY}\n", "NSXT_PASSWORD: expected a single", id="nested"
    ),
    pytest.param(
        f"NSXT_PASSWORD: {CANARY}\nNSXT_ALLOW_UNVERIFIED_SSL: maybe\n",
        "NSXT_ALLOW_UNVERIFIED_SSL",
        id="bad-bool",
    ),
    pytest.param(
        f"NSXT_PASSWORD: {CANARY}\nNSXT_MANAGER_HOST: http://nsx\n",
        "NSXT_MANAGER_HOST",
        id="bad-host",
    ),
    pytest.param(
        f"NSXT_PASSWORD: {CANARY}\nNSXT_ROUTER_PATH: tanzu-cl1\n",
        "NSXT_ROUTER_PATH",
        id="bad-router",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_INPUTS)
def test_bad_input_is_one_line_naming_file_and_key_without_the_password(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, "bad.yaml", text)

    with pytest.raises(ConfigError) as caught:
        read_tkg_config(path)

    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message
    assert CANARY not in message
    assert CANARY_B64 not in message


def test_conflicting_passwords_are_named_but_not_shown(tmp_path: Path) -> None:
    a = read_tkg_config(write(tmp_path, "a.yaml", f"NSXT_PASSWORD: {CANARY}\n"))
    b = read_tkg_config(write(tmp_path, "b.yaml", "NSXT_PASSWORD: other-Canary\n"))

    with pytest.raises(ConfigError) as caught:
        merge_tkg([a, b])

    message = str(caught.value)
    assert "NSXT_PASSWORD" in message
    assert str(tmp_path / "a.yaml") in message
    assert CANARY not in message
    assert "other-Canary" not in message


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read"):
        read_tkg_config(tmp_path / "missing.yaml")
