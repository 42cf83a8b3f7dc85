"""FamilyProgress: plain lines off a terminal (exact text, cadence), a live bar on one, quiet."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from sweeper.progress import FamilyProgress, format_duration

CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # anything but "\n"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _trial(number: int, state: TrialState = TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
    if state == TrialState.COMPLETE:
        return optuna.trial.create_trial(value=float(number))
    return optuna.trial.create_trial(state=state)


def _run(progress: FamilyProgress, clock: FakeClock, bests: list[float | None],
         *, step: float = 1.5, start: int = 0) -> None:
    for offset, best in enumerate(bests):
        clock.now += step
        progress.update(_trial(start + offset), done=start + offset + 1, best=best)


def test_plain_lines_every_n_trials_and_at_the_last_one() -> None:
    out, clock = io.StringIO(), FakeClock()
    bests = [9000.0, 8000.0, 8000.0, 7500.25, 7000.0, 7000.0, 6000.0, 6000.0, 6000.0, 5000.0,
             5000.0, 4512.34]
    with FamilyProgress("xgboost", 12, out=out, interactive=False, every=5, clock=clock) as p:
        _run(p, clock, bests)
    assert out.getvalue().splitlines() == [
        "xgboost: 5/12 trials, best rmse 7,000.0, 7.5 s elapsed, eta 10.5 s",
        "xgboost: 10/12 trials, best rmse 5,000.0, 15.0 s elapsed, eta 3.0 s",
        "xgboost: 12/12 trials, best rmse 4,512.3, 18.0 s elapsed",
    ]
    assert not CONTROL.search(out.getvalue())


def test_last_line_is_written_once_even_when_it_is_a_multiple_of_every() -> None:
    out, clock = io.StringIO(), FakeClock()
    with FamilyProgress("elastic_net", 4, out=out, interactive=False, every=2, clock=clock) as p:
        _run(p, clock, [None, 10.0, 9.0, 8.0], step=2.0)
    assert out.getvalue().splitlines() == [
        "elastic_net: 2/4 trials, best rmse 10.0, 4.0 s elapsed, eta 4.0 s",
        "elastic_net: 4/4 trials, best rmse 8.0, 8.0 s elapsed",
    ]


def test_no_best_yet_and_failed_trials_are_said() -> None:
    out, clock = io.StringIO(), FakeClock()
    with FamilyProgress("svr", 2, out=out, interactive=False, every=1, clock=clock) as p:
        clock.now += 1.0
        p.update(_trial(0, TrialState.FAIL), done=1, best=None)
        clock.now += 1.0
        p.update(_trial(1), done=2, best=1234.5)
    assert out.getvalue().splitlines() == [
        "svr: 1/2 trials, best rmse -, 1 failed, 1.0 s elapsed, eta 1.0 s",
        "svr: 2/2 trials, best rmse 1,234.5, 1 failed, 2.0 s elapsed",
    ]


def test_parallel_workers_skipping_a_multiple_still_get_a_line() -> None:
    out, clock = io.StringIO(), FakeClock()
    with FamilyProgress("rf", 20, out=out, interactive=False, every=5, clock=clock) as p:
        for done in (2, 4, 6, 7, 11):  # other workers' trials make `done` jump over 5 and 10
            clock.now += 1.0
            p.update(_trial(done), done=done, best=1.0)
    lines = out.getvalue().splitlines()
    assert [line.split(" trials")[0] for line in lines] == ["rf: 6/20", "rf: 11/20"]


def test_a_resumed_study_estimates_from_this_run_only() -> None:
    out, clock = io.StringIO(), FakeClock()
    with FamilyProgress("rf", 10, out=out, interactive=False, every=5, initial=4,
                        clock=clock) as p:
        _run(p, clock, [3.0], step=2.0, start=4)  # done=5 after one trial of this run
    assert out.getvalue().splitlines() == [
        "rf: 5/10 trials, best rmse 3.0, 2.0 s elapsed, eta 10.0 s"
    ]


def test_close_writes_the_state_a_timeout_stopped_at() -> None:
    out, clock = io.StringIO(), FakeClock()
    with FamilyProgress("rf", 50, out=out, interactive=False, every=5, clock=clock) as p:
        _run(p, clock, [4.0] * 7, step=1.0)
    assert out.getvalue().splitlines() == [
        "rf: 5/50 trials, best rmse 4.0, 5.0 s elapsed, eta 45.0 s",
        "rf: 7/50 trials, best rmse 4.0, 7.0 s elapsed, eta 43.0 s",
    ]


@pytest.mark.parametrize("interactive", [False, True])
def test_close_ends_on_the_count_other_workers_finished(interactive: bool) -> None:
    # This worker saw 2 of 3 trials done; another worker finished the last one after that.
    out, clock = io.StringIO(), FakeClock()
    progress = FamilyProgress("rf", 3, out=out, interactive=interactive, every=1, clock=clock)
    _run(progress, clock, [5.0, 4.0], step=1.0)
    progress.close(done=3, best=3.5)
    final = out.getvalue().replace("\r", "\n").splitlines()[-1]
    if interactive:
        assert "3/3" in final and "best rmse 3.5" in final, final
    else:
        assert out.getvalue().splitlines() == [
            "rf: 1/3 trials, best rmse 5.0, 1.0 s elapsed, eta 2.0 s",
            "rf: 2/3 trials, best rmse 4.0, 2.0 s elapsed, eta 1.0 s",
            "rf: 3/3 trials, best rmse 3.5, 2.0 s elapsed",
        ]


def test_the_clock_counts_from_start_not_from_when_the_family_was_joined() -> None:
    # A sweep joins every family at set-up and runs them one after another: a later family's
    # elapsed time and ETA must not include the families before it.
    out, clock = io.StringIO(), FakeClock()
    progress = FamilyProgress("xgboost", 4, out=out, interactive=False, every=2, clock=clock)
    clock.now += 60.0  # the families before it
    progress.start()
    _run(progress, clock, [9.0, 8.0], step=2.0)
    clock.now += 1.0
    progress.start()  # once started, later calls change nothing
    _run(progress, clock, [7.0, 6.0], step=2.0, start=2)
    progress.close()
    assert out.getvalue().splitlines() == [
        "xgboost: 2/4 trials, best rmse 8.0, 4.0 s elapsed, eta 4.0 s",
        "xgboost: 4/4 trials, best rmse 6.0, 9.0 s elapsed",
    ]


def test_the_bar_appears_when_the_family_starts() -> None:
    out = io.StringIO()
    progress = FamilyProgress("xgboost", 3, out=out, interactive=True)
    assert out.getvalue() == ""  # joined, not started: no bar yet (its clock would run)
    progress.start()
    assert "xgboost" in out.getvalue() and "0/3" in out.getvalue()
    progress.close()


@pytest.mark.parametrize("interactive", [False, True])
def test_nothing_is_written_before_the_first_trial(interactive: bool) -> None:
    out = io.StringIO()
    FamilyProgress("rf", 5, out=out, interactive=interactive).close()
    assert out.getvalue() == ""


def test_quiet_writes_nothing_in_either_mode() -> None:
    for interactive in (False, True):
        out, clock = io.StringIO(), FakeClock()
        with FamilyProgress("rf", 3, out=out, interactive=interactive, quiet=True,
                            every=1, clock=clock) as p:
            _run(p, clock, [3.0, 2.0, 1.0])
        assert out.getvalue() == ""


def test_default_mode_follows_isatty() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert FamilyProgress("rf", 3, out=io.StringIO()).interactive is False
    progress = FamilyProgress("rf", 3, out=Tty())
    try:
        assert progress.interactive is True
    finally:
        progress.close()


def test_interactive_bar_shows_count_and_best() -> None:
    out = io.StringIO()
    with FamilyProgress("xgboost", 3, out=out, interactive=True) as p:
        for number, best in enumerate([5000.0, 4600.0, 4512.34]):
            p.update(_trial(number), done=number + 1, best=best)
    text = out.getvalue()
    final = text.split("\r")[-1]
    assert "xgboost" in final and "3/3" in final and "best rmse 4,512.3" in final


def test_update_after_close_raises() -> None:
    progress = FamilyProgress("rf", 3, out=io.StringIO(), interactive=False)
    progress.close()
    with pytest.raises(RuntimeError, match="closed"):
        progress.update(_trial(0), done=1, best=1.0)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.04, "0.0 s"), (12.345, "12.3 s"), (59.9, "59.9 s"), (65, "1 min 05 s"),
     (3725, "1 h 02 min")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_default_out_is_the_standard_error_of_the_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not the one of import time: a notebook or a test may have replaced sys.stderr since, and
    # writing to a stream that was closed since failed a sweep (ValueError on a closed file).
    later, clock = io.StringIO(), FakeClock()
    monkeypatch.setattr("sys.stderr", later)
    with FamilyProgress("rf", 1, interactive=False, every=1, clock=clock) as progress:
        _run(progress, clock, [7.0])
    assert later.getvalue() == "rf: 1/1 trials, best rmse 7.0, 1.5 s elapsed\n"


# ----------------------------------------------------------------------------------------------
# In a sweep
# ----------------------------------------------------------------------------------------------


def test_a_sweep_starts_each_familys_clock_when_it_begins_on_it(
    tmp_path: Path, tracking_uri: str, insurance_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from sweeper import runner
    from sweeper.config import SweepConfig

    events: list[tuple[str, str]] = []

    class Recorded(FamilyProgress):
        def start(self) -> None:
            events.append(("start", self.family))
            super().start()

        def update(self, trial: optuna.trial.FrozenTrial, **kwargs: Any) -> None:
            events.append(("trial", self.family))
            super().update(trial, **kwargs)

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.setattr(runner, "FamilyProgress", Recorded)
    config = SweepConfig(n_trials=2, families="elastic_net,hist_gradient_boosting",
                         data=str(insurance_csv), cv_folds=2, n_workers=1, verbose=0)
    try:
        runner.run_sweep(config, out=io.StringIO())
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
    # Each family's clock starts after the family before it ran its trials, right before its
    # own first trial (not when the sweep joined it, at set-up).
    assert events == [
        ("start", "elastic_net"), ("trial", "elastic_net"), ("trial", "elastic_net"),
        ("start", "hist_gradient_boosting"), ("trial", "hist_gradient_boosting"),
        ("trial", "hist_gradient_boosting"),
    ]
