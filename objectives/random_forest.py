"""Random forest regression (scikit-learn)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sklearn.ensemble import RandomForestRegressor

ESTIMATOR = RandomForestRegressor
SCALE_NUMERIC = False
#: ``max_samples=None`` draws as many rows as the data has for each tree: a fraction of 1.0.
#: (``max_depth=None``, unlimited, has no number: a first trial samples it.)
UNSET_DEFAULTS = {"max_samples": 1.0}


def make_estimator(params: Mapping[str, Any], *, random_state: int) -> RandomForestRegressor:
    """Return an unfitted, seeded forest; one thread unless ``params`` set ``n_jobs``."""
    # Trials run in parallel processes, so one thread each avoids oversubscribing the cores.
    return RandomForestRegressor(random_state=random_state, **{"n_jobs": 1, **params})
