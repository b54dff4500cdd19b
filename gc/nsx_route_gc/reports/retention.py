"""Report directories per run (``--keep-runs N``): each run writes into its own timestamped
subdirectory of ``--report-dir``, and only the newest N runs are kept.

A directory holding an unfinished journal (an apply that died while deleting, including
one set aside by ``--force``) is never removed: it is the only way back for what that run
deleted. Only directories this tool names (``run-<UTC time>``) are ever removed.
"""

from __future__ import annotations

import re
import shutil
from datetime import datetime
from pathlib import Path

from nsx_route_gc.reports.journal import is_finished

RUN_DIR = re.compile(r"^run-\d{8}T\d{6}Z(?:-\d+)?$")


def new_run_dir(base: Path, now: datetime) -> Path:
    """A new, empty run directory under ``base``, named for ``now`` (UTC)."""
    base.mkdir(parents=True, exist_ok=True)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    n = 1
    while True:
        path = base / (f"run-{stamp}" if n == 1 else f"run-{stamp}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            n += 1
            continue
        return path


def run_dirs(base: Path) -> list[Path]:
    """The run directories under ``base``, oldest first (their names sort by time)."""
    if not base.is_dir():
        return []
    found = [
        p for p in base.iterdir() if RUN_DIR.match(p.name) and p.is_dir() and not p.is_symlink()
    ]
    return sorted(found, key=lambda p: _order(p.name))


def _order(name: str) -> tuple[str, int]:
    stamp, _, n = name.removeprefix("run-").partition("-")
    return stamp, int(n or 1)


def has_unfinished_journal(directory: Path) -> bool:
    return any(not is_finished(j) for j in directory.glob("journal*.jsonl"))


def prune_runs(base: Path, keep: int) -> list[Path]:
    """Remove all but the newest ``keep`` run directories, never one with an unfinished
    journal; the removed ones. Empty run directories (runs refused or failed before writing
    anything) go first and count for nothing, so that refused runs never push out reports."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    removed = []
    kept = []
    for path in run_dirs(base):
        if any(path.iterdir()):
            kept.append(path)
        else:
            path.rmdir()
            removed.append(path)
    for path in kept[:-keep]:
        if has_unfinished_journal(path):
            continue
        shutil.rmtree(path)
        removed.append(path)
    return removed
