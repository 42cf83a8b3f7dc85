"""Finished trials without their MLflow run: what a worker killed between telling Optuna a
result and logging its run leaves behind, and the one worker that logs them later.

A worker tells Optuna each result as soon as the objective returns, so the sampler and the pruner
of the next trial see it whatever the tracking store's latency, and logs the trial's run in the
background (:class:`sweeper.tracking.TrialLogProcess`). A SIGKILL in between leaves a finished
trial without a run. The trial itself holds everything its run needs (params, fold scores,
metrics, times), so the run is logged later from it by another worker or by the resume:

- a worker that flushed its logging writes so into each family study it worked on
  (:func:`mark_flushed`); a worker that is gone without saying so may have left orphans;
- a gone worker's orphans in one family are logged under an :class:`sweeper.ledger.OwnedClaim`,
  once, by whichever worker gets there first; a run the killed worker left half-made is
  completed, not duplicated.

Trials failed because their worker died are not orphans: the worker that fails them logs
them (:func:`sweeper.ledger.reap_dead`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import optuna
from mlflow.entities import RunStatus
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from sweeper import ledger
from sweeper.tracking import SweepTracker

#: Study system attr prefix: ``<prefix><host:pid>`` is set once that worker's runs are all logged.
ATTR_FLUSHED = "sweep:flushed:"

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def mark_flushed(storage: BaseStorage, study: optuna.Study, worker: str) -> None:
    """Record that ``worker`` logged the run of every trial it finished in ``study``."""
    study_id = storage.get_study_id_from_name(study.study_name)
    storage.set_study_system_attr(study_id, ATTR_FLUSHED + worker, True)


def _is_orphan_candidate(trial: FrozenTrial) -> bool:
    """Finished by its own worker (a trial failed for a dead worker is its reaper's to log)."""
    return trial.state in _FINISHED and ledger.ATTR_KILLED not in trial.system_attrs


def gone_workers(
    trials: Iterable[FrozenTrial], flushed: Iterable[str], now: float
) -> set[str]:
    """Workers that finished trials here, are no longer alive, and never said they flushed.

    Alive is what :func:`sweeper.ledger.worker_is_dead` says: on this host the pid, elsewhere
    a heartbeat or a finished trial within :data:`sweeper.ledger.STALE_AFTER`.
    """
    last_seen: dict[str, float] = {}
    candidates: set[str] = set()
    for trial in trials:
        worker = trial.system_attrs.get(ledger.ATTR_WORKER)
        if not worker:
            continue
        seen = float(trial.system_attrs.get(ledger.ATTR_HEARTBEAT, 0.0))
        if trial.datetime_complete is not None:
            seen = max(seen, trial.datetime_complete.timestamp())
        last_seen[worker] = max(last_seen.get(worker, 0.0), seen)
        if _is_orphan_candidate(trial):
            candidates.add(worker)
    candidates -= set(flushed)
    return {w for w in candidates if ledger.worker_is_dead(w, last_seen[w], now)}


def log_orphans(
    storage: BaseStorage,
    study: optuna.Study,
    tracker: SweepTracker,
    family_run_id: str,
    family: str,
    *,
    seed: int,
) -> int:
    """Log the runs that gone workers owed for this family's finished trials; returns how
    many runs were made or completed (0 when every worker flushed: the usual case)."""
    study_id = storage.get_study_id_from_name(study.study_name)
    flushed = [
        key[len(ATTR_FLUSHED):]
        for key in storage.get_study_system_attrs(study_id)
        if key.startswith(ATTR_FLUSHED)
    ]
    trials = study.get_trials(deepcopy=False)
    logged = 0
    runs = None
    for worker in sorted(gone_workers(trials, flushed, time.time())):
        claim = ledger.OwnedClaim(storage, f"{study.study_name}.runs-of.{worker}", seed=seed)
        if not claim.try_take() or claim.is_done():
            continue  # a live worker is on it, or it was done
        if runs is None:
            runs = tracker.trial_runs(family_run_id)
        owed = [
            t for t in trials
            if _is_orphan_candidate(t) and t.system_attrs.get(ledger.ATTR_WORKER) == worker
        ]
        for trial in owed:
            run = runs.get(trial.number)
            if run is not None and run.info.status != RunStatus.to_string(RunStatus.RUNNING):
                continue  # logged before the worker died
            tracker.log_finished(
                family_run_id, family, trial, run_id=None if run is None else run.info.run_id
            )
            logged += 1
        claim.mark_done()
        mark_flushed(storage, study, worker)  # its runs are complete now: later checks skip it
    return logged
