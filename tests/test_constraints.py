"""Installs are reproducible: constraints.txt pins what every package of the repository asks for,
and every install path of the project (nox sessions, .ci/run, the README) goes through it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for number, line in enumerate(CONSTRAINTS.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9._!]+)", line)
        assert match, f"constraints.txt:{number}: not a name==version pin: {line!r}"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"constraints.txt:{number}: {name} pinned twice"
        pins[name] = match.group(2)
    return pins


def _requirements() -> list[tuple[str, Requirement]]:
    """Every third-party requirement of every pyproject in the repository, extras included."""
    found = []
    for pyproject in sorted(ROOT.glob("**/pyproject.toml")):
        if any(part.startswith(".") for part in pyproject.relative_to(ROOT).parts):
            continue  # .nox, .venv: installed environments, not the project
        project = tomllib.loads(pyproject.read_text()).get("project", {})
        lists = [project.get("dependencies", []), *project.get("optional-dependencies", {}).values()]
        for text in (t for group in lists for t in group):
            requirement = Requirement(text)
            if not canonicalize_name(requirement.name).startswith("forgemind"):
                found.append((str(pyproject.relative_to(ROOT)), requirement))
    return found


def test_constraints_pin_every_dependency_the_repository_declares_to_a_version_it_allows() -> None:
    pins = _pins()
    assert pins, "constraints.txt pins nothing"
    for where, requirement in _requirements():
        name = canonicalize_name(requirement.name)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # e.g. uvloop on Windows only
        assert name in pins, f"{where}: {requirement} is not pinned in constraints.txt (run nox -s lock)"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{where}: {requirement} does not allow the pinned {name}=={pins[name]}"
        )


def test_torch_is_pinned_to_the_local_cpu_build_without_a_local_label() -> None:
    # '==2.13.0' matches the CPU build here ('2.13.0+cpu') and a CUDA build elsewhere alike.
    assert _pins()["torch"] == "2.13.0"


@pytest.mark.parametrize("path", [".ci/run", "README.md"])
def test_every_pip_install_line_of_the_project_uses_the_constraints(path: str) -> None:
    lines = [line for line in (ROOT / path).read_text().splitlines()
             if re.search(r"\bpip install\b", line) and not line.lstrip().startswith(("#", "`", "|"))]
    assert lines, f"{path} has no install line to check"
    for line in lines:
        if "pip install forgemind" in line:  # a released plugin from the registry, named in prose
            continue
        assert "-c constraints.txt" in line, f"{path}: {line.strip()!r} installs without constraints.txt"


def test_every_nox_install_goes_through_the_constraints() -> None:
    """Each ``session.install`` in the noxfile passes the constraints (``-c CONSTRAINTS``) or goes
    through ``install_stack``/``install_llama_cpp``, whose only unconstrained mode is the
    ``tests-latest``/``lock`` sessions' explicit ``constrained=False``."""
    source = (ROOT / "noxfile.py").read_text()
    installs = re.findall(r"session\.install\(([^)]*)\)", source)
    assert installs
    for args in installs:
        assert args.startswith(("*pins", '"-c", CONSTRAINTS')), f"noxfile: session.install({args}) without constraints"
    unconstrained = re.findall(r"def (\w+)\(session[^\n]*\n(?:(?!\ndef ).)*?constrained=False", source, re.S)
    assert sorted(unconstrained) == ["lock", "tests_latest"]
