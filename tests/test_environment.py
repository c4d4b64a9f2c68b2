"""environment.yml and pyproject.toml must name the same dependencies with the same lower bounds."""

import re
import sys
from pathlib import Path

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch", "ray-client": "ray"}  # conda-forge name -> PyPI name (ray-client: ray[client])
SPEC = re.compile(r"^([A-Za-z0-9_.\-]+)\s*(.*)$")


def parse(spec: str) -> tuple[str, str]:
    name, bound = SPEC.match(spec.strip()).groups()
    name = name.lower().replace("_", "-")
    return CONDA_NAMES.get(name, name), re.sub(r"^\[[^\]]*\]", "", bound.replace(" ", ""))  # extras: the conda name says them


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(parse(s) for s in project["dependencies"] + project["optional-dependencies"]["test"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda = dict(parse(s) for s in env if isinstance(s, str) and not s.startswith(("python", "pip")))
    assert conda == wanted
    pip_section = next(d["pip"] for d in env if isinstance(d, dict))
    assert "-e ." in pip_section  # the env installs this package itself


def test_python_floor_agrees():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    python = next(s for s in env if isinstance(s, str) and s.startswith("python="))
    floor = tuple(int(x) for x in project["requires-python"].removeprefix(">=").split("."))
    assert tuple(int(x) for x in python.split("=")[1].split(".")) >= floor
