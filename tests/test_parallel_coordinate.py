"""The parallel-coordinate plot: one axis per searched parameter of every family, lines in the
right places, the best trial on top, and its errors."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial

from objectives import FAMILIES
from sweeper.parallel_coordinate import parallel_coordinate_figure

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _lines(figure: Figure) -> LineCollection:
    (collection,) = [c for c in figure.axes[0].collections if isinstance(c, LineCollection)]
    return collection


def _axis_names(figure: Figure) -> list[str]:
    return [label.get_text() for label in figure.axes[0].get_xticklabels()]


def _labels_at(figure: Figure, x: int) -> dict[float, str]:
    """The labels written beside vertical axis ``x``, by height."""
    return {
        round(text.get_position()[1], 6): text.get_text()
        for text in figure.axes[0].texts
        if math.isclose(text.get_position()[0], x + 0.04)
    }


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_gets_an_axis_per_searched_parameter_over_its_range(family: str) -> None:
    space = FAMILIES[family].search_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for number in range(6):
        trial = study.ask()
        space.suggest(trial)
        study.tell(trial, 100.0 + number)
    params = sorted(space.searched)
    figure = parallel_coordinate_figure(study.trials, params, target_name="CV rmse")

    assert _axis_names(figure) == ["CV rmse", *params]
    assert len(_lines(figure).get_segments()) == 6  # every trial has every parameter
    for x, name in enumerate(params, start=1):
        distribution = space.searched[name]
        labels = _labels_at(figure, x)
        if isinstance(distribution, CategoricalDistribution):
            assert list(labels.values()) == [str(c) for c in distribution.choices]
            continue
        # The search space's range, not only what the trials happened to try.
        low, high = labels[0.0], labels[1.0]
        assert float(low.replace(",", "")) == pytest.approx(distribution.low, rel=5e-3)
        assert float(high.replace(",", "")) == pytest.approx(distribution.high, rel=5e-3)
        heights = np.array([segment[x][1] for segment in _lines(figure).get_segments()])
        assert ((0.0 <= heights) & (heights <= 1.0)).all()


def _trial(number: int, value: float | None, params: dict[str, object],
           distributions: dict[str, optuna.distributions.BaseDistribution]) -> FrozenTrial:
    trial = create_trial(
        value=value, params=params, distributions=distributions,
        state=TrialState.COMPLETE if value is not None else TrialState.FAIL,
    )
    trial.number = number
    return trial


LOG_INT = IntDistribution(10, 1000, log=True)
UNIT = FloatDistribution(0.0, 1.0)


def test_heights_follow_the_scale_and_the_best_trial_is_drawn_last() -> None:
    trials = [
        _trial(0, 30.0, {"n": 10, "f": 0.25}, {"n": LOG_INT, "f": UNIT}),
        _trial(1, 10.0, {"n": 100, "f": 1.0}, {"n": LOG_INT, "f": UNIT}),
        _trial(2, 20.0, {"n": 1000, "f": 0.0}, {"n": LOG_INT, "f": UNIT}),
        _trial(3, None, {}, {}),  # failed: left out
    ]
    figure = parallel_coordinate_figure(trials, ["f", "n"])
    segments = _lines(figure).get_segments()
    # Worst first, best last: 30, 20, 10. Objective axis over the values, f linear, n log.
    expected = [[1.0, 0.25, 0.0], [0.5, 0.0, 1.0], [0.0, 1.0, 0.5]]
    assert [list(np.round(s[:, 1], 6)) for s in segments] == expected
    assert list(_lines(figure).get_array()) == [30.0, 20.0, 10.0]
    assert _lines(figure).get_cmap().name == "Blues_r"  # minimizing: the lowest darkest
    # The log axis's middle label is the geometric middle of its range.
    assert _labels_at(figure, 2) == {0.0: "10", 0.5: "100", 1.0: "1,000"}
    assert _labels_at(figure, 0) == {0.0: "10", 0.5: "20", 1.0: "30"}
    assert figure.axes[0].get_title() == "Parallel coordinates (3 complete trials, best darkest)"


def test_maximizing_draws_the_highest_value_last() -> None:
    trials = [_trial(i, v, {"f": v / 10}, {"f": UNIT}) for i, v in enumerate((5.0, 9.0, 1.0))]
    figure = parallel_coordinate_figure(trials, ["f"], direction=StudyDirection.MAXIMIZE)
    assert list(_lines(figure).get_array()) == [1.0, 5.0, 9.0]
    assert _lines(figure).get_cmap().name == "Blues"


def test_categorical_choices_are_spread_in_order_and_a_missing_parameter_leaves_a_gap() -> None:
    kind = CategoricalDistribution(["gbtree", "dart", None])
    trials = [
        _trial(0, 2.0, {"kind": "dart", "f": 0.5, "g": 0.5}, {"kind": kind, "f": UNIT, "g": UNIT}),
        # No "f" (a conditional parameter): two pieces, the objective alone is not a line.
        _trial(1, 1.0, {"kind": None, "g": 1.0}, {"kind": kind, "g": UNIT}),
    ]
    figure = parallel_coordinate_figure(trials, ["kind", "f", "g"])
    assert _labels_at(figure, 1) == {0.0: "gbtree", 0.5: "dart", 1.0: "None"}
    segments = [[tuple(np.round(p, 6)) for p in s] for s in _lines(figure).get_segments()]
    assert segments == [
        [(0.0, 1.0), (1.0, 0.5), (2.0, 0.5), (3.0, 0.5)],
        [(0.0, 0.0), (1.0, 1.0)],
    ]


def test_one_trial_sits_in_the_middle_of_every_axis() -> None:
    trials = [_trial(0, 7.5, {"f": 0.2, "k": "a"},
                     {"f": UNIT, "k": CategoricalDistribution(["a"])})]
    figure = parallel_coordinate_figure(trials, ["f", "k"])
    (segment,) = _lines(figure).get_segments()
    assert list(np.round(segment[:, 1], 6)) == [0.5, 0.2, 0.5]
    assert _labels_at(figure, 0) == {0.5: "7.5"}
    assert _labels_at(figure, 2) == {0.5: "a"}
    assert figure.axes[0].get_title() == "Parallel coordinates (1 complete trial, best darkest)"


def test_a_value_outside_the_space_widens_its_axis() -> None:
    # A resumed sweep whose search space shrank: old trials are still placed on the axis.
    trials = [
        _trial(0, 1.0, {"f": 2.0, "k": "old"},
               {"f": FloatDistribution(0.0, 2.0), "k": CategoricalDistribution(["old"])}),
        _trial(1, 2.0, {"f": 0.5, "k": "new"}, {"f": UNIT, "k": CategoricalDistribution(["new"])}),
    ]
    figure = parallel_coordinate_figure(trials, ["f", "k"])
    assert _labels_at(figure, 1) == {0.0: "0", 0.5: "1", 1.0: "2"}
    assert _labels_at(figure, 2) == {0.0: "new", 1.0: "old"}


@pytest.mark.parametrize(
    ("trials", "params", "message"),
    [
        ([_trial(0, None, {}, {})], ["f"],
         "parallel_coordinate_figure: needs a complete trial, but got none"),
        ([_trial(0, 1.0, {"f": 0.5}, {"f": UNIT})], [],
         "parallel_coordinate_figure: params must name at least one parameter, but got none"),
    ],
)
def test_errors(trials: list[FrozenTrial], params: list[str], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parallel_coordinate_figure(trials, params)
    assert str(raised.value) == message
