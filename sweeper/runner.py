"""The sweep from start to end: config -> data -> one study per family -> champion -> registry.

The same code runs a sweep alone, as one of several workers on one sweep (``n_workers``, or
several commands with the same ``sweep_name``), and when resuming a killed sweep: every worker
joins the sweep's studies, takes trials from their pools until they are empty, waits for the
other workers' last trials, and then the champion is registered exactly once
(:mod:`sweeper.ledger` says how).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import mlflow
import optuna
import threadpoolctl
from mlflow import MlflowClient
from mlflow.entities import RunStatus
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from objectives import Family, resolve_families
from sweeper import ledger, report
from sweeper.ahead import Ahead
from sweeper.champion import (
    CHAMPION_ALIAS,
    ChampionModel,
    find_registered,
    log_and_register,
    mark_champion,
    prepare_model,
    refit,
    select_champion,
    trial_key,
    warm_up_model_logging,
)
from sweeper.config import SweepConfig, derive_model_name, new_sweep_name
from sweeper.connections import settle_connections
from sweeper.data import Dataset, Split, load_dataset, split_dataset
from sweeper.drawing import Drawer
from sweeper.errors import SweepError
from sweeper.objective import FamilyObjective
from sweeper.orphans import log_orphans, mark_flushed
from sweeper.preflight import check_tracking_server
from sweeper.prestart import (
    LOGGER_NICENESS,
    SPAWNED_ENV,
    WORKERS_ENV,
    Prestarted,
    drawing_processes,
    spare_core,
    start_worker,
)
from sweeper.progress import FamilyProgress, format_duration
from sweeper.study import (
    ATTR_RUN_ID,
    FamilyResult,
    deadline_after,
    is_done,
    join_family_study,
    open_storage,
    passed,
    redact,
    run_trial,
    study_name,
    summarize,
    unfinished,
)
from sweeper.tracking import (
    BackgroundLogger,
    SweepTracker,
    TrialLogProcess,
    TrialLogThread,
    ensure_experiment,
    init_tracking_store,
    source_tags_of,
)
from sweeper.trial_attrs import config_of

_logger = logging.getLogger(__name__)

#: Ledger study user attrs.
ATTR_ROOT_RUN = "mlflow_root_run_id"
ATTR_MODEL_NAME = "model_name"
ATTR_CHAMPION = "champion"
ATTR_DATA = "data"

#: Retries of MLflow's HTTP client unless the user set their own: about a minute of backoff
#: (1+2+4+8+16+32 s) rides out a tracking server restart, then the sweep fails clearly.
_HTTP_RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "6",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}

#: Seconds between checks while waiting for other workers' last trials.
_POLL = 0.2


class SweepInterrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM while the sweep runs: close runs as KILLED, exit non-zero,
    resumable."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclasses.dataclass(frozen=True)
class SweepOutcome:
    """What a finished sweep produced."""

    sweep_name: str
    root_run_id: str
    results: tuple[FamilyResult, ...]
    #: ``None`` in a worker spawned by a command: the command registers the champion.
    champion: ChampionModel | None
    #: Wall seconds of this command's phases: ``setup`` (data, storage, runs), ``trials``
    #: (this worker's trials and the wait for the others'), ``champion`` (refit, test, model
    #: logging and registration; absent when another worker registered it), ``drawing_wait``
    #: (what was left of the plots and report when that was done) and ``total``.
    timings: Mapping[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _FamilyWork:
    family: Family
    study: optuna.Study
    run_id: str
    objective: FamilyObjective
    progress: FamilyProgress
    #: What the family's run was finished with while the sweep went on (see
    #: ``_Worker.finish_early``), or ``None``.
    finished_as: tuple[Any, ...] | None = None


def run_sweep(
    config: SweepConfig, *, out: TextIO | None = None, prestarted: Prestarted | None = None
) -> SweepOutcome:
    """Run (or resume, or join) a whole sweep; report to ``out`` (default: stdout).

    Every input is validated before the first run or trial is made. The command's extra
    workers are ``prestarted`` ones where given (:mod:`sweeper.prestart`; the caller closes
    it), else started here.
    """
    out = out or sys.stdout
    timings: dict[str, float] = {}
    started = time.perf_counter()
    budget_deadline = _budget_deadline(config)
    families = resolve_families(config.families)
    for family in families:
        family.search_space()  # a bad YAML fails now, not after hours of other families
    dataset = load_dataset(config.data, config.target)
    split = split_dataset(
        dataset, test_size=config.test_size, seed=config.seed, cv_folds=config.cv_folds
    )
    _prepare_tracking()
    storage = open_storage(config.storage)
    init_tracking_store()
    ensure_experiment()
    sweep_name = config.sweep_name or new_sweep_name()
    fingerprint = {
        "n_trials": config.n_trials,
        "seed": config.seed,
        "cv_folds": config.cv_folds,
        "test_size": config.test_size,
        "target": config.target,
        "data_sha256": dataset.sha256,
    }
    print(f"sweep {sweep_name}: {len(families)} families x {config.n_trials} trials on "
          f"{dataset.name} ({len(dataset.frame)} rows, target {config.target!r})", file=out,
          flush=True)

    # Estimators run one thread each: parallelism comes from worker processes, and on this
    # data two threads per fit are slower than one.
    threadpoolctl.threadpool_limits(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    with _interruptible() as interruption, mlflow.start_run() as me:
        client = MlflowClient()
        sweep_study, created = ledger.claim_study(storage, sweep_name, seed=config.seed)
        if created:
            for key, value in fingerprint.items():
                sweep_study.set_user_attr(key, value)
            sweep_study.set_user_attr(
                ATTR_MODEL_NAME,
                config.model_name or derive_model_name(dataset.name, config.target),
            )
            sweep_study.set_user_attr(ATTR_DATA, config.data)
            sweep_study.set_user_attr(ATTR_ROOT_RUN, me.info.run_id)
        else:
            ledger.check_same(sweep_study, fingerprint)
        recorded = ledger.wait_for_attrs(sweep_study, (ATTR_ROOT_RUN, ATTR_MODEL_NAME))
        root_run_id = str(recorded[ATTR_ROOT_RUN])
        model_name = str(recorded[ATTR_MODEL_NAME])
        is_root = root_run_id == me.info.run_id
        if is_root:
            # The root is this command's own run: what the tracker reads from it is at hand.
            tracker = SweepTracker(client, root_run_id, sweep_name,
                                   experiment_id=me.info.experiment_id,
                                   source_tags=source_tags_of(me))
            tracker.mark_root(
                ledger.worker_id(),
                params=_root_params(config, logged=me.data.params),
                tags={"sweep.model_name": model_name, "sweep.data": dataset.source},
            )
        else:
            tracker = SweepTracker(client, root_run_id, sweep_name)
            print(f"joining sweep {sweep_name} (root run {root_run_id})", file=out, flush=True)
            tracker.mark_worker(me.info.run_id, ledger.worker_id())
            now = time.time()
            tracker.close_dead_worker_runs(lambda w: ledger.worker_is_dead(w, now, now))
            tracker.reopen(root_run_id)
        _print_links(tracker, out)
        worker = _Worker(storage, tracker, config, split, dataset, out, interruption, prestarted)
        if is_root:
            # Its digest and schema are computed from the data: by the trial logger, while
            # the first trials run.
            worker.trial_logs.log_dataset(
                dataset.frame, source=dataset.source, target=dataset.target, name=dataset.name
            )
        children = _spawn_workers(
            config, sweep_name, me.info.experiment_id, budget_deadline, prestarted
        )
        # The command's first process registers the champion (the workers it spawns leave it
        # to it) and draws the plots, in helper processes at the lowest CPU priority: each
        # family is drawn as soon as it is complete, with what the trials leave of the cores
        # (a whole core with one worker), and the rest when the trials are done. (With a time
        # budget the families end together, so they are drawn at the end.)
        spawned = SPAWNED_ENV in os.environ
        draw_early = budget_deadline is None and not spawned
        drawer = prestarted.take_drawer() if prestarted is not None else None
        if drawer is None:
            drawer = Drawer(config.storage, processes=drawing_processes(),
                            spare_core=spare_core(config))
        ahead: Ahead | None = None
        #: Study name -> the trial count whose plots the trial logger was given to log.
        plots_queued: dict[str, int] = {}
        try:
            if draw_early:
                drawer.start()
            if draw_early and spare_core(config):
                # With a core to spare, the helpers warm model logging up and prepare the
                # leading family's champion as the families complete (sweeper.ahead); beside
                # busy workers that would take the workers' time.
                ahead = Ahead(
                    drawer, split, numeric=dataset.numeric_columns,
                    categorical=dataset.categorical_columns, seed=config.seed,
                )
            elif not spawned:
                worker.logger.submit(warm_up_model_logging)
            works = [worker.join(family, sweep_name, fingerprint) for family in families]
            timings["setup"] = time.perf_counter() - started
            if budget_deadline is not None:
                worker.share_budget(works, budget_deadline)
            else:
                # The families this worker is done with whose last trials may still be running
                # in other workers: each is finished, drawn and considered ahead as soon as it is
                # complete, between this worker's trials (else, with several workers, most
                # families were drawn at the end: 1.0 s of waiting for plots after a default
                # sweep on 2 cores).
                left: list[_FamilyWork] = []

                def catch_up() -> None:
                    _catch_up(worker, left, works, drawer=drawer if draw_early else None,
                              ahead=ahead, plots_queued=plots_queued)

                for work in works:
                    worker.work_on(work, after_trial=catch_up if draw_early else None)
                    left.append(work)
                    catch_up()
            if not spawned:
                drawer.start()  # their imports overlap the wait for other workers' last trials
            worker.drain(works, budget_deadline)
            # Workers killed while this one worked left their own runs RUNNING.
            now = time.time()
            tracker.close_dead_worker_runs(lambda w: ledger.worker_is_dead(w, now, now))
            results = [worker.finish(work) for work in works]
            timings["trials"] = time.perf_counter() - started - timings["setup"]
            # A spawned worker is done here: its command registers the champion.
            champion = None if spawned else _settle_champion(
                results, families, storage, sweep_study, tracker, split, dataset, config,
                model_name, root_run_id, drawer, timings, ahead,
                family_finished=worker.trial_logs.family_finished,
                plots_queued=plots_queued, flush_logs=worker.trial_logs.flush,
            )
            worker.logged()
            if not is_root and not spawned:
                # This command reopened another command's root run (a resume or a join).
                client.set_terminated(root_run_id, RunStatus.to_string(RunStatus.FINISHED))
        except BaseException as error:
            worker.abort(error, None if is_root else root_run_id)
            _stop_children(children, error)
            if isinstance(error, KeyboardInterrupt):
                mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
            raise
        finally:
            drawer.close()
        worker.close()
        _wait_children(children)
    timings["total"] = time.perf_counter() - started
    outcome = SweepOutcome(sweep_name, root_run_id, tuple(results), champion, timings)
    if champion is not None:
        print_report(outcome, out=out)
    return outcome


def _catch_up(
    worker: _Worker,
    left: list[_FamilyWork],
    works: Sequence[_FamilyWork],
    *,
    drawer: Drawer | None,
    ahead: Ahead | None,
    plots_queued: dict[str, int],
) -> None:
    """For each family in ``left`` (this worker has run its share of it) that is complete
    now: take it out, finish its run, have ``drawer`` draw it and ``ahead`` prepare the new
    leader; then give the trial logger the plots drawn since (:func:`_queue_drawn_plots`)."""
    for work in list(left):
        if unfinished(work.study) != (0, 0):
            continue
        left.remove(work)
        worker.finish_early(work)
        if drawer is not None:
            drawer.family(work.study.study_name)
        if ahead is not None:
            _prepare_leader(ahead, works)
    if drawer is not None:
        _queue_drawn_plots(drawer, worker.trial_logs, works, plots_queued)


def _queue_drawn_plots(
    drawer: Drawer,
    trial_logs: TrialLogProcess | TrialLogThread,
    works: Sequence[_FamilyWork],
    queued: dict[str, int],
) -> None:
    """Give the trial logger the plots of each family drawn since the last call (recorded in
    ``queued``): they are logged while the trials go on, and the end of the sweep logs only
    those of the families drawn last (over HTTP each family's plots took 15-20 ms to log
    there, on SQLite 3-4 ms)."""
    for work in works:
        name = work.study.study_name
        if name in queued:
            continue
        drawn = drawer.ready(name)
        if drawn is None or not drawn.paths:
            continue
        trial_logs.log_artifacts(work.run_id, str(drawn.paths[0].parent), "plots")
        queued[name] = drawn.n_trials


def _grown_since_queued(queued: Mapping[str, int], n_trials: Mapping[str, int]) -> bool:
    """Whether a family whose plots were given to the trial logger (study name -> trial count,
    :func:`_queue_drawn_plots`) has more trials now (``n_trials``): its plots are redrawn in
    the same files, which that logger may still be reading.

    A family is drawn early once none of its trials is waiting or running, so this is for a
    sweep changed from outside (say, a trial added by hand), not a path of a normal sweep."""
    return any(n_trials.get(name, count) != count for name, count in queued.items())


def _prepare_leader(ahead: Ahead, works: Sequence[_FamilyWork]) -> None:
    """Have the leader of the complete families prepared while other families still run.

    Not once every family is complete: the end prepares the champion sooner (the model in
    this process and its figures in a helper, side by side) than one helper would.
    """
    complete = [
        summarize(work.study, work.family.name, work.run_id)
        for work in works
        if unfinished(work.study) == (0, 0)
    ]
    if len(complete) < len(works):
        ahead.consider(complete)


def _prepare_tracking() -> None:
    """Bound MLflow's HTTP retries and fail in seconds when the tracking server is away (not
    after MLflow's minutes of retries)."""
    for key, value in _HTTP_RETRY_DEFAULTS.items():
        os.environ.setdefault(key, value)
    # MLflow prints "View run … at" each time a run ends on a tracking server: once per trial.
    # The sweep prints its own link once instead (see _print_links).
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    check_tracking_server()
    # `mlflow server`'s defaults without uvloop delay each response on a kept-alive connection
    # by 40 ms: the sweep asks the server whether to keep connections alive.
    settle_connections(mlflow.get_tracking_uri())


def _print_links(tracker: SweepTracker, out: TextIO) -> None:
    """Where to watch the sweep in the MLflow UI, once per sweep (tracking servers only)."""
    uri = mlflow.get_tracking_uri().rstrip("/")
    if uri.startswith(("http://", "https://")):
        experiment = f"{uri}/#/experiments/{tracker.experiment_id}"
        print(f"View sweep {tracker.sweep_name} at: {experiment}/runs/{tracker.root_run_id}\n"
              f"View its runs at: {experiment}/runs", file=out, flush=True)


def run_champion(
    sweep_name: str, storage_url: str, *, data: str = "", out: TextIO | None = None
) -> SweepOutcome:
    """Reselect and register the champion of a sweep from its storage, at any time (e.g.
    after stopping workers early). Trials of dead workers are failed and replaced first."""
    out = out or sys.stdout
    if not sweep_name:
        raise SweepError("sweep_name: the champion entry point needs the name of a sweep")
    storage = open_storage(storage_url)
    try:
        sweep_study = optuna.load_study(storage=storage, study_name=sweep_name)
    except KeyError:
        raise SweepError(
            f"sweep_name: no sweep named {sweep_name!r} in storage {storage_url or 'the default journal'!r}"
        ) from None
    recorded = ledger.wait_for_attrs(
        sweep_study, (ATTR_ROOT_RUN, ATTR_MODEL_NAME, ATTR_DATA, "target", "seed"), timeout=5
    )
    dataset = load_dataset(data or str(recorded[ATTR_DATA]), str(recorded["target"]))
    if dataset.sha256 != recorded["data_sha256"]:
        raise SweepError(
            f"data: {dataset.source} is not the data sweep {sweep_name!r} ran on (sha256 "
            f"{dataset.sha256[:12]}…, expected {str(recorded['data_sha256'])[:12]}…)"
        )
    config = SweepConfig(
        sweep_name=sweep_name,
        storage=storage_url,
        data=dataset.source,
        target=str(recorded["target"]),
        seed=int(recorded["seed"]),
        cv_folds=int(recorded["cv_folds"]),
        test_size=float(recorded["test_size"]),
        n_trials=int(recorded["n_trials"]),
    )
    split = split_dataset(
        dataset, test_size=config.test_size, seed=config.seed, cv_folds=config.cv_folds
    )
    _prepare_tracking()
    init_tracking_store()
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    families = [f for f in resolve_families("all") if study_name(sweep_name, f.name) in names]
    with mlflow.start_run() as me:
        client = MlflowClient()
        root_run_id = str(recorded[ATTR_ROOT_RUN])
        tracker = SweepTracker(client, root_run_id, sweep_name)
        tracker.mark_worker(me.info.run_id, ledger.worker_id())
        now = time.time()
        tracker.close_dead_worker_runs(lambda w: ledger.worker_is_dead(w, now, now))
        results = []
        for family in families:
            study = optuna.load_study(storage=storage, study_name=study_name(sweep_name, family.name))
            run_id = str(study.user_attrs[ATTR_RUN_ID])
            ledger.reap_dead(storage, study, partial(tracker.log_killed, run_id, family.name))
            log_orphans(storage, study, tracker, run_id, family.name, seed=config.seed)
            result = summarize(study, family.name, run_id)
            if not unfinished(study)[1]:
                tracker.finish_family(run_id, result.best, counts=result.counts,
                                      error=result.first_error)
            results.append(result)
        drawer = Drawer(storage_url, processes=drawing_processes())
        timings: dict[str, float] = {}
        try:
            champion = _settle_champion(
                results, families, storage, sweep_study, tracker, split, dataset, config,
                str(recorded[ATTR_MODEL_NAME]), root_run_id, drawer, timings,
            )
        finally:
            drawer.close()
    outcome = SweepOutcome(sweep_name, root_run_id, tuple(results), champion, timings)
    print_report(outcome, out=out)
    return outcome


class _Interruption:
    """The signal that interrupted the sweep, once one came (see :func:`_interruptible`)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def check(self) -> None:
        """Raise :class:`SweepInterrupted` again if a signal came: after a trial, whose code
        may have turned the interruption into an error of its own."""
        if self.signum is not None:
            raise SweepInterrupted(self.signum)


@contextmanager
def _interruptible() -> Iterator[_Interruption]:
    """Turn SIGTERM, and SIGINT where Python's own handler has it (not where it is ignored,
    as in a background job), into :class:`SweepInterrupted` in the main thread while the
    sweep runs, and remember that one came.

    The exception is raised wherever the main thread is, and the code there may turn it into
    an error of its own: Optuna's journal storage, interrupted while a trial wrote a suggested
    parameter, raised FileNotFoundError from its lock's cleanup; the trial ended as failed,
    and the sweep went on to register a champion and exit 0 after a SIGTERM. The worker checks
    after every trial (:meth:`_Interruption.check`).
    """
    came = _Interruption()

    def handler(signum: int, frame: FrameType | None) -> None:
        came.signum = signum
        raise SweepInterrupted(signum)

    signums = [signal.SIGTERM]
    # Python leaves SIGINT ignored in a process started with it ignored (a background job).
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signums.append(signal.SIGINT)
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield came
    finally:
        for signum, before in previous.items():
            signal.signal(signum, signal.SIG_DFL if before is None else before)


def library_defaults(family: Family) -> dict[str, Any]:
    """The estimator's own defaults for its searched parameters: the first trial of every
    family, so a sweep is never worse than untuned models.

    A parameter the estimator leaves unset (``None``: the library picks a value when it fits)
    takes the value the library documents (the family's ``UNSET_DEFAULTS``). A default outside
    the search space takes the nearest value the space allows (no regularization, 0, becomes
    the 1.0e-8 a log-scaled range starts at); one with no number, such as a forest's
    unlimited ``max_depth``, is left to the sampler.
    """
    defaults = family.estimator_class().get_params()
    for name, value in family.unset_defaults.items():
        if defaults.get(name) is None:
            defaults[name] = value
    first: dict[str, Any] = {}
    for name, distribution in family.search_space().searched.items():
        value = _nearest_allowed(distribution, defaults.get(name))
        if value is not None:
            first[name] = value
    return first


def _nearest_allowed(distribution: BaseDistribution, value: Any) -> Any:
    """``value`` if ``distribution`` contains it; for a number outside a numeric range, the
    nearest bound; else ``None``."""
    if value is None:
        return None
    try:
        if distribution._contains(distribution.to_internal_repr(value)):
            return value
    except (TypeError, ValueError):
        pass  # not of the distribution's kind, or no value on its scale (0 on a log scale)
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if numeric and isinstance(distribution, (FloatDistribution, IntDistribution)):
        kind = int if isinstance(distribution, IntDistribution) else float
        nearest = kind(min(max(value, distribution.low), distribution.high))
        if distribution._contains(distribution.to_internal_repr(nearest)):
            return nearest
    return None


class _Worker:
    """This process's share of the sweep: pops trials, runs them, logs them off the critical
    path, beats for them, and cleans up after an interruption."""

    def __init__(
        self,
        storage: BaseStorage,
        tracker: SweepTracker,
        config: SweepConfig,
        split: Split,
        dataset: Dataset,
        out: TextIO,
        interruption: _Interruption,
        prestarted: Prestarted | None = None,
    ) -> None:
        self.out = out
        self.interruption = interruption
        self.storage = storage
        self.tracker = tracker
        self.config = config
        self.split = split
        self.dataset = dataset
        #: Where trial runs are logged (see _trial_logs); the thread runs this process's own
        #: background calls (warming up model logging).
        self.trial_logs = _trial_logs(tracker, config, prestarted)
        self.logger = BackgroundLogger()
        self.heartbeat = ledger.Heartbeat(storage)
        self.current: tuple[_FamilyWork, int] | None = None
        #: Families still open (not yet finished) in this worker, and every one it joined.
        self.joined: list[_FamilyWork] = []
        #: Families finished whose trial runs or finish the trial logger may still be logging.
        self.unlogged: list[_FamilyWork] = []
        self.studies: list[optuna.Study] = []

    def join(self, family: Family, sweep_name: str, fingerprint: dict[str, Any]) -> _FamilyWork:
        name = study_name(sweep_name, family.name)
        created: list[str] = []

        def create_run() -> str:
            created.append(self.tracker.create_family_run(family.name, name))
            return created[-1]

        study, run_id = join_family_study(
            self.storage,
            name,
            seed=self.config.seed,
            n_trials=self.config.n_trials,
            first_params=library_defaults(family),
            pruning=self.config.pruning,
            fingerprint=fingerprint,
            create_run=create_run,
        )
        if not created:
            # Another worker's or an earlier attempt's run, which may have been closed since.
            self.tracker.reopen(run_id)
        objective = FamilyObjective(
            family,
            self.split,
            numeric=self.dataset.numeric_columns,
            categorical=self.dataset.categorical_columns,
            seed=self.config.seed,
        )
        progress = FamilyProgress(
            family.name,
            self.config.n_trials,
            quiet=self.config.verbose == 0,
            initial=_progress_of(study)[0],
        )
        work = _FamilyWork(family, study, run_id, objective, progress)
        self.joined.append(work)
        self.studies.append(study)
        # A resumed sweep: runs that a killed worker owed for trials it had finished.
        self._log_orphans(work)
        return work

    def _log_orphans(self, work: _FamilyWork) -> None:
        logged = log_orphans(
            self.storage, work.study, self.tracker, work.run_id, work.family.name,
            seed=self.config.seed,
        )
        if logged:
            _logger.info("%s: logged %d trial runs a stopped worker left out",
                         work.family.name, logged)

    def _reap(self, work: _FamilyWork) -> None:
        ledger.reap_dead(
            self.storage,
            work.study,
            on_killed=partial(self.tracker.log_killed, work.run_id, work.family.name),
        )

    def work_on(self, work: _FamilyWork, after_trial: Callable[[], None] | None = None) -> None:
        """Run trials of one family until its pool is empty or its timeout passed, calling
        ``after_trial()`` after each."""
        deadline = deadline_after(self.config.timeout)
        work.progress.start()  # its clock: the families before it are not its time
        while not passed(deadline) and self._run_one(work):
            if after_trial is not None:
                after_trial()

    def _run_one(self, work: _FamilyWork) -> bool:
        """Pop and run one trial of ``work``; false when the pool is empty."""
        self._reap(work)
        with ledger.deferred_signals():
            popped = ledger.pop_waiting(self.storage, work.study)
            if popped is None:
                return False
            trial, trial_id = popped
            self.heartbeat.add(trial_id)
            self.current = (work, trial_id)
        state, value = run_trial(trial, work.objective)
        # An interruption that the trial's code turned into another error (or swallowed)
        # interrupts here: the trial is failed as interrupted and replaced, not told as failed.
        self.interruption.check()
        # Tell first, so the next trial's sampler and pruner see this result whatever the
        # tracking store's latency (a seeded sweep runs the same trials with or without
        # tracking); the run is logged in the background. A SIGKILL before it is logged
        # leaves an orphan that another worker or the resume logs (sweeper.orphans); an
        # interruption waits here until the run is queued, and the cleanup logs it.
        with ledger.deferred_signals():
            if state == TrialState.COMPLETE:
                work.study.tell(trial.number, value)
            else:
                work.study.tell(trial.number, state=state)
            self.heartbeat.discard(trial_id)
            self.current = None
            frozen = self.storage.get_trial(trial_id)
            self.trial_logs.submit(work.run_id, work.family.name, frozen)
        self._show(work, frozen)
        return True

    def _show(self, work: _FamilyWork, trial: FrozenTrial) -> None:
        done, best = _progress_of(work.study)
        work.progress.update(trial, done=done, best=best)
        if self.config.verbose >= 2:
            shown = (f"rmse {trial.value:,.1f}" if trial.state == TrialState.COMPLETE
                     else "pruned" if trial.state == TrialState.PRUNED else "failed")
            print(f"  {work.family.name}-{trial.number:03d}: {shown}", file=self.out, flush=True)

    def share_budget(self, works: Sequence[_FamilyWork], deadline: float) -> None:
        """Run trials of all families until the time budget is spent, giving each family a
        share of this worker's time that halves with each rank it stands behind the leader
        (by best CV RMSE so far): a family that keeps losing gets less and less of it. A
        family without a complete trial yet stands first, so every family gets its defaults
        trial early."""
        spent = {work.family.name: 0.0 for work in works}
        open_pools = list(works)
        for work in works:
            work.progress.start()  # the families run side by side
        while open_pools and not passed(deadline):
            ranked = sorted(open_pools, key=lambda w: (_best_value(w.study), works.index(w)))
            work = min(
                ranked, key=lambda w: (spent[w.family.name] * 2.0 ** ranked.index(w), ranked.index(w))
            )
            started = time.monotonic()
            if not self._run_one(work):
                open_pools.remove(work)
            spent[work.family.name] += time.monotonic() - started

    def drain(self, works: Sequence[_FamilyWork], budget_deadline: float | None) -> None:
        """Help with what is left anywhere (replacements of dead workers' trials), then wait
        until no other worker is running a trial of these families. What the trial logger
        still has queued is not waited for (see :meth:`logged`)."""
        deadline = budget_deadline or deadline_after(self.config.timeout * max(1, len(works)))
        while True:
            busy = False
            for work in works:
                if not passed(deadline) and self._run_one(work):
                    busy = True
                    continue
                self._reap(work)
                waiting, running = unfinished(work.study)
                if running or (waiting and not passed(deadline)):
                    busy = True
            if not busy:
                return
            self.trial_logs.flush()  # while other workers run: an error is raised sooner
            time.sleep(_POLL)

    def finish_early(self, work: _FamilyWork) -> None:
        """Finish a family's run now if none of its trials is left to run (one worker, or the
        last of several), queued after its trial runs: the end of the sweep then has nothing
        to log for it unless the study changed since (:meth:`finish`). Over HTTP finishing a
        run is three round trips (0.1-0.15 s), made for every family at the end before."""
        waiting, running = unfinished(work.study)
        if waiting or running:
            return
        result = summarize(work.study, work.family.name, work.run_id)
        self.trial_logs.finish_family(
            work.run_id, result.best, counts=result.counts, error=result.first_error
        )
        # Taken as done: a failure is raised by the next flush (finish() or logged()).
        work.finished_as = _finished_as(result)

    def finish(self, work: _FamilyWork) -> FamilyResult:
        """Summarize a family and write its best trial onto its run (idempotent)."""
        self._log_orphans(work)  # of other workers that died during the sweep
        result = summarize(work.study, work.family.name, work.run_id)
        if work.finished_as != _finished_as(result):
            # An early finish (finish_early) queued before lands first, or raises.
            self.trial_logs.flush()
            self.tracker.finish_family(
                work.run_id, result.best, counts=result.counts, error=result.first_error
            )
        self.joined.remove(work)
        # Until the trial logger has logged its last runs and finishes (logged()).
        self.unlogged.append(work)
        # The last trials may have been another worker's: the display ends on the study's count.
        done, best = _progress_of(work.study)
        work.progress.close(done=done, best=best)
        return result

    def logged(self) -> None:
        """Wait until the trial logger has logged everything queued (the last trial runs, the
        families it finishes early), or raise the first error it hit.

        Called after the champion is registered, not before: at the end of a sweep the
        logger's last requests (the last trial runs and family finishes; waiting for them took
        0.28-0.30 s over HTTP, 0.08-0.09 s on SQLite in 3-trial sweeps) overlap the champion's,
        which need none of them.
        """
        self.trial_logs.flush()
        self.unlogged.clear()

    def abort(self, error: BaseException, reopened_root: str | None) -> None:
        """After an error or interruption: log what finished, fail the trial that was
        running (its replacement is enqueued), and close every run this worker opened."""
        interrupted = isinstance(error, KeyboardInterrupt)
        status = RunStatus.to_string(RunStatus.KILLED if interrupted else RunStatus.FAILED)
        if interrupted and threading.current_thread() is threading.main_thread():
            # Ctrl-C reaches every process of the group and the parent forwards it too: a
            # second signal must not cut this cleanup short (it takes a few seconds).
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with ledger.deferred_signals():
            try:
                self.trial_logs.close()
                self.logger.close()
                self._mark_flushed()
            except Exception as lost:  # noqa: BLE001 - the original error matters more
                # Not marked flushed: a resume logs what is missing (sweeper.orphans).
                _logger.warning("could not log every finished trial: %s", _first_line(lost))
            if self.current is not None:
                work, trial_id = self.current
                reason = f"interrupted ({error})" if interrupted else f"sweep failed ({error!r})"
                try:
                    frozen = self.storage.get_trial(trial_id)
                    killed = ledger.kill_trial(self.storage, work.study, frozen, reason)
                    if killed is not None:
                        self.tracker.log_killed(work.run_id, work.family.name, killed)
                except Exception as lost:  # noqa: BLE001
                    _logger.warning("could not close the interrupted trial: %s", _first_line(lost))
            self.heartbeat.stop()
            run_ids = [w.run_id for w in (*self.joined, *self.unlogged)]
            if reopened_root is not None:
                run_ids.append(reopened_root)
            for run_id in run_ids:
                try:
                    self.tracker.fail_run(run_id, status)
                except Exception as lost:  # noqa: BLE001
                    # The tracking server is probably gone: a resume closes what is left.
                    _logger.warning("could not close runs %s: %s", run_ids, _first_line(lost))
                    break

    def _mark_flushed(self) -> None:
        """Every trial this worker finished has its run: nobody needs to look for orphans."""
        me = ledger.worker_id()
        for study in self.studies:
            mark_flushed(self.storage, study, me)

    def close(self) -> None:
        self.trial_logs.close()
        self.logger.close()
        self._mark_flushed()
        self.heartbeat.stop()
        for work in self.joined:
            work.progress.close()


def _finished_as(result: FamilyResult) -> tuple[Any, ...]:
    """What :meth:`SweepTracker.finish_family` writes for ``result``, to tell whether a run
    finished earlier needs finishing again."""
    best = result.best
    return (
        tuple(sorted(result.counts.items())),
        None if best is None else (best.number, best.value),
        result.first_error,
    )


def _trial_logs(
    tracker: SweepTracker, config: SweepConfig, prestarted: Prestarted | None = None
) -> TrialLogProcess | TrialLogThread:
    """A helper process when this machine has a core to spare for it (the ``prestarted`` one
    where there is one), else a thread.

    The process takes MLflow's client off the trials' GIL: with 1 worker on 2 cores the trials
    took 1.07x their untracked time, against 1.14x with the thread (bench/run.py). When every
    core runs a worker, its start-up (imports, about 1.5 s of CPU per worker) and its share
    of the cores cost more than that: the default sweep on 2 cores took 43.7 and 51.5 s with
    the thread, 53.3 and 54.9 s with the process, in alternating runs.
    """
    if spare_core(config):
        helper = prestarted.take_trial_logger() if prestarted is not None else None
        return TrialLogProcess(mlflow.get_tracking_uri(), tracker, niceness=LOGGER_NICENESS,
                               helper=helper)
    return TrialLogThread(tracker)


def _settle_champion(
    results: Sequence[FamilyResult],
    families: Sequence[Family],
    storage: BaseStorage,
    sweep_study: optuna.Study,
    tracker: SweepTracker,
    split: Split,
    dataset: Dataset,
    config: SweepConfig,
    model_name: str,
    root_run_id: str,
    drawer: Drawer,
    timings: dict[str, float],
    ahead: Ahead | None = None,
    family_finished: Callable[[str], None] | None = None,
    plots_queued: Mapping[str, int] | None = None,
    flush_logs: Callable[[], None] | None = None,
) -> ChampionModel:
    """Select the champion; register it once, however many workers get here. ``ahead`` holds
    what was prepared while the last families ran (used when it is the champion's);
    ``family_finished(run_id)`` waits until a family run finished in the background is
    logged; ``plots_queued`` names the families whose plots the background logger was given
    (study name -> trial count), which ``flush_logs`` waits for."""
    if config.time_budget > 0 and not any(r.best is not None or r.first_error for r in results):
        # Nothing failed: the budget ended before a trial could (set-up counts toward it).
        raise SweepError(
            f"time_budget: no trial completed within {config.time_budget:g} s of the sweep's "
            "start (its set-up included); give a larger time_budget, or resume the sweep "
            f"(sweep_name={sweep_study.study_name}) to run the trials left waiting"
        )
    champion = select_champion(results)
    if champion.best is None:  # select_champion returns only families with a best trial
        raise RuntimeError("champion without a best trial")
    key = f"{champion.family}/{champion.best.number}"
    claim_name = f"{sweep_study.study_name}.champion.{champion.family}-{champion.best.number}"
    claim = ledger.OwnedClaim(storage, claim_name, seed=config.seed)
    while True:
        registered = sweep_study.user_attrs.get(ATTR_CHAMPION)
        if registered and registered.get("key") == key:
            return ChampionModel(**{k: v for k, v in registered.items() if k != "key"})
        if claim.try_take():
            break
        time.sleep(_POLL)
    mark_champion(tracker.client, tracker.experiment_id, tracker.sweep_name, champion.run_id)
    registered_model = find_registered(champion, model_name, root_run_id)
    if registered_model is not None:
        sweep_study.set_user_attr(ATTR_CHAMPION, {"key": key, **dataclasses.asdict(registered_model)})
        return registered_model
    # The plots are drawn in helper processes while the champion is logged and registered;
    # only what is left of the drawing when that is done is waited for.
    started = time.perf_counter()
    key_ahead = trial_key(champion.study_name, champion.best.number)
    columns = {"numeric": dataset.numeric_columns, "categorical": dataset.categorical_columns}

    def draw_champion() -> Future[report.ChampionFigures]:
        # A helper fits the champion itself and draws its figures while this process fits,
        # saves and logs it.
        return drawer.champion(champion.family, config_of(champion.best), split, **columns,
                               seed=config.seed)

    drawing: Future[report.ChampionFigures] | None = None
    if ahead is None or key_ahead not in ahead.keys:
        drawing = draw_champion()  # first: the helpers take jobs in order
    n_trials = {r.study_name: _trial_count(storage, r.study_name) for r in results}
    if flush_logs is not None and _grown_since_queued(plots_queued or {}, n_trials):
        # Redrawn in place: the trial logger must be done with the earlier files first.
        flush_logs()
    drawer.prefetch(n_trials)
    if ahead is not None:
        ahead.adopt_warm_up()
    prepared = ahead.take(key_ahead) if ahead is not None else None
    figures: report.ChampionFigures | None = None
    if prepared is not None:
        _logger.info("the champion %s was prepared while the last families ran", key)
        test_metrics, prepared_model = prepared.test_metrics, prepared.model
        figures = prepared.figures
    else:
        if drawing is None:  # preparing it ahead failed
            drawing = draw_champion()
        family = next(f for f in families if f.name == champion.family)
        model = family.build_pipeline(
            config_of(champion.best), **columns, random_state=config.seed
        )
        test_metrics = refit(
            model, X_train=split.X_train, y_train=split.y_train, X_test=split.X_test,
            y_test=split.y_test,
        )
        prepared_model = prepare_model(
            model, X_train=split.X_train, directory=drawer.directory / "model"
        )
    if family_finished is not None:
        # Logging the model links the family run's metrics to it: its CV scores first (the
        # trial logger may still be logging them when the champion is the last family).
        family_finished(champion.run_id)
    registered_model = log_and_register(
        champion, prepared_model, test_metrics, X_train=split.X_train, model_name=model_name,
        root_run_id=root_run_id,
    )
    timings["champion"] = time.perf_counter() - started
    started = time.perf_counter()
    leaderboard = report.leaderboard_frame(results, champion.family, test_metrics["test_rmse"])
    if drawing is not None:
        figures = drawer.wait(drawing, "the champion's figures")
    _log_drawings(results, champion, n_trials, leaderboard, figures, drawer, tracker,
                  config=config, test_metrics=test_metrics, queued=plots_queued or {})
    timings["drawing_wait"] = time.perf_counter() - started
    sweep_study.set_user_attr(
        ATTR_CHAMPION, {"key": key, **dataclasses.asdict(registered_model)}
    )
    return registered_model


def _trial_count(storage: BaseStorage, name: str) -> int:
    return len(storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False))


def _log_drawings(
    results: Sequence[FamilyResult],
    champion: FamilyResult,
    n_trials: dict[str, int],
    leaderboard: Any,
    figures: report.ChampionFigures | None,
    drawer: Drawer,
    tracker: SweepTracker,
    *,
    config: SweepConfig,
    test_metrics: dict[str, float],
    queued: Mapping[str, int] | None = None,
) -> None:
    """Log the plots on each family run, and the leaderboard and champion report on the root
    run, as the helpers finish them. Made once per champion, by the worker that registers it.

    A family whose plots were ``queued`` on the trial logger from the same trial count is not
    logged again (one redrawn since is: the caller waited for that logger before the redraw,
    see :func:`_grown_since_queued`)."""
    queued = queued or {}
    champion_plots: tuple[Path, ...] = ()
    for result in results:
        count = n_trials[result.study_name]
        plots = drawer.family_plots(result.study_name, count)
        if plots and queued.get(result.study_name) != count:
            tracker.client.log_artifacts(result.run_id, str(plots[0].parent), "plots")
        if result.study_name == champion.study_name:
            champion_plots = plots
    report_dir = drawer.directory / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    if figures is not None and champion.best is not None:
        report.champion_page(
            figures,
            family=champion.family,
            config=config_of(champion.best),
            cv_rmse=float(champion.rmse),  # type: ignore[arg-type]
            test_metrics=test_metrics,
            leaderboard=leaderboard,
            out_dir=report_dir,
            seed=config.seed,
            extra_plots=champion_plots,
            title=f"Sweep {tracker.sweep_name}: champion {champion.family}",
        )
    # The leaderboard is logged even when the report could not be drawn.
    leaderboard.to_csv(report_dir / "leaderboard.csv", index=False)
    (report_dir / "leaderboard.md").write_text(report.leaderboard_markdown(leaderboard) + "\n")
    tracker.client.log_artifacts(tracker.root_run_id, str(report_dir), "report")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _progress_of(study: optuna.Study) -> tuple[int, float | None]:
    """``(done trials, best complete value or None)``, from one read of the study."""
    trials = study.get_trials(deepcopy=False)
    values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    return sum(is_done(t) for t in trials), (min(values) if values else None)


def _best_value(study: optuna.Study) -> float:
    """Best complete value so far; -inf (first in line) when the study has none yet."""
    values = [
        t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None
    ]
    return min(values) if values else float("-inf")


#: Environment variable carrying the budget's absolute end (epoch seconds) to spawned workers,
#: so that a worker that starts a few seconds late does not overrun the sweep's budget.
_DEADLINE_ENV = "SWEEP_BUDGET_ENDS_AT"


def _budget_deadline(config: SweepConfig) -> float | None:
    """The monotonic deadline of the whole-sweep time budget, or ``None`` without one."""
    if config.time_budget <= 0:
        return None
    ends_at = float(os.environ.get(_DEADLINE_ENV, time.time() + config.time_budget))
    return time.monotonic() + (ends_at - time.time())


def _spawn_workers(
    config: SweepConfig,
    sweep_name: str,
    experiment_id: str,
    deadline: float | None,
    prestarted: Prestarted | None = None,
) -> list[subprocess.Popen[bytes]]:
    """Start ``workers - 1`` more processes on the same sweep (one thread each): hand the
    work to ``prestarted`` ones first, start the others now."""
    if config.workers <= 1:
        return []
    argv: list[str] = []
    for key, value in config.as_params().items():
        if key == "sweep_name":
            value = sweep_name
        elif key == "n_workers":
            value = "1"
        elif key == "verbose":
            value = "0"  # one progress display per command: the parent's
        argv += [f"--{key}", value]
    env = dict(os.environ)
    env.pop("MLFLOW_RUN_ID", None)
    env[SPAWNED_ENV] = str(os.getpid())
    env[WORKERS_ENV] = str(config.workers)
    env["MLFLOW_EXPERIMENT_ID"] = experiment_id
    env.pop("MLFLOW_EXPERIMENT_NAME", None)
    if deadline is not None:
        env[_DEADLINE_ENV] = str(time.time() + (deadline - time.monotonic()))
    children = []
    for _ in range(config.workers - 1):
        child = prestarted.hand(argv, env) if prestarted is not None else None
        children.append(child if child is not None else start_worker(argv, env))
    return children


def _stop_children(children: Sequence[subprocess.Popen[bytes]], error: BaseException) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM if not isinstance(error, SweepInterrupted)
                              else error.signum)
    for child in children:
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _wait_children(children: Sequence[subprocess.Popen[bytes]]) -> None:
    codes = [child.wait() for child in children]
    if any(codes):
        # The sweep itself is complete (this process drained every study), so a worker that
        # failed late is reported, not fatal.
        _logger.warning("worker processes exited with %s", codes)


def _root_params(config: SweepConfig, *, logged: Mapping[str, str]) -> dict[str, str]:
    """The sweep's parameters to log on its root run: those not ``logged`` on it already.

    ``mlflow run`` logs the -P params with its own formatting, and params are immutable, so
    only the ones it did not log are added (resolved names are recorded as tags). A database
    password in the storage URL is redacted.
    """
    params = {k: v for k, v in config.as_params().items() if k not in logged}
    if "storage" in params:
        params["storage"] = redact(params["storage"])  # no database password in MLflow
    return params


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
    if champion is None:
        raise ValueError("print_report needs an outcome with a champion, but got None")
    rows = sorted(outcome.results, key=lambda r: (r.rmse is None, r.rmse or 0.0, r.family))
    print(f"\nLeaderboard of sweep {outcome.sweep_name} (CV rmse, lower is better)", file=out)
    print(f"  {'family':<24} {'complete':>8} {'pruned':>6} {'failed':>6} "
          f"{'best CV rmse':>20} {'time':>10} {'test rmse':>10}", file=out)
    for r in rows:
        if r.best is None:
            cv = "failed"
        else:
            std = r.best.user_attrs.get("rmse_std")
            cv = f"{r.rmse:,.1f}" + (f" ± {std:,.1f}" if std is not None else "")
        test = f"{champion.test_rmse:,.1f}" if r.family == champion.family else ""
        mark = " <- champion" if r.family == champion.family else ""
        print(f"  {r.family:<24} {r.n_complete:>8} {r.n_pruned:>6} {r.n_failed:>6} "
              f"{cv:>20} {format_duration(r.seconds):>10} {test:>10}{mark}", file=out)
    print(f"\nChampion: {champion.family} (run {champion.run_id}); test rmse "
          f"{champion.test_rmse:,.1f}, mae {champion.test_mae:,.1f}, r2 {champion.test_r2:.4f}",
          file=out)
    print(f"Registered: {champion.model_name} version {champion.version} "
          f"(alias @{CHAMPION_ALIAS})", file=out)
    print(f"Report: the root run's artifacts, report/report.html (run {outcome.root_run_id})",
          file=out)
    print(f"Serve it:\n  {serve_command(champion.model_name)}", file=out)
