"""Tests for :mod:`sweeper.search_space`: loading, suggesting, and every validation message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FixedTrial

from sweeper.errors import SweepError
from sweeper.search_space import PROJECT_ROOT, SearchSpace, load_search_space

VALID_YAML = """\
# a comment
fixed:
  n_jobs: 1
  criterion: squared_error
searched:
  n_estimators: {type: int, low: 50, high: 400, log: true}
  max_features: {type: float, low: 0.2, high: 1.0}
  min_samples_leaf: {type: int, low: 1, high: 20, step: 1}
  max_depth: {type: int, low: 2, high: 10, step: 2}
  alpha: {type: float, low: 1.0e-3, high: 10, log: true}
  ratio: {type: float, low: 0, high: 1, step: 0.25}
  bootstrap: {type: categorical, choices: [true, false]}
  mixed: {type: categorical, choices: [null, 1, 2.5, auto]}
"""

ACCEPTED = ("n_estimators", "max_depth", "min_samples_leaf", "criterion")


def _write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def space(tmp_path: Path) -> SearchSpace:
    return load_search_space(_write(tmp_path, VALID_YAML), family="demo")


def test_valid_yaml_loads_into_optuna_distributions(space: SearchSpace, tmp_path: Path) -> None:
    assert space.family == "demo"
    assert space.path == tmp_path / "space.yaml"
    assert dict(space.fixed) == {"n_jobs": 1, "criterion": "squared_error"}
    assert dict(space.searched) == {
        "n_estimators": IntDistribution(50, 400, log=True),
        "max_features": FloatDistribution(0.2, 1.0),
        "min_samples_leaf": IntDistribution(1, 20, step=1),
        "max_depth": IntDistribution(2, 10, step=2),
        "alpha": FloatDistribution(1.0e-3, 10.0, log=True),
        "ratio": FloatDistribution(0.0, 1.0, step=0.25),
        "bootstrap": CategoricalDistribution([True, False]),
        "mixed": CategoricalDistribution([None, 1, 2.5, "auto"]),
    }
    # File order is kept: it is the order parameters are suggested and logged in.
    assert list(space.searched) == [
        "n_estimators",
        "max_features",
        "min_samples_leaf",
        "max_depth",
        "alpha",
        "ratio",
        "bootstrap",
        "mixed",
    ]
    # Ints written for a float distribution become floats.
    assert isinstance(space.searched["ratio"].low, float)


def test_search_space_is_read_only(space: SearchSpace) -> None:
    with pytest.raises(TypeError):
        space.fixed["n_jobs"] = 2  # type: ignore[index]
    with pytest.raises(TypeError):
        space.searched["alpha"] = FloatDistribution(0.0, 1.0)  # type: ignore[index]
    copied = space.distributions()
    copied.clear()
    assert len(space.distributions()) == len(space.searched)


def test_suggest_with_fixed_trial_returns_fixed_and_searched(space: SearchSpace) -> None:
    chosen: dict[str, Any] = {
        "n_estimators": 100,
        "max_features": 0.5,
        "min_samples_leaf": 3,
        "max_depth": 4,
        "alpha": 0.01,
        "ratio": 0.75,
        "bootstrap": False,
        "mixed": None,
    }
    params = space.suggest(FixedTrial(chosen))
    assert params == {"n_jobs": 1, "criterion": "squared_error", **chosen}


def test_suggest_with_study_samples_inside_the_distributions(space: SearchSpace) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        params = space.suggest(trial)
        assert set(params) == set(space.fixed) | set(space.searched)
        assert {name: params[name] for name in space.fixed} == dict(space.fixed)
        # The trial records exactly the searched params, under their own names and distributions.
        assert trial.params == {name: params[name] for name in space.searched}
        assert trial.distributions == space.distributions()
        study.tell(trial, 0.0)


def test_suggest_returns_a_fresh_dict_each_time(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "fixed:\n  layers: [1, 2]\nsearched:\n  a: {type: int, low: 1, high: 1}\n",
    )
    space = load_search_space(path, family="demo")
    first = space.suggest(FixedTrial({"a": 1}))
    first["layers"].append(3)
    assert space.suggest(FixedTrial({"a": 1}))["layers"] == [1, 2]


def test_distributions_can_enqueue_and_add_trials(space: SearchSpace) -> None:
    study = optuna.create_study()
    params = {name: dist.to_external_repr(0) if isinstance(dist, CategoricalDistribution)
              else dist.low for name, dist in space.distributions().items()}
    study.add_trial(
        optuna.trial.create_trial(params=params, distributions=space.distributions(), value=1.0)
    )
    assert study.trials[0].params == params


def test_null_fixed_means_no_fixed_params(tmp_path: Path) -> None:
    path = _write(tmp_path, "fixed:\nsearched:\n  a: {type: float, low: 0.0, high: 1.0}\n")
    assert dict(load_search_space(path, family="demo").fixed) == {}


def test_accepted_params_pass_when_every_param_is_accepted(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "fixed:\n  criterion: squared_error\nsearched:\n"
        "  max_depth: {type: int, low: 2, high: 8}\n",
    )
    space = load_search_space(path, family="demo", accepted_params=ACCEPTED)
    assert set(space.searched) == {"max_depth"}


# Each case: (YAML text, extra keyword arguments, expected message after "<file>: ").
ERROR_CASES = [
    # --- the file and its top level ---
    pytest.param(
        "searched: [1, 2\n",
        {},
        "malformed YAML at line 2, column 1: expected ',' or ']', but got '<stream end>'",
        id="malformed-yaml",
    ),
    pytest.param(
        "searched:\n\ta: 1\n",
        {},
        "malformed YAML at line 2, column 1: found character '\\t' that cannot start any token",
        id="malformed-yaml-tab",
    ),
    pytest.param(
        "searched:\n  a: {type: int, low: 1, high: 2}\n  a: {type: int, low: 1, high: 3}\n",
        {},
        "malformed YAML at line 3, column 3: duplicate key 'a'",
        id="duplicate-key",
    ),
    pytest.param(
        "searched:\n  a: {type: int, low: 1, low: 2, high: 3}\n",
        {},
        "malformed YAML at line 2, column 26: duplicate key 'low'",
        id="duplicate-spec-key",
    ),
    pytest.param(
        "# only a comment\n",
        {},
        "the file is empty; expected a mapping with `searched` (and optionally `fixed`)",
        id="empty-file",
    ),
    pytest.param(
        "- a\n- b\n",
        {},
        "the top level must be a mapping with `searched` (and optionally `fixed`), "
        "but got a list ['a', 'b']",
        id="top-level-list",
    ),
    pytest.param(
        "just a string\n",
        {},
        "the top level must be a mapping with `searched` (and optionally `fixed`), "
        "but got the string 'just a string'",
        id="top-level-string",
    ),
    pytest.param(
        "searched:\n  a: {type: int, low: 1, high: 2}\nsearch:\n  b: 1\n",
        {},
        "search: unknown top-level key; allowed: fixed, searched",
        id="unknown-top-level-key",
    ),
    pytest.param(
        "fixed:\n  a: 1\n",
        {},
        "searched: is required (a non-empty mapping of parameter name -> distribution spec)",
        id="searched-missing",
    ),
    pytest.param(
        "searched: {}\n",
        {},
        "searched: must be a non-empty mapping, but got an empty mapping",
        id="searched-empty",
    ),
    pytest.param(
        "searched:\n",
        {},
        "searched: must be a non-empty mapping, but got null",
        id="searched-null",
    ),
    pytest.param(
        "searched: [a, b]\n",
        {},
        "searched: must be a non-empty mapping, but got a list ['a', 'b']",
        id="searched-list",
    ),
    pytest.param(
        "fixed: [n_jobs]\nsearched:\n  a: {type: int, low: 1, high: 2}\n",
        {},
        "fixed: must be a mapping, but got a list ['n_jobs']",
        id="fixed-not-mapping",
    ),
    pytest.param(
        "fixed:\n  1: a\nsearched:\n  a: {type: int, low: 1, high: 2}\n",
        {},
        "fixed.1: a parameter name must be a string, but got the number 1",
        id="fixed-name-not-string",
    ),
    pytest.param(
        "searched:\n  true: {type: int, low: 1, high: 2}\n",
        {},
        "searched.true: a parameter name must be a string, but got the bool true",
        id="searched-name-not-string",
    ),
    # --- distribution specs ---
    pytest.param(
        "searched:\n  a: 5\n",
        {},
        "searched.a: a distribution spec must be a mapping such as "
        "{type: int, low: 1, high: 10}, but got the number 5",
        id="spec-not-mapping",
    ),
    pytest.param(
        "searched:\n  a: {low: 1, high: 2}\n",
        {},
        "searched.a: missing required key `type` (one of: int, float, categorical)",
        id="type-missing",
    ),
    pytest.param(
        "searched:\n  a: {type: uniform, low: 1, high: 2}\n",
        {},
        "searched.a.type: must be one of int, float, categorical, but got the string 'uniform'",
        id="type-unknown",
    ),
    pytest.param(
        "searched:\n  a: {type: 1, low: 1, high: 2}\n",
        {},
        "searched.a.type: must be one of int, float, categorical, but got the number 1",
        id="type-not-string",
    ),
    pytest.param(
        "searched:\n  a: {type: int, lo: 1, high: 2}\n",
        {},
        "searched.a.lo: unknown key; allowed for type int: type, low, high, step, log",
        id="unknown-spec-key",
    ),
    pytest.param(
        "searched:\n  a: {type: categorical, choices: [1], default: 1}\n",
        {},
        "searched.a.default: unknown key; allowed for type categorical: type, choices",
        id="unknown-spec-key-categorical",
    ),
    pytest.param(
        "searched:\n  a: {type: int, low: 1, high: 2, choices: [1, 2]}\n",
        {},
        "searched.a.choices: not allowed for type int (only for type categorical)",
        id="choices-on-int",
    ),
    pytest.param(
        "searched:\n  a: {type: float, low: 1, high: 2, choices: [1, 2]}\n",
        {},
        "searched.a.choices: not allowed for type float (only for type categorical)",
        id="choices-on-float",
    ),
    pytest.param(
        "searched:\n  a: {type: categorical, choices: [1, 2], low: 1}\n",
        {},
        "searched.a.low: not allowed for type categorical (only for type int and float)",
        id="low-on-categorical",
    ),
    pytest.param(
        "searched:\n  a: {type: categorical, choices: [1, 2], log: true}\n",
        {},
        "searched.a.log: not allowed for type categorical (only for type int and float)",
        id="log-on-categorical",
    ),
    # --- int and float bounds ---
    pytest.param(
        "searched:\n  a: {type: int, high: 2}\n",
        {},
        "searched.a: missing required key `low` (type int needs low and high)",
        id="low-missing",
    ),
    pytest.param(
        "searched:\n  a: {type: float, low: 0.5}\n",
        {},
        "searched.a: missing required key `high` (type float needs low and high)",
        id="high-missing",
    ),
    pytest.param(
        "searched:\n  a: {type: float, low: 1e-3, high: 1.0}\n",
        {},
        "searched.a.low: must be a number, but got the string '1e-3' (PyYAML reads `1e-3` as a "
        "string: a YAML 1.1 float needs a dot and a signed exponent; write `1.0e-3`)",
        id="float-exponent-without-dot",
    ),
    pytest.param(
        "searched:\n  a: {type: float, low: 1.0, high: 1.0e3}\n",
        {},
        "searched.a.high: must be a number, but got the string '1.0e3' (PyYAML reads `1.0e3` as "
        "a string: a YAML 1.1 float needs a dot and a signed exponent; write `1.0e+3`)",
        id="float-exponent-without-sign",
    ),
    pytest.param(
        "searched:\n  a: {type: int, low: 1, high: 1e3}\n",
        {},
        "searched.a.high: must be an integer for type int, but got the string '1e3' (PyYAML "
        "reads `1e3` as a string: a YAML 1.1 float needs a dot and a signed exponent; "
        "write `1000`)",
        id="int-exponent-string",
    ),
    # --- fixed values and choices that PyYAML read as strings but are meant as numbers ---
    pytest.param(
        "fixed:\n  tol: 1e-3\nsearched:\n  a: {type: int, low: 1, high: 2}\n",
        {},
        "fixed.tol: must be a number, but got the string '1e-3' (PyYAML reads `1e-3` as a "
        "string: a YAML 1.1 float needs a dot and a signed exponent; write `1.0e-3`)",
        id="fixed-exponent-string",
    ),
    pytest.param(
        "fixed:\n  max_iter: 1e3\nsearched:\n  a: {type: int, low: 1, high: 2}\n",
        {},
        "fixed.max_iter: must be a number, but got the string '1e3' (PyYAML reads `1e3` as a "
        "string: a YAML 1.1 float needs a dot and a signed exponent; write `1.0e+3`, or `1000` "
        "for an integer)",
        id="fixed-integral-exponent-string",
    ),
    pytest.param(
        "fixed:\n  missing: nan\nsearched:\n  a: {type: int, low: 1, high: 2}\n",
        {},
        "fixed.missing: must be a number, but got the string 'nan' (PyYAML reads `nan` as a "
        "string: YAML 1.1 spells it `.nan`)",
        id="fixed-nan-string",
    ),
    pytest.param(
        "fixed:\n  cap: -inf\nsearched:\n  a: {type: int, low: 1, high: 2}\n",
        {},
        "fixed.cap: must be a number, but got the string '-inf' (PyYAML reads `-inf` as a "
        "string: YAML 1.1 spells it `-.inf`)",
        id="fixed-minus-inf-string",
    ),
    pytest.param(
        "fixed:\n  tol: '0.5'\nsearched:\n  a: {type: int, low: 1, high: 2}\n",
        {},
        "fixed.tol: must be a number, but got the string '0.5' (write the number without "
        "quotes)",
        id="fixed-quoted-number",
    ),
    pytest.param(
        "searched:\n  a: {type: categorical, choices: [1.0e-2, 1e-3]}\n",
        {},
        "searched.a.choices[1]: must be a number, but got the string '1e-3' (PyYAML reads "
        "`1e-3` as a string: a YAML 1.1 float needs a dot and a signed exponent; write `1.0e-3`)",
        id="choice-exponent-string",
    ),
    pytest.param(
        "searched:\n  a: {type: float, low: '0.5', high: 1.0}\n",
        {},
        "searched.a.low: must be a number, but got the string '0.5'",
        id="quoted-number",
    ),
    pytest.param(
        "searched:\n  a: {type: float, low: false, high: 1.0}\n",
        {},
        "searched.a.low: must be a number, but got the bool false",
        id="bool-bound",
    ),
    pytest.param(
        "searched:\n  a: {type: float, low: null, high: 1.0}\n",
        {},
        "searched.a.low: must be a number, but got null",
        id="null-bound",
    ),
    pytest.param(
        "searched:\n  a: {type: float, low: [0], high: 1.0}\n",
        {},
        "searched.a.low: must be a number, but got a list [0]",
        id="list-bound",
    ),
    pytest.param(
        "searched:\n  a: {type: float, low: 0.0, high: .inf}\n",
        {},
        "searched.a.high: must be finite, but got inf",
        id="infinite-bound",
    ),
    pytest.param(
        "searched:\n  a: {type: int, low: 1.5, high: 3}\n",
        {},
        "searched.a.low: must be an integer for type int, but got the number 1.5",
        id="int-non-integer-low",
    ),
    pytest.param(
        "searched:\n  a: {type: int, low: 1, high: 3.0}\n",
        {},
        "searched.a.high: must be an integer for type int, but got the number 3.0",
        id="int-float-high",
    ),
    pytest.param(
        "searched:\n  a: {type: int, low: 1, high: 3, step: 0.5}\n",
        {},
        "searched.a.step: must be an integer for type int, but got the number 0.5",
        id="int-non-integer-step",
    ),
    pytest.param(
        "searched:\n  max_depth: {type: int, low: 5, high: 1}\n",
        {},
        "searched.max_depth: `low <= high` must hold, but got (low=5, high=1)",
        id="low-above-high",
    ),
    pytest.param(
        "searched:\n  a: {type: float, low: 0.9, high: 0.1}\n",
        {},
        "searched.a: `low <= high` must hold, but got (low=0.9, high=0.1)",
        id="low-above-high-float",
    ),
    pytest.param(
        "searched:\n  a: {type: float, low: 0.1, high: 1.0, log: 'true'}\n",
        {},
        "searched.a.log: must be true or false, but got the string 'true'",
        id="log-string",
    ),
    pytest.param(
        "searched:\n  a: {type: int, low: 1, high: 9, log: 1}\n",
        {},
        "searched.a.log: must be true or false, but got the number 1",
        id="log-number",
    ),
    pytest.param(
        "searched:\n  a: {type: float, low: 0.1, high: 1.0, log: true, step: 0.1}\n",
        {},
        "searched.a: `step` is not supported when `log` is true, but got (log=true, step=0.1)",
        id="log-with-step-float",
    ),
    pytest.param(
        "searched:\n  a: {type: int, low: 1, high: 9, log: true, step: 1}\n",
        {},
        "searched.a: `step` is not supported when `log` is true, but got (log=true, step=1)",
        id="log-with-step-int",
    ),
    pytest.param(
        "searched:\n  a: {type: float, low: 0.0, high: 1.0, log: true}\n",
        {},
        "searched.a.low: `low > 0` must hold for `log: true`, but got low=0.0",
        id="log-float-low-zero",
    ),
    pytest.param(
        "searched:\n  a: {type: int, low: 0, high: 10, log: true}\n",
        {},
        "searched.a.low: `low >= 1` must hold for `log: true`, but got low=0",
        id="log-int-low-zero",
    ),
    pytest.param(
        "searched:\n  a: {type: int, low: 1, high: 10, step: 0}\n",
        {},
        "searched.a.step: `step > 0` must hold, but got step=0",
        id="step-zero",
    ),
    pytest.param(
        "searched:\n  a: {type: float, low: 0.0, high: 1.0, step: -0.5}\n",
        {},
        "searched.a.step: `step > 0` must hold, but got step=-0.5",
        id="step-negative",
    ),
    pytest.param(
        "searched:\n  a: {type: int, low: 0, high: 10, step: 3}\n",
        {},
        "searched.a: `high - low` must be a multiple of `step`, but got (low=0, high=10, step=3)",
        id="int-step-off-grid",
    ),
    pytest.param(
        "searched:\n  a: {type: float, low: 0.1, high: 1.0, step: 0.2}\n",
        {},
        "searched.a: `high - low` must be a multiple of `step`, but got "
        "(low=0.1, high=1.0, step=0.2)",
        id="float-step-off-grid",
    ),
    # --- categorical ---
    pytest.param(
        "searched:\n  a: {type: categorical}\n",
        {},
        "searched.a: missing required key `choices` (type categorical needs a non-empty list "
        "of choices)",
        id="choices-missing",
    ),
    pytest.param(
        "searched:\n  a: {type: categorical, choices: []}\n",
        {},
        "searched.a.choices: must be a non-empty list, but got an empty list",
        id="choices-empty",
    ),
    pytest.param(
        "searched:\n  a: {type: categorical, choices: auto}\n",
        {},
        "searched.a.choices: must be a non-empty list, but got the string 'auto'",
        id="choices-string",
    ),
    pytest.param(
        "searched:\n  a: {type: categorical, choices: {x: 1}}\n",
        {},
        "searched.a.choices: must be a non-empty list, but got a mapping {'x': 1}",
        id="choices-mapping",
    ),
    pytest.param(
        "searched:\n  a: {type: categorical, choices: [gini, entropy, gini]}\n",
        {},
        "searched.a.choices[2]: choices must be distinct, but choices[2]='gini' equals "
        "choices[0]='gini'",
        id="choices-duplicate",
    ),
    pytest.param(
        "searched:\n  a: {type: categorical, choices: [true, 1]}\n",
        {},
        "searched.a.choices[1]: choices must be distinct, but choices[1]=1 equals "
        "choices[0]=true",
        id="choices-equal-across-types",
    ),
    pytest.param(
        "searched:\n  a: {type: categorical, choices: [1, [2, 3]]}\n",
        {},
        "searched.a.choices[1]: a choice must be null, a bool, an int, a float or a string, "
        "but got a list [2, 3]",
        id="choice-list",
    ),
    pytest.param(
        "searched:\n  a: {type: categorical, choices: [{x: 1}]}\n",
        {},
        "searched.a.choices[0]: a choice must be null, a bool, an int, a float or a string, "
        "but got a mapping {'x': 1}",
        id="choice-mapping",
    ),
    pytest.param(
        "searched:\n  a: {type: categorical, choices: [2024-01-01]}\n",
        {},
        "searched.a.choices[0]: a choice must be null, a bool, an int, a float or a string, "
        "but got a date datetime.date(2024, 1, 1)",
        id="choice-date",
    ),
    # --- across sections and against the estimator ---
    pytest.param(
        "fixed:\n  max_depth: 3\nsearched:\n  max_depth: {type: int, low: 2, high: 8}\n",
        {},
        "searched.max_depth: also set in `fixed`; a parameter is either fixed or searched, "
        "not both",
        id="fixed-and-searched-overlap",
    ),
    pytest.param(
        "searched:\n  max_dept: {type: int, low: 2, high: 8}\n",
        {"accepted_params": ACCEPTED, "estimator_name": "RandomForestRegressor"},
        "searched.max_dept: not a parameter of RandomForestRegressor (see its get_params()); "
        "did you mean 'max_depth'?",
        id="searched-not-accepted-close-match",
    ),
    pytest.param(
        "searched:\n  foo: {type: int, low: 2, high: 8}\n",
        {"accepted_params": ACCEPTED, "estimator_name": "RandomForestRegressor"},
        "searched.foo: not a parameter of RandomForestRegressor (see its get_params())",
        id="searched-not-accepted",
    ),
    pytest.param(
        "fixed:\n  foo: 1\nsearched:\n  max_depth: {type: int, low: 2, high: 8}\n",
        {"accepted_params": ACCEPTED, "estimator_name": "RandomForestRegressor"},
        "fixed.foo: not a parameter of RandomForestRegressor (see its get_params())",
        id="fixed-not-accepted",
    ),
    pytest.param(
        "searched:\n  foo: {type: int, low: 2, high: 8}\n",
        {"accepted_params": ACCEPTED},
        "searched.foo: not an accepted parameter",
        id="not-accepted-without-estimator-name",
    ),
    pytest.param(
        "fixed:\n  random_state: 0\nsearched:\n  max_depth: {type: int, low: 2, high: 8}\n",
        {"reserved_params": {"random_state": "the sweep seeds every estimator itself"}},
        "fixed.random_state: must not be in a search space (the sweep seeds every estimator "
        "itself)",
        id="reserved-param",
    ),
]


@pytest.mark.parametrize(("text", "kwargs", "expected"), ERROR_CASES)
def test_invalid_search_space_raises_exact_message(
    tmp_path: Path, text: str, kwargs: dict[str, Any], expected: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(SweepError) as excinfo:
        load_search_space(path, family="demo", **kwargs)
    assert str(excinfo.value) == f"{path}: {expected}"


def test_missing_file_outside_project_is_named_as_given(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SweepError) as excinfo:
        load_search_space(path, family="nope")
    assert str(excinfo.value) == f"{path}: search space file for family 'nope' not found"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(SweepError) as excinfo:
        load_search_space(tmp_path, family="demo")
    assert str(excinfo.value) == f"{tmp_path}: search space path for family 'demo' is not a file"


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"searched:\n  caf\xe9: {type: int, low: 1, high: 2}\n")
    with pytest.raises(SweepError) as excinfo:
        load_search_space(path, family="demo")
    assert str(excinfo.value).startswith(f"{path}: cannot read the search space file (")


@pytest.mark.parametrize(
    "given",
    [
        pytest.param(PROJECT_ROOT / "search_spaces" / "nope.yaml", id="absolute"),
        pytest.param(PROJECT_ROOT / "search_spaces" / ".." / "search_spaces" / "nope.yaml",
                     id="with-dotdot"),
    ],
)
def test_paths_under_the_project_root_are_shown_relative(given: Path) -> None:
    with pytest.raises(SweepError) as excinfo:
        load_search_space(given, family="nope")
    assert str(excinfo.value) == (
        "search_spaces/nope.yaml: search space file for family 'nope' not found"
    )


def test_relative_path_from_the_project_root_is_shown_relative(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(PROJECT_ROOT)
    with pytest.raises(SweepError) as excinfo:
        load_search_space("search_spaces/random_forest.yaml", family="random_forest",
                          accepted_params=(), estimator_name="Nothing")
    assert str(excinfo.value) == (
        "search_spaces/random_forest.yaml: fixed.criterion: not a parameter of Nothing "
        "(see its get_params())"
    )


REAL_SPACES = sorted((PROJECT_ROOT / "search_spaces").glob("*.yaml"))


def test_the_five_real_search_spaces_exist() -> None:
    assert [path.stem for path in REAL_SPACES] == [
        "elastic_net",
        "extra_trees",
        "hist_gradient_boosting",
        "random_forest",
        "xgboost",
    ]


@pytest.mark.parametrize("path", REAL_SPACES, ids=[path.stem for path in REAL_SPACES])
def test_real_search_spaces_load(path: Path) -> None:
    space = load_search_space(path, family=path.stem)
    assert space.searched
    # Every real space starts with a comment header saying what it is for.
    assert path.read_text(encoding="utf-8").startswith("# ")
    params = space.suggest(optuna.create_study().ask())
    assert set(params) == set(space.fixed) | set(space.searched)
