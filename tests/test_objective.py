"""The trial objective (:mod:`sweeper.objective`): what a trial scores, fold by fold.

The objective fits each family's preprocessing once per fold and then only the model step per
trial; these tests pin that this scores every family exactly as cross-validating the whole
pipeline would, and that the metrics are scikit-learn's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import FixedTrial
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from objectives import FAMILIES, Family
from sweeper.data import Split, load_dataset, split_dataset
from sweeper.objective import FamilyObjective, cross_validate, prepare_folds, regression_scores
from sweeper.trial_attrs import ATTR_CONFIG, ATTR_ERROR, ATTR_FOLD_RMSE, ATTR_MAE, ATTR_R2

families = pytest.mark.parametrize("family", list(FAMILIES.values()), ids=list(FAMILIES))


@pytest.fixture(scope="module")
def data(insurance_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Split]:
    """300 insurance rows with missing values in every column but the target (imputed by the
    preprocessing, so it has something to fit)."""
    frame = pd.read_csv(insurance_csv).head(300)
    rng = np.random.default_rng(0)
    for column in ("age", "sex", "bmi", "children", "smoker", "region"):
        frame.loc[rng.choice(len(frame), 12, replace=False), column] = np.nan
    path = tmp_path_factory.mktemp("objective") / "insurance-with-missing.csv"
    frame.to_csv(path, index=False)
    dataset = load_dataset(str(path), "charges")
    return dataset, split_dataset(dataset, test_size=0.2, seed=7, cv_folds=4)


def _objective(family: Family, data: tuple[Any, Split]) -> FamilyObjective:
    dataset, split = data
    return FamilyObjective(family, split, numeric=dataset.numeric_columns,
                           categorical=dataset.categorical_columns, seed=3)


def _lows(family: Family) -> dict[str, Any]:
    space = family.search_space()
    return {
        name: dist.choices[0] if isinstance(dist, optuna.distributions.CategoricalDistribution)
        else dist.low
        for name, dist in space.searched.items()
    }


@families
def test_prepared_folds_score_exactly_like_the_whole_pipeline(
    family: Family, data: tuple[Any, Split]
) -> None:
    dataset, split = data
    objective = _objective(family, data)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1),
                                pruner=optuna.pruners.NopPruner())
    study.enqueue_trial(_lows(family))
    study.optimize(objective, n_trials=2)
    for trial in study.trials:
        config = trial.user_attrs[ATTR_CONFIG]
        reference = cross_validate(lambda config=config: objective.build(config),
                                   split.X_train, split.y_train, split.folds)
        # Exactly, not approximately: the model step sees the same inputs either way.
        assert trial.user_attrs[ATTR_FOLD_RMSE] == list(reference.fold_rmse)
        assert trial.value == reference.rmse
        assert (trial.user_attrs[ATTR_MAE], trial.user_attrs[ATTR_R2]) == (reference.mae,
                                                                            reference.r2)


def test_folds_are_prepared_once_on_the_first_trial(data: tuple[Any, Split]) -> None:
    objective = _objective(FAMILIES["elastic_net"], data)
    assert objective._folds is None  # building an objective fits nothing
    objective(FixedTrial(_lows(FAMILIES["elastic_net"])))
    prepared = objective._folds
    assert prepared is not None and len(prepared) == len(data[1].folds)
    objective(FixedTrial(_lows(FAMILIES["elastic_net"])))
    assert objective._folds is prepared


def test_prepare_folds_fits_each_fold_on_its_own_train_rows() -> None:
    X = pd.DataFrame({"x": [1.0, 2.0, 3.0, 100.0]})
    y = pd.Series([1.0, 2.0, 3.0, 4.0])
    folds = [(np.array([0, 1]), np.array([2, 3])), (np.array([2, 3]), np.array([0, 1]))]
    from sklearn.preprocessing import StandardScaler

    first, second = prepare_folds(StandardScaler, X, y, folds)
    np.testing.assert_allclose(first.X_train.ravel(), [-1.0, 1.0])
    np.testing.assert_allclose(first.X_valid.ravel(), [3.0, 197.0])  # scaled by rows 0-1 only
    np.testing.assert_allclose(second.X_train.ravel(), [-1.0, 1.0])
    assert list(first.y_train) == [1.0, 2.0] and list(first.y_valid) == [3.0, 4.0]


def test_each_fold_is_reported_and_a_pruned_trial_keeps_its_fold_scores(
    data: tuple[Any, Split]
) -> None:
    class PruneAtSecondFold(optuna.pruners.BasePruner):
        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            return trial.last_step == 1

    objective = _objective(FAMILIES["elastic_net"], data)
    study = optuna.create_study(pruner=PruneAtSecondFold())
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned, match=r"^pruned after 2 folds$"):
        objective(trial)
    folds = trial.user_attrs[ATTR_FOLD_RMSE]
    assert len(folds) == 2
    assert study.trials[0].intermediate_values == {0: folds[0], 1: folds[1]}


def test_a_failing_fit_keeps_its_reason_on_the_trial(
    data: tuple[Any, Split], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Family, params: Any, *, random_state: int) -> Any:
        raise ValueError("no fit today")

    monkeypatch.setattr(Family, "build_estimator", refuse)
    objective = _objective(FAMILIES["elastic_net"], data)
    study = optuna.create_study()
    with pytest.raises(ValueError, match="^no fit today$"):
        objective(study.ask())
    # Optuna keeps only a failed trial's state: the reason goes on the trial for its run.
    assert study.trials[0].user_attrs[ATTR_ERROR] == "ValueError: no fit today"


def test_non_finite_predictions_fail_the_fold(data: tuple[Any, Split]) -> None:
    _, split = data

    class Infinite:
        def fit(self, X: Any, y: Any) -> Infinite:
            return self

        def predict(self, X: Any) -> np.ndarray:
            return np.full(len(X), np.inf)

    with pytest.raises(ValueError, match=r"^the model predicted non-finite values on fold 0$"):
        cross_validate(Infinite, split.X_train, split.y_train, split.folds)


@pytest.mark.parametrize(
    ("y_true", "y_pred"),
    [
        (np.random.default_rng(0).normal(1.0e4, 5.0e3, 257),
         np.random.default_rng(1).normal(1.0e4, 5.0e3, 257)),
        (pd.Series([3, 1, 4, 1, 5]), [2.5, 1.0, 4.0, 2.0, 5.5]),  # integers, a Series
        ([1.0, 2.0], [1.0, 2.0]),  # a perfect fit
    ],
    ids=["random", "integers", "perfect"],
)
def test_regression_scores_are_scikit_learns(y_true: Any, y_pred: Any) -> None:
    expected = (math.sqrt(mean_squared_error(y_true, y_pred)),
                mean_absolute_error(y_true, y_pred), r2_score(y_true, y_pred))
    assert regression_scores(y_true, y_pred) == expected


@pytest.mark.parametrize(("y_pred", "r2"), [([5.0, 5.0, 5.0], 1.0), ([4.0, 5.0, 6.0], 0.0)])
def test_r2_of_a_constant_target_is_finite_as_in_scikit_learn(
    y_pred: list[float], r2: float
) -> None:
    assert regression_scores([5.0, 5.0, 5.0], y_pred)[2] == r2 == r2_score([5.0] * 3, y_pred)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "shapes"),
    [([1.0, 2.0], [1.0], "(2,) and (1,)"), ([[1.0], [2.0]], [[1.0], [2.0]], "(2, 1) and (2, 1)"),
     ([], [], "(0,) and (0,)")],
)
def test_regression_scores_need_two_1d_arrays_of_one_length(
    y_true: Any, y_pred: Any, shapes: str
) -> None:
    with pytest.raises(ValueError) as excinfo:
        regression_scores(y_true, y_pred)
    assert str(excinfo.value) == (
        "regression_scores needs y_true and y_pred as 1-D arrays of the same, non-zero length, "
        f"but got shapes {shapes}"
    )
