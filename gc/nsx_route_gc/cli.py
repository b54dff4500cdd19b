"""The command line. The only module that reads argv, prints and exits."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, NoReturn

import structlog
import typer

from nsx_route_gc import __version__, logs
from nsx_route_gc.config import Config, load_config, parse_duration
from nsx_route_gc.errors import ConfigError, PlanError, RouteGcError
from nsx_route_gc.progress import (
    NULL_PROGRESS,
    NullProgress,
    Progress,
    RichProgress,
    choose_progress,
)
from nsx_route_gc.reports.explain import explain, find_routes
from nsx_route_gc.reports.files import check_report_dir
from nsx_route_gc.reports.journal import JOURNAL_NAME, is_finished
from nsx_route_gc.reports.render import to_terminal
from nsx_route_gc.reports.retention import new_run_dir, prune_runs
from nsx_route_gc.reports.saved_plan import read_report
from nsx_route_gc.runs import frame as app
from nsx_route_gc.runs.apply import Proposal, run_apply
from nsx_route_gc.runs.restore import run_restore
from nsx_route_gc.runs.validate import file_checks, run_validate
from nsx_route_gc.tkg import materialised, merge_tkg, read_tkg_config

log = structlog.get_logger(__name__)

cli = typer.Typer(
    name="nsx-route-gc",
    help=(
        "Find and delete NSX static routes left behind by Kubernetes routable pods "
        "(vSphere CCM routes whose node or cluster is gone)."
    ),
    add_completion=True,
    # Plain help: flags show no value, options the metavar given (FILE, DIR, N).
    rich_markup_mode=None,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _positive(value: int | None) -> int | None:
    if value is not None and value < 1:
        raise typer.BadParameter(f"{value} is not a whole number of at least 1")
    return value


ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        help="Configuration YAML (see README).",
        show_default=False,
    ),
]
TkgOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--tkg-config",
        metavar="FILE",
        help=(
            "A TKG cluster configuration file (repeatable): its NSXT_* settings and "
            "CLUSTER_NAME/CLUSTER_CIDR; they override the configuration file, the "
            "environment overrides them."
        ),
        show_default=False,
    ),
]
PlanShaOption = Annotated[
    str | None,
    typer.Option(
        "--plan-sha256",
        metavar="HEX",
        help="The SHA-256 the change ticket approved: refuse the file (exit 2) unless its "
        "digest (plan_sha256 of a scan report, restore_sha256 of an apply report) is this.",
        show_default=False,
    ),
]
ReportDirOption = Annotated[
    Path | None,
    typer.Option(
        "--report-dir",
        metavar="DIR",
        help="Write report.json, report.md and report.csv (apply: and journal.jsonl, each "
        "route's body before its deletion is sent) into this directory. A directory that "
        "holds a report already is refused unless --force.",
        show_default=False,
    ),
]


KeepRunsOption = Annotated[
    int | None,
    typer.Option(
        "--keep-runs",
        metavar="N",
        callback=_positive,
        help="Write each run into its own subdirectory run-<UTC time> of --report-dir and "
        "keep the newest N (never one holding an unfinished journal).",
        show_default=False,
    ),
]
GzipOption = Annotated[
    bool,
    typer.Option("--gzip", help="Write report.json.gz and report.csv.gz instead of .json, .csv."),
]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Write into a --report-dir that holds the report of an earlier run (replacing it).",
    ),
]


class Target:
    """Where a run writes its reports: --report-dir itself, or (--keep-runs) a new run
    subdirectory of it, pruned to the newest N after the run."""

    def __init__(
        self, report_dir: Path | None, keep_runs: int | None, *, force: bool = False
    ) -> None:
        self.force = force
        if keep_runs is not None and report_dir is None:
            _fail("--keep-runs needs --report-dir", app.EXIT_USAGE)
        self.root = report_dir if keep_runs is not None else None
        self.keep = keep_runs
        self.dir = report_dir
        if report_dir is not None and keep_runs is not None:
            try:
                self.dir = new_run_dir(report_dir, datetime.now(UTC))
            except OSError as exc:
                _fail(f"--report-dir {report_dir}: {exc.strerror or exc}", app.EXIT_USAGE)

    def prune(self) -> None:
        if self.root is None or self.keep is None:
            return
        for path in prune_runs(self.root, self.keep):
            log.info("reports.pruned", directory=str(path), keep_runs=self.keep)


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    # SIGTERM (kubectl delete, activeDeadlineSeconds) as Ctrl-C: batches in flight finish,
    # no new one is sent, and the journal keeps what was.
    raise KeyboardInterrupt


def _interrupted(report_dir: Path | None) -> str:
    journal = report_dir / JOURNAL_NAME if report_dir is not None else None
    if journal is not None and journal.is_file() and not is_finished(journal):
        return (
            f"interrupted; the deletions sent so far are recorded in {journal}: "
            f"restore --from {report_dir} brings them back"
        )
    return "interrupted"


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"nsx-route-gc: error: {logs.scrub(message)}", err=True)
    raise typer.Exit(code)


def _load(stack: ExitStack, path: Path, tkg_files: list[Path] | None = None) -> Config:
    """The configuration file, under any TKG configuration files, under the environment.

    Certificates decoded from TKG files are written to private files that ``stack`` (the
    command's) removes when the command ends, however it ends.
    """
    merged = merge_tkg([read_tkg_config(f) for f in tkg_files or []])
    for warning in merged.warnings:
        log.warning("tkg.warning", message=warning)
    environ = {**stack.enter_context(materialised(merged)), **os.environ}
    loaded = load_config(path, environ, merged.pod_cidrs)
    for warning in loaded.warnings:
        log.warning("config.warning", message=warning, config=str(path))
    return loaded.config


def _preflight(config: Config) -> None:
    """The file checks of ``validate``, before a run starts: a missing kubeconfig or an
    unknown context is exit 2 with nothing listed, not a failed cluster found mid-run."""
    for check in file_checks(config):
        if not check.ok:
            raise ConfigError(f"{config.source}: {check.subject}: {check.detail}")


def _guard(body: Callable[[ExitStack], int], target: Target | None = None) -> NoReturn:
    """Run a command body: usage problems exit 2, our runtime errors 1, always in one line.

    The body's ExitStack closes before the process exits, on success, error or Ctrl-C.
    """
    report_dir = target.dir if target is not None else None
    signal.signal(signal.SIGTERM, _terminate)
    try:
        if report_dir is not None:
            # A --keep-runs run directory is new: only --report-dir itself can hold a report.
            check_report_dir(report_dir, force=target is None or target.force)
        with ExitStack() as stack:
            code = body(stack)
        if target is not None:
            target.prune()
    except ConfigError as exc:
        _fail(str(exc), app.EXIT_USAGE)
    except RouteGcError as exc:
        _fail(str(exc), app.EXIT_FAILURE)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}", app.EXIT_FAILURE)
    except KeyboardInterrupt:
        _fail(_interrupted(report_dir), 130)
    raise typer.Exit(code)


def _print_outcome(outcome: app.Outcome) -> None:
    if outcome.report is not None:
        terminal = to_terminal(outcome.report, [str(p) for p in outcome.paths])
        typer.echo(logs.scrub(terminal), nl=False)
    if outcome.error:
        typer.echo(f"nsx-route-gc: error: {logs.scrub(outcome.error)}", err=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nsx-route-gc {__version__}")
        raise typer.Exit(0)


@cli.callback()
def main_options(
    ctx: typer.Context,
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            metavar="FORMAT",
            help="auto (JSON unless stderr is a terminal), json or console.",
            case_sensitive=False,
        ),
    ] = "auto",
    log_level: Annotated[
        str,
        typer.Option("--log-level", metavar="LEVEL", help="debug, info, warning or error."),
    ] = "info",
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Global options come before the command: nsx-route-gc --log-format json scan ..."""
    if log_format.lower() not in {"auto", "json", "console"}:
        _fail(f"--log-format: expected auto, json or console, got {log_format!r}", app.EXIT_USAGE)
    try:
        logs.configure(log_format.lower(), log_level)
    except ValueError as exc:
        _fail(f"--log-level: {exc}", app.EXIT_USAGE)
    # Progress bars for a person at a terminal; nothing for JSON logs or a pipe.
    ctx.obj = choose_progress(log_format.lower(), sys.stderr)


def _progress(ctx: typer.Context) -> Progress:
    return ctx.obj if isinstance(ctx.obj, RichProgress | NullProgress) else NULL_PROGRESS


@cli.command()
def scan(
    ctx: typer.Context,
    config: ConfigOption,
    report_dir: ReportDirOption = None,
    detailed_exitcode: Annotated[
        bool,
        typer.Option(
            "--detailed-exitcode",
            help="Exit 3 when the scan completed and found routes to delete.",
        ),
    ] = False,
    tkg_config: TkgOption = None,
    keep_runs: KeepRunsOption = None,
    compress: GzipOption = False,
    force: ForceOption = False,
    router: Annotated[
        list[str] | None,
        typer.Option(
            "--router",
            metavar="PATH",
            help="Scan only this Tier-1 (repeatable; inside nsx.routers when that is set).",
            show_default=False,
        ),
    ] = None,
    cluster: Annotated[
        list[str] | None,
        typer.Option(
            "--cluster",
            metavar="NAME",
            help="Report and plan only the routes judged to be this cluster's (repeatable); "
            "every cluster is still inventoried, the limits are judged on what is left.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Dry run: judge every route and report; nothing is changed.

    Exit codes: 0 completed, 1 partial or failed (a cluster not inventoried, a router not
    listed, a limit holding deletions), 2 usage or configuration error, 3 with
    --detailed-exitcode when routes to delete were found.
    """

    target = Target(report_dir, keep_runs, force=force)

    def body(stack: ExitStack) -> int:
        loaded = _load(stack, config, tkg_config)
        _preflight(loaded)
        outcome = app.run_scan(
            loaded,
            report_dir=target.dir,
            detailed_exitcode=detailed_exitcode,
            progress=_progress(ctx),
            compress=compress,
            routers=router or (),
            clusters=cluster or (),
        )
        _print_outcome(outcome)
        return outcome.exit_code

    _guard(body, target)


# --- apply and restore: the commands that change NSX -------------------------------------

YesOption = Annotated[
    bool,
    typer.Option("--yes", "-y", help="Do not ask for confirmation (automation, CronJob)."),
]


def _check_terminal(yes: bool, verb: str) -> None:
    if not yes and not sys.stdin.isatty():
        _fail(f"{verb} needs confirmation: run it on a terminal, or pass --yes", app.EXIT_USAGE)


def _apply_confirmation(yes: bool) -> Callable[[Proposal], bool]:
    """``--yes``, or a question naming the manager, the routers, the number of routes and
    the plan's digest; without a terminal and without --yes, refuse before any change."""
    _check_terminal(yes, "delete")
    if yes:
        return lambda _proposal: True

    def ask(p: Proposal) -> bool:
        typer.echo(f"About to delete on NSX manager {p.nsx_host}:", err=True)
        for router, n in sorted(p.counts.items()):
            typer.echo(f"  {router}: {n} route(s)", err=True)
        source = f"plan {p.plan}" if p.plan is not None else "this scan's plan"
        typer.echo(f"From {source}, SHA-256 {p.plan_sha256}", err=True)
        if p.deleting_sha256 != p.plan_sha256:
            typer.echo(f"These deletions alone: SHA-256 {p.deleting_sha256}", err=True)
        return typer.confirm(
            f"Delete {p.total} route(s) on {len(p.counts)} router(s) of {p.nsx_host} "
            f"(plan SHA-256 {p.plan_sha256[:12]}...)?",
            default=False,
            err=True,
        )

    return ask


def _confirmation(yes: bool, verb: str) -> Callable[[dict[str, int]], bool]:
    """``--yes``, or a question on the terminal; without either, refuse before any change."""
    _check_terminal(yes, verb)
    if yes:
        return lambda _counts: True

    def ask(counts: dict[str, int]) -> bool:
        typer.echo(f"About to {verb}:", err=True)
        for router, n in sorted(counts.items()):
            typer.echo(f"  {router}: {n} route(s)", err=True)
        total = sum(counts.values())
        return typer.confirm(f"{verb.capitalize()} {total} route(s)?", default=False, err=True)

    return ask


@cli.command("apply")
def apply_command(
    ctx: typer.Context,
    config: ConfigOption,
    plan: Annotated[
        Path | None,
        typer.Option(
            "--plan",
            metavar="FILE",
            help="Delete exactly the routes this scan report.json marked for deletion "
            "(an approved plan). Without it: scan afresh and delete what it finds.",
            show_default=False,
        ),
    ] = None,
    plan_sha256: PlanShaOption = None,
    route: Annotated[
        list[str] | None,
        typer.Option(
            "--route",
            metavar="ID",
            help="Delete only this route of the plan (repeatable, with --plan); the limits "
            "are judged on what is deleted.",
            show_default=False,
        ),
    ] = None,
    router: Annotated[
        list[str] | None,
        typer.Option(
            "--router",
            metavar="PATH",
            help="Delete only the plan's routes on this Tier-1 (repeatable, with --plan).",
            show_default=False,
        ),
    ] = None,
    report_dir: ReportDirOption = None,
    yes: YesOption = False,
    max_plan_age: Annotated[
        str,
        typer.Option(
            "--max-plan-age",
            metavar="DURATION",
            help="Refuse a plan older than this (90m, 24h, 2d).",
        ),
    ] = "24h",
    allow_old_plan: Annotated[
        bool, typer.Option("--allow-old-plan", help="Apply a plan older than --max-plan-age.")
    ] = False,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            metavar="N",
            callback=_positive,
            help="Routes per hierarchical delete call, filled across the Tier-1s of one space "
            "(/infra, or one project).",
        ),
    ] = 1000,
    tkg_config: TkgOption = None,
    keep_runs: KeepRunsOption = None,
    compress: GzipOption = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Write into a --report-dir that holds the report of an earlier run "
            "(replacing it), or apply even though an earlier apply left an unfinished "
            "journal there (it died while deleting); that journal is kept as "
            "journal.<UTC time>.jsonl.",
        ),
    ] = False,
) -> None:
    """Delete orphaned routes: each re-read and re-judged first, then deleted and confirmed gone.

    Before each deletion batch is sent, the routes' bodies go to journal.jsonl in the report
    directory. Exit codes: 0 every planned deletion done, 1 partial (a deletion held or
    failed, a limit holding deletions, a cluster not inventoried), 2 usage, configuration or
    plan refused, or an unfinished journal of an earlier apply there (see --force), 130
    interrupted (Ctrl-C, SIGTERM: no further batch is sent; restore --from DIR).
    """

    target = Target(report_dir, keep_runs, force=force)

    def body(stack: ExitStack) -> int:
        if plan is None and (plan_sha256 or route or router):
            _fail("--plan-sha256, --route and --router need --plan", app.EXIT_USAGE)
        confirm = _apply_confirmation(yes)
        try:
            age = parse_duration(max_plan_age)
        except ValueError as exc:
            _fail(f"--max-plan-age: {exc}", app.EXIT_USAGE)
        loaded = _load(stack, config, tkg_config)
        _preflight(loaded)
        outcome = run_apply(
            loaded,
            confirm=confirm,
            plan_path=plan,
            report_dir=target.dir,
            max_plan_age=age,
            allow_old_plan=allow_old_plan,
            batch_size=batch_size,
            progress=_progress(ctx),
            force=force,
            runs_root=target.root,
            compress=compress,
            plan_sha256=plan_sha256,
            route_ids=route or (),
            router_paths=router or (),
        )
        _print_outcome(outcome)
        return outcome.exit_code

    _guard(body, target)


@cli.command("restore")
def restore_command(
    config: ConfigOption,
    from_report: Annotated[
        Path | None,
        typer.Option(
            "--from",
            metavar="PATH",
            help="The apply run's report directory (its report.json or report.json.gz; its "
            "journal.jsonl when the run died before its report), or one of those files.",
            show_default=False,
        ),
    ] = None,
    from_log: Annotated[
        Path | None,
        typer.Option(
            "--from-log",
            metavar="FILE",
            help="An apply run's JSON log (kubectl logs of the CronJob's pod): restore the "
            "routes of its route.deleted lines.",
            show_default=False,
        ),
    ] = None,
    route: Annotated[
        list[str] | None,
        typer.Option(
            "--route",
            metavar="ID",
            help="Restore only this route id (repeatable).",
            show_default=False,
        ),
    ] = None,
    report_dir: ReportDirOption = None,
    yes: YesOption = False,
    plan_sha256: PlanShaOption = None,
    tkg_config: TkgOption = None,
    keep_runs: KeepRunsOption = None,
    compress: GzipOption = False,
    force: ForceOption = False,
) -> None:
    """Recreate routes an apply run deleted, from the original bodies in its report (or its
    journal, when it died before writing the report), or in its JSON log (--from-log).

    A route that exists again with other content is not overwritten (held). Exit codes: 0
    every selected route is back, 1 some held or failed, 2 usage error or report refused.
    """

    target = Target(report_dir, keep_runs, force=force)
    source = from_report or from_log
    if source is None or (from_report is not None and from_log is not None):
        _fail("give one of --from DIR and --from-log FILE", app.EXIT_USAGE)

    def body(stack: ExitStack) -> int:
        confirm = _confirmation(yes, "restore")
        outcome = run_restore(
            _load(stack, config, tkg_config),
            report_path=source,
            from_log=from_log is not None,
            confirm=confirm,
            route_ids=route or (),
            plan_sha256=plan_sha256,
            report_dir=target.dir,
            compress=compress,
        )
        _print_outcome(outcome)
        return outcome.exit_code

    _guard(body, target)


@cli.command()
def validate(config: ConfigOption, tkg_config: TkgOption = None) -> None:
    """Check a configuration before a run, one line per check: the configuration, every
    kubeconfig and context, the NSX login (one attempt) and TLS, the configured routers, and
    the Cluster API access. Nothing is changed.

    Exit codes: 0 every check passed, 2 a check failed.
    """

    def body(stack: ExitStack) -> int:
        try:
            loaded = _load(stack, config, tkg_config)
        except ConfigError as exc:
            typer.echo(logs.scrub(f"FAIL  configuration: {exc}"))
            return app.EXIT_USAGE
        checks = run_validate(loaded)
        for check in checks:
            typer.echo(logs.scrub(check.line()))
        return app.EXIT_OK if all(c.ok for c in checks) else app.EXIT_USAGE

    _guard(body)


@cli.command("explain")
def explain_command(
    ctx: typer.Context,
    route: Annotated[
        str,
        # Described in the docstring: typer would print the argument with its type.
        typer.Argument(metavar="ROUTE", show_default=False, hidden=True),
    ],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            metavar="FILE",
            help="Scan afresh with this configuration (read-only) and explain from it.",
            show_default=False,
        ),
    ] = None,
    from_report: Annotated[
        Path | None,
        typer.Option(
            "--from",
            metavar="FILE",
            help="Explain from a saved report.json (or .json.gz) instead of scanning.",
            show_default=False,
        ),
    ] = None,
    tkg_config: TkgOption = None,
) -> None:
    """Why a route gets its verdict and action: the node matched or searched for, the
    clusters whose pod CIDRs contain it, the inventories' state, each rule and guard.

    ROUTE is a route id, a route's policy path (then only its router is scanned), or a
    network (every route carrying it).

    Nothing is changed. Exit codes: 0 explained, 1 the scan failed, 2 usage error or no such
    route.
    """
    if (config is None) == (from_report is None):
        _fail("give one of --config FILE and --from FILE", app.EXIT_USAGE)

    def body(stack: ExitStack) -> int:
        if from_report is not None:
            try:
                report = read_report(from_report, mode=None)
            except PlanError as exc:
                raise ConfigError(str(exc)) from None
        else:
            assert config is not None  # noqa: S101  # one of the two, checked above
            loaded = _load(stack, config, tkg_config)
            _preflight(loaded)
            router, sep, _ = route.partition("/static-routes/")
            outcome = app.run_scan(
                loaded,
                report_dir=None,
                progress=_progress(ctx),
                routers=(router,) if sep else (),
            )
            if outcome.report is None:
                _fail(outcome.error or "the scan failed", app.EXIT_FAILURE)
            report = outcome.report
        found = find_routes(report["routes"], route)
        if not found:
            source = from_report or "the scan"
            _fail(f"no route {route!r} in {source} (an id, a path or a network)", app.EXIT_USAGE)
        blocks = ["\n".join(explain(report, row)) for row in found]
        typer.echo(logs.scrub("\n\n".join(blocks)))
        return app.EXIT_OK

    _guard(body)


@cli.command()
def demo(
    directory: Annotated[
        Path,
        typer.Option(
            "--dir", metavar="DIR", help="Where the demo writes its configuration and reports."
        ),
    ] = Path("nsx-route-gc-demo"),
) -> None:
    """Scan the bundled simulator of the seed set-up (cl1 deleted, cl2 live on one Tier-1).

    Starts an NSX manager and a Kubernetes API server on 127.0.0.1 over HTTPS, runs a real
    scan against them, prints the summary and where the reports are, and shuts down.
    """
    from nsx_route_gc.runs.demo import run_demo  # noqa: PLC0415  # the simulator loads only when asked for

    def body(_stack: ExitStack) -> int:
        outcome, config_path = run_demo(directory.resolve())
        _print_outcome(outcome)
        typer.echo(f"Configuration used: {config_path}")
        return outcome.exit_code

    _guard(body)


@cli.command()
def simulate(
    scenario: Annotated[
        str, typer.Option("--scenario", metavar="NAME", help="Scenario name (see --list).")
    ] = "seed",
    directory: Annotated[
        Path,
        typer.Option(
            "--dir", metavar="DIR", help="Where to write config.yaml, kubeconfigs and the CA."
        ),
    ] = Path("nsx-route-gc-sim"),
    list_scenarios: Annotated[
        bool, typer.Option("--list", help="List the scenarios, each with its description.")
    ] = False,
) -> None:
    """Keep a simulator running (until Ctrl-C) and print how to point scan at it."""
    from nsx_route_gc.runs.demo import serve  # noqa: PLC0415  # the simulator loads only when asked for
    from nsx_route_gc.simulator import SCENARIOS, Simulator, load_scenario  # noqa: PLC0415  # as above

    if list_scenarios:
        width = max(map(len, SCENARIOS))
        for name in sorted(SCENARIOS):
            typer.echo(f"{name:<{width}}  {load_scenario(name).description}")
        raise typer.Exit(0)
    if scenario not in SCENARIOS:
        _fail(f"--scenario: unknown scenario {scenario!r} (see --list)", app.EXIT_USAGE)

    def ready(config_path: Path, sim: Simulator) -> None:
        typer.echo(f"Simulating scenario {scenario!r}. Configuration: {config_path}")
        tkg = "".join(f" --tkg-config {p}" for p in sim.tkg_config_files(config_path.parent))
        env = "".join(f"{k}={v} " for k, v in sim.client_env(directory.resolve()).items())
        typer.echo(
            f"Try: {env}nsx-route-gc scan --config {config_path}{tkg} "
            f"--report-dir {directory}/reports"
        )
        typer.echo("Press Ctrl-C to stop.")

    serve(scenario, directory.resolve(), ready)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="nsx-route-gc")
