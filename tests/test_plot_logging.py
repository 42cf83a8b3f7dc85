"""When each family is drawn and where its plots are logged (:mod:`sweeper.runner`): drawn
as soon as it is complete, whichever worker ran its last trial; logged by the trial logger once
drawn while the trials go on, and at the end only those it was not given, or that
were redrawn since (the sweep waits for the logger before such a redraw, which rewrites the
files it may be reading)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from sweeper import runner
from sweeper.drawing import Drawn
from sweeper.study import FamilyResult


class _Drawer:
    """:class:`sweeper.drawing.Drawer`'s answers, from a table: ``ready`` (study -> the trial
    count of its drawing done now), ``plots`` (study -> 1 where ``family_plots`` returns its
    plot, 0 or missing where drawing it failed)."""

    def __init__(self, tmp: Path, ready: dict[str, int], plots: dict[str, int]) -> None:
        self.directory = tmp
        self._ready = ready
        self._plots = plots
        self.asked: list[str] = []

    def _paths(self, name: str) -> tuple[Path, ...]:
        return (self.directory / name / "optimization_history.png",)

    def ready(self, name: str) -> Drawn | None:
        self.asked.append(name)
        count = self._ready.get(name)
        return None if count is None else Drawn(self._paths(name), count)

    def family_plots(self, name: str, n_trials: int) -> tuple[Path, ...]:
        return self._paths(name) if self._plots.get(name, 0) else ()


class _Recorder:
    """The trial logger or the tracking client (``who``): records their calls in ``calls``,
    one list for both, so that their order shows."""

    def __init__(self, who: str, calls: list[tuple[Any, ...]]) -> None:
        self.who = who
        self.calls = calls

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str) -> None:
        self.calls.append((self.who, run_id, Path(local_dir).name, artifact_path))


def _works(*names: str) -> list[Any]:
    return [SimpleNamespace(study=SimpleNamespace(study_name=f"s.{n}"), run_id=f"run-{n}")
            for n in names]


@pytest.mark.parametrize(
    ("ready", "queued_before", "expected_calls", "queued_after"),
    [
        # Nothing drawn yet: nothing given, asked again next time.
        ({}, {}, [], {}),
        # Drawn: given to the logger once, with the count it was drawn from.
        ({"s.a": 3}, {}, [("logger", "run-a", "s.a", "plots")], {"s.a": 3}),
        ({"s.a": 3, "s.b": 5}, {"s.a": 3}, [("logger", "run-b", "s.b", "plots")],
         {"s.a": 3, "s.b": 5}),
    ],
    ids=["none drawn", "one drawn", "one given before"],
)
def test_drawn_plots_are_given_to_the_trial_logger_once(
    tmp_path: Path, ready: dict[str, int], queued_before: dict[str, int],
    expected_calls: list[tuple[Any, ...]], queued_after: dict[str, int],
) -> None:
    drawer = _Drawer(tmp_path, ready, {})
    calls: list[tuple[Any, ...]] = []
    logs = _Recorder("logger", calls)
    queued = dict(queued_before)
    runner._queue_drawn_plots(drawer, logs, _works("a", "b"), queued)  # type: ignore[arg-type]
    assert calls == expected_calls
    assert queued == queued_after
    assert not set(drawer.asked) & set(queued_before)  # given before: not asked again


def test_a_drawing_without_plots_is_not_given_to_the_logger(tmp_path: Path) -> None:
    class _Empty(_Drawer):
        def ready(self, name: str) -> Drawn | None:
            return Drawn((), 1)

    calls: list[tuple[Any, ...]] = []
    queued: dict[str, int] = {}
    runner._queue_drawn_plots(_Empty(tmp_path, {}, {}), _Recorder("logger", calls), _works("a"),  # type: ignore[arg-type]
                              queued)
    assert (calls, queued) == ([], {})


def _result(name: str) -> FamilyResult:
    return FamilyResult(name, f"run-{name}", f"s.{name}", None, 0, 0, 0, 0, 1.0, None)


@pytest.mark.parametrize(
    ("queued", "expected"),
    [
        # Nothing given before: every family's plots at the end.
        ({}, [("client", "run-a", "s.a", "plots"), ("client", "run-b", "s.b", "plots")]),
        # Given with the trial count they still have: not logged again.
        ({"s.a": 4}, [("client", "run-b", "s.b", "plots")]),
        ({"s.a": 4, "s.b": 6}, []),
        # Given, but redrawn since (the study grew): logged again.
        ({"s.a": 3}, [("client", "run-a", "s.a", "plots"), ("client", "run-b", "s.b", "plots")]),
    ],
    ids=["none given", "one given", "all given", "one redrawn since"],
)
def test_the_end_logs_only_the_plots_not_given_to_the_logger(
    tmp_path: Path, queued: dict[str, int], expected: list[tuple[Any, ...]],
) -> None:
    results = [_result("a"), _result("b")]
    drawer = _Drawer(tmp_path, {}, {"s.a": 1, "s.b": 1})
    calls: list[tuple[Any, ...]] = []
    tracker = SimpleNamespace(client=_Recorder("client", calls), root_run_id="root",
                              sweep_name="s")
    runner._log_drawings(
        results, results[0], {"s.a": 4, "s.b": 6}, pd.DataFrame({"family": ["a", "b"]}),
        None, drawer, tracker,  # type: ignore[arg-type]
        config=SimpleNamespace(seed=0),  # type: ignore[arg-type]
        test_metrics={}, queued=queued,
    )
    # The report (leaderboard) is logged on the root run last, whatever was given before.
    assert calls == [*expected, ("client", "root", "report", "report")]


@pytest.mark.parametrize(
    ("queued", "n_trials", "grown"),
    [
        ({}, {"s.a": 4}, False),
        ({"s.a": 4}, {"s.a": 4, "s.b": 6}, False),
        ({"s.a": 3}, {"s.a": 4}, True),
        ({"s.a": 4, "s.b": 5}, {"s.a": 4, "s.b": 6}, True),
    ],
    ids=["none given", "same count", "grew", "one of two grew"],
)
def test_a_family_given_to_the_logger_that_grew_since_is_told(
    queued: dict[str, int], n_trials: dict[str, int], grown: bool
) -> None:
    assert runner._grown_since_queued(queued, n_trials) is grown


class _Worker:
    def __init__(self) -> None:
        self.finished: list[str] = []
        self.trial_logs = _Recorder("logger", [])

    def finish_early(self, work: Any) -> None:
        self.finished.append(work.study.study_name)


@pytest.mark.parametrize(
    ("running", "draws", "finished", "left_after"),
    [
        # Both complete: finished, drawn, the leader considered once for each.
        ((), True, ["s.a", "s.b"], []),
        # Another worker still runs a trial of b: b waits for a later call.
        (("s.b",), True, ["s.a"], ["s.b"]),
        # A command's spawned worker draws nothing: it finishes the family.
        ((), False, ["s.a", "s.b"], []),
    ],
    ids=["all complete", "one still running elsewhere", "a spawned worker"],
)
def test_a_family_is_finished_and_drawn_as_soon_as_it_is_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, running: tuple[str, ...], draws: bool,
    finished: list[str], left_after: list[str],
) -> None:
    monkeypatch.setattr(runner, "unfinished",
                        lambda study: (0, 1) if study.study_name in running else (0, 0))
    ahead = SimpleNamespace()  # an Ahead: what it is asked goes through _prepare_leader
    considered: list[tuple[bool, int]] = []
    monkeypatch.setattr(runner, "_prepare_leader",
                        lambda given, works: considered.append((given is ahead, len(works))))
    drawn: list[str] = []

    class _Drawing(_Drawer):
        def family(self, name: str) -> None:
            drawn.append(name)

    worker = _Worker()
    works = _works("a", "b", "c")
    left = works[:2]
    runner._catch_up(worker, left, works, drawer=_Drawing(tmp_path, {}, {}) if draws else None,  # type: ignore[arg-type]
                     ahead=ahead, plots_queued={})  # type: ignore[arg-type]
    assert worker.finished == finished
    assert drawn == (finished if draws else [])
    assert considered == [(True, 3)] * len(finished)
    assert [w.study.study_name for w in left] == left_after
