"""XGBoost gradient-boosted trees regression.

``from xgboost import ...`` below reaches the installed package, not this module: imports are
absolute, and this module is only ever imported as ``objectives.xgboost``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xgboost import XGBRegressor

ESTIMATOR = XGBRegressor
SCALE_NUMERIC = False
#: XGBRegressor leaves these unset (None) and XGBoost picks them when it fits: its documented
#: defaults (eta, max_depth, min_child_weight, subsample, colsample_bytree, alpha, lambda) and
#: the scikit-learn wrapper's 100 boosting rounds.
UNSET_DEFAULTS = {
    "n_estimators": 100,
    "learning_rate": 0.3,
    "max_depth": 6,
    "min_child_weight": 1.0,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "reg_alpha": 0.0,
    "reg_lambda": 1.0,
}


def make_estimator(params: Mapping[str, Any], *, random_state: int) -> XGBRegressor:
    """Return an unfitted, seeded model; one thread and ``tree_method="hist"`` by default."""
    # Trials run in parallel processes, so one thread each avoids oversubscribing the cores.
    return XGBRegressor(random_state=random_state, **{"n_jobs": 1, "tree_method": "hist", **params})
