"""Each cluster's CCM settings (router path, NSX manager), read from where TKG keeps them:

- in the workload cluster, ConfigMap ``kube-system/vsphere-cloud-config`` key ``vsphere.conf``,
  the file the CCM DaemonSet mounts as ``--cloud-config`` (TKG's vsphere-cpi package,
  ``upstream/vsphere-cpi/02-config.yaml`` and ``overlays/vsphere-cpi/update-config.yaml``);
- in the management cluster, for TKG 2.x class-based clusters, the ``VSphereCPIConfig``
  (``cpi.tanzu.vmware.com/v1alpha1``) named after the cluster in its namespace, which the
  cluster's ``ClusterBootstrap`` references (``spec.cpi.valuesFrom.providerRef``) and from
  which the addon renders that ConfigMap (tanzu-framework ``providers/yttcb/clusterbootstrap.yaml``,
  ``apis/addonconfigs/cpi/v1alpha1/vspherecpiconfig_types.go``).

Both are sent through the cluster's ApiClient as the generated clients send them, and read
with a bounded size. Failures are :class:`CcmReadError` of one line; nothing here logs or
keeps a credential from either object.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from nsx_route_gc.clusters.kubeconfig import one_line, safe_url, status_message
from nsx_route_gc.clusters.vsphere_conf import VsphereConfError, parse_vsphere_conf
from nsx_route_gc.errors import KubeError
from nsx_route_gc.models import CcmSettings

CONFIGMAP_NAMESPACE = "kube-system"
CONFIGMAP_NAME = "vsphere-cloud-config"
CONFIGMAP_KEY = "vsphere.conf"
CONFIGMAP = f"configmap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}"
CPI_GROUP = "cpi.tanzu.vmware.com"
CPI_VERSION = "v1alpha1"
CPI_PLURAL = "vspherecpiconfigs"
# A ConfigMap holds at most 1 MiB; JSON escaping can double that.
MAX_ANSWER_BYTES = 3 * 1024 * 1024
REQUEST_TIMEOUT = (10.0, 30.0)  # seconds: connect, read


class CcmReadError(KubeError):
    """The CCM settings could not be read; one line, never quoting a credential."""


class CcmAbsentError(CcmReadError):
    """The object does not exist (404)."""


def read_ccm_configmap(
    api: ApiClient, *, request_timeout: float | tuple[float, float] = REQUEST_TIMEOUT
) -> tuple[CcmSettings, tuple[str, ...]]:
    """The CCM settings in ``kube-system/vsphere-cloud-config`` and what was odd about them."""
    path = f"/api/v1/namespaces/{CONFIGMAP_NAMESPACE}/configmaps/{CONFIGMAP_NAME}"
    body = _get(api, path, f"reading {CONFIGMAP}", request_timeout)
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise CcmReadError(f"{CONFIGMAP} has no data")
    text = data.get(CONFIGMAP_KEY)
    if not isinstance(text, str):
        raise CcmReadError(f"{CONFIGMAP} has no key {CONFIGMAP_KEY}")
    try:
        conf = parse_vsphere_conf(text)
    except VsphereConfError as exc:
        raise CcmReadError(f"{CONFIGMAP}: {exc}") from None
    settings = CcmSettings(
        router_path=conf.router_path,
        nsx_host=conf.nsx_host,
        source=f"{CONFIGMAP} ({conf.form})",
    )
    return settings, tuple(f"{CONFIGMAP}: {p}" for p in conf.problems)


def read_cpi_config(
    api: ApiClient,
    namespace: str,
    name: str,
    *,
    request_timeout: float | tuple[float, float] = REQUEST_TIMEOUT,
) -> CcmSettings | None:
    """The CCM settings in VSphereCPIConfig ``namespace/name``; None when there is none (no
    such object, or the CRD is not installed: not a TKG management cluster) or when it
    configures the paravirtual CPI (vSphere with Tanzu), which writes no static routes."""
    what = f"VSphereCPIConfig {namespace}/{name}"
    path = f"/apis/{CPI_GROUP}/{CPI_VERSION}/namespaces/{namespace}/{CPI_PLURAL}/{name}"
    try:
        body = _get(api, path, f"reading {what}", request_timeout)
    except CcmAbsentError:
        return None
    cpi = _dig(body, "spec", "vsphereCPI")
    if not isinstance(cpi, dict):
        raise CcmReadError(f"{what} has no spec.vsphereCPI")
    mode = cpi.get("mode")
    if mode not in (None, "vsphereCPI"):
        return None
    nsxt = cpi.get("nsxt")
    if nsxt is None:
        return CcmSettings(router_path=None, nsx_host=None, source=what)
    if not isinstance(nsxt, dict):
        raise CcmReadError(f"{what}: spec.vsphereCPI.nsxt is not an object")
    enabled = nsxt.get("podRoutingEnabled")
    router = _dig(nsxt, "route", "routerPath")
    host = nsxt.get("apiHost")
    if enabled is not None and not isinstance(enabled, bool):
        raise CcmReadError(f"{what}: spec.vsphereCPI.nsxt.podRoutingEnabled is not a boolean")
    for field, value in (("route.routerPath", router), ("apiHost", host)):
        if value is not None and (not isinstance(value, str) or len(value) > 1024):
            raise CcmReadError(f"{what}: spec.vsphereCPI.nsxt.{field} is not a usable string")
    if any(c < " " or c == "\x7f" for c in f"{router or ''}{host or ''}"):
        raise CcmReadError(f"{what}: a router path or host with control characters")
    # The vsphere-cpi template writes [Route] only when podRoutingEnabled is true.
    return CcmSettings(
        router_path=(router or "").strip() or None if enabled else None,
        nsx_host=(host or "").strip() or None,
        source=what,
    )


def _dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _get(api: ApiClient, path: str, what: str, request_timeout: float | tuple[float, float]) -> Any:
    server = safe_url(api.configuration.host)
    try:
        request = api.param_serialize(
            method="GET",
            resource_path=path,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        answer = api.call_api(*request, _request_timeout=request_timeout)
    except urllib3.exceptions.HTTPError as exc:
        reason = getattr(exc, "reason", None) or exc
        raise CcmReadError(f"{what}: cannot reach {server} ({type(reason).__name__})") from exc
    except ApiException as exc:  # no HTTP answer (the client wraps TLS errors so)
        reason = one_line(str(exc.reason or ""))[:200]
        raise CcmReadError(f"{what} on {server} failed: {reason}") from exc
    except (OSError, ValueError) as exc:  # a token refresh (exec, in-cluster) that failed
        raise CcmReadError(f"{what} on {server} failed: {type(exc).__name__}") from exc
    try:
        data = answer.response.read(MAX_ANSWER_BYTES + 1)
    except urllib3.exceptions.HTTPError as exc:
        raise CcmReadError(f"{what}: the answer from {server} broke off") from exc
    finally:
        answer.response.release_conn()
    status = answer.status
    if not 200 <= status <= 299:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        message = status_message(data[:65536])
        text = f"{status} {phrase}".rstrip() + f" {what} on {server}"
        if message:
            text += f": {message}"
        error = CcmAbsentError if status == 404 else CcmReadError
        raise error(one_line(text))
    if len(data) > MAX_ANSWER_BYTES:
        raise CcmReadError(f"{what}: the answer is larger than {MAX_ANSWER_BYTES} bytes")
    try:
        return json.loads(data)
    except ValueError:
        raise CcmReadError(f"{what}: the answer from {server} is not JSON") from None
