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
from sklearn.base import RegressorMixin
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

if TYPE_CHECKING:
    from objectives import Family
    from sweeper.data import Split

#: ``user_attrs`` keys written by :class:`FamilyObjective`.
ATTR_MAE = "mae"
ATTR_R2 = "r2"
ATTR_RMSE_STD = "rmse_std"
ATTR_FOLD_RMSE = "fold_rmse"
ATTR_ERROR = "error"
#: The full configuration of a trial (fixed and searched), as the estimator received it.
ATTR_CONFIG = "config"


@dataclasses.dataclass(frozen=True)
class CVScores:
    """Cross-validated scores of one configuration: means over the folds, and the fold RMSEs."""

    rmse: float
    mae: float
    r2: float
    rmse_std: float
    fold_rmse: tuple[float, ...]


def regression_scores(y_true: Any, y_pred: Any) -> tuple[float, float, float]:
    """``(rmse, mae, r2)`` of predictions; the one place these metrics are defined."""
    rmse = math.sqrt(mean_squared_error(y_true, y_pred))
    return rmse, float(mean_absolute_error(y_true, y_pred)), float(r2_score(y_true, y_pred))


def cross_validate(
    make_model: Callable[[], RegressorMixin],
    X: pd.DataFrame,
    y: pd.Series,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    on_fold: Callable[[int, float], None] | None = None,
) -> CVScores:
    """Fit a fresh model on each fold's train part and score it on the fold's valid part.

    ``on_fold(fold_index, fold_rmse)`` is called after each fold; it may raise (e.g.
    :class:`optuna.TrialPruned`) to stop early.
    """
    rmses: list[float] = []
    maes: list[float] = []
    r2s: list[float] = []
    for index, (train_idx, valid_idx) in enumerate(folds):
        model = make_model()
        model.fit(X.iloc[train_idx], y.iloc[train_idx])
        prediction = model.predict(X.iloc[valid_idx])
        if not np.all(np.isfinite(prediction)):
            raise ValueError(f"the model predicted non-finite values on fold {index}")
        rmse, mae, r2 = regression_scores(y.iloc[valid_idx], prediction)
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

    def build(self, params: dict[str, Any]) -> RegressorMixin:
        """An unfitted pipeline of this family for a full configuration."""
        return self._family.build_pipeline(
            params, numeric=self._numeric, categorical=self._categorical, random_state=self._seed
        )

    def __call__(self, trial: optuna.Trial) -> float:
        fold_rmse: list[float] = []

        def report(index: int, rmse: float) -> None:
            # Each fold is one step: the pruner (Wilcoxon) pairs this trial's fold RMSEs with
            # the best trial's on the same folds and stops a trial that is reliably worse.
            fold_rmse.append(rmse)
            trial.report(rmse, step=index)
            if trial.should_prune():
                trial.set_user_attr(ATTR_FOLD_RMSE, list(fold_rmse))
                raise optuna.TrialPruned(f"pruned after {len(fold_rmse)} folds")

        try:
            config = self._space.suggest(trial)
            trial.set_user_attr(ATTR_CONFIG, _jsonable(config))
            scores = cross_validate(
                lambda: self.build(config),
                self._split.X_train,
                self._split.y_train,
                self._split.folds,
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


def config_of(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The full configuration (fixed and searched) a finished trial was scored with."""
    return dict(trial.user_attrs.get(ATTR_CONFIG, trial.params))


def _jsonable(config: dict[str, Any]) -> dict[str, Any]:
    """Optuna stores user attrs as JSON: turn numpy scalars into Python ones."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in config.items()}
