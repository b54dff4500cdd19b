"""The command line. The only module that reads argv, prints and exits."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn

import structlog
import typer

from nsx_route_gc import __version__, app, logs
from nsx_route_gc.config import Config, load_config
from nsx_route_gc.errors import ConfigError, RouteGcError
from nsx_route_gc.render import to_terminal

log = structlog.get_logger(__name__)

cli = typer.Typer(
    name="nsx-route-gc",
    help=(
        "Find and delete NSX static routes left behind by Kubernetes routable pods "
        "(vSphere CCM routes whose node or cluster is gone)."
    ),
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="Configuration YAML (see README).", show_default=False),
]
ReportDirOption = Annotated[
    Path | None,
    typer.Option(
        "--report-dir",
        help="Write report.json, report.md and report.csv into this directory.",
        show_default=False,
    ),
]


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"nsx-route-gc: error: {logs.scrub(message)}", err=True)
    raise typer.Exit(code)


def _load(path: Path) -> Config:
    loaded = load_config(path, os.environ)
    if loaded.config.nsx.password is not None:
        logs.register_secret(loaded.config.nsx.password.reveal())
    for warning in loaded.warnings:
        log.warning("config.warning", message=warning, config=str(path))
    return loaded.config


def _guard(body: Callable[[], int]) -> NoReturn:
    """Run a command body: usage problems exit 2, our runtime errors 1, always in one line."""
    try:
        code = body()
    except ConfigError as exc:
        _fail(str(exc), app.EXIT_USAGE)
    except RouteGcError as exc:
        _fail(str(exc), app.EXIT_FAILURE)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    raise typer.Exit(code)


def _print_outcome(outcome: app.Outcome) -> None:
    if outcome.report is not None:
        typer.echo(to_terminal(outcome.report, [str(p) for p in outcome.paths]), nl=False)
    if outcome.error:
        typer.echo(f"nsx-route-gc: error: {logs.scrub(outcome.error)}", err=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nsx-route-gc {__version__}")
        raise typer.Exit(0)


@cli.callback()
def main_options(
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            help="auto (JSON unless stderr is a terminal), json or console.",
            case_sensitive=False,
        ),
    ] = "auto",
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
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


@cli.command()
def scan(
    config: ConfigOption,
    report_dir: ReportDirOption = None,
    detailed_exitcode: Annotated[
        bool,
        typer.Option(
            "--detailed-exitcode",
            help="Exit 3 when the scan completed and found routes to delete.",
        ),
    ] = False,
) -> None:
    """Dry run: judge every route and report; nothing is changed.

    Exit codes: 0 completed, 1 partial or failed (a cluster not inventoried, a router not
    listed, a limit holding deletions), 2 usage or configuration error, 3 with
    --detailed-exitcode when routes to delete were found.
    """

    def body() -> int:
        outcome = app.run_scan(
            _load(config), report_dir=report_dir, detailed_exitcode=detailed_exitcode
        )
        _print_outcome(outcome)
        return outcome.exit_code

    _guard(body)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="nsx-route-gc")
