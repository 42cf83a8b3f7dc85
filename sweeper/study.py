"""One Optuna study per family: storage, the trial pool, and the trial loop.

A study is named ``<sweep_name>.<family>`` and lives in an Optuna storage, so a sweep can be
found again (resumed, joined by more workers, inspected with ``optuna-dashboard``) by its name.
How workers share a study without losing or duplicating trials is :mod:`sweeper.ledger`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from sweeper import ledger
from sweeper import trial_attrs as attrs
from sweeper.config import PRUNING
from sweeper.errors import SweepError
from sweeper.pruning import FoldPruner, wilcoxon_pruner

#: Where the sweep keeps its studies when ``storage`` is empty: a journal file, which (unlike
#: SQLite) is safe for several processes writing at once.
DEFAULT_STORAGE = "optuna-sweeps.journal"

#: Study user attrs written by the worker that creates a family study.
ATTR_RUN_ID = "mlflow_run_id"
ATTR_POOL_READY = "pool_ready"


def open_storage(url: str) -> BaseStorage:
    """Open an Optuna storage: an RDB URL (``postgresql+psycopg://…``, ``sqlite:///…``), a
    journal file path, or ``""`` for :data:`DEFAULT_STORAGE` in the working directory."""
    target = url.strip() or DEFAULT_STORAGE
    try:
        if "://" in target:
            return _open_rdb(target)
        path = Path(target).expanduser()
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(os.fspath(path)))
    except Exception as error:  # noqa: BLE001 - every way of failing is the same user problem
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SweepError(
            f"storage: cannot open {redact(target)!r} ({type(error).__name__}: {reason}); give an "
            "Optuna storage URL such as postgresql+psycopg://user:pass@host/db, or a journal "
            "file path"
        ) from None


def _open_rdb(url: str, attempts: int = 5) -> RDBStorage:
    """RDBStorage, retried when workers started together race to create its schema.

    Optuna creates the tables without a lock: on an empty database all but one of several
    simultaneous openers fail (duplicate table or type). The loser retries and finds the
    schema made. Unreachable databases are not retried here (they fail at once).
    """
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    attempt = 1
    while True:
        try:
            return RDBStorage(
                url, engine_kwargs={"pool_pre_ping": True, "connect_args": _connect_args(url)}
            )
        except (IntegrityError, ProgrammingError):
            if attempt >= attempts:
                raise
            time.sleep(0.5 * attempt)
            attempt += 1


def redact(url: str) -> str:
    """A storage URL without its password, fit for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def _connect_args(url: str) -> dict[str, Any]:
    # Fail fast on an unreachable database instead of hanging on the OS's TCP timeout.
    return {"connect_timeout": 10} if url.startswith("postgresql") else {}


def study_name(sweep_name: str, family: str) -> str:
    """The Optuna study name of one family in one sweep."""
    return f"{sweep_name}.{family}"


def is_done(trial: FrozenTrial) -> bool:
    """A trial that counts toward ``n_trials``: complete, pruned, or failed by its own error.

    A trial failed because its worker died or was interrupted (it has no recorded error) does
    not count: a replacement was enqueued for it.
    """
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and attrs.ATTR_ERROR in trial.user_attrs


@dataclasses.dataclass(frozen=True)
class FamilyResult:
    """What one family's study found; ``seconds`` is the time its trials took, all workers
    together."""

    family: str
    run_id: str
    study_name: str
    best: FrozenTrial | None
    n_complete: int
    n_pruned: int
    n_failed: int
    n_killed: int
    seconds: float
    first_error: str | None

    @property
    def rmse(self) -> float | None:
        """Best mean CV RMSE, or ``None`` when no trial completed."""
        return None if self.best is None else float(self.best.value)  # type: ignore[arg-type]

    @property
    def counts(self) -> dict[str, int]:
        return {
            "complete": self.n_complete,
            "pruned": self.n_pruned,
            "failed": self.n_failed,
            "killed": self.n_killed,
        }


def summarize(study: optuna.Study, family: str, run_id: str) -> FamilyResult:
    """Count a study's trials by state, add up their time, and find the best complete one."""
    trials = study.get_trials(deepcopy=False)
    seconds = sum(
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in trials
        if t.datetime_start is not None and t.datetime_complete is not None
    )
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL and is_done(t)]
    best = min(complete, key=lambda t: (t.value, t.number)) if complete else None
    return FamilyResult(
        family=family,
        run_id=run_id,
        study_name=study.study_name,
        best=best,
        n_complete=len(complete),
        n_pruned=sum(t.state == TrialState.PRUNED for t in trials),
        n_failed=len(failed),
        n_killed=sum(t.state == TrialState.FAIL and not is_done(t) for t in trials),
        seconds=seconds,
        first_error=(failed[0].user_attrs[attrs.ATTR_ERROR] if failed else None),
    )


def join_family_study(
    storage: BaseStorage,
    name: str,
    *,
    seed: int,
    n_trials: int,
    first_params: Mapping[str, Any],
    fingerprint: Mapping[str, Any],
    create_run: Callable[[], str],
    pruning: str = "margin",
) -> tuple[optuna.Study, str]:
    """Create the family's study with its pool of ``n_trials`` trials and its MLflow run, or
    join the one another worker (or an earlier attempt) created. Returns ``(study, run_id)``.

    The first trial of the pool is ``first_params`` (the library defaults), so a sweep is never
    worse than the untuned model.
    """
    study, created = ledger.claim_study(storage, name, seed=seed, pruner=make_pruner(pruning))
    if created:
        for key, value in fingerprint.items():
            study.set_user_attr(key, value)
        study.set_user_attr(ATTR_RUN_ID, create_run())
        study.enqueue_trial(dict(first_params))
        for _ in range(n_trials - 1):
            study.enqueue_trial({})
        study.set_user_attr(ATTR_POOL_READY, True)
    else:
        ledger.check_same(study, fingerprint)
    recorded = ledger.wait_for_attrs(study, (ATTR_RUN_ID, ATTR_POOL_READY))
    return study, str(recorded[ATTR_RUN_ID])


#: ``pruning="margin"``: a trial stops after one fold more than 3 % worse than the best trial's on
#: the same fold, or after two folds more than 2.5 % worse on both together. Why these:
#: ``bench/pruning_replay.py`` (2026-11-30 08:47 UTC) ran two unpruned default sweeps on
#: insurance (seeds 1 and 2, every trial's five folds known): the trials that ended within 0.5 %
#: of their family's best were at most 2.15 % worse than it after one fold and 1.13 % after two;
#: replaying every trial of those sweeps, these margins and then Wilcoxon would have spent 0.79
#: of the trials' time, Wilcoxon alone 0.88, and stopped no family's best trial (nor did margins
#: of 2 % and 1 %, at 0.71).
MARGINS: Mapping[int, float] = MappingProxyType({1: 0.03, 2: 0.025})

#: Wilcoxon's signed-rank test on 5 paired folds reaches p = 1/8 after 3 folds that are all
#: worse than the best trial's and 1/16 after 4: a threshold of 0.15 lets a hopeless trial stop
#: after 3 of 5 folds (Optuna's default 0.1 would wait for 4).
WILCOXON_P_THRESHOLD = 0.15


def make_pruner(pruning: str) -> optuna.pruners.BasePruner:
    """The pruner of a ``pruning`` value (:data:`sweeper.config.PRUNING`): fold-wise, it stops a
    trial whose fold RMSEs are clearly (``margin``) or reliably (Wilcoxon) worse than the best
    trial's on the same folds."""
    if pruning not in PRUNING:
        raise ValueError(f"pruning: must be one of {', '.join(PRUNING)}, but got {pruning!r}")
    if pruning == "none":
        return optuna.pruners.NopPruner()
    if pruning == "margin":
        return FoldPruner(margins=MARGINS, p_threshold=WILCOXON_P_THRESHOLD, n_startup_steps=3)
    return wilcoxon_pruner(p_threshold=WILCOXON_P_THRESHOLD, n_startup_steps=3)


def unfinished(study: optuna.Study) -> tuple[int, int]:
    """``(waiting, running)`` trial counts of a study."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    return waiting, len(trials) - waiting


def run_trial(
    trial: optuna.Trial, objective: Callable[[optuna.Trial], float]
) -> tuple[TrialState, float | None]:
    """Run the objective on a popped trial; the state and value to tell Optuna.

    A failing objective makes a FAIL trial (its error is on the trial), never a failed sweep;
    an interruption (KeyboardInterrupt, SystemExit) propagates to the caller.
    """
    try:
        return TrialState.COMPLETE, float(objective(trial))
    except optuna.TrialPruned:
        return TrialState.PRUNED, None
    except Exception:  # noqa: BLE001 - recorded on the trial by the objective
        return TrialState.FAIL, None


def deadline_after(timeout: float) -> float | None:
    """A monotonic deadline ``timeout`` seconds from now, or ``None`` for no timeout."""
    return time.monotonic() + timeout if timeout > 0 else None


def passed(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline
