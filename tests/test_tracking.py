"""A family run's best trial (:meth:`sweeper.tracking.SweepTracker.finish_family`), which every
worker of the family writes when it finishes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import optuna
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from optuna.trial import FrozenTrial, TrialState

from sweeper import objective as attrs
from sweeper.tracking import SweepTracker


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
