"""Logging set-up: structlog for our events, the standard library's loggers through the same
formatter, JSON lines off a terminal and a console rendering on one.

Secrets registered with :func:`register_secret` are scrubbed from every line, ours and the
libraries' alike: a defence in depth behind never logging them in the first place.
"""

from __future__ import annotations

import base64
import contextvars
import json
import logging
import sys
import threading
from collections.abc import Callable, MutableMapping
from typing import Any, ParamSpec, TextIO, TypeVar
from urllib.parse import quote, quote_plus

import structlog
from ahocorasick_rs import AhoCorasick, MatchKind

P = ParamSpec("P")
R = TypeVar("R")

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
REDACTED = "***"


_MIN_SECRET = 4  # shorter values (and their encodings) would scrub too much
_MIN_BASE64_PART = 8


def register_secret(value: str | None, *, username: str | None = None) -> None:
    """Scrub ``value`` from every log line, report and message from now on, in every form it
    may travel in: as is, URL-encoded (``%40``, and ``+`` for a space), JSON-escaped and
    base64-encoded (alone, inside longer base64 text, and as HTTP Basic's ``username:value``).

    The one place credentials are registered: the NSX password, kubeconfig tokens and client
    keys, cloud API tokens. A value with surrounding whitespace (a file's trailing newline)
    is registered stripped as well.
    """
    if not value:
        return
    forms = secret_forms(value)
    if value.strip() != value:
        forms |= secret_forms(value.strip())
    if username is not None:
        forms.add(base64.b64encode(f"{username}:{value}".encode()).decode())
    forms = {f for f in forms if len(f) >= _MIN_SECRET}
    if forms:
        with _secrets_lock:
            _secrets.update(forms)
            _prefixes.update(f[:_MIN_SECRET] for f in forms)


def secret_forms(value: str) -> set[str]:
    """``value`` and the encodings of it that requests, urllib and json produce."""
    if len(value) < _MIN_SECRET:
        return set()
    forms = {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        quote(value, safe="").lower(),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }
    data = value.encode()
    forms.add(base64.b64encode(data).decode())
    forms.add(base64.urlsafe_b64encode(data).decode())
    # Inside longer base64 text the value starts at any of three alignments; the characters
    # made of its bytes alone are the same whatever comes before and after.
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data).decode()
        start = (shift * 8 + 5) // 6
        end = (shift + len(data)) * 8 // 6
        part = encoded[start:end]
        if len(part) >= _MIN_BASE64_PART:
            forms.add(part)
            forms.add(part.replace("+", "-").replace("/", "_"))
    return forms


# Longer texts (report pieces of about a megabyte) are searched for every form at once: one
# pass whatever the number of forms, where a search per form would take a minute for a
# report of 100,000 routes with the keys of hundreds of clusters registered.
_LONG_TEXT = 4096
# Every form's first characters: a short text none of whose substrings of that length is
# among them holds no form, found in one pass over the text. The credentials of 200 clusters
# are thousands of forms, and a search per form cost a millisecond per log line with a
# route's body (12 s for the route.deleted lines of 10,000 deletions). The automaton is no
# help there: built again each time a cluster registers its credentials, 18 MB each.
_prefixes: set[str] = set()


def _may_hold_secret(text: str) -> bool:
    n = _MIN_SECRET
    return any(text[i : i + n] in _prefixes for i in range(len(text) - n + 1))


def scrub(text: str) -> str:
    """``text`` with every registered secret, in every registered form, replaced by ***."""
    if not _secrets:
        return text
    if len(text) >= _LONG_TEXT:
        return _scrub_long(text)
    if not _may_hold_secret(text):
        return text
    for secret in _ordered():
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _scrub_long(text: str) -> str:
    matches = _automaton().find_matches_as_indexes(text)
    if not matches:
        return text
    parts: list[str] = []
    last = 0
    for _, start, end in matches:
        parts.append(text[last:start])
        parts.append(REDACTED)
        last = end
    parts.append(text[last:])
    return "".join(parts)


_order_cache: tuple[int, list[str]] = (0, [])
_automaton_cache: tuple[int, AhoCorasick | None] = (0, None)


def _ordered() -> list[str]:
    """Longest first: a form that contains another is replaced whole."""
    global _order_cache  # noqa: PLW0603 - a cache of the registry, rebuilt when it grows
    size, order = _order_cache
    if size != len(_secrets):
        with _secrets_lock:
            order = sorted(_secrets, key=len, reverse=True)
            _order_cache = (len(_secrets), order)
    return order


def _automaton() -> AhoCorasick:
    """Every form, leftmost-longest: built when first needed after the registry grew (a
    report is written after every credential of the run is registered)."""
    global _automaton_cache  # noqa: PLW0603 - a cache of the registry, rebuilt when it grows
    size, automaton = _automaton_cache
    if automaton is None or size != len(_secrets):
        forms = _ordered()
        automaton = AhoCorasick(forms, matchkind=MatchKind.LeftmostLongest)
        _automaton_cache = (len(forms), automaton)
    return automaton


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
