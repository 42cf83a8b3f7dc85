"""The trial objective: suggest a configuration, cross-validate it, return the mean RMSE.

No MLflow here. The objective leaves what it measured on the trial (``user_attrs``) and the
tracking layer turns finished trials into MLflow runs, so that logging never decides what a
trial scores and can happen off the trial's critical path.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import pandas as pd
from sklearn.base import RegressorMixin, TransformerMixin

# The user_attrs keys this objective writes (defined apart, see sweeper.trial_attrs).
from sweeper.trial_attrs import (
    ATTR_CONFIG,
    ATTR_ERROR,
    ATTR_FOLD_RMSE,
    ATTR_MAE,
    ATTR_R2,
    ATTR_RMSE_STD,
)

if TYPE_CHECKING:
    from objectives import Family
    from sweeper.data import Split


@dataclasses.dataclass(frozen=True)
class CVScores:
    """Cross-validated scores of one configuration: means over the folds, and the fold RMSEs."""

    rmse: float
    mae: float
    r2: float
    rmse_std: float
    fold_rmse: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class PreparedFold:
    """One CV fold with its preprocessing fitted on the fold's train part and applied to both
    parts: what a ``preprocess -> model`` pipeline would hand its model step."""

    X_train: Any
    y_train: pd.Series
    X_valid: Any
    y_valid: np.ndarray


def regression_scores(y_true: Any, y_pred: Any) -> tuple[float, float, float]:
    """``(rmse, mae, r2)`` of predictions; the one place these metrics are defined.

    The same arithmetic as scikit-learn's ``mean_squared_error``, ``mean_absolute_error`` and
    ``r2_score`` (the same values, pinned by a test) without their input checks, which
    cost more than the metrics themselves on a CV fold (three calls per fold, every trial).
    As there, R² is 1.0 for a perfect fit of a constant target and 0.0 for any other fit of
    one.

    Raises:
        ValueError: The inputs are not two 1-D arrays of the same length, at least one long.
    """
    true = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(y_pred, dtype=np.float64)
    if true.ndim != 1 or true.shape != pred.shape or true.size == 0:
        raise ValueError(
            "regression_scores needs y_true and y_pred as 1-D arrays of the same, non-zero "
            f"length, but got shapes {true.shape} and {pred.shape}"
        )
    squared = (true - pred) ** 2
    residual = float(squared.sum())
    total = float(((true - true.mean()) ** 2).sum())
    if total != 0.0:
        r2 = 1.0 - residual / total
    else:
        r2 = 1.0 if residual == 0.0 else 0.0
    return math.sqrt(float(squared.mean())), float(np.abs(pred - true).mean()), r2


def prepare_folds(
    make_preprocessor: Callable[[], TransformerMixin],
    X: pd.DataFrame,
    y: pd.Series,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[PreparedFold, ...]:
    """Fit a fresh preprocessor on each fold's train part and transform both parts, once.

    A family's preprocessing has no searched parameters, so every trial would fit exactly the
    same preprocessor on exactly the same rows: doing it once per fold instead of once per fold
    and trial gives the same model inputs (and so the same scores, pinned by a test) and saves
    a sixth of a trial's time on the insurance data.
    """
    prepared = []
    for train_idx, valid_idx in folds:
        preprocessor = make_preprocessor()
        X_train = preprocessor.fit_transform(X.iloc[train_idx], y.iloc[train_idx])
        prepared.append(
            PreparedFold(
                X_train=X_train,
                y_train=y.iloc[train_idx],
                X_valid=preprocessor.transform(X.iloc[valid_idx]),
                y_valid=y.iloc[valid_idx].to_numpy(dtype=np.float64),
            )
        )
    return tuple(prepared)


def cross_validate(
    make_model: Callable[[], RegressorMixin],
    X: pd.DataFrame,
    y: pd.Series,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    on_fold: Callable[[int, float], None] | None = None,
) -> CVScores:
    """Fit a fresh model (a whole pipeline) on each fold's train part and score it on the
    fold's valid part.

    ``on_fold(fold_index, fold_rmse)`` is called after each fold; it may raise (e.g.
    :class:`optuna.TrialPruned`) to stop early.
    """
    return cross_validate_prepared(
        make_model,
        [PreparedFold(X.iloc[t], y.iloc[t], X.iloc[v], y.iloc[v].to_numpy()) for t, v in folds],
        on_fold=on_fold,
    )


def cross_validate_prepared(
    make_model: Callable[[], RegressorMixin],
    folds: Sequence[PreparedFold],
    *,
    on_fold: Callable[[int, float], None] | None = None,
) -> CVScores:
    """:func:`cross_validate` on folds whose preprocessing is already applied
    (:func:`prepare_folds`): ``make_model`` returns the model step alone."""
    rmses: list[float] = []
    maes: list[float] = []
    r2s: list[float] = []
    for index, fold in enumerate(folds):
        model = make_model()
        model.fit(fold.X_train, fold.y_train)
        prediction = model.predict(fold.X_valid)
        if not np.all(np.isfinite(prediction)):
            raise ValueError(f"the model predicted non-finite values on fold {index}")
        rmse, mae, r2 = regression_scores(fold.y_valid, prediction)
        rmses.append(rmse)
        maes.append(mae)
        r2s.append(r2)
        if on_fold is not None:
            on_fold(index, rmse)
    return CVScores(
        rmse=float(np.mean(rmses)),
        mae=float(np.mean(maes)),
        r2=float(np.mean(r2s)),
        rmse_std=float(np.std(rmses)),
        fold_rmse=tuple(rmses),
    )


class FamilyObjective:
    """Optuna objective for one model family on a fixed split and fixed folds.

    Every trial of every family is scored on ``split.folds``, so their RMSEs are comparable.
    """

    def __init__(
        self,
        family: Family,
        split: Split,
        *,
        numeric: Sequence[str],
        categorical: Sequence[str],
        seed: int,
    ) -> None:
        self._family = family
        self._space = family.search_space()
        self._split = split
        self._numeric = list(numeric)
        self._categorical = list(categorical)
        self._seed = seed
        self._folds: tuple[PreparedFold, ...] | None = None

    def build(self, params: dict[str, Any]) -> RegressorMixin:
        """An unfitted pipeline of this family for a full configuration."""
        return self._family.build_pipeline(
            params, numeric=self._numeric, categorical=self._categorical, random_state=self._seed
        )

    @property
    def folds(self) -> tuple[PreparedFold, ...]:
        """The split's folds with this family's preprocessing applied (prepared on first use,
        by the first trial, so that building an objective stays cheap)."""
        if self._folds is None:
            self._folds = prepare_folds(
                lambda: self._family.build_preprocessor(
                    numeric=self._numeric, categorical=self._categorical
                ),
                self._split.X_train,
                self._split.y_train,
                self._split.folds,
            )
        return self._folds

    def __call__(self, trial: optuna.Trial) -> float:
        fold_rmse: list[float] = []

        def report(index: int, rmse: float) -> None:
            # Each fold is one step: the pruner (sweeper.pruning) pairs this trial's fold RMSEs
            # with the best trial's on the same folds and stops a trial that is clearly worse.
            fold_rmse.append(rmse)
            trial.report(rmse, step=index)
            if trial.should_prune():
                trial.set_user_attr(ATTR_FOLD_RMSE, list(fold_rmse))
                raise optuna.TrialPruned(f"pruned after {len(fold_rmse)} folds")

        try:
            config = self._space.suggest(trial)
            trial.set_user_attr(ATTR_CONFIG, _jsonable(config))
            # Each fold fits the model step alone on the fold's prepared inputs: the same
            # scores as fitting build(config), the whole pipeline (pinned by a test).
            scores = cross_validate_prepared(
                lambda: self._family.build_estimator(config, random_state=self._seed),
                self.folds,
                on_fold=report,
            )
        except optuna.TrialPruned:
            raise
        except Exception as error:
            # Optuna records only the state of a failed trial; keep the reason for the run.
            trial.set_user_attr(ATTR_ERROR, f"{type(error).__name__}: {error}")
            raise
        trial.set_user_attr(ATTR_MAE, scores.mae)
        trial.set_user_attr(ATTR_R2, scores.r2)
        trial.set_user_attr(ATTR_RMSE_STD, scores.rmse_std)
        trial.set_user_attr(ATTR_FOLD_RMSE, list(scores.fold_rmse))
        return scores.rmse


def _jsonable(config: dict[str, Any]) -> dict[str, Any]:
    """Optuna stores user attrs as JSON: turn numpy scalars into Python ones."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in config.items()}
