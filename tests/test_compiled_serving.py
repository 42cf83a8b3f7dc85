"""The served model's compiled fast path (:mod:`sweeper.serving`): the same predictions as the
fitted pipeline for every family, and the pipeline itself wherever it cannot be compiled or
disagrees.

"The same" is the same arithmetic in the same order; only a dot product over an array laid out
differently in memory may round its last bit differently (BLAS sums in another order), hence a
relative tolerance of 1e-12 rather than bitwise equality.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder

from objectives import FAMILIES, Family
from sweeper import serving
from sweeper.serving import NotCompilable, ServedPipeline, check_rows, compile_pipeline

NUMERIC = ["age", "bmi", "children"]
CATEGORICAL = ["sex", "smoker", "region"]

families = pytest.mark.parametrize("family", list(FAMILIES.values()), ids=list(FAMILIES))


@pytest.fixture(scope="module")
def insurance(insurance_csv: Path) -> tuple[pd.DataFrame, pd.Series]:
    frame = pd.read_csv(insurance_csv)
    return frame.drop(columns="charges"), frame["charges"]


def _same(got: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0.0)


def _fit(family: Family, X: pd.DataFrame, y: pd.Series, **columns: list[str]) -> Pipeline:
    # The search space's fixed parameters on top of the library defaults: a real first trial.
    pipeline = family.build_pipeline(
        dict(family.search_space().fixed),
        numeric=columns.get("numeric", NUMERIC),
        categorical=columns.get("categorical", CATEGORICAL),
        random_state=0,
    )
    return pipeline.fit(X.iloc[:1000], y.iloc[:1000])


def _hard_rows(X: pd.DataFrame) -> pd.DataFrame:
    """Held-out rows, then rows with missing cells (NaN and None) and unseen categories."""
    rows = X.iloc[1000:].astype({c: "float64" for c in NUMERIC}).astype(
        {c: object for c in CATEGORICAL}
    )
    edits: list[dict[str, Any]] = [
        {"age": np.nan},
        {"bmi": np.nan, "children": np.nan},
        {"sex": None},
        {"smoker": np.nan, "region": None},
        {"region": "antarctica"},
        {"sex": "other", "smoker": "sometimes", "age": np.nan},
        {c: (np.nan if c in NUMERIC else None) for c in X.columns},
    ]
    edited = []
    for i, edit in enumerate(edits):
        row = rows.iloc[[i]].copy()
        for column, value in edit.items():
            row[column] = pd.Series([value], index=row.index, dtype=rows[column].dtype)
        edited.append(row)
    return pd.concat([rows, *edited], ignore_index=True)


@families
def test_compiled_pipeline_predicts_exactly_what_the_pipeline_predicts(
    family: Family, insurance: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, y = insurance
    pipeline = _fit(family, X, y)
    rows = _hard_rows(X)
    fast = compile_pipeline(pipeline)
    _same(fast(rows), pipeline.predict(rows))
    # One row at a time, as a served request sends it, and the raw (pandas string) columns.
    for i in range(3):
        _same(fast(X.iloc[[i]]), pipeline.predict(X.iloc[[i]]))
    served = ServedPipeline(pipeline, check_rows(X))
    assert (served.fast is not None, served.fallback_reason) == (True, "")
    _same(served.predict(rows), pipeline.predict(rows))
    assert served.get_raw_model() is pipeline


@pytest.mark.parametrize(
    "columns",
    [{"numeric": NUMERIC, "categorical": []}, {"numeric": [], "categorical": CATEGORICAL}],
    ids=["numeric-only", "categorical-only"],
)
@families
def test_any_mix_of_columns_compiles(
    family: Family, columns: dict[str, list[str]], insurance: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, y = insurance
    pipeline = _fit(family, X, y, **columns)
    rows = _hard_rows(X)
    _same(compile_pipeline(pipeline)(rows), pipeline.predict(rows))


def _with_one_hot(X: pd.DataFrame, y: pd.Series, **settings: Any) -> Pipeline:
    pipeline = FAMILIES["random_forest"].build_pipeline(
        {"n_estimators": 5}, numeric=NUMERIC, categorical=CATEGORICAL, random_state=0
    )
    encoder = OneHotEncoder(sparse_output=False, **settings)
    return pipeline.set_params(preprocess__categorical__one_hot=encoder).fit(X, y)


def _with_branch(
    X: pd.DataFrame, y: pd.Series, branch: Any, columns: list[Any] | None = None
) -> Pipeline:
    """A fitted forest pipeline whose only preprocessing is ``branch`` on the numeric columns."""
    preprocess = ColumnTransformer([("numeric", branch, NUMERIC if columns is None else columns)])
    model = RandomForestRegressor(n_estimators=5, random_state=0)
    return Pipeline([("preprocess", preprocess), ("model", model)]).fit(X, y)


def _forest_pipeline(X: pd.DataFrame, y: pd.Series) -> Pipeline:
    return _fit(FAMILIES["random_forest"], X, y)


# (id, how to break the fitted pipeline, the reason ServedPipeline gives for falling back)
NOT_COMPILABLE: list[tuple[str, Callable[[Pipeline, pd.DataFrame, pd.Series], Any], str]] = [
    (
        "bare-estimator",
        lambda p, X, y: p.steps[1][1],
        "not compilable: expected a 2-step Pipeline, got RandomForestRegressor",
    ),
    (
        "three-steps",
        lambda p, X, y: Pipeline([*p.steps[:1], ("noop", "passthrough"), p.steps[1]]),
        "not compilable: expected a 2-step Pipeline, got Pipeline",
    ),
    (
        "min-max-scaler",
        lambda p, X, y: _with_branch(X, y, MinMaxScaler()),
        "not compilable: ColumnTransformer branch 'numeric': MinMaxScaler",
    ),
    (
        "passthrough-branch",
        lambda p, X, y: _with_branch(X, y, "passthrough"),
        "not compilable: ColumnTransformer branch 'numeric': FunctionTransformer",
    ),
    (
        "columns-by-index",
        lambda p, X, y: _with_branch(X, y, Pipeline([("impute", SimpleImputer())]), [0, 2]),
        "not compilable: ColumnTransformer branch 'numeric' selects [0, 2]",
    ),
    (
        "unknown-step",
        lambda p, X, y: _with_branch(X, y, Pipeline([("scale", MinMaxScaler())])),
        "not compilable: step MinMaxScaler",
    ),
    (
        "imputer-indicator",
        lambda p, X, y: _with_branch(
            X, y, Pipeline([("impute", SimpleImputer(add_indicator=True))])
        ),
        "not compilable: SimpleImputer with add_indicator or keep_empty_features",
    ),
    (
        "one-hot-drop",
        lambda p, X, y: _with_one_hot(X, y, drop="first"),
        "not compilable: OneHotEncoder with drop or handle_unknown other than 'ignore'",
    ),
    (
        "one-hot-infrequent",
        lambda p, X, y: _with_one_hot(X, y, handle_unknown="infrequent_if_exist", min_frequency=5),
        "not compilable: OneHotEncoder with drop or handle_unknown other than 'ignore'",
    ),
    (
        "one-hot-max-categories",
        lambda p, X, y: _with_one_hot(X, y, handle_unknown="ignore", max_categories=2),
        "not compilable: OneHotEncoder with infrequent categories",
    ),
]


@pytest.mark.parametrize(
    ("breaking", "reason"),
    [(b, r) for _, b, r in NOT_COMPILABLE],
    ids=[i for i, _, _ in NOT_COMPILABLE],
)
def test_what_cannot_be_compiled_is_served_by_the_pipeline(
    breaking: Callable[[Pipeline, pd.DataFrame, pd.Series], Any],
    reason: str,
    insurance: tuple[pd.DataFrame, pd.Series],
) -> None:
    X, y = insurance
    model = breaking(_forest_pipeline(X, y), X, y)
    with pytest.raises(NotCompilable):
        compile_pipeline(model)
    served = ServedPipeline(model, X.head(5))
    assert (served.fast, served.fallback_reason) == (None, reason)
    rows = X.iloc[1000:1010] if isinstance(model, Pipeline) else None
    if rows is not None:
        _same(served.predict(rows), model.predict(rows))


def test_a_compiled_pipeline_that_disagrees_is_not_used(
    insurance: tuple[pd.DataFrame, pd.Series],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # What a future scikit-learn that computes a step differently would look like.
    X, y = insurance
    pipeline = _forest_pipeline(X, y)
    monkeypatch.setattr(
        serving, "compile_pipeline", lambda p: (lambda frame: p.predict(frame) + 1.0)
    )
    with caplog.at_level(logging.WARNING, logger=serving.__name__):
        served = ServedPipeline(pipeline, check_rows(X))
    reason = "the compiled pipeline disagrees with the pipeline (max |diff| 1.0)"
    assert (served.fast, served.fallback_reason) == (None, reason)
    assert caplog.messages == [f"serving with the plain pipeline: {reason}"]
    _same(served.predict(X.head(3)), pipeline.predict(X.head(3)))


def test_a_compiled_pipeline_that_fails_on_the_check_rows_is_not_used(
    insurance: tuple[pd.DataFrame, pd.Series], monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = insurance
    pipeline = _forest_pipeline(X, y)

    def broken(frame: pd.DataFrame) -> np.ndarray:
        raise RuntimeError("boom")

    monkeypatch.setattr(serving, "compile_pipeline", lambda p: broken)
    served = ServedPipeline(pipeline, check_rows(X))
    assert served.fallback_reason == (
        "the compiled pipeline failed on the check rows: RuntimeError('boom')"
    )


# Inputs the fast path does not take: the pipeline answers them, with its own result or error.
BAD_INPUTS: list[tuple[str, Callable[[pd.DataFrame], pd.DataFrame]]] = [
    ("missing-column", lambda X: X.drop(columns="bmi")),
    ("number-in-text-column", lambda X: X.astype({"region": object}).assign(region=7)),
    ("text-in-number-column", lambda X: X.astype({"bmi": object}).assign(bmi="fat")),
    ("numpy-array", lambda X: X.to_numpy()),
]


def _outcome(predict: Callable[[Any], np.ndarray], rows: Any) -> tuple[str, Any]:
    try:
        return "result", list(predict(rows))
    except Exception as error:  # noqa: BLE001 - the error is the outcome compared
        return type(error).__name__, str(error)


@pytest.mark.parametrize("make", [m for _, m in BAD_INPUTS], ids=[i for i, _ in BAD_INPUTS])
def test_inputs_the_fast_path_refuses_get_the_pipelines_answer(
    make: Callable[[pd.DataFrame], Any], insurance: tuple[pd.DataFrame, pd.Series]
) -> None:
    X, y = insurance
    pipeline = _forest_pipeline(X, y)
    served = ServedPipeline(pipeline, check_rows(X))
    rows = make(X.head(3))
    assert _outcome(served.predict, rows) == _outcome(pipeline.predict, rows)


def test_check_rows_add_a_missing_row_and_an_unseen_row(
    insurance: tuple[pd.DataFrame, pd.Series],
) -> None:
    X, _ = insurance
    rows = check_rows(X, n=3)
    assert len(rows) == 5
    assert rows.iloc[3].isna().all()
    assert list(rows.iloc[4][CATEGORICAL]) == ["<unseen>"] * 3
    assert list(rows.iloc[4][NUMERIC]) == list(X.iloc[0][NUMERIC])


@families
def test_saved_model_is_skops_own_archive_and_loads_with_exactly_its_trusted_types(
    family: Family, insurance: tuple[pd.DataFrame, pd.Series], tmp_path: Path
) -> None:
    import io
    import json
    import zipfile

    X, y = insurance
    pipeline = _fit(family, X, y)
    trusted = serving.save(pipeline, tmp_path / "model", rows=check_rows(X))
    expected = skops.io.dumps(pipeline)
    assert trusted == sorted(skops.io.get_untrusted_types(data=expected))
    # skops' own archive, with a compact schema (what makes it fast: serving._skops_dumps).
    ours = zipfile.ZipFile(tmp_path / "model" / serving.PIPELINE_FILE)
    theirs = zipfile.ZipFile(io.BytesIO(expected))
    schema = ours.read("schema.json").decode()
    assert "\n" not in schema
    assert _without_ids(json.loads(schema)) == _without_ids(
        json.loads(theirs.read("schema.json")))
    assert len(ours.namelist()) == len(theirs.namelist())
    assert sorted(ours.getinfo(n).file_size for n in ours.namelist() if n != "schema.json") == \
        sorted(theirs.getinfo(n).file_size for n in theirs.namelist() if n != "schema.json")
    served = serving._load_pyfunc(str(tmp_path / "model"))
    assert served.fallback_reason == ""
    rows = _hard_rows(X)
    _same(served.predict(rows), pipeline.predict(rows))


def _without_ids(node: Any) -> Any:
    """A skops schema with its per-save object ids (and the array files named by them) blanked."""
    if isinstance(node, dict):
        return {k: None if k in ("__id__", "file") else _without_ids(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_without_ids(v) for v in node]
    return node


def test_loading_obeys_mlflows_deserialization_switch(
    insurance: tuple[pd.DataFrame, pd.Series], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = insurance
    serving.save(_forest_pipeline(X, y), tmp_path / "model", rows=check_rows(X))
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    with pytest.raises(PermissionError) as error:
        serving.load(tmp_path / "model")
    assert str(error.value) == (
        "loading this model is disallowed because MLFLOW_ALLOW_PICKLE_DESERIALIZATION is not "
        "'true'; set it to 'true' for models you trust"
    )


def test_small_requests_are_predicted_in_one_openmp_thread(
    insurance: tuple[pd.DataFrame, pd.Series], monkeypatch: pytest.MonkeyPatch
) -> None:
    import concurrent.futures

    import threadpoolctl

    X, y = insurance
    pipeline = _fit(FAMILIES["hist_gradient_boosting"], X, y)
    served = ServedPipeline(pipeline, check_rows(X))

    def openmp_threads() -> int:
        return max(i["num_threads"] for i in threadpoolctl.threadpool_info()
                   if i["user_api"] == "openmp")

    seen: list[int] = []
    predict = served._predict
    monkeypatch.setattr(served, "_predict", lambda rows: (seen.append(openmp_threads()),
                                                          predict(rows))[1])
    small, large = X.head(serving.ONE_THREAD_ROWS - 1), X.sample(
        serving.ONE_THREAD_ROWS, replace=True, random_state=0)
    # From a pool of threads, as the scoring server calls it.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        default = pool.submit(openmp_threads).result()
        got_small = pool.submit(served.predict, small).result()
        got_large = pool.submit(served.predict, large).result()
        after = pool.submit(openmp_threads).result()
    assert seen == [1, default]
    assert after == default  # the limit is lifted after the request
    _same(got_small, pipeline.predict(small))
    _same(got_large, pipeline.predict(large))


#: Families whose estimator is a tree ensemble: small requests walk its trees (serving._Trees).
TREE_FAMILIES = {"random_forest", "extra_trees", "hist_gradient_boosting", "xgboost"}


def _walked_rows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of rows of every tree walk from now on."""
    walked: list[int] = []
    leaf_values = serving._Trees.leaf_values

    def spy(self: serving._Trees, X: np.ndarray) -> np.ndarray:
        walked.append(len(X))
        return leaf_values(self, X)

    monkeypatch.setattr(serving._Trees, "leaf_values", spy)
    return walked


def test_tree_families_are_families() -> None:
    assert TREE_FAMILIES <= set(FAMILIES)


@families
def test_small_requests_predict_exactly_what_the_pipeline_predicts(
    family: Family, insurance: tuple[pd.DataFrame, pd.Series], monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = insurance
    # The library defaults: forests grown to their full depth (the deepest trees of a sweep).
    pipeline = _fit(family, X, y)
    rows = _hard_rows(X)
    fast = compile_pipeline(pipeline)
    walked = _walked_rows(monkeypatch)
    size = serving.WALK_ROWS
    requests = [rows.iloc[start : start + size] for start in range(0, len(rows), size)]
    # Single rows: held-out ones, and each with missing cells or unseen categories (the last 7).
    requests += [rows.iloc[[i]] for i in [*range(20), *range(len(rows) - 7, len(rows))]]
    for request in requests:
        _same(fast(request), pipeline.predict(request))
    assert walked == ([len(r) for r in requests] if family.name in TREE_FAMILIES else [])
    # One row more than a walk takes: the library's own predict.
    walked.clear()
    _same(fast(rows.iloc[: size + 1]), pipeline.predict(rows.iloc[: size + 1]))
    assert walked == []


def test_a_tree_walk_that_disagrees_is_not_used(
    insurance: tuple[pd.DataFrame, pd.Series], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The check at load predicts each check row alone too, which is what a walk serves.
    X, y = insurance
    pipeline = _forest_pipeline(X, y)
    monkeypatch.setattr(serving._Trees, "leaf_values",
                        lambda self, rows: np.zeros((len(rows), len(self))))
    rows = check_rows(X)
    served = ServedPipeline(pipeline, rows)
    worst = float(abs(pipeline.predict(rows.iloc[[0]])[0]))
    assert served.fallback_reason == (
        f"the compiled pipeline disagrees with the pipeline (max |diff| {worst})"
    )
    assert served.fast is None


def _hgb_categorical(X: pd.DataFrame, y: pd.Series) -> Pipeline:
    pipeline = _fit(FAMILIES["hist_gradient_boosting"], X, y)
    return pipeline.set_params(model__categorical_features=[0]).fit(X, y)  # age, 18-64


def _xgboost(**params: Any) -> Callable[[pd.DataFrame, pd.Series], Pipeline]:
    def fit(X: pd.DataFrame, y: pd.Series) -> Pipeline:
        return _fit(FAMILIES["xgboost"], X, y).set_params(
            **{f"model__{k}": v for k, v in params.items()}).fit(X, y)

    return fit


# (id, a fitted pipeline whose estimator's settings the walk does not cover, the debug reason)
LIBRARY_PREDICT: list[tuple[str, Callable[[pd.DataFrame, pd.Series], Pipeline], str]] = [
    ("hgb-categorical", _hgb_categorical,
     "HistGradientBoostingRegressor with categorical features"),
    ("xgboost-dart", _xgboost(booster="dart", n_estimators=20),
     "XGBRegressor with booster 'dart' and 'reg:squarederror'"),
    ("xgboost-gamma", _xgboost(objective="reg:gamma", n_estimators=20),
     "XGBRegressor with booster 'gbtree' and 'reg:gamma'"),
    ("xgboost-missing-zero", _xgboost(missing=0.0, n_estimators=20),
     "XGBRegressor with several targets or another missing value"),
]


@pytest.mark.parametrize(
    ("make", "reason"),
    [(m, r) for _, m, r in LIBRARY_PREDICT],
    ids=[i for i, _, _ in LIBRARY_PREDICT],
)
def test_what_the_walk_does_not_cover_is_predicted_by_the_estimator(
    make: Callable[[pd.DataFrame, pd.Series], Pipeline],
    reason: str,
    insurance: tuple[pd.DataFrame, pd.Series],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    X, y = insurance
    pipeline = make(X, y)
    with caplog.at_level(logging.DEBUG, logger=serving.__name__):
        served = ServedPipeline(pipeline, check_rows(X))
    assert f"{reason}: its own predict is served" in caplog.messages
    # Still the compiled preprocessing, and still the pipeline's predictions.
    assert (served.fast is not None, served.fallback_reason) == (True, "")
    walked = _walked_rows(monkeypatch)
    rows = _hard_rows(X)
    for i in range(3):
        _same(served.predict(rows.iloc[[i]]), pipeline.predict(rows.iloc[[i]]))
    assert walked == []
