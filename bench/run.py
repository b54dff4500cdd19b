"""Benchmark of nsx-route-gc against the bundled simulator (issue 6).

For each size and command (``scan``, then ``apply --yes`` on the same simulator state), the
real CLI runs as a child process against the simulator with a per-request latency, a rate
limit answering 429 and a concurrency limit answering 503. The simulator's counters give the
calls by kind; the child's own VmHWM gives its peak RSS. Each figure is set against a
lower bound computed from the scenario: the fewest calls any correct tool needs, and the
least time the rate limit and the latency allow.

    .venv/bin/python bench/run.py [--sizes S,M,L] [--latency 0.02] [--out bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from nsx_route_gc.simulator import SIZES, Scenario, Simulator, scale_size

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import judge_bench  # noqa: E402 - a sibling script, importable once bench/ is on the path

NSX_PAGE = 1000  # routes per list page (the NSX default, the tool's page_size)
TIER1_PAGE = 1000
NODE_PAGE = 500  # nodes per Kubernetes list page (the tool's limit)
BATCH_MAX = 100  # routes per hierarchical delete (the tool's --batch-size default)
TOOL_CONCURRENCY = 8  # nsx.concurrency default: routers listed at once
TOOL_RATE = 90.0  # nsx.rate_limit default
# The targets at size L.
TARGET_CALLS = 1.1
TARGET_WALL = 1.5
TARGET_RSS_MB = 250.0
TARGET_JUDGE_S = 1.0


@dataclass
class Bound:
    """The fewest NSX calls by kind, the Kubernetes list pages, the least time."""

    nsx: dict[str, int]
    kube_lists: int
    latency: float
    rate: float

    @property
    def nsx_calls(self) -> int:
        return sum(self.nsx.values())

    @property
    def rate_seconds(self) -> float:
        return self.nsx_calls / self.rate

    @property
    def latency_seconds(self) -> float:
        # Every call waits the latency at least once; the tool keeps TOOL_CONCURRENCY in flight.
        return self.nsx_calls * self.latency / TOOL_CONCURRENCY


@dataclass
class Measurement:
    size: str
    command: str
    exit_code: int
    wall: float
    rss_mb: float
    counters: dict[str, int]
    kube_lists: int
    bound: Bound
    phases: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def nsx(self) -> dict[str, int]:
        c = self.counters
        return {
            "list": c.get("nsx_list_routes", 0)
            + c.get("nsx_list_tier1s", 0)
            + c.get("nsx_list_projects", 0),
            "get": c.get("nsx_get", 0),
            "delete": c.get("nsx_delete", 0),
            "hierarchical": c.get("nsx_hierarchical", 0),
            "patch": c.get("nsx_patch", 0),
            "search": c.get("nsx_search", 0),
            "session": c.get("nsx_session", 0) + c.get("nsx_session_destroy", 0),
        }

    @property
    def nsx_calls(self) -> int:
        return sum(self.nsx.values())


def routes_per_router(scenario: Scenario) -> Counter[str]:
    counts: Counter[str] = Counter({t: 0 for t in scenario.tier1s})
    counts.update(r.router for r in scenario.routes)
    return counts


def scan_bound(scenario: Scenario, latency: float, rate: float) -> Bound:
    pages = sum(max(1, math.ceil(n / NSX_PAGE)) for n in routes_per_router(scenario).values())
    tier1s = max(1, math.ceil(len(scenario.tier1s) / TIER1_PAGE))
    # Without configured routers the tool discovers them: /infra's Tier-1s and the projects'.
    projects = 1 if scenario.config_routers is None else 0
    nsx = {"list": pages + tier1s + projects, "session": 2}
    kube = sum(max(1, math.ceil(len(c.nodes) / NODE_PAGE)) for c in scenario.clusters)
    return Bound(nsx, kube, latency, rate)


def apply_bound(scan: Bound, deletions: Counter[str]) -> Bound:
    batches = sum(math.ceil(n / BATCH_MAX) for n in deletions.values())
    return Bound({**scan.nsx, "hierarchical": batches}, scan.kube_lists, scan.latency, scan.rate)


def planned_deletions(report_json: Path) -> Counter[str]:
    """Routes the scan put up for deletion, per router (the fewest batches follow)."""
    report = json.loads(report_json.read_text())
    return Counter(r["router_path"] for r in report["routes"] if r["action"] == "delete")


# Log events that end each phase of a run, in order; phases of a run that has none are skipped.
MILESTONES = (
    ("start", "scan.started"),
    ("list", "router.listed"),
    ("inventory", "cluster.inventoried"),
    ("judge", "router.deleting"),
    ("delete", "route.deleted"),
    ("report", "run.summary"),
)


def phases(log_file: Path, started: float) -> str:
    """Seconds per phase, from the child's JSON log: the last event of each milestone."""
    last: dict[str, float] = {}
    first_delete = None
    with log_file.open() as f:
        for line in f:
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            stamp = event.get("timestamp")
            if not stamp:
                continue
            at = datetime.fromisoformat(stamp).timestamp()
            last[event["event"]] = at
            if event["event"] == "router.deleting" and first_delete is None:
                first_delete = at
    if first_delete is not None:
        last["router.deleting"] = first_delete
    ends: list[tuple[str, float]] = []
    for name, event in MILESTONES:
        if event not in last:
            continue
        # A scan judges on its way to the report: no deletion log line splits the two.
        label = "judge+report" if name == "report" and first_delete is None else name
        if ends and last[event] <= ends[-1][1]:
            # Done within the previous phase (clusters inventoried while routes were listed).
            ends[-1] = (f"{ends[-1][0]}+{label}", ends[-1][1])
        else:
            ends.append((label, last[event]))
    out, previous = [], started
    for label, end in ends:
        out.append(f"{label} {end - previous:.1f}")
        previous = end
    return ", ".join(out)


# The child records its own high-water mark (VmHWM of its own address space) as it exits.
# ru_maxrss from wait4 is no good here: Linux carries the RSS of the forking parent (this
# process, which holds the simulator, gigabytes at size L) across fork and exec into it.
_PEAK_WRAPPER = """
import atexit, runpy, sys
out = sys.argv.pop(1)
def record():
    with open("/proc/self/status") as status, open(out, "w") as peak:
        peak.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(record)
sys.argv[0] = "nsx-route-gc"
runpy.run_module("nsx_route_gc", run_name="__main__", alter_sys=True)
"""


def run_cli(args: list[str], log_file: Path) -> tuple[int, float, float, float]:
    """Run the CLI once: exit code, wall seconds, the child's own peak RSS in MB, start time."""
    peak_file = log_file.with_suffix(".peak")
    python = str(ROOT / ".venv" / "bin" / "python")
    cmd = [python, "-c", _PEAK_WRAPPER, str(peak_file), "--log-format", "json", *args]
    with log_file.open("w") as log:
        epoch = time.time()
        started = time.monotonic()
        child = subprocess.run(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, check=False)
        wall = time.monotonic() - started
    peak_kib = float(peak_file.read_text()) if peak_file.exists() else float("nan")
    return child.returncode, wall, peak_kib / 1024, epoch


def kube_list_count(sim: Simulator) -> int:
    return sum(state.counters["list_nodes"] for state in sim.kube.values())


def reset_counters(sim: Simulator) -> None:
    sim.nsx.reset_counters()
    for state in sim.kube.values():
        state.counters.clear()


def measure(
    sim: Simulator, size: str, command: str, args: list[str], bound: Bound, log_file: Path
) -> Measurement:
    reset_counters(sim)
    code, wall, rss, epoch = run_cli(args, log_file)
    m = Measurement(
        size,
        command,
        code,
        wall,
        rss,
        dict(sim.nsx.counters),
        kube_list_count(sim),
        bound,
        phases(log_file, epoch),
    )
    if code != 0:
        m.notes.append(f"exit code {code}, see {log_file}")
    print(row_text(m), flush=True)
    return m


def bench_size(
    size: str, latency: float, work: Path, rate: float, limit: int, commands: set[str]
) -> list[Measurement]:
    started = time.monotonic()
    scenario = scale_size(size)
    bound = scan_bound(scenario, latency, rate)
    out = []
    with Simulator(scenario) as sim:
        sim.nsx.set_knobs(latency=latency, rate_limit=rate, concurrency_limit=limit)
        directory = work / size
        config = sim.write_config(directory)
        print(f"# {size}: {scenario.description} (set up in {time.monotonic() - started:.1f}s)")
        scan_dir = directory / "scan"
        scan = measure(
            sim,
            size,
            "scan",
            ["scan", "--config", str(config), "--report-dir", str(scan_dir)],
            bound,
            directory / "scan.log",
        )
        out.append(scan)
        deletions = planned_deletions(scan_dir / "report.json")
        expected = scenario.expected.get("orphaned", 0)
        if sum(deletions.values()) != expected:
            scan.notes.append(f"{sum(deletions.values())} deletions planned, {expected} expected")
        if "apply" not in commands:
            return out
        apply = measure(
            sim,
            size,
            "apply",
            ["apply", "--yes", "--config", str(config), "--report-dir", str(directory / "apply")],
            apply_bound(bound, deletions),
            directory / "apply.log",
        )
        left = sim.nsx.route_count()
        if left != len(scenario.routes) - expected:
            apply.notes.append(f"{len(scenario.routes) - left} routes deleted, {expected} expected")
        out.append(apply)
    return out


# -- output -----------------------------------------------------------------------------

HEADER = (
    "size",
    "command",
    "exit",
    "NSX list",
    "get",
    "delete",
    "hier. patch",
    "search",
    "session",
    "NSX calls",
    "min calls",
    "calls x min",
    "k8s list",
    "k8s min",
    "429",
    "503",
    "wall s",
    "rate bound s",
    "latency bound s",
    "wall x bound",
    "peak RSS MB",
    "phases s",
)


def cells(m: Measurement) -> list[str]:
    nsx, b = m.nsx, m.bound
    bound_s = max(b.rate_seconds, b.latency_seconds)
    return [
        m.size,
        m.command,
        str(m.exit_code),
        str(nsx["list"]),
        str(nsx["get"]),
        str(nsx["delete"]),
        str(nsx["hierarchical"]),
        str(nsx["search"]),
        str(nsx["session"]),
        str(m.nsx_calls),
        str(b.nsx_calls),
        f"{m.nsx_calls / b.nsx_calls:.2f}",
        str(m.kube_lists),
        str(b.kube_lists),
        str(m.counters.get("429", 0)),
        str(m.counters.get("503", 0)),
        f"{m.wall:.1f}",
        f"{b.rate_seconds:.1f}",
        f"{b.latency_seconds:.1f}",
        f"{m.wall / bound_s:.2f}",
        f"{m.rss_mb:.0f}",
        m.phases,
    ]


def row_text(m: Measurement) -> str:
    return "  ".join(f"{h}={c}" for h, c in zip(HEADER, cells(m), strict=True))


def markdown_table(rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def targets(measurements: list[Measurement], judged: judge_bench.Result | None) -> list[str]:
    lines = []
    for m in measurements:
        if m.size != "L":
            continue
        b = m.bound
        checks = [
            (f"NSX calls {m.nsx_calls} <= {TARGET_CALLS} x {b.nsx_calls}",
             m.nsx_calls <= TARGET_CALLS * b.nsx_calls),
            (f"wall {m.wall:.1f}s <= {TARGET_WALL} x {b.rate_seconds:.1f}s",
             m.wall <= TARGET_WALL * b.rate_seconds),
            (f"exit code {m.exit_code} (no failure from 429/503)", m.exit_code == 0),
            (f"peak RSS {m.rss_mb:.0f} MB <= {TARGET_RSS_MB:g} MB", m.rss_mb <= TARGET_RSS_MB),
        ]  # fmt: skip
        lines += [f"- L {m.command}: {text}: {'met' if ok else 'NOT met'}" for text, ok in checks]
        bucket = m.nsx_calls / TOOL_RATE
        lines.append(
            f"- L {m.command}: token bucket s: {m.nsx_calls} calls at {TOOL_RATE:g}/s need "
            f"{bucket:.1f}s = {bucket / b.rate_seconds:.2f} x the rate bound, before any other work"
        )
    if judged is not None:
        ok = judged.seconds <= TARGET_JUDGE_S
        lines.append(
            f"- judgement alone: {judged.seconds:.2f}s <= {TARGET_JUDGE_S:g}s: "
            f"{'met' if ok else 'NOT met'}"
        )
    return lines


def machine() -> list[str]:
    model = "unknown"
    with Path("/proc/cpuinfo").open() as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with Path("/proc/meminfo").open() as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return [
        f"- date: {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"- CPU: {model}, {os.cpu_count()} cores (shared with other work: timings are noisy)",
        f"- memory: {mem_kb / 1024 / 1024:.1f} GiB",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.release()}",
    ]


def write_results(
    out: Path,
    measurements: list[Measurement],
    judged: judge_bench.Result | None,
    args: argparse.Namespace,
) -> None:
    lines = [
        "# nsx-route-gc benchmark results",
        "",
        "Written by `bench/run.py` (`make bench`): the real CLI in a child process against the "
        "bundled simulator; calls counted by the simulator, peak RSS of the child alone "
        "(its own `VmHWM`, recorded as it exits).",
        "",
        "## Machine",
        "",
        *machine(),
        "",
        "## Set-up",
        "",
        f"Simulator: latency {args.latency * 1000:g} ms per request, rate limit "
        f"{args.rate_limit:g} requests/s (429 beyond), concurrency limit {args.concurrency_limit}"
        " (503 beyond). Sizes (routes / Tier-1s / clusters x nodes, 10% orphaned): "
        + "; ".join(
            f"{s}: {SIZES[s]['routes']:,} / {SIZES[s]['routers']} / "
            f"{SIZES[s]['clusters']} x {SIZES[s]['nodes_per_cluster']}"
            for s in args.sizes
        )
        + ". Each command runs the real CLI as a child process with `--report-dir`; "
        "`apply --yes` runs on the state the scan left (nothing deleted yet).",
        "",
        "Minimum calls: per router ceil(routes / 1000) list pages, the Tier-1 list, the "
        "project list (routers are discovered), session create and destroy, and for apply per "
        f"router with deletions ceil(deletions / {BATCH_MAX}) hierarchical deletes. Confirming "
        "the deletions (issue 4) is not in the minimum: apply pays for it with searches (the "
        "`search` column), about one per 1,000 routes on the routers it deleted from. Kubernetes: "
        f"per cluster ceil(nodes / {NODE_PAGE}) list pages. Rate bound = minimum NSX calls / "
        f"{args.rate_limit:g} per s; latency bound = minimum NSX calls x latency / "
        f"{TOOL_CONCURRENCY} (the tool's default concurrency). `wall x bound` divides by the "
        "larger of the two. `phases s`: seconds from the child's start to its first scan log "
        "line, then to the last router listed, the last cluster inventoried, the first "
        "router deleting, the last route deleted and the run summary (the rest of the wall "
        "time is printing and interpreter exit); `list+inventory` when the clusters were "
        "inventoried while the routes were listed. The machine's 2 cores are shared with the "
        "simulator and other work: expect a few tenths of a second of noise, more at L.",
        "",
        "## Results",
        "",
        *markdown_table([cells(m) for m in measurements]),
        "",
    ]
    notes = [f"- {m.size} {m.command}: {n}" for m in measurements for n in m.notes]
    if notes:
        lines += ["Notes:", "", *notes, ""]
    if judged is not None:
        lines += ["## Judgement alone", "", judged.markdown(), ""]
    target_lines = targets(measurements, judged)
    if target_lines:
        lines += ["## Targets at size L", "", *target_lines, "", *WHY_MISSED, ""]
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


# Structural reasons for the targets these runs miss; the figures above say by how much.
WHY_MISSED = [
    "Where the wall-time target is missed, the reasons are structural, not noise:",
    "",
    "- The client's own token bucket (`nsx.rate_limit`, 90 requests/s by default, as the",
    "  issue asks) alone needs about 1.11 x the rate bound (100/s) for the NSX calls: see the",
    "  `token bucket s` lines above. That leaves well under half of the bound for everything",
    "  that is not an NSX call.",
    "- What comes after the last NSX listing cannot overlap it: judgement needs every router",
    "  (the run-wide `max_deletes` limit), deletions need the whole judgement, and the reports",
    "  need every verdict. Judging each router as soon as it was listed was built and measured:",
    "  no faster, because the client is CPU-bound while listing (decoding, validating and",
    "  packing 100,000 route bodies, and the inventory on its own thread) on these 2 cores,",
    "  which it shares with the simulator.",
    "- So a scan at L spends, after the listing, about a second judging and a second writing",
    "  reports of 100,000 rows (report.json carries every route's NSX body, as the brief asks),",
    "  and half a second starting Python; apply adds its deletion batches and confirmation",
    "  searches, which are rate-bound themselves. See the `phases s` column.",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="S,M,L", help="comma-separated: S, M, L")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per request")
    parser.add_argument("--rate-limit", type=float, default=100.0, help="requests/s (429)")
    parser.add_argument("--concurrency-limit", type=int, default=40, help="in flight (503)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--work", type=Path, help="keep configs, logs, reports here")
    parser.add_argument("--commands", default="scan,apply", help="scan, or scan,apply")
    parser.add_argument("--no-judge", action="store_true", help="skip the judgement benchmark")
    args = parser.parse_args()
    args.sizes = [s.strip().upper() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in args.sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; known: {', '.join(SIZES)}")
    commands = {c.strip() for c in args.commands.split(",")}
    measurements: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="nsx-route-gc-bench-") as tmp:
        work = args.work or Path(tmp)
        for size in args.sizes:
            measurements += bench_size(
                size, args.latency, work, args.rate_limit, args.concurrency_limit, commands
            )
    judged = None if args.no_judge else judge_bench.measure()
    if judged is not None:
        print(judged.markdown())
    print()
    print("\n".join(markdown_table([cells(m) for m in measurements])))
    for line in targets(measurements, judged):
        print(line)
    write_results(args.out, measurements, judged, args)
    return 0 if all(m.exit_code == 0 for m in measurements) else 1


if __name__ == "__main__":
    sys.exit(main())
