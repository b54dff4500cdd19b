"""vsphere.conf as the vSphere CCM reads it: YAML first, gcfg INI on any failure."""

from __future__ import annotations

import pytest

from nsx_route_gc.clusters.vsphere_conf import (
    MAX_CONF_BYTES,
    VsphereConf,
    VsphereConfError,
    parse_vsphere_conf,
)

SECRET = "pw-Canary-81f3"

# What TKG's vsphere-cpi package renders for a plan-based cluster (vsphereconf.lib.txt).
TKG_INI = """[Global]
secret-name = "cloud-provider-vsphere-credentials"
secret-namespace = "kube-system"
thumbprint = "AA:BB"

[VirtualCenter "vc.example.com"]
datacenters = "/dc0"
thumbprint = "AA:BB"

[Route]
router-path = "/infra/tier-1s/tanzu-cl1"

[NSXT]
host = "nsx.example.com"
insecure-flag = false
remote-auth = false
secret-name = "cloud-provider-vsphere-nsxt-credentials"
secret-namespace = "kube-system"
"""

# The CCM's YAML form (types_yaml.go of the route and nsxt config packages).
CCM_YAML = """global:
  insecureFlag: true
  secretName: cloud-provider-vsphere-credentials
  secretNamespace: kube-system
vcenter:
  vc1:
    server: vc.example.com
    datacenters: [/dc0]
route:
  routerPath: /infra/tier-1s/tanzu-cl1
nsxt:
  host: nsx.example.com
  insecureFlag: false
  remoteAuth: false
  secretName: cloud-provider-vsphere-nsxt-credentials
  secretNamespace: kube-system
"""

TKG_NO_ROUTING = TKG_INI.split("[Route]", maxsplit=1)[0]
T1 = "/infra/tier-1s/tanzu-cl1"


def nsxt_ini(*lines: str, route: str = f'router-path = "{T1}"') -> str:
    return "[Global]\nuser = x\n[Route]\n" + route + "\n[NSXT]\n" + "\n".join(lines) + "\n"


CASES: list[tuple[str, str, str | None, str | None, str]] = [
    # (case, text, router path, NSX host, form)
    ("tkg ini", TKG_INI, T1, "nsx.example.com", "ini"),
    ("ccm yaml", CCM_YAML, T1, "nsx.example.com", "yaml"),
    ("ini without pod routing", TKG_NO_ROUTING, None, None, "ini"),
    ("yaml without pod routing", CCM_YAML.split("route:", maxsplit=1)[0], None, None, "yaml"),
    # gcfg: names are case-insensitive, quotes may cover part of a value, comments anywhere
    (
        "ini case and comments",
        '[ROUTE] ; the route\nRouter-Path = /infra/tier-1s/"tanzu cl1" # mine\n',
        "/infra/tier-1s/tanzu cl1",
        None,
        "ini",
    ),
    (
        "ini escapes in quotes",
        '[route]\nrouter-path = "/infra/tier-1s/a\\"b"\n',
        '/infra/tier-1s/a"b',
        None,
        "ini",
    ),
    (
        "ini continued line",
        "[route]\nrouter-path = /infra/\\\ntier-1s/t1\n",
        "/infra/tier-1s/t1",
        None,
        "ini",
    ),
    (
        "ini last value wins",
        "[route]\nrouter-path = /a\n[route]\nrouter-path = /infra/tier-1s/b\n",
        "/infra/tier-1s/b",
        None,
        "ini",
    ),
    (
        "ini trailing blanks dropped",
        "[route]\nrouter-path = /infra/tier-1s/t1   \n",
        "/infra/tier-1s/t1",
        None,
        "ini",
    ),
    (
        "ini quoted blanks kept",
        '[route]\nrouter-path = " /infra/tier-1s/t1 "\n',
        "/infra/tier-1s/t1",
        None,
        "ini",
    ),
    (
        "ini crlf",
        "[Route]\r\nrouter-path = /infra/tier-1s/t1\r\n",
        "/infra/tier-1s/t1",
        None,
        "ini",
    ),
    # NSX-T validation (validateConfig): an invalid section means no NSX host
    (
        "ini user and password",
        nsxt_ini('host = "h"', "user = u", f"password = {SECRET}"),
        T1,
        "h",
        "ini",
    ),
    ("ini user without password", nsxt_ini('host = "h"', "user = u"), T1, None, "ini"),
    ("ini no credentials at all", nsxt_ini('host = "h"'), T1, None, "ini"),
    (
        "ini vmc token",
        nsxt_ini("host = h", f"vmc-access-token = {SECRET}", "vmc-auth-host = a"),
        T1,
        "h",
        "ini",
    ),
    (
        "ini vmc token without auth host",
        nsxt_ini("host = h", f"vmc-access-token = {SECRET}"),
        T1,
        None,
        "ini",
    ),
    (
        "ini client certificate",
        nsxt_ini("host = h", "client-auth-cert-file = c", "client-auth-key-file = k"),
        T1,
        "h",
        "ini",
    ),
    ("ini secret without namespace", nsxt_ini("host = h", "secret-name = s"), T1, None, "ini"),
    ("ini no host", nsxt_ini("secret-name = s", "secret-namespace = n"), T1, None, "ini"),
    (
        "ini bool quoted",
        nsxt_ini("host = h", "user = u", "password = p", 'insecure-flag = "true"'),
        T1,
        "h",
        "ini",
    ),
    (
        "ini bool blank means true",
        nsxt_ini("host = h", "user = u", "password = p", "remote-auth"),
        T1,
        "h",
        "ini",
    ),
    (
        "ini bool invalid",
        nsxt_ini("host = h", "user = u", "password = p", "insecure-flag = maybe"),
        T1,
        None,
        "ini",
    ),
    (
        "ini route section with subsection",
        '[route "x"]\nrouter-path = /infra/tier-1s/t\n',
        None,
        None,
        "ini",
    ),
    ("ini route without value", "[route]\nrouter-path\n", None, None, "ini"),
    (
        "ini tier-0 path kept as written",
        "[route]\nrouter-path = /infra/tier-0s/t0\n",
        "/infra/tier-0s/t0",
        None,
        "ini",
    ),
    # YAML: exact camelCase keys; a type error fails the YAML reader, then INI (fails) follows
    (
        "yaml quoted bool fails nsxt",
        CCM_YAML.replace("remoteAuth: false", 'remoteAuth: "false"'),
        T1,
        None,
        "yaml",
    ),
    (
        "yaml wrong case is no key",
        CCM_YAML.replace("routerPath", "routerpath"),
        None,
        "nsx.example.com",
        "yaml",
    ),
    (
        "yaml route path a list",
        CCM_YAML.replace(f"routerPath: {T1}", "routerPath: [a]"),
        None,
        "nsx.example.com",
        "yaml",
    ),
    (
        "yaml user password",
        "route:\n  routerPath: /infra/tier-1s/x\nnsxt:\n  host: h\n  user: u\n  password: "
        + SECRET
        + "\n",
        "/infra/tier-1s/x",
        "h",
        "yaml",
    ),
    (
        "yaml host a number",
        "route:\n  routerPath: /infra/tier-1s/x\nnsxt:\n  host: 10\n  user: u\n  password: p\n",
        "/infra/tier-1s/x",
        "10",
        "yaml",
    ),
]


@pytest.mark.parametrize(
    ("text", "router_path", "host", "form"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_both_forms_as_the_ccm_reads_them(
    text: str, router_path: str | None, host: str | None, form: str
) -> None:
    conf = parse_vsphere_conf(text)
    assert (conf.router_path, conf.nsx_host, conf.form) == (router_path, host, form)


def test_an_invalid_nsxt_section_is_explained() -> None:
    conf = parse_vsphere_conf(nsxt_ini('host = "h"', "user = u"))
    assert conf.problems == (
        "[NSXT] is not valid: password is required with user (the CCM has no NSX connection)",
    )


HOSTILE = [
    ("variable before a section", "router-path = /x\n", "line 1: a variable before any section"),
    ("unterminated quote", '[route]\nrouter-path = "/x\n', "a value without its closing quote"),
    ("unknown escape", '[route]\nrouter-path = "\\q"\n', "line 2: an unknown escape sequence"),
    ("bare backslash", "[route]\nrouter-path = a\\b\n", "an unknown escape sequence"),
    ("open header", "[route\n", "a section header without ']'"),
    ("text after header", "[route] x\n", "unexpected text after the entry"),
    ("no equals", "[route]\nrouter-path /x\n", "expected '=' after a variable name"),
    ("yaml aliases", "a: &x [1, 2]\nb: *x\n", "neither YAML nor INI"),
    ("yaml python tag", "route: !!python/object:os.system {}\n", "neither YAML nor INI"),
    ("deep nesting", "[" * 50_000, "neither YAML nor INI"),
    (
        "control characters",
        "[route]\nrouter-path = /infra/tier-1s/\x1b[31m\n",
        "control characters",
    ),
    ("huge value", "[route]\nrouter-path = " + "a" * 5000 + "\n", "longer than 1024"),
    ("too big", "#" * (MAX_CONF_BYTES + 1), f"more than {MAX_CONF_BYTES}"),
]


@pytest.mark.parametrize(("text", "message"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_input_is_one_line_that_quotes_nothing(text: str, message: str) -> None:
    with pytest.raises(VsphereConfError) as caught:
        parse_vsphere_conf(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert "/x" not in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        nsxt_ini("host = h", "user = u", f"password = {SECRET}"),
        nsxt_ini("host = h", f"vmc-access-token = {SECRET}", "vmc-auth-host = a"),
        "route:\n  routerPath: /infra/tier-1s/x\n"
        f"nsxt:\n  host: h\n  user: u\n  password: {SECRET}\n",
        nsxt_ini("host = h", "user = u", f'password = "{SECRET}', route="router-path = /x"),
    ],
)
def test_credentials_are_never_kept_or_quoted(text: str) -> None:
    try:
        conf: VsphereConf | VsphereConfError = parse_vsphere_conf(text)
    except VsphereConfError as exc:
        conf = exc
    assert SECRET not in repr(conf)
    assert SECRET not in str(conf)
