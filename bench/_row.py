"""One row of the benchmark, run in its own process by ``bench/run.py``.

    python bench/_row.py '<json spec>'      # prints one line: BENCH-RESULT <json>

Each row runs in a fresh process (and a fresh working directory, chosen by the caller) so that
no row inherits another's imports, caches, thread-pool limits or MLflow state. ``seconds`` is
measured around the work itself (imports and interpreter start-up excluded, the same for every
row); the caller also records the whole process's wall time.

Kinds:

``sweep``   :func:`sweeper.runner.run_sweep` in-process with a :class:`SweepConfig`;
            ``tracking`` = ``"mlflow"`` (whatever ``MLFLOW_TRACKING_URI`` says) or ``"none"``
            (every MLflow call of the sweep replaced by no-op doubles, see :func:`_no_tracking`).
``optuna``  plain Optuna: one in-memory study per family, one after the other, in one process,
            no tracking, no pruning, the project's objective and folds; TPE or random sampler.
``flaml``   FLAML AutoML with a time budget on the same training split and the same folds.
``trial_logging``  trial runs logged one after another to a tracking server, with a connection
            per request (the sweep's where its probe finds kept-alive answers held back) or
            MLflow's kept-alive connections.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
import time
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MARKER = "BENCH-RESULT "


def _split(spec: dict[str, Any]):  # noqa: ANN202
    from sweeper.data import load_dataset, split_dataset

    dataset = load_dataset("insurance", "charges")
    split = split_dataset(dataset, test_size=0.2, seed=spec.get("seed", 42), cv_folds=5)
    return dataset, split


# ----------------------------------------------------------------------------------------------
# our sweep
# ----------------------------------------------------------------------------------------------


class _NullTracker:
    """A :class:`sweeper.tracking.SweepTracker` that records nothing."""

    def __init__(self, client: Any, root_run_id: str, sweep_name: str, **_: Any) -> None:
        self.client = _NullClient()
        self.root_run_id = root_run_id
        self.sweep_name = sweep_name
        self.experiment_id = "0"
        self._runs = 0

    def create_family_run(self, family: str, study_name: str) -> str:
        self._runs += 1
        return f"null-{family}-{self._runs}"

    def trial_runs(self, family_run_id: str) -> dict[int, Any]:
        return {}

    def log_trial(self, *args: Any, **kwargs: Any) -> str:
        return "null-trial"

    def log_killed(self, *args: Any, **kwargs: Any) -> str:
        return "null-trial"

    def close_dead_worker_runs(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def __getattr__(self, name: str) -> Any:  # mark_root, mark_worker, reopen, finish_family, ...
        return lambda *args, **kwargs: None


class _NullClient:
    """An MlflowClient double: every method is accepted and does nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def _no_tracking() -> None:
    """Replace every MLflow call :func:`run_sweep` makes with a no-op double (in this process
    only): the root run, the run tree, the champion's tags, model logging and registration.
    The champion is still refit on the training part and scored on the test part."""
    import sweeper.runner as runner
    from sweeper.champion import ChampionModel

    class _Run:
        info = types.SimpleNamespace(run_id="null-root", experiment_id="0")
        data = types.SimpleNamespace(tags={}, params={})

        def __enter__(self) -> _Run:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    def register_nothing(champion, prepared, test_metrics, *, X_train, model_name, root_run_id):  # noqa: ANN001, ANN202
        return ChampionModel(champion.family, champion.run_id, test_metrics["test_rmse"],
                             test_metrics["test_mae"], test_metrics["test_r2"], "", model_name, "")

    class _NoDrawer:
        """No plots, no report: they exist to be logged."""

        directory = Path(".")

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __getattr__(self, name: str) -> Any:  # start, family, prefetch, current, close, ...
            return lambda *args, **kwargs: None

    class _NoTrialLogs:
        """No helper process: there is nothing to log."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __getattr__(self, name: str) -> Any:  # submit, flush, close
            return lambda *args, **kwargs: None

    runner.mlflow = types.SimpleNamespace(  # type: ignore[assignment]
        start_run=lambda *a, **k: _Run(), end_run=lambda *a, **k: None,
        get_tracking_uri=lambda: "none",
    )
    runner.MlflowClient = lambda *a, **k: _NullClient()  # type: ignore[assignment]
    runner.SweepTracker = _NullTracker  # type: ignore[assignment,misc]
    runner._prepare_tracking = lambda: None
    runner.init_tracking_store = lambda: None
    runner.mark_champion = lambda *a, **k: None
    runner.find_registered = lambda *a, **k: None
    # The champion is still refit on the training part and scored on the test part
    # (sweeper.champion.refit); only its logging and registration are left out.
    runner.prepare_model = lambda *a, **k: None  # the served model's files, for logging
    runner.log_and_register = register_nothing
    runner.warm_up_model_logging = lambda: None
    runner.Drawer = _NoDrawer  # type: ignore[assignment,misc]
    runner.TrialLogProcess = _NoTrialLogs  # type: ignore[assignment,misc]
    runner.TrialLogThread = _NoTrialLogs  # type: ignore[assignment,misc]
    runner._log_drawings = lambda *a, **k: None


def _phase_timers(phases: dict[str, float]) -> None:
    """Time the sweep's phases (wrapping, not changing, runner internals)."""
    import sweeper.runner as runner

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - start
        return wrapper

    runner._settle_champion = timed("champion", runner._settle_champion)
    runner._Worker.drain = timed("drain", runner._Worker.drain)
    runner._Worker.join = timed("join", runner._Worker.join)
    runner._spawn_workers = timed("spawn", runner._spawn_workers)
    runner._wait_children = timed("wait_children", runner._wait_children)
    runner._prepare_tracking = timed("prepare_tracking", runner._prepare_tracking)


def run_our_sweep(spec: dict[str, Any]) -> dict[str, Any]:
    from sweeper.config import SweepConfig
    from sweeper.prestart import for_command

    config = SweepConfig(**spec["config"])
    # As sweep.py does: the extra workers start before this process's imports and import
    # beside them; whatever of their start-up is left when the clock starts is measured.
    # The untracked row has no trial logger and draws nothing: it starts no helpers.
    prestarted = for_command(config, helpers=spec.get("tracking") != "none")
    try:
        return _run_our_sweep(spec, config, prestarted)
    finally:
        prestarted.close()


def _run_our_sweep(spec: dict[str, Any], config: Any, prestarted: Any) -> dict[str, Any]:
    from bench._cpu import process_cpu, thread_wait, tree_cpu
    from sweeper.champion import import_model_saving
    from sweeper.runner import run_sweep

    import_model_saving()  # as sweep.py does in the process that registers the champion

    if spec.get("tracking") == "none":
        _no_tracking()
    store_init = None
    if spec.get("tracking") != "none":
        # A brand-new SQLite store's schema migration is a one-off cost (seconds), not the
        # sweep's: pay it before the clock starts, and report it apart.
        from sweeper.tracking import init_tracking_store

        start = time.perf_counter()
        init_tracking_store()
        store_init = time.perf_counter() - start
    phases: dict[str, float] = {}
    _phase_timers(phases)
    out = io.StringIO()
    server = spec.get("server_pid")  # the tracking server's process tree, when the bench has one
    cpu_before, wait_before = process_cpu(), thread_wait()
    server_before = tree_cpu(server) if server else None
    start = time.perf_counter()
    outcome = run_sweep(config, out=out, prestarted=prestarted)
    seconds = time.perf_counter() - start
    # The helpers the sweep took are closed (waited for) by now: their CPU is in this
    # process's RUSAGE_CHILDREN.
    cpu_after, wait_after = process_cpu(), thread_wait()
    cpu = {
        "sweep": cpu_after[0] - cpu_before[0],
        "helpers": cpu_after[1] - cpu_before[1],
        "server": None if server_before is None else tree_cpu(server) - server_before,
        "waited": (None if wait_before is None or wait_after is None
                   else wait_after - wait_before),
    }
    if spec.get("tracking") == "none" and Path("leak.db").exists():
        # bench/run.py points this process at leak.db: the doubles missed an MLflow call.
        raise RuntimeError("the no-tracking doubles missed an MLflow call (sweeper.runner "
                           "changed?): leak.db was created")
    complete = sum(r.n_complete for r in outcome.results)
    pruned = sum(r.n_pruned for r in outcome.results)
    failed = sum(r.n_failed for r in outcome.results)
    best = min(r.rmse for r in outcome.results if r.rmse is not None)
    # Every trial's configuration (in order), to check that two runs ran the same trials.
    import optuna

    from sweeper.study import open_storage

    storage = open_storage(config.storage)
    trials, trial_seconds = {}, {}
    for r in outcome.results:
        study = optuna.load_study(storage=storage, study_name=r.study_name)
        frozen = study.get_trials(deepcopy=False)
        trials[r.family] = [[t.number, t.state.name, t.value] for t in frozen]
        # Each trial's own time (start to end, as Optuna recorded it), to tell apart in the
        # tracking rows what tracking adds to the trials from what it adds between them.
        trial_seconds[r.family] = [
            [t.number, (t.datetime_complete - t.datetime_start).total_seconds()]
            for t in frozen
            if t.datetime_start is not None and t.datetime_complete is not None
        ]
    return {
        "seconds": seconds,
        "trials": complete + pruned + failed,
        "complete": complete,
        "pruned": pruned,
        "failed": failed,
        "cv_rmse": best,
        "test_rmse": outcome.champion.test_rmse,
        "family": outcome.champion.family,
        "model_uri": outcome.champion.model_uri,
        "phases": {**phases, **{f"sweep.{k}": v for k, v in outcome.timings.items()}},
        "store_init_seconds": store_init,
        "trial_values": trials,
        "trial_seconds": trial_seconds,
        "cpu": cpu,
        "report": out.getvalue(),
    }


# ----------------------------------------------------------------------------------------------
# logging trial runs over HTTP, with and without kept-alive connections
# ----------------------------------------------------------------------------------------------


def run_trial_logging(spec: dict[str, Any]) -> dict[str, Any]:
    """Log ``runs`` trial runs one after another as the sweep does
    (:meth:`sweeper.tracking.SweepTracker.log_finished`) to the tracking server in
    ``MLFLOW_TRACKING_URI``; ``close`` = a fresh connection per request
    (:mod:`sweeper.connections`), else MLflow's kept-alive ones."""
    import datetime
    import os
    import statistics

    import optuna
    from mlflow import MlflowClient

    from sweeper import trial_attrs as attrs
    from sweeper.connections import close_after_each_request
    from sweeper.tracking import SweepTracker

    uri = os.environ["MLFLOW_TRACKING_URI"]
    if spec["close"]:
        close_after_each_request(uri)
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(f"trial-logging-{spec['close']}-{os.getpid()}")
    root = client.create_run(experiment_id).info.run_id
    tracker = SweepTracker(client, root, "bench", experiment_id=experiment_id, source_tags={})
    family_run = tracker.create_family_run("xgboost", "bench.xgboost")
    start = datetime.datetime.now()
    trial = optuna.trial.create_trial(
        params={"learning_rate": 0.1, "max_depth": 4, "n_estimators": 300},
        distributions={
            "learning_rate": optuna.distributions.FloatDistribution(1.0e-3, 0.3, log=True),
            "max_depth": optuna.distributions.IntDistribution(2, 10),
            "n_estimators": optuna.distributions.IntDistribution(50, 1000),
        },
        value=4500.0,
        user_attrs={attrs.ATTR_MAE: 2500.0, attrs.ATTR_R2: 0.86, attrs.ATTR_RMSE_STD: 300.0,
                    attrs.ATTR_FOLD_RMSE: [4400.0, 4500.0, 4600.0, 4450.0, 4550.0]},
    )
    trial.datetime_start, trial.datetime_complete = start, start
    seconds = []
    cpu = []
    for number in range(spec["warmup"] + spec["runs"]):
        trial.number = number
        began, began_cpu = time.perf_counter(), time.process_time()
        tracker.log_finished(family_run, "xgboost", trial)
        seconds.append(time.perf_counter() - began)
        cpu.append(time.process_time() - began_cpu)
    seconds, cpu = seconds[spec["warmup"]:], cpu[spec["warmup"]:]
    return {"runs": spec["runs"], "median_ms": statistics.median(seconds) * 1000,
            "mean_ms": statistics.fmean(seconds) * 1000,
            "cpu_median_ms": statistics.median(cpu) * 1000}


# ----------------------------------------------------------------------------------------------
# plain Optuna
# ----------------------------------------------------------------------------------------------


def run_plain_optuna(spec: dict[str, Any]) -> dict[str, Any]:
    """Plain Optuna as its users write it: per family, an in-memory study whose objective
    cross-validates the whole ``preprocess -> model`` pipeline on each fold; the same search
    spaces and folds as the sweep, none of its machinery (no pruning, no worker processes, no
    once-per-fold preprocessing)."""
    import optuna

    from objectives import resolve_families
    from sweeper.objective import cross_validate, regression_scores

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # One thread per fit, as the sweep's workers run them (sweeper.runner: on this data two
    # threads per fit are slower than one). Unlimited, HistGradientBoosting's OpenMP threads
    # fight any other load on the machine and make the baseline several times slower.
    import threadpoolctl

    threadpoolctl.threadpool_limits(1)
    seed = spec.get("seed", 42)
    start = time.perf_counter()
    dataset, split = _split(spec)
    columns = {"numeric": dataset.numeric_columns, "categorical": dataset.categorical_columns}
    best: tuple[float, Any, dict[str, Any]] | None = None
    trials = 0
    for family in resolve_families(spec["families"]):
        space = family.search_space()

        def objective(trial: optuna.Trial, family: Any = family, space: Any = space) -> float:
            config = space.suggest(trial)
            return cross_validate(
                lambda: family.build_pipeline(config, **columns, random_state=seed),
                split.X_train, split.y_train, split.folds,
            ).rmse

        sampler = (optuna.samplers.RandomSampler(seed=seed) if spec["sampler"] == "random"
                   else optuna.samplers.TPESampler(seed=seed))
        study = optuna.create_study(direction="minimize", sampler=sampler,
                                    pruner=optuna.pruners.NopPruner())
        study.optimize(objective, n_trials=spec["n_trials"])
        trials += len(study.trials)
        if best is None or study.best_value < best[0]:
            config = space.suggest(optuna.trial.FixedTrial(study.best_trial.params))
            best = (study.best_value, family, config)
    if best is None:
        raise RuntimeError(f"no family in {spec['families']!r}")
    cv, family, config = best
    model = family.build_pipeline(config, **columns, random_state=seed)
    model.fit(split.X_train, split.y_train)
    test_rmse, _, _ = regression_scores(split.y_test, model.predict(split.X_test))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "trials": trials, "complete": trials, "cv_rmse": cv,
            "test_rmse": test_rmse, "family": family.name}


# ----------------------------------------------------------------------------------------------
# FLAML
# ----------------------------------------------------------------------------------------------


class FixedFolds:
    """A scikit-learn-style splitter that yields exactly the sweep's folds (positional indices
    into the training part), so FLAML scores every configuration on the same folds."""

    def __init__(self, folds: Any) -> None:
        self.folds = [(train.copy(), valid.copy()) for train, valid in folds]

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return len(self.folds)

    def split(self, X: Any = None, y: Any = None, groups: Any = None) -> Any:
        yield from self.folds


def run_flaml(spec: dict[str, Any]) -> dict[str, Any]:
    try:
        import flaml  # noqa: F401
    except ImportError:
        return {"skipped": "flaml not installed"}
    import logging

    import numpy as np
    from flaml import AutoML

    from sweeper.objective import regression_scores

    logging.getLogger("flaml.automl.logger").setLevel(logging.WARNING)
    dataset, split = _split(spec)
    estimators = spec.get("estimators", "auto")
    try:
        import lightgbm  # noqa: F401 - FLAML's first choice; "auto" fails without it
    except ImportError:
        estimators = ["rf", "xgboost", "extra_tree", "xgb_limitdepth", "sgd"]
    automl = AutoML()
    start = time.perf_counter()
    automl.fit(
        split.X_train, split.y_train, task="regression", metric="rmse",
        time_budget=spec["budget"], eval_method="cv", split_type=FixedFolds(split.folds),
        estimator_list=estimators, seed=spec.get("seed", 42),
        n_jobs=1, verbose=0,
    )
    seconds = time.perf_counter() - start
    test_rmse, _, _ = regression_scores(split.y_test, automl.predict(split.X_test))
    # FLAML's reported loss for its best configuration: the mean fold RMSE on our folds (our
    # splitter is used as is: FLAML shuffles only for its string split types). Recompute it
    # ourselves for the best configuration on the full folds, to be sure sampling did not
    # score it on fewer rows.
    estimator_class = automl._state.learner_classes[automl.best_estimator]
    X = automl._transformer.transform(split.X_train) if automl._transformer else split.X_train
    fold_rmse = []
    for train, valid in split.folds:
        model = estimator_class(task="regression", n_jobs=1, **automl.best_config)
        model.fit(X.iloc[train], split.y_train.iloc[train])
        fold_rmse.append(regression_scores(split.y_train.iloc[valid],
                                           model.predict(X.iloc[valid]))[0])
    n_trials = None
    with contextlib.suppress(Exception):
        n_trials = int(automl._search_states and sum(
            s.total_iter for s in automl._search_states.values()))
    return {
        "seconds": seconds,
        "trials": n_trials,
        "cv_rmse": float(np.mean(fold_rmse)),
        "flaml_reported_cv": float(automl.best_loss),
        "test_rmse": test_rmse,
        "family": automl.best_estimator,
        "best_config": {k: (v if isinstance(v, (int, float, str)) else str(v))
                        for k, v in automl.best_config.items()},
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    kind = spec["kind"]
    runner = {"sweep": run_our_sweep, "optuna": run_plain_optuna, "flaml": run_flaml,
              "trial_logging": run_trial_logging}[kind]
    result = runner(spec)
    result = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
              for k, v in result.items()}
    print(MARKER + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
