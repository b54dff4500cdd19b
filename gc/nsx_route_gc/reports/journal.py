"""journal.jsonl: each route's NSX body on disk before its deletion is sent, and its outcome.

An apply killed while deleting (kill -9, SIGTERM, Ctrl-C, a lost node) writes no report; the
journal in its report directory is then the way back (``restore --from DIR``). One JSON
object a line:

- ``start``: run id, NSX host, when; written (and the directory fsynced) when the journal is
  created, right before the first deletion is sent;
- ``send``: one per route, before its deletion is sent (a hierarchical batch, or one
  route-by-route DELETE): router, id, network, revision, batch number, how it is sent, and
  the full NSX body as listed. A batch's lines are flushed and fsynced before it is sent;
- ``outcome``: after the answer, per route: ``deleted`` (accepted or confirmed), ``gone``
  (already gone), ``refused`` (the batch was refused; the route-by-route fallback decides),
  ``held-changed`` (held: changed or protected since judged) or ``failed``; the last one
  of a route counts;
- ``end``: the run finished and wrote its report. A journal without it is *unfinished*.

What restore takes from a journal: every route whose deletion was sent and whose last
outcome is neither ``held-changed`` nor ``failed`` (a route restore finds present with the
same content is left alone, so a route sent but never deleted costs one read).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from nsx_route_gc.errors import PlanError
from nsx_route_gc.models import Route
from nsx_route_gc.untrusted import UntrustedInput, load_json

JOURNAL_NAME = "journal.jsonl"
JOURNAL_FORMAT = 1
OUTCOMES = ("deleted", "gone", "refused", "held-changed", "failed")
NOT_DELETED = frozenset({"held-changed", "failed"})
# A route body is about a kilobyte; a line much longer than that was not written by us.
MAX_LINE = 1 << 20
# 100,000 deleted routes take about 150 MB; beyond this the file is not a journal of ours.
MAX_JOURNAL = 1 << 30
# Enough of the file's end to hold its last line when that is an end record.
_TAIL = 4096


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


class Journal:
    """The journal of one apply run (a ``ports.DeletionJournal``); thread-safe, since routers
    are deleted from concurrently."""

    def __init__(self, path: Path, out: IO[bytes], run_id: str, clock: Callable[[], datetime]):
        self.path = path
        self._out = out
        self._run_id = run_id
        self._clock = clock
        self._lock = threading.Lock()
        self._batches = 0

    @classmethod
    def create(
        cls, directory: Path, *, run_id: str, nsx_host: str, clock: Callable[[], datetime]
    ) -> Journal:
        """A new journal.jsonl in ``directory``; it must not exist (``set_aside`` moves an old
        one out of the way)."""
        path = directory / JOURNAL_NAME
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        journal = cls(path, os.fdopen(fd, "wb"), run_id, clock)
        journal._write(
            [
                {
                    "event": "start",
                    "journal": JOURNAL_FORMAT,
                    "run_id": run_id,
                    "nsx_host": nsx_host,
                    "at": _iso(clock()),
                }
            ]
        )
        # The file's name is durable only once its directory is.
        _fsync_dir(directory)
        return journal

    def _write(self, records: Sequence[dict[str, Any] | str]) -> None:
        lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
        self._out.write(("\n".join(lines) + "\n").encode())
        self._out.flush()
        os.fsync(self._out.fileno())

    def sending(self, routes: Sequence[Route], *, via: str) -> int:
        with self._lock:
            self._batches += 1
            batch = self._batches
            self._write([self._send_line(r, batch, via) for r in routes])
        return batch

    def _send_line(self, route: Route, batch: int, via: str) -> str:
        head = json.dumps(
            {
                "event": "send",
                "run_id": self._run_id,
                "batch": batch,
                "via": via,
                "router": route.router_path,
                "id": route.id,
                "network": route.network,
                "revision": route.revision,
            }
        )
        # The body as NSX sent it (compact JSON text the client made): no parse, no re-encode.
        return f'{head[:-1]}, "nsx_object": {route.raw or "null"}}}'

    def outcome(self, batch: int, outcomes: Sequence[tuple[Route, str, str | None]]) -> None:
        if not outcomes:
            return
        records: list[dict[str, Any] | str] = []
        for route, what, why in outcomes:
            if what not in OUTCOMES:
                raise ValueError(f"unknown journal outcome {what!r}")
            records.append(
                {
                    "event": "outcome",
                    "run_id": self._run_id,
                    "batch": batch,
                    "router": route.router_path,
                    "id": route.id,
                    "outcome": what,
                    "why": why,
                }
            )
        with self._lock:
            self._write(records)

    def finish(self, report: str | None) -> None:
        """The end record: the run finished and its report (named) is written."""
        with self._lock:
            self._write(
                [
                    {
                        "event": "end",
                        "run_id": self._run_id,
                        "at": _iso(self._clock()),
                        "report": report,
                    }
                ]
            )
            self._out.close()

    def close(self) -> None:
        """Close without the end record (the run did not finish): the journal stays
        unfinished."""
        with self._lock:
            if not self._out.closed:
                self._out.close()


# --- reading it back ---------------------------------------------------------------------


def is_finished(path: Path) -> bool:
    """Whether a journal's last line is an end record (read from its end only)."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _TAIL))
            tail = f.read()
    except OSError:
        return False
    if not tail.endswith(b"\n"):
        return False  # cut off mid-line: the run died writing it
    last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    try:
        record = json.loads(last)
    except ValueError:
        return False
    return isinstance(record, dict) and record.get("event") == "end"


def unfinished_journals(directory: Path) -> list[Path]:
    """Unfinished journal.jsonl files in ``directory`` and in its run subdirectories
    (``--keep-runs``)."""
    candidates = [directory / JOURNAL_NAME]
    if directory.is_dir():
        candidates += sorted(p / JOURNAL_NAME for p in directory.iterdir() if p.is_dir())
    return [p for p in candidates if p.is_file() and not is_finished(p)]


def set_aside(path: Path, now: datetime) -> Path:
    """Keep an unfinished journal under a new name, so that a forced run can write its own:
    journal.<UTC time>.jsonl (never overwriting one)."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"journal.{stamp}.jsonl")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"journal.{stamp}-{n}.jsonl")
    path.rename(target)
    _fsync_dir(path.parent)
    return target


@dataclass(frozen=True)
class JournalEntry:
    """A route whose deletion was sent, with the last outcome recorded for it (None: the run
    died before the answer)."""

    router: str
    id: str
    network: str
    revision: int | None
    body: dict[str, Any] | None  # None: NSX gave no body (restore then holds the route)
    batch: int
    outcome: str | None

    @property
    def maybe_deleted(self) -> bool:
        return self.outcome not in NOT_DELETED


@dataclass(frozen=True)
class JournalContents:
    path: Path
    run_id: str
    nsx_host: str
    finished: bool
    entries: tuple[JournalEntry, ...]


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    try:
        size = path.stat().st_size
        if size > MAX_JOURNAL:
            raise PlanError(f"{path}: {size} bytes, more than a journal holds ({MAX_JOURNAL})")
        with path.open("rb") as f:
            number = 0
            while True:
                line = f.readline(MAX_LINE + 1)
                if not line:
                    return
                number += 1
                if len(line) > MAX_LINE:
                    raise PlanError(f"{path}: line {number} is longer than {MAX_LINE} bytes")
                yield number, line
    except OSError as exc:
        raise PlanError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def read_journal(path: Path) -> JournalContents:
    """A journal read back; PlanError naming the file and line when it is not one of ours.

    A last line cut off mid-write (the run died writing it) is ignored: its batch was not
    sent, since a batch is sent only once its lines are on disk.
    """
    header: dict[str, Any] | None = None
    finished = False
    sent: dict[tuple[str, str], JournalEntry] = {}
    last: dict[tuple[str, str], str] = {}
    for number, raw in _lines(path):
        if not raw.endswith(b"\n"):
            break  # the torn last line
        where = f"{path}: line {number}"
        try:
            record = load_json(raw)
        except UntrustedInput as exc:
            raise PlanError(f"{where}: {exc}") from None
        except ValueError as exc:
            raise PlanError(f"{where}: not valid JSON") from exc
        if not isinstance(record, dict):
            raise PlanError(f"{where}: not a JSON object")
        event = record.get("event")
        if header is None:
            if event != "start" or record.get("journal") != JOURNAL_FORMAT:
                raise PlanError(f"{path}: not a nsx-route-gc journal (no start record)")
            if not isinstance(record.get("run_id"), str) or not isinstance(
                record.get("nsx_host"), str
            ):
                raise PlanError(f"{where}: start record without run_id or nsx_host")
            header = record
            continue
        if event == "send":
            entry = _entry(where, record)
            key = (entry.router, entry.id)
            sent[key] = entry
            last.pop(key, None)  # sent again (the fallback after a refused batch)
        elif event == "outcome":
            key = (_text(where, record, "router"), _text(where, record, "id"))
            outcome = record.get("outcome")
            if outcome not in OUTCOMES:
                raise PlanError(f"{where}: unknown outcome {outcome!r}")
            last[key] = str(outcome)
        elif event == "end":
            finished = True
        else:
            raise PlanError(f"{where}: unknown event {event!r}")
    if header is None:
        raise PlanError(f"{path}: empty, not a nsx-route-gc journal")
    entries = tuple(
        JournalEntry(e.router, e.id, e.network, e.revision, e.body, e.batch, last.get(key))
        for key, e in sent.items()
    )
    return JournalContents(path, header["run_id"], header["nsx_host"], finished, entries)


def _text(where: str, record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value:
        raise PlanError(f"{where}: {key} missing or not a string")
    return value


def _entry(where: str, record: dict[str, Any]) -> JournalEntry:
    revision = record.get("revision")
    if revision is not None and (isinstance(revision, bool) or not isinstance(revision, int)):
        raise PlanError(f"{where}: revision is not a whole number")
    batch = record.get("batch")
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise PlanError(f"{where}: batch is not a whole number")
    body = record.get("nsx_object")
    if body is not None and not isinstance(body, dict):
        raise PlanError(f"{where}: nsx_object is not an object")
    return JournalEntry(
        _text(where, record, "router"),
        _text(where, record, "id"),
        _text(where, record, "network"),
        revision,
        body,
        batch,
        None,
    )
