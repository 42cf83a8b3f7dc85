"""The project files agree with each other: MLproject, conda.yaml, requirements, CLI."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import ROOT
from sweeper.config import SweepConfig, build_parser

MLPROJECT = yaml.safe_load((ROOT / "MLproject").read_text())
CONDA = yaml.safe_load((ROOT / "conda.yaml").read_text())
# name==version, optionally with an environment marker: `uvloop==0.23.0; sys_platform != "win32"`.
_PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)(\s*;\s*[^#]+)?$")


def _pins(lines: list[str]) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        match = _PIN.match(line)
        if match is None:
            raise ValueError(f"not pinned with ==: {line!r}")
        # `psycopg[binary]` is pinned as `psycopg` (and its extra's packages) in a freeze.
        pins[match.group(1).split("[")[0].lower()] = match.group(2)
    return pins


def test_conda_yaml_pins_python_311_and_the_same_versions_as_requirements() -> None:
    deps = CONDA["dependencies"]
    assert "python=3.11" in deps
    (pip_section,) = [d["pip"] for d in deps if isinstance(d, dict)]
    conda_pins = _pins(pip_section)
    requirement_pins = _pins((ROOT / "requirements.txt").read_text().splitlines())
    assert conda_pins == requirement_pins
    assert {"mlflow", "optuna", "scikit-learn", "pandas", "xgboost"} <= set(conda_pins)


def test_constraints_agree_with_requirements() -> None:
    constraints = _pins((ROOT / "constraints.txt").read_text().splitlines())
    pins = {}
    for requirements in ("requirements.txt", "requirements-dev.txt", "requirements-bench.txt"):
        pins.update(_pins((ROOT / requirements).read_text().splitlines()))
    for name, version in pins.items():
        assert constraints[name] == version, name


def test_mlproject_uses_conda_yaml_and_has_both_entry_points() -> None:
    assert MLPROJECT["conda_env"] == "conda.yaml"
    assert set(MLPROJECT["entry_points"]) == {"main", "sweep", "champion"}
    assert MLPROJECT["entry_points"]["main"]["command"] == "python sweep.py"


_MLPROJECT_TYPE = {int: "int", float: "float", str: "str"}


def test_champion_entry_point_needs_a_sweep_name() -> None:
    champion = MLPROJECT["entry_points"]["champion"]
    assert champion["parameters"]["sweep_name"] == {"type": "str"}
    assert champion["command"].startswith("python sweep.py --champion ")


@pytest.mark.parametrize("name", [f for f in SweepConfig.__dataclass_fields__])
def test_every_parameter_is_typed_with_the_cli_default(name: str) -> None:
    params = MLPROJECT["entry_points"]["sweep"]["parameters"]
    default = getattr(SweepConfig(), name)
    assert params[name]["type"] == _MLPROJECT_TYPE[type(default)]
    assert type(default)(params[name]["default"]) == default
    assert f"--{name} {{{name}}}" in MLPROJECT["entry_points"]["sweep"]["command"]
    assert build_parser().get_default(name) == default
