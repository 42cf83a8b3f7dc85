"""Tests for the model-family registry in :mod:`objectives` and its preprocessing."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import FixedTrial
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

import objectives
from objectives import FAMILIES, SEARCH_SPACES_DIR, Family, resolve_families
from objectives._preprocessing import make_preprocessor
from sweeper.errors import SweepError
from sweeper.search_space import PROJECT_ROOT

NUMERIC = ["age", "bmi"]
CATEGORICAL = ["smoker", "region"]
FAMILY_NAMES = ["elastic_net", "extra_trees", "hist_gradient_boosting", "random_forest", "xgboost"]
KNOWN = ", ".join(FAMILY_NAMES)

families = pytest.mark.parametrize("family", list(FAMILIES.values()), ids=list(FAMILIES))


@pytest.fixture(autouse=True)
def _warnings_are_errors() -> Iterator[None]:
    # A ConvergenceWarning or a deprecation in how an estimator is built should fail loudly here
    # rather than scroll past in every trial of a real sweep.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _frame(rows: int = 40, *, with_missing: bool = False) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 65, rows).astype(float),
            "bmi": rng.normal(30.0, 6.0, rows),
            "smoker": rng.choice(["yes", "no"], rows),
            "region": rng.choice(["ne", "nw", "se", "sw"], rows),
        }
    )
    target = 250.0 * frame["age"] + 20000.0 * (frame["smoker"] == "yes") + rng.normal(0, 500, rows)
    if with_missing:
        frame.loc[[0, 5, 9], "age"] = np.nan
        frame.loc[[1, 5], "bmi"] = np.nan
        frame.loc[[2, 6], "smoker"] = None
        frame.loc[[3, 7, 9], "region"] = np.nan
    return frame, target


def _fast(family: Family, params: dict[str, Any]) -> dict[str, Any]:
    """Cap the ensemble size so that a test fit takes milliseconds."""
    fast = dict(params)
    if "n_estimators" in family.estimator_class().get_params():
        fast["n_estimators"] = 5
    if family.name == "hist_gradient_boosting":
        fast["max_iter"] = 5
    return fast


def _fit_and_predict(pipeline: Pipeline, frame: pd.DataFrame, target: pd.Series) -> np.ndarray:
    pipeline.fit(frame, target)
    predictions = np.asarray(pipeline.predict(frame))
    assert predictions.shape == (len(frame),)
    assert np.isfinite(predictions).all()
    return predictions


# --- the registry ----------------------------------------------------------------------------


def test_registry_has_exactly_the_five_families_sorted() -> None:
    assert list(FAMILIES) == FAMILY_NAMES


def test_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        FAMILIES["other"] = FAMILIES["xgboost"]  # type: ignore[index]


def test_search_spaces_dir_is_under_the_project_root() -> None:
    assert SEARCH_SPACES_DIR == PROJECT_ROOT / "search_spaces"


@families
def test_family_module_exports(family: Family) -> None:
    assert family.module.__name__ == f"objectives.{family.name}"
    assert isinstance(family.estimator_class, type)
    assert family.estimator_class is family.module.ESTIMATOR
    assert isinstance(family.module.SCALE_NUMERIC, bool)
    assert family.scale_numeric is (family.name == "elastic_net")
    assert family.search_space_path == SEARCH_SPACES_DIR / f"{family.name}.yaml"


def test_xgboost_module_imports_the_real_package() -> None:
    import xgboost

    assert FAMILIES["xgboost"].estimator_class is xgboost.XGBRegressor


@families
def test_search_space_loads_and_is_cached(family: Family) -> None:
    space = family.search_space()
    assert space.family == family.name
    assert space.path == family.search_space_path
    assert space.searched
    accepted = family.estimator_class().get_params()
    assert set(space.fixed) | set(space.searched) <= set(accepted)
    assert "random_state" not in set(space.fixed) | set(space.searched)
    assert family.search_space() is space


@families
def test_make_estimator_is_seeded_and_single_threaded(family: Family) -> None:
    estimator = family.module.make_estimator({}, random_state=7)
    params = estimator.get_params()
    assert isinstance(estimator, family.estimator_class)
    assert params["random_state"] == 7
    if "n_jobs" in params:
        assert params["n_jobs"] == 1
    # Params override the defaults.
    if "n_jobs" in params:
        assert family.module.make_estimator({"n_jobs": 2}, random_state=7).get_params()[
            "n_jobs"
        ] == 2


def test_family_specific_estimator_defaults() -> None:
    xgb = FAMILIES["xgboost"].module.make_estimator({}, random_state=0).get_params()
    assert xgb["tree_method"] == "hist"
    net = FAMILIES["elastic_net"].module.make_estimator({}, random_state=0)
    assert net.max_iter == 20000
    assert FAMILIES["elastic_net"].module.make_estimator(
        {"max_iter": 100}, random_state=0
    ).max_iter == 100


#: Searched parameters whose library default has no number in the space (a forest's
#: ``max_depth=None``, unlimited): the only ones a family's first trial leaves to the sampler.
_DEFAULT_SAMPLED = {"extra_trees": {"max_depth"}, "random_forest": {"max_depth"}}


@families
def test_the_first_trial_is_the_untuned_model(family: Family) -> None:
    from sweeper.runner import library_defaults

    first = library_defaults(family)
    space = family.search_space()
    assert set(space.searched) - set(first) == _DEFAULT_SAMPLED.get(family.name, set())
    # UNSET_DEFAULTS name only parameters the estimator leaves for the library to pick.
    unset = {k for k, v in family.estimator_class().get_params().items() if v is None}
    assert set(family.unset_defaults) <= unset
    # Fit with the first trial's values, it predicts what the estimator with nothing set does
    # (up to the 1.0e-8 that stands for no regularization on a log scale).
    frame, target = _frame()
    fixed = dict(space.fixed)
    untuned = family.build_pipeline(fixed, numeric=NUMERIC, categorical=CATEGORICAL,
                                    random_state=0)
    as_first = family.build_pipeline({**fixed, **first}, numeric=NUMERIC,
                                     categorical=CATEGORICAL, random_state=0)
    np.testing.assert_allclose(_fit_and_predict(as_first, frame, target),
                               _fit_and_predict(untuned, frame, target), rtol=1e-6)


@families
@pytest.mark.parametrize("with_missing", [False, True], ids=["complete", "with-missing"])
def test_pipeline_builds_clones_fits_and_predicts(family: Family, with_missing: bool) -> None:
    frame, target = _frame(with_missing=with_missing)
    pipeline = family.build_pipeline(
        _fast(family, {}), numeric=NUMERIC, categorical=CATEGORICAL, random_state=0
    )
    assert [name for name, _ in pipeline.steps] == ["preprocess", "model"]
    assert isinstance(pipeline.named_steps["model"], family.estimator_class)
    cloned = clone(pipeline)
    first = _fit_and_predict(pipeline, frame, target)
    # A clone of the same seeded pipeline fits to the same predictions.
    np.testing.assert_allclose(_fit_and_predict(cloned, frame, target), first)


@families
def test_pipeline_ignores_categories_unseen_at_fit_time(family: Family) -> None:
    frame, target = _frame()
    pipeline = family.build_pipeline(
        _fast(family, {}), numeric=NUMERIC, categorical=CATEGORICAL, random_state=0
    )
    pipeline.fit(frame, target)
    unseen = frame.head(3).assign(region="mars")
    assert np.isfinite(pipeline.predict(unseen)).all()


@families
def test_study_suggestion_builds_a_valid_pipeline(family: Family) -> None:
    frame, target = _frame()
    space = family.search_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    params = space.suggest(trial)
    assert set(trial.params) == set(space.searched)
    pipeline = family.build_pipeline(
        _fast(family, params), numeric=NUMERIC, categorical=CATEGORICAL, random_state=0
    )
    model_params = pipeline.named_steps["model"].get_params()
    for name, value in params.items():
        if name not in ("n_estimators", "max_iter"):
            assert model_params[name] == value
    _fit_and_predict(clone(pipeline), frame, target)


@families
def test_fixed_trial_at_the_lower_bounds_builds_a_valid_pipeline(family: Family) -> None:
    frame, target = _frame()
    space = family.search_space()
    lows = {
        name: dist.choices[0] if isinstance(dist, optuna.distributions.CategoricalDistribution)
        else dist.low
        for name, dist in space.searched.items()
    }
    params = space.suggest(FixedTrial(lows))
    pipeline = family.build_pipeline(
        _fast(family, params), numeric=NUMERIC, categorical=CATEGORICAL, random_state=0
    )
    _fit_and_predict(pipeline, frame, target)


def test_missing_search_space_file_names_the_path() -> None:
    family = Family(name="not_a_family", module=FAMILIES["random_forest"].module)
    with pytest.raises(SweepError) as excinfo:
        family.search_space()
    assert str(excinfo.value) == (
        "search_spaces/not_a_family.yaml: search space file for family 'not_a_family' not found"
    )


@families
def test_search_space_with_a_param_the_estimator_does_not_accept(
    family: Family, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(objectives, "SEARCH_SPACES_DIR", tmp_path)
    path = tmp_path / f"{family.name}.yaml"
    path.write_text("searched:\n  bogus_param_xyz: {type: int, low: 1, high: 3}\n")
    fresh = Family(name=family.name, module=family.module)
    with pytest.raises(SweepError) as excinfo:
        fresh.search_space()
    assert str(excinfo.value) == (
        f"{path}: searched.bogus_param_xyz: not a parameter of "
        f"{family.estimator_class.__name__} (see its get_params())"
    )


@families
def test_search_space_may_not_set_random_state(
    family: Family, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(objectives, "SEARCH_SPACES_DIR", tmp_path)
    path = tmp_path / f"{family.name}.yaml"
    path.write_text(
        "fixed:\n  random_state: 0\nsearched:\n"
        f"  {next(iter(family.search_space().searched))}: {{type: int, low: 1, high: 3}}\n"
    )
    with pytest.raises(SweepError) as excinfo:
        Family(name=family.name, module=family.module).search_space()
    assert str(excinfo.value) == (
        f"{path}: fixed.random_state: must not be in a search space "
        "(the sweep seeds every estimator itself)"
    )


def test_suggested_close_match_for_a_misspelt_param(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(objectives, "SEARCH_SPACES_DIR", tmp_path)
    path = tmp_path / "random_forest.yaml"
    path.write_text("searched:\n  max_dept: {type: int, low: 2, high: 8}\n")
    with pytest.raises(SweepError) as excinfo:
        Family(name="random_forest", module=FAMILIES["random_forest"].module).search_space()
    assert str(excinfo.value) == (
        f"{path}: searched.max_dept: not a parameter of RandomForestRegressor "
        "(see its get_params()); did you mean 'max_depth'?"
    )


# --- preprocessing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("numeric", "categorical", "width"),
    [
        pytest.param(NUMERIC, CATEGORICAL, 2 + 2 + 4, id="both"),
        pytest.param(NUMERIC, [], 2, id="numeric-only"),
        pytest.param([], CATEGORICAL, 2 + 4, id="categorical-only"),
    ],
)
@pytest.mark.parametrize("scale_numeric", [False, True], ids=["raw", "scaled"])
def test_preprocessor_imputes_and_handles_empty_column_lists(
    numeric: list[str], categorical: list[str], width: int, scale_numeric: bool
) -> None:
    frame, _ = _frame(with_missing=True)
    preprocessor = make_preprocessor(numeric, categorical, scale_numeric=scale_numeric)
    assert isinstance(preprocessor, ColumnTransformer)
    transformed = preprocessor.fit_transform(frame)
    assert transformed.shape == (len(frame), width)
    assert np.isfinite(transformed).all()
    if scale_numeric and numeric:
        np.testing.assert_allclose(transformed[:, : len(numeric)].mean(axis=0), 0.0, atol=1e-9)


def test_preprocessor_needs_some_columns() -> None:
    with pytest.raises(ValueError, match="at least one numeric or categorical column"):
        make_preprocessor([], [], scale_numeric=False)


# --- resolve_families ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param("all", FAMILY_NAMES, id="all"),
        pytest.param(" all ", FAMILY_NAMES, id="all-with-spaces"),
        pytest.param("", FAMILY_NAMES, id="empty"),
        pytest.param("xgboost", ["xgboost"], id="one"),
        pytest.param("xgboost,random_forest", ["xgboost", "random_forest"], id="list-in-order"),
        pytest.param(" xgboost ,  elastic_net ", ["xgboost", "elastic_net"], id="whitespace"),
    ],
)
def test_resolve_families(spec: str, expected: list[str]) -> None:
    resolved = resolve_families(spec)
    assert [family.name for family in resolved] == expected
    assert all(family is FAMILIES[family.name] for family in resolved)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param("foo", f"families: unknown family 'foo'; known families: {KNOWN}",
                     id="unknown"),
        pytest.param("xgboost,XGBoost",
                     f"families: unknown family 'XGBoost'; known families: {KNOWN}",
                     id="case-matters"),
        pytest.param("xgboost,xgboost", "families: 'xgboost' is listed twice", id="twice"),
        pytest.param(" xgboost , random_forest,xgboost ", "families: 'xgboost' is listed twice",
                     id="twice-with-spaces"),
        pytest.param("xgboost,,",
                     "families: empty name in 'xgboost,,'; expected a comma-separated list of "
                     f"families, or 'all'; known families: {KNOWN}",
                     id="empty-item"),
        pytest.param(" , ",
                     "families: empty name in ' , '; expected a comma-separated list of "
                     f"families, or 'all'; known families: {KNOWN}",
                     id="only-a-comma"),
        pytest.param("all,xgboost",
                     "families: 'all' cannot be combined with other names in 'all,xgboost'",
                     id="all-and-names"),
    ],
)
def test_resolve_families_errors(spec: str, expected: str) -> None:
    with pytest.raises(SweepError) as excinfo:
        resolve_families(spec)
    assert str(excinfo.value) == expected
