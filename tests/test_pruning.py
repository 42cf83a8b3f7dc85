"""Fold-wise pruning (:mod:`sweeper.pruning`): which running trials stop, after how many folds.

The best trial below scored 100 on each of five folds; a running trial is stopped by the margin
rule when its folds so far sum to more than the margin above the best's on the same folds, and
otherwise only by Wilcoxon's test (after 3 folds at the earliest).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from objectives import FAMILIES
from sweeper.config import PRUNING
from sweeper.data import load_dataset, split_dataset
from sweeper.objective import FamilyObjective
from sweeper.pruning import FoldPruner
from sweeper.runner import library_defaults
from sweeper.study import MARGINS, WILCOXON_P_THRESHOLD, make_pruner

BEST_FOLDS = [100.0, 100.0, 100.0, 100.0, 100.0]


def _study(best_folds: list[float] | None, direction: str = "minimize") -> optuna.Study:
    study = optuna.create_study(direction=direction)
    if best_folds is not None:
        study.add_trial(create_trial(
            value=sum(best_folds) / len(best_folds),
            intermediate_values=dict(enumerate(best_folds)),
            params={"x": 0.0}, distributions={"x": FloatDistribution(0.0, 1.0)},
        ))
    return study


def _running(folds: list[float]) -> optuna.trial.FrozenTrial:
    return create_trial(state=TrialState.RUNNING, intermediate_values=dict(enumerate(folds)))


def _pruner() -> FoldPruner:
    return FoldPruner(margins={1: 0.03, 2: 0.02}, p_threshold=0.15, n_startup_steps=3)


@pytest.mark.parametrize(
    ("folds", "pruned"),
    [
        ([103.5], True),           # 3.5 % worse after one fold: over the 3 % margin
        ([102.9], False),          # within it
        ([97.0], False),           # better
        ([103.0, 100.0], False),   # 1.5 % worse in sum after two folds: within the 2 % margin
        ([104.0, 101.0], True),    # 2.5 % worse
        ([90.0, 115.0], True),     # a good first fold does not hide a bad second
        ([150.0, 100.0, 100.0], False),  # no margin after 3 folds, and Wilcoxon sees one loss
        ([101.0, 101.0, 101.0], True),   # Wilcoxon: worse on all 3 folds, p = 1/8 < 0.15
        ([101.0, 99.0, 101.0, 99.0], False),
    ],
    ids=lambda v: str(v),
)
def test_margin_on_the_first_folds_then_wilcoxon(folds: list[float], pruned: bool) -> None:
    study = _study(BEST_FOLDS)
    assert _pruner().prune(study, _running(folds)) is pruned


@pytest.mark.parametrize(
    ("best_folds", "folds"),
    [
        (None, [1.0e9]),                 # no complete trial yet: nothing to compare with
        ([0.0, 0.0, 0.0, 0.0, 0.0], [5.0]),  # a perfect best: no fraction of it to speak of
        (BEST_FOLDS, [math.inf]),        # a non-finite fold score
        (BEST_FOLDS, [-150.0]),          # not a positive score (an RMSE cannot be)
    ],
    ids=["no-best", "zero-best", "inf", "negative"],
)
@pytest.mark.filterwarnings("ignore:The intermediate values of the current trial:UserWarning")
def test_nothing_to_compare_with_prunes_nothing(
    best_folds: list[float] | None, folds: list[float]
) -> None:
    assert _pruner().prune(_study(best_folds), _running(folds)) is False


def test_a_maximized_score_is_worse_when_lower() -> None:
    study = _study([0.80] * 5, direction="maximize")
    assert _pruner().prune(study, _running([0.77])) is True    # 0.80 / 0.77: 3.9 % short
    assert _pruner().prune(study, _running([0.78])) is False   # 2.6 % short
    assert _pruner().prune(study, _running([0.90])) is False


@pytest.mark.parametrize(
    ("margins", "message"),
    [
        ({0: 0.03}, "FoldPruner: margins keys (folds scored) must be ints >= 1, but got 0"),
        ({True: 0.03}, "FoldPruner: margins keys (folds scored) must be ints >= 1, but got True"),
        ({1.0: 0.03}, "FoldPruner: margins keys (folds scored) must be ints >= 1, but got 1.0"),
        ({1: 0.0}, "FoldPruner: margins values (fractions of the best trial's score) must be "
                   "finite numbers > 0, but got 0.0 for 1 folds"),
        ({2: -0.01}, "FoldPruner: margins values (fractions of the best trial's score) must be "
                     "finite numbers > 0, but got -0.01 for 2 folds"),
        ({1: math.nan}, "FoldPruner: margins values (fractions of the best trial's score) must "
                        "be finite numbers > 0, but got nan for 1 folds"),
        ({1: "0.03"}, "FoldPruner: margins values (fractions of the best trial's score) must "
                      "be finite numbers > 0, but got '0.03' for 1 folds"),
    ],
    ids=["zero-folds", "bool-folds", "float-folds", "zero", "negative", "nan", "string"],
)
def test_bad_margins_are_refused(margins: dict[Any, Any], message: str) -> None:
    with pytest.raises(ValueError) as error:
        FoldPruner(margins=margins, p_threshold=0.15, n_startup_steps=3)
    assert str(error.value) == message


@pytest.mark.parametrize("pruning", PRUNING)
def test_every_pruning_value_makes_its_pruner(pruning: str) -> None:
    pruner = make_pruner(pruning)
    if pruning == "margin":
        assert isinstance(pruner, FoldPruner) and pruner.margins == MARGINS
    elif pruning == "wilcoxon":
        assert isinstance(pruner, optuna.pruners.WilcoxonPruner)
        assert pruner._p_threshold == WILCOXON_P_THRESHOLD
    else:
        assert pruning == "none" and isinstance(pruner, optuna.pruners.NopPruner)


def test_make_pruner_refuses_an_unknown_value() -> None:
    with pytest.raises(ValueError) as error:
        make_pruner("median")
    assert str(error.value) == "pruning: must be one of margin, wilcoxon, none, but got 'median'"


@pytest.mark.parametrize("family", list(FAMILIES), ids=list(FAMILIES))
def test_a_hopeless_trial_of_each_family_stops_after_one_fold(
    family: str, insurance_csv: Path
) -> None:
    """On real folds: the library defaults first, then a configuration far worse than them,
    whose first fold is over the margin."""
    dataset = load_dataset(str(insurance_csv), "charges")
    split = split_dataset(dataset, test_size=0.2, seed=42, cv_folds=5)
    objective = FamilyObjective(FAMILIES[family], split, numeric=dataset.numeric_columns,
                                categorical=dataset.categorical_columns, seed=42)
    study = optuna.create_study(pruner=make_pruner("margin"))
    study.enqueue_trial(library_defaults(FAMILIES[family]))
    study.enqueue_trial(HOPELESS[family])
    study.optimize(objective, n_trials=2)
    first, second = study.trials
    assert first.state == TrialState.COMPLETE
    assert second.state == TrialState.PRUNED
    assert len(second.intermediate_values) == 1


def test_every_family_has_a_hopeless_configuration() -> None:
    assert set(HOPELESS) == set(FAMILIES)


#: A configuration per family far worse than its defaults on insurance (underfit: tiny models,
#: heavy regularization).
HOPELESS: dict[str, dict[str, Any]] = {
    "elastic_net": {"alpha": 10.0, "l1_ratio": 0.0},
    "random_forest": {"n_estimators": 50, "max_depth": 3, "min_samples_split": 20,
                      "min_samples_leaf": 20, "max_features": 0.3, "max_samples": 0.5},
    "extra_trees": {"n_estimators": 50, "max_depth": 3, "min_samples_split": 20,
                    "min_samples_leaf": 20, "max_features": 0.3},
    "hist_gradient_boosting": {"learning_rate": 0.01, "max_iter": 50, "max_leaf_nodes": 4,
                               "min_samples_leaf": 100, "l2_regularization": 10.0,
                               "max_features": 0.5},
    "xgboost": {"n_estimators": 50, "learning_rate": 0.01, "max_depth": 2,
                "min_child_weight": 20.0, "subsample": 0.5, "colsample_bytree": 0.5,
                "reg_alpha": 10.0, "reg_lambda": 10.0},
}
