"""The leading family's champion, prepared while the last families run (:mod:`sweeper.ahead`).

Which candidate is prepared and when (a table of families completing, with stand-in helpers),
that a preparation is the same model the end of the sweep would refit, and whole sweeps in
this process where the champion was prepared ahead (a hit) and where the last family took the
lead (a miss): both register the same model as a sweep that prepares nothing ahead.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pytest
import threadpoolctl

import sweeper.runner as runner
from objectives import FAMILIES
from sweeper.ahead import Ahead, Candidate, PreparedChampion, prepare
from sweeper.champion import prepare_model, refit, select_champion, warm_up_model_logging
from sweeper.config import SweepConfig
from sweeper.data import Split, load_dataset, split_dataset
from sweeper.drawing import Drawer
from sweeper.prestart import for_command
from sweeper.study import FamilyResult
from sweeper.tracking import SweepTracker
from sweeper.trial_attrs import ATTR_CONFIG, config_of

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _result(family: str, rmse: float | None, number: int = 0) -> FamilyResult:
    best = None
    if rmse is not None:
        best = optuna.trial.create_trial(
            value=rmse, params={}, distributions={}, user_attrs={ATTR_CONFIG: {"alpha": rmse}}
        )
        best.number = number
    return FamilyResult(family, f"run-{family}", f"s.{family}", best, 1, 0, 0, 0, 1.0, None)


class _Helpers:
    """Stand-in helpers: every submission gets a future the test settles itself."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.submitted: list[tuple[Candidate, Future[Any]]] = []
        self.warm_ups: list[Future[Any]] = []

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        if fn is warm_up_model_logging:
            self.warm_ups.append(future)
        elif fn is prepare:
            self.submitted.append((args[0], future))
        else:
            raise AssertionError(f"unexpected job {fn!r}")
        return future


@pytest.fixture()
def helpers(tmp_path: Path) -> _Helpers:
    return _Helpers(tmp_path)


def _ahead(helpers: _Helpers) -> Ahead:
    split = Split(*([None] * len(dataclasses.fields(Split))))  # type: ignore[arg-type]
    return Ahead(helpers, split, numeric=["a"], categorical=["b"], seed=3)


#: (families complete so far, the leader then) after each family completes.
SEQUENCES = [
    pytest.param(
        [[_result("elastic_net", 6000.0)],
         [_result("elastic_net", 6000.0), _result("random_forest", 4500.0)],
         [_result("elastic_net", 6000.0), _result("random_forest", 4500.0),
          _result("xgboost", 4600.0)]],
        ["s.elastic_net/0", "s.random_forest/0", "s.random_forest/0"],
        id="the-leader-changes-once-then-holds",
    ),
    pytest.param(
        [[_result("random_forest", None)],
         [_result("random_forest", None), _result("xgboost", 4600.0, number=7)]],
        [None, "s.xgboost/7"],
        id="a-family-without-a-complete-trial-leads-nothing",
    ),
    pytest.param(
        [[_result("xgboost", 4500.0)],
         [_result("xgboost", 4500.0), _result("extra_trees", 4500.0)]],
        ["s.xgboost/0", "s.extra_trees/0"],
        id="a-tie-goes-to-the-first-family-by-name-like-the-champion",
    ),
]


@pytest.mark.parametrize(("sequence", "leaders"), SEQUENCES)
def test_the_leader_of_the_complete_families_is_prepared_once(
    helpers: _Helpers, sequence: list[list[FamilyResult]], leaders: list[str | None]
) -> None:
    ahead = _ahead(helpers)
    for complete, expected in zip(sequence, leaders, strict=True):
        leader = ahead.consider(complete)
        assert (leader.key if leader else None) == expected
        if expected is not None:
            assert expected == f"s.{select_champion(complete).family}/" \
                f"{select_champion(complete).best.number}"  # type: ignore[union-attr]
    submitted = [c.key for c, _ in helpers.submitted]
    assert submitted == list(dict.fromkeys(k for k in leaders if k is not None))
    # A helper is asked for the best trial's own configuration (config_of: its user attrs).
    configs = {f"{r.study_name}/{r.best.number}": {"alpha": r.rmse}
               for complete in sequence for r in complete if r.best is not None}
    assert [c.config for c, _ in helpers.submitted] == [configs[k] for k in submitted]


def test_a_former_leader_is_cancelled_unless_it_has_started(helpers: _Helpers) -> None:
    ahead = _ahead(helpers)
    en, rf, xgb = (_result("elastic_net", 6000.0), _result("random_forest", 4500.0),
                   _result("xgboost", 4400.0))
    ahead.consider([en])
    helpers.submitted[0][1].set_running_or_notify_cancel()  # a helper took it
    ahead.consider([en, rf])
    ahead.consider([en, rf, xgb])
    futures = {c.key: f for c, f in helpers.submitted}
    assert not futures["s.elastic_net/0"].cancelled()  # running: left to finish
    assert futures["s.random_forest/0"].cancelled()  # queued: cancelled
    assert ahead.keys == ("s.elastic_net/0", "s.xgboost/0")


def test_take_returns_the_chosen_trials_preparation_only(
    helpers: _Helpers, caplog: pytest.LogCaptureFixture
) -> None:
    ahead = _ahead(helpers)
    ahead.consider([_result("elastic_net", 6000.0)])
    ahead.consider([_result("elastic_net", 6000.0), _result("random_forest", 4500.0)])
    done = PreparedChampion("s.random_forest/0", {"test_rmse": 1.0}, None, None)  # type: ignore[arg-type]
    helpers.submitted[-1][1].set_result(done)
    assert ahead.take("s.random_forest/0") is done
    assert ahead.take("s.random_forest/1") is None  # another trial of the same family
    assert ahead.take("s.xgboost/0") is None
    assert not caplog.records


def test_a_failed_preparation_is_logged_and_left_to_the_end(
    helpers: _Helpers, caplog: pytest.LogCaptureFixture
) -> None:
    ahead = _ahead(helpers)
    ahead.consider([_result("elastic_net", 6000.0)])
    helpers.submitted[0][1].set_exception(MemoryError("no room"))
    with caplog.at_level(logging.WARNING, logger="sweeper.ahead"):
        assert ahead.take("s.elastic_net/0") is None
    assert caplog.messages == [
        "preparing the champion ahead failed, preparing it now: MemoryError: no room"
    ]


@pytest.mark.parametrize(
    ("settle", "adopted"),
    [
        pytest.param(lambda f: f.set_result({"sklearn": ["scikit-learn"]}), True, id="done"),
        pytest.param(lambda f: None, False, id="still-running"),
        pytest.param(lambda f: f.set_exception(OSError("gone")), False, id="failed"),
        pytest.param(lambda f: f.set_result(None), False, id="no-map-in-this-mlflow"),
    ],
)
def test_model_logging_is_warmed_up_by_a_helper_from_the_start(
    helpers: _Helpers, monkeypatch: pytest.MonkeyPatch, settle: Any, adopted: bool
) -> None:
    from mlflow.utils import requirements_utils

    ahead = _ahead(helpers)
    assert len(helpers.warm_ups) == 1  # submitted as the sweep starts, before any family
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    settle(helpers.warm_ups[0])
    ahead.adopt_warm_up()
    expected = {"sklearn": ["scikit-learn"]} if adopted else None
    assert requirements_utils._MODULES_TO_PACKAGES == expected


def test_a_candidate_needs_a_complete_trial() -> None:
    with pytest.raises(ValueError) as raised:
        Candidate.of(_result("xgboost", None))
    assert str(raised.value) == (
        "Candidate.of: family 'xgboost' has no complete trial to prepare"
    )


# ----------------------------------------------------------------------------------------------
# A real preparation
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def insurance_split(insurance_csv: Path) -> tuple[Split, Any]:
    dataset = load_dataset(str(insurance_csv), "charges")
    return split_dataset(dataset, test_size=0.2, seed=42, cv_folds=3), dataset


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drawer]:
    """A real drawing helper (spawned, one thread, niced), as the sweep prepares in."""
    drawer = Drawer(str(tmp_path_factory.mktemp("helper") / "s.journal"), processes=1,
                    spare_core=True)
    yield drawer
    drawer.close()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_preparation_in_a_helper_is_the_model_the_end_would_refit(
    family: str, insurance_split: tuple[Split, Any], helper: Drawer, tmp_path: Path
) -> None:
    split, dataset = insurance_split
    config = FAMILIES[family].search_space().fixed
    candidate = Candidate(family, f"s.{family}", 4, dict(config))
    prepared = helper.submit(
        prepare, candidate, split, numeric=dataset.numeric_columns,
        categorical=dataset.categorical_columns, seed=42, out_dir=tmp_path / "ahead",
    ).result(timeout=300)
    # As the end of the sweep refits the champion when nothing was prepared (in the sweep's
    # process: one thread per estimator).
    with threadpoolctl.threadpool_limits(1):
        model = FAMILIES[family].build_pipeline(
            config, numeric=dataset.numeric_columns, categorical=dataset.categorical_columns,
            random_state=42,
        )
        expected = refit(model, X_train=split.X_train, y_train=split.y_train,
                         X_test=split.X_test, y_test=split.y_test)
    assert prepared.key == f"s.{family}/4"
    assert prepared.test_metrics == expected
    at_end = prepare_model(model, X_train=split.X_train, directory=tmp_path / "end")
    assert prepared.model.requirements == at_end.requirements
    assert prepared.model.trusted == at_end.trusted
    assert prepared.model.signature == at_end.signature
    assert (prepared.model.data_dir / "pipeline.skops").is_file()
    assert prepared.model.code_path.is_file()
    assert sorted(p.name for p in prepared.figures.directory.iterdir()) == [
        "permutation_importance.csv", "permutation_importance.png", "predicted_vs_actual.png",
        "residuals.png",
    ]


def test_a_model_that_cannot_serve_its_example_is_prepared_with_mlflows_warning(
    insurance_split: tuple[Split, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import mlflow.models.utils

    def refuse(model_uri: str, serving_input: str) -> None:
        raise ValueError("bad column")

    monkeypatch.setattr(mlflow.models.utils, "_validate_serving_input", refuse)
    split, dataset = insurance_split
    model = FAMILIES["elastic_net"].build_pipeline(
        {}, numeric=dataset.numeric_columns, categorical=dataset.categorical_columns,
        random_state=0,
    ).fit(split.X_train, split.y_train)
    with caplog.at_level(logging.WARNING, logger="sweeper.champion"):
        prepared = prepare_model(model, X_train=split.X_train, directory=tmp_path / "m")
    assert prepared.data_dir.is_dir()
    assert [r.getMessage() for r in caplog.records] == [
        "Failed to validate serving input example: the model saved from these files could "
        "not serve its input example (the first rows of the training data), so the registered "
        "model may not serve such rows either. Got error: ValueError: bad column"
    ]


# ----------------------------------------------------------------------------------------------
# Whole sweeps, in this process
# ----------------------------------------------------------------------------------------------


def _sweep(families: str, insurance_csv: Path, name: str, caplog: pytest.LogCaptureFixture
           ) -> tuple[runner.SweepOutcome, bool]:
    config = SweepConfig(
        n_trials=3, families=families, data=str(insurance_csv), cv_folds=3, n_workers=1,
        sweep_name=name, verbose=0,
    )
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sweeper.runner"):
        outcome = runner.run_sweep(config, out=_Null())
    hit = any("was prepared while the last families ran" in m for m in caplog.messages)
    return outcome, hit


class _Null:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def test_sweeps_register_the_same_champion_prepared_ahead_or_not(
    in_process: Path, insurance_csv: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not runner.spare_core(SweepConfig(n_workers=1)):
        pytest.skip("one core: nothing is prepared ahead")
    # The champion's family first: it leads when the other completes, so it is prepared.
    hit, was_hit = _sweep("random_forest,elastic_net", insurance_csv, "hit", caplog)
    # The champion's family last: the other family was prepared, in vain.
    miss, was_miss_hit = _sweep("elastic_net,random_forest", insurance_csv, "miss", caplog)
    # Nothing prepared ahead (as beside busy workers). What the helpers are given, in order,
    # once the champion is settled: its figures first (a helper refits it), then the plots.
    monkeypatch.setattr(runner, "Ahead", lambda *a, **k: None)
    submitted: list[str] = []
    submit, settle = Drawer.submit, runner._settle_champion

    def recorded_submit(self: Drawer, fn: Any, *args: Any, **kwargs: Any) -> Future[Any]:
        submitted.append(fn.__name__)
        return submit(self, fn, *args, **kwargs)

    def recorded_settle(*args: Any, **kwargs: Any) -> Any:
        submitted.append("settle")
        return settle(*args, **kwargs)

    monkeypatch.setattr(Drawer, "submit", recorded_submit)
    monkeypatch.setattr(runner, "_settle_champion", recorded_settle)
    plain, _ = _sweep("random_forest,elastic_net", insurance_csv, "plain", caplog)
    at_end = submitted[submitted.index("settle") + 1:]
    assert at_end[0] == "_draw_champion" and "champion_figures" not in submitted, submitted
    assert (was_hit, was_miss_hit) == (True, False)
    champions = [o.champion for o in (hit, miss, plain)]
    assert {c.family for c in champions} == {"random_forest"}  # type: ignore[union-attr]
    assert len({(c.test_rmse, c.test_mae, c.test_r2) for c in champions}) == 1  # type: ignore[union-attr]
    assert [c.version for c in champions] == ["1", "2", "3"]  # type: ignore[union-attr]
    # The registered models predict alike, and the champion's report is complete.
    split = split_dataset(load_dataset(str(insurance_csv), "charges"), test_size=0.2, seed=42,
                          cv_folds=3)
    predictions = [
        mlflow.pyfunc.load_model(c.model_uri).predict(split.X_test.head(50))  # type: ignore[union-attr]
        for c in champions
    ]
    for other in predictions[1:]:
        np.testing.assert_array_equal(predictions[0], other)
    client = mlflow.MlflowClient()
    for outcome in (hit, miss, plain):
        names = {a.path for a in client.list_artifacts(outcome.root_run_id, "report")}
        assert {f"report/{n}" for n in (
            "report.html", "leaderboard.csv", "leaderboard.md", "champion_params.json",
            "predicted_vs_actual.png", "residuals.png", "permutation_importance.png",
            "permutation_importance.csv")} <= names
        for result in outcome.results:
            plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
            assert "plots/optimization_history.png" in plots, (result.family, plots)
    pages = [
        Path(mlflow.artifacts.download_artifacts(run_id=o.root_run_id,
                                                 artifact_path="report/report.html",
                                                 dst_path=str(in_process / f"page-{i}")))
        .read_text() for i, o in enumerate((hit, miss, plain))
    ]
    assert [p.count("data:image/png;base64,") for p in pages] == [6, 6, 6]
    # Drawn from the same model whichever process refit it: the same importances.
    importances = {
        mlflow.artifacts.download_artifacts(
            run_id=o.root_run_id, artifact_path="report/permutation_importance.csv",
            dst_path=str(in_process / f"importance-{i}")) for i, o in enumerate((hit, miss, plain))
    }
    assert len({Path(p).read_text() for p in importances}) == 1
    assert len({c.model_uri for c in champions}) == 3  # type: ignore[union-attr]


def _record_finishes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """``(run id, thread name)`` of every family run finished in this process."""
    calls: list[tuple[str, str]] = []
    finish = SweepTracker.finish_family

    def recorded(self: SweepTracker, run_id: str, best: Any, **kwargs: Any) -> None:
        calls.append((run_id, threading.current_thread().name))
        finish(self, run_id, best, **kwargs)

    monkeypatch.setattr(SweepTracker, "finish_family", recorded)
    return calls


@pytest.fixture(params=[True, False], ids=["logger process", "logger thread"])
def spare_core(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether the sweep sees a core to spare: its trial logger is then a helper process,
    else a thread."""
    monkeypatch.setattr(runner, "spare_core", lambda config: request.param)
    return bool(request.param)


def test_family_runs_are_finished_as_their_trials_end_not_at_the_end(
    in_process: Path, insurance_csv: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch, spare_core: bool,
) -> None:
    # One worker: the trial logger (a helper process with a core to spare, else a thread)
    # finishes each family's run after its trial runs; the end finds nothing changed and
    # makes no call of its own for them.
    calls = _record_finishes(monkeypatch)
    outcome, _ = _sweep("elastic_net,random_forest", insurance_csv, f"early-{spare_core}", caplog)
    run_ids = [result.run_id for result in outcome.results]
    # (The helper process's calls are not seen here.)
    assert calls == ([] if spare_core else [(run_id, "sweep-logger") for run_id in run_ids])
    client = mlflow.MlflowClient()
    for result in outcome.results:
        run = client.get_run(result.run_id)
        assert result.best is not None
        assert run.info.status == "FINISHED"
        assert run.data.tags["sweep.best_trial"] == str(result.best.number)
        assert run.data.params == {k: str(v) for k, v in config_of(result.best).items()}
        assert run.data.metrics["n_complete"] == result.n_complete


def test_a_family_that_changed_after_its_run_was_finished_is_finished_again(
    in_process: Path, insurance_csv: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Between finishing a family early and the end, its study gets a better trial (another
    # worker's, say): the end finishes the run again, with the new best.
    monkeypatch.setattr(runner, "spare_core", lambda config: False)  # calls seen here
    calls = _record_finishes(monkeypatch)
    drain = runner._Worker.drain
    added: list[int] = []

    def drain_after_a_better_trial(self: Any, works: Any, budget_deadline: Any) -> None:
        study = works[0].study
        best = study.best_trial
        study.add_trial(optuna.trial.create_trial(
            params=best.params, distributions=best.distributions, value=best.value - 1.0,
            user_attrs=best.user_attrs, system_attrs=best.system_attrs,
        ))
        added.append(len(study.trials) - 1)
        drain(self, works, budget_deadline)

    monkeypatch.setattr(runner._Worker, "drain", drain_after_a_better_trial)
    outcome, _ = _sweep("elastic_net,random_forest", insurance_csv, "changed", caplog)
    changed, unchanged = outcome.results
    assert [name for run_id, name in calls if run_id == changed.run_id] == [
        "sweep-logger", "MainThread"]
    assert [name for run_id, name in calls if run_id == unchanged.run_id] == ["sweep-logger"]
    run = mlflow.MlflowClient().get_run(changed.run_id)
    assert changed.best is not None and changed.best.number == added[0]
    assert run.data.tags["sweep.best_trial"] == str(added[0])
    assert sum(changed.counts.values()) == 4  # its 3 trials and the one added
    assert {k: run.data.metrics[f"n_{k}"] for k in changed.counts} == changed.counts


def test_the_champion_is_registered_while_the_trial_logger_logs_the_last_runs(
    in_process: Path, insurance_csv: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The last trial's run and the last family's finish are still queued when the trials
    # end: the champion (random_forest, not the last family: else its model waits for its
    # family's finish, see ..._logged_on_its_family_run_by_id_...) is registered meanwhile,
    # and the sweep ends once they are logged.
    monkeypatch.setattr(runner, "spare_core", lambda config: False)  # the logger: a thread
    registered = threading.Event()
    log_and_register = runner.log_and_register
    log_finished = SweepTracker.log_finished
    events: list[str] = []

    def register(*args: Any, **kwargs: Any) -> Any:
        model = log_and_register(*args, **kwargs)
        events.append("registered")
        registered.set()
        return model

    def last_run_waits_for_the_registration(
        self: SweepTracker, family_run_id: str, family: str, trial: Any
    ) -> str:
        if (family, trial.number) == ("elastic_net", 2):
            # Before: the sweep waited for this run before it registered the champion.
            events.append("waited" if registered.wait(20) else "timed out")
        run_id = log_finished(self, family_run_id, family, trial)
        events.append(f"logged {family} {trial.number}")
        return run_id

    monkeypatch.setattr(runner, "log_and_register", register)
    monkeypatch.setattr(SweepTracker, "log_finished", last_run_waits_for_the_registration)
    outcome, _ = _sweep("random_forest,elastic_net", insurance_csv, "overlap", caplog)
    assert outcome.champion is not None and outcome.champion.family == "random_forest"
    assert events[-3:] == ["registered", "waited", "logged elastic_net 2"]
    client = mlflow.MlflowClient()
    for result in outcome.results:
        run = client.get_run(result.run_id)
        assert run.info.status == "FINISHED"
        assert run.data.metrics["n_complete"] == result.n_complete
        trials = client.search_runs(
            [run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{result.run_id}'")
        assert sorted(int(t.data.tags["sweep.trial"]) for t in trials) == [0, 1, 2]
        assert {t.info.status for t in trials} <= {"FINISHED", "KILLED"}


def test_a_family_finish_the_logger_fails_after_the_trials_fails_the_sweep_and_its_runs(
    in_process: Path, insurance_csv: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The last family's finish, queued on the trial logger, fails (the tracking store went
    # away): the sweep raises that error once the logger is waited for, and closes the
    # families' runs as FAILED (a resume logs what is missing).
    monkeypatch.setattr(runner, "spare_core", lambda config: False)  # the logger: a thread
    finish = SweepTracker.finish_family

    def failing(self: SweepTracker, run_id: str, best: Any, **kwargs: Any) -> None:
        family = self.client.get_run(run_id).data.tags["sweep.family"]
        if threading.current_thread().name == "sweep-logger" and family == "random_forest":
            raise ConnectionError("tracking store gone")
        finish(self, run_id, best, **kwargs)

    monkeypatch.setattr(SweepTracker, "finish_family", failing)
    with pytest.raises(ConnectionError, match="tracking store gone"):
        _sweep("elastic_net,random_forest", insurance_csv, "gone", caplog)
    client = mlflow.MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    families = {
        run.data.tags["sweep.family"]: run.info.status
        for run in client.search_runs(experiments, "tags.`sweep.role` = 'family'")
    }
    assert families == {"elastic_net": "FAILED", "random_forest": "FAILED"}


def test_a_sweep_takes_the_helpers_its_command_prestarted(
    in_process: Path, insurance_csv: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    # As sweep.py does with one worker on a machine of 2 cores or more: the trial logger and
    # the drawing helpers start before the command's imports, and the sweep works with them.
    config = SweepConfig(
        n_trials=3, families="random_forest,elastic_net", data=str(insurance_csv), cv_folds=3,
        n_workers=1, sweep_name="prestarted", verbose=0,
    )
    if not runner.spare_core(config):
        pytest.skip("one core: no helper processes")
    prestarted = for_command(config)
    try:
        with caplog.at_level(logging.INFO, logger="sweeper.runner"):
            outcome = runner.run_sweep(config, out=_Null(), prestarted=prestarted)
        assert prestarted.take_trial_logger() is None and prestarted.take_drawer() is None
    finally:
        prestarted.close()
    # The prestarted drawing helpers prepared the leader ahead.
    assert any("was prepared while the last families ran" in m for m in caplog.messages)
    client = mlflow.MlflowClient()
    for result in outcome.results:
        runs = SweepTracker(client, outcome.root_run_id, "prestarted").trial_runs(result.run_id)
        assert sorted(runs) == [0, 1, 2]
        finished = [r for r in runs.values() if r.info.status == "FINISHED"]
        assert len(finished) == result.n_complete and len(runs) == sum(result.counts.values())
        assert all("rmse" in r.data.metrics for r in finished)
        assert client.get_run(result.run_id).info.status == "FINISHED"
        plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
        assert "plots/optimization_history.png" in plots, (result.family, plots)
    assert outcome.champion is not None and outcome.champion.version == "1"
    (dataset,) = client.get_run(outcome.root_run_id).inputs.dataset_inputs
    assert dataset.dataset.name == "insurance"


def test_the_champion_is_logged_on_its_family_run_by_id_without_reopening_it(
    in_process: Path, insurance_csv: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch, spare_core: bool,
) -> None:
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    # Every change of a run's status or end time made while the champion is logged and
    # registered (the trial logger, a helper process or thread, is not seen here).
    registering: list[bool] = [False]
    changed: list[str] = []
    for method in ("update_run", "set_terminated"):
        original = getattr(TrackingServiceClient, method)

        def recorded(self: Any, run_id: str, *args: Any, _original: Any = original,
                     **kwargs: Any) -> Any:
            if registering[0]:
                changed.append(run_id)
            return _original(self, run_id, *args, **kwargs)

        monkeypatch.setattr(TrackingServiceClient, method, recorded)
    log_and_register = runner.log_and_register

    def registered(*args: Any, **kwargs: Any) -> Any:
        registering[0] = True
        try:
            return log_and_register(*args, **kwargs)
        finally:
            registering[0] = False

    monkeypatch.setattr(runner, "log_and_register", registered)
    outcome, _ = _sweep("elastic_net", insurance_csv, f"by-id-{spare_core}", caplog)
    champion = outcome.champion
    assert champion is not None
    # Logged by id: the family run was neither reopened nor closed again (as resuming it on
    # the fluent run stack did, giving it the registration's end time).
    assert changed == []
    client = mlflow.MlflowClient()
    run = client.get_run(champion.run_id)
    model = client.get_logged_model(champion.model_uri.removeprefix("models:/"))
    assert run.info.status == "FINISHED"
    assert model.source_run_id == champion.run_id
    assert [o.model_id for o in run.outputs.model_outputs] == [model.model_id]
    # The family's CV scores (its finish, queued on the trial logger: the champion is the last
    # family here, so it was waited for) and then the test metrics were logged before the
    # model, so they are the model's too.
    assert run.data.metrics["test_rmse"] == pytest.approx(champion.test_rmse)
    assert {m.key for m in model.metrics} >= {"test_rmse", "test_mae", "test_r2", "rmse"}
