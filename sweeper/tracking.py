"""MLflow side of the sweep: the run tree (root -> family -> trial) and its tags.

Runs below the root are made with :class:`mlflow.MlflowClient` and explicit parent ids, never
through the fluent run stack: ``mlflow run`` hands the root run over in ``MLFLOW_RUN_ID`` and the
fluent active run is per thread, so nesting through it breaks. Child runs copy the root run's
source tags (user, source name and type, git commit) so every run says who ran what code.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import importlib
import json
import logging
import os
import queue
import threading
import time
import urllib.parse
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import optuna
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, InputTag, Metric, Param, Run, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.store.db.db_types import DATABASE_ENGINES
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from sweeper import trial_attrs as attrs
from sweeper.connections import settle_connections
from sweeper.ledger import ATTR_KILLED
from sweeper.prestart import start_trial_logger

if TYPE_CHECKING:
    import pandas as pd

_logger = logging.getLogger(__name__)

TAG_ROLE = "sweep.role"
TAG_NAME = "sweep.name"
TAG_FAMILY = "sweep.family"
TAG_TRIAL = "sweep.trial"
TAG_STUDY = "sweep.study"
TAG_ERROR = "sweep.error"
TAG_BEST_TRIAL = "sweep.best_trial"
TAG_BEST_CONFIG = "sweep.best_config"
TAG_CHAMPION = "champion"
#: ``host:pid`` of the process that owns a root or worker run (to close it if that process died).
TAG_WORKER = "sweep.worker"

ROLE_SWEEP = "sweep"
ROLE_FAMILY = "family"
ROLE_TRIAL = "trial"
ROLE_WORKER = "worker"

#: Tags copied from the root run onto every child: who ran what code.
_SOURCE_TAG_PREFIXES = ("mlflow.source.", "mlflow.user", "mlflow.project.", "mlflow.gitRepoURL")

#: MLflow refuses longer param values.
_MAX_PARAM_LENGTH = 6000

_STATUS_OF_STATE = {
    optuna.trial.TrialState.COMPLETE: RunStatus.to_string(RunStatus.FINISHED),
    optuna.trial.TrialState.PRUNED: RunStatus.to_string(RunStatus.KILLED),
    optuna.trial.TrialState.FAIL: RunStatus.to_string(RunStatus.FAILED),
}


def _ms(moment: Any) -> int:
    return int(moment.timestamp() * 1000) if moment is not None else int(time.time() * 1000)


def source_tags_of(run: Run) -> dict[str, str]:
    """The tags of ``run`` that say who ran what code (copied onto every run of the sweep)."""
    return {
        key: value for key, value in run.data.tags.items() if key.startswith(_SOURCE_TAG_PREFIXES)
    }


def params_of(config: Mapping[str, Any]) -> list[Param]:
    """MLflow params for a configuration (values as strings, within MLflow's length limit)."""
    return [Param(key, str(value)[:_MAX_PARAM_LENGTH]) for key, value in sorted(config.items())]


class SweepTracker:
    """Creates and fills the runs of one sweep under an existing root run."""

    def __init__(
        self,
        client: MlflowClient,
        root_run_id: str,
        sweep_name: str,
        *,
        experiment_id: str | None = None,
        source_tags: Mapping[str, str] | None = None,
    ) -> None:
        """The experiment and the source tags are read from the root run unless given."""
        self.client = client
        self.root_run_id = root_run_id
        self.sweep_name = sweep_name
        if experiment_id is None or source_tags is None:
            root = client.get_run(root_run_id)
            experiment_id = root.info.experiment_id
            source_tags = source_tags_of(root)
        self.experiment_id = experiment_id
        self.source_tags = dict(source_tags)

    def _child_tags(self, parent_run_id: str, role: str, **extra: str) -> dict[str, str]:
        return {
            **self.source_tags,
            MLFLOW_PARENT_RUN_ID: parent_run_id,
            TAG_ROLE: role,
            TAG_NAME: self.sweep_name,
            **extra,
        }

    def mark_root(
        self,
        worker: str,
        *,
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Tag the root run as this sweep's, owned by ``worker`` (``host:pid``), name it after
        the sweep, and log ``params`` and ``tags`` on it, in one request.

        Named after the sweep, so the UI shows what ``mlflow run`` named at random: MLflow's
        stores rename a run that gets the ``mlflow.runName`` tag.
        """
        self.client.log_batch(
            self.root_run_id,
            params=params_of(params or {}),
            tags=[
                RunTag(TAG_ROLE, ROLE_SWEEP),
                RunTag(TAG_NAME, self.sweep_name),
                RunTag(TAG_WORKER, worker),
                RunTag(MLFLOW_RUN_NAME, self.sweep_name),
                *(RunTag(key, value) for key, value in (tags or {}).items()),
            ],
        )

    def log_dataset(self, frame: pd.DataFrame, *, source: str, target: str, name: str) -> None:
        """Log ``frame`` as the root run's training dataset (its digest and schema), read from
        ``source`` (a local path or an http(s) URL).

        The digest and the schema are computed from the frame (48-57 ms of a set-up for
        insurance, measured beside a running sweep): the sweep has this done by its trial
        logger, off the set-up's critical path.
        """
        import mlflow.data
        from mlflow.data.http_dataset_source import HTTPDatasetSource
        from mlflow.data.sources import LocalArtifactDatasetSource

        # An explicit source: from a bare string MLflow guesses among several local source
        # types.
        dataset_source = (
            HTTPDatasetSource(source)
            if source.startswith(("http://", "https://"))
            else LocalArtifactDatasetSource(source)
        )
        with warnings.catch_warnings():
            # MLflow's hint that integer columns cannot hold missing values: the served
            # model's schema keeps them integers on purpose (README, "What the served model
            # accepts"). The schema is inferred here, so the hint would come from here.
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(
                frame, source=dataset_source, targets=target, name=name
            )._to_mlflow_entity()
        context = InputTag(MLFLOW_DATASET_CONTEXT, "training")
        self.client.log_inputs(self.root_run_id, [DatasetInput(dataset, tags=[context])])

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str) -> None:
        """Log the files of ``local_dir`` under ``artifact_path`` of the run ``run_id`` (a
        family's plots, from the trial logger while the trials go on)."""
        self.client.log_artifacts(run_id, local_dir, artifact_path)

    def mark_worker(self, run_id: str, worker: str) -> None:
        """Nest a joining worker's own run (e.g. the one a second `mlflow run` made) under the
        sweep's root, so that the sweep stays one tree."""
        tags = self._child_tags(self.root_run_id, ROLE_WORKER, **{TAG_WORKER: worker})
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.update_run(run_id, name=f"worker {worker}")

    def close_dead_worker_runs(self, is_dead: Callable[[str], bool]) -> int:
        """Close as KILLED the root/worker runs left RUNNING by processes that died."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{TAG_NAME}` = '{self.sweep_name}' and attributes.status = 'RUNNING'",
            max_results=1000,
        )
        closed = 0
        for run in runs:
            worker = run.data.tags.get(TAG_WORKER)
            if run.data.tags.get(TAG_ROLE) in (ROLE_SWEEP, ROLE_WORKER) and worker and is_dead(worker):
                self.client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
                closed += 1
        return closed

    def create_family_run(self, family: str, study_name: str) -> str:
        """A new family run under the root (made once per sweep, by the study's creator)."""
        run = self.client.create_run(
            self.experiment_id,
            run_name=family,
            tags=self._child_tags(
                self.root_run_id, ROLE_FAMILY, **{TAG_FAMILY: family, TAG_STUDY: study_name}
            ),
        )
        return run.info.run_id

    def reopen(self, run_id: str) -> None:
        """Mark a run RUNNING again while this worker works under it."""
        self.client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))

    def trial_runs(self, family_run_id: str) -> dict[int, Run]:
        """``trial number -> run`` of the trial runs under a family run."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{family_run_id}' "
                f"and tags.`{TAG_ROLE}` = '{ROLE_TRIAL}'"
            ),
            max_results=50000,
        )
        return {int(r.data.tags[TAG_TRIAL]): r for r in runs}

    def log_trial(
        self,
        family_run_id: str,
        family: str,
        trial: optuna.trial.FrozenTrial,
        *,
        state: optuna.trial.TrialState,
        value: float | None,
        end_time: int,
        run_id: str | None = None,
    ) -> str:
        """Log one finished trial (``state``/``value`` as told to Optuna) as a trial run under
        its family run; ``run_id`` completes a run that a killed worker left half-logged."""
        status = _STATUS_OF_STATE[state]
        if run_id is None:
            run_id = self.client.create_run(
                self.experiment_id,
                start_time=_ms(trial.datetime_start),
                run_name=_trial_run_name(family, trial.number),
                tags=self._trial_tags(family_run_id, family, trial),
            ).info.run_id
        metrics = _trial_metrics(trial, value, end_time)
        # Logging the same params again is allowed (MLflow refuses only a changed value).
        self.client.log_batch(run_id, metrics=metrics, params=params_of(attrs.config_of(trial)))
        self.client.set_terminated(run_id, status=status, end_time=end_time)
        return run_id

    def log_finished(
        self, family_run_id: str, family: str, trial: optuna.trial.FrozenTrial,
        *, run_id: str | None = None,
    ) -> str:
        """:meth:`log_trial` for a trial already told to Optuna (complete, pruned or failed)."""
        # Optuna keeps a pruned trial's last fold score as its value: that is no `rmse`.
        value = trial.value if trial.state == optuna.trial.TrialState.COMPLETE else None
        end_time = _ms(trial.datetime_complete)
        return self.log_trial(
            family_run_id, family, trial, state=trial.state, value=value, end_time=end_time,
            run_id=run_id,
        )

    def log_killed(self, family_run_id: str, family: str, trial: optuna.trial.FrozenTrial) -> str:
        """Close the run of a trial whose worker died or was interrupted as KILLED.

        Called by the one worker that failed the trial in Optuna, so the run is made at most
        once: an existing run (left RUNNING, or logged just before the worker died) is reused.
        """
        reason = str(trial.system_attrs.get(ATTR_KILLED, "the trial's worker stopped"))
        killed = RunStatus.to_string(RunStatus.KILLED)
        existing = self.trial_runs(family_run_id).get(trial.number)
        if existing is not None:
            self.client.set_tag(existing.info.run_id, TAG_ERROR, reason)
            self.client.set_terminated(existing.info.run_id, status=killed)
            return existing.info.run_id
        tags = self._trial_tags(family_run_id, family, trial)
        tags[TAG_ERROR] = reason
        run = self.client.create_run(
            self.experiment_id,
            start_time=_ms(trial.datetime_start),
            run_name=_trial_run_name(family, trial.number),
            tags=tags,
        )
        if trial.params:
            self.client.log_batch(run.info.run_id, params=params_of(attrs.config_of(trial)))
        self.client.set_terminated(run.info.run_id, status=killed)
        return run.info.run_id

    def _trial_tags(
        self, family_run_id: str, family: str, trial: optuna.trial.FrozenTrial
    ) -> dict[str, str]:
        tags = self._child_tags(
            family_run_id, ROLE_TRIAL, **{TAG_FAMILY: family, TAG_TRIAL: str(trial.number)}
        )
        error = trial.user_attrs.get(attrs.ATTR_ERROR)
        if error:
            tags[TAG_ERROR] = str(error)[:5000]
        return tags

    def finish_family(
        self,
        family_run_id: str,
        best: optuna.trial.FrozenTrial | None,
        *,
        counts: Mapping[str, int],
        error: str | None,
    ) -> None:
        """Log the family's best trial (metrics, configuration, number) and close its run:
        FAILED with the first trial error when no trial completed."""
        now = int(time.time() * 1000)
        metrics = [Metric(f"n_{state}", float(n), now, 0) for state, n in counts.items()]
        tags: list[RunTag] = []
        if best is None and error:
            tags.append(RunTag(TAG_ERROR, error[:5000]))
        if best is not None:
            metrics += _trial_metrics(best, best.value, now, with_folds=False)
            config = attrs.config_of(best)
            tags += [
                RunTag(TAG_BEST_TRIAL, str(best.number)),
                RunTag(TAG_BEST_CONFIG, json.dumps(config, sort_keys=True)[:5000]),
            ]
            metrics.append(Metric("best_trial", float(best.number), now, 0))
        self.client.log_batch(family_run_id, metrics=metrics, tags=tags)
        if best is not None:
            params = params_of(config)
            try:
                self.client.log_batch(family_run_id, params=params)
            except MlflowException:
                # Every worker of a family finishes it, often at the same moment: MLflow's SQL
                # store looks for a param, then inserts it, so of two workers logging the
                # same params the later insert can fail (a UNIQUE constraint) although both
                # logged the same values. Only params that differ are worth a warning.
                logged = self.client.get_run(family_run_id).data.params
                if any(logged.get(param.key) != param.value for param in params):
                    # MLflow params are immutable: when a resumed study found a better trial,
                    # the run keeps the first best's params and the tags above carry it.
                    _logger.warning("family run %s keeps its earlier best params",
                                    family_run_id)
        status = RunStatus.FAILED if best is None else RunStatus.FINISHED
        self.client.set_terminated(family_run_id, status=RunStatus.to_string(status))

    def fail_run(self, run_id: str, status: str = "FAILED") -> None:
        """Close a run that was left open by an error or an interruption."""
        self.client.set_terminated(run_id, status=status)


def _trial_run_name(family: str, number: int) -> str:
    return f"{family}-{number:03d}"


def _trial_metrics(
    trial: optuna.trial.FrozenTrial,
    value: float | None,
    timestamp: int,
    *,
    with_folds: bool = True,
) -> list[Metric]:
    metrics: list[Metric] = []
    if value is not None:
        metrics.append(Metric("rmse", float(value), timestamp, 0))
    for key in (attrs.ATTR_MAE, attrs.ATTR_R2, attrs.ATTR_RMSE_STD):
        if key in trial.user_attrs:
            metrics.append(Metric(key, float(trial.user_attrs[key]), timestamp, 0))
    folds = [float(v) for v in trial.user_attrs.get(attrs.ATTR_FOLD_RMSE, [])]
    if with_folds:
        for step, fold in enumerate(folds):
            metrics.append(Metric("fold_rmse", fold, timestamp, step))
        if value is None and folds:
            # A pruned trial: its mean over the folds it ran, named apart from `rmse` so that
            # sorting by rmse compares complete trials only.
            metrics.append(Metric("partial_rmse", sum(folds) / len(folds), timestamp, 0))
    return metrics


class BackgroundLogger:
    """Runs logging calls on one background thread, in order, off the trial's critical path.

    :meth:`flush` waits until everything submitted is logged and re-raises the first error a
    call hit, so nothing is lost silently when the sweep ends.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], object] | None] = queue.Queue()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._work, name="sweep-logger", daemon=True)
        self._thread.start()

    def submit(self, call: Callable[[], object]) -> None:
        """Queue one logging call; then raise the first error an earlier call hit (e.g. the
        tracking server is gone), so the sweep stops instead of running trials it cannot log.

        The call is queued even then: it is for a trial already told to Optuna, and the
        cleanup after the error (:meth:`close`) still tries it.
        """
        self._queue.put(call)
        if self._errors:
            self.flush()

    def _work(self) -> None:
        while True:
            call = self._queue.get()
            try:
                if call is None:
                    return
                call()
            except BaseException as error:  # noqa: BLE001 - re-raised by flush()
                self._errors.append(error)
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        """Block until every submitted call ran; raise the first error any of them hit."""
        self._queue.join()
        if self._errors:
            error = self._errors[0]
            self._errors.clear()
            raise error

    def close(self) -> None:
        """Flush and stop the thread."""
        try:
            self.flush()
        finally:
            self._queue.put(None)
            self._thread.join()


class TrialLogProcess:
    """Logs trial runs (:meth:`SweepTracker.log_finished`) in order from one helper process.

    A process, not a thread: MLflow's client is Python code (SQLAlchemy, requests) that holds
    the GIL. On a thread beside the trials it took the trials' time, and waiting for the GIL
    after each write it fell behind the trials over HTTP (the sweep then waited for it at the
    end). The helper starts at once (its imports overlap the sweep's set-up), ignores Ctrl-C
    (the sweep flushes it while cleaning up) and dies with the sweep: what a SIGKILL loses is
    logged later from the trials (:mod:`sweeper.orphans`).

    Args:
        tracking_uri: The tracking store to log to.
        tracker: The sweep's tracker in this process (its root run, experiment and tags).
        niceness: Added to the helper's CPU niceness before it imports anything, so that
            where the scheduler puts it beside a trial, the trial keeps most of the core.
        helper: The helper process, already started (:func:`sweeper.prestart.start_trial_logger`,
            before the command's imports); else one is started now, at ``niceness``. Closed
            with this logger.
    """

    def __init__(
        self,
        tracking_uri: str,
        tracker: SweepTracker,
        *,
        niceness: int = 0,
        helper: concurrent.futures.ProcessPoolExecutor | None = None,
    ) -> None:
        self._pool = helper if helper is not None else start_trial_logger(niceness)
        # Everything the helper's tracker needs is passed in, with this process's environment
        # (MLflow's settings, such as the HTTP retries, made after a prestarted helper
        # started): the helper makes no request before its first trial, so a tracking server
        # that is away fails a trial's logging (reported by flush), not the helper's set-up.
        self._pending: list[concurrent.futures.Future[object]] = [self._pool.submit(
            _init_trial_logger, dict(os.environ), tracking_uri, tracker.root_run_id,
            tracker.sweep_name, tracker.experiment_id, tracker.source_tags,
        )]
        self._finishes: dict[str, concurrent.futures.Future[object]] = {}

    def submit(self, family_run_id: str, family: str, trial: optuna.trial.FrozenTrial) -> None:
        """Queue the run of a finished trial; then raise the first error an earlier one hit
        (as :meth:`BackgroundLogger.submit`: the call is queued even then)."""
        self._pending.append(self._pool.submit(_log_finished, family_run_id, family, trial))
        # Forget what is logged already; keep what is queued, and what failed (to raise it).
        self._pending = [f for f in self._pending if not f.done() or f.exception() is not None]
        if any(f.done() for f in self._pending):
            self.flush()

    def finish_family(self, family_run_id: str, *args: Any, **kwargs: Any) -> None:
        """Queue :meth:`SweepTracker.finish_family` (its arguments), after the family's trial
        runs."""
        finish = self._pool.submit(_tracker_call, "finish_family", family_run_id, *args,
                                   **kwargs)
        self._pending.append(finish)
        self._finishes[family_run_id] = finish

    def family_finished(self, family_run_id: str) -> None:
        """Block until the family's finish queued here (if any) is logged, with the trial
        runs queued before it; raise the error it hit."""
        finish = self._finishes.get(family_run_id)
        if finish is not None:
            finish.result()

    def log_dataset(self, *args: Any, **kwargs: Any) -> None:
        """Queue :meth:`SweepTracker.log_dataset` (its arguments)."""
        self._pending.append(self._pool.submit(_tracker_call, "log_dataset", *args, **kwargs))

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str) -> None:
        """Queue :meth:`SweepTracker.log_artifacts` (its arguments): the files must stay as
        they are until it is logged (:meth:`flush`)."""
        self._pending.append(self._pool.submit(
            _tracker_call, "log_artifacts", run_id, local_dir, artifact_path
        ))

    def flush(self) -> None:
        """Block until every queued run is logged; raise the first error any of them hit."""
        pending, self._pending = self._pending, []
        errors = [f.exception() for f in pending]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first

    def close(self) -> None:
        """Flush and stop the helper."""
        try:
            self.flush()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


class TrialLogThread:
    """:class:`TrialLogProcess`'s interface on a :class:`BackgroundLogger` thread: for a worker
    that has no core to spare for a helper process (see ``sweeper.runner._trial_logs``)."""

    def __init__(self, tracker: SweepTracker) -> None:
        self._tracker = tracker
        self._logger = BackgroundLogger()
        self._finishes: dict[str, concurrent.futures.Future[None]] = {}

    def submit(self, family_run_id: str, family: str, trial: optuna.trial.FrozenTrial) -> None:
        """Queue the run of a finished trial (as :meth:`TrialLogProcess.submit`)."""
        self._logger.submit(lambda: self._tracker.log_finished(family_run_id, family, trial))

    def finish_family(self, family_run_id: str, *args: Any, **kwargs: Any) -> None:
        """Queue :meth:`SweepTracker.finish_family` (as :meth:`TrialLogProcess.finish_family`)."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def finish() -> None:
            try:
                self._tracker.finish_family(family_run_id, *args, **kwargs)
            except BaseException as error:
                done.set_exception(error)
                raise  # for flush, too
            done.set_result(None)

        self._finishes[family_run_id] = done
        self._logger.submit(finish)

    def family_finished(self, family_run_id: str) -> None:
        """As :meth:`TrialLogProcess.family_finished`."""
        finish = self._finishes.get(family_run_id)
        if finish is not None:
            finish.result()

    def log_dataset(self, *args: Any, **kwargs: Any) -> None:
        """Queue :meth:`SweepTracker.log_dataset` (as :meth:`TrialLogProcess.log_dataset`)."""
        self._logger.submit(lambda: self._tracker.log_dataset(*args, **kwargs))

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str) -> None:
        """Queue :meth:`SweepTracker.log_artifacts` (as :meth:`TrialLogProcess.log_artifacts`)."""
        self._logger.submit(lambda: self._tracker.log_artifacts(run_id, local_dir, artifact_path))

    def flush(self) -> None:
        self._logger.flush()

    def close(self) -> None:
        self._logger.close()


_process_tracker: SweepTracker | None = None


def start_trial_logger_helper() -> None:
    """Initializer of the trial logger's helper process (after
    :func:`sweeper.processes.lowered_priority`, which imported this module and MLflow with
    it): import the tracking store's code too, then wait for :func:`_init_trial_logger`."""
    import atexit

    # lowered_priority made the helper ignore Ctrl-C and die with the sweep before the
    # imports. Exit as a forked child does, without tearing the interpreter down: with MLflow
    # loaded that teardown takes 0.8 s (measured), and the sweep waits for the helper to exit.
    # Every run is logged by then (the sweep flushes before it stops the helper).
    atexit.register(os._exit, 0)
    import_tracking_store()  # the store of this environment's MLflow tracking URI


def _init_trial_logger(
    environ: Mapping[str, str],
    tracking_uri: str,
    root_run_id: str,
    sweep_name: str,
    experiment_id: str,
    source_tags: Mapping[str, str],
) -> None:
    """The helper's first job: take the sweep's environment and make its tracker."""
    os.environ.clear()
    os.environ.update(environ)
    import_tracking_store(tracking_uri)  # imported already, unless the URI changed since
    settle_connections(tracking_uri)  # as the sweep decided (its environment says which)
    global _process_tracker
    _process_tracker = SweepTracker(
        MlflowClient(tracking_uri), root_run_id, sweep_name,
        experiment_id=experiment_id, source_tags=source_tags,
    )


def _helper_tracker() -> SweepTracker:
    if _process_tracker is None:
        raise RuntimeError("the trial logging process was not initialized")
    return _process_tracker


def _log_finished(family_run_id: str, family: str, trial: optuna.trial.FrozenTrial) -> str:
    return _helper_tracker().log_finished(family_run_id, family, trial)


def _tracker_call(method: str, *args: Any, **kwargs: Any) -> None:
    """``SweepTracker.<method>(*args, **kwargs)`` on the helper's tracker."""
    getattr(_helper_tracker(), method)(*args, **kwargs)


def ensure_experiment() -> None:
    """Create the experiment named by ``MLFLOW_EXPERIMENT_NAME`` if it is missing.

    ``mlflow.start_run`` looks the name up and then creates it: workers started together on a
    new experiment collide on that. Here a loser of the race finds the winner's experiment.
    """
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if not name or os.environ.get("MLFLOW_RUN_ID") or os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return
    client = MlflowClient()
    for _ in range(5):
        if client.get_experiment_by_name(name) is not None:
            return
        try:
            client.create_experiment(name)
            return
        except MlflowException:
            time.sleep(0.2)  # another worker created it first: look it up again


def import_tracking_store(uri: str | None = None) -> None:
    """Import the code of the tracking store at ``uri`` (default: MLflow's tracking URI)
    without opening it. A database store is MLflow's SQLAlchemy store: 1.2-1.4 s of CPU on
    2 cores to import, the most of a worker's set-up before its first trial, so a prestarted
    worker imports it while it waits for work. Opening the store, which may create it, is
    left to :func:`init_tracking_store` and its lock. Other stores import nothing here."""
    uri = uri or mlflow.get_tracking_uri()
    # The schemes MLflow itself gives its SQLAlchemy store (a driver after "+" aside).
    if urllib.parse.urlparse(uri).scheme.split("+")[0] in DATABASE_ENGINES:
        importlib.import_module("mlflow.store.tracking.sqlalchemy_store")


def init_tracking_store() -> None:
    """Create (or migrate) a local SQLite tracking store under a file lock.

    Two processes creating a fresh ``mlflow.db`` at once crash in MLflow's schema migration
    (workers started together on one machine do exactly that); the lock makes one create it
    while the others wait, then find it ready. Other stores need nothing.
    """
    uri = mlflow.get_tracking_uri()
    if not uri.startswith("sqlite:///"):
        return
    database = Path(uri[len("sqlite:///"):].split("?")[0])
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".init-lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            MlflowClient(uri).search_experiments(max_results=1)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
