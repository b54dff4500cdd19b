"""Issue 13: an apply killed at any moment (kill -9, SIGTERM, Ctrl-C) leaves a report directory
from which ``restore --from DIR`` brings back every route it deleted.

The CLI runs as a child process against the simulator in this process; deletions take
``write_latency`` to land, and land even when the client is gone by then, so a kill catches
batches in flight as it would against a real manager.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from nsx_route_gc.reports.journal import JOURNAL_NAME, is_finished, read_journal
from nsx_route_gc.simulator import Simulator, scale

WRITE_LATENCY = 0.25
BATCH = 10  # 180 orphans on 2 routers: 18 batches, about 9 rounds of WRITE_LATENCY


@dataclass
class Crash:
    sim: Simulator
    config: Path
    reports: Path
    before: dict[tuple[str, str], dict[str, Any]]  # every route, by (router, id)

    def now(self) -> dict[tuple[str, str], dict[str, Any]]:
        return routes_of(self.sim)

    def deleted(self) -> set[tuple[str, str]]:
        return set(self.before) - set(self.now())


def routes_of(sim: Simulator) -> dict[tuple[str, str], dict[str, Any]]:
    return {(t1, r["id"]): r for t1 in list(sim.nsx.tier1s) for r in sim.nsx.routes(t1)}


def content(route: dict[str, Any]) -> tuple[object, ...]:
    hops = tuple(sorted((h["ip_address"], h.get("admin_distance", 1)) for h in route["next_hops"]))
    tags = tuple(sorted((t["scope"], t["tag"]) for t in route.get("tags", [])))
    return (route["network"], hops, tags, route.get("display_name"))


@contextmanager
def crash_env(tmp_path: Path) -> Iterator[Crash]:
    scenario = scale(routers=2, routes=600, clusters=4, nodes_per_cluster=10, orphan_fraction=0.3)
    with Simulator(scenario) as sim:
        config = sim.write_config(tmp_path / "sim")
        data = yaml.safe_load(config.read_text())
        data["nsx"]["concurrency"] = 2
        data["nsx"]["max_concurrency"] = 2  # batches land in rounds: a kill catches some
        config.write_text(yaml.safe_dump(data))
        yield Crash(sim, config, tmp_path / "reports", routes_of(sim))


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("NSXT_", "NSX_ROUTE_GC_"))}


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nsx_route_gc", "--log-format", "json", *args]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args), capture_output=True, text=True, env=env(), timeout=180, check=False
    )


def start_apply(c: Crash, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command(
            "apply",
            "--yes",
            "--config",
            str(c.config),
            "--report-dir",
            str(c.reports),
            "--batch-size",
            str(BATCH),
            *extra,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )


def batches_sent(journal: Path) -> int:
    if not journal.is_file():
        return 0
    sent = set()
    for line in journal.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # being written
        if record.get("event") == "send":
            sent.add(record["batch"])
    return len(sent)


def answered(journal: Path) -> int:
    if not journal.is_file():
        return 0
    return sum(1 for line in journal.read_text().splitlines() if '"event": "outcome"' in line)


def kill_when(c: Crash, sig: signal.Signals, moment: str) -> str:
    """Start apply, signal it at ``moment``, wait for it; its stderr."""
    c.sim.nsx.write_latency = WRITE_LATENCY
    if moment == "confirming":
        # Slow reads too, so that the confirmation is still going when the signal comes.
        c.sim.nsx.latency = 0.4
    journal = c.reports / JOURNAL_NAME
    proc = start_apply(c)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"apply ended before the kill: {proc.stderr.read()[-2000:]}")
            if moment == "first-batch" and batches_sent(journal) >= 1:
                break
            if moment == "mid-run" and batches_sent(journal) >= 6:
                break
            # Every batch answered: the run is confirming, then writing its report.
            if moment == "confirming" and answered(journal) >= 180:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the moment to kill never came")
        if moment != "confirming":
            # The batch just journaled is on its way: let it reach NSX, not yet take effect.
            time.sleep(WRITE_LATENCY / 3)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Whatever was sent before the kill lands now, as NSX carries out an accepted request.
    time.sleep(WRITE_LATENCY * 3)
    c.sim.nsx.write_latency = c.sim.nsx.latency = 0.0
    return err


def restore(c: Crash, source: Path) -> subprocess.CompletedProcess[str]:
    return cli(
        "restore",
        "--yes",
        "--config",
        str(c.config),
        "--from",
        str(source),
        "--report-dir",
        str(c.reports.parent / "restored"),
    )


def assert_all_back(c: Crash, deleted: set[tuple[str, str]]) -> None:
    result = restore(c, c.reports)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((c.reports.parent / "restored" / "report.json").read_text())
    recreated = {(r["router_path"], r["id"]) for r in report["routes"] if r["note"] == "restored"}
    assert recreated == deleted
    after = c.now()
    assert set(after) == set(c.before)
    assert {k: content(v) for k, v in after.items()} == {k: content(v) for k, v in c.before.items()}


MOMENTS = [
    (signal.SIGKILL, "first-batch"),
    (signal.SIGKILL, "mid-run"),
    (signal.SIGKILL, "confirming"),
    (signal.SIGTERM, "first-batch"),
    (signal.SIGTERM, "mid-run"),
    (signal.SIGINT, "mid-run"),
    (signal.SIGINT, "confirming"),
]


@pytest.mark.parametrize(("sig", "moment"), MOMENTS, ids=[f"{s.name}-{m}" for s, m in MOMENTS])
def test_killed_apply_leaves_the_way_back(tmp_path: Path, sig: signal.Signals, moment: str) -> None:
    with crash_env(tmp_path) as c:
        err = kill_when(c, sig, moment)
        deleted = c.deleted()
        assert deleted, "the kill came before any deletion landed"
        if moment != "confirming":
            assert len(deleted) < 180, "the kill came after every deletion"
        journal = c.reports / JOURNAL_NAME
        if not (c.reports / "report.json").exists():
            assert not is_finished(journal)
        if sig is not signal.SIGKILL:
            # Ctrl-C and SIGTERM stop sending and say where the way back is, in one line.
            last = err.strip().splitlines()[-1]
            assert last.startswith("nsx-route-gc: error: interrupted"), last
            assert f"restore --from {c.reports}" in last
        assert_all_back(c, deleted)


def test_an_unfinished_journal_refuses_a_rerun_unless_forced(tmp_path: Path) -> None:
    with crash_env(tmp_path) as c:
        kill_when(c, signal.SIGKILL, "mid-run")
        deleted = c.deleted()
        journal = c.reports / JOURNAL_NAME
        sent = {(e.router, e.id) for e in read_journal(journal).entries}
        assert deleted <= sent

        refused = cli("apply", "--yes", "--config", str(c.config), "--report-dir", str(c.reports))
        assert refused.returncode == 2
        line = refused.stderr.strip().splitlines()[-1]
        assert line.startswith(f"nsx-route-gc: error: {journal}: unfinished journal")
        assert "--force" in line
        assert c.deleted() == deleted  # nothing more was deleted

        forced = cli(
            "apply",
            "--yes",
            "--force",
            "--config",
            str(c.config),
            "--report-dir",
            str(c.reports),
        )
        assert forced.returncode == 0, forced.stderr[-3000:]
        kept = sorted(c.reports.glob("journal.*.jsonl"))
        assert len(kept) == 1
        assert {(e.router, e.id) for e in read_journal(kept[0]).entries} == sent
        assert is_finished(journal)
        # The first run's deletions come back from the journal set aside.
        result = restore(c, kept[0])
        assert result.returncode == 0, result.stderr[-3000:]
        assert deleted <= set(c.now())
