"""Mutation testing of the modules that decide or delete, one module at a time, with mutmut.

    .venv-mut/bin/python tools/mutation.py                  # every module in MODULES
    .venv-mut/bin/python tools/mutation.py judge.py         # the modules whose path ends so
    .venv-mut/bin/python tools/mutation.py --at main judge.py   # the tests of a commit: "before"
    .venv-mut/bin/python tools/mutation.py --full judge.py  # against the whole suite instead
    .venv-mut/bin/python tools/mutation.py --rerun judge.py # the last run's survivors only

mutmut 3 only finds mutated code under ./, src/ or source/, and `gc` cannot be that root (it
would name the modules gc.nsx_route_gc.*). So each module runs in its own staging copy,
build/mutation/<name>/: the project's files with the package copied to src/nsx_route_gc, and
a [tool.mutmut] section appended to that copy's pyproject.toml.

Writes build/mutation/REPORT.md (one row per module, then every surviving mutant) and, unless
--at or --full, updates the modules' sections of docs/mutation.md: score, date, run time, and
every survivor with its explanation from tools/mutation_notes.txt (or "NOT EXPLAINED").
--at REV stages REV's committed tree instead of the work tree and records its score in the
module's section as the "before" figure.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SOURCE_ROOT = "gc"  # the folder that holds the package, relative to ROOT
OUT = ROOT / "build" / "mutation"
DOC = ROOT / "docs" / "mutation.md"
NOTES = ROOT / "tools" / "mutation_notes.txt"

# Module (relative to SOURCE_ROOT) -> the tests that exercise it. Moving a module is one line.
MODULES: dict[str, list[str]] = {
    "nsx_route_gc/judge.py": [
        "tests/test_judge.py",
        "tests/test_judge_netkey.py",
        "tests/runs/test_scan.py",
    ],
    "nsx_route_gc/runs/apply.py": [
        "tests/runs/test_apply.py",
        "tests/runs/test_change_ticket.py",
        "tests/runs/test_restore.py",
        "tests/runs/test_restore_from.py",
    ],
    "nsx_route_gc/nsx/deleter.py": [
        "tests/nsx/test_deleter.py",
        "tests/nsx/test_batches.py",
        "tests/nsx/test_confirm.py",
        "tests/runs/test_apply.py",
        "tests/runs/test_load.py",
    ],
    "nsx_route_gc/runs/restore.py": [
        "tests/runs/test_restore.py",
        "tests/runs/test_restore_from.py",
    ],
    "nsx_route_gc/runs/restore_from.py": [
        "tests/runs/test_restore_from.py",
        "tests/runs/test_restore.py",
    ],
    "nsx_route_gc/config.py": ["tests/test_config.py", "tests/deploy/test_cronjob.py"],
    "nsx_route_gc/nsx/transport.py": [
        "tests/nsx/test_transport.py",
        "tests/nsx/test_client.py",
        "tests/nsx/test_client_search.py",
    ],
}

# CLI-as-a-subprocess tests cannot kill a mutant (a subprocess imports the unmutated package);
# --full leaves them out.
NOT_IN_FULL = {
    "tests/runs/test_e2e.py",
    "tests/runs/test_crash.py",
    "tests/deploy/test_dockerfile.py",
}

MUTMUT = {
    "pytest_add_cli_args": ["-p", "no:cacheprovider", "-q"],
    "use_git_change_detection": False,
}
MAX_CHILDREN = 2  # the machine's two cores are shared: never more

KILLED = {"killed", "timeout", "caught by type check"}
SURVIVED = {"survived", "no tests"}


@dataclass(frozen=True)
class Survivor:
    module: str
    line: int
    function: str
    before: str
    after: str
    untested: bool  # no test reaches the mutated function at all

    @property
    def key(self) -> str:
        """What tools/mutation_notes.txt names a survivor by: no line number, which moves."""
        return f"{Path(self.module).name}::{self.function}: {self.before} → {self.after}"


@dataclass
class Result:
    module: str
    counts: dict[str, int]
    survivors: list[Survivor]
    seconds: float
    n_tests: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def killed(self) -> int:
        return sum(n for status, n in self.counts.items() if status in KILLED)

    @property
    def score(self) -> float:
        return 100 * self.killed / self.total if self.total else 0.0


def _files(rev: str | None) -> list[str]:
    """The project's files: the work tree's (tracked or not ignored), or a commit's."""
    command = ["git", "ls-files", "-co", "--exclude-standard", "-z"]
    if rev is not None:
        command = ["git", "ls-tree", "-r", "--name-only", "-z", rev]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, check=True, text=True).stdout
    return [name for name in out.split("\0") if name]


def stage(module: str, tests: list[str], dest: Path, rev: str | None = None) -> None:
    """A copy of the project's files with the package under src/."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    listed = _files(rev)
    if rev is None:
        for name in listed:
            if (ROOT / name).is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, dest / name)
    else:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", rev], cwd=ROOT, capture_output=True, check=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(dest, filter="data")
    # mutmut runs the tests inside mutants/: tests that read Dockerfile, cronjob.yaml... need them
    top = sorted({name.split("/", maxsplit=1)[0] for name in listed} - {"tests", "src"})
    package = module.split("/", maxsplit=1)[0]
    shutil.copytree(dest / SOURCE_ROOT / package, dest / "src" / package)
    settings = {
        **MUTMUT,
        "also_copy": top,
        "source_paths": [f"src/{package}"],
        "only_mutate": [f"src/{module}"],
        "pytest_add_cli_args_test_selection": [t for t in tests if (dest / t).is_file()],
    }
    with (dest / "pyproject.toml").open("a", encoding="utf-8") as file:
        file.write("\n[tool.mutmut]\n")
        for key, value in settings.items():
            file.write(f"{key} = {json.dumps(value)}\n")  # JSON strings and lists are TOML


def run(module: str, tests: list[str], dest: Path, rev: str | None = None) -> Result:
    stage(module, tests, dest, rev)
    started = time.monotonic()
    with (dest / "mutmut.log").open("w") as log:
        subprocess.run(
            [Path(sys.executable).parent / "mutmut", "run", "--max-children", str(MAX_CHILDREN)],
            cwd=dest,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
        )
    seconds = time.monotonic() - started
    (dest / "seconds.txt").write_text(f"{seconds:.1f}\n")
    return collect(module, tests, dest)


def rerun(module: str, tests: list[str], dest: Path) -> Result:
    """Run the last run's survivors again against the work tree's tests as they are now
    (copied into the staging copy, mutmut's test map rebuilt); the others keep their status."""
    meta = json.loads((dest / "mutants" / f"src/{module}.meta").read_text())["exit_code_by_key"]
    names = [name for name, code in meta.items() if code in {0, 33}]
    for copy in (dest / "tests", dest / "mutants" / "tests"):
        shutil.copytree(ROOT / "tests", copy, dirs_exist_ok=True)
    # The tests the module maps to now, as for a first run (MODULES may have grown since).
    settings = dest / "pyproject.toml"
    selection = json.dumps([t for t in tests if (dest / t).is_file()])
    settings.write_text(
        re.sub(
            r"^pytest_add_cli_args_test_selection = .*$",
            lambda _: f"pytest_add_cli_args_test_selection = {selection}",
            settings.read_text(encoding="utf-8"),
            flags=re.MULTILINE,
        ),
        encoding="utf-8",
    )
    (dest / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    started = time.monotonic()
    mutmut = Path(sys.executable).parent / "mutmut"
    if names:
        with (dest / "mutmut-rerun.log").open("w") as log:
            subprocess.run(
                [mutmut, "run", "--max-children", str(MAX_CHILDREN), *names],
                cwd=dest,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
            )
    result = collect(module, tests, dest)
    result.extra["rerun"] = {"mutants": len(names), "seconds": round(time.monotonic() - started)}
    return result


def collect(module: str, tests: list[str], dest: Path) -> Result:
    """The results of the run last made in ``dest``."""
    counts, survivors = results(module, dest)
    seconds = float((dest / "seconds.txt").read_text())
    return Result(module, counts, survivors, seconds, len(tests))


def results(module: str, dest: Path) -> tuple[dict[str, int], list[Survivor]]:
    from mutmut.mutation.diff_apply import get_diff_for_mutant  # noqa: PLC0415
    from mutmut.stats import status_by_exit_code  # noqa: PLC0415

    path = f"src/{module}"
    meta = json.loads((dest / "mutants" / f"{path}.meta").read_text())["exit_code_by_key"]
    source = (dest / path).read_text(encoding="utf-8")
    counts: dict[str, int] = {}
    survivors = []
    cwd = Path.cwd()
    os.chdir(dest)  # mutmut reads its config and the mutants from the working directory
    try:
        for name, code in meta.items():
            status = status_by_exit_code[code]
            counts[status] = counts.get(status, 0) + 1
            if status in SURVIVED:
                diff = get_diff_for_mutant(name, path=path)
                line, before, after = changed_line(source, name, diff)
                survivors.append(
                    Survivor(
                        f"{SOURCE_ROOT}/{module}",
                        line,
                        function_of(name),
                        before,
                        after,
                        untested=status == "no tests",
                    )
                )
    finally:
        os.chdir(cwd)
    return counts, sorted(survivors, key=lambda s: (s.line, s.after))


def function_of(name: str) -> str:
    """``Class.method`` or ``function`` from mutmut's mutant name (x_f__mutmut_3, xǁCǁm__...)."""
    key = name.rpartition("__mutmut_")[0].rpartition(".")[2]
    if key.startswith("xǁ"):
        cls, _, func = key[2:].rpartition("ǁ")
        return f"{cls.strip('ǁ')}.{func}"
    return key[2:]


def changed_line(source: str, name: str, diff: str) -> tuple[int, str, str]:
    """The file line a mutant changes, and that line before and after (first change only)."""
    cls, _, func = function_of(name).rpartition(".")
    node = None
    for top in ast.parse(source).body:
        if cls and isinstance(top, ast.ClassDef) and top.name == cls:
            top = next((n for n in top.body if getattr(n, "name", None) == func), top)  # noqa: PLW2901
        if getattr(top, "name", None) in {func, cls} - {""}:
            node = top
            break
    lines = source.splitlines()
    old_no, first_old = 0, 0
    removed: list[str] = []
    added: list[str] = []
    for text in diff.splitlines()[2:]:
        if text.startswith("@@"):
            old_no = int(text.split()[1].lstrip("-").split(",")[0]) - 1
        elif text.startswith("-"):
            old_no += 1
            first_old = first_old or old_no
            removed.append(text[1:].strip())
        elif text.startswith("+"):
            added.append(text[1:].strip())
        else:
            old_no += 1
    if node is None:
        return 0, " / ".join(removed), " / ".join(added) or "(deleted)"
    decorators = getattr(node, "decorator_list", [])
    low = min([node.lineno] + [d.lineno for d in decorators]) - 5
    guess = node.lineno + max(first_old - 1, 0)
    hits = [
        i + 1
        for i in range(max(low, 0), node.end_lineno or len(lines))
        if removed and lines[i].strip() == removed[0]
    ]
    line = min(hits, key=lambda n: abs(n - guess)) if hits else guess
    return line, " / ".join(removed), " / ".join(added) or "(deleted)"


# --- the notes: why a surviving mutant cannot change behaviour -----------------------------

NOTE_SEPARATOR = "  ⟹  "


def load_notes(path: Path = NOTES) -> dict[str, str]:
    """``<survivor key>  ⟹  <why>`` per line; blank lines and ``#`` comments are skipped."""
    notes: dict[str, str] = {}
    if not path.is_file():
        return notes
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, why = line.rpartition(NOTE_SEPARATOR)
        if not sep or not key.strip() or not why.strip():
            raise SystemExit(f"{path}:{number}: expected '<mutant>{NOTE_SEPARATOR}<why>'")
        notes[key.strip()] = why.strip()
    return notes


# --- the reports ---------------------------------------------------------------------------


def table_row(result: Result) -> str:
    counts = result.counts
    survived, untested = counts.get("survived", 0), counts.get("no tests", 0)
    return (
        f"| {result.module} | {result.n_tests} | {result.total} | {result.killed} | {survived} "
        f"| {untested} | {result.score:.1f}% | {result.seconds:.0f} s |"
    )


def report(rows: list[Result]) -> str:
    out = [
        "| module | test files | mutants | killed | survived | no tests | score | time |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    out += [table_row(r) for r in rows]
    for r in rows:
        out += ["", f"## Surviving mutants: {r.module} ({len(r.survivors)})", "", "```"]
        out += [survivor_line(s) for s in r.survivors]
        out.append("```")
    return "\n".join(out) + "\n"


def survivor_line(s: Survivor, why: str | None = None) -> str:
    mark = " (no test reaches it)" if s.untested else ""
    text = f"{s.module}:{s.line} `{s.function}`: `{s.before}` → `{s.after}`{mark}"
    return text if why is None else f"{text}: {why}"


_SECTION = re.compile(
    r"<!-- module: (?P<module>\S+) -->\n(?P<body>.*?)<!-- /module: (?P=module) -->\n",
    re.DOTALL,
)
_DATA = re.compile(r"<!-- data: (\{.*?\}) -->")
_TABLE = re.compile(r"(<!-- table -->\n).*?(<!-- /table -->\n)", re.DOTALL)


def update_doc(
    text: str, result: Result, notes: dict[str, str], *, baseline: str | None = None
) -> str:
    """docs/mutation.md with ``result``'s module section replaced (or added) and the score
    table rebuilt from every section's data. ``baseline``: ``result`` is the score of that
    commit's tests (the "before"), only recorded."""
    sections = {m.group("module"): m.group("body") for m in _SECTION.finditer(text)}
    old = sections.get(result.module, "")
    found = _DATA.search(old)
    data: dict[str, Any] = json.loads(found.group(1)) if found else {}
    if baseline is not None:
        data["before"] = {
            "tests_of": baseline,
            "mutants": result.total,
            "killed": result.killed,
            "score": round(result.score, 1),
            "seconds": round(result.seconds),
            "date": _today(),
        }
        body = _DATA.sub("", old).lstrip("\n") if found else old
    else:
        data["now"] = {
            "mutants": result.total,
            "killed": result.killed,
            "score": round(result.score, 1),
            "seconds": round(result.seconds),
            "date": _today(),
            **result.extra,
        }
        body = survivors_section(result, notes)
    new = f"<!-- data: {json.dumps(data, sort_keys=True)} -->\n{body}"
    block = f"<!-- module: {result.module} -->\n{new}<!-- /module: {result.module} -->\n"
    if result.module in sections:
        start = text.index(f"<!-- module: {result.module} -->\n")
        end = text.index(f"<!-- /module: {result.module} -->\n", start)
        end += len(f"<!-- /module: {result.module} -->\n")
        text = text[:start] + block + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    return _TABLE.sub(lambda m: m.group(1) + score_table(text) + m.group(2), text)


def survivors_section(result: Result, notes: dict[str, str]) -> str:
    explained = [(s, notes.get(s.key)) for s in result.survivors]
    missing = sum(1 for _, why in explained if why is None)
    out = [
        f"### {result.module}: {len(result.survivors)} surviving"
        + (f", {missing} NOT EXPLAINED" if missing else ""),
        "",
    ]
    out += [f"- {survivor_line(s, why or 'NOT EXPLAINED')}" for s, why in explained]
    return "\n".join(out) + "\n\n"


def score_table(text: str) -> str:
    out = [
        "| module | before: mutants, score (tests of) | now: mutants, score | run time "
        "| measured |",
        "| --- | --- | --- | ---: | --- |",
    ]
    for m in _SECTION.finditer(text):
        found = _DATA.search(m.group("body"))
        data = json.loads(found.group(1)) if found else {}
        before, now = data.get("before"), data.get("now")
        was = f"{before['mutants']}, {before['score']}% ({before['tests_of']})" if before else "-"
        is_ = f"{now['mutants']}, {now['score']}%" if now else "-"
        took = f"{now['seconds']} s" if now else "-"
        if now and "rerun" in now:
            took += f", then its {now['rerun']['mutants']} survivors: {now['rerun']['seconds']} s"
        out.append(f"| {m.group('module')} | {was} | {is_} | {took} | {now and now['date']} |")
    return "\n".join(out) + "\n"


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("modules", nargs="*", help="suffixes of MODULES keys; default: all")
    parser.add_argument("--full", action="store_true", help="every test file, not the mapping")
    parser.add_argument("--at", metavar="REV", help="stage this commit, record it as 'before'")
    parser.add_argument(
        "--collect", action="store_true", help="report the last run's results, run nothing"
    )
    parser.add_argument(
        "--rerun", action="store_true", help="run the last run's survivors against today's tests"
    )
    args = parser.parse_args()
    chosen = [m for m in MODULES if not args.modules or any(m.endswith(s) for s in args.modules)]
    if not chosen:
        parser.error(f"no module ends with {' or '.join(args.modules)}; known: {list(MODULES)}")
    everything = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py"))
    notes = load_notes()
    rows = []
    for module in chosen:
        tests = [t for t in everything if t not in NOT_IN_FULL] if args.full else MODULES[module]
        name = Path(module).stem + ("-full" if args.full else "") + ("-before" if args.at else "")
        if args.collect:
            result = collect(module, tests, OUT / name)
        elif args.rerun:
            print(f"{module}: survivors again, in {OUT / name}", flush=True)
            result = rerun(module, tests, OUT / name)
        else:
            print(f"{module}: mutmut against {len(tests)} test files in {OUT / name}", flush=True)
            result = run(module, tests, OUT / name, args.at)
        print(f"  {result.counts} in {result.seconds:.0f} s", flush=True)
        rows.append(result)
        if not args.full:
            doc = DOC.read_text(encoding="utf-8") if DOC.is_file() else ""
            DOC.write_text(update_doc(doc, result, notes, baseline=args.at), encoding="utf-8")
    text = report(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "REPORT.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
