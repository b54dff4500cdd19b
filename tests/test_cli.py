"""The CLI in-process (typer's CliRunner) against the bundled simulator: exit codes, files,
one-line errors, and a canary password that must appear nowhere."""

from __future__ import annotations

import base64
import json
import logging
import re
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from reportkit import report
from typer.testing import CliRunner

from nsx_route_gc import cli as cli_module
from nsx_route_gc import logs
from nsx_route_gc.cli import cli
from nsx_route_gc.runs.frame import Outcome
from nsx_route_gc.simulator import Simulator, load_scenario

CANARY = "canary-S3cr3t-pw"
NSXT_ENVIRONMENT = (
    "NSXT_MANAGER_HOST",
    "NSXT_USERNAME",
    "NSXT_PASSWORD",
    "NSXT_ROUTER_PATH",
    "NSXT_ALLOW_UNVERIFIED_SSL",
    "NSXT_REMOTE_AUTH",
    "NSXT_CA_FILE",
    "NSXT_CLIENT_AUTH_CERT_FILE",
    "NSXT_CLIENT_AUTH_KEY_FILE",
    "NSXT_VMC_ACCESS_TOKEN",
    "NSXT_VMC_AUTH_HOST",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in NSXT_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    yield
    # The CLI points logging at the runner's captured stderr, which closes after the test.
    logging.getLogger().handlers.clear()
    structlog.reset_defaults()


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def seed(tmp_path: Path) -> Iterator[tuple[Simulator, Path]]:
    with Simulator(load_scenario("seed")) as sim:
        sim.nsx.password = CANARY
        yield sim, sim.write_config(tmp_path / "sim")


def test_scan_writes_reports_and_exits_0(seed: tuple[Simulator, Path], tmp_path: Path) -> None:
    sim, config = seed
    code, out, err = run(
        "--log-format", "json", "scan", "--config", str(config), "--report-dir", str(tmp_path / "r")
    )
    assert code == 0, err
    assert "Verdicts: live 3, orphaned 3, foreign 2" in out
    assert "To be deleted (3):" in out
    report = json.loads((tmp_path / "r/report.json").read_text())
    assert report["summary"]["actions"]["delete"] == 3
    assert (tmp_path / "r/report.md").is_file()
    assert (tmp_path / "r/report.csv").is_file()
    # A dry run deletes nothing.
    assert sim.nsx.counters.get("nsx_delete", 0) == 0
    assert sim.nsx.counters.get("nsx_hierarchical", 0) == 0
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert events[-1] == "run.summary"


def test_detailed_exitcode_is_3_when_routes_to_delete(seed: tuple[Simulator, Path]) -> None:
    _, config = seed
    code, _, _ = run("scan", "--config", str(config), "--detailed-exitcode")
    assert code == 3


def test_canary_password_appears_in_no_output_log_or_report(
    seed: tuple[Simulator, Path], tmp_path: Path
) -> None:
    sim, config = seed
    code, out, err = run(
        "--log-level", "debug", "scan", "--config", str(config), "--report-dir", str(tmp_path / "r")
    )
    assert code == 0
    sim.nsx.password = "something-else"  # now the login fails: the error path must be clean too
    code2, out2, err2 = run("--log-level", "debug", "scan", "--config", str(config))
    assert code2 == 1
    assert "403" in err2 or "403" in out2
    everything = out + err + out2 + err2
    everything += "".join(p.read_text() for p in (tmp_path / "r").iterdir())
    assert CANARY not in everything


def test_failed_cluster_exits_1_and_names_it(tmp_path: Path) -> None:
    with Simulator(load_scenario("unreachable-cluster")) as sim:
        config = sim.write_config(tmp_path / "sim")
        code, out, _ = run("scan", "--config", str(config), "--detailed-exitcode")
    assert code == 1
    assert "cluster cl2 not inventoried: cannot reach" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nsx: {host: h, username: u}\n", "nsx.password_file: missing"),
        ("nsx: [\n", "not valid YAML"),
        (
            "nsx: {host: h, username: u, password: p}\npolicy: {max_deletes: many}\n",
            "policy.max_deletes",
        ),
    ],
)
def test_configuration_errors_exit_2_in_one_line(tmp_path: Path, text: str, expected: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    code, out, err = run("scan", "--config", str(config))
    assert code == 2
    assert out == ""
    lines = [line for line in err.splitlines() if line.startswith("nsx-route-gc: error:")]
    assert len(lines) == 1
    assert expected in lines[0]
    assert "Traceback" not in err


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    code, _, err = run("scan", "--config", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "nope.yaml: cannot read configuration" in err


def test_bad_log_format_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run("--log-format", "xml", "scan", "--config", str(tmp_path / "c.yaml"))
    assert code == 2
    assert "--log-format" in err


COMMANDS = ("validate", "scan", "explain", "apply", "restore", "demo", "simulate")


def test_help_names_every_command() -> None:
    code, out, _ = run("--help")
    assert code == 0
    for command in COMMANDS:
        assert command in out


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_shows_flags_without_a_value_and_no_type_noise(command: str) -> None:
    code, out, _ = run(*([command] if command else []), "--help")
    assert code == 0
    for noise in ("<bool>", "<list[", "<int range>", "[x>=1]", "<path>", "<str>", "<int>"):
        assert noise not in out, (command, noise)
    if command == "apply":
        assert "  -y, --yes " in out  # a flag: nothing between it and its help
        assert "--plan-sha256 HEX" in out
        assert "--batch-size N" in out
        assert "--tkg-config FILE" in out


def test_shell_completion_is_offered() -> None:
    code, out, _ = run("--help")
    assert code == 0
    assert "--install-completion" in out
    assert "--show-completion" in out


@pytest.mark.parametrize(("value", "code"), [("0", 2), ("1", 0)])
def test_counts_of_at_least_one(value: str, code: int) -> None:
    result = CliRunner().invoke(cli, ["apply", "--batch-size", value, "--help"])
    # --help is eager: a bad value is refused only when it is parsed before --help runs.
    assert result.exit_code in {0, 2}
    refused = CliRunner().invoke(cli, ["scan", "-c", "x.yaml", "--keep-runs", value])
    if code == 2:
        assert refused.exit_code == 2
        assert "is not a whole number of at least 1" in refused.output


def test_readme_synopsis_names_the_options_of_each_command() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    synopsis = readme.split("## Commands", 1)[1].split("```", 2)[1]
    for command in COMMANDS:
        usage = " ".join(
            line for line in synopsis.splitlines() if line.startswith(f"nsx-route-gc {command}")
        )
        block = synopsis.split(f"nsx-route-gc {command}", 1)[1].split("\nnsx-route-gc ", 1)[0]
        code, out, _ = run(command, "--help")
        assert code == 0
        # The options --help defines (a line starting with one), not those its text mentions.
        options = out.split("\nOptions:\n", 1)[1]
        offered = set(re.findall(r"^  (?:-\w, )?(--[a-z][a-z0-9-]*)", options, re.M)) - {"--help"}
        quoted = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", block))
        assert quoted == offered, (command, usage, quoted ^ offered)


def test_simulate_lists_the_vmc_scenario() -> None:
    code, out, _ = run("simulate", "--list")
    assert code == 0
    assert "vmc" in out.split()


def test_simulate_tells_how_to_trust_the_vmc_auth_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nsx_route_gc.runs import demo  # noqa: PLC0415 - patched where the CLI finds it

    def serve_once(scenario: str, directory: Path, on_ready: Any) -> None:
        with Simulator(load_scenario(scenario)) as sim:
            on_ready(sim.write_config(directory), sim)

    monkeypatch.setattr(demo, "serve", serve_once)
    code, out, _ = run("simulate", "--scenario", "vmc", "--dir", str(tmp_path))
    assert code == 0
    assert f"Try: REQUESTS_CA_BUNDLE={tmp_path.resolve()}/ca.pem nsx-route-gc scan" in out


def test_demo_runs_the_real_scan(tmp_path: Path) -> None:
    code, out, _ = run("demo", "--dir", str(tmp_path / "demo"))
    assert code == 0
    assert "Verdicts: live 3, orphaned 3, foreign 2" in out
    assert (tmp_path / "demo/reports/report.md").is_file()


def test_tkg_config_files_supply_nsx_settings_and_retired_cidrs(tmp_path: Path) -> None:
    """The seed article's own cl1 file tells where NSX is and which CIDR cl1 had."""
    with Simulator(load_scenario("seed")) as sim:
        written = sim.write_config(tmp_path / "sim")
        sim_config = yaml.safe_load(written.read_text())
        tkg = tmp_path / "cl1.yaml"
        tkg.write_text(
            "CLUSTER_NAME: cl1\n"
            "CLUSTER_CIDR: 172.16.136.0/21\n"
            "NSXT_POD_ROUTING_ENABLED: 'true'\n"
            f"NSXT_MANAGER_HOST: {sim.nsx_url}\n"
            "NSXT_ROUTER_PATH: /infra/tier-1s/tanzu-cl1\n"
            "NSXT_USERNAME: admin\n"
            f"NSXT_PASSWORD: {sim.nsx.password}\n"
            'NSXT_ALLOW_UNVERIFIED_SSL: "false"\n'
        )
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "nsx": {"ca_file": sim_config["nsx"]["ca_file"]},
                    "clusters": sim_config["clusters"],
                    "retired_clusters": [{"name": "cl1"}],
                }
            )
        )
        code, out, err = run("scan", "--config", str(config), "--tkg-config", str(tkg))
    assert code == 0, err
    assert "Verdicts: live 3, orphaned 3, foreign 2" in out
    assert "cluster-gone" in out
    assert sim.nsx.password not in out + err


def test_unwritable_report_dir_is_refused_before_anything_runs(
    seed: tuple[Simulator, Path], tmp_path: Path
) -> None:
    sim, config = seed
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for command in (["scan"], ["apply", "--yes"]):
        code, _, err = run(*command, "--config", str(config), "--report-dir", str(blocker / "r"))
        assert code == 2
        assert "--report-dir" in err
        assert "cannot write there" in err
        assert "Traceback" not in err
    assert sim.nsx.counters.get("nsx_list_routes", 0) == 0
    assert sim.nsx.counters.get("nsx_hierarchical", 0) == 0


def test_tkg_file_with_bad_base64_is_one_line_naming_file_and_variable(tmp_path: Path) -> None:
    tkg = tmp_path / "cl1.yaml"
    tkg.write_text(
        f"CLUSTER_NAME: cl1\nNSXT_PASSWORD: {CANARY}\nNSXT_CLIENT_CERT_DATA: '{CANARY}%'\n"
        "NSXT_CLIENT_CERT_KEY_DATA: 'not base64!'\n"
    )
    config = tmp_path / "config.yaml"
    config.write_text("clusters: []\n")
    code, out, err = run("scan", "--config", str(config), "--tkg-config", str(tkg))
    assert code == 2
    assert out == ""
    assert err.strip() == (
        f"nsx-route-gc: error: {tkg}: NSXT_CLIENT_CERT_DATA: not valid base64 "
        "(TKG expects a base64 PEM)"
    )
    assert CANARY not in err


# --- a TKG file alone (issue 10): no `nsx:` settings but those the TKG files provide ---------


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the decoded certificates go for this test (instead of the system's temp dir)."""
    directory = tmp_path / "private-tmp"
    directory.mkdir()
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


@pytest.mark.parametrize("scenario", ["tkg", "tkg-cert"])
def test_tkg_files_alone_scan_and_apply(scenario: str, tmp_path: Path, private_tmp: Path) -> None:
    with Simulator(load_scenario(scenario)) as sim:
        sim.nsx.password = CANARY
        config = sim.write_config(tmp_path / "sim")
        tkg = [
            arg for f in sim.tkg_config_files(tmp_path / "sim") for arg in ("--tkg-config", str(f))
        ]
        assert "nsx" not in yaml.safe_load(config.read_text())

        code, out, err = run(
            "scan", "--config", str(config), *tkg, "--report-dir", str(tmp_path / "s")
        )
        assert code == 0, err
        assert "Verdicts: live 3, orphaned 3, foreign 2" in out
        assert sim.nsx.counters.get("nsx_hierarchical", 0) == 0

        code, out2, err2 = run(
            "apply", "--yes", "--config", str(config), *tkg, "--report-dir", str(tmp_path / "a")
        )
        assert code == 0, err2
        assert "deleted 3" in out2
        assert sim.nsx.route_count() == 5
        sessions = sim.nsx.counters.get("nsx_session", 0)
    if scenario == "tkg-cert":
        # The client certificate was the auth: no login, no password anywhere.
        assert sessions == 0
    else:
        assert sessions == 2  # one login per run
    # The decoded CA (and certificate and key) existed only while each command ran.
    assert list(private_tmp.iterdir()) == []
    everything = out + err + out2 + err2
    for directory in (tmp_path / "s", tmp_path / "a"):
        everything += "".join(p.read_text() for p in directory.iterdir())
    assert CANARY not in everything
    assert base64.b64encode(CANARY.encode()).decode() not in everything
    assert "PRIVATE KEY" not in everything


def test_tkg_certificate_files_are_removed_when_the_configuration_is_refused(
    tmp_path: Path, private_tmp: Path
) -> None:
    with Simulator(load_scenario("tkg-cert")) as sim:
        config = sim.write_config(tmp_path / "sim")
        tkg = sim.tkg_config_files(tmp_path / "sim")[0]
        config.write_text("clusters: []\npolicy: {max_deletes: many}\n")
        code, _, err = run("scan", "--config", str(config), "--tkg-config", str(tkg))
    assert code == 2
    assert "policy.max_deletes" in err
    assert list(private_tmp.iterdir()) == []


def test_tkg_warnings_are_logged(tmp_path: Path) -> None:
    with Simulator(load_scenario("tkg")) as sim:
        config = sim.write_config(tmp_path / "sim")
        files = sim.tkg_config_files(tmp_path / "sim")
        text = files[1].read_text()
        files[1].write_text(
            text.replace(
                '"/infra/tier-1s/tanzu-cl1"', '"/orgs/default/projects/p/infra/tier-1s/tanzu-cl1"'
            )
        )
        extra = tmp_path / "mgmt.yaml"
        extra.write_text(
            "CLUSTER_NAME: mgmt\nNSXT_POD_ROUTING_ENABLED: false\nNSXT_MANAGER_HOST: elsewhere\n"
        )
        args = [arg for f in [*files, extra] for arg in ("--tkg-config", str(f))]
        code, _, err = run("--log-format", "json", "scan", "--config", str(config), *args)
    assert code == 0, err
    warnings = [
        json.loads(line)["message"]
        for line in err.splitlines()
        if line.startswith("{") and json.loads(line)["event"] == "tkg.warning"
    ]
    assert len(warnings) == 3
    assert "the CCM writes its routes to /infra/tier-1s/tanzu-cl1" in warnings[0]
    assert (
        "CLUSTER_CIDR is not set: cluster 'mgmt' gets TKG's default pod CIDR 100.96.0.0/11"
        in warnings[1]
    )
    assert "NSXT_POD_ROUTING_ENABLED is false" in warnings[2]


# --- issue 13: one-line errors, and no secret on stdout ----------------------------------


def test_an_overflowing_max_plan_age_is_one_line_exit_2(
    seed: tuple[Simulator, Path], tmp_path: Path
) -> None:
    _, config = seed
    plan = tmp_path / "plan.json"
    plan.write_text("{}")
    code, out, err = run(
        "apply", "--config", str(config), "--plan", str(plan), "--yes", "--max-plan-age", "1e400"
    )
    assert code == 2
    assert err.strip() == "nsx-route-gc: error: --max-plan-age: longer than 3650d"
    assert "Traceback" not in out + err


def test_a_config_that_is_not_utf8_is_one_line_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(b"nsx:\n  host: \xff\n")
    code, out, err = run("scan", "--config", str(config))
    assert code == 2
    assert err.strip() == f"nsx-route-gc: error: {config}: configuration not UTF-8 text"
    assert "Traceback" not in out + err


def test_a_duplicate_policy_block_is_exit_2(seed: tuple[Simulator, Path]) -> None:
    _, config = seed
    config.write_text(config.read_text() + "policy:\n  unattributed: delete\n")
    text = config.read_text()
    assert text.count("\npolicy:") == 2, "the simulator's configuration has a policy block"
    code, _, err = run("scan", "--config", str(config))
    assert code == 2
    assert "found duplicate key 'policy'" in err


def test_a_secret_in_the_terminal_summary_is_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    secret = "Std0ut-C@nary pw"

    logs.register_secret(secret)
    doc = dict(report())
    doc["errors"] = [f"login echoed j_password={urllib.parse.quote_plus(secret)}"]
    cli_module._print_outcome(Outcome(1, doc, [], error=f"failed: {secret}"))
    captured = capsys.readouterr()
    for text in (captured.out, captured.err):
        assert secret not in text
        assert urllib.parse.quote_plus(secret) not in text
    assert "j_password=***" in captured.out


def test_apply_plan_sha256_needs_a_plan(seed: tuple[Simulator, Path]) -> None:
    _, config = seed
    code, _, err = run("apply", "--config", str(config), "--yes", "--plan-sha256", "0" * 64)
    assert code == 2
    assert err.strip() == "nsx-route-gc: error: --plan-sha256, --route and --router need --plan"
