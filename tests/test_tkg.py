"""TKG cluster configuration files: the seed article's workload cluster, every NSX variable TKG
defines, the private certificate files, merging, bad input."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from nsx_route_gc import logs
from nsx_route_gc.config import Secret, build_config
from nsx_route_gc.errors import ConfigError
from nsx_route_gc.tkg import (
    CA_FILE_ENV,
    CERT_FILE_ENV,
    KEY_FILE_ENV,
    MAX_FILE_BYTES,
    TkgSettings,
    materialised,
    merge_tkg,
    read_tkg_config,
)

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
NOT_UTF8_B64 = base64.b64encode(b"\xff\xfe").decode()


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
        pod_routing=True,
    )
    assert settings.warnings == ()
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


def test_password_forms_as_tkg_decodes_them(tmp_path: Path) -> None:
    # ensure.go DecodeCredentialsInViper: the value is trimmed, "<encoded:" and the last
    # character dropped, the rest base64-decoded; the decoded password is not trimmed.
    spaced = base64.b64encode(b" pw with spaces ").decode()
    cases = {
        f'"  <encoded:{spaced}>  "': " pw with spaces ",
        '"  plain keeps its spaces "': "  plain keeps its spaces ",
        f"'<encoded:{CANARY_B64}>'": CANARY,
    }
    for i, (written, expected) in enumerate(cases.items()):
        settings = read_tkg_config(write(tmp_path, f"p{i}.yaml", f"NSXT_PASSWORD: {written}\n"))
        assert settings.password == Secret(expected), written


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
        f"NSXT_PASSWORD: {CANARY}\nNSXT_ROUTER_PATH: /infra/tier-1s/\n",
        "NSXT_ROUTER_PATH",
        id="router-without-id",
    ),
    pytest.param(
        f"NSXT_PASSWORD: {CANARY}\nNSXT_ROUTER_PATH: '/infra/tier-1s/a b'\n",
        "NSXT_ROUTER_PATH",
        id="router-id-with-space",
    ),
    pytest.param(
        f"NSXT_PASSWORD: {CANARY}\nNSXT_REMOTE_AUTH: 'yes'\n",
        "NSXT_REMOTE_AUTH: expected true or false",
        id="yes-is-no-go-bool",
    ),
    pytest.param(
        f"NSXT_PASSWORD: {CANARY}\nNSXT_POD_ROUTING_ENABLED: on\n",
        "NSXT_POD_ROUTING_ENABLED",
        id="bad-pod-routing",
    ),
    pytest.param(
        f"NSXT_PASSWORD: {CANARY}\nNSXT_ROOT_CA_DATA_B64: {CANARY}\n",
        "NSXT_ROOT_CA_DATA_B64: not valid base64",
        id="ca-not-base64",
    ),
    pytest.param(
        f"NSXT_ROOT_CA_DATA: {CANARY_B64}\n",
        "NSXT_ROOT_CA_DATA: not a PEM certificate",
        id="ca-not-pem",
    ),
    pytest.param(
        f"NSXT_CLIENT_CERT_DATA: {CANARY_B64}\nNSXT_CLIENT_CERT_KEY_DATA: {CANARY_B64}\n",
        "NSXT_CLIENT_CERT_DATA: not a PEM certificate",
        id="cert-not-pem",
    ),
    pytest.param(
        f"NSXT_PASSWORD: <encoded:{NOT_UTF8_B64}>\n",
        "NSXT_PASSWORD: <encoded",
        id="encoded-not-utf8",
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


# --- every NSX variable TKG defines -------------------------------------------------------


@pytest.fixture(scope="module")
def pki() -> dict[str, str]:
    """A CA, a client certificate and its key, another key: PEM texts and their base64."""
    ca = trustme.CA()
    leaf = ca.issue_cert("nsx-route-gc", common_name="nsx-route-gc")
    other = ca.issue_cert("someone-else")
    texts = {
        "ca": ca.cert_pem.bytes().decode(),
        "cert": leaf.cert_chain_pems[0].bytes().decode(),
        "key": leaf.private_key_pem.bytes().decode(),
        "other_key": other.private_key_pem.bytes().decode(),
    }
    for name, text in list(texts.items()):
        texts[f"{name}_b64"] = base64.b64encode(text.encode()).decode()
    return texts


def cert_file(pki: dict[str, str], extra: str = "") -> str:
    return (
        "CLUSTER_NAME: cl9\nCLUSTER_CIDR: 100.96.0.0/11\nNSXT_POD_ROUTING_ENABLED: 'true'\n"
        "NSXT_MANAGER_HOST: nsx.example\nNSXT_ROUTER_PATH: /infra/tier-1s/t1\n"
        f"NSXT_CLIENT_CERT_DATA: {pki['cert_b64']}\n"
        f"NSXT_CLIENT_CERT_KEY_DATA: {pki['key_b64']}\n"
        f"NSXT_ROOT_CA_DATA_B64: {pki['ca_b64']}\n" + extra
    )


def test_client_certificate_key_and_ca_are_read_as_base64_pem(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    settings = read_tkg_config(write(tmp_path, "c.yaml", cert_file(pki)))

    assert settings.client_cert == Secret(pki["cert"])
    assert settings.client_key == Secret(pki["key"])
    assert settings.root_ca == Secret(pki["ca"])
    assert pki["key"] not in repr(settings)
    assert pki["key_b64"] not in repr(settings)


def test_root_ca_data_without_b64_is_the_same_variable(tmp_path: Path, pki: dict[str, str]) -> None:
    # The community-edition docs template names NSXT_ROOT_CA_DATA; the code reads _B64.
    plain = read_tkg_config(write(tmp_path, "a.yaml", f"NSXT_ROOT_CA_DATA: {pki['ca_b64']}\n"))
    assert plain.root_ca == Secret(pki["ca"])
    both = f"NSXT_ROOT_CA_DATA: {pki['ca_b64']}\nNSXT_ROOT_CA_DATA_B64: {pki['ca_b64']}\n"
    assert read_tkg_config(write(tmp_path, "b.yaml", both)).root_ca == Secret(pki["ca"])
    other_ca = base64.b64encode(trustme.CA().cert_pem.bytes()).decode()
    differ = f"NSXT_ROOT_CA_DATA: {pki['ca_b64']}\nNSXT_ROOT_CA_DATA_B64: {other_ca}\n"
    with pytest.raises(ConfigError, match="NSXT_ROOT_CA_DATA_B64 and NSXT_ROOT_CA_DATA differ"):
        read_tkg_config(write(tmp_path, "c.yaml", differ))


def test_certificate_without_key_is_refused_as_tkg_does(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    text = f"NSXT_CLIENT_CERT_DATA: {pki['cert_b64']}\n"
    with pytest.raises(ConfigError, match=r"c\.yaml: NSXT_CLIENT_CERT_KEY_DATA: missing"):
        read_tkg_config(write(tmp_path, "c.yaml", text))


def test_certificate_files_are_private_named_in_the_environ_and_removed(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    merged = merge_tkg([read_tkg_config(write(tmp_path, "c.yaml", cert_file(pki)))])
    parent = tmp_path / "tmp"
    parent.mkdir()

    with materialised(merged, parent) as environ:
        files = {env: Path(environ[env]) for env in (CA_FILE_ENV, CERT_FILE_ENV, KEY_FILE_ENV)}
        directory = files[KEY_FILE_ENV].parent
        assert directory.parent == parent
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        for file in files.values():
            assert stat.S_IMODE(file.stat().st_mode) == 0o600
        assert files[CA_FILE_ENV].read_text() == pki["ca"]
        assert files[CERT_FILE_ENV].read_text() == pki["cert"]
        assert files[KEY_FILE_ENV].read_text() == pki["key"]
        assert "NSXT_CLIENT_CERT_KEY_DATA" not in environ
        loaded = build_config({}, environ, source="tkg", base_dir=tmp_path)
        nsx = loaded.config.nsx
        # As the CCM: a client certificate, when given, is the auth.
        assert nsx.auth == "certificate"
        assert (nsx.client_cert_file, nsx.client_key_file) == (
            files[CERT_FILE_ENV],
            files[KEY_FILE_ENV],
        )
        assert nsx.ca_file == files[CA_FILE_ENV]
    assert list(parent.iterdir()) == []


def test_certificate_files_are_removed_when_the_run_fails(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    merged = merge_tkg([read_tkg_config(write(tmp_path, "c.yaml", cert_file(pki)))])
    parent = tmp_path / "tmp"
    parent.mkdir()
    seen: list[Path] = []

    def run() -> None:
        with materialised(merged, parent):
            seen.extend(parent.iterdir())
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run()
    assert len(seen) == 1
    assert list(parent.iterdir()) == []


def test_a_key_that_is_not_the_certificates_is_refused(tmp_path: Path, pki: dict[str, str]) -> None:
    text = cert_file(pki).replace(pki["key_b64"], pki["other_key_b64"])
    merged = merge_tkg([read_tkg_config(write(tmp_path, "c.yaml", text))])
    parent = tmp_path / "tmp"
    parent.mkdir()
    with pytest.raises(ConfigError) as caught, materialised(merged, parent):
        pytest.fail("the key of another certificate was accepted")
    assert str(caught.value) == (
        f"{tmp_path / 'c.yaml'}: NSXT_CLIENT_CERT_KEY_DATA: not the private key of "
        "NSXT_CLIENT_CERT_DATA"
    )
    assert list(parent.iterdir()) == []


def test_an_encrypted_key_is_refused(tmp_path: Path, pki: dict[str, str]) -> None:
    key = serialization.load_pem_private_key(pki["key"].encode(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    text = cert_file(pki).replace(pki["key_b64"], base64.b64encode(encrypted).decode())
    with pytest.raises(ConfigError, match="NSXT_CLIENT_CERT_KEY_DATA: the private key is encr"):
        read_tkg_config(write(tmp_path, "c.yaml", text))


def test_key_and_certificate_texts_are_scrubbed_from_logs(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    merged = merge_tkg([read_tkg_config(write(tmp_path, "c.yaml", cert_file(pki)))])
    with materialised(merged, tmp_path):
        pass
    body = [line for line in pki["key"].splitlines() if not line.startswith("-----")]
    for text in (pki["key"], pki["cert"]):
        scrubbed = logs.scrub(f"x {text} y")
        assert logs.REDACTED in scrubbed
        assert all(line not in scrubbed for line in body)
    assert logs.scrub(pki["cert"]) == logs.REDACTED
    assert logs.scrub(pki["key_b64"]) == logs.REDACTED
    assert logs.scrub(pki["cert_b64"]) == logs.REDACTED
    # One line of the key's body alone, as a library might quote it.
    assert logs.scrub(f"bad key line {body[0]}") == f"bad key line {logs.REDACTED}"


def test_files_that_disagree_on_the_certificate_name_both_without_showing_it(
    tmp_path: Path, pki: dict[str, str]
) -> None:
    leaf = trustme.CA().issue_cert("other")
    other = cert_file(pki).replace(
        pki["cert_b64"], base64.b64encode(leaf.cert_chain_pems[0].bytes()).decode()
    )
    a = read_tkg_config(write(tmp_path, "a.yaml", cert_file(pki)))
    b = read_tkg_config(write(tmp_path, "b.yaml", other))
    with pytest.raises(ConfigError) as caught:
        merge_tkg([a, b])
    message = str(caught.value)
    assert message == (
        f"{tmp_path / 'a.yaml'} and {tmp_path / 'b.yaml'}: NSXT_CLIENT_CERT_DATA differs "
        "between the files"
    )


def test_remote_auth_and_unverified_ssl_follow_go_parsebool(tmp_path: Path) -> None:
    for word, expected in (("1", True), ("T", True), ("TRUE", True), ("0", False), ("F", False)):
        text = f"NSXT_REMOTE_AUTH: '{word}'\nNSXT_ALLOW_UNVERIFIED_SSL: '{word}'\n"
        settings = read_tkg_config(write(tmp_path, "b.yaml", text))
        assert settings.remote_auth is expected, word
        assert settings.allow_unverified_ssl is expected, word
    for word in ("yes", "on", "tRUE", "2"):
        with pytest.raises(ConfigError, match="NSXT_REMOTE_AUTH: expected true or false"):
            read_tkg_config(write(tmp_path, "b.yaml", f"NSXT_REMOTE_AUTH: '{word}'\n"))


def test_remote_auth_reaches_the_configuration_loader(tmp_path: Path) -> None:
    text = SEED_CL1 + "NSXT_REMOTE_AUTH: true\n"
    merged = merge_tkg([read_tkg_config(write(tmp_path, "cl1.yaml", text))])
    assert merged.environ["NSXT_REMOTE_AUTH"] == "true"
    nsx = build_config({}, merged.environ, source="tkg", base_dir=tmp_path).config.nsx
    assert nsx.auth == "remote"
    assert nsx.username == "admin"


def test_vmc_token_and_auth_host_map_to_their_environment_names(tmp_path: Path) -> None:
    token = "vmc-Canary-refresh-token"
    text = (
        "NSXT_MANAGER_HOST: nsx-1-2-3-4.rp.vmwarevmc.com\n"
        f"NSXT_VMC_ACCESS_TOKEN: {token}\n"
        "NSXT_VMC_AUTH_HOST: console.cloud.vmware.com\n"
    )
    a = read_tkg_config(write(tmp_path, "a.yaml", text))
    assert token not in repr(a)
    merged = merge_tkg([a])
    assert merged.environ["NSXT_VMC_ACCESS_TOKEN"] == token
    assert merged.environ["NSXT_VMC_AUTH_HOST"] == "console.cloud.vmware.com"
    with materialised(merged, tmp_path):
        assert logs.scrub(f"token={token}") == f"token={logs.REDACTED}"
    b = read_tkg_config(write(tmp_path, "b.yaml", text.replace(token, "another-token")))
    with pytest.raises(ConfigError) as caught:
        merge_tkg([a, b])
    assert "NSXT_VMC_ACCESS_TOKEN differs" in str(caught.value)
    assert token not in str(caught.value)
    assert "another-token" not in str(caught.value)


def test_pod_routing_disabled_contributes_only_the_cluster_cidr(tmp_path: Path) -> None:
    off = (
        SEED_CL1.replace('NSXT_POD_ROUTING_ENABLED: "true"', "NSXT_POD_ROUTING_ENABLED: false")
        .replace("CLUSTER_NAME: cl1", "CLUSTER_NAME: cl5")
        .replace("172.16.136.0/21", "172.16.200.0/21")
        .replace("10.44.55.101", "10.99.99.99")  # would conflict if it were taken
        .replace("tanzu-cl1", "tanzu-cl5")
    )
    disabled = read_tkg_config(write(tmp_path, "cl5.yaml", off))
    assert disabled.pod_routing is False
    assert disabled.nsx_host is None
    assert disabled.password is None
    assert disabled.router_path is None
    assert disabled.cluster_cidrs == ("172.16.200.0/21",)
    assert any("NSXT_POD_ROUTING_ENABLED is false" in w for w in disabled.warnings)

    merged = merge_tkg([read_tkg_config(write(tmp_path, "cl1.yaml", SEED_CL1)), disabled])
    assert merged.environ["NSXT_MANAGER_HOST"] == "10.44.55.101"
    assert merged.environ["NSXT_ROUTER_PATH"] == "/infra/tier-1s/tanzu-cl1"
    assert merged.pod_cidrs["cl5"] == ("172.16.200.0/21",)


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        (None, ("100.96.0.0/11",)),
        ("ipv4", ("100.96.0.0/11",)),
        ("ipv6", ("fd00:100:96::/48",)),
        ("ipv4,ipv6", ("100.96.0.0/11", "fd00:100:96::/48")),
        ("ipv6,ipv4", ("fd00:100:96::/48", "100.96.0.0/11")),
    ],
)
def test_missing_cluster_cidr_is_tkgs_default_with_a_warning(
    tmp_path: Path, family: str | None, expected: tuple[str, ...]
) -> None:
    text = "CLUSTER_NAME: wc1\n" + (f"TKG_IP_FAMILY: {family}\n" if family else "")
    settings = read_tkg_config(write(tmp_path, "wc1.yaml", text))
    assert settings.cluster_cidrs == expected
    assert settings.warnings == (
        f"{tmp_path / 'wc1.yaml'}: CLUSTER_CIDR is not set: cluster 'wc1' gets TKG's default "
        f"pod CIDR {','.join(expected)}",
    )


def test_no_default_cidr_without_a_cluster_name(tmp_path: Path) -> None:
    settings = read_tkg_config(write(tmp_path, "nsx.yaml", "NSXT_MANAGER_HOST: nsx\n"))
    assert settings.cluster_cidrs == ()
    assert settings.warnings == ()


@pytest.mark.parametrize(
    "written",
    [
        "/orgs/default/projects/dev/infra/tier-1s/tanzu-cl1",
        "/global-infra/tier-1s/tanzu-cl1",
        "tanzu-cl1",
    ],
)
def test_router_path_is_where_the_ccm_writes(tmp_path: Path, written: str) -> None:
    # nsxtbroker.go getRouterID: the last segment, written under /infra/tier-1s.
    settings = read_tkg_config(write(tmp_path, "r.yaml", f"NSXT_ROUTER_PATH: {written}\n"))
    assert settings.router_path == "/infra/tier-1s/tanzu-cl1"
    assert settings.warnings == (
        f"{tmp_path / 'r.yaml'}: NSXT_ROUTER_PATH {written!r} is not /infra/tier-1s/<id>; the "
        "CCM writes its routes to /infra/tier-1s/tanzu-cl1 (the path's last segment), so that "
        "router is the one scanned",
    )


def test_an_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    path = write(tmp_path, "big.yaml", "# " + "x" * MAX_FILE_BYTES + "\n")
    with pytest.raises(ConfigError, match=r"big\.yaml: TKG configuration is larger than"):
        read_tkg_config(path)


def test_a_key_given_twice_is_refused_naming_the_key_not_a_value(tmp_path: Path) -> None:
    # A second CLUSTER_CIDR (or NSXT_PASSWORD) would silently win: refused, and the message
    # names the key, never the password beside it.
    text = SEED_CL1 + f"NSXT_PASSWORD: {CANARY}\n"
    path = write(tmp_path, "cl1.yaml", text)
    with pytest.raises(ConfigError, match=r"not valid YAML \(line \d+\): found duplicate key") as e:
        read_tkg_config(path)
    assert "'NSXT_PASSWORD'" in str(e.value)
    assert CANARY not in str(e.value)


def test_an_alias_in_a_tkg_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "cl1.yaml", "A: &x [1, 2]\nB: *x\n")
    with pytest.raises(ConfigError, match="aliases are refused"):
        read_tkg_config(path)
