"""End to end: the real `mlflow run . -e sweep`, the run tree it leaves, and the served champion.

One sweep (module-scoped: it takes about a minute) feeds every assertion below.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import Run

from conftest import ROOT, serve_model, subprocess_env
from sweeper import serving

pytestmark = pytest.mark.e2e

FAMILIES = ("elastic_net", "hist_gradient_boosting", "xgboost")
N_TRIALS = 3
SWEEP_NAME = "e2e-sweep"
MODEL_NAME = "insurance-charges"
CURL_BODY = {
    "dataframe_split": {
        "columns": ["age", "sex", "bmi", "children", "smoker", "region"],
        "data": [[20, "male", 23.3, 2, "yes", "northeast"]],
    }
}


@dataclass
class SweepRun:
    uri: str
    client: MlflowClient
    runs: list[Run]
    stdout: str
    stderr: str
    tmp: Path

    def role(self, role: str) -> list[Run]:
        return [r for r in self.runs if r.data.tags.get("sweep.role") == role]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory, insurance_csv: Path) -> Iterator[SweepRun]:
    tmp = tmp_path_factory.mktemp("e2e")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    command = [
        sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "sweep",
        "--env-manager", "local", "--experiment-name", "e2e",
        "-P", f"n_trials={N_TRIALS}",
        "-P", f"families={','.join(FAMILIES)}",
        "-P", f"sweep_name={SWEEP_NAME}",
        "-P", f"storage={tmp / 'optuna.journal'}",
    ]
    env = subprocess_env(
        MLFLOW_TRACKING_URI=uri,
        SWEEP_INSURANCE_CSV=str(insurance_csv),
        SWEEP_CACHE_DIR=str(tmp / "cache"),
    )
    done = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.fail(f"mlflow run failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("e2e")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    # In-process loads (pyfunc, model info) read the same store.
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield SweepRun(uri, client, runs, done.stdout, done.stderr, tmp)
    finally:
        mlflow.set_tracking_uri(previous)
        mlflow.set_registry_uri(previous)


def test_run_tree_counts_and_nesting(sweep: SweepRun) -> None:
    (root,) = sweep.role("sweep")
    families = sweep.role("family")
    trials = sweep.role("trial")
    # n_workers defaults to one process per core: the others are worker runs under the root.
    workers = sweep.role("worker")
    assert len(workers) == len(os.sched_getaffinity(0)) - 1
    assert {r.data.tags["mlflow.parentRunId"] for r in workers} <= {root.info.run_id}
    assert len(sweep.runs) == 1 + len(workers) + len(FAMILIES) + len(FAMILIES) * N_TRIALS
    assert sorted(r.info.run_name for r in families) == sorted(FAMILIES)
    assert {r.data.tags["mlflow.parentRunId"] for r in families} == {root.info.run_id}
    family_ids = {r.data.tags["sweep.family"]: r.info.run_id for r in families}
    for family in FAMILIES:
        mine = [t for t in trials if t.data.tags["sweep.family"] == family]
        assert sorted(int(t.data.tags["sweep.trial"]) for t in mine) == list(range(N_TRIALS))
        assert {t.data.tags["mlflow.parentRunId"] for t in mine} == {family_ids[family]}
    for run in sweep.runs:
        assert run.data.tags["sweep.name"] == SWEEP_NAME
        if run in trials and "partial_rmse" in run.data.metrics:
            # Pruned on the folds: KILLED, with the folds it ran and no full-CV rmse.
            assert run.info.status == "KILLED", run.info.run_name
            assert "rmse" not in run.data.metrics
        else:
            assert run.info.status == "FINISHED", (run.info.run_name, run.info.status)


def test_every_run_says_who_ran_what_code(sweep: SweepRun) -> None:
    (root,) = sweep.role("sweep")
    for key in ("mlflow.user", "mlflow.source.name", "mlflow.source.type"):
        assert root.data.tags.get(key), key
        for run in sweep.runs:
            assert run.data.tags.get(key) == root.data.tags[key], (key, run.info.run_name)
    assert root.data.tags["mlflow.source.type"] == "PROJECT"


def test_trial_runs_have_params_and_metrics(sweep: SweepRun) -> None:
    complete = [t for t in sweep.role("trial") if t.info.status == "FINISHED"]
    assert len(complete) >= len(FAMILIES)  # each family's first trial (its defaults) completes
    for trial in complete:
        metrics = trial.data.metrics
        assert set(metrics) >= {"rmse", "mae", "r2", "rmse_std", "fold_rmse"}
        assert 1000 < metrics["rmse"] < 20000
        assert -1.0 < metrics["r2"] <= 1.0
        history = sweep.client.get_metric_history(trial.info.run_id, "fold_rmse")
        assert sorted(m.step for m in history) == [0, 1, 2, 3, 4]
        assert pytest.approx(sum(m.value for m in history) / 5) == metrics["rmse"]
        assert trial.data.params, trial.info.run_name


def test_family_runs_carry_their_best_trial(sweep: SweepRun) -> None:
    for family in sweep.role("family"):
        trials = [
            t for t in sweep.role("trial")
            if t.data.tags["mlflow.parentRunId"] == family.info.run_id and "rmse" in t.data.metrics
        ]
        # Of trials with the same RMSE, the first (two elastic-net trials have tied here).
        best = min(trials, key=lambda t: (t.data.metrics["rmse"],
                                          int(t.data.tags["sweep.trial"])))
        assert family.data.metrics["rmse"] == pytest.approx(best.data.metrics["rmse"])
        assert family.data.metrics["mae"] == pytest.approx(best.data.metrics["mae"])
        assert family.data.metrics["r2"] == pytest.approx(best.data.metrics["r2"])
        assert family.data.tags["sweep.best_trial"] == best.data.tags["sweep.trial"]
        assert family.data.params == best.data.params


def test_exactly_one_champion_with_test_metrics_and_registered_model(sweep: SweepRun) -> None:
    (root,) = sweep.role("sweep")
    families = sweep.role("family")
    champions = [r for r in sweep.runs if r.data.tags.get("champion") == "true"]
    assert len(champions) == 1
    (champion,) = champions
    assert champion.data.metrics["rmse"] == min(f.data.metrics["rmse"] for f in families)
    for key in ("test_rmse", "test_mae", "test_r2"):
        assert champion.data.metrics[key] == pytest.approx(root.data.metrics[key])
    assert root.data.tags["sweep.champion_run_id"] == champion.info.run_id
    version = sweep.client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert version.run_id == champion.info.run_id
    assert f"Champion: {champion.info.run_name}" in sweep.stdout
    assert f"mlflow models serve -m 'models:/{MODEL_NAME}@champion'" in sweep.stdout


def test_root_run_records_params_and_dataset(sweep: SweepRun) -> None:
    (root,) = sweep.role("sweep")
    assert root.data.params["n_trials"] == str(N_TRIALS)
    assert root.data.params["families"] == ",".join(FAMILIES)
    (dataset_input,) = root.inputs.dataset_inputs
    assert dataset_input.dataset.name == "insurance"
    assert dataset_input.dataset.digest
    schema = json.loads(dataset_input.dataset.schema)
    assert {c["name"] for c in schema["mlflow_colspec"]} == {
        "age", "sex", "bmi", "children", "smoker", "region", "charges"
    }


def test_logged_model_has_signature_example_requirements_skops_and_fast_path(
    sweep: SweepRun,
) -> None:
    uri = f"models:/{MODEL_NAME}@champion"
    info = mlflow.models.get_model_info(uri)
    inputs = {c.name for c in info.signature.inputs.inputs}
    assert inputs == {"age", "sex", "bmi", "children", "smoker", "region"}
    local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(sweep.tmp / "model")))
    requirements = (local / "requirements.txt").read_text().splitlines()
    names = {r.split("==")[0].lower() for r in requirements}
    assert {"mlflow", "scikit-learn", "pandas", "skops", "httptools", "uvloop"} <= names
    assert "pytest" not in names and "requests" not in names
    assert all("==" in r for r in requirements)
    flavor = info.flavors["sklearn"]
    assert flavor["serialization_format"] == "skops"
    assert (local / flavor["pickled_model"]).exists()
    assert (local / "input_example.json").exists()
    # Served through the compiled fast path, which the model's own loader checked on load...
    assert info.flavors["python_function"]["loader_module"] == "sweep_serving"
    code = sorted(p.relative_to(local / "code").as_posix() for p in local.glob("code/**/*.py"))
    assert code == ["sweep_serving.py"]
    assert (local / "code" / "sweep_serving.py").read_text() == Path(serving.__file__).read_text()
    served = serving.load(local / info.flavors["python_function"]["data"])
    assert served.fallback_reason == ""
    # ...and the same fitted pipeline is there for scikit-learn users.
    pipeline = mlflow.sklearn.load_model(uri)
    rows = pd.DataFrame(CURL_BODY["dataframe_split"]["data"],
                        columns=CURL_BODY["dataframe_split"]["columns"])
    assert served.predict(rows)[0] == pytest.approx(pipeline.predict(rows)[0], rel=1e-12)
    # Loading it put the model's code directory on sys.path: nothing there may shadow this
    # project's package for processes started later (drawing helpers import sweeper.drawing).
    mlflow.pyfunc.load_model(uri)
    shadowing = [p for p in sys.path if p and (Path(p) / "sweeper").is_dir()
                 and Path(p).resolve() != ROOT.resolve()]
    assert shadowing == []


@pytest.fixture(scope="module")
def served(sweep: SweepRun) -> Iterator[str]:
    with serve_model(f"models:/{MODEL_NAME}@champion", sweep.uri, sweep.tmp / "serve.log") as url:
        yield url


def test_served_champion_answers_the_readme_curl(sweep: SweepRun, served: str) -> None:
    response = requests.post(
        f"{served}/invocations",
        data=json.dumps(CURL_BODY),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    row = pd.DataFrame(CURL_BODY["dataframe_split"]["data"],
                       columns=CURL_BODY["dataframe_split"]["columns"])
    expected = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion").predict(row)
    assert prediction == pytest.approx(float(expected[0]), rel=1e-9)
    # A smoker in their twenties is charged well above the dataset's minimum.
    assert 1000 < prediction < 70000


def test_progress_is_plain_lines_in_a_log(sweep: SweepRun) -> None:
    # `mlflow run` piped to a file: one plain line per few trials, no control characters.
    for family in FAMILIES:
        assert f"{family}: {N_TRIALS}/{N_TRIALS} trials, best rmse " in sweep.stderr
    assert "\r" not in sweep.stderr and "\x1b[" not in sweep.stderr


def test_the_log_has_no_warnings_for_the_user(sweep: SweepRun) -> None:
    # MLflow's hint about integer columns is answered in the README: the sweep silences it
    # where it logs the dataset and the model (it once leaked from the dataset's logging).
    assert "Warning" not in sweep.stderr, sweep.stderr


def test_family_runs_have_plots_and_root_has_the_report(sweep: SweepRun) -> None:
    import matplotlib.image

    for family in sweep.role("family"):
        names = {a.path for a in sweep.client.list_artifacts(family.info.run_id, "plots")}
        assert "plots/optimization_history.png" in names, (family.info.run_name, names)
        local = sweep.client.download_artifacts(
            family.info.run_id, "plots/optimization_history.png", str(sweep.tmp)
        )
        assert matplotlib.image.imread(local).shape[0] > 100
    (root,) = sweep.role("sweep")
    report_dir = Path(sweep.client.download_artifacts(root.info.run_id, "report", str(sweep.tmp)))
    leaderboard = pd.read_csv(report_dir / "leaderboard.csv")
    assert sorted(leaderboard["family"]) == sorted(FAMILIES)
    assert leaderboard["champion"].sum() == 1
    assert "| family |" in (report_dir / "leaderboard.md").read_text()
    html = (report_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3
    for png in ("predicted_vs_actual.png", "residuals.png", "permutation_importance.png"):
        assert (report_dir / png).exists()
