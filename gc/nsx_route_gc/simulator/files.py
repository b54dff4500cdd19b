"""Files that point nsx-route-gc at a running simulator: config.yaml, kubeconfigs, CA, password."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from nsx_route_gc.simulator import Simulator


class _ConfigDumper(yaml.SafeDumper):
    """Block mappings, flow lists of scalars, indented sequences: the documented layout."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(not isinstance(item, dict | list) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_ConfigDumper.add_representer(list, _represent_list)


def kubeconfig(name: str, server: str, token: str, *, ca_file: Path | None, ca_pem: bytes) -> str:
    """A kubeconfig for one simulated cluster; the CA by file path, or inline without one."""
    cluster: dict[str, Any] = {"server": server}
    if ca_file is not None:
        cluster["certificate-authority"] = str(ca_file)
    else:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    context = f"{name}-admin@{name}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": f"{name}-admin", "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": name, "user": f"{name}-admin"}}],
        "current-context": context,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def _write_private(path: Path, text: str) -> None:
    # Created 0600 from the start: the file holds a credential.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)


def write_config(sim: Simulator, directory: Path) -> Path:
    """Write ca.pem, nsx-password, kubeconfigs and config.yaml; return config.yaml's path."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "state").mkdir(exist_ok=True)
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(sim.ca_pem)
    password_file = directory / "nsx-password"
    _write_private(password_file, sim.nsx.password + "\n")

    def write_kubeconfig(name: str) -> Path:
        path = directory / f"kubeconfig-{name}.yaml"
        _write_private(path, sim.kubeconfig(name, ca_file=ca_file))
        return path

    scenario = sim.scenario
    config: dict[str, Any] = {}
    header = ""
    from_tkg = set(scenario.tkg_files)
    if from_tkg:
        # Everything about NSX comes from the TKG files (--tkg-config); no `nsx:` at all.
        write_tkg_files(sim, directory)
    else:
        nsx: dict[str, Any] = {
            "host": sim.nsx_url,
            "username": sim.nsx.username,
            "password_file": str(password_file),
            "auth": "session",
            "ca_file": str(ca_file),
        }
        if sim.nsx.vmc is not None:
            token_file = directory / "vmc-api-token"
            _write_private(token_file, sim.nsx.vmc.refresh_token + "\n")
            nsx = {
                "host": sim.nsx_host,
                "auth": "vmc",
                "vmc_access_token_file": str(token_file),
                # The simulator serves the CSP token endpoint too, over the same HTTPS port.
                "vmc_auth_host": sim.nsx_url.removeprefix("https://"),
                "ca_file": str(ca_file),
            }
            header = (
                "# The VMC auth host is verified with the system trust store: run with\n"
                f"# REQUESTS_CA_BUNDLE={ca_file}\n"
            )
        if scenario.config_routers is not None:
            nsx["routers"] = list(scenario.config_routers)
        config["nsx"] = nsx

    def entry(name: str, pod_cidrs: tuple[str, ...]) -> dict[str, Any]:
        # A cluster with a TKG file takes its pod CIDRs from the file's CLUSTER_CIDR.
        return {"name": name} if name in from_tkg else {"name": name, "pod_cidrs": list(pod_cidrs)}

    clusters = [
        {**entry(c.name, c.pod_cidrs), "kubeconfig": str(write_kubeconfig(c.name))}
        for c in scenario.clusters
        if c.in_config
    ]
    if clusters:
        config["clusters"] = clusters
    if scenario.retired:
        config["retired_clusters"] = [entry(r.name, r.pod_cidrs) for r in scenario.retired]
    if scenario.management_cluster is not None:
        config["cluster_api"] = {"kubeconfig": str(write_kubeconfig(scenario.management_cluster))}
    config["state"] = {"file": str(directory / "state" / "clusters.json")}
    config["policy"] = dict(scenario.policy)
    path = directory / "config.yaml"
    path.write_text(
        f"# nsx-route-gc against the simulator, scenario {scenario.name}: {scenario.description}\n"
        + header
        + yaml.dump(config, Dumper=_ConfigDumper, sort_keys=False, width=1000)
    )
    return path


def tkg_file_path(directory: Path, cluster: str) -> Path:
    return Path(directory).resolve() / f"tkg-{cluster}.yaml"


def write_tkg_files(sim: Simulator, directory: Path) -> list[Path]:
    """One TKG cluster configuration file per cluster named in ``scenario.tkg_files``.

    As ``tanzu cluster create`` files are written: the manager as host:port, the CA as
    NSXT_ROOT_CA_DATA_B64. With ``tkg_auth`` "password" the first file's password is
    ``<encoded:...>`` (as the tanzu CLI stores it) and the others' in clear, so reading them
    proves both forms agree; with "certificate" every file carries the same base64 client
    certificate and key of a principal identity, and no user or password.
    """
    cidrs = {c.name: c.pod_cidrs for c in sim.scenario.clusters}
    cidrs.update({r.name: r.pod_cidrs for r in sim.scenario.retired})
    routers = sim.scenario.config_routers or sorted(sim.scenario.tier1s)
    certificate = sim.scenario.tkg_auth == "certificate"
    if certificate:
        cert, key = sim.issue_client_cert("nsx-route-gc")
    paths = []
    for i, name in enumerate(sim.scenario.tkg_files):
        values = {
            "CLUSTER_NAME": name,
            "CLUSTER_PLAN": "dev",
            "INFRASTRUCTURE_PROVIDER": "vsphere",
            "CLUSTER_CIDR": ",".join(cidrs[name]),
            "NSXT_POD_ROUTING_ENABLED": "true",
            "NSXT_MANAGER_HOST": sim.nsx_url.removeprefix("https://"),
            "NSXT_ROUTER_PATH": routers[0],
        }
        if certificate:
            values["NSXT_CLIENT_CERT_DATA"] = _b64(cert)
            values["NSXT_CLIENT_CERT_KEY_DATA"] = _b64(key)
        else:
            password = sim.nsx.password
            if i == 0:
                password = f"<encoded:{_b64(password.encode())}>"
            values["NSXT_USERNAME"] = sim.nsx.username
            values["NSXT_PASSWORD"] = password
        values["NSXT_ALLOW_UNVERIFIED_SSL"] = "false"
        values["NSXT_ROOT_CA_DATA_B64"] = _b64(sim.ca_pem)
        path = tkg_file_path(directory, name)
        # Every value a double-quoted string (JSON's are YAML's); 0600: it holds a password.
        _write_private(path, "".join(f"{k}: {json.dumps(v)}\n" for k, v in values.items()))
        paths.append(path)
    return paths


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
