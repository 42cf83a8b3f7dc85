"""Command-line parameters: defaults, types, and every validation message."""

from __future__ import annotations

import re

import pytest

from sweeper.config import SweepConfig, derive_model_name, new_sweep_name, parse_config
from sweeper.errors import SweepError


def test_defaults_match_the_mlproject_contract() -> None:
    config = parse_config([])
    assert config == SweepConfig(
        n_trials=50, families="all", data="insurance", target="charges", seed=42, cv_folds=5,
        test_size=0.2, timeout=0.0, sweep_name="", storage="", model_name="", n_workers=0,
        time_budget=0.0, pruning="margin", verbose=1,
    )


def test_values_are_parsed_with_their_types() -> None:
    config = parse_config(["--n_trials", "3", "--test_size", "0.25", "--timeout", "1.5",
                           "--families", "xgboost,elastic_net", "--sweep_name", "my.sweep-1"])
    assert (config.n_trials, config.test_size, config.timeout) == (3, 0.25, 1.5)
    assert config.families == "xgboost,elastic_net"
    assert config.sweep_name == "my.sweep-1"


def test_empty_strings_from_mlproject_mean_defaults() -> None:
    # `mlflow run` passes empty params as ''.
    config = parse_config(["--sweep_name", "", "--storage", "", "--model_name", ""])
    assert (config.sweep_name, config.storage, config.model_name) == ("", "", "")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--n_trials", "0"], "n_trials: must be >= 1, but got 0"),
        (["--n_trials", "-3"], "n_trials: must be >= 1, but got -3"),
        (["--cv_folds", "1"], "cv_folds: must be >= 2, but got 1"),
        (["--n_workers", "-1"], "n_workers: must be >= 0 (0 means one per CPU core), but got -1"),
        (["--time_budget", "-5"], "time_budget: must be >= 0 (0 means no budget), but got -5.0"),
        (["--verbose", "3"], "verbose: must be 0 (quiet), 1 or 2, but got 3"),
        (["--pruning", "median"], "pruning: must be one of margin, wilcoxon, none, but got 'median'"),
        (["--test_size", "2"], "test_size: must be in the open interval (0, 1), but got 2.0"),
        (["--test_size", "0"], "test_size: must be in the open interval (0, 1), but got 0.0"),
        (["--test_size", "nan"], "test_size: must be in the open interval (0, 1), but got nan"),
        (["--timeout", "-1"], "timeout: must be >= 0 (0 means no timeout), but got -1.0"),
        (["--data", " "], "data: must not be empty, but got ' '"),
        (["--target", ""], "target: must not be empty, but got ''"),
        (
            ["--sweep_name", "a b"],
            "sweep_name: must be letters, digits, '.', '_' or '-' (at most 100), but got 'a b'",
        ),
        (
            ["--n_trials", "ten"],
            "argument --n_trials: n_trials: expected int, but got 'ten' "
            "(see `python sweep.py --help`)",
        ),
        (
            ["--test_size", "big"],
            "argument --test_size: test_size: expected float, but got 'big' "
            "(see `python sweep.py --help`)",
        ),
        (
            ["--bogus", "1"],
            "unrecognized arguments: --bogus 1 (see `python sweep.py --help`)",
        ),
    ],
)
def test_invalid_values_are_one_line_errors(argv: list[str], message: str) -> None:
    with pytest.raises(SweepError) as excinfo:
        parse_config(argv)
    assert str(excinfo.value) == message


@pytest.mark.parametrize(
    ("dataset", "target", "expected"),
    [
        ("insurance", "charges", "insurance-charges"),
        ("house prices", "SalePrice", "house-prices-SalePrice"),
        ("x", "y/z", "x-y-z"),
    ],
)
def test_model_name_is_derived_from_data_and_target(dataset: str, target: str, expected: str) -> None:
    assert derive_model_name(dataset, target) == expected


def test_new_sweep_names_are_unique_and_valid() -> None:
    names = {new_sweep_name() for _ in range(20)}
    assert len(names) == 20
    for name in names:
        assert re.fullmatch(r"sweep-\d{8}-\d{6}-[0-9a-f]{4}", name)
        SweepConfig(sweep_name=name)
