"""The package as a user installs it: a wheel built from the project, installed without
the repository beside it, works from any folder, with only its run-time dependencies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: What the command line needs at run time, and nothing else (pytest and the other test
#: tools are the ``dev`` extra).
RUNTIME = {"numpy", "hypothesis", "z3-solver", "pyyaml", "click"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel, as ``pip wheel .`` builds it."""
    folder = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(folder), "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if built.returncode != 0 and "No matching distribution" in built.stderr:
        pytest.skip(f"the build backend cannot be had from the package index: {built.stderr}")
    assert built.returncode == 0, built.stderr
    (found,) = folder.glob("pagingcheck-*.whl")
    return found


def test_the_wheel_requires_only_the_run_time_dependencies(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        lines = archive.read(metadata).decode().splitlines()
    field = "Requires-Dist:"
    required = [line.removeprefix(field).strip() for line in lines if line.startswith(field)]
    always = {_name(r) for r in required if "extra ==" not in r}
    assert always == RUNTIME
    assert "pytest" in {_name(r) for r in required if "extra ==" in r}


def _name(requirement: str) -> str:
    for stop in "<>=!~;[ ":
        requirement = requirement.split(stop, 1)[0]
    return requirement.lower()


def test_the_installed_wheel_works_from_any_folder(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    installed = subprocess.run(
        [*install, "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def pagingcheck(*args: str) -> subprocess.CompletedProcess[str]:
        # The installed copy comes first on the path; the repository is nowhere on it.
        env = {**os.environ, "PYTHONPATH": str(site)}
        return subprocess.run(
            [sys.executable, "-m", "pagingcheck", *args],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    where = subprocess.run(
        [sys.executable, "-c", "import pagingcheck.checks as c; print(c.__file__)"],
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr
    # The package data is there: the manual, the default and reference configurations,
    # the JSON schemas, the C kernel's sources.
    manual = pagingcheck("docs", "explorer")
    assert manual.returncode == 0 and manual.stdout.startswith("# The exhaustive explorer")
    default = pagingcheck("config", "--default")
    assert default.returncode == 0 and "workload:" in default.stdout
    schema = pagingcheck("schema", "--results")
    assert json.loads(schema.stdout)["properties"]["schema"]["const"] >= 2
    explored = pagingcheck("explore", "--reference", "pair", "--json", "-q")
    assert explored.returncode == 0, explored.stderr
    assert json.loads(explored.stdout)["results"][0]["complete"]
    assert list((site / "pagingcheck" / "impl" / "c").glob("kernel.c"))
    assert (site / "pagingcheck" / "checks" / "viewer.html").is_file()  # the viewer's page
