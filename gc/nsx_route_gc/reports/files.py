"""The report's files: report.json and report.csv written in one pass over the rows, and
report.md (``render``); each file appears whole or not at all.

A scan of 100,000 routes writes 100,000 rows twice. Rows from verdicts are therefore written
straight from the verdicts, with no row dictionary: ``_verdict_texts`` must write exactly what
``rows.route_row`` holds, and tests/reports/test_files.py compares the two byte for byte.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import IO, Any, Protocol

from nsx_route_gc.errors import ConfigError
from nsx_route_gc.logs import scrub
from nsx_route_gc.models import RouteVerdict
from nsx_route_gc.reports.journal import JOURNAL_NAME, is_finished
from nsx_route_gc.reports.render import iter_markdown
from nsx_route_gc.reports.rows import (
    ROW_FIELDS,
    Noted,
    NsxObject,
    Rows,
    iso_ms,
    keeps_body,
    made_path,
    route_row,
)


def check_report_dir(directory: Path, *, force: bool = True) -> None:
    """Fail before the run, not after it (after an apply has deleted routes, say), when the
    report directory cannot be written, or (unless ``force``) already holds a report: an
    approved plan or a change's evidence is never replaced by accident."""
    earlier = existing_report(directory)
    if earlier is not None and not force:
        journal = directory / JOURNAL_NAME
        # The way back comes first: --force would also set that journal aside.
        unfinished = (
            f"; it also holds an unfinished journal: restore --from {directory} first"
            if journal.is_file() and not is_finished(journal)
            else ""
        )
        raise ConfigError(
            f"--report-dir {directory}: holds {earlier.name} of an earlier run; give a new "
            f"directory, or --force to replace it{unfinished}"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-"):
            pass
        # What an earlier run that died while writing its report left behind.
        remove_partials(directory)
    except OSError as exc:
        raise ConfigError(
            f"--report-dir {directory}: cannot write there: {exc.strerror or exc}"
        ) from exc


_CSV_FIELDS = tuple(f for f in ROW_FIELDS if f != "nsx_object")
_CSV_HEADER = ",".join(_CSV_FIELDS) + "\n"
# report.json: one row a line, the routes list closed after the last.
_FIRST_ROW = "\n    "
_NEXT_ROW = ",\n    "
_JSON_TAIL = "\n  ]\n}\n"


def _plain(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# One encoder for every row: json.dumps(..., default=...) builds a new one per call. Rows are
# compact (no space after "," and ":"), one a line: about 60 bytes a row less.
_ROW_ENCODER = json.JSONEncoder(default=_plain, separators=(",", ":"))
_quote = encode_basestring_ascii  # what the encoder writes for a str, as json.dumps does


def _json_head(report: dict[str, Any]) -> str:
    header = {k: v for k, v in report.items() if k != "routes"}
    text = json.dumps(header, indent=2)
    return text[: text.rindex("}")].rstrip() + ',\n  "routes": ['


def _row_json(row: dict[str, Any]) -> str:
    # A field that is null is left out (schema 2: a missing field is null), and so is a path
    # made of the row's router and id; readers fill both back with rows.fill_rows.
    body = row.get("nsx_object")
    present = {k: v for k, v in row.items() if v is not None and k != "nsx_object"}
    if present.get("path") == made_path(row.get("router_path"), row.get("id")):
        del present["path"]
    if body is None:
        return _ROW_ENCODER.encode(present)
    if not isinstance(body, NsxObject):
        present["nsx_object"] = body
        return _ROW_ENCODER.encode(present)
    # The body goes in as NSX's own compact JSON text; nsx_object is the row's last field.
    rest = _ROW_ENCODER.encode(present)
    return f'{rest[:-1]},"nsx_object":{body.json_text}}}'


def _row_csv(row: dict[str, Any]) -> str:
    flat = dict(row)
    flat["next_hops"] = " ".join(row["next_hops"])
    flat["tags"] = " ".join(f"{t['scope']}={t['tag']}" for t in row["tags"])
    flat["checked_clusters"] = " ".join(row["checked_clusters"])
    return _csv_record(["" if flat.get(k) is None else flat[k] for k in _CSV_FIELDS])


def _csv_record(fields: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(fields)
    return out.getvalue()


def _csv_line(fields: list[str]) -> str:
    line = ",".join(fields)
    # csv quotes a field only for a delimiter, a quote or a line break in it; without any,
    # its record is the plain join (and the csv module costs 10 us a row, scanning each
    # character twice).
    if (
        line.count(",") == len(fields) - 1
        and '"' not in line
        and "\n" not in line
        and "\r" not in line
    ):
        return line + "\n"
    return _csv_record(fields)


# JSON and CSV texts of the lists that many rows share (a route's checked clusters: every
# cluster, for each unattributed route), by value.
_ListTexts = dict[tuple[str, ...], tuple[str, str]]
_LIST_CACHE_SIZE = 256


def _list_texts(items: tuple[str, ...], cache: _ListTexts) -> tuple[str, str]:
    if not items:
        return "[]", ""
    texts = cache.get(items)
    if texts is None:
        if len(cache) >= _LIST_CACHE_SIZE:
            cache.clear()
        texts = cache[items] = ("[" + ",".join(map(_quote, items)) + "]", " ".join(items))
    return texts


def _opt(key: str, value: str | None) -> str:
    """A text field of a row's JSON, or nothing when it is null (left out of the row)."""
    return "" if value is None else f',"{key}":{_quote(value)}'


def _verdict_texts(
    v: RouteVerdict, error: str | None, note: str | None, lists: _ListTexts
) -> tuple[str, str]:
    """The JSON and CSV texts of ``route_row(v, error=error, note=note)``, byte for byte, made
    without the row. TypeError when a field is not of its declared type (the caller then
    writes the row itself)."""
    r = v.route
    display_name = r.display_name
    create_time = iso_ms(r.create_time_ms)
    reason = v.reason
    cluster = v.cluster
    node = v.node
    shadows = v.shadows
    severity = v.severity
    flag = v.flag
    expected_router = v.expected_router
    hold_reason = v.hold_reason
    protection = r.protection
    revision = r.revision
    verdict = v.verdict._value_
    action = v.action._value_
    hops = r.next_hops
    tags = r.tags
    checked_json, checked_csv = _list_texts(v.checked_clusters, lists)
    if revision is None:
        revision_json = revision_csv = ""
    elif type(revision) is int:
        revision_csv = str(revision)
        revision_json = f',"revision":{revision_csv}'
    else:
        revision_json = f',"revision":{_ROW_ENCODER.encode(revision)}'
        revision_csv = str(revision)
    tags_json = ",".join([f'{{"scope":{_quote(s)},"tag":{_quote(t)}}}' for s, t in tags])
    body = f',"nsx_object":{r.raw or "{}"}' if keeps_body(v, error) else ""
    path = r.path
    path_json = "" if path == made_path(r.router_path, r.id) else _opt("path", path)
    # Null fields are left out, as _row_json leaves them.
    text = (
        f'{{"router_path":{_quote(r.router_path)},"id":{_quote(r.id)}{path_json}'
        f"{_opt('display_name', display_name)}"
        f',"network":{_quote(r.network)},"next_hops":[{",".join(map(_quote, hops))}]'
        f',"tags":[{tags_json}]{_opt("create_time", create_time)}'
        f',"verdict":{_quote(verdict)}{_opt("reason", reason)}'
        f"{_opt('cluster', cluster)}{_opt('node', node)}"
        f',"checked_clusters":{checked_json}{_opt("shadows", shadows)}'
        f"{_opt('severity', severity)}{_opt('flag', flag)}"
        f',"misplaced":{"false" if expected_router is None else "true"}'
        f"{_opt('expected_router', expected_router)}"
        f',"action":{_quote(action)}{_opt("hold_reason", hold_reason)}'
        f"{_opt('error', error)}{_opt('note', note)}"
        f"{revision_json}{_opt('protection', protection)}{body}}}"
    )
    line = _csv_line(
        [
            r.router_path,
            r.id,
            r.path,
            display_name or "",
            r.network,
            " ".join(hops),
            " ".join([f"{s}={t}" for s, t in tags]),
            create_time or "",
            verdict,
            reason or "",
            cluster or "",
            node or "",
            checked_csv,
            shadows or "",
            severity or "",
            flag or "",
            "False" if expected_router is None else "True",
            expected_router or "",
            action,
            hold_reason or "",
            error or "",
            note or "",
            revision_csv,
            protection or "",
        ]
    )
    return text, line


def _row_texts(rows: Iterable[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """Each row's report.json line and report.csv record, rows from verdicts without a row."""
    lists: _ListTexts = {}
    for source in rows.sources() if isinstance(rows, Rows) else rows:
        if isinstance(source, RouteVerdict):
            v, error, note = source, None, None
        elif isinstance(source, Noted):
            v, error, note = source
        else:
            yield _row_json(source), _row_csv(source)
            continue
        try:
            texts = _verdict_texts(v, error, note, lists)
        except TypeError:
            # A field not of its declared type: written the general way, as it always was.
            row = route_row(v, error=error, note=note)
            texts = _row_json(row), _row_csv(row)
        yield texts


def iter_json(report: dict[str, Any]) -> Iterator[str]:
    """report.json in pieces: the header indented, then one route row per line."""
    yield _json_head(report)
    lead = _FIRST_ROW
    for text, _ in _row_texts(report["routes"]):
        yield lead + text
        lead = _NEXT_ROW
    yield _JSON_TAIL


def to_json(report: dict[str, Any]) -> str:
    return "".join(iter_json(report))


def iter_csv(report: dict[str, Any]) -> Iterator[str]:
    yield _CSV_HEADER
    for _, line in _row_texts(report["routes"]):
        yield line


def to_csv(report: dict[str, Any]) -> str:
    return "".join(iter_csv(report))


# Rows per write call: a few hundred rows (about a megabyte) a call. A call per row cost
# 0.2 s more per 100,000 rows.
_ROWS_PER_WRITE = 256


# Characters of report.md per write (whole lines): enough for the automaton's one pass to
# cost little per line, little enough to hold beside a run's 100,000 routes.
_CHUNK_CHARS = 1 << 16


class _Writer(Protocol):
    def write(self, text: str, /) -> int: ...


class _Scrubbing:
    """Writes through to a file with every registered secret scrubbed (logs.register_secret):
    a cluster's error or an NSX answer may quote a credential, and a report is handed around.
    Each write is whole rows or lines, so a secret is never cut in two across writes."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def write(self, text: str, /) -> int:
        return self._out.write(scrub(text))

    def writelines(self, lines: Iterable[str], /) -> None:
        # Whole lines, gathered to _CHUNK_CHARS a write: report.md's 13,000 lines at 100,000
        # routes, each scrubbed on its own (a Python check per line), cost 0.4 s of CPU.
        chunk: list[str] = []
        size = 0
        for line in lines:
            chunk.append(line)
            size += len(line)
            if size >= _CHUNK_CHARS:
                self.write("".join(chunk))
                chunk.clear()
                size = 0
        if chunk:
            self.write("".join(chunk))


def _write_json_and_csv(report: dict[str, Any], json_out: _Writer, csv_out: _Writer) -> None:
    json_out.write(_json_head(report))
    csv_out.write(_CSV_HEADER)
    json_parts: list[str] = []
    csv_parts: list[str] = []
    lead = _FIRST_ROW
    for text, line in _row_texts(report["routes"]):
        json_parts.append(text)
        csv_parts.append(line)
        if len(csv_parts) == _ROWS_PER_WRITE:
            json_out.write(lead)
            json_out.write(_NEXT_ROW.join(json_parts))
            csv_out.write("".join(csv_parts))
            json_parts.clear()
            csv_parts.clear()
            lead = _NEXT_ROW
    if json_parts:
        json_out.write(lead)
        json_out.write(_NEXT_ROW.join(json_parts))
        csv_out.write("".join(csv_parts))
    json_out.write(_JSON_TAIL)


REPORT_NAMES = ("report.json", "report.md", "report.csv")
GZIP_NAMES = ("report.json.gz", "report.md", "report.csv.gz")


def existing_report(directory: Path) -> Path | None:
    """The first report file of an earlier run in ``directory``, if any."""
    for name in dict.fromkeys(REPORT_NAMES + GZIP_NAMES):
        if (directory / name).is_file():
            return directory / name
    return None


_PARTIAL = ".report.*.partial"


def remove_partials(directory: Path) -> list[Path]:
    """Remove the partial files a run that died while writing its report left behind."""
    removed = []
    for path in directory.glob(_PARTIAL):
        if path.is_file() and not path.is_symlink():
            path.unlink()
            removed.append(path)
    return removed


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _text_out(path: Path, compress: bool) -> Iterator[IO[str]]:
    if compress:
        # mtime 0: the same report gives the same bytes.
        with (
            path.open("wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as packed,
            io.TextIOWrapper(packed, encoding="utf-8") as out,
        ):
            yield out
    else:
        with path.open("w", encoding="utf-8") as out:
            yield out


def write_reports(report: dict[str, Any], directory: Path, *, compress: bool = False) -> list[Path]:
    """Write report.json, report.md and report.csv (``compress``: report.json.gz and
    report.csv.gz), streamed, and replace the ones there together or not at all.

    All three are written to partial names (``.report.json.partial`` ...) and fsynced, and only
    then renamed over the old ones, report.json last; a failure while writing removes the
    partials and leaves the old reports as they were. A crash between the renames (three
    renames, microseconds) can leave this run's report.md and report.csv beside the previous
    run's report.json; report.json, renamed last, is the one that is either wholly this
    run's or wholly the previous one's, and its ``run_id`` says which. Partials a crash left
    behind are removed by the next run (``remove_partials``).
    """
    directory.mkdir(parents=True, exist_ok=True)
    remove_partials(directory)
    names = GZIP_NAMES if compress else REPORT_NAMES
    json_path, md_path, csv_path = (directory / n for n in names)
    partials = [directory / f".{p.name}.partial" for p in (json_path, md_path, csv_path)]
    json_partial, md_partial, csv_partial = partials
    try:
        with (
            _text_out(json_partial, compress) as json_out,
            _text_out(csv_partial, compress) as csv_out,
        ):
            _write_json_and_csv(report, _Scrubbing(json_out), _Scrubbing(csv_out))
        with md_partial.open("w", encoding="utf-8") as md_out:
            _Scrubbing(md_out).writelines(iter_markdown(report))
        for partial in partials:
            _fsync(partial)
    except BaseException:
        for partial in partials:
            partial.unlink(missing_ok=True)
        raise
    md_partial.replace(md_path)
    csv_partial.replace(csv_path)
    json_partial.replace(json_path)
    # The other form of this run's files, an earlier run's, must not pass for this run's.
    for stale in set(REPORT_NAMES + GZIP_NAMES) - set(names):
        (directory / stale).unlink(missing_ok=True)
    _fsync(directory)
    return [json_path, md_path, csv_path]
