"""What a trial keeps of its own scoring: the ``user_attrs`` keys the objective writes and the
tracking layer, the report and the champion read.

Apart from :mod:`sweeper.objective` so that reading a finished trial imports nothing of the
estimators: the trial logger is a helper process whose imports run beside the first trials,
and scikit-learn (SciPy with it) was 1.5 s of CPU of them (measured with ``-X importtime``),
for six names and one function.
"""

from __future__ import annotations

from typing import Any

import optuna

__all__ = [
    "ATTR_CONFIG", "ATTR_ERROR", "ATTR_FOLD_RMSE", "ATTR_MAE", "ATTR_R2", "ATTR_RMSE_STD",
    "config_of",
]

#: ``user_attrs`` keys written by :class:`sweeper.objective.FamilyObjective`.
ATTR_MAE = "mae"
ATTR_R2 = "r2"
ATTR_RMSE_STD = "rmse_std"
ATTR_FOLD_RMSE = "fold_rmse"
ATTR_ERROR = "error"
#: The full configuration of a trial (fixed and searched), as the estimator received it.
ATTR_CONFIG = "config"


def config_of(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The full configuration (fixed and searched) a finished trial was scored with."""
    return dict(trial.user_attrs.get(ATTR_CONFIG, trial.params))
