"""A stateful simulator of the NSX Policy API and of Kubernetes API servers, over HTTPS.

Used by the demo, the end-to-end tests and the benchmark::

    with Simulator(load_scenario("seed")) as sim:
        config = sim.write_config(tmp_path)      # then run nsx-route-gc with it
        sim.nsx.rate_limit = 100                 # knobs change behaviour at runtime
        sim.nsx.counters["nsx_delete"]           # and counters tell what the tool did

NSX is served on one port; every cluster's API server under ``/clusters/<name>`` of a second
port. Both use a certificate from a CA generated for this simulator (``ca_pem_path``).
"""

from __future__ import annotations

import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import structlog
import trustme

from nsx_route_gc.simulator import kube_api, nsx_api
from nsx_route_gc.simulator.files import kubeconfig, tkg_file_path, write_config
from nsx_route_gc.simulator.http import HttpsServer
from nsx_route_gc.simulator.kube import KubeClusterState
from nsx_route_gc.simulator.model import (
    CapiCluster,
    RetiredCluster,
    Scenario,
    SimCcm,
    SimCluster,
    SimNode,
    SimRoute,
    ccm_route,
)
from nsx_route_gc.simulator.nsx import NsxState
from nsx_route_gc.simulator.scale import SIZES, scale, scale_size
from nsx_route_gc.simulator.scenarios import SCENARIOS, load_scenario

__all__ = [
    "SCENARIOS",
    "SIZES",
    "CapiCluster",
    "KubeClusterState",
    "NsxState",
    "RetiredCluster",
    "Scenario",
    "SimCcm",
    "SimCluster",
    "SimNode",
    "SimRoute",
    "Simulator",
    "ccm_route",
    "load_scenario",
    "scale",
    "scale_size",
]

log = structlog.get_logger(__name__)


class Simulator:
    """An NSX manager and the scenario's Kubernetes API servers, on 127.0.0.1 ports."""

    def __init__(self, scenario: Scenario, *, clock: Callable[[], float] = time.time) -> None:
        self.scenario = scenario
        self.ca = trustme.CA()
        self._cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_pem: bytes = self.ca.cert_pem.bytes()
        self._tmp = tempfile.TemporaryDirectory(prefix="nsx-route-gc-sim-")
        self.ca_pem_path = Path(self._tmp.name) / "ca.pem"
        self.ca_pem_path.write_bytes(self.ca_pem)
        self.nsx = NsxState(clock=clock)
        if scenario.nsx_auth == "vmc":
            self.nsx.enable_vmc()
        self.nsx.set_knobs(**scenario.nsx_knobs)
        self.nsx.load(scenario)
        self.kube: dict[str, KubeClusterState] = {}
        for cluster in scenario.clusters:
            state = KubeClusterState(cluster.name, clock=clock)
            for node in cluster.nodes:
                state.add_node(node)
            state.unreachable = cluster.unreachable
            state.empty = cluster.empty
            state.fail_status = cluster.fail_status
            self.kube[cluster.name] = state
        self._nsx_server: HttpsServer | None = None
        self._kube_server: HttpsServer | None = None
        self._stopped = threading.Event()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._cert.configure_cert(context)
        # Client certificates are asked for, not required: NSX principal identities
        # (issue_client_cert) present one, every other client logs in with a password.
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(cadata=self.ca_pem.decode())
        self._nsx_server = HttpsServer(lambda req: nsx_api.handle(self.nsx, req), context)
        self._kube_server = HttpsServer(lambda req: kube_api.handle(self.kube, req), context)
        self._nsx_server.start()
        self._kube_server.start()
        self._stopped.clear()
        management = self.scenario.management_cluster
        if management is not None:
            for capi in self.scenario.capi_clusters:
                # The Secret holds what clusterctl writes: CA inline, no file to point at.
                text = self.kubeconfig(capi.name, ca_file=None)
                self.kube[management].add_capi_cluster(capi, text)
                if capi.cpi is not None:
                    self.kube[management].add_cpi_config(capi, capi.cpi, self.ccm_nsx_host)
        for cluster in self.scenario.clusters:
            if cluster.ccm is not None:
                self.kube[cluster.name].add_ccm_configmap(cluster.ccm, self.ccm_nsx_host)
        log.info(
            "simulator.started",
            scenario=self.scenario.name,
            nsx=self.nsx_url,
            kube=self._kube_server.url,
            routes=self.nsx.route_count(),
        )

    def stop(self) -> None:
        for server in (self._nsx_server, self._kube_server):
            if server is not None:
                server.stop()
        self._nsx_server = self._kube_server = None
        self._stopped.set()
        self._tmp.cleanup()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` (from another thread); a CLI wraps this in Ctrl-C handling."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- mutators spanning NSX and Kubernetes -------------------------------------------

    def delete_workload_cluster(self, name: str, *, finalize: bool = True) -> None:
        """Delete a Cluster API workload cluster: its Cluster object starts deleting
        (``finalize`` False) or is gone with its Secret, and its API server stops answering.
        Its routes stay on NSX, as they do for real."""
        management = self.scenario.management_cluster
        if management is None:
            raise ValueError(f"scenario {self.scenario.name} has no management cluster")
        capi = next(c for c in self.scenario.capi_clusters if c.name == name)
        self.kube[management].delete_capi_cluster(name, capi.namespace, finalize=finalize)
        if finalize:
            self.kube[name].unreachable = True

    def issue_client_cert(self, name: str) -> tuple[bytes, bytes]:
        """A client certificate (PEM) and its key, from the simulator's CA, that NSX accepts
        as the principal identity ``name`` (certificate auth: no password, no session)."""
        leaf = self.ca.issue_cert(name, common_name=name)
        self.nsx.principal_identities.add(name)
        return leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes()

    # -- addresses and files ------------------------------------------------------------

    @property
    def nsx_url(self) -> str:
        if self._nsx_server is None:
            raise RuntimeError("the simulator is not started")
        return self._nsx_server.url

    def kube_url(self, cluster: str) -> str:
        if self._kube_server is None:
            raise RuntimeError("the simulator is not started")
        return f"{self._kube_server.url}/clusters/{cluster}"

    def kubeconfig(self, cluster: str, *, ca_file: Path | None = None) -> str:
        """Kubeconfig text for one cluster (CA inline unless ``ca_file`` is given)."""
        state = self.kube[cluster]
        return kubeconfig(
            cluster, self.kube_url(cluster), state.token, ca_file=ca_file, ca_pem=self.ca_pem
        )

    @property
    def nsx_host(self) -> str:
        """``nsx.host`` as the tool is to be configured: the VMC proxy's base path too."""
        return self.nsx_url + (self.nsx.vmc.base_path if self.nsx.vmc else "")

    @property
    def ccm_nsx_host(self) -> str:
        """The manager as a CCM's vsphere.conf names it: without the scheme (the CCM adds
        https://), with the VMC proxy's base path."""
        return self.nsx_host.removeprefix("https://")

    def write_config(self, directory: Path) -> Path:
        return write_config(self, directory)

    def tkg_config_files(self, directory: Path) -> list[Path]:
        """The TKG files :meth:`write_config` writes into ``directory`` (``--tkg-config``)."""
        return [tkg_file_path(directory, name) for name in self.scenario.tkg_files]

    def client_env(self, directory: Path) -> dict[str, str]:
        """Environment the tool needs beyond the config written into ``directory``: with VMC,
        the CSP auth host (this simulator) is verified with the system trust store, so
        REQUESTS_CA_BUNDLE names the simulator's CA."""
        if self.nsx.vmc is None:
            return {}
        return {"REQUESTS_CA_BUNDLE": str(Path(directory).resolve() / "ca.pem")}
