"""Files that point nsx-route-gc at a running simulator: config.yaml, kubeconfigs, CA, password."""

from __future__ import annotations

import base64
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
    nsx: dict[str, Any] = {
        "host": sim.nsx_url,
        "username": sim.nsx.username,
        "password_file": str(password_file),
        "auth": "session",
        "ca_file": str(ca_file),
    }
    if scenario.config_routers is not None:
        nsx["routers"] = list(scenario.config_routers)
    config: dict[str, Any] = {"nsx": nsx}
    clusters = [
        {
            "name": c.name,
            "kubeconfig": str(write_kubeconfig(c.name)),
            "pod_cidrs": list(c.pod_cidrs),
        }
        for c in scenario.clusters
        if c.in_config
    ]
    if clusters:
        config["clusters"] = clusters
    if scenario.retired:
        config["retired_clusters"] = [
            {"name": r.name, "pod_cidrs": list(r.pod_cidrs)} for r in scenario.retired
        ]
    if scenario.management_cluster is not None:
        config["cluster_api"] = {"kubeconfig": str(write_kubeconfig(scenario.management_cluster))}
    config["state"] = {"file": str(directory / "state" / "clusters.json")}
    config["policy"] = dict(scenario.policy)
    path = directory / "config.yaml"
    path.write_text(
        f"# nsx-route-gc against the simulator, scenario {scenario.name}: {scenario.description}\n"
        + yaml.dump(config, Dumper=_ConfigDumper, sort_keys=False, width=1000)
    )
    return path
