"""Mutation testing of the modules that decide or delete, one module at a time, with mutmut.

    .venv-mut/bin/python tools/mutation.py                  # every module in MODULES
    .venv-mut/bin/python tools/mutation.py judge.py         # the modules whose path ends so
    .venv-mut/bin/python tools/mutation.py --full judge.py  # against the whole suite instead

mutmut 3 only finds mutated code under ./, src/ or source/, and `gc` cannot be that root (it
would name the modules gc.nsx_route_gc.*). So each module runs in its own staging copy,
build/mutation/<name>/: the project's files with the package copied to src/nsx_route_gc, and
a [tool.mutmut] section appended to that copy's pyproject.toml. Writes build/mutation/REPORT.md:
one row per module, then every surviving mutant as `file:line  original → mutated`.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_ROOT = "gc"  # the folder that holds the package, relative to ROOT
OUT = ROOT / "build" / "mutation"

# Module (relative to SOURCE_ROOT) -> the tests that exercise it. Moving a module is one line.
MODULES: dict[str, list[str]] = {
    "nsx_route_gc/judge.py": [
        "tests/test_judge.py",
        "tests/test_judge_netkey.py",
        "tests/test_scan.py",
    ],
    "nsx_route_gc/config.py": ["tests/test_config.py", "tests/test_cronjob.py"],
    "nsx_route_gc/apply.py": ["tests/test_apply.py"],
    "nsx_route_gc/deleter.py": ["tests/test_apply.py", "tests/test_confirm.py"],
    "nsx_route_gc/restore.py": ["tests/test_restore.py"],
    "nsx_route_gc/nsx_http.py": ["tests/test_nsx.py", "tests/test_nsx_search.py"],
}

# CLI-as-a-subprocess tests cannot kill a mutant (a subprocess imports the unmutated package);
# --full leaves them out.
NOT_IN_FULL = {"tests/test_e2e.py", "tests/test_dockerfile.py"}

MUTMUT = {
    "pytest_add_cli_args": ["-p", "no:cacheprovider", "-q"],
    "use_git_change_detection": False,
}
MAX_CHILDREN = 2

KILLED = {"killed", "timeout", "caught by type check"}
SURVIVED = {"survived", "no tests"}


def stage(module: str, tests: list[str], dest: Path) -> None:
    """A copy of the project's files (as in the work tree) with the package under src/."""
    shutil.rmtree(dest, ignore_errors=True)
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        text=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    # mutmut runs the tests inside mutants/: tests that read Dockerfile, cronjob.yaml... need them
    top = sorted({name.split("/", maxsplit=1)[0] for name in listed if name} - {"tests", "src"})
    package = module.split("/", maxsplit=1)[0]
    shutil.copytree(dest / SOURCE_ROOT / package, dest / "src" / package)
    settings = {
        **MUTMUT,
        "also_copy": top,
        "source_paths": [f"src/{package}"],
        "only_mutate": [f"src/{module}"],
        "pytest_add_cli_args_test_selection": tests,
    }
    with (dest / "pyproject.toml").open("a", encoding="utf-8") as file:
        file.write("\n[tool.mutmut]\n")
        for key, value in settings.items():
            file.write(f"{key} = {json.dumps(value)}\n")  # JSON strings and lists are TOML


def run(module: str, tests: list[str], dest: Path) -> tuple[dict[str, int], list[str], float]:
    stage(module, tests, dest)
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
    counts, survivors = results(module, dest)
    return counts, survivors, seconds


def results(module: str, dest: Path) -> tuple[dict[str, int], list[str]]:
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
                mark = "  (no test reaches it)" if status == "no tests" else ""
                survivors.append(f"{SOURCE_ROOT}/{module}:{line}  {before} → {after}{mark}")
    finally:
        os.chdir(cwd)
    return counts, sorted(survivors, key=lambda s: int(s.split(":")[1].split()[0]))


def changed_line(source: str, name: str, diff: str) -> tuple[int, str, str]:
    """The file line a mutant changes, and that line before and after (first change only)."""
    key = name.rpartition("__mutmut_")[0].rpartition(".")[2]
    cls, _, func = key[2:].rpartition("ǁ") if key.startswith("xǁ") else ("", "", key[2:])
    cls = cls.strip("ǁ")
    node = None
    for top in ast.parse(source).body:
        if cls and isinstance(top, ast.ClassDef) and top.name == cls:
            top = next((n for n in top.body if getattr(n, "name", None) == func), top)  # noqa: PLW2901
        if getattr(top, "name", None) in {func, cls} - {""}:
            node = top
            break
    lines = source.splitlines()
    old_no, first_old, removed, added = 0, 0, [], []
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
    low = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 5
    guess = node.lineno + max(first_old - 1, 0)
    hits = [
        i + 1
        for i in range(max(low, 0), node.end_lineno or len(lines))
        if removed and lines[i].strip() == removed[0]
    ]
    line = min(hits, key=lambda n: abs(n - guess)) if hits else guess
    return line, " / ".join(removed), " / ".join(added) or "(deleted)"


def report(rows: list[tuple[str, dict[str, int], list[str], float, int]]) -> str:
    out = [
        "| module | test files | mutants | killed | survived | no tests | timeout | other | score "
        "| time |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for module, counts, _, seconds, n_tests in rows:
        total = sum(counts.values())
        killed = counts.get("killed", 0) + counts.get("caught by type check", 0)
        timeout = counts.get("timeout", 0)
        survived, no_tests = counts.get("survived", 0), counts.get("no tests", 0)
        other = total - killed - timeout - survived - no_tests
        score = 100 * (killed + timeout) / total if total else 0.0
        out.append(
            f"| {module} | {n_tests} | {total} | {killed} | {survived} | {no_tests} | {timeout} "
            f"| {other} | {score:.1f}% | {seconds:.0f} s |"
        )
    for module, _, survivors, _, _ in rows:
        out += ["", f"## Surviving mutants: {module} ({len(survivors)})", "", "```"]
        out += survivors
        out.append("```")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="suffixes of MODULES keys; default: all")
    parser.add_argument("--full", action="store_true", help="every test file, not the mapping")
    args = parser.parse_args()
    chosen = [m for m in MODULES if not args.modules or any(m.endswith(s) for s in args.modules)]
    everything = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py"))
    rows = []
    for module in chosen:
        tests = [t for t in everything if t not in NOT_IN_FULL] if args.full else MODULES[module]
        name = Path(module).stem + ("-full" if args.full else "")
        print(f"{module}: mutmut against {len(tests)} test files in {OUT / name}", flush=True)
        counts, survivors, seconds = run(module, tests, OUT / name)
        print(f"  {counts} in {seconds:.0f} s", flush=True)
        rows.append((module, counts, survivors, seconds, len(tests)))
    text = report(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "REPORT.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
