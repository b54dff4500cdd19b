"""Progress of long runs on a terminal: routers listed, clusters inventoried, deletions done.

Components take a :class:`Progress` (default :data:`NULL_PROGRESS`, which shows nothing) and
open one task per phase; only a run on a terminal, with console logs, gets a
:class:`RichProgress`. A CronJob's JSON logs stay the only output (:func:`choose_progress`).
"""

from __future__ import annotations

import threading
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as _RichBar

from nsx_route_gc.logs import use_json


class Task(Protocol):
    """One phase's counter; safe to advance from worker threads."""

    def advance(self, amount: int = 1) -> None: ...


class Progress(Protocol):
    def task(self, name: str, total: int | None = None) -> Task:
        """Start showing a phase, e.g. ``task("routers listed", total=500)``."""
        ...

    def close(self) -> None:
        """Stop showing anything (the finished tasks stay on the terminal)."""
        ...


class _NullTask:
    def advance(self, amount: int = 1) -> None:
        return None


class NullProgress:
    """Shows nothing: JSON logs, output that is not a terminal, tests."""

    _task = _NullTask()

    def task(self, name: str, total: int | None = None) -> Task:
        return self._task

    def close(self) -> None:
        return None


NULL_PROGRESS = NullProgress()


class _RichTask:
    def __init__(self, bar: _RichBar, task_id: TaskID) -> None:
        self._bar = bar
        self._id = task_id

    def advance(self, amount: int = 1) -> None:
        self._bar.advance(self._id, amount)


class RichProgress:
    """Bars on a rich Console (stderr by default), started with the first task."""

    def __init__(self, console: Console | None = None) -> None:
        self._bar = _RichBar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._lock = threading.Lock()
        self._started = False

    def task(self, name: str, total: int | None = None) -> Task:
        with self._lock:
            if not self._started:
                self._bar.start()
                self._started = True
        return _RichTask(self._bar, self._bar.add_task(name, total=total))

    def close(self) -> None:
        with self._lock:
            if self._started:
                self._bar.stop()
                self._started = False

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def choose_progress(log_format: str, stream: TextIO) -> Progress:
    """Bars only for a person watching: never with JSON logs, never off a terminal."""
    if use_json(log_format, stream) or not stream.isatty():
        return NULL_PROGRESS
    return RichProgress(Console(file=stream))
