"""The parallel-coordinate plot of a family's study.

One vertical axis for the objective and one per searched parameter, a line per complete trial
colored by its value, the best trials darkest and drawn on top. A parameter's axis spans its
search-space range (log-scaled where it is searched on a log scale), so the plot shows where in
the space the trials went, not only how far apart they were.

Optuna's own matplotlib version gives every parameter a twin matplotlib axis with its own tick
machinery (mathtext labels on log axes): 0.3-0.9 s per 50-trial study on this project's 2-core
machine, most of a family's drawing time, which a sweep waits for at its end. This draws the
same picture on one axes with three plain labels per axis, in about a fifth of that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

__all__ = ["parallel_coordinate_figure"]


def parallel_coordinate_figure(
    trials: Sequence[FrozenTrial],
    params: Sequence[str],
    *,
    target_name: str = "Objective Value",
    direction: StudyDirection = StudyDirection.MINIMIZE,
) -> Figure:
    """A parallel-coordinate figure of the complete ``trials`` over ``params``.

    Trials that are not complete are left out; a trial without one of ``params`` (a
    conditional parameter) has a gap on that axis. Categorical choices are spread evenly over
    their axis in the order of the distribution's choices.

    Raises:
        ValueError: when no trial is complete, or ``params`` is empty.
    """
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not complete:
        raise ValueError("parallel_coordinate_figure: needs a complete trial, but got none")
    if not params:
        raise ValueError("parallel_coordinate_figure: params must name at least one parameter, "
                         "but got none")
    values = np.array([float(t.value) for t in complete])  # type: ignore[arg-type]
    axes = [_objective_axis(target_name, values)]
    axes += [_param_axis(name, complete) for name in params]
    heights = np.column_stack([axis.heights for axis in axes])

    n = len(axes)
    figure = Figure(figsize=(max(6.4, 1.1 * n + 2.4), 5.0))
    ax = figure.subplots()
    minimize = direction == StudyDirection.MINIMIZE
    # Worst first, so the best trials are drawn last, on top.
    order = np.argsort(-values if minimize else values, kind="stable")
    lines, colors = [], []
    for row in order:
        for piece in _pieces(heights[row]):
            lines.append(piece)
            colors.append(values[row])
    collection = LineCollection(
        lines, cmap="Blues_r" if minimize else "Blues",
        norm=Normalize(values.min(), values.max()), linewidths=1.2, alpha=0.85,
    )
    collection.set_array(np.asarray(colors))
    ax.add_collection(collection)
    for x, axis in enumerate(axes):
        ax.axvline(x, color="0.25", linewidth=1.0)
        for height, label in axis.labels:
            ax.text(x + 0.04, height, label, fontsize=8, ha="left", va="center", color="0.1",
                    bbox=_LABEL_BOX)
    ax.set_xlim(-0.15, n - 0.55)
    ax.set_ylim(-0.04, 1.04)
    ax.set_xticks(range(n), [axis.name for axis in axes], rotation=30, ha="right")
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    figure.colorbar(collection, ax=ax, label=target_name, pad=0.02)
    counted = f"{len(complete)} complete trial{'s' if len(complete) > 1 else ''}"
    ax.set_title(f"Parallel coordinates ({counted}, best darkest)")
    return figure


_MISSING = object()

#: Labels sit on the lines: a light box keeps them readable.
_LABEL_BOX = {"boxstyle": "square,pad=0.15", "facecolor": "white", "edgecolor": "none",
              "alpha": 0.75}


class _Axis:
    """One vertical axis: each trial's height on it in [0, 1] (NaN where the trial lacks the
    parameter) and the labels written beside it, as (height, text)."""

    def __init__(self, name: str, heights: np.ndarray, labels: list[tuple[float, str]]) -> None:
        self.name = name
        self.heights = heights
        self.labels = labels


def _objective_axis(name: str, values: np.ndarray) -> _Axis:
    low, high = float(values.min()), float(values.max())
    return _Axis(name, _scale(values, low, high, log=False),
                 _numeric_labels(low, high, log=False, integer=False))


def _param_axis(name: str, trials: Sequence[FrozenTrial]) -> _Axis:
    # A trial without the parameter is _MISSING (None can be a categorical choice).
    raw = [t.params.get(name, _MISSING) for t in trials]
    distribution = _distribution_of(name, trials)
    if isinstance(distribution, CategoricalDistribution):
        choices = list(distribution.choices)
        # A value outside the choices (the space changed on a resume) still gets a place.
        choices += [v for v in raw if v is not _MISSING and v not in choices]
        choices = list(dict.fromkeys(choices))
        span = max(1, len(choices) - 1)
        heights = np.array(
            [np.nan if v is _MISSING else choices.index(v) / span for v in raw], dtype=float
        )
        if len(choices) == 1:
            heights[~np.isnan(heights)] = 0.5
            return _Axis(name, heights, [(0.5, str(choices[0]))])
        return _Axis(name, heights, [(i / span, str(c)) for i, c in enumerate(choices)])
    numbers = np.array([np.nan if v is _MISSING else float(v) for v in raw], dtype=float)
    log = isinstance(distribution, (FloatDistribution, IntDistribution)) and distribution.log
    integer = isinstance(distribution, IntDistribution)
    present = numbers[~np.isnan(numbers)]
    low = float(present.min()) if present.size else 0.0
    high = float(present.max()) if present.size else 0.0
    if isinstance(distribution, (FloatDistribution, IntDistribution)):
        # The search space's range, widened by any value outside it (a changed space).
        low, high = min(low, float(distribution.low)), max(high, float(distribution.high))
    return _Axis(name, _scale(numbers, low, high, log=log),
                 _numeric_labels(low, high, log=log, integer=integer))


def _distribution_of(name: str, trials: Sequence[FrozenTrial]) -> BaseDistribution | None:
    """The parameter's distribution in the latest trial that has it."""
    for trial in reversed(trials):
        if name in trial.distributions:
            return trial.distributions[name]
    return None


def _scale(values: np.ndarray, low: float, high: float, *, log: bool) -> np.ndarray:
    if log:
        values, low, high = np.log10(values), math.log10(low), math.log10(high)
    if high <= low:  # one value: the middle of the axis
        return np.where(np.isnan(values), np.nan, 0.5)
    return (values - low) / (high - low)


def _numeric_labels(
    low: float, high: float, *, log: bool, integer: bool
) -> list[tuple[float, str]]:
    if high <= low:
        return [(0.5, _label(low, integer))]
    middle = math.sqrt(low * high) if log else (low + high) / 2
    return [(0.0, _label(low, integer)), (0.5, _label(middle, integer)),
            (1.0, _label(high, integer))]


def _label(value: Any, integer: bool) -> str:
    if integer:
        return f"{round(value):,}"
    if abs(value) >= 1e3:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _pieces(heights: np.ndarray) -> list[np.ndarray]:
    """The trial's polyline as (x, height) points, split where it lacks a parameter."""
    pieces, start = [], None
    for x, height in enumerate([*heights, np.nan]):
        if np.isnan(height):
            if start is not None and x - start >= 2:
                pieces.append(np.column_stack([np.arange(start, x), heights[start:x]]))
            start = None
        elif start is None:
            start = x
    return pieces
