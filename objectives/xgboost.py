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


def make_estimator(params: Mapping[str, Any], *, random_state: int) -> XGBRegressor:
    """Return an unfitted, seeded model; one thread and ``tree_method="hist"`` by default."""
    # Trials run in parallel processes, so one thread each avoids oversubscribing the cores.
    return XGBRegressor(random_state=random_state, **{"n_jobs": 1, "tree_method": "hist", **params})
