"""Report artifacts from real (tiny) studies: family plots, leaderboard, champion report."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import optuna
import pandas as pd
import pytest
from conftest import ROOT

from objectives import FAMILIES
from sweeper import report
from sweeper.data import Split, load_dataset, split_dataset
from sweeper.objective import FamilyObjective, regression_scores
from sweeper.study import FamilyResult, summarize
from sweeper.trial_attrs import ATTR_ERROR, config_of

FAMILY_NAMES = ("elastic_net", "xgboost")
PLOTS = ("optimization_history.png", "param_importances.png", "parallel_coordinate.png")
CHAMPION_PNGS = ("predicted_vs_actual.png", "residuals.png", "permutation_importance.png")

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclasses.dataclass
class Sweep:
    split: Split
    studies: dict[str, optuna.Study]
    objectives: dict[str, FamilyObjective]
    results: list[FamilyResult]


@pytest.fixture(scope="module")
def sweep(insurance_csv: Path) -> Sweep:
    dataset = load_dataset(str(insurance_csv), "charges")
    # 300 rows and 3 folds keep every trial well under a second.
    small = dataclasses.replace(dataset, frame=dataset.frame.sample(300, random_state=0))
    split = split_dataset(small, test_size=0.2, seed=0, cv_folds=3)
    studies, objectives, results = {}, {}, []
    for name in FAMILY_NAMES:
        objective = FamilyObjective(
            FAMILIES[name], split, numeric=small.numeric_columns,
            categorical=small.categorical_columns, seed=0,
        )
        study = optuna.create_study(
            study_name=f"test.{name}", sampler=optuna.samplers.TPESampler(seed=0)
        )
        study.optimize(objective, n_trials=4)
        studies[name], objectives[name] = study, objective
        results.append(summarize(study, name, run_id=f"run-{name}"))
    # A family whose every trial failed: no best, sorted last.
    broken = optuna.create_study(study_name="test.broken")
    for _ in range(2):
        broken.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL, user_attrs={ATTR_ERROR: "ValueError: boom"}))
    results.append(summarize(broken, "broken", run_id="run-broken"))
    return Sweep(split, studies, objectives, results)


@pytest.fixture(scope="module")
def champion_dir(sweep: Sweep, tmp_path_factory: pytest.TempPathFactory) -> Path:
    best = min((r for r in sweep.results if r.best is not None), key=lambda r: r.rmse)
    model = sweep.objectives[best.family].build(config_of(best.best))
    model.fit(sweep.split.X_train, sweep.split.y_train)
    rmse, mae, r2 = regression_scores(sweep.split.y_test, model.predict(sweep.split.X_test))
    out = tmp_path_factory.mktemp("champion")
    plots = report.family_plots(sweep.studies[best.family], out / "family")
    leaderboard = report.leaderboard_frame(sweep.results, best.family, rmse)
    figures = report.champion_figures(
        model, sweep.split.X_test, sweep.split.y_test, family=best.family,
        out_dir=out / "report", seed=0,
    )
    path = report.champion_page(
        figures, family=best.family, config=config_of(best.best), cv_rmse=best.rmse,
        test_metrics={"test_rmse": rmse, "test_mae": mae, "test_r2": r2},
        leaderboard=leaderboard, out_dir=out / "report", seed=0, extra_plots=plots,
    )
    assert path == out / "report" / "report.html"
    return out / "report"


def _assert_png(path: Path) -> None:
    assert path.is_file(), path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100, path
    assert np.ptp(image) > 0, f"{path} is blank"


# --- family plots ---------------------------------------------------------------------------


def test_family_plots_writes_three_decodable_pngs(champion_dir: Path) -> None:
    import matplotlib.pyplot as plt

    family_dir = champion_dir.parent / "family"  # the champion family's, drawn by the fixture
    assert sorted(p.name for p in family_dir.iterdir()) == sorted(PLOTS)
    for name in PLOTS:
        _assert_png(family_dir / name)
    assert plt.get_fignums() == []  # every figure closed


def _study_with(values: list[float | None], params: bool = True) -> optuna.Study:
    study = optuna.create_study()
    for number, value in enumerate(values):
        distributions = {"alpha": optuna.distributions.FloatDistribution(0.0, 1.0)}
        if value is None:
            study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
            continue
        study.add_trial(
            optuna.trial.create_trial(
                value=value,
                params={"alpha": 0.1 * (number + 1)} if params else {},
                distributions=distributions if params else {},
            )
        )
    return study


def test_family_plots_draws_only_the_plots_asked_for(sweep: Sweep, tmp_path: Path) -> None:
    study = sweep.studies["xgboost"]
    assert report.FAMILY_PLOTS == PLOTS
    for plot in PLOTS:
        assert report.family_plots(study, tmp_path / plot, only=(plot,)) == [
            tmp_path / plot / plot]
    with pytest.raises(ValueError) as raised:
        report.family_plots(study, tmp_path / "bad", only=("history.png",))
    assert str(raised.value) == (
        "family_plots: only must name plots of ('optimization_history.png', "
        "'param_importances.png', 'parallel_coordinate.png'), but got ('history.png',)"
    )


def test_family_plots_leave_the_callers_matplotlib_state_alone(tmp_path: Path) -> None:
    import matplotlib

    before = dict(matplotlib.rcParams)
    report.family_plots(_study_with([3.0, 2.0, 1.0]), tmp_path)
    # Optuna's plots switch the global style to ggplot; family_plots must undo that.
    assert dict(matplotlib.rcParams) == before


def test_one_complete_trial_skips_param_importances(tmp_path: Path) -> None:
    written = report.family_plots(_study_with([None, 5.0, None]), tmp_path)
    assert [p.name for p in written] == ["optimization_history.png", "parallel_coordinate.png"]
    assert not (tmp_path / "param_importances.png").exists()
    for path in written:
        _assert_png(path)


def test_a_param_without_variation_skips_param_importances(tmp_path: Path) -> None:
    study = optuna.create_study()
    distributions = {"alpha": optuna.distributions.FloatDistribution(0.0, 1.0)}
    for value in (3.0, 2.0):
        study.add_trial(optuna.trial.create_trial(
            value=value, params={"alpha": 0.5}, distributions=distributions))
    names = [p.name for p in report.family_plots(study, tmp_path)]
    assert "param_importances.png" not in names and "optimization_history.png" in names


def test_nothing_searched_draws_only_the_history(tmp_path: Path) -> None:
    written = report.family_plots(_study_with([3.0, 2.0], params=False), tmp_path)
    assert [p.name for p in written] == ["optimization_history.png"]


def test_no_complete_trial_draws_nothing(tmp_path: Path) -> None:
    assert report.family_plots(_study_with([None, None]), tmp_path) == []


def test_a_plot_that_fails_is_skipped_and_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no ink")

    import sweeper.parallel_coordinate  # report imports it when it draws

    monkeypatch.setattr(sweeper.parallel_coordinate, "parallel_coordinate_figure", broken)
    with caplog.at_level(logging.WARNING, logger="sweeper.report"):
        written = report.family_plots(_study_with([3.0, 2.0, 1.0]), tmp_path)
    assert [p.name for p in written] == ["optimization_history.png", "param_importances.png"]
    assert not (tmp_path / "parallel_coordinate.png").exists()
    assert "parallel_coordinate.png" in caplog.text and "no ink" in caplog.text


# --- leaderboard ----------------------------------------------------------------------------


def test_leaderboard_frame_sorts_by_cv_rmse_with_failed_last(sweep: Sweep) -> None:
    frame = report.leaderboard_frame(sweep.results, "xgboost", 4321.0)
    assert list(frame.columns) == list(report.LEADERBOARD_COLUMNS)
    assert len(frame) == len(sweep.results)
    assert frame["family"].iloc[-1] == "broken"
    ranked = frame["best_cv_rmse"].iloc[:-1].tolist()
    assert ranked == sorted(ranked)
    for result in sweep.results:
        row = frame.set_index("family").loc[result.family]
        assert row["complete"] == result.n_complete and row["failed"] == result.n_failed
        if result.best is None:
            assert np.isnan(row["best_cv_rmse"]) and np.isnan(row["cv_rmse_std"])
        else:
            assert row["best_cv_rmse"] == pytest.approx(result.rmse)
            assert row["cv_rmse_std"] == pytest.approx(result.best.user_attrs["rmse_std"])
    assert frame["champion"].tolist().count(True) == 1
    champion = frame[frame["champion"]].iloc[0]
    assert champion["family"] == "xgboost" and champion["test_rmse"] == 4321.0
    assert frame.loc[~frame["champion"], "test_rmse"].isna().all()


def test_leaderboard_markdown_is_a_github_table() -> None:
    frame = pd.DataFrame(
        {
            "family": ["xgboost", "a|b"],
            "complete": [3, 0],
            "best_cv_rmse": [4512.345, float("nan")],
            "champion": [True, False],
        }
    )
    assert report.leaderboard_markdown(frame) == (
        "| family | complete | best_cv_rmse | champion |\n"
        "| :--- | ---: | ---: | :--- |\n"
        "| xgboost | 3 | 4,512.3 | yes |\n"
        "| a\\|b | 0 |  |  |\n"
    )


def test_leaderboard_markdown_of_a_real_leaderboard(sweep: Sweep) -> None:
    text = report.leaderboard_markdown(report.leaderboard_frame(sweep.results, None, None))
    lines = text.splitlines()
    assert len(lines) == 2 + len(sweep.results)
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines)
    assert {line.count("|") for line in lines} == {len(report.LEADERBOARD_COLUMNS) + 1}


# --- champion report ------------------------------------------------------------------------


def test_the_champions_report_has_every_artifact(champion_dir: Path, sweep: Sweep) -> None:
    for name in CHAMPION_PNGS:
        _assert_png(champion_dir / name)
    importance = pd.read_csv(champion_dir / "permutation_importance.csv")
    assert list(importance.columns) == ["feature", "rmse_increase_mean", "rmse_increase_std"]
    assert sorted(importance["feature"]) == sorted(sweep.split.X_test.columns)  # raw columns
    means = importance["rmse_increase_mean"].tolist()
    assert means == sorted(means, reverse=True)
    # Insurance charges are driven by smoking more than by anything else.
    assert importance["feature"].iloc[0] == "smoker"
    leaderboard = pd.read_csv(champion_dir / "leaderboard.csv")
    assert len(leaderboard) == len(sweep.results)
    assert sorted(leaderboard["family"]) == sorted(r.family for r in sweep.results)
    params = json.loads((champion_dir / "champion_params.json").read_text())
    assert params["family"] in FAMILY_NAMES
    assert set(params["test_metrics"]) == {"test_rmse", "test_mae", "test_r2"}
    assert params["params"]  # the full configuration, fixed and searched


def test_permutation_importances_are_the_pipelines_own(champion_dir: Path, sweep: Sweep) -> None:
    # The report computes them through the compiled pipeline; the pipeline gives the same.
    from sklearn.inspection import permutation_importance

    best = min((r for r in sweep.results if r.best is not None), key=lambda r: r.rmse)
    model = sweep.objectives[best.family].build(config_of(best.best))
    model.fit(sweep.split.X_train, sweep.split.y_train)
    expected = permutation_importance(
        model, sweep.split.X_test, sweep.split.y_test, scoring="neg_root_mean_squared_error",
        n_repeats=5, random_state=0,
    )
    written = pd.read_csv(champion_dir / "permutation_importance.csv").set_index("feature")
    got = written.loc[[str(c) for c in sweep.split.X_test.columns], "rmse_increase_mean"]
    np.testing.assert_allclose(got, expected.importances_mean, rtol=1e-9, atol=1e-9)


def test_report_html_is_self_contained_and_shows_every_plot(champion_dir: Path) -> None:
    page = (champion_dir / "report.html").read_text()
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]+)" title="([^"]+)"',
                        page)
    alts = [alt for _, alt, _ in images]
    assert alts == ["Predicted vs actual", "Residuals", "Permutation importance",
                    *("Optimization history", "Param importances", "Parallel coordinate")]
    for data, _, _ in images:
        image = matplotlib.image.imread(io.BytesIO(base64.b64decode(data)), format="png")
        assert image.shape[0] > 100
    for name in (*CHAMPION_PNGS, *PLOTS):
        assert f'id="{Path(name).stem}"' in page
    # Nothing is fetched: no external file, script or stylesheet.
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert 'class="leaderboard"' in page and 'class="champion"' in page
    params = json.loads((champion_dir / "champion_params.json").read_text())
    for key in params["params"]:
        assert f"<th>{key}</th>" in page
    assert "test_rmse" in page and "cv_rmse" in page


def test_print_report_needs_a_champion() -> None:
    # A worker spawned by a command returns an outcome without one (the command registers).
    from sweeper.runner import SweepOutcome, print_report

    outcome = SweepOutcome("s", "root", (), None)
    with pytest.raises(ValueError) as error:
        print_report(outcome, out=io.StringIO())
    assert str(error.value) == "print_report needs an outcome with a champion, but got None"


def test_champion_figures_in_a_fresh_process(tmp_path: Path) -> None:
    # A drawing helper's first job may be the champion's figures, before anything imported
    # pyplot (which loads matplotlib.style as a side effect): the report once failed there.
    script = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import pandas as pd
from sklearn.dummy import DummyRegressor
from sweeper import report
X = pd.DataFrame({{"age": [20, 30, 40, 50, 60, 70], "bmi": [20.0, 22, 24, 26, 28, 30]}})
y = pd.Series([1.0, 2, 3, 4, 5, 6])
model = DummyRegressor().fit(X, y)
leaderboard = pd.DataFrame({{"family": ["dummy"], "cv_rmse": [1.0]}})
figures = report.champion_figures(
    model, X, y, family="dummy", out_dir={str(tmp_path / "report")!r}, seed=0,
)
path = report.champion_page(
    figures, family="dummy", config={{}}, cv_rmse=1.0,
    test_metrics={{"test_rmse": 1.0, "test_mae": 1.0, "test_r2": 0.0}},
    leaderboard=leaderboard, out_dir={str(tmp_path / "report")!r}, seed=0,
)
print(path)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report" / "report.html").is_file()
    for name in ("predicted_vs_actual.png", "residuals.png", "permutation_importance.png"):
        _assert_png(tmp_path / "report" / name)


@pytest.mark.parametrize("batch_rows", [200_000, 500], ids=["one call", "several calls"])
def test_permutation_importance_is_scikit_learns(
    sweep: Sweep, batch_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same shuffles and numbers as sklearn's, with the shuffled copies predicted together
    # (for each family of the fixture: a linear one and a tree ensemble).
    from sklearn.inspection import permutation_importance

    monkeypatch.setattr(report, "_PERMUTATION_BATCH_ROWS", batch_rows)
    X, y = sweep.split.X_test, sweep.split.y_test
    for family, objective in sweep.objectives.items():
        best = next(r for r in sweep.results if r.family == family).best
        model = objective.build(config_of(best)).fit(sweep.split.X_train, sweep.split.y_train)
        expected = permutation_importance(
            model, X, y, scoring="neg_root_mean_squared_error", n_repeats=3, random_state=7
        )
        got = report.permutation_importance(model.predict, X, y, n_repeats=3, seed=7)
        np.testing.assert_allclose(got, expected.importances, rtol=1e-12, atol=1e-9,
                                   err_msg=family)


def test_the_report_predicts_with_the_compiled_pipeline_when_it_compiles(sweep: Sweep) -> None:
    from sklearn.dummy import DummyRegressor

    X, y = sweep.split.X_train, sweep.split.y_train
    family, objective = next(iter(sweep.objectives.items()))
    best = next(r for r in sweep.results if r.family == family).best
    pipeline = objective.build(config_of(best)).fit(X, y)
    compiled = report._compiled_predict(pipeline)
    assert compiled != pipeline.predict
    np.testing.assert_allclose(compiled(sweep.split.X_test), pipeline.predict(sweep.split.X_test),
                               rtol=1e-9)
    # Not a compilable pipeline: its own predict.
    dummy = DummyRegressor().fit(X, y)
    assert report._compiled_predict(dummy) == dummy.predict


def test_permutation_importance_needs_a_repeat(sweep: Sweep) -> None:
    with pytest.raises(ValueError, match=r"^permutation_importance: n_repeats must be >= 1, "
                                         r"but got 0$"):
        report.permutation_importance(lambda X: X.iloc[:, 0], sweep.split.X_test,
                                      sweep.split.y_test, n_repeats=0, seed=0)
