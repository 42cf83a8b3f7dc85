"""The MLflow UI in a real browser: the runs list sorted by rmse puts the champion first.

A small real sweep (``sweep.py`` in a child process) fills a throwaway SQLite store,
``mlflow server`` serves it, and headless system Chromium (through Playwright) opens the
experiment's runs tab sorted by ``metrics.rmse``. The screenshot is left in ``test-output/``
(CI keeps that folder) whether the assertions pass or not.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import ROOT, subprocess_env
from ui_helpers import (
    CHROMIUM,
    VIEWPORT,
    BrowserMissing,
    chromium,
    header_names,
    mlflow_server,
    open_runs_table,
    run_names,
    run_small_sweep,
)

pytestmark = pytest.mark.e2e

EXPERIMENT = "ui"
SCREENSHOT = ROOT / "test-output" / "ui-runs-sorted-by-rmse.png"


def test_runs_sorted_by_rmse_show_the_champion_first(tmp_path: Path, insurance_csv: Path) -> None:
    # Fail (not skip) before the minute-long sweep: CI installs Chromium, so missing is a bug.
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install it with `apt-get install -y chromium` "
            "(.ci/run does) or set SWEEP_CHROMIUM to its path"
        )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_small_sweep(
        tmp_path,
        tracking_uri=uri,
        experiment=EXPERIMENT,
        sweep_name="ui",
        families=("elastic_net", "xgboost"),
        n_trials=3,
        env=subprocess_env(
            SWEEP_INSURANCE_CSV=str(insurance_csv), SWEEP_CACHE_DIR=str(tmp_path / "cache")
        ),
    )
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    (champion,) = [r for r in runs if r.data.tags.get("champion") == "true"]
    rmse_of = {r.info.run_name: r.data.metrics.get("rmse") for r in runs}

    try:
        with mlflow_server(uri, tmp_path) as url, chromium() as browser:
            page = browser.new_page(viewport=VIEWPORT)
            open_runs_table(page, url, experiment.experiment_id)
            names = run_names(page)
            headers = header_names(page)
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))
    except BrowserMissing as error:
        pytest.fail(str(error))

    assert "rmse" in headers, headers
    assert "champion" in headers, headers
    assert sorted(names) == sorted(rmse_of), "the table lists every run of the experiment"
    # Ascending by rmse; runs without rmse (the sweep's root run) come last.
    ranked = [rmse_of[n] for n in names if rmse_of[n] is not None]
    assert ranked == sorted(ranked), list(zip(names, ranked))
    assert all(rmse_of[n] is None for n in names[len(ranked):])
    # The family run carries its best trial's rmse, so the two tie at the top, in either order.
    family = champion.info.run_name
    first = names[0]
    assert first == family or (
        re.fullmatch(rf"{re.escape(family)}-\d{{3}}", first)
        and rmse_of[first] == champion.data.metrics["rmse"]
    ), (first, family)
    assert family in names[:2]
