"""Logging set-up: structlog for our events, the standard library's loggers through the same
formatter, JSON lines off a terminal and a console rendering on one.

Secrets registered with :func:`register_secret` are scrubbed from every line, ours and the
libraries' alike: a defence in depth behind never logging them in the first place.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
from collections.abc import Callable, MutableMapping
from typing import Any, ParamSpec, TextIO, TypeVar

import structlog

P = ParamSpec("P")
R = TypeVar("R")

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
REDACTED = "***"


def register_secret(value: str | None) -> None:
    """Scrub ``value`` from every log line from now on (short values would scrub too much)."""
    if value and len(value) >= 4:
        with _secrets_lock:
            _secrets.add(value)


def scrub(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub_value(v) for v in value)
    return value


def _scrub_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if not _secrets:
        return event_dict
    return {k: _scrub_value(v) for k, v in event_dict.items()}


# Fields that JSON logs keep whole (route.deleted's body is the way back when the report is
# lost) but that would fill a terminal: about 15 lines an NSX object.
CONSOLE_OMITTED = frozenset({"nsx_object"})


def _console_short(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in CONSOLE_OMITTED & event_dict.keys():
        del event_dict[key]
    return event_dict


def carry_context(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``fn`` so that on a worker thread it logs with the caller's bound fields (run id).

    Worker threads start with an empty context; each call runs in its own copy because one
    context cannot be entered by two threads at once.
    """
    captured = contextvars.copy_context()

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return run


def use_json(log_format: str, stream: TextIO) -> bool:
    if log_format == "json":
        return True
    if log_format == "console":
        return False
    return not stream.isatty()


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time: progress bars redirect it while they
    are drawn, so that log lines appear above the bars instead of through them."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(log_format: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Route structlog and the standard library's logging to ``stream`` (stderr by default)."""
    target: TextIO | _CurrentStderr = stream if stream is not None else _CurrentStderr()
    stream = stream or sys.stderr
    as_json = use_json(log_format, stream)
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _scrub_processor,
    ]
    renderer: structlog.typing.Processor
    if as_json:
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    final: list[structlog.typing.Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta
    ]
    if not as_json:
        final.append(_console_short)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared, processors=[*final, renderer]
    )
    handler: logging.StreamHandler[Any] = logging.StreamHandler(target)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # Libraries chatter at debug; our own events decide what an operator sees at info.
    for noisy in ("urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
