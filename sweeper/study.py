"""One Optuna study per family: storage, sampler, and the trial loop.

A study is named ``<sweep_name>.<family>`` and lives in an Optuna storage, so a sweep can be
found again (resumed, inspected with ``optuna-dashboard``) by its name.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from sweeper import objective as attrs
from sweeper.errors import SweepError

#: Where the sweep keeps its studies when ``storage`` is empty: a journal file, which (unlike
#: SQLite) is safe for several processes writing at once.
DEFAULT_STORAGE = "optuna-sweeps.journal"


def open_storage(url: str) -> BaseStorage:
    """Open an Optuna storage: an RDB URL (``postgresql+psycopg://…``, ``sqlite:///…``), a
    journal file path, or ``""`` for :data:`DEFAULT_STORAGE` in the working directory."""
    target = url.strip() or DEFAULT_STORAGE
    try:
        if "://" in target:
            # Heartbeats let a dead worker's RUNNING trial be failed by the next one.
            return RDBStorage(target, heartbeat_interval=30, grace_period=90)
        path = Path(target).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(os.fspath(path)))
    except Exception as error:  # noqa: BLE001 - every way of failing is the same user problem
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SweepError(
            f"storage: cannot open {target!r} ({type(error).__name__}: {reason}); give an "
            "Optuna storage URL such as postgresql+psycopg://user:pass@host/db, or a journal "
            "file path"
        ) from None


def study_name(sweep_name: str, family: str) -> str:
    """The Optuna study name of one family in one sweep."""
    return f"{sweep_name}.{family}"


def is_done(trial: FrozenTrial) -> bool:
    """A trial that counts toward ``n_trials``: complete, pruned, or failed by its own error.

    A trial failed because its process died (it has no recorded error) does not count, so a
    resumed sweep runs it again instead of losing it.
    """
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and attrs.ATTR_ERROR in trial.user_attrs


@dataclasses.dataclass(frozen=True)
class FamilyResult:
    """What one family's study found."""

    family: str
    run_id: str
    study_name: str
    best: FrozenTrial | None
    n_complete: int
    n_pruned: int
    n_failed: int
    seconds: float
    first_error: str | None

    @property
    def rmse(self) -> float | None:
        """Best mean CV RMSE, or ``None`` when no trial completed."""
        return None if self.best is None else float(self.best.value)  # type: ignore[arg-type]

    @property
    def counts(self) -> dict[str, int]:
        return {"complete": self.n_complete, "pruned": self.n_pruned, "failed": self.n_failed}


def summarize(
    study: optuna.Study, family: str, run_id: str, seconds: float
) -> FamilyResult:
    """Count a study's trials by state and find its best complete trial."""
    trials = study.get_trials(deepcopy=False)
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
        seconds=seconds,
        first_error=(failed[0].user_attrs[attrs.ATTR_ERROR] if failed else None),
    )


def create_study(storage: BaseStorage, name: str, *, seed: int) -> optuna.Study:
    """Create the family's study, or load it when the sweep resumes."""
    return optuna.create_study(
        storage=storage,
        study_name=name,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        load_if_exists=True,
    )


def optimize(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    *,
    n_trials: int,
    timeout: float,
    on_trial: Callable[[optuna.Study, FrozenTrial], None],
) -> None:
    """Run trials until the study has ``n_trials`` done trials or ``timeout`` seconds passed.

    Counting done trials in the storage (not trials run by this call) is what makes a resumed
    sweep finish at ``n_trials`` instead of running ``n_trials`` more.
    """
    deadline = time.monotonic() + timeout if timeout > 0 else None
    while sum(is_done(t) for t in study.get_trials(deepcopy=False)) < n_trials:
        if deadline is not None and time.monotonic() >= deadline:
            return
        study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[on_trial])
