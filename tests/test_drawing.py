"""The drawing helpers (:mod:`sweeper.drawing`): plots drawn in other processes, from the
sweep's storage, redrawn when the study changed, never failing the sweep."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import threadpoolctl
from optuna.distributions import FloatDistribution, IntDistribution

from conftest import process_alive
from sweeper.drawing import Drawer
from sweeper.report import FAMILY_PLOTS
from sweeper.study import open_storage

PLOTS = ["optimization_history.png", "parallel_coordinate.png", "param_importances.png"]


def _add_trials(storage: str, name: str, n: int) -> optuna.Study:
    study = optuna.create_study(storage=open_storage(storage), study_name=name,
                                load_if_exists=True)
    distributions = {"alpha": FloatDistribution(1e-3, 10.0, log=True),
                     "depth": IntDistribution(2, 8)}
    start = len(study.trials)
    for i in range(start, start + n):
        study.add_trial(optuna.trial.create_trial(
            params={"alpha": 0.01 * (i + 1), "depth": 2 + i % 6},
            distributions=distributions, value=5000.0 - 10 * i,
        ))
    return study


@pytest.fixture()
def storage(tmp_path: Path) -> str:
    return str(tmp_path / "sweep.journal")


@pytest.fixture()
def drawer(storage: str, request: pytest.FixtureRequest) -> Iterator[Drawer]:
    drawer = Drawer(storage, processes=2, spare_core=getattr(request, "param", False))
    yield drawer
    drawer.close()


def test_a_family_is_drawn_in_a_helper_and_redrawn_when_its_study_changed(
    storage: str, drawer: Drawer
) -> None:
    _add_trials(storage, "s.family", 4)
    drawer.family("s.family")
    plots = drawer.family_plots("s.family", 4)
    assert sorted(p.name for p in plots) == PLOTS
    assert all(p.is_file() and p.parent.parent == drawer.directory for p in plots)
    drawn = drawer._families["s.family"]
    assert drawer.family_plots("s.family", 4) == plots
    assert drawer._families["s.family"] is drawn  # current: not drawn again
    # Two more trials (another worker's, say): the earlier drawing is out of date.
    _add_trials(storage, "s.family", 2)
    assert sorted(p.name for p in drawer.family_plots("s.family", 6)) == PLOTS
    redrawn = drawer._families["s.family"]
    assert redrawn is not drawn
    assert drawer.family_plots("s.family", 6) == tuple(plots) and \
        drawer._families["s.family"] is redrawn


def test_prefetch_draws_only_what_is_missing_or_stale(storage: str, drawer: Drawer) -> None:
    for name in ("s.a", "s.b"):
        _add_trials(storage, name, 3)
    drawer.family("s.a")
    drawer.family_plots("s.a", 3)
    first = drawer._families["s.a"]
    drawer.prefetch({"s.a": 3, "s.b": 3})
    assert drawer._families["s.a"] is first  # current: not drawn again
    assert len(drawer.family_plots("s.b", 3)) == 3


def test_a_drawing_that_fails_is_left_out_and_logged(
    drawer: Drawer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="sweeper.drawing"):
        assert drawer.family_plots("s.missing", 1) == ()
    assert [m.split(": KeyError: ")[0] for m in caplog.messages] == [
        f"left out {plot} of s.missing" for plot in sorted(PLOTS, key=FAMILY_PLOTS.index)
    ]


def test_a_familys_plots_are_drawn_side_by_side_one_job_each(
    storage: str, drawer: Drawer
) -> None:
    _add_trials(storage, "s.family", 4)
    drawer.family("s.family")
    pending = drawer._families["s.family"]
    assert pending.plots == FAMILY_PLOTS
    drawn = [part.result(timeout=120) for part in pending.parts]
    assert [[p.name for p in d.paths] for d in drawn] == [[plot] for plot in FAMILY_PLOTS]
    assert {d.n_trials for d in drawn} == {4}
    assert drawer.family_plots("s.family", 4) == tuple(p for d in drawn for p in d.paths)


def test_ready_hands_over_a_familys_plots_only_once_all_are_drawn_and_never_waits(
    storage: str, drawer: Drawer
) -> None:
    assert drawer.ready("s.family") is None  # never asked for
    _add_trials(storage, "s.family", 4)
    drawer.family("s.family")
    pending = drawer._families["s.family"]
    # Still drawing: answered at once, without the plots.
    started = time.perf_counter()
    while not pending.done():
        assert drawer.ready("s.family") is None
        time.sleep(0.01)
    assert time.perf_counter() - started < 120
    drawn = drawer.ready("s.family")
    assert drawn is not None and drawn.n_trials == 4
    assert drawn.paths == drawer.family_plots("s.family", 4)
    assert sorted(p.name for p in drawn.paths) == PLOTS


@pytest.mark.parametrize(("counts", "ready"), [((4, 4, 4), True), ((3, 4, 4), False)],
                         ids=["one trial count", "the study grew between the plots"])
def test_ready_hands_over_only_plots_drawn_from_one_trial_count(
    drawer: Drawer, counts: tuple[int, ...], ready: bool
) -> None:
    from concurrent.futures import Future

    from sweeper.drawing import Drawn, _FamilyDrawing

    parts = []
    for plot, count in zip(FAMILY_PLOTS, counts, strict=True):
        part: Future[Drawn] = Future()
        part.set_result(Drawn((drawer.directory / plot,), count))
        parts.append(part)
    drawer._families["s.family"] = _FamilyDrawing(FAMILY_PLOTS, tuple(parts))
    drawn = drawer.ready("s.family")
    assert (drawn is not None) is ready
    if drawn is not None:
        assert drawn == Drawn(tuple(drawer.directory / plot for plot in FAMILY_PLOTS), 4)


def test_ready_leaves_a_drawing_with_a_failed_plot_to_family_plots(
    drawer: Drawer, caplog: pytest.LogCaptureFixture
) -> None:
    drawer.family("s.missing")  # no such study: every plot fails
    for part in drawer._families["s.missing"].parts:
        part.exception(timeout=120)
    with caplog.at_level(logging.WARNING, logger="sweeper.drawing"):
        assert drawer.ready("s.missing") is None
    assert caplog.messages == []  # told once, by family_plots at the end


def test_the_champions_figures_drawn_in_a_helper_make_a_page_with_its_familys_plots(
    storage: str, drawer: Drawer, insurance_csv: Path
) -> None:
    import pandas as pd

    from objectives import FAMILIES
    from sweeper import report

    _add_trials(storage, "s.elastic_net", 3)
    frame = pd.read_csv(insurance_csv).head(200)
    X, y = frame.drop(columns="charges"), frame["charges"]
    model = FAMILIES["elastic_net"].build_pipeline(
        {}, numeric=["age", "bmi", "children"], categorical=["sex", "smoker", "region"],
        random_state=0,
    ).fit(X, y)
    # The fitted model travels to the helper; the figures' paths and importances come back.
    pending = drawer.submit(
        report.champion_figures, model, X, y, family="elastic_net",
        out_dir=drawer.directory / "figures", seed=0,
    )
    figures = drawer.wait(pending, "the champion's figures")
    assert sorted(p.name for p in figures.directory.iterdir()) == [
        "permutation_importance.csv", "permutation_importance.png", "predicted_vs_actual.png",
        "residuals.png",
    ]
    plots = drawer.family_plots("s.elastic_net", 3)
    leaderboard = pd.DataFrame({"family": ["elastic_net"], "best_cv_rmse": [5000.0]})
    page = report.champion_page(
        figures, family="elastic_net", config={"alpha": 1.0}, cv_rmse=5000.0,
        test_metrics={"test_rmse": 1.0, "test_mae": 1.0, "test_r2": 0.5},
        leaderboard=leaderboard, out_dir=drawer.directory / "report", seed=0, extra_plots=plots,
    )
    assert page == drawer.directory / "report" / "report.html"
    assert sorted(p.name for p in plots) == PLOTS
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 3 + len(plots)
    # The page's directory holds the champion's figures too (it is logged as the report).
    assert {"predicted_vs_actual.png", "residuals.png", "permutation_importance.png",
            "permutation_importance.csv", "leaderboard.csv", "champion_params.json"} <= {
        p.name for p in page.parent.iterdir()}


def test_a_job_that_raises_fails_its_future_not_the_helpers(drawer: Drawer) -> None:
    pending = drawer.submit(int, "not a number")
    with pytest.raises(ValueError, match="invalid literal for int"):
        pending.result(timeout=120)
    assert drawer.submit(int, "7").result(timeout=120) == 7


@pytest.mark.parametrize("drawer", [False, True], ids=["busy cores", "a spare core"],
                         indirect=True)
def test_helpers_run_at_the_lowest_priority_and_close_cleans_up(drawer: Drawer) -> None:
    drawer.start()
    assert drawer._pool is not None
    # os.nice(0) returns the niceness: 19 (or the ceiling the parent had, if already 19).
    assert drawer._pool.submit(os.nice, 0).result() == 19
    # One thread each, also for a thread pool loaded after start-up (by unpickling a model).
    assert drawer._pool.submit(os.getenv, "OMP_NUM_THREADS").result() == "1"
    pools = drawer._pool.submit(threadpoolctl.threadpool_info).result()
    assert pools and {pool["num_threads"] for pool in pools} == {1}
    directory = drawer.directory
    assert directory.is_dir()
    drawer.close()
    assert not directory.exists()
    assert drawer._pool is None


def test_the_directory_is_made_only_when_needed(storage: str) -> None:
    # A sweep killed before it draws anything leaves no directory behind.
    drawer = Drawer(storage, processes=1)
    try:
        assert drawer._dir is None
        directory = drawer.directory
        assert directory.is_dir() and drawer.directory == directory
    finally:
        drawer.close()
    assert not directory.exists()


#: A sweep's process in short: a drawer with a helper running and a file in its directory.
_HOLDER = """
import os, sys, time
from sweeper.drawing import Drawer
drawer = Drawer(sys.argv[1], processes=1)
helper = drawer.start().submit(os.getpid).result()
(drawer.directory / "s.family").mkdir()
print(helper, drawer.directory, flush=True)
time.sleep(600)
"""


def test_a_sweep_killed_by_sigkill_leaves_no_drawing_directory(storage: str) -> None:
    # The sweep cannot clean up after a SIGKILL; its helpers get a signal when it dies
    # (sweeper.processes.die_with_parent), remove the directory, and die.
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, storage], stdout=subprocess.PIPE,
                              text=True, cwd=Path(__file__).parents[1])
    try:
        helper, path = holder.stdout.readline().split()
        directory = Path(path)
        assert (directory / "s.family").is_dir()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    deadline = time.monotonic() + 30
    while (directory.exists() or process_alive(int(helper))) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not directory.exists()
    assert not process_alive(int(helper)), "the helper outlived the sweep"


def test_helpers_import_the_drawing_once_at_start(drawer: Drawer) -> None:
    # Not with sweeper.report (the sweep's processes import it and never draw): at the
    # helper's start, beside the trials, not at its first plot.
    loaded = drawer.start().submit(
        eval, "[m in __import__('sys').modules for m in "
              "('matplotlib.figure', 'optuna.visualization.matplotlib', "
              "'sweeper.parallel_coordinate')]"
    ).result()
    assert loaded == [True, True, True]


def test_helpers_that_cannot_start_fail_every_drawing_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sweeper.drawing

    # A drawer that waited for helpers that never come would log "not drawn within 60 s".
    monkeypatch.setattr(sweeper.drawing, "_WAIT_SECONDS", 60.0)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    # The helpers' initializer cannot open this storage (its directory is a file).
    drawer = Drawer(str(blocker / "sweep.journal"), processes=2)
    try:
        with caplog.at_level(logging.WARNING, logger="sweeper.drawing"):
            assert drawer.family_plots("s.a", 1) == ()
            assert drawer.family_plots("s.b", 1) == ()
    finally:
        drawer.close()
    assert [m.split(":")[0] for m in caplog.messages] == [
        f"left out {plot} of {study}" for study in ("s.a", "s.b") for plot in FAMILY_PLOTS]
    assert all(": BrokenProcessPool: " in m for m in caplog.messages)
