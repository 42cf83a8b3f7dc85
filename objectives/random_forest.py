"""Random forest regression (scikit-learn)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sklearn.ensemble import RandomForestRegressor

ESTIMATOR = RandomForestRegressor
SCALE_NUMERIC = False


def make_estimator(params: Mapping[str, Any], *, random_state: int) -> RandomForestRegressor:
    """Return an unfitted, seeded forest; one thread unless ``params`` set ``n_jobs``."""
    # Trials run in parallel processes, so one thread each avoids oversubscribing the cores.
    return RandomForestRegressor(random_state=random_state, **{"n_jobs": 1, **params})
