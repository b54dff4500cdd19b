"""Configuration: the contract's keys, environment overrides, one-line errors naming the key."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from nsx_route_gc import logs
from nsx_route_gc.config import (
    VMC_AUTH_PATH,
    ClusterApiConfig,
    Config,
    NsxSettings,
    RetiredCluster,
    Secret,
    load_config,
    normalise_host,
    parse_duration,
    vmc_auth_url,
)
from nsx_route_gc.errors import ConfigError

CANARY = "canary-S3cr3t-pw"

FULL = """
nsx:
  host: nsx.example.com
  username: admin
  password_file: pw
  auth: session
  ca_file: ca.pem
  insecure: false
  routers: [/infra/tier-1s/tanzu-cl1]
clusters:
  - name: cl2
    kubeconfig: ~/.kube/cl2.yaml
    context: cl2-admin@cl2
    pod_cidrs: [172.16.144.0/21]
retired_clusters:
  - name: cl1
    pod_cidrs: [172.16.136.0/21]
cluster_api:
  kubeconfig: in-cluster
state:
  configmap: nsx-route-gc/nsx-route-gc-state
  file: state/clusters.json
metrics:
  pushgateway: http://pushgateway:9091
policy:
  min_age: 2h
  cluster_gone_after: 30m
  allow_overwrite: true
  unattributed: delete
  max_deletes: 7
  max_delete_percent: 25
  protect:
    tag_scopes: [keep-me]
    route_ids: [r1]
    networks: [10.0.0.0/8]
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "pw").write_text(CANARY + "\n")
    (tmp_path / "ca.pem").write_text("not really a CA")
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_every_key_of_the_contract(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, FULL), {})
    c = loaded.config
    assert c.nsx.base_url == "https://nsx.example.com"
    assert c.nsx.username == "admin"
    assert c.nsx.password == Secret(CANARY)
    assert c.nsx.ca_file == tmp_path / "ca.pem"
    assert c.nsx.routers == ("/infra/tier-1s/tanzu-cl1",)
    assert c.clusters[0].kubeconfig == Path.home() / ".kube/cl2.yaml"
    assert c.clusters[0].context == "cl2-admin@cl2"
    assert c.clusters[0].pod_cidrs == ("172.16.144.0/21",)
    assert c.retired_clusters[0].name == "cl1"
    assert c.cluster_api is not None
    assert c.cluster_api.kubeconfig is None
    assert c.state.configmap == "nsx-route-gc/nsx-route-gc-state"
    assert c.state.file == tmp_path / "state/clusters.json"
    assert c.metrics.pushgateway == "http://pushgateway:9091"
    p = c.policy
    assert p.min_age == timedelta(hours=2)
    assert p.cluster_gone_after == timedelta(minutes=30)
    assert p.allow_overwrite is True
    assert p.unattributed == "delete"
    assert (p.max_deletes, p.max_delete_percent) == (7, 25.0)
    assert p.protect_tag_scopes == ("keep-me",)
    assert p.protect_route_ids == ("r1",)
    assert p.protect_networks == ("10.0.0.0/8",)
    assert loaded.warnings == ()


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    env = {
        "NSXT_MANAGER_HOST": "https://10.44.55.101:8443",
        "NSXT_USERNAME": "ops",
        "NSXT_PASSWORD": "from-env",
        "NSXT_ALLOW_UNVERIFIED_SSL": "true",
        "NSXT_ROUTER_PATH": "/infra/tier-1s/a,/infra/tier-1s/b",
        "NSX_ROUTE_GC_PUSHGATEWAY": "http://gw:9091",
    }
    c = load_config(write(tmp_path, FULL), env).config
    assert c.nsx.base_url == "https://10.44.55.101:8443"
    assert c.nsx.host == "10.44.55.101:8443"
    assert c.nsx.username == "ops"
    assert c.nsx.password == Secret("from-env")
    assert c.nsx.insecure is True
    assert c.nsx.routers == ("/infra/tier-1s/a", "/infra/tier-1s/b")
    assert c.metrics.pushgateway == "http://gw:9091"


def test_file_names_of_the_ccm_and_terraform_override_the_file(tmp_path: Path) -> None:
    for name in ("env-ca.pem", "client.crt", "client.key"):
        (tmp_path / name).write_text("pem")
    env = {
        "NSXT_CA_FILE": str(tmp_path / "env-ca.pem"),
        "NSXT_CLIENT_AUTH_CERT_FILE": str(tmp_path / "client.crt"),
        "NSXT_CLIENT_AUTH_KEY_FILE": str(tmp_path / "client.key"),
    }
    # `auth: session` is explicit in FULL: it stays, the certificate is not used for auth.
    c = load_config(write(tmp_path, FULL), env).config
    assert c.nsx.ca_file == tmp_path / "env-ca.pem"
    assert c.nsx.client_cert_file == tmp_path / "client.crt"
    assert c.nsx.client_key_file == tmp_path / "client.key"
    assert c.nsx.auth == "session"


def test_a_client_certificate_without_an_auth_key_means_certificate_auth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the CCM's connector_manager.go: a client certificate, when given, is the auth.
    for name in ("client.crt", "client.key"):
        (tmp_path / name).write_text("pem")
    monkeypatch.chdir(tmp_path)  # relative names in the environment are relative to here
    env = {"NSXT_CLIENT_AUTH_CERT_FILE": "client.crt", "NSXT_CLIENT_AUTH_KEY_FILE": "client.key"}
    c = load_config(write(tmp_path, "nsx: {host: h}\n"), env).config
    assert c.nsx.auth == "certificate"
    assert c.nsx.client_cert_file == tmp_path / "client.crt"
    assert c.nsx.username is None


def test_missing_file_named_by_the_environment(tmp_path: Path) -> None:
    env = {"NSXT_CA_FILE": str(tmp_path / "nope.pem")}
    with pytest.raises(ConfigError, match=r"nsx\.ca_file: .*nope\.pem does not exist"):
        load_config(write(tmp_path, FULL), env)


@pytest.mark.parametrize(
    ("value", "auth"), [("true", "remote"), ("1", "remote"), ("false", "session")]
)
def test_remote_auth_from_the_environment(tmp_path: Path, value: str, auth: str) -> None:
    c = load_config(write(tmp_path, FULL), {"NSXT_REMOTE_AUTH": value}).config
    assert c.nsx.auth == auth


def test_remote_auth_that_is_no_boolean_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NSXT_REMOTE_AUTH: expected true or false"):
        load_config(write(tmp_path, FULL), {"NSXT_REMOTE_AUTH": "maybe"})


def test_plain_password_works_but_warns(tmp_path: Path) -> None:
    text = f"nsx: {{host: h, username: u, password: {CANARY}}}\n"
    loaded = load_config(write(tmp_path, text), {})
    assert loaded.config.nsx.password == Secret(CANARY)
    assert any("password_file" in w for w in loaded.warnings)
    assert CANARY not in repr(loaded.config)


def test_defaults(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, "nsx: {host: h, username: u, password_file: pw}\n"), {}).config
    assert c.nsx.auth == "session"
    assert c.nsx.routers == ()
    assert c.policy.min_age == timedelta(hours=1)
    assert c.policy.max_deletes == 100
    assert c.policy.max_delete_percent == 50
    assert c.policy.protect_tag_scopes == ("nsx-route-gc/keep",)
    assert c.policy.unattributed == "report"
    assert (c.nsx.concurrency, c.nsx.max_concurrency) == (8, 32)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("max_concurrency: 39", (8, 39)),
        ("concurrency: 36", (36, 36)),  # the maximum follows a start above its default
        ("concurrency: 4, max_concurrency: 4", (4, 4)),
        ("concurrency: 1, max_concurrency: 1", (1, 1)),  # one call at a time, the slowest
    ],
)
def test_concurrency_and_its_maximum(tmp_path: Path, keys: str, expected: tuple[int, int]) -> None:
    text = f"nsx: {{host: h, username: u, password_file: pw, {keys}}}\n"
    c = load_config(write(tmp_path, text), {}).config
    assert (c.nsx.concurrency, c.nsx.max_concurrency) == expected


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("nsx: [1]\n", "nsx: expected a mapping"),
        ("nsx: {username: u, password_file: pw}\n", "nsx.host: missing"),
        (
            "nsx: {host: 'http://h', username: u, password_file: pw}\n",
            "nsx.host: NSX is reached over https",
        ),
        ("nsx: {host: h, password_file: pw}\n", "nsx.username: missing"),
        ("nsx: {host: h, username: u}\n", "nsx.password_file: missing"),
        ("nsx: {host: h, username: u, password_file: nope}\n", "nsx.password_file: cannot read"),
        ("nsx: {host: h, username: u, password_file: pw, auth: kerberos}\n", "nsx.auth: expected"),
        ("nsx: {host: h, auth: certificate}\n", "nsx.client_cert_file"),
        ("nsx: {host: h, username: u, password_file: pw, ca_file: missing.pem}\n", "nsx.ca_file"),
        ("nsx: {host: h, username: u, password_file: pw, routers: [tier-1]}\n", "nsx.routers[0]"),
        ("nsx: {host: h, username: u, password_file: pw, hots: x}\n", "nsx.hots: unknown key"),
        (
            "nsx: {host: h, username: u, password_file: pw, max_concurrency: 40}\n",
            "nsx.max_concurrency: expected a number from 1 to 39",
        ),
        (
            "nsx: {host: h, username: u, password_file: pw, max_concurrency: 0}\n",
            "nsx.max_concurrency: expected a number from 1 to 39",
        ),
        (
            "nsx: {host: h, username: u, password_file: pw,\n"
            "      concurrency: 12, max_concurrency: 10}\n",
            "nsx.max_concurrency: 10 is below nsx.concurrency (12)",
        ),
        (
            "nsx: {host: h, username: u, password_file: pw}\n"
            "clusters: [{name: a, kubeconfig: 3}]\n",
            "clusters[0].kubeconfig",
        ),
        (
            "nsx: {host: h, username: u, password_file: pw}\n"
            "clusters: [{name: a, kubeconfig: k, pod_cidrs: [10.0.0.0/33]}]\n",
            "clusters[0].pod_cidrs[0]: '10.0.0.0/33' is not a CIDR",
        ),
        (
            "nsx: {host: h, username: u, password_file: pw}\n"
            "clusters: [{name: a, kubeconfig: k}, {name: a, kubeconfig: k}]\n",
            "clusters: cluster 'a' is listed twice",
        ),
        (
            "nsx: {host: h, username: u, password_file: pw}\nretired_clusters: [{name: a}]\n",
            "retired_clusters[0].pod_cidrs",
        ),
        (
            "nsx: {host: h, username: u, password_file: pw}\npolicy: {min_age: soon}\n",
            "policy.min_age",
        ),
        (
            "nsx: {host: h, username: u, password_file: pw}\npolicy: {max_deletes: -1}\n",
            "policy.max_deletes",
        ),
        (
            "nsx: {host: h, username: u, password_file: pw}\npolicy: {max_delete_percent: 150}\n",
            "policy.max_delete_percent",
        ),
        (
            "nsx: {host: h, username: u, password_file: pw}\npolicy: {unattributed: yes}\n",
            "policy.unattributed",
        ),
        (
            "nsx: {host: h, username: u, password_file: pw}\npolicy: {max_delets: 1}\n",
            "policy.max_delets: unknown key",
        ),
        (
            "nsx: {host: h, username: u, password_file: pw}\nstate: {configmap: justname}\n",
            "state.configmap",
        ),
        ("nsx: {host: h\n", "not valid YAML (line"),
    ],
)
def test_bad_input_is_one_line_naming_the_key(tmp_path: Path, text: str, names: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), {})
    message = str(err.value)
    assert names in message
    assert "\n" not in message
    assert str(tmp_path / "config.yaml") in message
    assert CANARY not in message


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read configuration"):
        load_config(tmp_path / "nope.yaml", {})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("nsx.example.com", "https://nsx.example.com"),
        ("nsx.example.com:8443", "https://nsx.example.com:8443"),
        ("https://nsx.example.com:8443/", "https://nsx.example.com:8443"),
        ("10.44.55.101", "https://10.44.55.101"),
        ("[fd00::1]:443", "https://[fd00::1]:443"),
        (
            "nsx-1-2-3-4.rp.vmwarevmc.com/vmc/reverse-proxy/api/orgs/o1/sddcs/s1/sks-nsxt-manager",
            "https://nsx-1-2-3-4.rp.vmwarevmc.com/vmc/reverse-proxy/api/orgs/o1/sddcs/s1/"
            "sks-nsxt-manager",
        ),
        ("https://h:8443/base/", "https://h:8443/base"),
        ("h:1", "https://h:1"),
        ("h:65535", "https://h:65535"),
        ("[fd00::1]", "https://[fd00::1]"),
        ("h//", "https://h"),
        ("https://h/a/b", "https://h/a/b"),
    ],
)
def test_host_forms(given: str, expected: str) -> None:
    assert normalise_host(given) == expected


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("", "expected host"),
        ("h:0", "invalid port"),
        ("h:99999", "invalid port"),
        ("https://h/path?x=1", "invalid base path"),
        ("https://h/a/../b", "invalid base path"),
        ("https://h//b", "invalid base path"),
        ("user@h", "expected host"),
    ],
)
def test_bad_hosts(bad: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        normalise_host(bad)


@pytest.mark.parametrize(
    ("given", "seconds"),
    [("90s", 90), ("30m", 1800), ("1h", 3600), ("2d", 172800), (45, 45), ("0", 0)],
)
def test_durations(given: object, seconds: int) -> None:
    assert parse_duration(given) == timedelta(seconds=seconds)


def test_secret_never_shows_itself() -> None:
    s = Secret(CANARY)
    assert CANARY not in repr(s)
    assert CANARY not in str(s)
    assert CANARY not in f"{s}"
    assert s.reveal() == CANARY


# --- auth: vmc ---------------------------------------------------------------------------

PROXY = "nsx-1-2-3-4.rp.vmwarevmc.com/vmc/reverse-proxy/api/orgs/o1/sddcs/s1/sks-nsxt-manager"
VMC = f"""
nsx:
  host: {PROXY}
  auth: vmc
  vmc_access_token_file: token
  routers: [/infra/tier-1s/cgw]
"""
AUTHORIZE = "/csp/gateway/am/api/auth/api-tokens/authorize"


def vmc_config(tmp_path: Path, text: str = VMC, **environ: str) -> NsxSettings:
    (tmp_path / "token").write_text("canary-file-T0KEN\n")
    return load_config(write(tmp_path, text), environ).config.nsx


def test_vmc_reads_the_token_file_and_defaults_the_auth_host(tmp_path: Path) -> None:
    nsx = vmc_config(tmp_path)

    assert nsx.auth == "vmc"
    assert nsx.base_url == f"https://{PROXY}"
    assert nsx.vmc_token == Secret("canary-file-T0KEN")
    assert nsx.vmc_auth_url == f"https://console.cloud.vmware.com{AUTHORIZE}"
    assert nsx.vmc_auth_verify is True  # the system trust store, never nsx.ca_file
    assert nsx.username is None
    assert nsx.password is None


def test_vmc_environment_wins_and_requests_ca_bundle_verifies_the_auth_host(
    tmp_path: Path,
) -> None:
    nsx = vmc_config(
        tmp_path,
        NSXT_VMC_ACCESS_TOKEN="canary-env-T0KEN",
        NSXT_VMC_AUTH_HOST="console-stg.cloud.vmware.com",
        REQUESTS_CA_BUNDLE="/etc/ssl/corp.pem",
    )

    assert nsx.vmc_token == Secret("canary-env-T0KEN")
    assert nsx.vmc_auth_url == f"https://console-stg.cloud.vmware.com{AUTHORIZE}"
    assert nsx.vmc_auth_verify == "/etc/ssl/corp.pem"


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("console.cloud.vmware.com", f"https://console.cloud.vmware.com{AUTHORIZE}"),
        # The CCM and terraform take host and path: used as given.
        (f"console.cloud.vmware.com{AUTHORIZE}", f"https://console.cloud.vmware.com{AUTHORIZE}"),
        (
            "https://h:8443/csp/gateway/am/api/auth/authorize",
            "https://h:8443/csp/gateway/am/api/auth/authorize",
        ),
    ],
)
def test_vmc_auth_host_forms(tmp_path: Path, given: str, url: str) -> None:
    nsx = vmc_config(tmp_path, VMC + f"  vmc_auth_host: {given}\n")
    assert nsx.vmc_auth_url == url


@pytest.mark.parametrize(
    ("extra", "environ", "names"),
    [
        ("  vmc_auth_host: http://h\n", {}, "nsx.vmc_auth_host: the VMC auth host is reached over"),
        ("  vmc_auth_host: h/elsewhere\n", {}, "nsx.vmc_auth_host: expected a path under /csp"),
        ("", {"NSXT_VMC_AUTH_HOST": "h?x=1"}, "NSXT_VMC_AUTH_HOST: expected a host"),
    ],
)
def test_bad_vmc_auth_hosts_name_the_key(
    tmp_path: Path, extra: str, environ: dict[str, str], names: str
) -> None:
    with pytest.raises(ConfigError, match=names):
        vmc_config(tmp_path, VMC + extra, **environ)


def test_vmc_without_a_token_names_both_sources(tmp_path: Path) -> None:
    text = VMC.replace("  vmc_access_token_file: token\n", "")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), {})
    assert "nsx.vmc_access_token_file" in str(caught.value)
    assert "NSXT_VMC_ACCESS_TOKEN" in str(caught.value)


def test_a_token_in_the_environment_means_vmc_unless_auth_says_otherwise(tmp_path: Path) -> None:
    text = f"nsx:\n  host: {PROXY}\n"
    loaded = load_config(write(tmp_path, text), {"NSXT_VMC_ACCESS_TOKEN": "canary-env-T0KEN"})
    assert loaded.config.nsx.auth == "vmc"

    text = "nsx:\n  host: h\n  username: admin\n  password_file: pw\n  auth: session\n"
    loaded = load_config(write(tmp_path, text), {"NSXT_VMC_ACCESS_TOKEN": "canary-env-T0KEN"})
    assert loaded.config.nsx.auth == "session"
    assert loaded.config.nsx.vmc_token is None
    assert any("VMC API token" in w for w in loaded.warnings)


NO_KUBECONFIG = """
nsx: {host: h, username: u, password_file: pw}
clusters:
  - name: cl2
"""


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        # kubectl's order: the first file of $KUBECONFIG (a colon list), else ~/.kube/config.
        ({"KUBECONFIG": "/k/one.yaml:/k/two.yaml"}, Path("/k/one.yaml")),
        ({"KUBECONFIG": ":/k/two.yaml"}, Path("/k/two.yaml")),
        ({"KUBECONFIG": "", "HOME": "/home/op"}, Path("/home/op/.kube/config")),
        ({"HOME": "/home/op"}, Path("/home/op/.kube/config")),
    ],
)
def test_a_cluster_without_kubeconfig_uses_kubectls_default(
    tmp_path: Path, environ: dict[str, str], expected: Path
) -> None:
    cluster = load_config(write(tmp_path, NO_KUBECONFIG), environ).config.clusters[0]
    assert cluster.kubeconfig == expected
    assert cluster.context is None  # the file's current context


# --- issue 13: configuration traps and one-line errors -----------------------------------


# --- the guards, one operator rule each (issue 16) -----------------------------------------

BASE = "nsx: {host: h, username: u, password_file: pw}\n"


def test_a_duplicate_key_is_an_error_not_a_silent_replacement(tmp_path: Path) -> None:
    text = BASE + "policy:\n  protect: {route_ids: [keep-me]}\npolicy:\n  max_deletes: 9\n"
    with pytest.raises(ConfigError, match=r"line 4\): found duplicate key 'policy'"):
        load_config(write(tmp_path, text), {})


def test_a_nested_duplicate_key_is_an_error_too(tmp_path: Path) -> None:
    text = BASE + "policy:\n  unattributed: report\n  unattributed: delete\n"
    with pytest.raises(ConfigError, match="duplicate key 'unattributed'"):
        load_config(write(tmp_path, text), {})


def test_yaml_aliases_are_refused(tmp_path: Path) -> None:
    text = BASE + "retired_clusters: &r [{name: a, pod_cidrs: [10.0.0.0/8]}]\nclusters: *r\n"
    with pytest.raises(ConfigError, match="aliases are refused"):
        load_config(write(tmp_path, text), {})


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (".inf", "longer than 3650d"),
        ('"1e400"', "longer than 3650d"),
        ("1e10d", "longer than 3650d"),
        ("1e400s", "longer than 3650d"),
        ("-.inf", "cannot be negative"),
        ("abc", "a duration such as"),
        (".nan", "a duration such as"),
        ("-5", "cannot be negative"),
        ('"-1h"', "cannot be negative"),
        ("-0.5", "cannot be negative"),
        ("100000d", "longer than 3650d"),
    ],
)
def test_durations_out_of_range_are_one_line(tmp_path: Path, value: str, why: str) -> None:
    text = BASE + f"policy: {{min_age: {value}}}\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), {})
    assert str(caught.value).endswith(f"policy.min_age: {why}") or why in str(caught.value)
    assert "\n" not in str(caught.value)


def test_parse_duration_never_overflows() -> None:
    for value in (float("inf"), 1e400, "1e400", "1e10d", 10**400, float("nan")):
        with pytest.raises(ValueError, match=r"^(expected a duration|longer than 3650d)"):
            parse_duration(value)


def test_a_config_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    path.write_bytes(b"nsx: {host: \xff\xfe}\n")
    with pytest.raises(ConfigError, match=r"config.yaml: configuration not UTF-8 text$"):
        load_config(path, {})


def test_an_endless_config_is_refused_after_a_bounded_read() -> None:
    with pytest.raises(ConfigError, match=r"^/dev/zero: configuration larger than 1 MiB"):
        load_config(Path("/dev/zero"), {})


def test_an_endless_password_file_is_refused(tmp_path: Path) -> None:
    text = "nsx: {host: h, username: u, password_file: /dev/zero}\n"
    with pytest.raises(ConfigError, match=r"nsx.password_file: /dev/zero: larger than 64 KiB"):
        load_config(write(tmp_path, text), {})


def test_a_password_file_is_stripped_and_both_forms_are_scrubbed(tmp_path: Path) -> None:
    from nsx_route_gc import logs  # noqa: PLC0415 - the registry is global; see the end

    path = write(tmp_path, BASE)
    (tmp_path / "pw").write_text("Tr4iling-Sp@ce-pw \t\r\n")
    c = load_config(path, {}).config
    assert c.nsx.password == Secret("Tr4iling-Sp@ce-pw")
    assert logs.scrub("login Tr4iling-Sp%40ce-pw failed") == "login *** failed"


def test_routers_must_be_plain_tier1_paths(tmp_path: Path) -> None:
    for bad in ("/infra/tier-1s/../tier-0s/t0", "/infra/tier-0s/t0", "/infra/tier-1s/a b"):
        text = f"nsx: {{host: h, username: u, password_file: pw, routers: ['{bad}']}}\n"
        with pytest.raises(ConfigError, match=r"nsx.routers\[0\]: .* is not a Tier-1 policy"):
            load_config(write(tmp_path, text), {})
    text = BASE.replace("}", ", routers: [/orgs/default/projects/p1/infra/tier-1s/t1]}")
    assert load_config(write(tmp_path, text), {}).config.nsx.routers == (
        "/orgs/default/projects/p1/infra/tier-1s/t1",
    )


def test_cluster_api_allow_http(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, BASE + "cluster_api: {allow_http: true}\n"), {}).config
    assert c.cluster_api is not None
    assert c.cluster_api.allow_http is True
    c = load_config(write(tmp_path, BASE + "cluster_api: {}\n"), {}).config
    assert c.cluster_api is not None
    assert c.cluster_api.allow_http is False


@pytest.mark.parametrize(
    ("written", "allowed"),
    [("false", False), ("'false'", False), ("'no'", False), ("'off'", False), ("'true'", True)],
)
def test_allow_overwrite_written_as_a_string_means_what_it_says(
    tmp_path: Path, written: str, allowed: bool
) -> None:
    """policy.allow_overwrite: "false" (quoted, as Helm and env substitution write it) must
    not switch on the override of principal-identity routes."""
    text = f"{BASE}policy: {{allow_overwrite: {written}}}\n"
    assert load_config(write(tmp_path, text), {}).config.policy.allow_overwrite is allowed


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (f"{BASE}policy: {{min_age: -1h}}\n", "policy.min_age"),
        (f"{BASE}policy: {{cluster_gone_after: '-30m'}}\n", "policy.cluster_gone_after"),
        (f"{BASE}policy: {{protect: {{route_id: [r1]}}}}\n", "policy.protect.route_id"),
        (f"{BASE}polcy: {{max_deletes: 1}}\n", "polcy: unknown key"),
        (
            f"{BASE}clusters: [{{name: cl1, kubeconfig: k}}]\n"
            "retired_clusters: [{name: cl1, pod_cidrs: [172.16.136.0/21]}]\n",
            "'cl1' is also listed under clusters",
        ),
    ],
)
def test_input_that_would_weaken_a_guard_is_refused(tmp_path: Path, text: str, names: str) -> None:
    """A negative grace period, a misspelt protection or policy key (its protection silently
    unset), a cluster both live and retired: each is one line naming the key, never a run."""
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), {})
    message = str(err.value)
    assert names in message
    assert "\n" not in message
    assert str(tmp_path / "config.yaml") in message


def _key_names_in_message(tmp_path: Path, text: str, names: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), {})
    message = str(err.value)
    assert f"{tmp_path / 'config.yaml'}: {names}" in message, message
    assert "\n" not in message
    assert CANARY not in message


NSX_OK = "nsx: {host: h, username: u, password_file: pw"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        # Every key, each with a value it refuses: the one line names the file and the key.
        (f"{NSX_OK}, insecure: maybe}}\n", "nsx.insecure: expected true or false"),
        (f"{NSX_OK}, insecure: 1}}\n", "nsx.insecure: expected true or false"),
        (f"{NSX_OK}, timeout: 0}}\n", "nsx.timeout: expected a number from 1 to 600"),
        (f"{NSX_OK}, timeout: 601}}\n", "nsx.timeout: expected a number from 1 to 600"),
        (f"{NSX_OK}, timeout: true}}\n", "nsx.timeout: expected a number"),
        (f"{NSX_OK}, timeout: '30'}}\n", "nsx.timeout: expected a number"),
        (f"{NSX_OK}, page_size: 1001}}\n", "nsx.page_size: expected a number from 1 to 1000"),
        (f"{NSX_OK}, rate_limit: 0.5}}\n", "nsx.rate_limit: expected a number from 1 to 10000"),
        (f"{NSX_OK}, concurrency: 40}}\n", "nsx.concurrency: expected a number from 1 to 39"),
        (f"{NSX_OK}, max_attempts: 21}}\n", "nsx.max_attempts: expected a number from 1 to 20"),
        ("nsx: {host: h, username: '', password_file: pw}\n", "nsx.username: expected a non-empty"),
        (f"{NSX_OK}, auth: ''}}\n", "nsx.auth: expected a non-empty string"),
        (f"{NSX_OK}, routers: tier-1}}\n", "nsx.routers: expected a list, got str"),
        (f"{NSX_OK}, routers: [7]}}\n", "nsx.routers[0]: expected a non-empty string"),
        (f"{NSX_OK}, routers: 5}}\n", "nsx.routers: expected a list, got int"),
        (f"{NSX_OK}}}\nclusters: {{cl2: {{}}}}\n", "clusters: expected a list, got dict"),
        ("nsx: [h]\n", "nsx: expected a mapping, got list"),
        ("[1]\n", "top level: expected a mapping, got list"),
        (f"{NSX_OK}}}\nclusters: cl2\n", "clusters: expected a list, got str"),
        (f"{NSX_OK}}}\nclusters: [{{name: '', kubeconfig: k}}]\n", "clusters[0].name"),
        (
            f"{NSX_OK}}}\nclusters: [{{name: a, kubeconfig: k, context: 3}}]\n",
            "clusters[0].context",
        ),
        (
            f"{NSX_OK}}}\nclusters: [{{name: a, kubeconfig: k, pod_cidrs: x}}]\n",
            "clusters[0].pod_cidrs: expected a list",
        ),
        (
            f"{NSX_OK}}}\nclusters: [{{name: a, kubeconfig: k, podcidrs: []}}]\n",
            "clusters[0].podcidrs: unknown key",
        ),
        (f"{NSX_OK}}}\nretired_clusters: x\n", "retired_clusters: expected a list, got str"),
        (
            f"{NSX_OK}}}\nretired_clusters: [{{name: a, pod_cidrs: [10.0.0.0/8]}},"
            " {name: a, pod_cidrs: [10.0.0.0/8]}]\n",
            "retired_clusters: cluster 'a' is listed twice",
        ),
        (f"{NSX_OK}}}\ncluster_api: {{kubeconfig: ''}}\n", "cluster_api.kubeconfig"),
        (f"{NSX_OK}}}\ncluster_api: {{namespaces: [1]}}\n", "cluster_api.namespaces[0]"),
        (f"{NSX_OK}}}\ncluster_api: {{namespace: [a]}}\n", "cluster_api.namespace: unknown key"),
        (f"{NSX_OK}}}\nstate: {{file: ''}}\n", "state.file: expected a non-empty string"),
        (f"{NSX_OK}}}\nmetrics: {{job: ''}}\n", "metrics.job: expected a non-empty string"),
        (f"{NSX_OK}}}\nmetrics: {{pushgateway: 3}}\n", "metrics.pushgateway"),
        (
            f"{NSX_OK}}}\ninventory_concurrency: 0\n",
            "inventory_concurrency: expected a whole number >= 1",
        ),
        (
            f"{NSX_OK}}}\ninventory_concurrency: true\n",
            "inventory_concurrency: expected a whole number",
        ),
        (
            f"{NSX_OK}}}\npolicy: {{max_deletes: true}}\n",
            "policy.max_deletes: expected a whole number >= 0",
        ),
        (
            f"{NSX_OK}}}\npolicy: {{max_deletes: 1.5}}\n",
            "policy.max_deletes: expected a whole number >= 0",
        ),
        (
            f"{NSX_OK}}}\npolicy: {{max_delete_percent: -1}}\n",
            "policy.max_delete_percent: expected a number from 0 to 100",
        ),
        (f"{NSX_OK}}}\npolicy: {{max_delete_percent: true}}\n", "policy.max_delete_percent"),
        (
            f"{NSX_OK}}}\npolicy: {{allow_overwrite: maybe}}\n",
            "policy.allow_overwrite: expected true or false",
        ),
        (
            f"{NSX_OK}}}\npolicy: {{protect: {{tag_scopes: ['']}}}}\n",
            "policy.protect.tag_scopes[0]",
        ),
        (
            f"{NSX_OK}}}\npolicy: {{protect: {{route_ids: r1}}}}\n",
            "policy.protect.route_ids: expected a list",
        ),
        (f"{NSX_OK}}}\npolicy: {{protect: {{networks: [x]}}}}\n", "policy.protect.networks[0]"),
        (f"{NSX_OK}}}\npolicy: {{protect: [x]}}\n", "policy.protect: expected a mapping"),
        (f"{NSX_OK}}}\npolicy: {{min_age: 1w}}\n", "policy.min_age: expected a duration"),
        (f"{NSX_OK}}}\npolicy: {{min_age: h}}\n", "policy.min_age: expected a duration"),
    ],
)
def test_every_key_refuses_a_bad_value_naming_itself(tmp_path: Path, text: str, names: str) -> None:
    _key_names_in_message(tmp_path, text, names)


@pytest.mark.parametrize(
    ("text", "check"),
    [
        (f"{NSX_OK}, insecure: 'yes'}}\n", lambda c: c.nsx.insecure is True),
        (f"{NSX_OK}, insecure: 'off'}}\n", lambda c: c.nsx.insecure is False),
        (
            f"{NSX_OK}, timeout: 1, page_size: 1000}}\n",
            lambda c: (c.nsx.timeout, c.nsx.page_size) == (1, 1000),
        ),
        (f"{NSX_OK}}}\ninventory_concurrency: 1\n", lambda c: c.cluster_concurrency == 1),
        (f"{NSX_OK}}}\n", lambda c: c.cluster_concurrency == 8),
        (
            f"{NSX_OK}}}\npolicy: {{max_deletes: 0, max_delete_percent: 0}}\n",
            lambda c: (c.policy.max_deletes, c.policy.max_delete_percent) == (0, 0),
        ),
        (
            f"{NSX_OK}}}\npolicy: {{min_age: ' 2H '}}\n",
            lambda c: c.policy.min_age == timedelta(hours=2),
        ),
        (
            f"{NSX_OK}}}\npolicy: {{min_age: 1.5h}}\n",
            lambda c: c.policy.min_age == timedelta(minutes=90),
        ),
        (f"{NSX_OK}}}\n", lambda c: c.policy.cluster_gone_after == timedelta(hours=1)),
        (
            f"{NSX_OK}}}\npolicy: {{protect: {{tag_scopes: [a, b]}}}}\n",
            lambda c: c.policy.protect_tag_scopes == ("a", "b"),
        ),
        (
            f"{NSX_OK}}}\nstate: {{file: s/c.json}}\n",
            lambda c: c.state.file is not None and c.state.file.is_absolute(),
        ),
    ],
)
def test_values_at_the_edges_are_taken_as_written(
    tmp_path: Path, text: str, check: Callable[[Config], bool]
) -> None:
    assert check(load_config(write(tmp_path, text), {}).config)


EVERY_KEY = """
nsx:
  host: nsx.example.com:8443
  username: admin
  password_file: pw
  auth: basic
  ca_file: ca.pem
  insecure: false
  routers: [/infra/tier-1s/a, /infra/tier-1s/b]
  timeout: 12
  page_size: 250
  rate_limit: 40
  concurrency: 3
  max_attempts: 2
clusters:
  - name: cl2
    kubeconfig: kube/cl2.yaml
    context: ctx2
    pod_cidrs: [172.16.144.0/21, fd00:10:244::/56]
  - name: in
    kubeconfig: in-cluster
retired_clusters:
  - name: cl1
    pod_cidrs: [172.16.136.0/21]
cluster_api:
  kubeconfig: kube/mgmt.yaml
  context: mgmt-admin
  namespaces: [default, tkg-prod]
  allow_http: true
metrics:
  pushgateway: http://pushgateway:9091
  job: route-gc-lab
inventory_concurrency: 3
"""


def test_every_key_is_read_into_the_configuration_as_written(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, EVERY_KEY), {}).config
    n = c.nsx
    assert (n.base_url, n.auth, n.insecure) == ("https://nsx.example.com:8443", "basic", False)
    assert n.routers == ("/infra/tier-1s/a", "/infra/tier-1s/b")
    assert (n.timeout, n.page_size, n.rate_limit, n.concurrency, n.max_attempts) == (
        12,
        250,
        40,
        3,
        2,
    )
    cl2, inside = c.clusters
    assert (cl2.name, cl2.kubeconfig, cl2.context) == ("cl2", tmp_path / "kube/cl2.yaml", "ctx2")
    assert cl2.pod_cidrs == ("172.16.144.0/21", "fd00:10:244::/56")
    assert (inside.name, inside.kubeconfig, inside.context, inside.pod_cidrs) == (
        "in",
        None,
        None,
        (),
    )
    assert c.retired_clusters == (RetiredCluster("cl1", ("172.16.136.0/21",)),)
    assert c.cluster_api == ClusterApiConfig(
        tmp_path / "kube/mgmt.yaml", "mgmt-admin", ("default", "tkg-prod"), allow_http=True
    )
    assert (c.metrics.pushgateway, c.metrics.job) == ("http://pushgateway:9091", "route-gc-lab")
    assert c.cluster_concurrency == 3
    assert c.source == str(tmp_path / "config.yaml")


def test_a_cluster_api_section_defaults_to_in_cluster_all_namespaces_https_only(
    tmp_path: Path,
) -> None:
    c = load_config(write(tmp_path, f"{NSX_OK}}}\ncluster_api: {{}}\n"), {}).config
    assert c.cluster_api == ClusterApiConfig(None, None, (), allow_http=False)
    assert load_config(write(tmp_path, f"{NSX_OK}}}\n"), {}).config.cluster_api is None


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (
            f"{NSX_OK}}}\ncluster_api: {{context: ''}}\n",
            "cluster_api.context: expected a non-empty",
        ),
        (
            f"{NSX_OK}}}\ncluster_api: {{allow_http: maybe}}\n",
            "cluster_api.allow_http: expected true",
        ),
        (f"{NSX_OK}}}\ncluster_api: [x]\n", "cluster_api: expected a mapping, got list"),
        (
            f"{NSX_OK}}}\nclusters: [{{name: a, kubeconfig: ''}}]\n",
            "clusters[0].kubeconfig: expected",
        ),
        (f"{NSX_OK}}}\nclusters: [x]\n", "clusters[0]: expected a mapping, got str"),
        (f"{NSX_OK}}}\nretired_clusters: [x]\n", "retired_clusters[0]: expected a mapping"),
        (
            f"{NSX_OK}}}\nretired_clusters: [{{name: a, cidrs: []}}]\n",
            "retired_clusters[0].cidrs: unknown key",
        ),
        (
            f"{NSX_OK}}}\nretired_clusters: [{{name: '', pod_cidrs: [10.0.0.0/8]}}]\n",
            "retired_clusters[0].name",
        ),
        (
            f"{NSX_OK}}}\nretired_clusters: [{{name: a, pod_cidrs: [x]}}]\n",
            "retired_clusters[0].pod_cidrs[0]",
        ),
        (
            f"{NSX_OK}}}\nretired_clusters: [{{name: a}}]\n",
            "retired_clusters[0].pod_cidrs: a retired cluster needs its pod CIDRs"
            " (or its --tkg-config)",
        ),
    ],
)
def test_every_cluster_key_refuses_a_bad_value_naming_itself(
    tmp_path: Path, text: str, names: str
) -> None:
    _key_names_in_message(tmp_path, text, names)


def test_a_secret_equals_only_the_same_secret() -> None:
    assert Secret(CANARY) == Secret(CANARY)
    assert Secret(CANARY) != Secret("other")
    assert Secret(CANARY) != CANARY  # never compared with (or leaked into) plain text
    assert len({Secret(CANARY), Secret(CANARY), Secret("other")}) == 2
    assert repr(Secret(CANARY)) == "Secret('***')"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (f"{NSX_OK}}}\npolicy: [x]\n", "policy: expected a mapping, got list"),
        (
            f"{NSX_OK}}}\npolicy: {{unattributed: ''}}\n",
            "policy.unattributed: expected a non-empty",
        ),
        (
            f"{NSX_OK}}}\npolicy: {{cluster_gone_after: soon}}\n",
            "policy.cluster_gone_after: expected",
        ),
    ],
)
def test_every_policy_key_refuses_a_bad_value_naming_itself(
    tmp_path: Path, text: str, names: str
) -> None:
    _key_names_in_message(tmp_path, text, names)


@pytest.mark.parametrize(
    ("given", "seconds"),
    [("120", 120), (3600, 3600), (1.5, 1.5), ("3650d", 3650 * 86400), (315360000, 315360000)],
)
def test_a_duration_up_to_ten_years_is_taken_as_written(given: object, seconds: float) -> None:
    assert parse_duration(given) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("-1h", "a duration cannot be negative"),
        (-5, "a duration cannot be negative"),
        (-(10**20), "a duration cannot be negative"),
        ("3651d", "longer than 3650d"),
        (315360001, "longer than 3650d"),
        (10**400, "longer than 3650d"),
        ("nan", "expected a duration"),
        ([1], "expected a duration"),
        (None, "expected a duration"),
    ],
)
def test_a_duration_out_of_range_is_refused_saying_why(given: object, why: str) -> None:
    with pytest.raises(ValueError, match=f"^{why}"):
        parse_duration(given)


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("console.cloud.vmware.com", f"https://console.cloud.vmware.com{VMC_AUTH_PATH}"),
        (" console.cloud.vmware.com/ ", f"https://console.cloud.vmware.com{VMC_AUTH_PATH}"),
        ("HTTPS://csp.example/csp/gateway/am/x/", "https://csp.example/csp/gateway/am/x"),
    ],
)
def test_the_vmc_auth_host_gives_the_token_url(given: str, url: str) -> None:
    assert vmc_auth_url(given) == url


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "/",
        "user@csp.example",
        "csp example",
        "csp.example?x=1",
        "csp.example#x",
        "http://csp.example",
    ],
)
def test_a_vmc_auth_host_that_is_not_a_plain_https_host_is_refused(bad: str) -> None:
    with pytest.raises(
        ValueError, match=r"^(expected a host|the VMC auth host is reached over https)"
    ):
        vmc_auth_url(bad)


def test_the_guards_default_to_their_safe_side(tmp_path: Path) -> None:
    """What the operator leaves out never loosens a guard: no overriding of principal
    routes, unattributed routes only reported, one hour of grace both ways."""
    p = load_config(write(tmp_path, f"{NSX_OK}}}\n"), {}).config.policy
    assert p.allow_overwrite is False
    assert p.unattributed == "report"
    assert (p.min_age, p.cluster_gone_after) == (timedelta(hours=1), timedelta(hours=1))
    assert (p.max_deletes, p.max_delete_percent) == (100, 50)
    _key_names_in_message(
        tmp_path,
        f"{NSX_OK}}}\npolicy: {{unattributed: maybe}}\n",
        "policy.unattributed: expected report or delete",
    )


def test_tkg_pod_cidrs_join_the_clusters_of_those_names_once(tmp_path: Path) -> None:
    text = (
        f"{NSX_OK}}}\nclusters: [{{name: cl2, kubeconfig: k, pod_cidrs: [172.16.144.0/21]}}]\n"
        "retired_clusters: [{name: cl1, pod_cidrs: [172.16.136.0/21]}]\n"
    )
    extra = {"cl2": ("172.16.144.0/21", "fd00::/56"), "cl1": ("10.1.0.0/16",)}
    loaded = load_config(write(tmp_path, text), {}, {**extra, "cl9": ("10.9.0.0/16",)})
    assert loaded.warnings == (
        "TKG configuration of cluster 'cl9' ignored: it is neither under clusters "
        "nor under retired_clusters",
    )
    c = loaded.config
    assert c.clusters[0].pod_cidrs == ("172.16.144.0/21", "fd00::/56")
    assert c.retired_clusters[0].pod_cidrs == ("172.16.136.0/21", "10.1.0.0/16")
    only_tkg = load_config(
        write(tmp_path, f"{NSX_OK}}}\nretired_clusters: [{{name: cl1}}]\n"), {}, extra
    ).config
    assert only_tkg.retired_clusters[0].pod_cidrs == ("10.1.0.0/16",)


def _fresh(kind: str) -> str:
    """A credential no earlier test registered (registrations last for the process)."""
    return f"{kind}-{uuid.uuid4().hex}"


@pytest.mark.parametrize("source", ["env", "file", "file-padded"])
def test_a_password_the_configuration_reads_is_scrubbed_from_then_on(
    tmp_path: Path, source: str
) -> None:
    secret = _fresh("pw")
    written = f"  {secret}\n" if source == "file-padded" else f"{secret}\n"
    (tmp_path / "secret").write_text(written)
    text = "nsx: {host: h, username: u, password_file: secret}\n"
    environ = {"NSXT_PASSWORD": secret} if source == "env" else {}
    path = tmp_path / "config.yaml"
    path.write_text(text)
    load_config(path, environ)
    as_read = secret if source == "env" else written.rstrip()
    for form in (as_read, base64.b64encode(written.encode()).decode()):
        assert form not in logs.scrub(f"echo {form} end"), form


@pytest.mark.parametrize("source", ["env", "file"])
def test_a_vmc_token_the_configuration_reads_is_scrubbed_from_then_on(
    tmp_path: Path, source: str
) -> None:
    token = _fresh("tok")
    (tmp_path / "token").write_text(f"{token}\n")
    path = tmp_path / "config.yaml"
    path.write_text("nsx: {host: h.vmwarevmc.com, auth: vmc, vmc_access_token_file: token}\n")
    environ = {"NSXT_VMC_ACCESS_TOKEN": f"{token}\n"} if source == "env" else {}
    load_config(path, environ)
    for form in (token, base64.b64encode(f"{token}\n".encode()).decode()):
        assert form not in logs.scrub(f"echo {form} end"), form


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("h:65536", "invalid port '65536'"),
        (":443", "missing host"),
        ("h x", "expected host, host:port or https://host:port, then an optional path"),
        ("https://h/a/../b", "invalid base path /a/../b"),
        ("ftp://h", "NSX is reached over https only"),
    ],
)
def test_host_refusals_say_why(bad: str, why: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(why)}$"):
        normalise_host(bad)


def test_unreadable_or_broken_yaml_names_the_file_line_and_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read configuration: No such file"):
        load_config(tmp_path / "nope.yaml", {})
    broken = tmp_path / "config.yaml"
    broken.write_text("nsx:\n  host: h\n  username: [u\n")
    with pytest.raises(ConfigError) as err:
        load_config(broken, {})
    message = str(err.value)
    assert message.startswith(f"{broken}: not valid YAML (line ")
    assert ": " in message.split("(line ", 1)[1]


def test_an_empty_file_asks_for_the_nsx_host(tmp_path: Path) -> None:
    _key_names_in_message(tmp_path, "", "nsx.host: missing")


def test_certificate_auth_reads_both_files_from_the_configuration(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("cert")
    (tmp_path / "k.pem").write_text("key")
    text = "nsx: {host: h, auth: certificate, client_cert_file: c.pem, client_key_file: k.pem}\n"
    n = load_config(write(tmp_path, text), {}).config.nsx
    assert (n.auth, n.client_cert_file, n.client_key_file) == (
        "certificate",
        tmp_path / "c.pem",
        tmp_path / "k.pem",
    )


def test_nsx_defaults_verify_tls_and_stay_within_the_managers_limits(tmp_path: Path) -> None:
    n = load_config(write(tmp_path, f"{NSX_OK}, routers: [/infra/tier-1s/a/]}}\n"), {}).config.nsx
    assert n.insecure is False
    assert (n.timeout, n.page_size, n.rate_limit, n.concurrency, n.max_attempts) == (
        30,
        1000,
        90,
        8,
        6,
    )
    assert n.routers == ("/infra/tier-1s/a",)
    basic = load_config(write(tmp_path, f"{NSX_OK}, auth: basic}}\n"), {}).config.nsx
    assert basic.auth == "basic"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("nsx: {host: ''}\n", "nsx.host: expected a non-empty string"),
        (
            "nsx: {host: h, auth: certificate, client_cert_file: c.pem}\n",
            "nsx.client_cert_file: auth: certificate needs a cert and a key",
        ),
        (
            "nsx: {host: h, auth: certificate, client_cert_file: nope.pem, client_key_file: pw}\n",
            "nsx.client_cert_file: ",
        ),
        (
            "nsx: {host: h, auth: certificate, client_cert_file: pw, client_key_file: nope.pem}\n",
            "nsx.client_key_file: ",
        ),
        (f"{NSX_OK}, ca_file: ''}}\n", "nsx.ca_file: expected a non-empty string"),
        (
            f"{NSX_OK}, routers: [/infra/tier-0s/t0]}}\n",
            "nsx.routers[0]: '/infra/tier-0s/t0' is not a Tier-1 policy path",
        ),
    ],
)
def test_every_nsx_key_refuses_a_bad_value_naming_itself(
    tmp_path: Path, text: str, names: str
) -> None:
    (tmp_path / "c.pem").write_text("cert")
    _key_names_in_message(tmp_path, text, names)


def test_an_unknown_key_lists_the_keys_allowed_there(tmp_path: Path) -> None:
    _key_names_in_message(
        tmp_path,
        f"{NSX_OK}}}\nmetrics: {{jobs: x}}\n",
        "metrics.jobs: unknown key (allowed: job, pushgateway)",
    )


# --- the guards the mutants showed untested, second pass (issue 16) ------------------------


def test_a_password_written_in_the_file_is_scrubbed_and_the_warning_names_safer_sources(
    tmp_path: Path,
) -> None:
    secret = _fresh("plain")
    loaded = load_config(
        write(tmp_path, f"nsx: {{host: h, username: u, password: {secret}}}\n"), {}
    )
    assert secret not in logs.scrub(f"login {secret} failed")
    (warning,) = loaded.warnings
    assert warning.startswith("nsx.password ")
    assert "nsx.password_file" in warning
    assert "NSXT_PASSWORD" in warning


@pytest.mark.parametrize("written", ["12345", "''", "[a]", "{a: b}"])
def test_a_password_in_the_file_must_be_a_non_empty_string(tmp_path: Path, written: str) -> None:
    _key_names_in_message(
        tmp_path,
        f"nsx: {{host: h, username: u, password: {written}}}\n",
        "nsx.password: expected a non-empty string",
    )


CREDENTIAL_FILES = {
    "nsx.password_file": "nsx: {{host: h, username: u, password_file: {file}}}\n",
    "nsx.vmc_access_token_file": "nsx: {{host: h, auth: vmc, vmc_access_token_file: {file}}}\n",
}


@pytest.mark.parametrize("key", sorted(CREDENTIAL_FILES))
def test_a_credential_file_that_is_unusable_is_one_line_naming_the_key_and_the_file(
    tmp_path: Path, key: str
) -> None:
    config = CREDENTIAL_FILES[key]
    (tmp_path / "blank").write_text(" \n")
    _key_names_in_message(
        tmp_path, config.format(file="blank"), f"{key}: {tmp_path / 'blank'} is empty"
    )
    _key_names_in_message(
        tmp_path, config.format(file="gone"), f"{key}: cannot read {tmp_path / 'gone'}"
    )
    _key_names_in_message(
        tmp_path, config.format(file="/dev/zero"), f"{key}: /dev/zero: larger than 64 KiB"
    )
    _key_names_in_message(tmp_path, config.format(file="''"), f"{key}: expected a non-empty")


def _short(kind: str) -> str:
    """A credential of a few characters no earlier test registered."""
    return kind + uuid.uuid4().hex[:2]


@pytest.mark.parametrize(
    ("key", "written", "sent"),
    [
        # A Kubernetes Secret mounted as the file carries it base64-encoded, newline included.
        ("nsx.password_file", "{pw}\n", "{pw}"),
        # A password may begin with spaces: only what follows it goes.
        ("nsx.password_file", "  {pw}\n", "  {pw}"),
        ("nsx.vmc_access_token_file", "{pw}\n", "{pw}"),
    ],
)
def test_a_short_credential_file_is_scrubbed_as_stored_and_as_sent(
    tmp_path: Path, key: str, written: str, sent: str
) -> None:
    secret = _short("Q") if written.startswith(" ") else _short("Qz")
    stored, used = written.format(pw=secret), sent.format(pw=secret)
    (tmp_path / "cred").write_text(stored)
    loaded = load_config(write(tmp_path, CREDENTIAL_FILES[key].format(file="cred")), {})
    nsx = loaded.config.nsx
    assert (nsx.password or nsx.vmc_token) == Secret(used.strip() if "vmc" in key else used)
    for form in (used, base64.b64encode(stored.encode()).decode()):
        assert form not in logs.scrub(f"echo {form} end"), form
    assert base64.b64encode(used.encode()).decode() not in logs.scrub(
        "echo " + base64.b64encode(used.encode()).decode()
    )


def test_the_vmc_auth_host_is_verified_with_the_ca_bundle_requests_would_use(
    tmp_path: Path,
) -> None:
    assert vmc_config(tmp_path, CURL_CA_BUNDLE="/etc/ssl/curl.pem").vmc_auth_verify == (
        "/etc/ssl/curl.pem"
    )
    both = vmc_config(tmp_path, REQUESTS_CA_BUNDLE="/etc/ssl/req.pem", CURL_CA_BUNDLE="/x.pem")
    assert both.vmc_auth_verify == "/etc/ssl/req.pem"


def test_a_vmc_configuration_loads_without_warnings(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("canary-file-T0KEN\n")
    assert load_config(write(tmp_path, VMC), {}).warnings == ()


@pytest.mark.parametrize(
    ("extra", "environ", "names"),
    [
        ("  vmc_auth_host: 5\n", {}, "nsx.vmc_auth_host: expected a non-empty string"),
        ("", {"NSXT_VMC_AUTH_HOST": " "}, "NSXT_VMC_AUTH_HOST: expected a non-empty string"),
    ],
)
def test_a_vmc_auth_host_that_is_no_text_names_where_it_came_from(
    tmp_path: Path, extra: str, environ: dict[str, str], names: str
) -> None:
    (tmp_path / "token").write_text("canary-file-T0KEN\n")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, VMC + extra), environ)
    assert f"{tmp_path / 'config.yaml'}: {names}" in str(caught.value)


def test_missing_nsx_credentials_name_the_key_and_the_environment_variable(
    tmp_path: Path,
) -> None:
    _key_names_in_message(
        tmp_path,
        "nsx: {username: u}\n",
        "nsx.host: missing (set it in the file or NSXT_MANAGER_HOST)",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, VMC.replace("  vmc_access_token_file: token\n", "")), {})
    message = str(caught.value)
    assert f"{tmp_path / 'config.yaml'}: nsx.vmc_access_token_file: missing" in message
    assert "NSXT_VMC_ACCESS_TOKEN" in message


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (
            "nsx: {host: h, auth: certificate, client_cert_file: '', client_key_file: k.pem}\n",
            "nsx.client_cert_file: expected a non-empty string",
        ),
        (
            "nsx: {host: h, auth: certificate, client_cert_file: c.pem, client_key_file: ''}\n",
            "nsx.client_key_file: expected a non-empty string",
        ),
        (
            "nsx: {host: h, auth: certificate, client_cert_file: c.pem, client_key_file: no.pem}\n",
            "nsx.client_key_file: {tmp}/no.pem does not exist",
        ),
        (
            f"{NSX_OK}}}\nclusters: [{{name: a, pod_cidrs: [3]}}]\n",
            "clusters[0].pod_cidrs[0]: expected",
        ),
        (f"{NSX_OK}}}\nstate: [x]\n", "state: expected a mapping, got list"),
        (
            f"{NSX_OK}}}\nstate: {{configmaps: a/b}}\n",
            "state.configmaps: unknown key (allowed: configmap, file)",
        ),
        (f"{NSX_OK}}}\nstate: {{configmap: 3}}\n", "state.configmap: expected a non-empty string"),
        (f"{NSX_OK}}}\nstate: {{configmap: a/b/c}}\n", "state.configmap: expected namespace/name"),
        (f"{NSX_OK}}}\nmetrics: [x]\n", "metrics: expected a mapping, got list"),
        (
            f"{NSX_OK}}}\npolcy: {{}}\n",
            "polcy: unknown key (allowed: cluster_api, clusters, inventory_concurrency, metrics,"
            " nsx, policy, retired_clusters, state)",
        ),
    ],
)
def test_a_bad_value_is_one_line_naming_the_file_the_key_and_the_value_expected(
    tmp_path: Path, text: str, names: str
) -> None:
    for name in ("c.pem", "k.pem"):
        (tmp_path / name).write_text("pem")
    _key_names_in_message(tmp_path, text, names.format(tmp=tmp_path))


def test_the_state_configmap_and_metrics_job_are_taken_as_written_or_defaulted(
    tmp_path: Path,
) -> None:
    c = load_config(write(tmp_path, f"{NSX_OK}}}\n"), {}).config
    assert c.metrics.job == "nsx-route-gc"  # the Pushgateway job dashboards select on
    assert c.state.configmap is None
    text = f"{NSX_OK}}}\nstate: {{configmap: ' ops/gc-state '}}\n"
    assert load_config(write(tmp_path, text), {}).config.state.configmap == "ops/gc-state"


def test_a_config_with_a_character_yaml_forbids_is_one_line_naming_the_file(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, BASE)
    path.write_text(BASE + "# bell \x07\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert str(caught.value) == f"{path}: not valid YAML"


def test_a_config_nested_too_deeply_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    path.write_text(BASE + "policy: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert str(caught.value) == f"{path}: YAML nested too deeply"


def test_names_in_capitals_are_kept_as_written(tmp_path: Path) -> None:
    """Only a trailing slash goes from a host, an auth host or a router path; an id or host
    in capitals (NSX ids are case-sensitive) is the one the operator wrote."""
    assert normalise_host("https://VCF-NSX/") == "https://VCF-NSX"
    assert vmc_auth_url("CSP-VCF-NSX/") == f"https://CSP-VCF-NSX{VMC_AUTH_PATH}"
    text = f"{NSX_OK}, routers: [/infra/tier-1s/T1-BOX/, /infra/tier-1s/X]}}\n"
    assert load_config(write(tmp_path, text), {}).config.nsx.routers == (
        "/infra/tier-1s/T1-BOX",
        "/infra/tier-1s/X",
    )
