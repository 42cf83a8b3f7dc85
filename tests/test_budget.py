"""The whole-sweep time budget (``time_budget``): trials start only before its deadline, and the
families share it by rank (:meth:`sweeper.runner._Worker.share_budget`)."""

from __future__ import annotations

import dataclasses
import io
import time
from collections import Counter
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

import sweeper.runner as runner
from sweeper.config import SweepConfig
from sweeper.errors import SweepError
from sweeper.study import open_storage


def _budget_sweep(budget: float, n_trials: int, insurance_csv: Path) -> runner.SweepOutcome:
    """A one-worker sweep of elastic_net and random_forest in the working directory."""
    config = SweepConfig(
        n_trials=n_trials, families="elastic_net,random_forest", data=str(insurance_csv),
        cv_folds=3, n_workers=1, time_budget=budget, sweep_name=f"budget-{budget:g}", verbose=0,
    )
    return runner.run_sweep(config, out=io.StringIO())


def test_no_trial_starts_after_the_budget_and_the_rest_wait_for_a_resume(
    in_process: Path, insurance_csv: Path
) -> None:
    # Far more trials than fit in the budget: the sweep stops starting trials at its deadline,
    # leaves the rest of each pool WAITING (a resume runs them) and still has a champion.
    budget, n_trials = 12.0, 400
    started = time.time()
    outcome = _budget_sweep(budget, n_trials, insurance_csv)
    assert outcome.champion is not None
    storage = open_storage("")
    ran = 0
    for result in outcome.results:
        study = optuna.load_study(study_name=result.study_name, storage=storage)
        states = Counter(t.state for t in study.trials)
        assert len(study.trials) == n_trials
        assert states[TrialState.RUNNING] == 0
        assert states[TrialState.WAITING] > 0
        assert states[TrialState.COMPLETE] >= 1  # at least its defaults trial
        for trial in study.trials:
            if trial.datetime_start is not None:
                ran += 1
                # (1 s for the clocks: the deadline is on the monotonic clock, trials' starts
                # on the wall clock.)
                assert trial.datetime_start.timestamp() <= started + budget + 1.0
    assert ran == sum(r.n_complete + r.n_pruned + r.n_failed for r in outcome.results)


def test_a_budget_that_ends_before_any_trial_completes_says_so(
    in_process: Path, insurance_csv: Path
) -> None:
    # Not "every family failed": nothing failed, and the trials wait for a resume.
    with pytest.raises(SweepError) as raised:
        _budget_sweep(0.001, 4, insurance_csv)
    assert str(raised.value) == (
        "time_budget: no trial completed within 0.001 s of the sweep's start (its set-up "
        "included); give a larger time_budget, or resume the sweep (sweep_name=budget-0.001) "
        "to run the trials left waiting"
    )
    storage = open_storage("")
    for family in ("elastic_net", "random_forest"):
        study = optuna.load_study(study_name=f"budget-0.001.{family}", storage=storage)
        assert {t.state for t in study.trials} == {TrialState.WAITING}
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert runs and [r for r in runs if r.info.status == "RUNNING"] == []


# share_budget, on a clock the test moves: every trial takes one second.


@dataclasses.dataclass
class _Family:
    name: str


class _Progress:
    def start(self) -> None:
        pass


@dataclasses.dataclass
class _Work:
    family: _Family
    study: optuna.Study
    progress: _Progress
    #: Trials left in the family's pool.
    pool: int = 10_000


def _work(name: str, best: float | None) -> _Work:
    study = optuna.create_study()
    if best is not None:
        study.add_trial(optuna.trial.create_trial(value=best))
    return _Work(_Family(name), study, _Progress())


class _Worker:
    """What share_budget uses of a worker: ``_run_one``, here a one-second trial."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.ran: list[str] = []

    def _run_one(self, work: _Work) -> bool:
        if work.pool == 0:
            return False
        work.pool -= 1
        self.ran.append(work.family.name)
        self.clock[0] += 1.0
        return True


def _share(works: list[_Work], seconds: float, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    clock = [0.0]

    class _Time:
        @staticmethod
        def monotonic() -> float:
            return clock[0]

    monkeypatch.setattr(runner, "time", _Time)
    monkeypatch.setattr(runner, "passed", lambda deadline: clock[0] >= deadline)
    worker = _Worker(clock)
    runner._Worker.share_budget(worker, works, seconds)  # type: ignore[arg-type]
    return worker.ran


def test_each_family_gets_half_the_time_of_the_family_ranked_above_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ranked by best CV RMSE so far, whatever the order the families were given in.
    works = [_work("third", 300.0), _work("first", 100.0), _work("second", 200.0)]
    ran = Counter(_share(works, 70.0, monkeypatch))
    assert sum(ran.values()) == 70
    assert ran["first"] == pytest.approx(40, abs=1)
    assert ran["second"] == pytest.approx(20, abs=1)
    assert ran["third"] == pytest.approx(10, abs=1)


def test_a_family_without_a_complete_trial_goes_first_and_an_empty_pool_drops_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    works = [_work("leader", 100.0), _work("new", None), _work("small", 150.0)]
    works[2].pool = 3
    ran = _share(works, 30.0, monkeypatch)
    assert ran[0] == "new"  # its defaults trial comes first
    assert ran.count("small") == 3  # then its pool is empty and it gets no more turns
    assert len(ran) == 30  # the budget, spent on the others


def test_the_budget_ends_when_every_pool_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    works = [_work("a", 100.0), _work("b", 200.0)]
    works[0].pool, works[1].pool = 2, 1
    assert Counter(_share(works, 1_000.0, monkeypatch)) == {"a": 2, "b": 1}
