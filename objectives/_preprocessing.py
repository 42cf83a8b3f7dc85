"""Feature preprocessing shared by every model family.

Only stock scikit-learn transformers are used, so a fitted pipeline unpickles (and an MLflow
model serves) without this project's code on the path.
"""

from __future__ import annotations

from collections.abc import Sequence

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

__all__ = ["make_preprocessor"]


def make_preprocessor(
    numeric: Sequence[str], categorical: Sequence[str], *, scale_numeric: bool
) -> ColumnTransformer:
    """Return an unfitted transformer for the given feature columns.

    Numeric columns are median-imputed (and standardized if ``scale_numeric``); categorical
    columns are imputed with their most frequent value and one-hot encoded, ignoring categories
    unseen at fit time (a CV fold or a request may carry one). Other columns are dropped.
    Either list may be empty, but not both.

    Raises:
        ValueError: Both ``numeric`` and ``categorical`` are empty.
    """
    if not numeric and not categorical:
        raise ValueError("make_preprocessor needs at least one numeric or categorical column")

    transformers: list[tuple[str, Pipeline, list[str]]] = []
    # A transformer is only added for a non-empty column list: any CSV's mix of columns works,
    # and the fitted pipeline has no empty, do-nothing steps.
    if numeric:
        numeric_steps: list[tuple[str, object]] = [("impute", SimpleImputer(strategy="median"))]
        if scale_numeric:
            numeric_steps.append(("scale", StandardScaler()))
        transformers.append(("numeric", Pipeline(numeric_steps), list(numeric)))
    if categorical:
        categorical_pipeline = Pipeline(
            [
                ("impute", SimpleImputer(strategy="most_frequent")),
                # A JSON null reaches a served model as None when its whole column is null and
                # as NaN otherwise: both must be imputed, or None would be one-hot encoded as
                # an unseen category. (NaN first: this one refuses NaN in its input.)
                ("impute_none", SimpleImputer(missing_values=None, strategy="most_frequent")),
                ("one_hot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )
        transformers.append(("categorical", categorical_pipeline, list(categorical)))
    return ColumnTransformer(transformers, remainder="drop")
