"""State of the simulated Kubernetes API servers: nodes, Cluster API objects, Secrets, ConfigMaps,
VSphereCPIConfigs.

Every cluster is one :class:`KubeClusterState`; all of them are served by one HTTPS server
under ``/clusters/<name>`` (see ``kube_api``). Objects are kept as the JSON the real API
server answers, so the real ``kubernetes`` client deserialises them.
"""

from __future__ import annotations

import base64
import copy
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from nsx_route_gc.simulator.model import CapiCluster, SimCcm, SimNode

CAPI_GROUP = "cluster.x-k8s.io"
CAPI_VERSION = "v1beta1"
CPI_GROUP = "cpi.tanzu.vmware.com"
CPI_VERSION = "v1alpha1"
CCM_NAMESPACE = "kube-system"
CCM_CONFIGMAP = "vsphere-cloud-config"
NodeKey = tuple[str, str]  # (namespace, name)


def rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def status_body(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    """A Kubernetes ``Status`` failure object, as the API server answers errors."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


class KubeFault(Exception):
    def __init__(self, code: int, reason: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.body = status_body(code, reason, message, **details)


class KubeClusterState:
    """One Kubernetes API server: its objects, its knobs and its request counters."""

    def __init__(self, name: str, *, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.token = secrets.token_urlsafe(24)
        self._clock = clock
        self.lock = threading.RLock()
        self.nodes: dict[str, dict[str, Any]] = {}
        self.capi_clusters: dict[NodeKey, dict[str, Any]] = {}
        self.secrets: dict[NodeKey, dict[str, Any]] = {}
        self.configmaps: dict[NodeKey, dict[str, Any]] = {}
        self.cpi_configs: dict[NodeKey, dict[str, Any]] = {}
        # ConfigMaps (namespace, name) whose GET answers this status instead (403: RBAC).
        self.configmap_status: dict[NodeKey, int] = {}
        # The password written in a vsphere.conf with inline credentials: tests look for it.
        self.ccm_password = secrets.token_urlsafe(18)
        self._resource_version = 1000
        # Knobs.
        self.unreachable = False  # hang up every connection
        self.empty = False  # list no nodes at all
        self.fail_status: int | None = None  # answer every call with this status
        self.expire_continue = 0  # the next N continue tokens answer 410 Gone
        self.counters: Counter[str] = Counter()

    def next_resource_version(self) -> str:
        with self.lock:
            self._resource_version += 1
            return str(self._resource_version)

    def _metadata(self, name: str, created: float, namespace: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": name,
            "uid": str(uuid.uuid4()),
            "resourceVersion": self.next_resource_version(),
            "creationTimestamp": rfc3339(created),
        }
        if namespace is not None:
            meta["namespace"] = namespace
        return meta

    # -- nodes --------------------------------------------------------------------------

    def add_node(self, node: SimNode) -> None:
        created = node.created or self._clock() - 10 * 86_400
        meta = self._metadata(node.name, created)
        meta["uid"] = node.uid
        meta["labels"] = {"kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux"}
        addresses = [{"type": "Hostname", "address": node.name}]
        addresses += [{"type": "InternalIP", "address": ip} for ip in node.internal_ips]
        addresses += [{"type": "ExternalIP", "address": ip} for ip in node.external_ips]
        spec: dict[str, Any] = {
            "providerID": f"vsphere://{uuid.uuid5(uuid.NAMESPACE_DNS, node.uid)}"
        }
        if node.pod_cidrs:
            spec["podCIDR"] = node.pod_cidrs[0]
            spec["podCIDRs"] = list(node.pod_cidrs)
        obj = {
            "metadata": meta,
            "spec": spec,
            "status": {
                "addresses": addresses,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "lastTransitionTime": rfc3339(created),
                    }
                ],
            },
        }
        with self.lock:
            self.nodes[node.name] = obj

    def remove_node(self, name: str) -> bool:
        with self.lock:
            return self.nodes.pop(name, None) is not None

    def node_page(
        self, after: str | None, limit: int | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Nodes sorted by name after ``after``; the last name when more follow."""
        with self.lock:
            names = [] if self.empty else sorted(self.nodes)
            if after is not None:
                names = [n for n in names if n > after]
            chunk = names if limit is None else names[:limit]
            more = len(chunk) < len(names)
            # Not copied: a stored node is replaced, never changed in place, and the answer
            # only serializes it. Copying 20,000 nodes cost the simulator (which shares the
            # benchmark's cores with the tool) more than answering them.
            return [self.nodes[n] for n in chunk], (chunk[-1] if more and chunk else None)

    # -- Cluster API (management cluster) -----------------------------------------------

    def add_capi_cluster(self, cluster: CapiCluster, kubeconfig: str) -> None:
        """A Cluster object and its ``<name>-kubeconfig`` Secret holding ``kubeconfig``."""
        now = self._clock()
        key = (cluster.namespace, cluster.name)
        meta = self._metadata(cluster.name, now - 20 * 86_400, cluster.namespace)
        meta["finalizers"] = ["cluster.cluster.x-k8s.io"]
        if cluster.deleting:
            meta["deletionTimestamp"] = rfc3339(now)
        obj = {
            "apiVersion": f"{CAPI_GROUP}/{CAPI_VERSION}",
            "kind": "Cluster",
            "metadata": meta,
            "spec": {
                "clusterNetwork": {
                    "pods": {"cidrBlocks": list(cluster.pod_cidrs)},
                    "services": {"cidrBlocks": ["100.64.0.0/13"]},
                },
                "controlPlaneEndpoint": {"host": "172.16.135.250", "port": 6443},
            },
            "status": {"phase": "Deleting" if cluster.deleting else "Provisioned"},
        }
        secret_meta = self._metadata(
            f"{cluster.name}-kubeconfig", now - 20 * 86_400, cluster.namespace
        )
        secret_meta["labels"] = {"cluster.x-k8s.io/cluster-name": cluster.name}
        secret = {
            "kind": "Secret",
            "apiVersion": "v1",
            "metadata": secret_meta,
            "type": "cluster.x-k8s.io/secret",
            "data": {"value": base64.b64encode(kubeconfig.encode()).decode()},
        }
        with self.lock:
            self.capi_clusters[key] = obj
            self.secrets[(cluster.namespace, f"{cluster.name}-kubeconfig")] = secret

    def delete_capi_cluster(
        self, name: str, namespace: str = "default", *, finalize: bool = True
    ) -> None:
        """Start deleting a workload cluster (deletionTimestamp); ``finalize``: remove it too."""
        with self.lock:
            obj = self.capi_clusters[(namespace, name)]
            obj["metadata"]["deletionTimestamp"] = rfc3339(self._clock())
            obj["metadata"]["resourceVersion"] = self.next_resource_version()
            obj["status"]["phase"] = "Deleting"
            if finalize:
                del self.capi_clusters[(namespace, name)]
                self.secrets.pop((namespace, f"{name}-kubeconfig"), None)

    # -- the CCM's settings -------------------------------------------------------------

    def add_ccm_configmap(self, ccm: SimCcm, nsx_host: str) -> None:
        """ConfigMap kube-system/vsphere-cloud-config as TKG's vsphere-cpi package writes it
        (INI), or in the YAML form newer CPI versions read."""
        text = vsphere_conf(ccm, ccm.nsx_host or nsx_host, self.ccm_password)
        meta = self._metadata(CCM_CONFIGMAP, self._clock() - 20 * 86_400, CCM_NAMESPACE)
        meta["labels"] = {"app.kubernetes.io/name": "vsphere-cpi"}
        obj = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": meta}
        obj["data"] = {"vsphere.conf": text}
        with self.lock:
            self.configmaps[(CCM_NAMESPACE, CCM_CONFIGMAP)] = obj
            if ccm.configmap_status is not None:
                self.configmap_status[(CCM_NAMESPACE, CCM_CONFIGMAP)] = ccm.configmap_status

    def add_cpi_config(self, cluster: CapiCluster, cpi: SimCcm, nsx_host: str) -> None:
        """The VSphereCPIConfig a TKG 2.x class-based cluster gets (providers/yttcb/
        clusterbootstrap.yaml): named after the cluster, in its namespace."""
        meta = self._metadata(cluster.name, self._clock() - 20 * 86_400, cluster.namespace)
        meta["ownerReferences"] = [
            {
                "apiVersion": f"{CAPI_GROUP}/{CAPI_VERSION}",
                "kind": "Cluster",
                "name": cluster.name,
                "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, cluster.name)),
            }
        ]
        nsxt: dict[str, Any] = {
            "podRoutingEnabled": cpi.router_path is not None,
            "credentialLocalObjRef": {"kind": "Secret", "name": f"{cluster.name}-nsxt-credential"},
            "apiHost": cpi.nsx_host or nsx_host,
            "insecure": False,
            "remoteAuth": False,
        }
        if cpi.router_path is not None:
            nsxt["route"] = {"routerPath": cpi.router_path}
        obj = {
            "apiVersion": f"{CPI_GROUP}/{CPI_VERSION}",
            "kind": "VSphereCPIConfig",
            "metadata": meta,
            "spec": {
                "vsphereCPI": {
                    "mode": "vsphereCPI",
                    "tlsThumbprint": "",
                    "vCenterAPIEndpoint": "vc.example.com",
                    "datacenter": "/dc0",
                    "nsxt": nsxt,
                }
            },
            "status": {"secretRef": f"{cluster.name}-vsphere-cpi-data-values"},
        }
        with self.lock:
            self.cpi_configs[(cluster.namespace, cluster.name)] = obj

    # -- ConfigMaps ---------------------------------------------------------------------

    def create_configmap(self, namespace: str, body: Any) -> dict[str, Any]:
        name = _name_of(body)
        with self.lock:
            if (namespace, name) in self.configmaps:
                raise KubeFault(
                    409, "AlreadyExists", f'configmaps "{name}" already exists',
                    name=name, kind="configmaps",
                )  # fmt: skip
            meta = self._metadata(name, self._clock(), namespace)
            for key in ("labels", "annotations"):
                if body["metadata"].get(key):
                    meta[key] = dict(body["metadata"][key])
            obj = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": meta}
            if body.get("data") is not None:
                obj["data"] = dict(body["data"])
            self.configmaps[(namespace, name)] = obj
            return copy.deepcopy(obj)

    def get_configmap(self, namespace: str, name: str) -> dict[str, Any]:
        status = self.configmap_status.get((namespace, name))
        if status is not None:
            raise _refused(status, "get", "configmaps", name, namespace)
        with self.lock:
            obj = self.configmaps.get((namespace, name))
            if obj is None:
                raise _not_found("configmaps", name)
            return copy.deepcopy(obj)

    def replace_configmap(
        self, namespace: str, name: str, body: Any, *, merge: bool
    ) -> dict[str, Any]:
        """PUT (``merge`` False: ``data`` replaced) or merge PATCH of a ConfigMap."""
        if not isinstance(body, dict):
            raise KubeFault(400, "BadRequest", "the body must be a JSON object")
        with self.lock:
            obj = self.configmaps.get((namespace, name))
            if obj is None:
                raise _not_found("configmaps", name)
            meta = body.get("metadata") or {}
            wanted = meta.get("resourceVersion")
            if wanted and wanted != obj["metadata"]["resourceVersion"]:
                raise KubeFault(
                    409, "Conflict",
                    f'Operation cannot be fulfilled on configmaps "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again",
                    name=name, kind="configmaps",
                )  # fmt: skip
            if merge:
                data = dict(obj.get("data") or {})
                for key, value in (body.get("data") or {}).items():
                    if value is None:
                        data.pop(key, None)
                    else:
                        data[key] = value
            else:
                data = dict(body.get("data") or {})
            obj["data"] = data
            for key in ("labels", "annotations"):
                if key in meta:
                    obj["metadata"][key] = dict(meta[key] or {})
            obj["metadata"]["resourceVersion"] = self.next_resource_version()
            return copy.deepcopy(obj)

    def delete_configmap(self, namespace: str, name: str) -> None:
        with self.lock:
            if self.configmaps.pop((namespace, name), None) is None:
                raise _not_found("configmaps", name)


def _name_of(body: Any) -> str:
    if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
        raise KubeFault(400, "BadRequest", "the body must be an object with metadata")
    name = body["metadata"].get("name")
    if not isinstance(name, str) or not name:
        raise KubeFault(422, "Invalid", "metadata.name: Required value: name is required")
    return name


def vsphere_conf(ccm: SimCcm, nsx_host: str, password: str) -> str:
    """The CCM's vsphere.conf as TKG's vsphere-cpi template renders it (vsphereconf.lib.txt),
    or in the CCM's YAML form; [Route] and [NSXT] only with pod routing."""
    if ccm.form == "yaml":
        lines = [
            "global:",
            "  insecureFlag: false",
            "  secretName: cloud-provider-vsphere-credentials",
            "  secretNamespace: kube-system",
            "vcenter:",
            "  vc1:",
            "    server: vc.example.com",
            "    datacenters: [/dc0]",
        ]
        if ccm.router_path is not None:
            lines += ["route:", f"  routerPath: {ccm.router_path}"]
            lines += ["nsxt:", f'  host: "{nsx_host}"']
            lines += ["  insecureFlag: false", "  remoteAuth: false"]
            if ccm.inline_credentials:
                lines += ["  user: admin", f'  password: "{password}"']
            else:
                lines += [
                    "  secretName: cloud-provider-vsphere-nsxt-credentials",
                    "  secretNamespace: kube-system",
                ]
        return "\n".join(lines) + "\n"
    lines = [
        "[Global]",
        'secret-name = "cloud-provider-vsphere-credentials"',
        'secret-namespace = "kube-system"',
        'thumbprint = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD"',
        "",
        '[VirtualCenter "vc.example.com"]',
        'datacenters = "/dc0"',
        'thumbprint = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD"',
    ]
    if ccm.router_path is not None:
        lines += ["", "[Route]", f'router-path = "{ccm.router_path}"', "", "[NSXT]"]
        lines += [f'host = "{nsx_host}"', "insecure-flag = false", "remote-auth = false"]
        if ccm.inline_credentials:
            lines += ['user = "admin"', f'password = "{password}"']
        else:
            lines += [
                'secret-name = "cloud-provider-vsphere-nsxt-credentials"',
                'secret-namespace = "kube-system"',
            ]
    return "\n".join(lines) + "\n"


def _refused(status: int, verb: str, kind: str, name: str, namespace: str) -> KubeFault:
    if status == 403:
        return KubeFault(
            403,
            "Forbidden",
            f'{kind} "{name}" is forbidden: User "nsx-route-gc" cannot {verb} resource '
            f'"{kind}" in API group "" in the namespace "{namespace}"',
            name=name,
            kind=kind,
        )
    return KubeFault(status, "InternalError", f"injected failure {status}", name=name, kind=kind)


def _not_found(kind: str, name: str) -> KubeFault:
    return KubeFault(404, "NotFound", f'{kind} "{name}" not found', name=name, kind=kind)
