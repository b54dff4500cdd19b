"""Kubernetes inventory: the real kubernetes client, real kubeconfig files, a local API server.

pytest-httpserver plays the API server and answers in the Kubernetes wire format (NodeList,
Status); every kubeconfig is a YAML file in tmp_path with a bearer token.
"""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
import trustme
import urllib3
import yaml
from pytest_httpserver import HTTPServer

from nsx_route_gc.clusters.inventory import Inventory, api_client_from_kubeconfig, list_nodes
from nsx_route_gc.config import ClusterConfig
from nsx_route_gc.errors import KubeError
from nsx_route_gc.models import ClusterInventory, ClusterStatus, Node
from nsx_route_gc.simulator.kube import status_body

CANARY = "canary-T0ken-xyz"
NODES = "/api/v1/nodes"
UID_A = "a57a555e-e4eb-49ad-af74-e11a7d7a8ad8"
UID_B = "1455b87f-8fbe-4cfd-b43c-fdfb822acfc7"
UID_C = "0c1b2a3d-0000-4000-8000-000000000003"
# Continue tokens are opaque base64 text to a client; this one needs URL encoding.
TOKEN_1 = "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTAwLCJzdGFydCI6Im4xXHUwMDAwIn0="
TOKEN_2 = "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTAwLCJzdGFydCI6Im4zXHUwMDAwIn0="
POD_CIDRS = ("172.16.144.0/21",)

_ENVIRONMENT = (
    "KUBECONFIG",
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
    *(f"{p}_proxy" for p in ("http", "https", "all", "no")),
    *(f"{p}_PROXY" for p in ("HTTP", "HTTPS", "ALL", "NO")),
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The client reads $KUBECONFIG, proxies and the in-cluster variables from the environment.
    for name in _ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def captured_logs() -> Iterator[list[dict[str, Any]]]:
    # Our own events are captured here, so whatever reaches stdout/stderr came from a library.
    with structlog.testing.capture_logs() as logs:
        yield logs


# --------------------------------------------------------------------------- wire format


def node(
    name: str,
    uid: str,
    *,
    pod_cidr: str | None = None,
    pod_cidrs: list[str] | None = None,
    addresses: list[tuple[str, str]] | None = None,
    created: str = "2025-03-04T05:06:07Z",
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if pod_cidr is not None:
        spec["podCIDR"] = pod_cidr
    if pod_cidrs is not None:
        spec["podCIDRs"] = pod_cidrs
    return {
        "metadata": {"name": name, "uid": uid, "creationTimestamp": created},
        "spec": spec,
        "status": {
            "addresses": [{"type": t, "address": a} for t, a in (addresses or [])],
        },
    }


def simple_node(i: int) -> dict[str, Any]:
    cidr = f"172.16.{144 + i}.0/24"
    return node(
        f"cl2-md-{i}",
        f"00000000-0000-4000-8000-{i:012d}",
        pod_cidr=cidr,
        pod_cidrs=[cidr],
        addresses=[("InternalIP", f"172.16.128.{10 + i}")],
    )


def node_list(items: list[dict[str, Any]], cont: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"resourceVersion": "48213"}
    if cont is not None:
        metadata["continue"] = cont
    return {"kind": "NodeList", "apiVersion": "v1", "metadata": metadata, "items": items}


EXPIRED = status_body(
    410,
    "Expired",
    "The provided continue parameter is too old to display a consistent list result. "
    "You can start a new list without the continue parameter.",
)


CCM_CONFIGMAP = "/api/v1/namespaces/kube-system/configmaps/vsphere-cloud-config"
VSPHERE_CONF = (
    '[Route]\nrouter-path = "/infra/tier-1s/tanzu-cl1"\n'
    '[NSXT]\nhost = "nsx.example.com"\nsecret-name = "s"\nsecret-namespace = "kube-system"\n'
)


def ccm_configmap(httpserver: HTTPServer, prefix: str = "") -> None:
    """The cluster's CCM ConfigMap, which the inventory reads after the nodes."""
    httpserver.expect_request(prefix + CCM_CONFIGMAP).respond_with_json(
        {
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {"name": "vsphere-cloud-config", "namespace": "kube-system"},
            "data": {"vsphere.conf": VSPHERE_CONF},
        }
    )


def page(httpserver: HTTPServer, cont: str | None = None, prefix: str = "") -> Any:
    """An ordered expectation for one page request (the first when cont is None)."""
    query = {"limit": "500"} if cont is None else {"limit": "500", "continue": cont}
    return httpserver.expect_ordered_request(prefix + NODES, method="GET", query_string=query)


# --------------------------------------------------------------------------- kubeconfigs


def kubeconfig(
    tmp_path: Path,
    server: str,
    *,
    token: str = CANARY,
    file: str = "kubeconfig.yaml",
    extra_contexts: dict[str, str] | None = None,
    tls: dict[str, Any] | None = None,
) -> Path:
    """A kubeconfig with context `cl2-admin@cl2` (current) and one more per extra_contexts."""
    servers = {"cl2-admin@cl2": server, **(extra_contexts or {})}
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "cl2-admin@cl2",
        "clusters": [
            {"name": f"k-{ctx}", "cluster": {"server": url, **(tls or {})}}
            for ctx, url in servers.items()
        ],
        "contexts": [
            {"name": ctx, "context": {"cluster": f"k-{ctx}", "user": "admin"}} for ctx in servers
        ],
        "users": [{"name": "admin", "user": {"token": token}}],
    }
    path = tmp_path / file
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def cluster(path: Path | None, name: str = "cl2", context: str | None = None) -> ClusterConfig:
    return ClusterConfig(name=name, kubeconfig=path, context=context, pod_cidrs=POD_CIDRS)


def server_of(httpserver: HTTPServer) -> str:
    return httpserver.url_for("/").rstrip("/")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def assert_failed(result: ClusterInventory, *parts: str) -> str:
    assert result.status is ClusterStatus.FAILED
    assert result.nodes == ()
    assert result.pod_cidrs == POD_CIDRS  # judgement still finds the cluster's routes by them
    error = result.error
    assert error is not None
    assert "\n" not in error
    assert "Traceback" not in error
    assert CANARY not in error
    for part in parts:
        assert part in error
    return error


# --------------------------------------------------------------------------- paging


def test_lists_every_page_with_limit_and_continue_and_never_a_resource_version(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    nodes = [simple_node(i) for i in range(5)]
    page(httpserver).respond_with_json(node_list(nodes[:2], cont=TOKEN_1))
    page(httpserver, TOKEN_1).respond_with_json(node_list(nodes[2:4], cont=TOKEN_2))
    page(httpserver, TOKEN_2).respond_with_json(node_list(nodes[4:]))
    ccm_configmap(httpserver)

    result = Inventory().inventory_one(cluster(kubeconfig(tmp_path, server_of(httpserver))))

    httpserver.check_assertions()
    assert result.status is ClusterStatus.OK
    assert result.error is None
    assert result.source == "config"
    assert result.pod_cidrs == POD_CIDRS
    assert [n.name for n in result.nodes] == [f"cl2-md-{i}" for i in range(5)]
    assert result.ccm is not None
    assert result.ccm.router == "/infra/tier-1s/tanzu-cl1"
    requests = [request for request, _ in httpserver.log if request.path == NODES]
    assert [r.args.to_dict(flat=False) for r in requests] == [
        {"limit": ["500"]},
        {"limit": ["500"], "continue": [TOKEN_1]},
        {"limit": ["500"], "continue": [TOKEN_2]},
    ]
    assert all("resourceVersion" not in r.args for r in requests)
    assert all(r.headers["Authorization"] == f"Bearer {CANARY}" for r in requests)


def test_expired_continue_token_restarts_the_list_from_the_first_page(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    page(httpserver).respond_with_json(node_list([simple_node(0)], cont=TOKEN_1))
    page(httpserver, TOKEN_1).respond_with_json(EXPIRED, status=410)
    page(httpserver).respond_with_json(node_list([simple_node(0)], cont=TOKEN_2))
    page(httpserver, TOKEN_2).respond_with_json(node_list([simple_node(1)]))
    ccm_configmap(httpserver)

    result = Inventory().inventory_one(cluster(kubeconfig(tmp_path, server_of(httpserver))))

    httpserver.check_assertions()
    assert result.status is ClusterStatus.OK
    # The first attempt's partial list is thrown away, not added to.
    assert [n.name for n in result.nodes] == ["cl2-md-0", "cl2-md-1"]


def test_a_continue_token_that_always_expires_gives_up_after_three_restarts(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    first = {"limit": "500"}
    httpserver.expect_request(NODES, query_string=first).respond_with_json(
        node_list([simple_node(0)], cont=TOKEN_1)
    )
    httpserver.expect_request(NODES, query_string={**first, "continue": TOKEN_1}).respond_with_json(
        EXPIRED, status=410
    )

    result = Inventory().inventory_one(cluster(kubeconfig(tmp_path, server_of(httpserver))))

    assert_failed(result, "410", "continue token expired", server_of(httpserver))
    assert len(httpserver.log) == 2 * (1 + 3)


def test_list_nodes_stops_on_a_repeated_continue_token(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request(NODES).respond_with_json(node_list([simple_node(0)], cont=TOKEN_1))
    api = api_client_from_kubeconfig(kubeconfig(tmp_path, server_of(httpserver)), None)
    try:
        with pytest.raises(KubeError, match="repeated its continue token"):
            list_nodes(api)
    finally:
        api.close()
    assert len(httpserver.log) == 2


# --------------------------------------------------------------------------- failures


def test_unauthorized_is_a_failed_cluster_with_the_reason(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request(NODES).respond_with_json(
        status_body(401, "Unauthorized", "Unauthorized"), status=401
    )

    result = Inventory().inventory_one(cluster(kubeconfig(tmp_path, server_of(httpserver))))

    error = assert_failed(result)
    assert error == f"401 Unauthorized listing nodes on {server_of(httpserver)}"


def test_forbidden_names_what_may_not_be_listed(httpserver: HTTPServer, tmp_path: Path) -> None:
    message = (
        'nodes is forbidden: User "system:serviceaccount:nsx-route-gc:gc" cannot list '
        'resource "nodes" in API group "" at the cluster scope'
    )
    httpserver.expect_request(NODES).respond_with_json(
        status_body(403, "Forbidden", message), status=403
    )

    result = Inventory().inventory_one(cluster(kubeconfig(tmp_path, server_of(httpserver))))

    assert_failed(result, "403 Forbidden listing nodes", message)


def test_unreachable_server_is_a_failed_cluster_and_prints_nothing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    server = f"http://127.0.0.1:{closed_port()}"

    result = Inventory().inventory_one(cluster(kubeconfig(tmp_path, server)))

    error = assert_failed(result)
    assert error == f"cannot reach {server}: connection refused"
    assert capfd.readouterr() == ("", "")


def test_empty_node_list_is_a_failed_cluster(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request(NODES).respond_with_json(node_list([]))

    result = Inventory().inventory_one(cluster(kubeconfig(tmp_path, server_of(httpserver))))

    assert_failed(result, "node list is empty")


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"metadata": {"name": "n"}, "spec": {}, "status": {}}, "a node without metadata.uid"),
        (
            node("n", UID_A, pod_cidr="172.16.144.0/33", addresses=[("InternalIP", "10.0.0.1")]),
            "node n: ",
        ),
        (node("n", UID_A, addresses=[("InternalIP", "not-an-ip")]), "node n: "),
        (
            {"metadata": {"name": "n", "uid": UID_A}, "status": {"addresses": [{"type": "x"}]}},
            "address",
        ),
    ],
    ids=["no-uid", "bad-cidr", "bad-address", "address-missing"],
)
def test_a_malformed_node_fails_the_cluster(
    httpserver: HTTPServer, tmp_path: Path, item: dict[str, Any], expected: str
) -> None:
    httpserver.expect_request(NODES).respond_with_json(node_list([simple_node(0), item]))

    result = Inventory().inventory_one(cluster(kubeconfig(tmp_path, server_of(httpserver))))

    assert_failed(result, "malformed node list from", expected)


def test_an_answer_that_is_not_json_fails_the_cluster(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request(NODES).respond_with_data(
        "<html>proxy login</html>", content_type="application/json"
    )

    result = Inventory().inventory_one(cluster(kubeconfig(tmp_path, server_of(httpserver))))

    assert_failed(result, "malformed node list", "not JSON")


# --------------------------------------------------------------------------- kubeconfigs


def kubeconfig_text(
    user: dict[str, Any] | None = None,
    cluster: dict[str, Any] | None = None,
    *,
    drop: str | None = None,
) -> str:
    """A one-context kubeconfig (c -> cluster k, user u) with the given entries, one dropped."""
    doc = {
        "current-context": "c",
        "clusters": [{"name": "k", "cluster": cluster or {"server": "https://127.0.0.1:1"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "users": [{"name": "u", "user": user or {"token": CANARY}}],
    }
    doc.pop(drop or "", None)
    return yaml.safe_dump(doc)


BROKEN_KUBECONFIGS = {
    # name: (file text; None: a good kubeconfig or, for missing-file, none; context; expected)
    "missing-file": (None, None, "file not found"),
    # The parser's own message would quote the offending line, token and all.
    "invalid-yaml": (
        f"apiVersion: v1\nusers:\n- name: admin\n  user:\n    token: {CANARY}: x\n",
        None,
        "invalid YAML at line 5, column 28: mapping values are not allowed here",
    ),
    "empty-file": ("", None, "not a kubeconfig"),
    "unknown-context": (None, "nope", "no context named 'nope'"),
    "no-clusters": (
        kubeconfig_text(drop="clusters"),
        None,
        "context 'c' names cluster 'k', which is not in clusters",
    ),
    "no-server": (
        kubeconfig_text(cluster={"insecure-skip-tls-verify": True}),
        None,
        "cluster 'k' has no server",
    ),
    "no-current-context": (
        kubeconfig_text(drop="current-context"),
        None,
        "no context given and no current-context set",
    ),
    # The client's own message quotes the bad value; every users[].user value is hidden.
    "client-message-quoting-the-user": (
        kubeconfig_text(
            {"auth-provider": {"name": "gcp", "config": {"access-token": CANARY, "expiry": CANARY}}}
        ),
        None,
        "Invalid RFC3339 datetime: '***'",
    ),
    # The client reports a failed exec plugin through the root logger (which would print) and
    # goes on without credentials; its reason ends up in our error instead.
    "exec-plugin-fails": (
        kubeconfig_text(
            {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": "/nonexistent/tanzu",
                    "args": ["pinniped-auth", "login", CANARY],
                    "env": [{"name": "TOKEN", "value": CANARY}],
                }
            }
        ),
        None,
        "exec credential plugin 'tanzu' gave no credentials: [Errno 2] No such file",
    ),
}


@pytest.mark.parametrize("case", BROKEN_KUBECONFIGS, ids=list(BROKEN_KUBECONFIGS))
def test_a_broken_kubeconfig_is_a_failed_cluster_naming_the_file(
    tmp_path: Path, case: str, capfd: pytest.CaptureFixture[str]
) -> None:
    text, context, expected = BROKEN_KUBECONFIGS[case]
    if text is None and case != "missing-file":
        path = kubeconfig(tmp_path, f"http://127.0.0.1:{closed_port()}")
    else:
        path = tmp_path / "kubeconfig.yaml"
        if text is not None:
            path.write_text(text, encoding="utf-8")

    result = Inventory().inventory_one(cluster(path, context=context))

    error = assert_failed(result)
    assert error.startswith(f"kubeconfig {path}: ")
    assert expected in error
    assert capfd.readouterr() == ("", "")


def test_in_cluster_outside_a_pod_is_a_failed_cluster() -> None:
    result = Inventory().inventory_one(cluster(None))

    assert_failed(result, "in-cluster service account", "not set")


def test_context_selection_picks_the_right_server(httpserver: HTTPServer, tmp_path: Path) -> None:
    # Both contexts point at the same test server under different paths.
    base = server_of(httpserver)
    path = kubeconfig(tmp_path, f"{base}/current", extra_contexts={"other": f"{base}/other"})
    current = [simple_node(0)]
    other = [simple_node(1), simple_node(2)]
    httpserver.expect_request(f"/current{NODES}").respond_with_json(node_list(current))
    httpserver.expect_request(f"/other{NODES}").respond_with_json(node_list(other))

    by_default = Inventory().inventory_one(cluster(path))
    by_name = Inventory().inventory_one(cluster(path, context="other"))

    assert [n.name for n in by_default.nodes] == ["cl2-md-0"]
    assert [n.name for n in by_name.nodes] == ["cl2-md-1", "cl2-md-2"]


@pytest.fixture
def tls_server() -> Iterator[tuple[HTTPServer, trustme.CA]]:
    """An HTTPS API server whose certificate a CA of the test's own signed."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.start()
    server.expect_request(NODES).respond_with_json(node_list([simple_node(0)]))
    ccm_configmap(server)
    yield server, ca
    server.clear()
    server.stop()


@pytest.mark.parametrize("how", ["data", "relative-file"])
def test_https_with_the_cluster_ca_from_the_kubeconfig(
    tls_server: tuple[HTTPServer, trustme.CA], tmp_path: Path, how: str
) -> None:
    server, ca = tls_server
    if how == "data":
        tls = {"certificate-authority-data": base64.b64encode(ca.cert_pem.bytes()).decode()}
    else:
        # Relative to the kubeconfig's own directory, as kubectl reads it, not to the cwd.
        (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
        tls = {"certificate-authority": "ca.pem"}
    path = kubeconfig(tmp_path, server_of(server), tls=tls)

    result = Inventory().inventory_one(cluster(path))

    assert result.status is ClusterStatus.OK
    assert server.log[0][0].headers["Authorization"] == f"Bearer {CANARY}"


def test_https_with_an_unknown_ca_is_a_failed_cluster(
    tls_server: tuple[HTTPServer, trustme.CA], tmp_path: Path
) -> None:
    server, _ = tls_server

    result = Inventory().inventory_one(cluster(kubeconfig(tmp_path, server_of(server))))

    assert_failed(result, f"cannot reach {server_of(server)}: TLS certificate verify failed")
    assert server.log == []


def test_insecure_skip_tls_verify_is_logged_once_not_warned_per_request(
    tls_server: tuple[HTTPServer, trustme.CA],
    tmp_path: Path,
    captured_logs: list[dict[str, Any]],
) -> None:
    server, _ = tls_server
    path = kubeconfig(tmp_path, server_of(server), tls={"insecure-skip-tls-verify": True})

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = Inventory().inventory_one(cluster(path))

    assert result.status is ClusterStatus.OK
    assert not [w for w in caught if issubclass(w.category, urllib3.exceptions.HTTPWarning)]
    assert [e["event"] for e in captured_logs if e["log_level"] == "warning"] == [
        "kubeconfig.tls_unverified"
    ]


# --------------------------------------------------------------------------- node fields


def test_node_fields_pod_cidrs_fallback_dual_stack_and_no_hostnames(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    items = [
        node(
            "cl2-md-0",
            UID_A.upper(),
            pod_cidr="172.16.144.0/24",
            pod_cidrs=["172.16.144.0/24"],
            addresses=[("Hostname", "cl2-md-0"), ("InternalIP", "172.16.128.10")],
        ),
        # Before dual-stack, only podCIDR is set.
        node(
            "cl2-md-1",
            UID_B,
            pod_cidr="172.16.145.0/24",
            addresses=[("ExternalIP", "192.0.2.7"), ("InternalIP", "172.16.128.11")],
        ),
        node(
            "cl2-md-2",
            UID_C,
            pod_cidr="172.16.146.0/24",
            pod_cidrs=["172.16.146.0/24", "fd00:10:244:2::/64"],
            addresses=[
                ("InternalIP", "172.16.128.12"),
                ("InternalIP", "fd00:172:16:128::12"),
                ("Hostname", "cl2-md-2.corp.example"),
            ],
            created="2024-12-31T23:59:59Z",
        ),
        node("cl2-cp-0", "00000000-0000-4000-8000-00000000000d"),  # no podCIDR yet
    ]
    httpserver.expect_request(NODES).respond_with_json(node_list(items))

    result = Inventory().inventory_one(cluster(kubeconfig(tmp_path, server_of(httpserver))))

    assert result.nodes == (
        Node(
            uid=UID_A,
            name="cl2-md-0",
            pod_cidrs=("172.16.144.0/24",),
            addresses=("172.16.128.10",),
            created=datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC),
        ),
        Node(
            uid=UID_B,
            name="cl2-md-1",
            pod_cidrs=("172.16.145.0/24",),
            addresses=("192.0.2.7", "172.16.128.11"),
            created=datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC),
        ),
        Node(
            uid=UID_C,
            name="cl2-md-2",
            pod_cidrs=("172.16.146.0/24", "fd00:10:244:2::/64"),
            addresses=("172.16.128.12", "fd00:172:16:128::12"),
            created=datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC),
        ),
        Node(
            uid="00000000-0000-4000-8000-00000000000d",
            name="cl2-cp-0",
            pod_cidrs=(),
            addresses=(),
            created=datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC),
        ),
    )


# --------------------------------------------------------------------------- several clusters


class BarrierFactory:
    """Builds real clients, but only once every cluster's client is being built at once."""

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=10)
        self.threads: set[str] = set()
        self.closed: list[str] = []  # list.append is atomic; += on an int is not

    def __call__(self, config: ClusterConfig) -> Any:
        self.threads.add(threading.current_thread().name)
        self.barrier.wait()  # raises BrokenBarrierError if the clusters were taken one by one
        api = api_client_from_kubeconfig(config.kubeconfig, config.context)
        close = api.close

        def recorded_close() -> None:
            self.closed.append(config.name)
            close()

        api.close = recorded_close
        return api


def test_clusters_are_inventoried_concurrently_in_input_order_and_failures_stay_apart(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    base = server_of(httpserver)
    httpserver.expect_request(f"/a{NODES}").respond_with_json(node_list([simple_node(0)]))
    httpserver.expect_request(f"/c{NODES}").respond_with_json(
        node_list([simple_node(1), simple_node(2)])
    )
    clusters = [
        cluster(kubeconfig(tmp_path, f"{base}/a", file="a.yaml"), name="a"),
        cluster(kubeconfig(tmp_path, f"http://127.0.0.1:{closed_port()}", file="b.yaml"), "b"),
        cluster(kubeconfig(tmp_path, f"{base}/c", file="c.yaml"), name="c"),
    ]
    factory = BarrierFactory(len(clusters))

    results = Inventory(factory, max_workers=8).inventory(clusters)

    assert [r.name for r in results] == ["a", "b", "c"]
    assert [r.status for r in results] == [
        ClusterStatus.OK,
        ClusterStatus.FAILED,
        ClusterStatus.OK,
    ]
    assert [len(r.nodes) for r in results] == [1, 0, 2]
    assert_failed(results[1], "connection refused")
    assert len(factory.threads) == 3
    assert sorted(factory.closed) == ["a", "b", "c"]


def test_a_factory_bug_stays_with_its_cluster(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request(NODES).respond_with_json(node_list([simple_node(0)]))
    path = kubeconfig(tmp_path, server_of(httpserver))

    def factory(config: ClusterConfig) -> Any:
        if config.name == "bad":
            raise RuntimeError(f"leaks {CANARY}")
        return api_client_from_kubeconfig(config.kubeconfig, config.context)

    good, bad = Inventory(factory).inventory([cluster(path, "good"), cluster(path, "bad")])

    assert good.status is ClusterStatus.OK
    assert_failed(bad, "unexpected RuntimeError")


def test_no_clusters_no_work() -> None:
    assert Inventory().inventory([]) == []


# --------------------------------------------------------------------------- no secrets


def test_the_token_never_appears_in_errors_or_logs(
    httpserver: HTTPServer,
    tmp_path: Path,
    captured_logs: list[dict[str, Any]],
    capfd: pytest.CaptureFixture[str],
) -> None:
    base = server_of(httpserver)
    # A server that echoes the token back must not get it into our message either.
    httpserver.expect_request(f"/echo{NODES}").respond_with_json(
        status_body(403, "Forbidden", f"token {CANARY} may not list nodes"), status=403
    )
    httpserver.expect_request(f"/ok{NODES}").respond_with_json(node_list([simple_node(0)]))
    ccm_configmap(httpserver, "/ok")
    broken = tmp_path / "broken.yaml"
    broken.write_text(f"users:\n- name: u\n  user:\n    token: {CANARY}: x\n", "utf-8")
    clusters = [
        cluster(kubeconfig(tmp_path, f"{base}/echo", file="echo.yaml"), "echo"),
        cluster(kubeconfig(tmp_path, f"{base}/ok", file="ok.yaml"), "ok"),
        cluster(kubeconfig(tmp_path, f"http://127.0.0.1:{closed_port()}", file="x.yaml"), "x"),
        cluster(kubeconfig(tmp_path, base, file="ctx.yaml"), "ctx", context="nope"),
        cluster(broken, "broken"),
    ]

    results = Inventory().inventory(clusters)

    assert [r.status for r in results] == [
        ClusterStatus.FAILED,
        ClusterStatus.OK,
        ClusterStatus.FAILED,
        ClusterStatus.FAILED,
        ClusterStatus.FAILED,
    ]
    assert "token *** may not list nodes" in (results[0].error or "")
    assert all(CANARY not in (r.error or "") for r in results)
    events = {(e["event"], e.get("cluster")) for e in captured_logs}
    assert ("cluster.inventoried", "ok") in events
    assert {("cluster.inventory_failed", r.name) for r in results if r.error} <= events
    assert all(
        e["error"] == r.error
        for e in captured_logs
        for r in results
        if e.get("cluster") == r.name and "error" in e
    )
    assert CANARY not in repr(captured_logs)
    assert capfd.readouterr() == ("", "")
