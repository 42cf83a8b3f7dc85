"""The champion as ``mlflow models serve`` runs it: the fitted pipeline plus a compiled fast path.

A fitted scikit-learn pipeline spends most of a single-row request on per-call overhead, not
on arithmetic: the ``ColumnTransformer`` validates and splits the frame, every imputer and the
encoder validate again, and a tree ensemble is called once per tree or boosting iteration. This
module compiles the fitted pipeline once, at load, into the same arithmetic on NumPy arrays (a
small request walks all of an ensemble's trees at once, see ``_Trees``), and checks at load that
the two agree on the rows saved with the model, all at once and one by one; on any
disagreement, and for any step it does not know, the served model predicts with the pipeline
itself.

This module is the served model's ``loader_module``: it is copied into the logged model and
must import nothing from this project, only what the model's requirements install. MLflow and
skops are imported where a model is saved or loaded, not with the module: the report's
drawing helpers compile the champion to compute its permutation importances, and importing
MLflow there cost the first report 1.5 s of CPU that the end of a sweep waited for.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import threadpoolctl
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesRegressor,
    HistGradientBoostingRegressor,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import ElasticNet, LinearRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

__all__ = ["NotCompilable", "ServedPipeline", "check_rows", "compile_pipeline", "load", "save"]

_logger = logging.getLogger(__name__)

#: Forests whose predict is the mean of their trees' predictions.
_FORESTS = (RandomForestRegressor, ExtraTreesRegressor)
#: Linear models whose predict is ``X @ coef_ + intercept_`` (Lasso is an ElasticNet).
_LINEAR = (ElasticNet, LinearRegression, Ridge)

PIPELINE_FILE = "pipeline.skops"
TRUSTED_FILE = "trusted_types.json"
CHECK_FILE = "check_rows.json"

#: Requests with fewer rows are predicted in one OpenMP thread (see ServedPipeline.predict).
ONE_THREAD_ROWS = 2_000
#: Requests with at most this many rows walk a tree ensemble's trees all at once (see _Trees);
#: larger ones go through the library's predict, one tree at a time. Where walking stops paying,
#: measured on this project's machine: about 30 rows for 300-500 trees 20-28 deep, over 250
#: rows for 100 trees 6 deep.
WALK_ROWS = 16

#: One compiled step: a 2-D array in, a 2-D array out.
_Step = Callable[[np.ndarray], np.ndarray]
#: A compiled pipeline: the raw frame in, 1-D float predictions out.
Predict = Callable[[pd.DataFrame], np.ndarray]


class NotCompilable(Exception):
    """A step this module has no compiled equivalent for; the pipeline itself is used."""


def compile_pipeline(pipeline: Pipeline) -> Predict:
    """Return a function computing ``pipeline.predict`` with NumPy operations only.

    ``pipeline`` must be a fitted ``Pipeline([(_, ColumnTransformer), (_, regressor)])`` as
    :func:`objectives.Family.build_pipeline` builds it.

    Raises:
        NotCompilable: A step, or a setting of a step, has no compiled equivalent here.
    """
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        raise NotCompilable(f"expected a 2-step Pipeline, got {type(pipeline).__name__}")
    preprocess, model = pipeline.steps[0][1], pipeline.steps[1][1]
    transform = _compile_column_transformer(preprocess)
    estimate = _compile_estimator(model)

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return estimate(transform(frame))

    return predict


def _compile_column_transformer(ct: Any) -> Callable[[pd.DataFrame], np.ndarray]:
    if not isinstance(ct, ColumnTransformer):
        raise NotCompilable(f"expected a ColumnTransformer, got {type(ct).__name__}")
    if ct.sparse_output_:
        raise NotCompilable("sparse ColumnTransformer output")
    branches: list[tuple[list[str], bool, list[_Step]]] = []
    for name, transformer, columns in ct.transformers_:
        if transformer == "drop":
            continue
        if transformer == "passthrough" or not isinstance(transformer, Pipeline):
            kind = transformer if isinstance(transformer, str) else type(transformer).__name__
            raise NotCompilable(f"ColumnTransformer branch {name!r}: {kind}")
        if not (isinstance(columns, list) and all(isinstance(c, str) for c in columns)):
            raise NotCompilable(f"ColumnTransformer branch {name!r} selects {columns!r}")
        steps = [_compile_step(step) for _, step in transformer.steps]
        # A branch whose first step is numeric-only reads its columns as float64, as
        # SimpleImputer's own validation does; the categorical branch keeps objects.
        numeric = _is_numeric_branch(transformer)
        branches.append((list(columns), numeric, steps))
    if not branches:
        raise NotCompilable("ColumnTransformer without columns")

    def transform(frame: pd.DataFrame) -> np.ndarray:
        blocks = []
        for columns, numeric, steps in branches:
            # Column by column: selecting a sub-frame first costs ~10x more for one row.
            dtype = np.float64 if numeric else object
            values = np.stack([_column(frame, c, dtype) for c in columns], axis=1)
            for step in steps:
                values = step(values)
            blocks.append(values)
        return blocks[0] if len(blocks) == 1 else np.hstack(blocks)

    return transform


def _column(frame: pd.DataFrame, name: str, dtype: Any) -> np.ndarray:
    """``frame[name].to_numpy(dtype=dtype)``, without building the Series.

    Building a Series is most of the cost of reading a one-row frame's column (36 of 50 us
    with pandas 3, 0.2 ms of a six-column request); the column's array is what the Series
    would hold, and converting it is what ``Series.to_numpy`` does.
    """
    get_array = getattr(frame, "_get_column_array", None)  # pandas' own, not public
    position = frame.columns.get_loc(name)
    if get_array is None or not isinstance(position, int):  # another pandas; repeated names
        return frame[name].to_numpy(dtype=dtype)
    array = get_array(position)
    if isinstance(array, np.ndarray):
        return np.asarray(array, dtype=dtype)
    return array.to_numpy(dtype=dtype)


def _is_numeric_branch(branch: Pipeline) -> bool:
    return not any(isinstance(step, OneHotEncoder) for _, step in branch.steps)


def _compile_step(step: Any) -> _Step:
    if isinstance(step, SimpleImputer):
        return _compile_imputer(step)
    if isinstance(step, StandardScaler):
        return _compile_scaler(step)
    if isinstance(step, OneHotEncoder):
        return _compile_one_hot(step)
    raise NotCompilable(f"step {type(step).__name__}")


def _compile_imputer(imputer: SimpleImputer) -> _Step:
    if imputer.add_indicator or imputer.keep_empty_features:
        raise NotCompilable("SimpleImputer with add_indicator or keep_empty_features")
    statistics = np.asarray(imputer.statistics_)
    if pd.isna(statistics).any():
        # A column that was empty at fit time is dropped by the imputer.
        raise NotCompilable("SimpleImputer with an all-missing column")
    missing = imputer.missing_values

    if missing is None:

        def impute(values: np.ndarray) -> np.ndarray:
            mask = np.equal(values, None)
            return np.where(mask, statistics, values) if mask.any() else values

    elif isinstance(missing, float) and np.isnan(missing):

        def impute(values: np.ndarray) -> np.ndarray:
            # NaN is the only value unequal to itself: SimpleImputer's own test for objects.
            mask = values != values  # noqa: PLR0124
            return np.where(mask, statistics, values) if mask.any() else values

    else:
        raise NotCompilable(f"SimpleImputer(missing_values={missing!r})")
    return impute


def _compile_scaler(scaler: StandardScaler) -> _Step:
    mean = scaler.mean_ if scaler.with_mean else None
    scale = scaler.scale_ if scaler.with_std else None

    def scale_values(values: np.ndarray) -> np.ndarray:
        # The same two in-place operations as StandardScaler.transform, in the same order.
        values = np.array(values, dtype=np.float64)
        if mean is not None:
            values -= mean
        if scale is not None:
            values /= scale
        return values

    return scale_values


def _compile_one_hot(encoder: OneHotEncoder) -> _Step:
    if encoder.drop is not None or encoder.handle_unknown != "ignore":
        raise NotCompilable("OneHotEncoder with drop or handle_unknown other than 'ignore'")
    if encoder.max_categories is not None or encoder.min_frequency is not None:
        raise NotCompilable("OneHotEncoder with infrequent categories")
    if getattr(encoder, "sparse_output", False):
        raise NotCompilable("sparse OneHotEncoder")
    categories = [np.asarray(c, dtype=object) for c in encoder.categories_]
    if not all(isinstance(v, str) for c in categories for v in c):
        raise NotCompilable("OneHotEncoder with non-string categories")
    dtype = encoder.dtype

    def encode(values: np.ndarray) -> np.ndarray:
        # OneHotEncoder refuses a mix of strings and numbers; leave that to it (TypeError
        # makes the served model fall back to the pipeline).
        if not all(isinstance(value, str) for value in values.flat):
            raise TypeError("OneHotEncoder input that is not all strings")
        # An unseen category matches nothing: an all-zero block, as handle_unknown="ignore".
        return np.hstack(
            [values[:, [j]] == cats[np.newaxis, :] for j, cats in enumerate(categories)]
        ).astype(dtype)

    return encode


class _LibraryPredict(Exception):
    """Settings of an estimator its compiled form does not cover: its own predict is used."""


def _compile_estimator(model: Any) -> _Step:
    try:
        if isinstance(model, _FORESTS) and model.n_outputs_ == 1:
            return _compile_forest(model)
        if isinstance(model, HistGradientBoostingRegressor):
            return _compile_hist_gradient_boosting(model)
        if type(model).__name__ == "XGBRegressor" and type(model).__module__.startswith("xgboost"):
            return _compile_xgboost(model)
        if isinstance(model, _LINEAR) and np.ndim(model.coef_) == 1:
            return _compile_linear(model)
    except _LibraryPredict as reason:
        _logger.debug("%s: its own predict is served", reason)
    # Anything else: its own predict, which validates its input once per request.
    return model.predict


class _Trees:
    """The trees of an ensemble as one set of node arrays, walked for every tree and row at once.

    A library predicts a tree ensemble one tree at a time, with a call per tree (a forest) or per
    boosting iteration (HistGradientBoosting): for one row, that per-call overhead is nearly all
    the work (300 forest trees 20 deep: 4.8 ms; 500 boosting iterations: 9 ms, on 2 cores).
    Here all trees descend together, one level per step, with a few NumPy operations on arrays
    of (rows x trees) node indices: 0.6-0.7 ms for one row of either. The work grows with rows
    x trees x depth, so requests above :data:`WALK_ROWS` rows use the library's own predict.

    A leaf points to itself, so a row that reaches a leaf early stays there while deeper trees
    finish. A row goes left at a node when its value is NaN and the node sends missing values
    left, or when the comparison ``go_left(value, threshold)`` holds.
    """

    def __init__(
        self,
        trees: list[tuple[np.ndarray, ...]],
        *,
        go_left: Callable[[np.ndarray, np.ndarray], np.ndarray],
    ) -> None:
        # One tree: (feature, threshold, missing_go_left, left, right, value, is_leaf), its
        # own node numbering, children of leaves ignored.
        features, thresholds, missing_left, lefts, rights, values = [], [], [], [], [], []
        roots, offset = [], 0
        for feature, threshold, missing, left, right, value, is_leaf in trees:
            own = np.arange(len(feature), dtype=np.intp) + offset
            features.append(np.where(is_leaf, 0, feature).astype(np.intp))
            thresholds.append(threshold)
            missing_left.append(missing.astype(bool))
            lefts.append(np.where(is_leaf, own, np.asarray(left, dtype=np.intp) + offset))
            rights.append(np.where(is_leaf, own, np.asarray(right, dtype=np.intp) + offset))
            values.append(value)
            roots.append(offset)
            offset += len(feature)
        self.feature = np.concatenate(features)
        self.threshold = np.concatenate(thresholds)
        self.missing_left = np.concatenate(missing_left)
        self.left = np.concatenate(lefts)
        self.right = np.concatenate(rights)
        self.value = np.concatenate(values)
        self.roots = np.asarray(roots, dtype=np.intp)
        self.go_left = go_left
        self.depth = self._depth()

    def _depth(self) -> int:
        """The number of steps from the roots to the deepest leaf."""
        depth, frontier = 0, self.roots
        while True:
            inner = frontier[self.left[frontier] != frontier]
            if inner.size == 0:
                return depth
            frontier = np.concatenate([self.left[inner], self.right[inner]])
            depth += 1

    def __len__(self) -> int:
        return len(self.roots)

    def leaf_values(self, X: np.ndarray) -> np.ndarray:
        """The value of the leaf each row of ``X`` reaches in each tree: (rows, trees)."""
        n_rows, n_features = X.shape
        flat = np.ascontiguousarray(X).ravel()
        node = np.tile(self.roots, (n_rows, 1))
        row_start = (np.arange(n_rows, dtype=np.intp) * n_features)[:, np.newaxis]
        for _ in range(self.depth):
            x = flat[row_start + self.feature[node]]
            left = self.go_left(x, self.threshold[node]) | (np.isnan(x) & self.missing_left[node])
            node = np.where(left, self.left[node], self.right[node])
        return self.value[node]


def _compile_forest(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    trees = [estimator.tree_ for estimator in model.estimators_]
    # scikit-learn's trees: leaves have no children (-1); float32 features compared with
    # float64 thresholds, ``value <= threshold`` goes left.
    walk = _Trees(
        [
            (t.feature, t.threshold, t.missing_go_to_left, t.children_left, t.children_right,
             t.value[:, 0, 0].astype(np.float64), t.children_left == -1)
            for t in trees
        ],
        go_left=np.less_equal,
    )

    def forest(features: np.ndarray) -> np.ndarray:
        # What ForestRegressor.predict computes, without validating the row once per tree:
        # float32 features, tree outputs summed in order into float64, then averaged.
        X = np.ascontiguousarray(features, dtype=np.float32)
        if len(X) <= WALK_ROWS:
            total = _added_in_order(0.0, walk.leaf_values(X), np.float64)
        else:
            total = np.zeros(X.shape[0], dtype=np.float64)
            for tree in trees:
                total += tree.predict(X)[:, 0]
        total /= len(trees)
        return total

    return forest


def _compile_hist_gradient_boosting(model: HistGradientBoostingRegressor) -> _Step:
    try:
        predictors = model._predictors
        baseline = np.asarray(model._baseline_prediction, dtype=np.float64)
        inverse_link = model._loss.link.inverse
        categorical = model._preprocessor is not None
    except AttributeError as error:  # another scikit-learn's internals
        raise _LibraryPredict(f"HistGradientBoostingRegressor without {error.name!r}") from None
    if categorical or model.n_trees_per_iteration_ != 1 or baseline.size != 1:
        raise _LibraryPredict("HistGradientBoostingRegressor with categorical features")
    nodes = [predictor.nodes for (predictor,) in predictors]
    if not nodes or any(n["is_categorical"].any() for n in nodes):
        raise _LibraryPredict("HistGradientBoostingRegressor with categorical splits or no trees")
    # float64 features and thresholds; ``value <= threshold`` goes left.
    walk = _Trees(
        [
            (n["feature_idx"], n["num_threshold"], n["missing_go_to_left"], n["left"],
             n["right"], n["value"].astype(np.float64), n["is_leaf"].astype(bool))
            for n in nodes
        ],
        go_left=np.less_equal,
    )
    start = float(baseline.item())

    def boosting(features: np.ndarray) -> np.ndarray:
        if len(features) > WALK_ROWS:
            return model.predict(features)
        X = np.ascontiguousarray(features, dtype=np.float64)
        # The baseline, then every iteration's tree added in order (as _raw_predict does).
        return inverse_link(_added_in_order(start, walk.leaf_values(X), np.float64))

    return boosting


def _compile_xgboost(model: Any) -> _Step:
    booster = model.get_booster()
    learner = json.loads(bytes(booster.save_raw("json")))["learner"]
    objective = learner["objective"]["name"]
    gbm = learner["gradient_booster"]
    params = learner["learner_model_param"]
    if gbm["name"] != "gbtree" or objective != "reg:squarederror":
        raise _LibraryPredict(f"XGBRegressor with booster {gbm['name']!r} and {objective!r}")
    if params.get("num_target", "1") not in ("0", "1") or not _is_nan(model.missing):
        raise _LibraryPredict("XGBRegressor with several targets or another missing value")
    if getattr(model, "best_iteration", None) is not None:  # early stopping trims the trees
        raise _LibraryPredict("XGBRegressor with early stopping")
    trees = gbm["model"]["trees"]
    if not trees or any(
        any(t["split_type"]) or int(t["tree_param"]["size_leaf_vector"]) > 1 for t in trees
    ):
        raise _LibraryPredict("XGBRegressor without trees, or with categorical or vector leaves")
    base_score = np.float32(float(str(params["base_score"]).strip("[]")))
    # XGBoost's trees: leaves have no children (-1) and hold their value in split_conditions;
    # float32 features and thresholds, ``value < threshold`` goes left.
    walk = _Trees(
        [
            (np.asarray(t["split_indices"]), np.asarray(t["split_conditions"], np.float32),
             np.asarray(t["default_left"]), t["left_children"], t["right_children"],
             np.asarray(t["split_conditions"], np.float32), np.asarray(t["left_children"]) == -1)
            for t in trees
        ],
        go_left=np.less,
    )

    def xgboost(features: np.ndarray) -> np.ndarray:
        if len(features) > WALK_ROWS:
            return model.predict(features)
        X = np.ascontiguousarray(features, dtype=np.float32)
        # The base score, then each tree added in order, in float32 (XGBoost's CPU predictor).
        return _added_in_order(base_score, walk.leaf_values(X), np.float32)

    return xgboost


def _added_in_order(start: float, leaves: np.ndarray, dtype: Any) -> np.ndarray:
    """``start`` plus each row's leaf values, added one tree at a time in tree order and rounded
    to ``dtype`` after each addition, as the libraries add them (``cumsum`` is sequential;
    ``sum`` adds pairwise, which rounds differently)."""
    first = np.full((len(leaves), 1), start, dtype=dtype)
    return np.cumsum(np.hstack([first, leaves]), axis=1, dtype=dtype)[:, -1]


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and np.isnan(value)


def _compile_linear(model: Any) -> _Step:
    coef = np.asarray(model.coef_, dtype=np.float64)
    intercept = model.intercept_

    def linear(features: np.ndarray) -> np.ndarray:
        # LinearModel's decision function, without validating the row: X @ coef + intercept.
        return np.asarray(features, dtype=np.float64) @ coef + intercept

    return linear


class ServedPipeline:
    """What ``mlflow.pyfunc`` loads: ``predict`` runs the compiled pipeline when it agreed
    with the fitted pipeline on the rows saved with the model, and the pipeline otherwise."""

    def __init__(self, pipeline: Pipeline, check_rows: pd.DataFrame | None = None) -> None:
        self.pipeline = pipeline
        # The thread-pool libraries loaded by now (the pipeline's are: it is unpickled).
        self._threads = threadpoolctl.ThreadpoolController()
        self.fast: Predict | None = None
        self.fallback_reason = ""
        try:
            fast = compile_pipeline(pipeline)
        except NotCompilable as error:
            self.fallback_reason = f"not compilable: {error}"
            return
        if check_rows is not None:
            reason = _disagreement(fast, pipeline, check_rows)
            if reason:
                self.fallback_reason = reason
                _logger.warning("serving with the plain pipeline: %s", reason)
                return
        self.fast = fast

    def get_raw_model(self) -> Pipeline:
        """The fitted scikit-learn pipeline (``PyFuncModel.get_raw_model()`` returns it)."""
        return self.pipeline

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        """Predictions for ``model_input``, one per row.

        Fewer than :data:`ONE_THREAD_ROWS` rows are predicted in one OpenMP thread: the
        server calls predict from a pool of threads, and each new thread would start a team
        of OpenMP threads for a HistGradientBoosting model (a single row took 5.9 ms from a
        pool of threads, 1.0 ms in one thread, 0.8 ms on the main thread; measured on 2
        cores). Larger requests keep OpenMP's threads (10,000 rows: 38 ms with 2, 60 ms
        with 1).
        """
        if len(model_input) < ONE_THREAD_ROWS:
            with self._threads.limit(limits=1, user_api="openmp"):
                return self._predict(model_input)
        return self._predict(model_input)

    def _predict(self, model_input: pd.DataFrame) -> Any:
        if self.fast is not None and isinstance(model_input, pd.DataFrame):
            try:
                return self.fast(model_input)
            except (KeyError, TypeError, ValueError):
                # An input the pipeline may still take, or refuse with its own message.
                pass
        return self.pipeline.predict(model_input)


def _disagreement(fast: Predict, pipeline: Pipeline, rows: pd.DataFrame) -> str:
    expected = np.asarray(pipeline.predict(rows))
    # All rows at once, then each row alone: a request's size picks the path (WALK_ROWS).
    batches = [(rows, expected)]
    batches += [(rows.iloc[[i]], expected[i : i + 1]) for i in range(len(rows))]
    for batch, want in batches:
        try:
            got = np.asarray(fast(batch))
        except Exception as error:  # noqa: BLE001 - any failure means: do not use it
            return f"the compiled pipeline failed on the check rows: {error!r}"
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-9, atol=0.0):
            worst = float(np.max(np.abs(got - want))) if got.shape == want.shape else None
            return f"the compiled pipeline disagrees with the pipeline (max |diff| {worst})"
    return ""


def check_rows(X: pd.DataFrame, *, n: int = 20) -> pd.DataFrame:
    """Rows to check the compiled pipeline against at load: ``n`` real rows, plus one with
    every cell missing and one with an unseen value in every text column."""
    rows = X.head(n).copy()
    missing = {c: (None if _is_text(X[c]) else np.nan) for c in X.columns}
    unseen = {c: ("<unseen>" if _is_text(X[c]) else X[c].iloc[0]) for c in X.columns}
    extra = pd.DataFrame([missing, unseen], columns=X.columns)
    return pd.concat([rows, extra.astype({c: "float64" for c in X.columns if not _is_text(X[c])})],
                     ignore_index=True)


def _is_text(column: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(column)


def save(pipeline: Pipeline, directory: Path, *, rows: pd.DataFrame) -> list[str]:
    """Write what :func:`load` reads into ``directory`` (created): the pipeline (skops), the
    types skops must trust to load it, and ``rows`` to check the compiled pipeline against.

    Returns the trusted types: exactly the ones this pipeline needs beyond skops' defaults.
    """
    import skops.io

    directory.mkdir(parents=True)
    data = _skops_dumps(pipeline)
    trusted = sorted(skops.io.get_untrusted_types(data=data))
    (directory / PIPELINE_FILE).write_bytes(data)
    (directory / TRUSTED_FILE).write_text(json.dumps(trusted))
    (directory / CHECK_FILE).write_text(
        json.dumps(
            {
                "dtypes": {c: str(t) for c, t in rows.dtypes.items()},
                "columns": {c: rows[c].tolist() for c in rows.columns},
            }
        )
    )
    return trusted


def _skops_dumps(pipeline: Pipeline) -> bytes:
    """``skops.io.dumps(pipeline)``, with the archive's ``schema.json`` written compactly.

    skops indents the schema, and an indented ``json.dumps`` runs Python's pure-Python
    encoder: 0.38 s of the 0.46 s a 100-tree forest took to save on this project's machine,
    on the champion's path at the end of a sweep. The archive is otherwise skops' own (the
    same members, the same schema once parsed) and loads with ``skops.io.load``. Built from
    skops' internals (pinned in requirements.txt); without them, skops' own dumps.
    """
    import skops.io

    try:
        from skops.io._persist import SaveContext, get_state
    except ImportError:  # another skops: its own, slower, writer
        return skops.io.dumps(pipeline)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        context = SaveContext(zip_file=archive)
        state = get_state(pipeline, context)
        context.clear_memo()
        state["protocol"] = context.protocol
        state["_skops_version"] = skops.__version__
        archive.writestr("schema.json", json.dumps(state))
    return buffer.getvalue()


def load(directory: str | Path) -> ServedPipeline:
    """Read what :func:`save` wrote; the pipeline with exactly the trusted types saved.

    Like MLflow's own scikit-learn loader, it refuses when ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION``
    is false: loading a model may run code from the model's files.
    """
    import skops.io
    from mlflow.environment_variables import MLFLOW_ALLOW_PICKLE_DESERIALIZATION

    if not MLFLOW_ALLOW_PICKLE_DESERIALIZATION.get():
        raise PermissionError(
            f"loading this model is disallowed because {MLFLOW_ALLOW_PICKLE_DESERIALIZATION.name}"
            " is not 'true'; set it to 'true' for models you trust"
        )
    directory = Path(directory)
    trusted = json.loads((directory / TRUSTED_FILE).read_text())
    pipeline = skops.io.load(directory / PIPELINE_FILE, trusted=trusted)
    saved = json.loads((directory / CHECK_FILE).read_text())
    rows = pd.DataFrame(
        {c: pd.Series(v, dtype=saved["dtypes"][c]) for c, v in saved["columns"].items()}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return ServedPipeline(pipeline, rows)


def _load_pyfunc(data_path: str) -> ServedPipeline:
    """The ``python_function`` flavor's entry point (MLflow's ``loader_module`` contract)."""
    return load(data_path)
