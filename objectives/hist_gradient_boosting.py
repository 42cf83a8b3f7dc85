"""Histogram-based gradient boosting regression (scikit-learn)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sklearn.ensemble import HistGradientBoostingRegressor

ESTIMATOR = HistGradientBoostingRegressor
SCALE_NUMERIC = False


def make_estimator(
    params: Mapping[str, Any], *, random_state: int
) -> HistGradientBoostingRegressor:
    """Return an unfitted, seeded model.

    It has no ``n_jobs``: its OpenMP threads follow ``OMP_NUM_THREADS``, which the process
    running the trial is responsible for.
    """
    return HistGradientBoostingRegressor(random_state=random_state, **params)
