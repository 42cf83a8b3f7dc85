"""Elastic net linear regression (scikit-learn), on standardized numeric features."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sklearn.linear_model import ElasticNet

ESTIMATOR = ElasticNet
# The penalty treats every coefficient alike, so features must share a scale.
SCALE_NUMERIC = True


def make_estimator(params: Mapping[str, Any], *, random_state: int) -> ElasticNet:
    """Return an unfitted, seeded model; ``max_iter`` is 20000 unless ``params`` set it.

    The default of 1000 coordinate-descent iterations stops short of convergence (with a
    ConvergenceWarning) for small ``alpha``: the one-hot columns of a feature sum to the
    intercept column, and such collinear directions converge slowly. Each fit stays cheap.
    """
    return ElasticNet(random_state=random_state, **{"max_iter": 20000, **params})
