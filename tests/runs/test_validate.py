"""``validate`` through the CLI against the simulator, and the file checks scan and apply
run before they start."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from applykit import cli_run, simulated


def edited(config: Path, name: str, change: dict[str, object]) -> Path:
    data = yaml.safe_load(config.read_text())
    for dotted, value in change.items():
        *parents, key = dotted.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is None:
            node.pop(key, None)
        else:
            node[key] = value
    path = config.parent / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_every_check_passes_on_one_line_each(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        env.sim.nsx.reset_counters()
        code, out, _ = cli_run("validate", "--config", str(env.config_path))
        assert code == 0, out
        lines = out.splitlines()
        assert lines[0] == f"ok    configuration: {env.config_path}"
        assert lines[1].startswith("ok    kubeconfig of cl2: ")
        assert "context cl2-admin@cl2" in lines[1]
        assert lines[2].startswith(f"ok    NSX login: {env.config.nsx.host} as user admin")
        assert lines[3] == "ok    router /infra/tier-1s/tanzu-cl1: exists"
        assert len(lines) == 4
        assert env.sim.nsx.counters.get("nsx_delete", 0) == 0


def test_failures_name_what_to_fix_and_exit_2(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        bad = edited(
            env.config_path,
            "bad.yaml",
            {
                "clusters.0.context": "nope",
                "nsx.ca_file": None,  # the simulator's CA is in no system trust store
            },
        )
        code, out, _ = cli_run("validate", "--config", str(bad))
        assert code == 2
        assert "FAIL  kubeconfig of cl2: " in out
        assert "no context named 'nope'" in out
        tls = next(line for line in out.splitlines() if "NSX login" in line)
        assert tls.startswith("FAIL  NSX login: TLS verification of ")
        assert "check nsx.ca_file" in tls
        routers = edited(
            env.config_path,
            "routers.yaml",
            {"nsx.routers": ["/infra/tier-1s/tanzu-cl1", "/infra/tier-1s/gone"]},
        )
        code, out, _ = cli_run("validate", "--config", str(routers))
        assert code == 2
        assert "FAIL  router /infra/tier-1s/gone: not found on NSX" in out
        code, out, _ = cli_run("validate", "--config", str(tmp_path / "missing.yaml"))
        assert code == 2
        assert out.startswith("FAIL  configuration: ")


def test_a_wrong_password_is_one_login_attempt(tmp_path: Path) -> None:
    with simulated(tmp_path) as env:
        env.sim.nsx.password = "not-what-the-file-says"
        env.sim.nsx.reset_counters()
        code, out, _ = cli_run("validate", "--config", str(env.config_path))
        assert code == 2
        assert "FAIL  NSX login: " in out
        assert env.sim.nsx.counters["nsx_login_failed"] == 1


def test_the_cluster_api_access_is_checked(tmp_path: Path) -> None:
    with simulated(tmp_path, "management") as env:
        code, out, _ = cli_run("validate", "--config", str(env.config_path))
        assert code == 0, out
        assert "ok    Cluster API: 2 workload cluster(s) listed" in out


@pytest.mark.parametrize("command", ["scan", "apply"])
def test_scan_and_apply_check_the_files_before_they_start(tmp_path: Path, command: str) -> None:
    with simulated(tmp_path) as env:
        missing = edited(env.config_path, "missing.yaml", {"clusters.0.kubeconfig": "gone.yaml"})
        env.sim.nsx.reset_counters()
        args = [command, "--config", str(missing), "--report-dir", str(tmp_path / "r")]
        code, out, err = cli_run(*args, *(["--yes"] if command == "apply" else []))
        assert code == 2
        assert out == ""
        assert "kubeconfig of cl2: kubeconfig " in err
        assert "gone.yaml: file not found" in err
        assert sum(env.sim.nsx.counters.values()) == 0  # nothing listed
