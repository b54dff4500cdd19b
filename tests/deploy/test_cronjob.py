"""cronjob.yaml: valid Kubernetes, yamllint-clean, and as safe as it claims to be."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

from nsx_route_gc import __version__
from nsx_route_gc.config import build_config
from nsx_route_gc.models import Policy

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "cronjob.yaml"
NAMESPACE = "nsx-route-gc"
STATE_CONFIGMAP = "nsx-route-gc-state"
# The oldest schema kubernetes-validate ships (TKG management clusters lag behind) and a recent
# one. Both are bundled in the package: validation reads no network.
K8S_VERSIONS = ["1.25", "1.33"]
CONTRACT_COMMANDS = {"scan", "apply", "restore", "demo"}


def documents() -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if d is not None]
    assert all(isinstance(d, dict) for d in docs)
    return docs


def only(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d
        for d in documents()
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = only("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    containers = pod_spec()["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


SECRETS_ROLE = "nsx-route-gc-kubeconfig-secrets"
WORKLOAD_NAMESPACE = "default"


def rbac_rules() -> list[tuple[str, dict[str, Any]]]:
    return [
        (d["kind"], rule)
        for d in documents()
        if d["kind"] in {"Role", "ClusterRole"}
        for rule in d["rules"]
    ]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the test tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# --- schema and lint ----------------------------------------------------------------------


def test_manifest_has_every_document() -> None:
    kinds = sorted(d["kind"] for d in documents())
    assert kinds == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "ConfigMap",
            "PersistentVolumeClaim",
            "CronJob",
        ]
    )
    for doc in documents():
        if doc["kind"] in {"Namespace", "ClusterRole", "ClusterRoleBinding"}:
            continue
        if doc["metadata"]["name"] == SECRETS_ROLE:
            # Where the workload clusters' Secrets are, not ours.
            assert doc["metadata"]["namespace"] == WORKLOAD_NAMESPACE, doc["kind"]
        else:
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["kind"]


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_document_validates_against_the_kubernetes_schema(version: str) -> None:
    for doc in documents():
        # Raises ValidationError on any schema problem; strict rejects unknown fields too.
        assert kubernetes_validate.validate(doc, version, strict=True) == version


def test_yamllint_is_clean() -> None:
    config = YamlLintConfig(file=str(ROOT / ".yamllint.yaml"))
    for path in (MANIFEST, ROOT / ".yamllint.yaml"):
        problems = list(linter.run(path.read_text(encoding="utf-8"), config, str(path)))
        assert problems == [], "\n".join(f"{path}:{p.line}:{p.column} {p}" for p in problems)


# --- the CronJob --------------------------------------------------------------------------


def test_cronjob_schedule_and_job_policy() -> None:
    spec = only("CronJob")["spec"]
    job = spec["jobTemplate"]["spec"]
    assert spec["schedule"].split()[1:] == ["*", "*", "*", "*"]  # hourly
    assert spec["concurrencyPolicy"] == "Forbid"
    assert 0 < spec["startingDeadlineSeconds"] < 3600
    assert spec["successfulJobsHistoryLimit"] >= 1
    assert spec["failedJobsHistoryLimit"] >= 1
    assert job["backoffLimit"] == 0
    assert 0 < job["activeDeadlineSeconds"] < 3600
    assert pod_spec()["restartPolicy"] == "Never"


def test_pod_runs_restricted() -> None:
    pod = pod_spec()
    ctx = pod["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] == 65532
    assert "fsGroup" in ctx
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    own = container()["securityContext"]
    assert own["allowPrivilegeEscalation"] is False
    assert own["readOnlyRootFilesystem"] is True
    assert own["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in own
    assert pod["automountServiceAccountToken"] is True
    assert pod["serviceAccountName"] == only("ServiceAccount")["metadata"]["name"]
    assert only("Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
        "restricted"
    )


def test_resources_and_writable_paths() -> None:
    resources = container()["resources"]
    assert resources["limits"]["memory"] == "512Mi"
    assert {"cpu", "memory"} <= set(resources["requests"])
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108  # a mount path, not a temp file


def test_reports_and_journals_outlive_the_pod_with_a_retention() -> None:
    # Issue 13: an emptyDir died with the pod, and with it an interrupted apply's journal.
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    mounts = {m["mountPath"]: m for m in container()["volumeMounts"]}
    reports = mounts["/reports"]
    assert not reports.get("readOnly", False)
    claim = volumes[reports["name"]]["persistentVolumeClaim"]["claimName"]
    pvc = only("PersistentVolumeClaim", claim)
    assert pvc["metadata"]["namespace"] == NAMESPACE
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]  # one pod at a time: Forbid
    assert pvc["spec"]["resources"]["requests"]["storage"] == "2Gi"
    for args in (container()["args"], apply_line()):
        assert args[args.index("--report-dir") + 1] == "/reports"
        keep = int(args[args.index("--keep-runs") + 1])
        assert 1 <= keep <= 48  # 48 runs of about 25 MB (--gzip, 100,000 routes) fit in 2Gi
        assert "--gzip" in args


def test_image_is_the_one_make_image_builds() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "docker build -t nsx-route-gc:$(VERSION) ." in makefile
    assert container()["image"] == f"nsx-route-gc:{__version__}"


# Global options come before the command (nsx-route-gc --log-format json scan ...).
SCAN_ARGS = [
    "--log-format",
    "json",
    "scan",
    "--config",
    "/etc/nsx-route-gc/config.yaml",
    "--report-dir",
    "/reports",
    "--keep-runs",
    "48",
    "--gzip",
]
COMMAND_AT = SCAN_ARGS.index("scan")


def apply_line() -> list[str]:
    lines = [line.strip() for line in MANIFEST.read_text(encoding="utf-8").splitlines()]
    starts = [i for i, line in enumerate(lines) if line.startswith("# args:")]
    assert len(starts) == 1, "exactly one commented args list switches to apply"
    text = ""
    for line in lines[starts[0] :]:
        text += " " + line.removeprefix("#").strip()
        if "]" in line:
            break
    parsed = yaml.safe_load(text)
    args: list[str] = parsed["args"]
    return args


def test_ships_as_a_scan_and_one_line_switches_to_apply() -> None:
    assert container()["args"] == SCAN_ARGS
    assert "command" not in container()  # the image's ENTRYPOINT is nsx-route-gc
    args = apply_line()
    assert args[COMMAND_AT] == "apply"
    assert "--yes" in args[COMMAND_AT:]
    expected = [*SCAN_ARGS[:COMMAND_AT], "apply", *SCAN_ARGS[COMMAND_AT + 1 :]]
    assert [a for a in args if a != "--yes"] == expected
    assert {SCAN_ARGS[COMMAND_AT], args[COMMAND_AT]} <= CONTRACT_COMMANDS


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run(
        [sys.executable, "-c", "from nsx_route_gc.cli import main; main()", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("mode", ["scan", "apply"])
def test_args_parse_with_the_real_cli(mode: str) -> None:
    if importlib.util.find_spec("nsx_route_gc.cli") is None:
        pytest.skip("nsx_route_gc.cli is not written yet")
    args = SCAN_ARGS if mode == "scan" else apply_line()
    if mode == "apply" and "No such command" in run_cli(mode, "--help").stderr:
        pytest.skip("the apply command is not written yet")
    # --help is eager: it exits 0 only once every option before it parsed, without running.
    result = run_cli(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert f"nsx-route-gc {mode}" in result.stdout


# The keys of the NSX Secret the operator creates (README, the manifest's header):
# kubectl -n nsx-route-gc create secret generic nsx-route-gc-nsx --from-literal=username=...
# --from-file=password=...
SECRET_KEYS = {"username": "REPLACE-WITH-NSX-USERNAME", "password": "REPLACE-WITH-NSX-PASSWORD"}
CREATE_SECRET = (
    "kubectl -n nsx-route-gc create secret generic nsx-route-gc-nsx \\\n"
    "  --from-literal=username=admin --from-file=password=./nsx-password"
)


def test_the_secret_is_not_in_the_manifest_but_created_as_readme_shows() -> None:
    # Re-applying the manifest must never reset the real password to a placeholder.
    assert not [d for d in documents() if d["kind"] == "Secret"]
    assert CREATE_SECRET in (ROOT / "README.md").read_text()
    manifest = MANIFEST.read_text()
    for part in CREATE_SECRET.split(" \\\n  "):
        assert part in manifest


def test_nsx_credentials_come_from_the_secret() -> None:
    env = {e["name"]: e for e in container()["env"]}
    assert env["NSXT_USERNAME"]["valueFrom"]["secretKeyRef"] == {
        "name": "nsx-route-gc-nsx",
        "key": "username",
    }
    assert "NSXT_PASSWORD" not in env  # a file, not the environment: env leaks into crash dumps
    assert mounted_files()["/etc/nsx-route-gc/nsx/password"] == ("secret", "nsx-route-gc-nsx")


def mounted_files() -> dict[str, tuple[str, str]]:
    """Every file the pod sees from projected/configMap/secret volumes: path -> (kind, name)."""
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    files: dict[str, tuple[str, str]] = {}
    for mount in container()["volumeMounts"]:
        volume = volumes[mount["name"]]
        sources = volume.get("projected", {}).get("sources", [])
        sources += [{k: volume[k]} for k in ("configMap", "secret") if k in volume]
        for source in sources:
            for kind, spec in source.items():
                name = spec.get("name") or spec.get("secretName")
                for item in spec["items"]:
                    files[f"{mount['mountPath']}/{item['path']}"] = (kind, name)
    return files


# --- the configuration --------------------------------------------------------------------


def shipped_config_text() -> str:
    text: str = only("ConfigMap", "nsx-route-gc-config")["data"]["config.yaml"]
    return text


def pod_environ() -> dict[str, str]:
    """The environment the pod gets, Secret references resolved from the Secret template."""
    secret = SECRET_KEYS
    environ = {}
    for env in container()["env"]:
        if "value" in env:
            environ[env["name"]] = env["value"]
        else:
            ref = env["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "nsx-route-gc-nsx"
            environ[env["name"]] = secret[ref["key"]]
    return environ


def test_shipped_configuration_loads() -> None:
    data = yaml.safe_load(shipped_config_text())
    # The password file is only there in the pod; NSXT_PASSWORD stands in for it here.
    environ = {"NSXT_PASSWORD": "x", **pod_environ()}

    loaded = build_config(data, environ, source="cronjob", base_dir=Path("/"))

    config = loaded.config
    assert loaded.warnings == ()
    assert config.nsx.username == "REPLACE-WITH-NSX-USERNAME"
    assert config.nsx.auth == "session"
    assert config.nsx.insecure is False
    assert config.cluster_api is not None
    assert config.cluster_api.kubeconfig is None  # in-cluster
    assert config.state.configmap == f"{NAMESPACE}/{STATE_CONFIGMAP}"
    assert config.policy == Policy()
    assert config.clusters == ()


def test_configuration_paths_match_the_mounts() -> None:
    data = yaml.safe_load(shipped_config_text())
    files = mounted_files()
    assert files[data["nsx"]["password_file"]] == ("secret", "nsx-route-gc-nsx")
    config_path = SCAN_ARGS[SCAN_ARGS.index("--config") + 1]
    assert files[config_path] == ("configMap", "nsx-route-gc-config")
    secret_keys = set(SECRET_KEYS)
    for volume in pod_spec()["volumes"]:
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                assert {i["key"] for i in source["secret"]["items"]} <= secret_keys
            if "configMap" in source:
                assert {i["key"] for i in source["configMap"]["items"]} == {"config.yaml"}


# --- RBAC ---------------------------------------------------------------------------------


def test_rbac_has_no_wildcards() -> None:
    for kind, rule in rbac_rules():
        for key in ("verbs", "resources", "apiGroups", "resourceNames"):
            assert "*" not in rule.get(key, []), (kind, rule)
        assert not rule.get("nonResourceURLs"), (kind, rule)


def test_rbac_reads_clusters_and_writes_nothing_cluster_wide() -> None:
    cluster_rules = [rule for kind, rule in rbac_rules() if kind == "ClusterRole"]
    assert {
        "apiGroups": ["cluster.x-k8s.io"],
        "resources": ["clusters"],
        "verbs": ["get", "list", "watch"],
    } in cluster_rules
    # Each TKG 2.x cluster's CCM settings, by name: get only.
    assert {
        "apiGroups": ["cpi.tanzu.vmware.com"],
        "resources": ["vspherecpiconfigs"],
        "verbs": ["get"],
    } in cluster_rules
    for rule in cluster_rules:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule


def test_secrets_are_get_only() -> None:
    secret_rules = [rule for _, rule in rbac_rules() if "secrets" in rule["resources"]]
    assert secret_rules
    for rule in secret_rules:
        assert rule["verbs"] == ["get"], rule
        assert rule["resources"] == ["secrets"], rule


def test_secrets_are_only_the_named_kubeconfigs_in_the_clusters_namespaces() -> None:
    # Never every Secret: Cluster API's -ca, -etcd and -sa signing keys sit beside them.
    for kind, rule in rbac_rules():
        if "secrets" in rule["resources"]:
            assert kind == "Role", rule
            assert rule["resourceNames"], rule
            assert all(n.endswith("-kubeconfig") for n in rule["resourceNames"]), rule
    role = only("Role", SECRETS_ROLE)
    data = yaml.safe_load(shipped_config_text())
    assert data["cluster_api"]["namespaces"] == [role["metadata"]["namespace"]]
    binding = only("RoleBinding", SECRETS_ROLE)
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"]


def test_state_configmap_role_is_limited_by_name() -> None:
    role = only("Role", "nsx-route-gc-state")
    assert role["metadata"]["namespace"] == NAMESPACE
    for rule in role["rules"]:
        assert rule["resources"] == ["configmaps"]
        if rule.get("resourceNames"):
            assert rule["resourceNames"] == [STATE_CONFIGMAP]
            assert set(rule["verbs"]) == {"get", "update", "patch"}
        else:
            # create cannot be restricted by resourceNames; nothing else may go unrestricted.
            assert rule["verbs"] == ["create"]
    for kind, rule in rbac_rules():
        if "configmaps" in rule["resources"]:
            assert kind == "Role"


def test_bindings_give_the_roles_to_our_service_account_only() -> None:
    roles = {(d["kind"], d["metadata"]["name"]) for d in documents() if "rules" in d}
    bound = set()
    for doc in documents():
        if doc["kind"] not in {"RoleBinding", "ClusterRoleBinding"}:
            continue
        ref = doc["roleRef"]
        assert (ref["kind"], ref["name"]) in roles
        bound.add((ref["kind"], ref["name"]))
        assert doc["subjects"] == [
            {"kind": "ServiceAccount", "name": "nsx-route-gc", "namespace": NAMESPACE}
        ]
    assert bound == roles
