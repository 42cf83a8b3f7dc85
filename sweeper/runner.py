"""The sweep from start to end: config -> data -> one study per family -> champion -> registry."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from collections.abc import Sequence
from functools import partial
from typing import TextIO

import mlflow
import optuna
import threadpoolctl
from mlflow import MlflowClient
from mlflow.data.http_dataset_source import HTTPDatasetSource
from mlflow.data.sources import LocalArtifactDatasetSource
from mlflow.entities import RunStatus

from objectives import Family, resolve_families
from sweeper.champion import (
    CHAMPION_ALIAS,
    ChampionModel,
    mark_champion,
    refit_and_register,
    select_champion,
)
from sweeper.config import SweepConfig, derive_model_name, new_sweep_name
from sweeper.data import Dataset, Split, load_dataset, split_dataset
from sweeper.objective import FamilyObjective, config_of
from sweeper.study import FamilyResult, create_study, open_storage, optimize, study_name, summarize
from sweeper.tracking import BackgroundLogger, SweepTracker

_logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SweepOutcome:
    """What a finished sweep produced."""

    sweep_name: str
    root_run_id: str
    results: tuple[FamilyResult, ...]
    champion: ChampionModel


def run_sweep(config: SweepConfig, *, out: TextIO = sys.stdout) -> SweepOutcome:
    """Run a whole sweep. Every input is validated before the first run or trial is made."""
    families = resolve_families(config.families)
    for family in families:
        family.search_space()  # a bad YAML fails now, not after hours of other families
    dataset = load_dataset(config.data, config.target)
    split = split_dataset(
        dataset, test_size=config.test_size, seed=config.seed, cv_folds=config.cv_folds
    )
    storage = open_storage(config.storage)
    sweep_name = config.sweep_name or new_sweep_name()
    model_name = config.model_name or derive_model_name(dataset.name, config.target)
    print(f"sweep {sweep_name}: {len(families)} families x {config.n_trials} trials on "
          f"{dataset.name} ({len(dataset.frame)} rows, target {config.target!r})", file=out)

    # Estimators run one thread each: parallelism comes from worker processes, and on this
    # data two threads per fit are slower than one.
    threadpoolctl.threadpool_limits(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    with mlflow.start_run() as root:
        client = MlflowClient()
        tracker = SweepTracker(client, root.info.run_id, sweep_name)
        tracker.mark_root()
        _log_root(client, root.info.run_id, config, sweep_name, model_name, dataset)
        logger = BackgroundLogger()
        open_runs: list[str] = []
        try:
            results = []
            for family in families:
                results.append(
                    _run_family(family, config, sweep_name, storage, split, dataset, tracker,
                                logger, open_runs, out)
                )
            logger.flush()
            champion = select_champion(results)
            mark_champion(client, tracker.experiment_id, sweep_name, champion.run_id)
            model = FamilyObjective(
                _family(families, champion.family),
                split,
                numeric=dataset.numeric_columns,
                categorical=dataset.categorical_columns,
                seed=config.seed,
            ).build(config_of(champion.best))  # type: ignore[arg-type]
            registered = refit_and_register(
                champion,
                model,
                X_train=split.X_train,
                y_train=split.y_train,
                X_test=split.X_test,
                y_test=split.y_test,
                model_name=model_name,
                root_run_id=root.info.run_id,
            )
        except BaseException as error:
            _close_after_error(logger, tracker, open_runs, error)
            raise
        logger.close()
    outcome = SweepOutcome(sweep_name, root.info.run_id, tuple(results), registered)
    print_report(outcome, out=out)
    return outcome


def _family(families: Sequence[Family], name: str) -> Family:
    return next(f for f in families if f.name == name)


def _log_root(
    client: MlflowClient,
    run_id: str,
    config: SweepConfig,
    sweep_name: str,
    model_name: str,
    dataset: Dataset,
) -> None:
    # `mlflow run` already logged the -P params with its own formatting; params are immutable,
    # so only add the ones it did not log, and record resolved names as tags.
    present = client.get_run(run_id).data.params
    params = {k: v for k, v in config.as_params().items() if k not in present}
    mlflow.log_params(params)
    mlflow.set_tags({"sweep.model_name": model_name, "sweep.data": dataset.source})
    # An explicit source: from a bare string MLflow guesses among several local source types.
    source = (
        HTTPDatasetSource(dataset.source)
        if dataset.source.startswith(("http://", "https://"))
        else LocalArtifactDatasetSource(dataset.source)
    )
    mlflow.log_input(
        mlflow.data.from_pandas(
            dataset.frame, source=source, targets=dataset.target, name=dataset.name
        ),
        context="training",
    )


def _run_family(
    family: Family,
    config: SweepConfig,
    sweep_name: str,
    storage: optuna.storages.BaseStorage,
    split: Split,
    dataset: Dataset,
    tracker: SweepTracker,
    logger: BackgroundLogger,
    open_runs: list[str],
    out: TextIO,
) -> FamilyResult:
    name = study_name(sweep_name, family.name)
    study = create_study(storage, name, seed=config.seed)
    run_id = tracker.start_family(family.name, name)
    open_runs.append(run_id)
    objective = FamilyObjective(
        family,
        split,
        numeric=dataset.numeric_columns,
        categorical=dataset.categorical_columns,
        seed=config.seed,
    )

    def on_trial(_: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        logger.submit(partial(tracker.log_trial, run_id, family.name, trial))

    started = time.monotonic()
    optimize(study, objective, n_trials=config.n_trials, timeout=config.timeout, on_trial=on_trial)
    result = summarize(study, family.name, run_id, time.monotonic() - started)
    logger.submit(
        partial(
            tracker.finish_family, run_id, result.best, counts=result.counts,
            failed=result.best is None,
        )
    )
    open_runs.remove(run_id)
    best = "failed" if result.rmse is None else f"best CV rmse {result.rmse:,.1f}"
    print(f"  {family.name:<24} {result.n_complete} complete, {result.n_pruned} pruned, "
          f"{result.n_failed} failed; {best} ({result.seconds:.1f} s)", file=out)
    return result


def _close_after_error(
    logger: BackgroundLogger,
    tracker: SweepTracker,
    open_runs: Sequence[str],
    error: BaseException,
) -> None:
    """Log what finished trials are queued, then close the runs left open, so none stays
    RUNNING. Errors while cleaning up are logged, not raised: the original error matters."""
    status = RunStatus.to_string(
        RunStatus.KILLED if isinstance(error, KeyboardInterrupt) else RunStatus.FAILED
    )
    try:
        logger.close()
    except Exception:  # noqa: BLE001
        _logger.exception("could not log every finished trial")
    for run_id in open_runs:
        try:
            tracker.fail_run(run_id, status)
        except Exception:  # noqa: BLE001
            _logger.exception("could not close run %s", run_id)


def serve_command(model_name: str) -> str:
    """The command that serves the registered champion."""
    prefix = ""
    uri = mlflow.get_tracking_uri()
    if os.environ.get("MLFLOW_TRACKING_URI") or not uri.startswith("sqlite:///mlflow.db"):
        prefix = f"MLFLOW_TRACKING_URI={uri} "
    return (f"{prefix}mlflow models serve -m 'models:/{model_name}@{CHAMPION_ALIAS}' "
            "-p 3000 --env-manager local")


def print_report(outcome: SweepOutcome, *, out: TextIO) -> None:
    """The leaderboard, the champion's test metrics and the serve command."""
    champion = outcome.champion
    rows = sorted(outcome.results, key=lambda r: (r.rmse is None, r.rmse or 0.0, r.family))
    print(f"\nLeaderboard of sweep {outcome.sweep_name} (CV rmse, lower is better)", file=out)
    print(f"  {'family':<24} {'best CV rmse':>12} {'trials':>7} {'test rmse':>10}", file=out)
    for r in rows:
        cv = "failed" if r.rmse is None else f"{r.rmse:,.1f}"
        test = f"{champion.test_rmse:,.1f}" if r.family == champion.family else ""
        mark = " <- champion" if r.family == champion.family else ""
        trials = r.n_complete + r.n_pruned + r.n_failed
        print(f"  {r.family:<24} {cv:>12} {trials:>7} {test:>10}{mark}", file=out)
    print(f"\nChampion: {champion.family} (run {champion.run_id}); test rmse "
          f"{champion.test_rmse:,.1f}, mae {champion.test_mae:,.1f}, r2 {champion.test_r2:.4f}",
          file=out)
    print(f"Registered: {champion.model_name} version {champion.version} "
          f"(alias @{CHAMPION_ALIAS})", file=out)
    print(f"Serve it:\n  {serve_command(champion.model_name)}", file=out)
