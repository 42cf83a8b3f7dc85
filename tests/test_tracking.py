"""The runs :class:`sweeper.tracking.SweepTracker` writes outside the trials: a family run's best
trial (:meth:`~sweeper.tracking.SweepTracker.finish_family`), which every worker of the family
writes when it finishes, and the root run's tags, params and dataset."""

from __future__ import annotations

import json
import logging
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from optuna.trial import FrozenTrial, TrialState

from sweeper import trial_attrs as attrs
from sweeper.tracking import SweepTracker, source_tags_of


def _best(alpha: float) -> FrozenTrial:
    return optuna.trial.create_trial(
        state=TrialState.COMPLETE, value=alpha,
        params={"alpha": alpha},
        distributions={"alpha": optuna.distributions.FloatDistribution(0.1, 1.0)},
        user_attrs={attrs.ATTR_CONFIG: {"alpha": alpha, "selection": "cyclic"}},
    )


@pytest.fixture()
def tracker(tracking_uri: str) -> SweepTracker:
    client = MlflowClient()
    return SweepTracker(client, client.create_run("0").info.run_id, "s")


def _another_worker_logs_first(
    tracker: SweepTracker, monkeypatch: pytest.MonkeyPatch, params_first: list[Any]
) -> None:
    """The race of two workers finishing one family: another worker's params insert lands
    between this worker's check and its insert, which then fails as MLflow's SQL store fails
    it (a UNIQUE constraint, seen with two real workers on SQLite)."""
    log_batch: Callable[..., None] = tracker.client.log_batch

    def racing(run_id: str, **kwargs: Any) -> None:
        if kwargs.get("params"):
            log_batch(run_id, params=params_first)
            raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: "
                                  "params.key, params.run_uuid")
        log_batch(run_id, **kwargs)

    monkeypatch.setattr(tracker.client, "log_batch", racing)


def test_two_workers_finishing_a_family_at_once_log_its_params_without_a_warning(
    tracker: SweepTracker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from sweeper.tracking import params_of

    run = tracker.create_family_run("elastic_net", "s.elastic_net")
    best = _best(0.5)
    _another_worker_logs_first(tracker, monkeypatch, params_of(attrs.config_of(best)))
    with caplog.at_level(logging.WARNING, logger="sweeper.tracking"):
        tracker.finish_family(run, best, counts={"complete": 1}, error=None)
    assert caplog.messages == []
    data = tracker.client.get_run(run).data
    assert data.params == {"alpha": "0.5", "selection": "cyclic"}
    assert data.tags["sweep.best_trial"] == str(best.number)


def test_a_better_trial_after_the_params_were_logged_keeps_them_with_a_warning(
    tracker: SweepTracker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A resumed study found a better trial: MLflow params cannot change; the tags say which.
    run = tracker.create_family_run("elastic_net", "s.elastic_net")
    tracker.finish_family(run, _best(0.5), counts={"complete": 1}, error=None)
    with caplog.at_level(logging.WARNING, logger="sweeper.tracking"):
        tracker.finish_family(run, _best(0.25), counts={"complete": 2}, error=None)
    assert caplog.messages == [f"family run {run} keeps its earlier best params"]
    data = tracker.client.get_run(run).data
    assert data.params["alpha"] == "0.5"
    assert data.tags["sweep.best_config"] == '{"alpha": 0.25, "selection": "cyclic"}'


def _root_logged_in_one_request(uri: str) -> None:
    client = MlflowClient(uri)
    root = client.create_run("0", run_name="given-by-mlflow-run")
    tracker = SweepTracker(client, root.info.run_id, "sweep-1",
                           experiment_id="0", source_tags=source_tags_of(root))
    calls: list[str] = []

    def recorded(name: str) -> Callable[..., Any]:
        method = getattr(client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return method(*args, **kwargs)

        return call

    for name in ("log_batch", "set_tag", "update_run", "log_param", "get_run"):
        setattr(client, name, recorded(name))
    tracker.mark_root("host:1", params={"n_trials": "5", "seed": "42"},
                      tags={"sweep.model_name": "insurance-charges"})
    assert calls == ["log_batch"]
    run = MlflowClient(uri).get_run(root.info.run_id)
    assert run.info.run_name == "sweep-1"
    assert run.data.params == {"n_trials": "5", "seed": "42"}
    tags = run.data.tags
    assert (tags["sweep.role"], tags["sweep.name"], tags["sweep.worker"]) == (
        "sweep", "sweep-1", "host:1")
    assert tags["sweep.model_name"] == "insurance-charges"
    assert tags["mlflow.runName"] == "sweep-1"


def test_the_root_run_is_tagged_named_and_given_its_params_in_one_request(
    tracking_uri: str,
) -> None:
    _root_logged_in_one_request(tracking_uri)


def test_a_tracking_server_renames_the_root_run_from_the_batch_too(tmp_path: Path) -> None:
    # What mark_root relies on: the server's store renames a run on its mlflow.runName tag.
    from tests.services import tracking_server

    with tracking_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path, workers=1) as server:
        _root_logged_in_one_request(server.url)


def test_source_tags_are_those_that_say_who_ran_what_code(tracking_uri: str) -> None:
    run = MlflowClient().create_run("0", tags={
        "mlflow.user": "alice", "mlflow.source.name": "sweep.py", "mlflow.source.type": "LOCAL",
        "mlflow.source.git.commit": "abc", "mlflow.project.entryPoint": "sweep",
        "mlflow.gitRepoURL": "https://example.invalid/repo", "team": "pricing",
    })
    assert source_tags_of(run) == {
        "mlflow.user": "alice", "mlflow.source.name": "sweep.py", "mlflow.source.type": "LOCAL",
        "mlflow.source.git.commit": "abc", "mlflow.project.entryPoint": "sweep",
        "mlflow.gitRepoURL": "https://example.invalid/repo",
    }


@pytest.mark.parametrize("logs_kind", ["TrialLogProcess", "TrialLogThread"])
@pytest.mark.parametrize(
    "source", ["/data/insurance.csv", "https://example.invalid/insurance.csv"],
    ids=["a local file", "a URL"],
)
def test_the_trial_logger_logs_the_training_dataset_on_the_root_run_without_a_warning(
    tracking_uri: str, insurance_csv: Path, capfd: pytest.CaptureFixture[str],
    logs_kind: str, source: str,
) -> None:
    from sweeper import tracking

    frame = pd.read_csv(insurance_csv)
    client = MlflowClient()
    root = client.create_run("0").info.run_id
    tracker = SweepTracker(client, root, "s", experiment_id="0", source_tags={})
    logs = (tracking.TrialLogProcess(tracking_uri, tracker) if logs_kind == "TrialLogProcess"
            else tracking.TrialLogThread(tracker))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)  # shown however often it was before
        try:
            logs.log_dataset(frame, source=source, target="charges", name="insurance")
            logs.flush()
        finally:
            logs.close()
    # MLflow's hint that integer columns cannot hold missing values is not shown (by the
    # thread, or by the helper process: its stderr is this test's).
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == []
    (logged,) = client.get_run(root).inputs.dataset_inputs
    assert logged.dataset.name == "insurance"
    assert logged.dataset.digest
    assert json.loads(logged.dataset.source) in ({"uri": source}, {"url": source})
    assert logged.dataset.source_type == ("http" if source.startswith("https") else "local")
    schema = json.loads(logged.dataset.schema)
    assert {c["name"] for c in schema["mlflow_colspec"]} == set(frame.columns)
    assert [t.value for t in logged.tags if t.key == "mlflow.data.context"] == ["training"]
    assert "UserWarning" not in capfd.readouterr().err


@pytest.mark.parametrize("logs_kind", ["TrialLogProcess", "TrialLogThread"])
def test_the_trial_logger_logs_a_familys_plots_on_its_run(
    tracking_uri: str, tmp_path: Path, logs_kind: str
) -> None:
    from sweeper import tracking

    client = MlflowClient()
    root = client.create_run("0").info.run_id
    tracker = SweepTracker(client, root, "s", experiment_id="0", source_tags={})
    family_run = tracker.create_family_run("elastic_net", "s.elastic_net")
    drawn = tmp_path / "s.elastic_net"
    drawn.mkdir()
    for name in ("optimization_history.png", "parallel_coordinate.png"):
        (drawn / name).write_bytes(name.encode())
    logs = (tracking.TrialLogProcess(tracking_uri, tracker) if logs_kind == "TrialLogProcess"
            else tracking.TrialLogThread(tracker))
    try:
        logs.log_artifacts(family_run, str(drawn), "plots")
        logs.flush()
    finally:
        logs.close()
    assert sorted(a.path for a in client.list_artifacts(family_run, "plots")) == [
        "plots/optimization_history.png", "plots/parallel_coordinate.png",
    ]
    assert client.list_artifacts(root) == []


def test_the_trial_logger_imports_none_of_the_estimators(tmp_path: Path) -> None:
    """The trial logger process imports the sweep's script (as a spawned process does),
    :mod:`sweeper.tracking` and the store, and unpickles finished trials: none of that may pull
    in scikit-learn (1.5 s of CPU, beside the first trials) or the other estimators' and
    drawing libraries."""
    import subprocess
    import sys

    code = f"""
import pickle, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
import sweep  # what a spawned helper imports first: the main script, as __mp_main__
import sweeper.tracking
from mlflow import MlflowClient
MlflowClient({f"sqlite:///{tmp_path / 'mlflow.db'}"!r}).search_experiments(max_results=1)
pickle.loads({pickle.dumps(_best(0.5))!r})
print(sorted(m for m in ("sklearn", "xgboost", "matplotlib", "objectives") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_prestarted_trial_logger_logs_with_the_sweeps_environment(
    tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper started before the sweep's MLflow settings were made (before the command's
    imports) logs with them: the sweep hands its environment over with the runs to log."""
    import os

    from sweeper import tracking
    from sweeper.prestart import start_trial_logger

    monkeypatch.delenv("SWEEP_TEST_HANDED", raising=False)
    helper = start_trial_logger(niceness=0)
    monkeypatch.setenv("SWEEP_TEST_HANDED", "yes")  # as _prepare_tracking sets MLflow's retries
    client = MlflowClient()
    root = client.create_run("0").info.run_id
    tracker = SweepTracker(client, root, "s", experiment_id="0", source_tags={})
    family_run = tracker.create_family_run("elastic_net", "s-elastic_net")
    logs = tracking.TrialLogProcess(tracking_uri, tracker, helper=helper)
    try:
        trial = _best(0.5)
        logs.submit(family_run, "elastic_net", trial)
        logs.flush()
        assert helper.submit(os.getenv, "SWEEP_TEST_HANDED").result(timeout=60) == "yes"
    finally:
        logs.close()
    (run,) = tracker.trial_runs(family_run).values()
    assert run.info.status == "FINISHED"
    assert run.data.metrics["rmse"] == 0.5
    assert run.data.params == {"alpha": "0.5", "selection": "cyclic"}
